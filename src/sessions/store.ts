// SQL for sessions. No gRPC types here: records use plain JSON objects and
// microsecond RFC 3339 time strings. Messages are in messages.ts.
// Every function works in one namespace (`ns`, right after the queryable),
// and every statement names it first, so the namespace-led keys and indexes
// serve it; only the coalesced reads and updates mix namespaces, and they
// carry the namespace per item.
import { Coalescer } from "../db/coalescer.js";
import { type Fields, selectList } from "../db/columns.js";
import type { CallScope, Database, Queryable, SessionsDeletedStep } from "../db/database.js";
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

/**
 * Parameters $1..$9 of every filtered query, in this order (see
 * filterParams): the namespace first, so every index that serves a filter
 * (all namespace-led but the GIN containment ones) can lead with it.
 */
const FILTER_SQL = `namespace = $1
  AND ($2::text IS NULL OR agent_id = $2)
  AND ($3::text IS NULL OR user_id = $3)
  AND (cardinality($4::text[]) = 0 OR status = ANY ($4::text[]))
  AND labels @> $5::jsonb
  AND ($6::jsonb IS NULL OR metadata @> $6::jsonb)
  AND ($7::jsonb IS NULL OR state @> $7::jsonb)
  AND ($8::timestamptz IS NULL OR create_time > $8)
  AND ($9::timestamptz IS NULL OR create_time < $9)`;

function filterParams(ns: string, f: SessionFilter): unknown[] {
  return [
    ns,
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
 * session_id) with the cursor in $10, $11, the row limit in $12 and the byte
 * budget in $13 (see db/pages.ts). Run unnamed (q.query, not q.prepared):
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
        AND ($10::timestamptz IS NULL OR (${order.column}, session_id) ${after} ($10, $11::text))`,
    order: [
      [key, direction],
      ["sessionId", direction],
    ],
    limit: "$12",
    budget: "$13",
  });
}

function jsonOrNull(value: JsonObject | null | undefined): string | null {
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

/** A session of any namespace, as the coalescer asks for it. */
export interface SessionKey {
  ns: string;
  sessionId: string;
}

/**
 * One query for sessions of several namespaces (GetSession calls coalesced
 * across callers), in the order of `keys`; undefined where one is absent.
 */
export async function readSessionKeys(q: Queryable, keys: SessionKey[]): Promise<(SessionRecord | undefined)[]> {
  // The hot read, prepared once per connection. The pairs decide what
  // matches; the two arrays also let the primary key (namespace,
  // session_id) be searched directly instead of joined against a set of
  // unknown size.
  const result = await q.prepared<SessionRecord & { ord: number }>(
    "sessions_read",
    `SELECT k.ord::int AS ord, ${selectList(FIELDS, "s.")}
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k (namespace, session_id, ord)
       JOIN sessions s ON s.namespace = k.namespace AND s.session_id = k.session_id
      WHERE s.namespace = ANY ($1::text[]) AND s.session_id = ANY ($2::text[])`,
    [keys.map((k) => k.ns), keys.map((k) => k.sessionId)],
  );
  const found: (SessionRecord | undefined)[] = keys.map(() => undefined);
  for (const { ord, ...session } of result.rows) found[ord - 1] = session;
  return found;
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
         RETURNING ${COLUMNS}`,
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
      return inserted.rows[0];
    },
  });
}

/** An update of a session in namespace `ns` (coalesced updates mix namespaces). */
export interface NamespacedUpdate extends SessionUpdate {
  ns: string;
}

/**
 * One UPDATE for many sessions (each at most once), of any namespaces, each
 * with its own patch and version condition; undefined where a session is
 * missing or at another version. Rows are locked in (namespace, session_id)
 * order so that concurrent batches cannot deadlock each other.
 */
export async function applyUpdates(q: Queryable, updates: NamespacedUpdate[]): Promise<(SessionRecord | undefined)[]> {
  const rows = updates.map((u, ord) => ({
    ord,
    namespace: u.ns,
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
         ord int, namespace text, session_id text, status text, user_id text, labels jsonb,
         set_metadata boolean, metadata jsonb, set_state boolean, state jsonb, expected_version bigint)
     ), locked AS (
       SELECT s.namespace, s.session_id FROM sessions s JOIN p USING (namespace, session_id)
        WHERE s.namespace = ANY ($3::text[]) AND s.session_id = ANY ($2::text[])
          AND (p.expected_version IS NULL OR s.version = p.expected_version)
        ORDER BY s.namespace, s.session_id
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
     FROM p JOIN locked USING (namespace, session_id)
     WHERE s.namespace = p.namespace AND s.session_id = p.session_id
       AND s.namespace = ANY ($3::text[]) AND s.session_id = ANY ($2::text[])
       AND (p.expected_version IS NULL OR s.version = p.expected_version)
     RETURNING p.ord, ${selectList(FIELDS, "s.")}`,
    // The id and namespace arrays let the planner see how few rows the
    // recordset holds and use the primary key instead of scanning.
    [JSON.stringify(rows), updates.map((u) => u.sessionId), [...new Set(updates.map((u) => u.ns))]],
  );
  const updated: (SessionRecord | undefined)[] = updates.map(() => undefined);
  for (const { ord, ...session } of result.rows) updated[ord] = session;
  return updated;
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

/** A page in `order` after the keyset `after`; `omit`: documents left out (NULL). */
export async function listSessions(
  q: Queryable,
  ns: string,
  filter: SessionFilter,
  order: SessionOrder,
  limits: PageLimits,
  after: { time: string; sessionId: string } | undefined,
  omit: readonly SessionDocument[] = [],
): Promise<Page<SessionRecord>> {
  const result = await q.query<Paged<SessionRecord>>(listSql(order, omit), [
    ...filterParams(ns, filter),
    after?.time ?? null,
    after?.sessionId ?? null,
    limits.rows,
    limits.bytes,
  ]);
  return toPage(result.rows);
}

export async function countSessions(q: Queryable, ns: string, filter: SessionFilter): Promise<number> {
  const result = await q.query<{ count: number }>(
    `SELECT count(*)::bigint AS count FROM sessions WHERE ${FILTER_SQL}`,
    filterParams(ns, filter),
  );
  return result.rows[0]!.count;
}

export async function sessionStats(q: Queryable, ns: string, filter: SessionFilter): Promise<SessionStats> {
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
    filterParams(ns, filter),
  );
  const row = result.rows[0]!;
  return {
    total: row.total,
    byStatus: { ACTIVE: row.active, ENDED: row.ended, ERROR: row.error },
    avgDurationMicros: row.avg_duration_micros,
    oldestActiveCreateTime: row.oldest_active,
  };
}

/** A coalescer key: a session id is unique only within its namespace (which never contains NUL). */
const keyOf = (ns: string, sessionId: string) => `${ns}\u0000${sessionId}`;

/**
 * GetSession and UpdateSession calls arriving together share one statement
 * (see db/coalescer.ts): a pool-level batching of single calls, whatever
 * their namespaces; each item carries its own.
 */
export class SessionCalls {
  private readonly reads: Coalescer<SessionKey, SessionRecord | undefined>;
  private readonly updates: Coalescer<NamespacedUpdate, SessionRecord | undefined>;

  constructor(private readonly db: Database) {
    this.reads = new Coalescer((keys, signal) => readSessionKeys(db.on({ signal }), keys), {
      keyOf: (k) => keyOf(k.ns, k.sessionId),
      shareEqualKeys: true,
    });
    this.updates = new Coalescer((updates, signal) => applyUpdates(db.on({ signal }), updates), {
      keyOf: (u) => keyOf(u.ns, u.sessionId),
      shareEqualKeys: false,
    });
  }

  async get(scope: CallScope, ns: string, sessionId: string): Promise<SessionRecord> {
    const session = await this.reads.submit({ ns, sessionId }, scope.signal);
    if (!session) throw notFound("session", sessionId);
    return session;
  }

  async update(scope: CallScope, ns: string, update: SessionUpdate): Promise<SessionRecord> {
    const updated = await this.updates.submit({ ...update, ns }, scope.signal);
    if (updated) return updated;
    throw await missOrConflict(this.db.on(scope), ns, update.sessionId);
  }
}
