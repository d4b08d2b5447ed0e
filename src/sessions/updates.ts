// SQL for the update path (UpdateSession, BatchUpdateSessions, Commit):
// applyUpdates, one statement for many sessions of any namespaces (single
// calls coalesced in coalesced.ts share it), and updateSessions, all or
// none, with the allow_missing upserts. Also the state merge
// (state_patch) that AppendMessages shares. Touches the sessions table
// only; a missing session is inserted through store.ts.
import { type Fields, selectList } from "../db/columns.js";
import type { Queryable } from "../db/database.js";
import { CairnError, invalidField, notFound, transactionConflict, versionConflict } from "../errors.js";
import {
  FIELDS,
  insertSessions,
  type JsonObject,
  missOrConflict,
  type NewSession,
  type SessionRecord,
  type SessionRow,
  type SessionStatusName,
} from "./store.js";

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

/** The row CreateSession would insert for `session`, with `statePatch` merged into its state. */
function newSessionRow(session: NewSession, statePatch: JsonObject | null): SessionRow {
  const none = { createTime: null, updateTime: null, endTime: null, parentSessionId: null, parentVersion: null };
  return { ...session, ...none, statePatch, version: null, lastMessageSequence: 0 };
}

/**
 * The updated row, but the documents the update wrote are echoed from it
 * rather than read back (as CreateSession does, see store.ts
 * CREATED_COLUMNS); a merged state is read back.
 */
const UPDATED_FIELDS: Fields<SessionRecord> = {
  ...FIELDS,
  metadata: (t) => `CASE WHEN p.set_metadata THEN NULL ELSE ${t}metadata END`,
  state: (t) => `CASE WHEN p.set_state THEN NULL ELSE ${t}state END`,
};

function withWrittenDocuments(row: SessionRecord, patch: SessionPatch): SessionRecord {
  if (patch.metadata !== undefined) row.metadata = patch.metadata;
  if (patch.state !== undefined) row.state = patch.state;
  return row;
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
       -- The merged state is measured once (OFFSET 0 keeps the planner from copying the expression into both uses).
       SELECT ord, merged_state, state_bytes, coalesce(state_bytes > max_state_bytes, false) AS too_large
         FROM (SELECT locked.ord, locked.merged_state, octet_length(locked.merged_state::text) AS state_bytes, p.max_state_bytes
                 FROM locked JOIN p USING (ord) OFFSET 0) AS sized
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
       RETURNING p.ord, ${selectList(UPDATED_FIELDS, "s.")}
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
    outcomes[slot] = stateTooLarge && merge ? mergedStateTooLarge(merge, stateBytes ?? 0) : withWrittenDocuments(session, updates[slot]!.patch);
  }
  return outcomes;
}

/** INVALID_ARGUMENT naming the merge's field: the state it would make is over its limit. */
export function mergedStateTooLarge(merge: StateMerge, bytes: number): CairnError {
  return invalidField(merge.field, `would make the state ${bytes} bytes (as PostgreSQL prints it); the limit is ${merge.maxBytes}`);
}

/** The session as updated, or why not: the outcome's error, or a missing session or version conflict. */
export async function updatedOrThrow(q: Queryable, ns: string, sessionId: string, outcome: UpdateOutcome): Promise<SessionRecord> {
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
