// SQL for a session's message history: sequences 1, 2, 3… per session,
// allocated under the session row's lock so appends never collide. The
// session's last_message_sequence only grows, so a sequence is never handed
// out twice, even after the messages holding it are deleted. A message
// belongs to its session's namespace (the key is (namespace, session_id,
// sequence)).
import { type Fields, selectList } from "../db/columns.js";
import type { Queryable } from "../db/database.js";
import { jsonSize, type Page, type PageLimits, type Paged, pagedSql, rowSize, type Sizes, textSize, toPage } from "../db/pages.js";
import { notFound } from "../errors.js";
import { FIELDS as SESSION_FIELDS, getSession, type JsonObject, missOrConflict, type SessionRecord } from "./store.js";
import { mergedStateTooLarge, type StateMerge } from "./updates.js";

export interface NewMessage {
  role: string;
  content: string;
  metadata: JsonObject | null;
}

export interface MessageRecord extends NewMessage {
  sessionId: string;
  sequence: number;
  createTime: string;
}

const FIELDS: Fields<MessageRecord> = {
  sessionId: "session_id",
  sequence: "sequence",
  role: "role",
  content: "content",
  metadata: "metadata",
  createTime: "create_time",
};
const COLUMNS = selectList(FIELDS);

const SIZES: Sizes<MessageRecord> = {
  sessionId: textSize("session_id"),
  role: textSize("role"),
  content: textSize("content"),
  metadata: jsonSize("metadata"),
};

// Run unnamed (q.query): the roles filter ($6) needs a plan for each call's
// values, to use session_messages_role_idx only when roles are given.
const LIST_SQL = pagedSql({
  fields: FIELDS,
  size: rowSize(SIZES),
  from: `FROM session_messages WHERE namespace = $1 AND session_id = $2 AND sequence > $3
           AND (cardinality($6::text[]) = 0 OR role = ANY ($6::text[]))`,
  order: [["sequence", "ASC"]],
  limit: "$4",
  budget: "$5",
});

export interface MessageAppend {
  sessionId: string;
  messages: NewMessage[];
  /** Appends only while the session is at this version. */
  expectedVersion: number | undefined;
  /** Merged into the session's state in the same statement that allocates the sequences: version + 1. */
  stateMerge: StateMerge | null;
}

export interface Appended {
  messages: MessageRecord[];
  /** The session as committed with the messages; null without a state merge (the session did not change). */
  session: SessionRecord | null;
}

const ALLOCATE_SQL = `UPDATE sessions SET last_message_sequence = last_message_sequence + $3
   WHERE namespace = $1 AND session_id = $2 AND ($4::bigint IS NULL OR version = $4)
   RETURNING last_message_sequence AS last`;

// RETURNING sees the new row: the merged state, and its size for the limit.
const ALLOCATE_AND_MERGE_SQL = `UPDATE sessions SET last_message_sequence = last_message_sequence + $3,
       state = cairn_merge_patch(state, $5::jsonb), version = version + 1, update_time = now()
   WHERE namespace = $1 AND session_id = $2 AND ($4::bigint IS NULL OR version = $4)
   RETURNING last_message_sequence AS last, octet_length(state::text) AS "stateBytes", ${selectList(SESSION_FIELDS)}`;

/**
 * Locks the session row to hand out the next sequences (and, with a state
 * merge, to change its state and version in the same UPDATE), then inserts
 * the messages in order; all of it commits together. NOT_FOUND for an
 * unknown session, ABORTED VERSION_CONFLICT at another version, nothing
 * written either way.
 */
export function appendMessages(q: Queryable, ns: string, append: MessageAppend): Promise<Appended> {
  const { sessionId, messages, expectedVersion, stateMerge } = append;
  return q.atomic(async (tx) => {
    const allocated = await tx.query<{ last: number; stateBytes?: number } & SessionRecord>(
      stateMerge ? ALLOCATE_AND_MERGE_SQL : ALLOCATE_SQL,
      [ns, sessionId, messages.length, expectedVersion ?? null, ...(stateMerge ? [JSON.stringify(stateMerge.patch)] : [])],
    );
    const row = allocated.rows[0];
    if (!row) throw await missOrConflict(tx, ns, sessionId);
    const { last, stateBytes, ...session } = row;
    // Thrown inside the transaction: the merge and the allocation roll back.
    if (stateMerge && stateBytes! > stateMerge.maxBytes) throw mergedStateTooLarge(stateMerge, stateBytes!);
    const inserted = await tx.query<MessageRecord>(
      `INSERT INTO session_messages (namespace, session_id, sequence, role, content, metadata)
       SELECT $1, $2, $3::bigint + m.ord - 1, m.role, m.content, m.metadata
         FROM ROWS FROM (jsonb_to_recordset($4::jsonb) AS (role text, content text, metadata jsonb))
              WITH ORDINALITY AS m (role, content, metadata, ord)
       RETURNING ${COLUMNS}`,
      [ns, sessionId, last - messages.length + 1, JSON.stringify(messages)],
    );
    return { messages: inserted.rows.sort((a, b) => a.sequence - b.sequence), session: stateMerge ? session : null };
  });
}

/**
 * Ascending sequence after `afterSequence`, one page; with `roles`, only
 * messages of those roles. NOT_FOUND for an unknown session.
 */
export async function listMessages(
  q: Queryable,
  ns: string,
  sessionId: string,
  afterSequence: number,
  limits: PageLimits,
  roles: string[] = [],
): Promise<Page<MessageRecord>> {
  const result = await q.query<Paged<MessageRecord>>(LIST_SQL, [ns, sessionId, afterSequence, limits.rows, limits.bytes, roles]);
  if (result.rows.length === 0) await getSession(q, ns, sessionId);
  return toPage(result.rows);
}

/**
 * Deletes the session's messages with a sequence below `beforeSequence`
 * (every one with 0); returns how many. The session, its version and its
 * sequence counter stay as they are. NOT_FOUND for an unknown session.
 */
export async function deleteMessages(q: Queryable, ns: string, sessionId: string, beforeSequence: number): Promise<number> {
  const result = await q.query<{ found: boolean; deleted: number }>(
    `WITH deleted AS (
       DELETE FROM session_messages
        WHERE namespace = $1 AND session_id = $2 AND ($3::bigint = 0 OR sequence < $3)
        RETURNING 1)
     SELECT EXISTS (SELECT 1 FROM sessions WHERE namespace = $1 AND session_id = $2) AS found,
            (SELECT count(*) FROM deleted)::bigint AS deleted`,
    [ns, sessionId, beforeSequence],
  );
  const { found, deleted } = result.rows[0]!;
  if (!found) throw notFound("session", sessionId);
  return deleted;
}

/** A message as ImportSessions inserts it: its session, sequence and (when set) create_time as given. */
export interface ImportedMessage extends NewMessage {
  sessionId: string;
  sequence: number;
  /** now when null. */
  createTime: string | null;
}

/** Inserts messages with the sequences they carry; the caller makes each session's counter continue after them. */
export async function insertImportedMessages(tx: Queryable, ns: string, messages: ImportedMessage[]): Promise<void> {
  const rows = messages.map((m) => ({
    session_id: m.sessionId,
    sequence: m.sequence,
    role: m.role,
    content: m.content,
    metadata: m.metadata,
    create_time: m.createTime,
  }));
  await tx.query(
    `INSERT INTO session_messages (namespace, session_id, sequence, role, content, metadata, create_time)
     SELECT $1, m.session_id, m.sequence, m.role, m.content, m.metadata, coalesce(m.create_time, now())
       FROM jsonb_to_recordset($2::jsonb) AS m (
              session_id text, sequence bigint, role text, content text, metadata jsonb, create_time timestamptz)
      ORDER BY m.session_id, m.sequence`,
    [ns, JSON.stringify(rows)],
  );
}
