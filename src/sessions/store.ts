// SQL for creating, reading and deleting sessions, and the session record
// every other sessions file shares. No gRPC types here: records use plain
// JSON objects and microsecond RFC 3339 time strings. Beside it:
// updates.ts (the update path), queries.ts (filtered lists, counts, stats),
// coalesced.ts (single calls sharing one statement), messages.ts,
// history.ts, import.ts. Touches the sessions table (and request ids
// through createOnce); a delete runs the other services' cascade steps it
// is given. Every function works in one namespace (`ns`, right after the
// queryable), and every statement names it first, so the namespace-led
// keys and indexes serve it.
import { type Fields, selectList } from "../db/columns.js";
import type { Queryable, SessionsDeletedStep } from "../db/database.js";
import { createOnce, type Idempotency } from "../db/idempotency.js";
import { jsonSize, omitting, type Sizes, textSize } from "../db/pages.js";
import { alreadyExists, notFound, versionConflict } from "../errors.js";

export type SessionStatusName = "ACTIVE" | "ENDED" | "ERROR";
export type JsonObject = Record<string, unknown>;

export interface NewSession {
  sessionId: string;
  agentId: string;
  userId: string;
  status: SessionStatusName;
  labels: Record<string, string>;
  metadata: JsonObject | null;
  state: JsonObject | null;
}

export interface SessionRecord extends NewSession {
  version: number;
  createTime: string;
  updateTime: string;
  endTime: string | null;
  /** Set on a fork (sessions/history.ts): the session and version it came from. */
  parentSessionId: string | null;
  parentVersion: number | null;
}

export interface SessionCreate {
  session: NewSession;
  idempotency: Idempotency | null;
}

export const CREATE_SCOPE = "cairn.v1.SessionService/CreateSession";

export const FIELDS: Fields<SessionRecord> = {
  sessionId: "session_id",
  agentId: "agent_id",
  userId: "user_id",
  status: "status",
  labels: "labels",
  metadata: "metadata",
  state: "state",
  version: "version",
  createTime: "create_time",
  updateTime: "update_time",
  endTime: "end_time",
  parentSessionId: "parent_session_id",
  parentVersion: "parent_version",
};
const COLUMNS = selectList(FIELDS);
/**
 * A created row without its documents: CreateSession echoes the metadata
 * and state it was given instead of reading them back (a large state would
 * cross the wire and be parsed once more). They are the same JSON values:
 * jsonb only reorders keys and has no -0, which the response encoder
 * (the client package's struct-codec.ts) writes as 0.
 */
const CREATED_COLUMNS = selectList(omitting(FIELDS, ["metadata", "state"]));

/** The fields a read mask may leave out of the SELECT: the documents. */
export type SessionDocument = "labels" | "metadata" | "state";

export const SIZES: Sizes<SessionRecord> = {
  sessionId: textSize("session_id"),
  agentId: textSize("agent_id"),
  userId: textSize("user_id"),
  parentSessionId: textSize("parent_session_id"),
  labels: jsonSize("labels"),
  metadata: jsonSize("metadata"),
  state: jsonSize("state"),
};

export function jsonOrNull(value: JsonObject | null | undefined): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

/** One query for many ids of one namespace; absent ids are missing from the map. `omit`: documents left out (NULL). */
export async function readSessions(
  q: Queryable,
  ns: string,
  sessionIds: string[],
  omit: readonly SessionDocument[] = [],
): Promise<Map<string, SessionRecord>> {
  const sql = `SELECT ${selectList(omitting(FIELDS, omit))} FROM sessions WHERE namespace = $1 AND session_id = ANY ($2::text[])`;
  // The full read is prepared once per connection; masked reads vary.
  const result =
    omit.length === 0
      ? await q.prepared<SessionRecord>("sessions_read_many", sql, [ns, sessionIds])
      : await q.query<SessionRecord>(sql, [ns, sessionIds]);
  return new Map(result.rows.map((row) => [row.sessionId, row]));
}

export async function getSession(q: Queryable, ns: string, sessionId: string): Promise<SessionRecord> {
  const session = (await readSessions(q, ns, [sessionId])).get(sessionId);
  if (!session) throw notFound("session", sessionId);
  return session;
}

/** In request order; NOT_FOUND naming the first missing id. */
export async function batchGetSessions(
  q: Queryable,
  ns: string,
  sessionIds: string[],
  omit: readonly SessionDocument[] = [],
): Promise<SessionRecord[]> {
  const byId = await readSessions(q, ns, sessionIds, omit);
  return sessionIds.map((id) => {
    const session = byId.get(id);
    if (!session) throw notFound("session", id);
    return session;
  });
}

/** Creates every session or none; replays known request ids. */
export function createSessions(q: Queryable, ns: string, creates: SessionCreate[]): Promise<SessionRecord[]> {
  // One plain INSERT needs no transaction: it is atomic on its own.
  if (creates.length === 1 && creates[0]!.idempotency === null) return createOne(q, ns, creates[0]!).then((s) => [s]);
  return q.atomic(async (tx) => {
    const created: SessionRecord[] = [];
    for (const create of creates) created.push(await createOne(tx, ns, create));
    return created;
  });
}

function createOne(tx: Queryable, ns: string, { session, idempotency }: SessionCreate): Promise<SessionRecord> {
  return createOnce(tx, ns, {
    scope: CREATE_SCOPE,
    idempotency,
    resource: "session",
    resourceId: session.sessionId,
    read: async (id) => (await readSessions(tx, ns, [id])).get(id),
    create: async () => {
      const inserted = await tx.query<SessionRecord>(
        `INSERT INTO sessions (namespace, session_id, agent_id, user_id, status, labels, metadata, state, end_time)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, CASE WHEN $5 <> 'ACTIVE' THEN now() END)
         ON CONFLICT (namespace, session_id) DO NOTHING
         RETURNING ${CREATED_COLUMNS}`,
        [
          ns,
          session.sessionId,
          session.agentId,
          session.userId,
          session.status,
          JSON.stringify(session.labels),
          jsonOrNull(session.metadata),
          jsonOrNull(session.state),
        ],
      );
      if (!inserted.rows[0]) throw alreadyExists("session", session.sessionId);
      return { ...inserted.rows[0], metadata: session.metadata, state: session.state };
    },
  });
}

/**
 * A session as ImportSessions or an allow_missing upsert inserts it. Null
 * times default: create_time to now, update_time to end_time or else
 * create_time, and the end_time of a session that is not ACTIVE to its
 * update_time.
 */
export interface SessionRow extends NewSession {
  /** Merged into `state` as it is inserted (an upsert's state_patch). */
  statePatch: JsonObject | null;
  /** 1 when null. */
  version: number | null;
  createTime: string | null;
  updateTime: string | null;
  endTime: string | null;
  /** The highest message sequence handed out: appends continue after it. */
  lastMessageSequence: number;
  parentSessionId: string | null;
  parentVersion: number | null;
}

/**
 * Inserts sessions of one namespace in one statement, in id order; an id
 * already taken is skipped (ON CONFLICT DO NOTHING, which waits for a
 * concurrent insert of it to end), so the result may hold fewer sessions.
 */
export async function insertSessions(tx: Queryable, ns: string, rows: SessionRow[]): Promise<Map<string, SessionRecord>> {
  const recordset = rows.map((r) => ({
    session_id: r.sessionId,
    agent_id: r.agentId,
    user_id: r.userId,
    status: r.status,
    labels: r.labels,
    metadata: r.metadata,
    state: r.state,
    state_patch: r.statePatch,
    version: r.version,
    create_time: r.createTime,
    update_time: r.updateTime,
    end_time: r.endTime,
    last_message_sequence: r.lastMessageSequence,
    parent_session_id: r.parentSessionId,
    parent_version: r.parentVersion,
  }));
  const inserted = await tx.query<SessionRecord>(
    `INSERT INTO sessions (namespace, session_id, agent_id, user_id, status, labels, metadata, state, version,
                           create_time, update_time, end_time, last_message_sequence, parent_session_id, parent_version)
     SELECT $1, r.session_id, r.agent_id, r.user_id, r.status, r.labels, r.metadata,
            CASE WHEN r.state_patch IS NULL THEN r.state ELSE cairn_merge_patch(r.state, r.state_patch) END,
            coalesce(r.version, 1), t.create_time, t.update_time,
            CASE WHEN r.status <> 'ACTIVE' THEN coalesce(r.end_time, t.update_time) END,
            r.last_message_sequence, r.parent_session_id, r.parent_version
       FROM jsonb_to_recordset($2::jsonb) AS r (
              session_id text, agent_id text, user_id text, status text, labels jsonb, metadata jsonb, state jsonb,
              state_patch jsonb, version bigint, create_time timestamptz, update_time timestamptz, end_time timestamptz,
              last_message_sequence bigint, parent_session_id text, parent_version bigint)
      CROSS JOIN LATERAL (SELECT coalesce(r.create_time, now()) AS create_time,
                                 coalesce(r.update_time, r.end_time, r.create_time, now()) AS update_time) AS t
      ORDER BY r.session_id
     ON CONFLICT (namespace, session_id) DO NOTHING
     RETURNING ${COLUMNS}`,
    [ns, JSON.stringify(recordset)],
  );
  return new Map(inserted.rows.map((row) => [row.sessionId, row]));
}

/** Why a versioned write matched no row: the session is gone, or at another version. */
export async function missOrConflict(q: Queryable, ns: string, sessionId: string) {
  const current = await q.query<{ version: number }>(`SELECT version FROM sessions WHERE namespace = $1 AND session_id = $2`, [
    ns,
    sessionId,
  ]);
  const row = current.rows[0];
  return row ? versionConflict("session", sessionId, row.version) : notFound("session", sessionId);
}

export async function deleteSession(
  q: Queryable,
  ns: string,
  sessionId: string,
  expectedVersion: number | undefined,
  cascade: SessionsDeletedStep[],
): Promise<void> {
  const deleted = await q.atomic((tx) => deleteSessionRows(tx, ns, [sessionId], expectedVersion, cascade));
  if (deleted.length === 0) throw await missOrConflict(q, ns, sessionId);
}

/** Atomic: NOT_FOUND (and nothing deleted) when any id is missing. */
export async function batchDeleteSessions(q: Queryable, ns: string, sessionIds: string[], cascade: SessionsDeletedStep[]): Promise<void> {
  await q.atomic(async (tx) => {
    const deleted = new Set(await deleteSessionRows(tx, ns, sessionIds, undefined, cascade));
    const missing = sessionIds.find((id) => !deleted.has(id));
    if (missing !== undefined) throw notFound("session", missing);
  });
}

/**
 * Deletes sessions inside the caller's transaction (their messages go by
 * ON DELETE CASCADE), then runs every other service's step for them, so the
 * whole cascade commits or none of it does; returns the ids deleted. Each
 * step is told the namespace: another namespace's rows naming the same
 * session ids are not these sessions' and stay.
 */
async function deleteSessionRows(
  tx: Queryable,
  ns: string,
  sessionIds: string[],
  expectedVersion: number | undefined,
  cascade: SessionsDeletedStep[],
): Promise<string[]> {
  const deleted = await tx.query<{ session_id: string }>(
    `DELETE FROM sessions
      WHERE namespace = $1 AND session_id = ANY ($2::text[]) AND ($3::bigint IS NULL OR version = $3)
      RETURNING session_id`,
    [ns, sessionIds, expectedVersion ?? null],
  );
  const ids = deleted.rows.map((row) => row.session_id);
  if (ids.length > 0) for (const step of cascade) await step(tx, ns, ids);
  return ids;
}
