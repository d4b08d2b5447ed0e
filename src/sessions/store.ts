// SQL for sessions. No gRPC types here: records use plain JSON objects and
// microsecond RFC 3339 time strings. Messages are in messages.ts.
import { Coalescer } from "../db/coalescer.js";
import { type Fields, selectList } from "../db/columns.js";
import type { CallScope, Database, Queryable } from "../db/database.js";
import { createOnce, type Idempotency } from "../db/idempotency.js";
import { jsonSize, omitting, type Page, type PageLimits, type Paged, pagedSql, rowSize, type Sizes, textSize, toPage } from "../db/pages.js";
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
}

export interface SessionCreate {
  session: NewSession;
  idempotency: Idempotency | null;
}

/** Fields to change; undefined leaves a field as it is. */
export interface SessionPatch {
  status?: SessionStatusName;
  userId?: string;
  labels?: Record<string, string>;
  metadata?: JsonObject | null;
  state?: JsonObject | null;
}

export interface SessionUpdate {
  sessionId: string;
  patch: SessionPatch;
  expectedVersion: number | undefined;
}

export interface SessionFilter {
  agentId: string | null;
  userId: string | null;
  statuses: SessionStatusName[];
  labels: Record<string, string>;
  metadataContains: JsonObject | null;
  stateContains: JsonObject | null;
  createdAfter: string | null;
  createdBefore: string | null;
}

export type SessionOrderColumn = "create_time" | "update_time";

export interface SessionOrder {
  column: SessionOrderColumn;
  descending: boolean;
}

export interface SessionStats {
  total: number;
  byStatus: Record<SessionStatusName, number>;
  avgDurationMicros: number | null;
  oldestActiveCreateTime: string | null;
}

/** What deleting sessions does to another service's rows, inside the deleting transaction. */
export type SessionsDeletedStep = (tx: Queryable, sessionIds: string[]) => Promise<void>;

export const CREATE_SCOPE = "cairn.v1.SessionService/CreateSession";

const FIELDS: Fields<SessionRecord> = {
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
};
const COLUMNS = selectList(FIELDS);

/** The fields a read mask may leave out of the SELECT: the documents. */
export type SessionDocument = "labels" | "metadata" | "state";

const SIZES: Sizes<SessionRecord> = {
  sessionId: textSize("session_id"),
  agentId: textSize("agent_id"),
  userId: textSize("user_id"),
  labels: jsonSize("labels"),
  metadata: jsonSize("metadata"),
  state: jsonSize("state"),
};

/** Parameters $1..$8 of every filtered query, in this order (see filterParams). */
const FILTER_SQL = `($1::text IS NULL OR agent_id = $1)
  AND ($2::text IS NULL OR user_id = $2)
  AND (cardinality($3::text[]) = 0 OR status = ANY ($3::text[]))
  AND labels @> $4::jsonb
  AND ($5::jsonb IS NULL OR metadata @> $5::jsonb)
  AND ($6::jsonb IS NULL OR state @> $6::jsonb)
  AND ($7::timestamptz IS NULL OR create_time > $7)
  AND ($8::timestamptz IS NULL OR create_time < $8)`;

function filterParams(f: SessionFilter): unknown[] {
  return [
    f.agentId,
    f.userId,
    f.statuses,
    JSON.stringify(f.labels),
    jsonOrNull(f.metadataContains),
    jsonOrNull(f.stateContains),
    f.createdAfter,
    f.createdBefore,
  ];
}

/**
 * A list page, built from constants only: keyset pagination on (column,
 * session_id) with the cursor in $9, $10, the row limit in $11 and the byte
 * budget in $12 (see db/pages.ts). Run unnamed (q.query, not q.prepared):
 * the `$n IS NULL OR …` filters need a plan for each call's values, and a
 * generic plan would use the labels index for every filter
 * (`npx tsx bench/explain-filters.ts` prints both).
 */
function listSql(order: SessionOrder, omit: readonly SessionDocument[]): string {
  const direction = order.descending ? "DESC" : "ASC";
  const after = order.descending ? "<" : ">";
  const key = order.column === "create_time" ? "createTime" : "updateTime";
  return pagedSql({
    fields: omitting(FIELDS, omit),
    size: rowSize(SIZES, omit),
    from: `FROM sessions
      WHERE ${FILTER_SQL}
        AND ($9::timestamptz IS NULL OR (${order.column}, session_id) ${after} ($9, $10::text))`,
    order: [
      [key, direction],
      ["sessionId", direction],
    ],
    limit: "$11",
    budget: "$12",
  });
}

function jsonOrNull(value: JsonObject | null | undefined): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

/** One query for many ids; absent ids are missing from the map. `omit`: documents left out (NULL). */
export async function readSessions(
  q: Queryable,
  sessionIds: string[],
  omit: readonly SessionDocument[] = [],
): Promise<Map<string, SessionRecord>> {
  const sql = `SELECT ${selectList(omitting(FIELDS, omit))} FROM sessions WHERE session_id = ANY ($1::text[])`;
  // The hot full read is prepared once per connection; masked reads vary.
  const result =
    omit.length === 0 ? await q.prepared<SessionRecord>("sessions_read", sql, [sessionIds]) : await q.query<SessionRecord>(sql, [sessionIds]);
  return new Map(result.rows.map((row) => [row.sessionId, row]));
}

export async function getSession(q: Queryable, sessionId: string): Promise<SessionRecord> {
  const session = (await readSessions(q, [sessionId])).get(sessionId);
  if (!session) throw notFound("session", sessionId);
  return session;
}

/** In request order; NOT_FOUND naming the first missing id. */
export async function batchGetSessions(q: Queryable, sessionIds: string[], omit: readonly SessionDocument[] = []): Promise<SessionRecord[]> {
  const byId = await readSessions(q, sessionIds, omit);
  return sessionIds.map((id) => {
    const session = byId.get(id);
    if (!session) throw notFound("session", id);
    return session;
  });
}

/** Creates every session or none; replays known request ids. */
export function createSessions(q: Queryable, creates: SessionCreate[]): Promise<SessionRecord[]> {
  // One plain INSERT needs no transaction: it is atomic on its own.
  if (creates.length === 1 && creates[0]!.idempotency === null) return createOne(q, creates[0]!).then((s) => [s]);
  return q.atomic(async (tx) => {
    const created: SessionRecord[] = [];
    for (const create of creates) created.push(await createOne(tx, create));
    return created;
  });
}

function createOne(tx: Queryable, { session, idempotency }: SessionCreate): Promise<SessionRecord> {
  return createOnce(tx, {
    scope: CREATE_SCOPE,
    idempotency,
    resource: "session",
    resourceId: session.sessionId,
    read: async (id) => (await readSessions(tx, [id])).get(id),
    create: async () => {
      const inserted = await tx.query<SessionRecord>(
        `INSERT INTO sessions (session_id, agent_id, user_id, status, labels, metadata, state, end_time)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, CASE WHEN $4 <> 'ACTIVE' THEN now() END)
         ON CONFLICT (session_id) DO NOTHING
         RETURNING ${COLUMNS}`,
        [
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
      return inserted.rows[0];
    },
  });
}

/**
 * One UPDATE for many sessions (each at most once), each with its own
 * patch and version condition; undefined where a session is missing or at
 * another version. Rows are locked in session_id order so that concurrent
 * batches cannot deadlock each other.
 */
export async function applyUpdates(q: Queryable, updates: SessionUpdate[]): Promise<(SessionRecord | undefined)[]> {
  const rows = updates.map((u, ord) => ({
    ord,
    session_id: u.sessionId,
    status: u.patch.status ?? null,
    user_id: u.patch.userId ?? null,
    labels: u.patch.labels ?? null,
    set_metadata: u.patch.metadata !== undefined,
    metadata: u.patch.metadata ?? null,
    set_state: u.patch.state !== undefined,
    state: u.patch.state ?? null,
    expected_version: u.expectedVersion ?? null,
  }));
  // SET expressions see the old row, so end_time compares old and new status.
  const result = await q.prepared<SessionRecord & { ord: number }>(
    "sessions_update",
    `WITH p AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS p (
         ord int, session_id text, status text, user_id text, labels jsonb,
         set_metadata boolean, metadata jsonb, set_state boolean, state jsonb, expected_version bigint)
     ), locked AS (
       SELECT s.session_id FROM sessions s JOIN p USING (session_id)
        WHERE s.session_id = ANY ($2::text[])
          AND (p.expected_version IS NULL OR s.version = p.expected_version)
        ORDER BY s.session_id
        FOR UPDATE OF s
     )
     UPDATE sessions s SET
       status = COALESCE(p.status, s.status),
       user_id = COALESCE(p.user_id, s.user_id),
       labels = COALESCE(p.labels, s.labels),
       metadata = CASE WHEN p.set_metadata THEN p.metadata ELSE s.metadata END,
       state = CASE WHEN p.set_state THEN p.state ELSE s.state END,
       end_time = CASE
         WHEN COALESCE(p.status, s.status) = 'ACTIVE' THEN NULL
         WHEN s.status = 'ACTIVE' THEN now()
         ELSE s.end_time END,
       version = s.version + 1,
       update_time = now()
     FROM p JOIN locked USING (session_id)
     WHERE s.session_id = p.session_id AND s.session_id = ANY ($2::text[])
       AND (p.expected_version IS NULL OR s.version = p.expected_version)
     RETURNING p.ord, ${selectList(FIELDS, "s.")}`,
    // The id array lets the planner see how few rows the recordset holds
    // and use the primary key instead of scanning.
    [JSON.stringify(rows), updates.map((u) => u.sessionId)],
  );
  const updated: (SessionRecord | undefined)[] = updates.map(() => undefined);
  for (const { ord, ...session } of result.rows) updated[ord] = session;
  return updated;
}

/** Why a versioned write matched no row: the session is gone, or at another version. */
export async function missOrConflict(q: Queryable, sessionId: string) {
  const current = await q.query<{ version: number }>(`SELECT version FROM sessions WHERE session_id = $1`, [sessionId]);
  const row = current.rows[0];
  return row ? versionConflict("session", sessionId, row.version) : notFound("session", sessionId);
}

export async function deleteSession(
  q: Queryable,
  sessionId: string,
  expectedVersion: number | undefined,
  cascade: SessionsDeletedStep[],
): Promise<void> {
  const deleted = await q.atomic((tx) => deleteSessionRows(tx, [sessionId], expectedVersion, cascade));
  if (deleted.length === 0) throw await missOrConflict(q, sessionId);
}

/** Atomic: NOT_FOUND (and nothing deleted) when any id is missing. */
export async function batchDeleteSessions(q: Queryable, sessionIds: string[], cascade: SessionsDeletedStep[]): Promise<void> {
  await q.atomic(async (tx) => {
    const deleted = new Set(await deleteSessionRows(tx, sessionIds, undefined, cascade));
    const missing = sessionIds.find((id) => !deleted.has(id));
    if (missing !== undefined) throw notFound("session", missing);
  });
}

/**
 * Deletes sessions inside the caller's transaction (their messages go by
 * ON DELETE CASCADE), then runs every other service's step for them, so the
 * whole cascade commits or none of it does; returns the ids deleted.
 */
async function deleteSessionRows(
  tx: Queryable,
  sessionIds: string[],
  expectedVersion: number | undefined,
  cascade: SessionsDeletedStep[],
): Promise<string[]> {
  const deleted = await tx.query<{ session_id: string }>(
    `DELETE FROM sessions
      WHERE session_id = ANY ($1::text[]) AND ($2::bigint IS NULL OR version = $2)
      RETURNING session_id`,
    [sessionIds, expectedVersion ?? null],
  );
  const ids = deleted.rows.map((row) => row.session_id);
  if (ids.length > 0) for (const step of cascade) await step(tx, ids);
  return ids;
}

/** A page in `order` after the keyset `after`; `omit`: documents left out (NULL). */
export async function listSessions(
  q: Queryable,
  filter: SessionFilter,
  order: SessionOrder,
  limits: PageLimits,
  after: { time: string; sessionId: string } | undefined,
  omit: readonly SessionDocument[] = [],
): Promise<Page<SessionRecord>> {
  const result = await q.query<Paged<SessionRecord>>(listSql(order, omit), [
    ...filterParams(filter),
    after?.time ?? null,
    after?.sessionId ?? null,
    limits.rows,
    limits.bytes,
  ]);
  return toPage(result.rows);
}

export async function countSessions(q: Queryable, filter: SessionFilter): Promise<number> {
  const result = await q.query<{ count: number }>(
    `SELECT count(*)::bigint AS count FROM sessions WHERE ${FILTER_SQL}`,
    filterParams(filter),
  );
  return result.rows[0]!.count;
}

export async function sessionStats(q: Queryable, filter: SessionFilter): Promise<SessionStats> {
  const result = await q.query<{
    total: number;
    active: number;
    ended: number;
    error: number;
    avg_duration_micros: number | null;
    oldest_active: string | null;
  }>(
    `SELECT count(*)::bigint AS total,
            count(*) FILTER (WHERE status = 'ACTIVE')::bigint AS active,
            count(*) FILTER (WHERE status = 'ENDED')::bigint AS ended,
            count(*) FILTER (WHERE status = 'ERROR')::bigint AS error,
            (avg(extract(epoch FROM end_time - create_time)) FILTER (WHERE end_time IS NOT NULL)
               * 1000000)::float8 AS avg_duration_micros,
            min(create_time) FILTER (WHERE status = 'ACTIVE') AS oldest_active
       FROM sessions WHERE ${FILTER_SQL}`,
    filterParams(filter),
  );
  const row = result.rows[0]!;
  return {
    total: row.total,
    byStatus: { ACTIVE: row.active, ENDED: row.ended, ERROR: row.error },
    avgDurationMicros: row.avg_duration_micros,
    oldestActiveCreateTime: row.oldest_active,
  };
}

/**
 * GetSession and UpdateSession calls arriving together share one statement
 * (see db/coalescer.ts): a pool-level batching of single calls.
 */
export class SessionCalls {
  private readonly reads: Coalescer<string, SessionRecord | undefined>;
  private readonly updates: Coalescer<SessionUpdate, SessionRecord | undefined>;

  constructor(private readonly db: Database) {
    this.reads = new Coalescer(
      async (ids, signal) => {
        const byId = await readSessions(db.on({ signal }), ids);
        return ids.map((id) => byId.get(id));
      },
      { keyOf: (id) => id, shareEqualKeys: true },
    );
    this.updates = new Coalescer((updates, signal) => applyUpdates(db.on({ signal }), updates), {
      keyOf: (u) => u.sessionId,
      shareEqualKeys: false,
    });
  }

  async get(scope: CallScope, sessionId: string): Promise<SessionRecord> {
    const session = await this.reads.submit(sessionId, scope.signal);
    if (!session) throw notFound("session", sessionId);
    return session;
  }

  async update(scope: CallScope, update: SessionUpdate): Promise<SessionRecord> {
    const updated = await this.updates.submit(update, scope.signal);
    if (updated) return updated;
    throw await missOrConflict(this.db.on(scope), update.sessionId);
  }
}
