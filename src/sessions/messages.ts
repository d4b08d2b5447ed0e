// SQL for a session's message history: sequences 1, 2, 3… per session,
// allocated under the session row's lock so appends never collide. A
// message belongs to its session's namespace (the key is (namespace,
// session_id, sequence)).
import { type Fields, selectList } from "../db/columns.js";
import type { Queryable } from "../db/database.js";
import { jsonSize, type Page, type PageLimits, type Paged, pagedSql, rowSize, type Sizes, textSize, toPage } from "../db/pages.js";
import { notFound } from "../errors.js";
import { getSession, type JsonObject } from "./store.js";

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

const LIST_SQL = pagedSql({
  fields: FIELDS,
  size: rowSize(SIZES),
  from: `FROM session_messages WHERE namespace = $1 AND session_id = $2 AND sequence > $3`,
  order: [["sequence", "ASC"]],
  limit: "$4",
  budget: "$5",
});

/** Locks the session row to hand out the next sequences, then inserts in order. */
export function appendMessages(q: Queryable, ns: string, sessionId: string, messages: NewMessage[]): Promise<MessageRecord[]> {
  return q.atomic(async (tx) => {
    const allocated = await tx.query<{ last: number }>(
      `UPDATE sessions SET last_message_sequence = last_message_sequence + $3
       WHERE namespace = $1 AND session_id = $2 RETURNING last_message_sequence AS last`,
      [ns, sessionId, messages.length],
    );
    if (!allocated.rows[0]) throw notFound("session", sessionId);
    const firstSequence = allocated.rows[0].last - messages.length + 1;
    const inserted = await tx.query<MessageRecord>(
      `INSERT INTO session_messages (namespace, session_id, sequence, role, content, metadata)
       SELECT $1, $2, $3::bigint + m.ord - 1, m.role, m.content, m.metadata
         FROM ROWS FROM (jsonb_to_recordset($4::jsonb) AS (role text, content text, metadata jsonb))
              WITH ORDINALITY AS m (role, content, metadata, ord)
       RETURNING ${COLUMNS}`,
      [ns, sessionId, firstSequence, JSON.stringify(messages)],
    );
    return inserted.rows.sort((a, b) => a.sequence - b.sequence);
  });
}

/** Ascending sequence after `afterSequence`, one page; NOT_FOUND for an unknown session. */
export async function listMessages(
  q: Queryable,
  ns: string,
  sessionId: string,
  afterSequence: number,
  limits: PageLimits,
): Promise<Page<MessageRecord>> {
  const result = await q.query<Paged<MessageRecord>>(LIST_SQL, [ns, sessionId, afterSequence, limits.rows, limits.bytes]);
  if (result.rows.length === 0) await getSession(q, ns, sessionId);
  return toPage(result.rows);
}
