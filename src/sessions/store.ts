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
import { alreadyExists, CairnError, invalidField, notFound, transactionConflict, versionConflict } from "../errors.js";

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

/**
 * An RFC 7386 merge patch of the stored state, applied by the database
 * (cairn_merge_patch) to the row it has locked, so concurrent patches of
 * different keys all survive.
 */
export interface StateMerge {
  patch: JsonObject;
  /** The request field it came from, named when the merged state is too large. */
  field: string;
  /** The largest merged state allowed, in bytes of its text as PostgreSQL prints jsonb. */
  maxBytes: number;
}

/** Fields to change; undefined leaves a field as it is. */
export interface SessionPatch {
  status?: SessionStatusName;
  userId?: string;
  labels?: Record<string, string>;
  metadata?: JsonObject | null;
  state?: JsonObject | null;
  /** Merged into the stored state; never together with `state`. */
  stateMerge?: StateMerge;
}

export interface SessionUpdate {
  sessionId: string;
  patch: SessionPatch;
  /** With createIfMissing, 0 means "must not exist yet". */
  expectedVersion: number | undefined;
  /** allow_missing: the session to create (as CreateSession would) when there is none. */
  createIfMissing?: MissingSession;
}

export interface MissingSession {
  /** Created with `patch.stateMerge` merged into its state; its agent_id must equal a stored session's. */
  session: NewSession;
  /** The request field of session.agent_id, named when it differs from the stored one. */
  agentField: string;
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
  updatedAfter: string | null;
  updatedBefore: string | null;
  endedAfter: string | null;
  endedBefore: string | null;
  parentSessionId: string | null;
}

export type SessionOrderColumn = "create_time" | "update_time" | "end_time";

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

/**
 * Parameters $1..$14 of every filtered query, in this order (see
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
  AND ($9::timestamptz IS NULL OR create_time < $9)
  AND ($10::timestamptz IS NULL OR update_time > $10)
  AND ($11::timestamptz IS NULL OR update_time < $11)
  AND ($12::timestamptz IS NULL OR end_time > $12)
  AND ($13::timestamptz IS NULL OR end_time < $13)
  AND ($14::text IS NULL OR parent_session_id = $14)`;

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
    f.updatedAfter,
    f.updatedBefore,
    f.endedAfter,
    f.endedBefore,
    f.parentSessionId,
  ];
}

/** A list page's cursor (its time NULL past the sessions with an end time), row limit and byte budget, after the filter's parameters. */
const PAGE_PARAMS = { time: "$15", id: "$16", limit: "$17", budget: "$18" } as const;

/** Where a page starts: after this row of the order. */
export interface SessionCursor {
  /** The row's order column; null for a session without an end time (order_by end_time). */
  time: string | null;
  sessionId: string;
}

/**
 * A list page, built from constants only: keyset pagination on (column,
 * session_id) with the cursor, row limit and byte budget in PAGE_PARAMS
 * (see db/pages.ts). Run unnamed (q.query, not q.prepared): the
 * `$n IS NULL OR …` filters need a plan for each call's values, and a
 * generic plan would use the labels index for every filter
 * (`npx tsx bench/explain-filters.ts` prints both).
 */
function listSql(order: SessionOrder, omit: readonly SessionDocument[]): string {
  if (order.column === "end_time") return endTimeListSql(order.descending, omit);
  const { time, id, limit, budget } = PAGE_PARAMS;
  const direction = order.descending ? "DESC" : "ASC";
  const after = order.descending ? "<" : ">";
  const key = order.column === "create_time" ? "createTime" : "updateTime";
  return pagedSql({
    fields: omitting(FIELDS, omit),
    size: rowSize(SIZES, omit),
    from: `FROM sessions
      WHERE ${FILTER_SQL}
        AND (${time}::timestamptz IS NULL OR (${order.column}, session_id) ${after} (${time}, ${id}::text))`,
    order: [
      [key, direction],
      ["sessionId", direction],
    ],
    limit,
    budget,
  });
}

/**
 * order_by end_time: the sessions that ended, in (end_time, session_id)
 * order, then those without an end time, in session_id order, in both
 * directions. No one index order puts NULLs last both ways, so each group
 * is a branch of its own, read in order from sessions_end_time_idx (which
 * holds the NULLs too) and stopped at the row limit; `unended` orders the
 * branches. A cursor with a NULL time is past every ended session.
 */
function endTimeListSql(descending: boolean, omit: readonly SessionDocument[]): string {
  const { time, id, limit, budget } = PAGE_PARAMS;
  const direction = descending ? "DESC" : "ASC";
  const after = descending ? "<" : ">";
  const branch = (unended: boolean, where: string, order: string) =>
    `(SELECT *, ${unended} AS unended FROM sessions WHERE ${FILTER_SQL} AND ${where} ORDER BY ${order} LIMIT ${limit}::int + 1)`;
  const ended = branch(
    false,
    `end_time IS NOT NULL AND (${id}::text IS NULL OR (end_time, session_id) ${after} (${time}::timestamptz, ${id}::text))`,
    `end_time ${direction}, session_id ${direction}`,
  );
  const unended = branch(
    true,
    `end_time IS NULL AND (${id}::text IS NULL OR ${time}::timestamptz IS NOT NULL OR session_id ${after} ${id}::text)`,
    `session_id ${direction}`,
  );
  const fields: Fields<SessionRecord & { unended: boolean }> = { ...omitting(FIELDS, omit), unended: "unended" };
  return pagedSql({
    fields,
    size: rowSize(SIZES, omit),
    from: `FROM (${ended} UNION ALL ${unended}) AS ordered`,
    order: [
      ["unended", "ASC"],
      ["endTime", direction],
      ["sessionId", direction],
    ],
    limit,
    budget,
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

/** The row CreateSession would insert for `session`, with `statePatch` merged into its state. */
function newSessionRow(session: NewSession, statePatch: JsonObject | null): SessionRow {
  const none = { createTime: null, updateTime: null, endTime: null, parentSessionId: null, parentVersion: null };
  return { ...session, ...none, statePatch, version: null, lastMessageSequence: 0 };
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

/** An update of a session in namespace `ns` (coalesced updates mix namespaces). */
export interface NamespacedUpdate extends SessionUpdate {
  ns: string;
}

/**
 * What applyUpdates did with one update: the session as updated; the error
 * that refused it (a merged state over the limit); or undefined when the
 * session is missing or at another version (see missOrConflict).
 */
export type UpdateOutcome = SessionRecord | CairnError | undefined;

/**
 * One UPDATE for many sessions (each at most once), of any namespaces, each
 * with its own patch and version condition. Rows are locked in (namespace,
 * session_id) order so that concurrent batches cannot deadlock each other.
 * A state merge is computed from the locked row, which a concurrent update
 * can no longer change, so merges of different keys never lose each other;
 * one whose result is over its limit leaves its session as it was and the
 * others of the batch still apply. (createIfMissing is not looked at: see
 * updateSessions.)
 */
export async function applyUpdates(q: Queryable, updates: NamespacedUpdate[]): Promise<UpdateOutcome[]> {
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
    state_patch: u.patch.stateMerge?.patch ?? null,
    max_state_bytes: u.patch.stateMerge?.maxBytes ?? null,
    expected_version: u.expectedVersion ?? null,
  }));
  // SET expressions see the old row, so end_time compares old and new status.
  const result = await q.prepared<SessionRecord & { slot: number; stateTooLarge: boolean; stateBytes: number | null; ord: number }>(
    "sessions_update",
    `WITH p AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS p (
         ord int, namespace text, session_id text, status text, user_id text, labels jsonb,
         set_metadata boolean, metadata jsonb, set_state boolean, state jsonb, state_patch jsonb,
         max_state_bytes int, expected_version bigint)
     ), locked AS (
       SELECT p.ord, CASE WHEN p.state_patch IS NOT NULL THEN cairn_merge_patch(s.state, p.state_patch) END AS merged_state
         FROM sessions s JOIN p USING (namespace, session_id)
        WHERE s.namespace = ANY ($3::text[]) AND s.session_id = ANY ($2::text[])
          AND (p.expected_version IS NULL OR s.version = p.expected_version)
        ORDER BY s.namespace, s.session_id
        FOR UPDATE OF s
     ), checked AS (
       SELECT locked.ord, locked.merged_state, octet_length(locked.merged_state::text) AS state_bytes,
              coalesce(octet_length(locked.merged_state::text) > p.max_state_bytes, false) AS too_large
         FROM locked JOIN p USING (ord)
     ), updated AS (
       UPDATE sessions s SET
         status = COALESCE(p.status, s.status),
         user_id = COALESCE(p.user_id, s.user_id),
         labels = COALESCE(p.labels, s.labels),
         metadata = CASE WHEN p.set_metadata THEN p.metadata ELSE s.metadata END,
         state = CASE WHEN p.set_state THEN p.state WHEN c.merged_state IS NOT NULL THEN c.merged_state ELSE s.state END,
         end_time = CASE
           WHEN COALESCE(p.status, s.status) = 'ACTIVE' THEN NULL
           WHEN s.status = 'ACTIVE' THEN now()
           ELSE s.end_time END,
         version = s.version + 1,
         update_time = now()
       FROM p JOIN checked c USING (ord)
       WHERE s.namespace = p.namespace AND s.session_id = p.session_id AND NOT c.too_large
         AND s.namespace = ANY ($3::text[]) AND s.session_id = ANY ($2::text[])
         AND (p.expected_version IS NULL OR s.version = p.expected_version)
       RETURNING p.ord, ${selectList(FIELDS, "s.")}
     )
     SELECT c.ord AS slot, c.too_large AS "stateTooLarge", c.state_bytes AS "stateBytes", u.*
       FROM checked c LEFT JOIN updated u ON u.ord = c.ord
      WHERE c.too_large OR u.ord IS NOT NULL`,
    // The id and namespace arrays let the planner see how few rows the
    // recordset holds and use the primary key instead of scanning.
    [JSON.stringify(rows), updates.map((u) => u.sessionId), [...new Set(updates.map((u) => u.ns))]],
  );
  const outcomes: UpdateOutcome[] = updates.map(() => undefined);
  for (const { slot, stateTooLarge, stateBytes, ord: _ord, ...session } of result.rows) {
    const merge = updates[slot]!.patch.stateMerge;
    outcomes[slot] = stateTooLarge && merge ? mergedStateTooLarge(merge, stateBytes ?? 0) : session;
  }
  return outcomes;
}

/** INVALID_ARGUMENT naming the merge's field: the state it would make is over its limit. */
export function mergedStateTooLarge(merge: StateMerge, bytes: number): CairnError {
  return invalidField(merge.field, `would make the state ${bytes} bytes (as PostgreSQL prints it); the limit is ${merge.maxBytes}`);
}

/** The session as updated, or why not: the outcome's error, or a missing session or version conflict. */
async function updatedOrThrow(q: Queryable, ns: string, sessionId: string, outcome: UpdateOutcome): Promise<SessionRecord> {
  if (outcome instanceof CairnError) throw outcome;
  if (outcome) return outcome;
  throw await missOrConflict(q, ns, sessionId);
}

/** What an update needs to know of the session it is about to change. */
interface LockedSession {
  sessionId: string;
  version: number;
  agentId: string;
}

/** Locks the sessions of `ids` that exist, in id order (the order applyUpdates locks in too). */
async function lockSessions(tx: Queryable, ns: string, ids: string[]): Promise<Map<string, LockedSession>> {
  const locked = await tx.query<LockedSession>(
    `SELECT session_id AS "sessionId", version, agent_id AS "agentId" FROM sessions
      WHERE namespace = $1 AND session_id = ANY ($2::text[])
      ORDER BY session_id
      FOR UPDATE`,
    [ns, ids],
  );
  return new Map(locked.rows.map((row) => [row.sessionId, row]));
}

/** Why `update` cannot apply to the session as it is (undefined when it does not exist), if it cannot. */
function refusal(update: SessionUpdate, current: LockedSession | undefined): CairnError | undefined {
  const { sessionId, expectedVersion, createIfMissing } = update;
  if (!current) {
    if (!createIfMissing) return notFound("session", sessionId);
    // Creating is a change from "no version": only 0 ("must not exist") matches it.
    return expectedVersion !== undefined && expectedVersion !== 0 ? versionConflict("session", sessionId, 0) : undefined;
  }
  if (expectedVersion !== undefined && expectedVersion !== current.version) return versionConflict("session", sessionId, current.version);
  if (createIfMissing && createIfMissing.session.agentId !== current.agentId) {
    return invalidField(createIfMissing.agentField, `differs from the session's agent_id ${JSON.stringify(current.agentId)}`);
  }
  return undefined;
}

/**
 * Applies updates to distinct sessions of one namespace, all or none
 * (BatchUpdateSessions, an allow_missing UpdateSession, Commit), and
 * returns the sessions in `updates` order. Every session named is locked
 * first, in id order, so concurrent batches do not deadlock and the checks
 * hold until commit. A missing session with createIfMissing is inserted;
 * when a concurrent upsert inserted it first, it is locked and updated
 * instead, so two upserts of a new id never fail with ALREADY_EXISTS.
 */
export function updateSessions(q: Queryable, ns: string, updates: SessionUpdate[]): Promise<SessionRecord[]> {
  return q.atomic(async (tx) => {
    const current = await lockSessions(tx, ns, updates.map((u) => u.sessionId));
    for (const u of updates) {
      const refused = refusal(u, current.get(u.sessionId));
      if (refused) throw refused;
    }
    const missing = updates.filter((u) => !current.has(u.sessionId));
    const created =
      missing.length === 0
        ? new Map<string, SessionRecord>()
        : await insertSessions(
            tx,
            ns,
            missing.map((u) => newSessionRow(u.createIfMissing!.session, u.patch.stateMerge?.patch ?? null)),
          );
    const lost = missing.filter((u) => !created.has(u.sessionId));
    if (lost.length > 0) {
      const now = await lockSessions(tx, ns, lost.map((u) => u.sessionId));
      for (const u of lost) {
        const session = now.get(u.sessionId);
        if (!session) throw transactionConflict(`session ${JSON.stringify(u.sessionId)} was created and deleted concurrently; retry`);
        const refused = refusal(u, session);
        if (refused) throw refused;
      }
    }
    const changes = updates.filter((u) => !created.has(u.sessionId));
    const outcomes = changes.length === 0 ? [] : await applyUpdates(tx, changes.map((u) => ({ ...u, ns })));
    const updated = new Map(created);
    for (const [i, u] of changes.entries()) updated.set(u.sessionId, await updatedOrThrow(tx, ns, u.sessionId, outcomes[i]));
    return updates.map((u) => updated.get(u.sessionId)!);
  });
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
  after: SessionCursor | undefined,
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
  private readonly updates: Coalescer<NamespacedUpdate, UpdateOutcome>;

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

  /** One update without createIfMissing (that one needs updateSessions). */
  async update(scope: CallScope, ns: string, update: SessionUpdate): Promise<SessionRecord> {
    const outcome = await this.updates.submit({ ...update, ns }, scope.signal);
    return updatedOrThrow(this.db.on(scope), ns, update.sessionId, outcome);
  }
}
