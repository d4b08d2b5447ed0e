// The locks a Commit takes before its operations need them, in one global
// order, so that concurrent commits never deadlock, whatever order their
// operations come in.
//
// Why an order is needed. Each operation runs its single method's own store
// code, which takes its locks as it goes: a Put takes its key's advisory
// lock, the entry's row and the one kv_revisions row (held to commit, so
// that revisions become visible in commit order); an AppendEvents an offset
// slot and its traces' head rows; an update of a session its row; a
// CompleteJob its job's row. Run in request order, a commit "Put k,
// AppendEvents t" holds kv_revisions while it waits for t's head, and a
// concurrent "AppendEvents t, Put j" holds t's head while it waits for
// kv_revisions: a deadlock.
//
// The plan. Every lock an operation or condition of the commit will take is
// taken here first, class by class, each class in sorted order:
//
//   0. an offset slot, if the commit appends events (traces/store.ts
//      holdOffsetSlot): a free one is taken without waiting; only when all
//      are busy does it wait, and then, being first, it holds nothing;
//      a reader of settled offsets waits on the slots holding none itself;
//   1. advisory locks on the names of what the commit may create (session,
//      resolution and job ids, dedupe keys, request ids): two commits
//      inserting the same unique keys in opposite orders would otherwise
//      each wait for the other's uncommitted row;
//   2. advisory locks on the KV keys, the very locks Put and Increment take
//      (keyvalue/writes.ts lockEntryKeys), in hash order;
//   3. session rows, by session_id;
//   4. trace head rows, by trace_id in byte order (created when missing, as
//      an append does: traces/store.ts lockHeads);
//   5. KV entry rows, by key;
//   6. the revision counter, kv_revisions;
//   7. job rows, by job_id.
//
// Classes 0 to 5 are taken before the first operation; 6 and 7 just before
// the first operation (or condition) that may take one of them: the ones
// before it take no lock the plan has not taken (their classes are all
// below 6). A commit needing the counter and no job row leaves the counter
// to the operation that needs it, which then holds nothing ranked above it.
// Each operation takes its other locks again, which costs nothing and
// waits for nothing: advisory and row locks are re-entrant within a
// transaction. So whenever a commit waits, it is for a lock ranked after
// every lock it holds.
//
// Proof. Rank locks by that order (class, then key). Commits acquire locks
// in increasing rank. If commits waited for each other in a cycle, each
// would wait for a lock ranked above one it holds, and going around the
// cycle the ranks would increase back to where they started: impossible.
// The single methods fit the same ranking, so commits and single calls do
// not deadlock either: Put and Increment take 2, 5, 6; Delete 5, 6;
// AppendEvents 0, 4; UpdateSession, BatchUpdateSessions and AppendMessages
// 3; the job methods 7; DeleteSession 3 (its row), then in its cascade 4
// (the heads of its traces), 5 and 6 (its entries and kv_revisions) and 7
// (its unfinished jobs). That is also why sessions rank before traces and
// entries, and jobs after the counters.
//
// What the ranking does not cover, each resolved by PostgreSQL's deadlock
// detector (one transaction fails, ABORTED TRANSACTION_CONFLICT; a retry
// succeeds): a DeleteSession's cascade locks what it finds when it runs;
// the plan locks what the session holds when the commit starts
// (discoverCascade), so a trace, entry or job that comes to belong to the
// session in between is locked out of rank; a single DeleteSession's
// cascade locks its entries and jobs in the order it finds them, not by
// key; a completed or failed job's dependants (jobs/dependencies.ts) are
// locked by that operation itself; and the single batch creates
// (BatchCreateSessions, BatchEnqueueJobs, coalesced EnqueueJobs) insert
// client-chosen ids and dedupe keys without class 1, so against them only
// the unique indexes order the waits.
import type { Queryable } from "../db/database.js";
import { lockEntryKeys } from "../keyvalue/writes.js";
import { holdOffsetSlot, lockHeads } from "../traces/store.js";

/**
 * The first key of class 1's advisory locks: the two-key form of
 * pg_advisory_xact_lock has a key space of its own, apart from the bigint
 * locks of KV keys and of the background loops (reaper.ts).
 */
const CREATION_LOCK_CLASS = 0x43415458; // "CATX"

/**
 * What a commit's operations and conditions will lock, collected while they
 * are validated. An empty id (a required one left out) is not recorded: the
 * commit is refused before it runs.
 */
export class LockPlan {
  private readonly creations = new Set<string>();
  private readonly keys = new Set<string>();
  private readonly sessions = new Set<string>();
  private readonly traces = new Set<string>();
  private readonly jobs = new Set<string>();
  private readonly deletedSessions = new Set<string>();
  private revisions = false;
  private appends = false;

  /**
   * An id of `kind` the commit may create (a session, a dedupe key, a
   * request id...), when the client chose it: a generated UUIDv7 meets no one.
   */
  creation(kind: string, id: string): void {
    if (id) this.creations.add(`${kind}:${id}`);
  }

  /** A KV key written (Put, Delete, Increment) or checked. */
  entry(key: string, writes: boolean): void {
    if (key) this.keys.add(key);
    this.revisions ||= writes;
  }

  session(sessionId: string): void {
    if (sessionId) this.sessions.add(sessionId);
  }

  /** A session deleted: its row, and what its cascade will lock (see discoverCascade). */
  deletedSession(sessionId: string): void {
    if (!sessionId) return;
    this.sessions.add(sessionId);
    this.deletedSessions.add(sessionId);
    // Its entries are deleted under kv_revisions.
    this.revisions = true;
  }

  /** A trace appended to. */
  trace(traceId: string): void {
    if (!traceId) return;
    this.traces.add(traceId);
    this.appends = true;
  }

  job(jobId: string): void {
    if (jobId) this.jobs.add(jobId);
  }

  /**
   * Takes classes 0 to 5 of the plan now, in rank order (see the top of
   * this file), in the caller's transaction, and returns what takes classes
   * 6 and 7 (the counter, then the job rows), once: the commit calls it
   * before the first operation or condition that may take one of those.
   * Until then operations take no lock the plan does not hold already, so
   * locks are still taken in rank order; and a commit whose first
   * operations need no counter (a session update before a Put) does not
   * make every writer of entries or events wait while they run.
   */
  async acquire(tx: Queryable, ns: string): Promise<() => Promise<void>> {
    const cascade = await discoverCascade(tx, ns, [...this.deletedSessions]);
    const keys = [...new Set([...this.keys, ...cascade.keys])];
    const traces = [...new Set([...this.traces, ...cascade.traces])].sort();
    const jobs = [...new Set([...this.jobs, ...cascade.jobs])];
    if (this.appends) await holdOffsetSlot(tx);
    if (this.creations.size > 0) await lockCreations(tx, ns, [...this.creations]);
    if (keys.length > 0) await lockEntryKeys(tx, ns, keys);
    if (this.sessions.size > 0) await lockRows(tx, "sessions", "session_id", ns, [...this.sessions]);
    if (traces.length > 0) await lockHeads(tx, ns, traces);
    if (keys.length > 0) await lockRows(tx, "kv_entries", "key", ns, keys);
    // With no job row there is nothing left to order: the operation that first needs the counter
    // takes it, holding nothing ranked above it, and holds it for less of the commit.
    let pending = jobs.length > 0;
    return async () => {
      if (!pending) return;
      pending = false;
      if (this.revisions) await tx.query(`SELECT last_revision FROM kv_revisions FOR NO KEY UPDATE`);
      if (jobs.length > 0) await lockRows(tx, "jobs", "job_id", ns, jobs);
    };
  }
}

/** Class 1: advisory locks on the names of what the commit may create, in hash order. */
async function lockCreations(tx: Queryable, ns: string, names: string[]): Promise<void> {
  await tx.query(
    `SELECT pg_advisory_xact_lock($1::int, h) FROM (
       SELECT DISTINCT hashtext($2 || ':' || n) AS h FROM unnest($3::text[]) AS c (n) ORDER BY 1) AS hashes`,
    [CREATION_LOCK_CLASS, ns, names],
  );
}

/**
 * Rows of one namespace locked FOR UPDATE in key order (the sort happens
 * below the row locking, so the locks are taken in that order); absent ones
 * are skipped. Table and column names are constants of this file.
 */
async function lockRows(tx: Queryable, table: "sessions" | "kv_entries" | "jobs", column: string, ns: string, ids: string[]): Promise<void> {
  await tx.query(`SELECT ${column} FROM ${table} WHERE namespace = $1 AND ${column} = ANY ($2::text[]) ORDER BY ${column} FOR UPDATE`, [
    ns,
    ids,
  ]);
}

interface Cascade {
  keys: string[];
  traces: string[];
  jobs: string[];
}

/**
 * What deleting these sessions will lock in the other stores, as it is now:
 * the heads of the traces that hold their events (traces/store.ts
 * onSessionsDeleted decides which of them go), their session-scoped
 * entries and their unfinished jobs.
 */
async function discoverCascade(tx: Queryable, ns: string, sessionIds: string[]): Promise<Cascade> {
  if (sessionIds.length === 0) return { keys: [], traces: [], jobs: [] };
  const result = await tx.query<Cascade>(
    `SELECT
       ARRAY(SELECT key FROM kv_entries WHERE namespace = $1 AND session_id = ANY ($2::text[])) AS keys,
       ARRAY(SELECT trace_id FROM trace_heads
              WHERE namespace = $1
                AND trace_id IN (SELECT trace_id FROM trace_events WHERE namespace = $1 AND session_id = ANY ($2::text[]))) AS traces,
       ARRAY(SELECT job_id FROM jobs
              WHERE namespace = $1 AND session_id = ANY ($2::text[])
                AND state NOT IN ('SUCCEEDED', 'DEAD', 'CANCELLED')) AS jobs`,
    [ns, sessionIds],
  );
  return result.rows[0]!;
}
