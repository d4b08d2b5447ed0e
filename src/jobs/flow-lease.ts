// Leasing a queue under flow control (its QueueConfig, queue-config.ts).
//
// A queue without a controlled config keeps the one-statement lease of
// store.ts (its only addition: it leases nothing from a controlled queue).
// A controlled queue's lease is one call of the PL/pgSQL function
// cairn_flow_lease (migrations/1763801500000_flow_control_speed.sql): one
// round trip, one transaction, in these steps, each a statement of its own:
//
//   1. Take the queue's lease lock (a transaction-level advisory lock on a
//      hash of namespace and queue), in the mode the config (read just
//      before) asks for: exclusive when it sets a queue-wide limit
//      (max_running, or a QUEUE rate limit): every lease of the queue, on
//      every replica, then takes its turn. Otherwise shared: leases run side
//      by side. Then read the config again, under the lock: that is the
//      config the lease obeys.
//   2. Only under a shared hold with per-group limits (max_running_per_group,
//      or a GROUP rate limit): take a transaction-level advisory lock on
//      each group the lease will take from, in serving order, skipping
//      groups another lease holds and groups without room (as a snapshot
//      from before these locks sees them), until the groups taken have room
//      enough for the batch. So leases take turns per group, and leases of
//      different groups run side by side.
//   3. Count what the limits count (RUNNING jobs of the queue and of each
//      group, tokens spent in the rate window), lease at most the room
//      left, and record the tokens spent. The lease's time (the jobs'
//      update_time, the spends' time) is read in the leasing statement,
//      after the counts: a finish the counts missed began after it.
//   4. The call's transaction commits, which releases the locks.
//
// Why the limits are never exceeded, even for a moment:
//  - The function is VOLATILE, so under READ COMMITTED each of its
//    statements takes a fresh snapshot when it starts: the counts of step
//    3, made after the locks were granted, see everything committed by
//    those who held them before: every earlier lease of the queue (under
//    the exclusive hold), or of each group it leases from (under a group's
//    lock). (One SQL statement could not do this: its snapshot is taken
//    before the locks it takes.)
//  - Only a lease makes a job RUNNING. A queue-wide count is only kept
//    under the exclusive hold, which no other lease of the queue holds at
//    the same time (shared holds conflict with it); a group's count, also
//    under that group's lock, which the lease holds for every group it
//    leases from. Everything else only lowers the counts (complete, fail,
//    cancel, give-back, the rescue of an expired lease); a job whose finish
//    has not committed yet is still counted, which errs on the side of the
//    limit. An expired lease not yet rescued is counted too: its worker
//    may still be running it. A retry is a new lease, made like any other.
//  - A change of the config (queue-config.ts) takes the queue's lease lock
//    exclusive before it writes, so it waits for every lease in flight, and
//    a lease that starts later reads the changed config under its lock. A
//    lease that chose a shared hold (from a read before its lock) and then
//    finds a queue-wide limit leases nothing and is called again ('again').
//  - The one lease outside all this is store.ts's fast path, and it leases
//    only while the queue is not controlled. A queue becomes controlled in
//    an UpdateQueueConfig that first takes ACCESS EXCLUSIVE on
//    queue_configs (queue-config.ts). The fast path reads queue_configs, so
//    it holds ACCESS SHARE on it until it commits, and PostgreSQL takes a
//    statement's table locks before its snapshot. So a fast-path lease that
//    did not see the config had its lock before the update did: it
//    committed before the config did, and every controlled lease counts
//    what it leased.
//  - Queue and group locks are advisory locks on 32-bit hashes: two queues
//    (or groups) sharing a hash only make their leases take turns.
//  - Rate limits: tokens spent are a log (queue_rate_spends), written at a
//    time read under the locks that cover the bucket (so in lock order),
//    and a lease takes at most `count` minus what was spent after its time
//    (its count's, no later than its spend's) less `period`. Any window of
//    length `period` therefore holds at most `count` leases: a token bucket
//    of `count` tokens, each coming back `period` after it was spent.
//    Spends that left the window are dropped only under those locks too.
//
// Running counts are derived from the jobs table (jobs_group_running_idx),
// never kept in counters that could drift from it.
//
// Fair leasing picks groups round-robin: the groups with runnable work,
// starting after the one served last (queue_fair_cursors), each offering
// its jobs by priority; the batch takes the first of every group, then the
// second, and so on. Without `fair`, leases keep the priority order across
// the groups they take from, preferring the groups whose best job is best.
// Both find the groups by a skip scan of jobs_group_waiting_idx (one index
// probe per group, the fair rotation only as far as the batch needs), so a
// group's large backlog is never scanned.
import type { Queryable } from "../db/database.js";
import { selectList } from "../db/columns.js";
import { FIELDS, type JobRecord, type Lease } from "./store.js";

export interface ControlledLease {
  leases: Lease[];
  /** When to look again though nothing was announced: a rate-limit token comes back, or a group another lease held is free. */
  retryInMs: number | null;
}

type Outcome = "leased" | "done" | "uncontrolled" | "again";
type LeaseRow = JobRecord & { leaseToken: string; outcome: Outcome; retryMs: number | null };

/** The function's rows in its order: the leases, then one row with the outcome (see the migration). */
const LEASE_SQL = `
  SELECT ${selectList(FIELDS, "(r.leased_job).")}, (r.leased_job).lease_token AS "leaseToken", r.outcome, r.retry_ms AS "retryMs"
    FROM cairn_flow_lease($1, $2, $3, $4, $5) WITH ORDINALITY AS r
   ORDER BY r.ordinality`;

/** How often a lease may be told 'again' (its queue's config changing under it) before it gives up for now. */
const AGAIN_LIMIT = 3;

/**
 * Leases under the queue's config (the header's steps); undefined when the
 * queue is not controlled (then store.ts's lease applies).
 */
export async function leaseControlled(
  q: Queryable,
  ns: string,
  queue: string,
  workerId: string,
  max: number,
  leaseMs: number,
): Promise<ControlledLease | undefined> {
  for (let attempt = 1; ; attempt++) {
    const { rows } = await q.prepared<LeaseRow>("queue_flow_lease", LEASE_SQL, [ns, queue, workerId, max, leaseMs]);
    const last = rows[rows.length - 1]!;
    if (last.outcome === "uncontrolled") return undefined;
    if (last.outcome === "again" && attempt < AGAIN_LIMIT) continue;
    const leases = rows.slice(0, -1).map(({ leaseToken, outcome, retryMs, ...job }) => ({ job, leaseToken }));
    return { leases, retryInMs: last.outcome === "again" ? 0 : last.retryMs };
  }
}
