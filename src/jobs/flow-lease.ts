// Leasing a queue under flow control (its QueueConfig, queue-config.ts).
//
// A queue without a controlled config keeps the one-statement lease of
// store.ts (its only addition: it leases nothing from a controlled queue).
// A controlled queue's lease is a transaction here:
//
//   1. Lock the queue's config row: FOR UPDATE when the config sets a
//      queue-wide limit (max_running, or a QUEUE rate limit): every lease of
//      the queue, on every replica, then takes its turn. Otherwise FOR
//      SHARE: leases run side by side, and a change of the config waits
//      until they are done.
//   2. Only under FOR SHARE with per-group limits (max_running_per_group, or
//      a GROUP rate limit): take a transaction-level advisory lock on each
//      group the lease will take from, skipping groups another lease holds,
//      until the groups taken have room enough for the batch. So leases
//      take turns per group, and leases of different groups run side by
//      side.
//   3. One statement that counts what the limits count (RUNNING jobs of the
//      queue and of each group, tokens spent in the rate window), leases at
//      most the room left, and records the tokens it spent.
//   4. COMMIT, which releases the locks.
//
// Why the limits are never exceeded, even for a moment:
//  - Under READ COMMITTED each statement takes its snapshot when it starts,
//    so statement 3, starting after its locks were granted, sees everything
//    committed by those who held them before: every earlier lease of the
//    queue (under FOR UPDATE), or of each group it leases from (under a
//    group's lock).
//  - Only a lease makes a job RUNNING. A queue-wide count is only kept under
//    FOR UPDATE, which no other lease of the queue holds at the same time
//    (FOR SHARE conflicts with it); a group's count, also under that
//    group's lock, which the lease holds for every group it leases from.
//    Everything else only lowers the counts (complete, fail, cancel,
//    give-back, the rescue of an expired lease); a job whose finish has not
//    committed yet is still counted, which errs on the side of the limit.
//    An expired lease not yet rescued is counted too: its worker may still
//    be running it. A retry is a new lease, made like any other.
//  - A lease reads the config it counts against in step 1, under its lock,
//    so a config change (which updates the row) is either seen or waits for
//    the lease's commit. A lease that guessed FOR SHARE (the hint of the
//    queue's last lease) and finds a queue-wide limit leases nothing and
//    starts over FOR UPDATE.
//  - The one lease outside all this is store.ts's fast path, and it leases
//    only while the queue is not controlled. A queue becomes controlled in
//    an UpdateQueueConfig that first takes ACCESS EXCLUSIVE on
//    queue_configs (queue-config.ts). The fast path reads queue_configs, so
//    it holds ACCESS SHARE on it until it commits, and PostgreSQL takes a
//    statement's table locks before its snapshot. So a fast-path lease that
//    did not see the config had its lock before the update did: it
//    committed before the config did, and every controlled lease counts
//    what it leased.
//  - Group locks are advisory locks on a hash of (namespace, queue, group):
//    two groups sharing a hash only make their leases take turns.
//  - Rate limits: tokens spent are a log (queue_rate_spends), written in the
//    leasing statement at a time read under the lock that covers the
//    bucket (so in lock order), and a lease takes at most `count` minus what
//    the last `period` spent. Any window of length `period` therefore holds
//    at most `count` leases: a token bucket of `count` tokens, each coming
//    back `period` after it was spent.
//
// Running counts are derived from the jobs table (jobs_group_running_idx),
// never kept in counters that could drift from it.
//
// Fair leasing picks groups round-robin: the groups with waiting work,
// starting after the one served last (queue_fair_cursors), each offering
// its jobs by priority; the batch takes the first of every group, then the
// second, and so on. Without `fair`, leases keep the priority order across
// the groups they take from, preferring the groups whose best job is best.
// Both look at each group through jobs_group_waiting_idx, so a group's
// large backlog is never scanned.
import type { Queryable } from "../db/database.js";
import { selectList } from "../db/columns.js";
import { configColumns, type QueueConfigRecord, type QueueConfigSettings } from "./queue-config.js";
import { FIELDS, type JobRecord, type Lease } from "./store.js";

/** How a lease holds its queue's config row: FOR UPDATE (queue-wide limits) or FOR SHARE. */
export type LockMode = "exclusive" | "shared";

export interface ControlledLease {
  leases: Lease[];
  /** When to look again though nothing was announced: a rate-limit token comes back, or a group another lease held is free. */
  retryInMs: number | null;
  /** How the next lease of the queue should lock its config. */
  mode: LockMode;
}

/** A config row as a lease reads it under its lock. */
interface LockedConfig extends QueueConfigRecord {
  controlled: boolean;
  fairCursor: string | null;
}

type LeaseRow = JobRecord & { leaseToken: string };

const WAITING = `state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING')`;
/** Names Cairn's per-group lease locks among two-key advisory locks (the first key). */
const GROUP_LOCK_CLASS = 0x43414955;
/** How soon to look again when groups with room were held by other leases (they hold them for a statement). */
const HELD_GROUPS_RETRY_MS = 10;

/**
 * Leases under the queue's config (the header's steps), holding the config
 * row in `mode` (a guess from the queue's last lease: a shared hold that
 * finds a queue-wide limit starts over exclusive); undefined when the queue
 * is not controlled (then store.ts's lease applies).
 */
export async function leaseControlled(
  q: Queryable,
  ns: string,
  queue: string,
  workerId: string,
  max: number,
  leaseMs: number,
  mode: LockMode,
): Promise<ControlledLease | undefined> {
  const outcome = await q.atomic(async (tx) => {
    const config = await lockConfig(tx, ns, queue, mode);
    if (!config?.controlled) return undefined;
    if (mode === "shared" && lockModeFor(config) === "exclusive") return "exclusive" as const;
    return { config, ...(await leaseUnder(tx, { ns, queue, workerId, max, leaseMs }, config, mode)) };
  });
  if (outcome === "exclusive") return leaseControlled(q, ns, queue, workerId, max, leaseMs, "exclusive");
  if (!outcome) return undefined;
  const { leases, config, heldElsewhere } = outcome;
  let retryInMs: number | null = null;
  if (leases.length < max && config.rateLimit) retryInMs = await nextTokenInMs(q, ns, queue, config.rateLimit.periodMs);
  if (leases.length < max && heldElsewhere) retryInMs = Math.min(retryInMs ?? HELD_GROUPS_RETRY_MS, HELD_GROUPS_RETRY_MS);
  return { leases, retryInMs, mode: lockModeFor(config) };
}

/** Queue-wide limits are counted under an exclusive hold; per-group ones under group locks; fairness needs neither. */
const lockModeFor = (c: QueueConfigSettings): LockMode => (c.maxRunning > 0 || c.rateLimit?.scope === "QUEUE" ? "exclusive" : "shared");
const hasGroupLimits = (c: QueueConfigSettings) => c.maxRunningPerGroup > 0 || c.rateLimit?.scope === "GROUP";

const lockSql = (strength: "UPDATE" | "SHARE") =>
  `SELECT ${configColumns("c.")}, c.controlled, f.group_key AS "fairCursor"
     FROM queue_configs c LEFT JOIN queue_fair_cursors f ON f.namespace = c.namespace AND f.queue = c.queue
    WHERE c.namespace = $1 AND c.queue = $2
      FOR ${strength} OF c`;

async function lockConfig(tx: Queryable, ns: string, queue: string, mode: LockMode): Promise<LockedConfig | undefined> {
  const result = await tx.prepared<LockedConfig>(`queue_config_lock_${mode}`, lockSql(mode === "exclusive" ? "UPDATE" : "SHARE"), [ns, queue]);
  return result.rows[0];
}

interface LeaseAsk {
  ns: string;
  queue: string;
  workerId: string;
  max: number;
  leaseMs: number;
}

/** Steps 2 and 3 for the config's shape; heldElsewhere: groups with room were skipped, held by other leases. */
async function leaseUnder(tx: Queryable, ask: LeaseAsk, c: LockedConfig, mode: LockMode): Promise<{ leases: Lease[]; heldElsewhere: boolean }> {
  const { ns, queue, workerId, max, leaseMs } = ask;
  const rate = c.rateLimit;
  const base = [ns, queue, max, workerId, leaseMs];
  const rateParams = [rate?.count ?? 0, rate?.periodMs ?? 0, rate?.scope ?? "QUEUE"];
  if (mode === "shared" && hasGroupLimits(c)) {
    const { groups, skipped } = await lockGroups(tx, ask, c);
    if (groups.length === 0) return { leases: [], heldElsewhere: skipped > 0 };
    const sql = c.fair ? FAIR_IN_GROUPS_SQL : PRIORITY_IN_GROUPS_SQL;
    const rows = await tx.prepared<LeaseRow>(`queue_lease_in_groups_${c.fair}`, sql, [...base, c.maxRunningPerGroup, ...rateParams, groups]);
    return { leases: toLeases(rows.rows, !c.fair), heldElsewhere: skipped > 0 };
  }
  if (c.fair) {
    const rows = await tx.prepared<LeaseRow>("queue_lease_fair", FAIR_LEASE_SQL, [...base, c.maxRunning, c.maxRunningPerGroup, ...rateParams, c.fairCursor]);
    return { leases: toLeases(rows.rows, false), heldElsewhere: false };
  }
  if (hasGroupLimits(c)) {
    const rows = await tx.prepared<LeaseRow>("queue_lease_by_group", PRIORITY_LEASE_SQL, [...base, c.maxRunning, c.maxRunningPerGroup, ...rateParams]);
    return { leases: toLeases(rows.rows, true), heldElsewhere: false };
  }
  const rows = await tx.prepared<LeaseRow>("queue_lease_by_queue", QUEUE_LEASE_SQL, [...base, c.maxRunning, rate?.count ?? 0, rate?.periodMs ?? 0]);
  return { leases: toLeases(rows.rows, true), heldElsewhere: false };
}

/** Rows as leases; by priority where the SQL did not order them (UPDATE ... RETURNING has no order). */
function toLeases(rows: LeaseRow[], byPriority: boolean): Lease[] {
  const leases = rows.map(({ leaseToken, ...job }) => ({ job, leaseToken }));
  return byPriority
    ? leases.sort((a, b) => b.job.priority - a.job.priority || a.job.runTime.localeCompare(b.job.runTime) || a.job.jobId.localeCompare(b.job.jobId))
    : leases;
}

/**
 * The queue's room: max ($3), less what a max_running and a QUEUE rate
 * limit leave (pass "0" for none); 0 while paused. Needs the `clock` CTE.
 */
const queueRoomSql = (maxRunning: string, rateCount: string, periodMs: string, scope: string) => `
  SELECT CASE WHEN EXISTS (SELECT 1 FROM job_queues p WHERE p.namespace = $1 AND p.queue = $2 AND p.paused) THEN 0
         ELSE greatest(0, least($3::int,
           CASE WHEN ${maxRunning}::int > 0
                THEN ${maxRunning} - (SELECT count(*)::int FROM jobs r WHERE r.namespace = $1 AND r.queue = $2 AND r.state = 'RUNNING') END,
           CASE WHEN ${rateCount}::int > 0 AND ${scope}::text = 'QUEUE'
                THEN ${rateCount} - (SELECT coalesce(sum(s.spent), 0)::int FROM queue_rate_spends s, clock
                                      WHERE s.namespace = $1 AND s.queue = $2 AND s.scope = 'QUEUE' AND s.group_key = ''
                                        AND s.spend_time > clock.t - ${periodMs}::bigint * interval '1 millisecond') END))
         END AS n`;

/** A group's room (`g.group_key`): the queue's, less what a per-group limit and a GROUP rate limit leave. */
const groupRoomSql = (perGroup: string, rateCount: string, periodMs: string, scope: string) => `
  least((SELECT n FROM room),
    CASE WHEN ${perGroup}::int > 0
         THEN ${perGroup} - (SELECT count(*)::int FROM jobs c
                              WHERE c.namespace = $1 AND c.queue = $2 AND c.group_key = g.group_key AND c.state = 'RUNNING') END,
    CASE WHEN ${rateCount}::int > 0 AND ${scope}::text = 'GROUP'
         THEN ${rateCount} - (SELECT coalesce(sum(s.spent), 0)::int FROM queue_rate_spends s, clock
                               WHERE s.namespace = $1 AND s.queue = $2 AND s.scope = 'GROUP' AND s.group_key = g.group_key
                                 AND s.spend_time > clock.t - ${periodMs}::bigint * interval '1 millisecond') END)`;

/**
 * Spends a token per lease (in the queue's bucket, or each group's) and
 * drops the spends of `pruning` (a condition on `s`) that left the window
 * (none without a rate limit: leases that run side by side must not contend
 * for them).
 */
const spendSql = (rateCount: string, periodMs: string, scope: string, pruning: string) => `
  spent AS (
    INSERT INTO queue_rate_spends (namespace, queue, scope, group_key, spend_time, spent)
    SELECT $1, $2, ${scope}, CASE WHEN ${scope} = 'GROUP' THEN l."groupKey" ELSE '' END, clock.t, count(*)
      FROM leased l, clock WHERE ${rateCount}::int > 0 GROUP BY 4, clock.t
    ON CONFLICT (namespace, queue, scope, group_key, spend_time) DO UPDATE SET spent = queue_rate_spends.spent + EXCLUDED.spent
    RETURNING 1
  ),
  pruned AS (
    DELETE FROM queue_rate_spends s USING clock
     WHERE s.namespace = $1 AND s.queue = $2 AND ${pruning}
       AND ${rateCount}::int > 0 AND s.spend_time <= clock.t - ${periodMs}::bigint * interval '1 millisecond'
    RETURNING 1
  )`;

/**
 * The lease's UPDATE of the rows `picked` locked; the job's update_time is
 * the time read under the lock (the rate limit's clock). Rows are found by
 * an array of ids, so by primary key (a join with the CTE, whose size the
 * planner cannot know, may become a scan of every job).
 */
const leaseUpdateSql = (picked: string) => `
  leased AS (
    UPDATE jobs j SET state = 'RUNNING', attempt = j.attempt + 1, worker_id = $4, lease_token = gen_random_uuid(),
           lease_expire_time = clock.t + $5::bigint * interval '1 millisecond', update_time = clock.t
      FROM clock WHERE j.namespace = $1 AND j.job_id = ANY (ARRAY(SELECT job_id FROM ${picked}))
    RETURNING ${selectList(FIELDS, "j.")}, j.lease_token AS "leaseToken"
  )`;

/** Moves the fair cursor to the last group served, unless another lease is moving it just then. */
const MOVE_CURSOR_SQL = `
  moved AS (
    UPDATE queue_fair_cursors f SET group_key = (SELECT c.group_key FROM chosen c JOIN leased l ON l."jobId" = c.job_id ORDER BY c.ord DESC LIMIT 1)
      FROM (SELECT namespace, queue FROM queue_fair_cursors WHERE namespace = $1 AND queue = $2 FOR UPDATE SKIP LOCKED) free
     WHERE f.namespace = free.namespace AND f.queue = free.queue AND EXISTS (SELECT 1 FROM leased)
    RETURNING 1
  )`;

/** Only queue-wide limits ($6 max_running, $7 rate count, $8 period): store.ts's pick, LIMITed to the room. */
const QUEUE_LEASE_SQL = `
  WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS t),
  room AS MATERIALIZED (${queueRoomSql("$6", "$7", "$8", "'QUEUE'")}),
  picked AS (
    SELECT job_id FROM jobs
     WHERE namespace = $1 AND queue = $2 AND ${WAITING} AND run_time <= now()
     ORDER BY priority DESC, run_time, job_id
     LIMIT (SELECT n FROM room)
     FOR UPDATE SKIP LOCKED
  ),
  ${leaseUpdateSql("picked")},
  ${spendSql("$7", "$8", "'QUEUE'", "true")}
  SELECT * FROM leased`;

/** The distinct groups with waiting jobs within `inRange` (a skip scan of jobs_group_waiting_idx), in group_key order. */
const groupScan = (name: string, inRange: (column: string) => string) => `
  ${name} (group_key) AS (
    (SELECT g.group_key FROM jobs g
      WHERE g.namespace = $1 AND g.queue = $2 AND g.${WAITING} AND ${inRange("g.group_key")} AND (SELECT n FROM room) > 0
      ORDER BY g.group_key LIMIT 1)
    UNION ALL
    SELECT (SELECT g.group_key FROM jobs g
             WHERE g.namespace = $1 AND g.queue = $2 AND g.${WAITING} AND g.group_key > prev.group_key AND ${inRange("g.group_key")}
             ORDER BY g.group_key LIMIT 1)
      FROM ${name} prev WHERE prev.group_key IS NOT NULL
  )`;

/** The groups after the fair cursor (`cursor`), then those up to it, as `rotation` (group_key, part). */
const rotationSql = (cursor: string) => `
  ${groupScan("after_cursor", (g) => `(${cursor}::text IS NULL OR ${g} > ${cursor})`)},
  ${groupScan("up_to_cursor", (g) => `${g} <= ${cursor}`)},
  rotation AS (
    SELECT group_key, 0 AS part FROM after_cursor WHERE group_key IS NOT NULL
    UNION ALL
    SELECT group_key, 1 FROM up_to_cursor WHERE group_key IS NOT NULL
  )`;

/** `groups` (with group_key) that have room, with it (`room`); OFFSET 0 keeps each room computed once. */
const eligibleSql = (groups: string, roomSql: string, limit = "") => `
  eligible AS MATERIALIZED (
    SELECT g.*, r.room FROM ${groups} g CROSS JOIN LATERAL (SELECT ${roomSql} AS room OFFSET 0) r
     WHERE r.room > 0
     ${limit}
  )`;

/** A group's waiting jobs by priority (`e`: its eligible row). */
const groupJobsSql = (limit: string, lock: string) => `
  SELECT j.job_id, j.group_key, j.priority, j.run_time FROM jobs j
   WHERE j.namespace = $1 AND j.queue = $2 AND j.group_key = e.group_key AND j.${WAITING} AND j.run_time <= now()
   ORDER BY j.priority DESC, j.run_time, j.job_id
   LIMIT ${limit}
   ${lock}`;

/**
 * The fair pick from `eligible` (with `part`, the rotation's order): each
 * group offers up to an equal share of the room, its jobs locked as they
 * are found (SKIP LOCKED: leases that run side by side take different
 * jobs); the batch takes every group's first, then every group's second,
 * and so on, in the rotation's order.
 */
const FAIR_PICK_SQL = `
  share AS MATERIALIZED (SELECT ceil((SELECT n FROM room)::numeric / greatest(count(*), 1))::int AS n FROM eligible),
  candidates AS (
    SELECT c.job_id, c.group_key, e.part,
           row_number() OVER (PARTITION BY c.group_key ORDER BY c.priority DESC, c.run_time, c.job_id) AS rn
      FROM eligible e CROSS JOIN LATERAL (${groupJobsSql("least(e.room, (SELECT n FROM share))", "FOR UPDATE OF j SKIP LOCKED")}) c
  ),
  chosen AS (
    SELECT job_id, group_key, ord FROM (
      SELECT job_id, group_key, row_number() OVER (ORDER BY rn, part, group_key) AS ord FROM candidates) ranked
     WHERE ord <= (SELECT n FROM room)
  )`;

/**
 * The priority pick from `eligible`: each group offers its best up to its
 * room, the batch takes the best of them, and only those are locked (the
 * groups are this lease's alone: nobody competes for their jobs).
 */
const PRIORITY_PICK_SQL = `
  candidates AS (
    SELECT c.* FROM eligible e CROSS JOIN LATERAL (${groupJobsSql("e.room", "")}) c
  ),
  chosen AS (
    SELECT j.job_id FROM jobs j
     WHERE j.namespace = $1 AND j.job_id = ANY (ARRAY(
             SELECT job_id FROM candidates ORDER BY priority DESC, run_time, job_id LIMIT (SELECT n FROM room)))
       AND j.${WAITING} AND j.run_time <= now()
     FOR UPDATE SKIP LOCKED
  )`;

/** Exclusive or fair-only holds: $6 max_running, $7 max_running_per_group, $8 rate count, $9 period, $10 scope, $11 the cursor. */
const FAIR_LEASE_SQL = `
  WITH RECURSIVE clock AS MATERIALIZED (SELECT clock_timestamp() AS t),
  room AS MATERIALIZED (${queueRoomSql("$6", "$8", "$9", "$10")}),
  ${rotationSql("$11")},
  ${eligibleSql("rotation", groupRoomSql("$7", "$8", "$9", "$10"), "LIMIT (SELECT n FROM room)")},
  ${FAIR_PICK_SQL},
  ${leaseUpdateSql("chosen")},
  ${spendSql("$8", "$9", "$10::text", "true")},
  ${MOVE_CURSOR_SQL}
  SELECT l.* FROM leased l JOIN chosen c ON c.job_id = l."jobId" ORDER BY c.ord`;

/** Per-group limits under the exclusive hold (with max_running or a QUEUE rate limit): parameters as FAIR_LEASE_SQL's, without the cursor. */
const PRIORITY_LEASE_SQL = `
  WITH RECURSIVE clock AS MATERIALIZED (SELECT clock_timestamp() AS t),
  room AS MATERIALIZED (${queueRoomSql("$6", "$8", "$9", "$10")}),
  ${groupScan("all_groups", () => "true")},
  ${eligibleSql("(SELECT group_key FROM all_groups WHERE group_key IS NOT NULL)", groupRoomSql("$7", "$8", "$9", "$10"))},
  ${PRIORITY_PICK_SQL},
  ${leaseUpdateSql("chosen")},
  ${spendSql("$8", "$9", "$10::text", "true")}
  SELECT * FROM leased`;

/**
 * Step 2 ($3 max, $4 max_running_per_group, $5 rate count, $6 period, $7
 * scope, $8 the fair cursor or NULL): the groups with waiting jobs and room
 * (as a snapshot before the locks sees it), in the order the lease would
 * serve them (fair: the rotation; else by each group's best job), locked
 * one after another with pg_try_advisory_xact_lock, skipping those held,
 * until the rooms of the groups locked cover the batch. The locked groups
 * in that order, and how many were skipped.
 */
const lockGroupsSql = (fair: boolean) => `
  WITH RECURSIVE clock AS MATERIALIZED (SELECT clock_timestamp() AS t),
  room AS MATERIALIZED (${queueRoomSql("0", "0", "0", "'QUEUE'")}),
  ${fair ? rotationSql("$8") : `${groupScan("all_groups", () => "true")}, rotation AS (SELECT group_key, 0 AS part FROM all_groups WHERE group_key IS NOT NULL)`},
  ${eligibleSql("rotation", groupRoomSql("$4", "$5", "$6", "$7"))},
  ranked AS MATERIALIZED (
    SELECT e.group_key, e.room, row_number() OVER (ORDER BY ${fair ? "e.part, e.group_key" : "h.priority DESC, h.run_time, h.job_id"}) AS ord
      FROM eligible e CROSS JOIN LATERAL (${groupJobsSql("1", "")}) h
  ),
  ordered AS MATERIALIZED (SELECT array_agg(group_key ORDER BY ord) AS keys, array_agg(room ORDER BY ord) AS rooms FROM ranked),
  walk (i, got, group_key, locked) AS (
    SELECT 0, 0, NULL::text, false
    UNION ALL
    SELECT w.i + 1, w.got + CASE WHEN x.locked THEN o.rooms[w.i + 1] ELSE 0 END, o.keys[w.i + 1], x.locked
      FROM walk w CROSS JOIN ordered o
      CROSS JOIN LATERAL (SELECT pg_try_advisory_xact_lock(${GROUP_LOCK_CLASS}, hashtext($1 || ':' || $2 || ':' || o.keys[w.i + 1])) AS locked) x
     WHERE w.got < (SELECT n FROM room) AND w.i < cardinality(o.keys)
  )
  SELECT coalesce(array_agg(group_key ORDER BY i) FILTER (WHERE locked), '{}') AS groups,
         (count(*) FILTER (WHERE NOT locked))::int AS skipped
    FROM walk WHERE i > 0`;

async function lockGroups(tx: Queryable, ask: LeaseAsk, c: LockedConfig): Promise<{ groups: string[]; skipped: number }> {
  const rate = c.rateLimit;
  const params = [ask.ns, ask.queue, ask.max, c.maxRunningPerGroup, rate?.count ?? 0, rate?.periodMs ?? 0, rate?.scope ?? "QUEUE"];
  const result = c.fair
    ? await tx.prepared<{ groups: string[]; skipped: number }>("queue_lock_groups_fair", lockGroupsSql(true), [...params, c.fairCursor])
    : await tx.prepared<{ groups: string[]; skipped: number }>("queue_lock_groups", lockGroupsSql(false), params);
  return result.rows[0]!;
}

/**
 * Step 3 with the groups of step 2 ($10, in serving order; $6
 * max_running_per_group, $7 rate count, $8 period, $9 scope): counted now,
 * under their locks. Spends are pruned in these groups' buckets only (the
 * others' are other leases' to touch).
 */
const inGroupsSql = (fair: boolean) => `
  WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS t),
  room AS MATERIALIZED (${queueRoomSql("0", "0", "0", "'QUEUE'")}),
  held AS (SELECT group_key, ord AS part FROM unnest($10::text[]) WITH ORDINALITY AS u (group_key, ord)),
  ${eligibleSql("held", groupRoomSql("$6", "$7", "$8", "$9"))},
  ${fair ? FAIR_PICK_SQL : PRIORITY_PICK_SQL},
  ${leaseUpdateSql("chosen")},
  ${spendSql("$7", "$8", "$9::text", "s.scope = 'GROUP' AND s.group_key = ANY ($10::text[])")}
  ${fair ? `, ${MOVE_CURSOR_SQL}` : ""}
  SELECT l.* FROM leased l ${fair ? `JOIN chosen c ON c.job_id = l."jobId" ORDER BY c.ord` : ""}`;

const FAIR_IN_GROUPS_SQL = inGroupsSql(true);
const PRIORITY_IN_GROUPS_SQL = inGroupsSql(false);

/** When the oldest token of the window comes back (at least 1 ms from now). */
async function nextTokenInMs(q: Queryable, ns: string, queue: string, periodMs: number): Promise<number> {
  const result = await q.query<{ ms: number | null }>(
    `SELECT ceil(extract(epoch FROM min(spend_time) + $3::bigint * interval '1 millisecond' - clock_timestamp()) * 1000)::int AS ms
       FROM queue_rate_spends WHERE namespace = $1 AND queue = $2 AND spend_time > clock_timestamp() - $3::bigint * interval '1 millisecond'`,
    [ns, queue, periodMs],
  );
  return Math.max(1, result.rows[0]?.ms ?? periodMs);
}
