// SQL for the job queue, as free functions over a Queryable (the pool or an
// open transaction). Claims use FOR UPDATE SKIP LOCKED and hand out a fresh
// random lease_token; every completion, failure and heartbeat names that
// token in its WHERE clause (fencing), so a worker whose lease was lost can
// change nothing. Rescue of expired leases touches only rows still RUNNING
// with an expired lease. Enqueueing (insert, dedupe, request ids) lives in
// enqueue.ts; what a parent's success, death or cancellation does to the
// jobs that depend on it, in dependencies.ts.
//
// Every job and queue belongs to a namespace: each function takes it right
// after the Queryable and every statement names it (job ids, queues, pauses
// and dedupe keys are per namespace). Only the maintenance rounds (lease
// rescue, retention) work across namespaces, keeping each row's own.
import { inBatches } from "../db/batches.js";
import { type Fields, selectList } from "../db/columns.js";
import type { Queryable } from "../db/database.js";
import { isUniqueViolation } from "../db/errors.js";
import type { Idempotency } from "../db/idempotency.js";
import { CHANNELS } from "../db/notify-hub.js";
import { jsonSize, omitting, type Page, type PageLimits, type Paged, pagedSql, rowSize, type Sizes, textSize, toPage } from "../db/pages.js";
import { CairnError, failedPrecondition, jobCancelled, leaseLost, notFound } from "../errors.js";
import { cancelDescendants, reblock, releaseChildren } from "./dependencies.js";

export type JobStateName = "SCHEDULED" | "AVAILABLE" | "RUNNING" | "RETRYING" | "SUCCEEDED" | "DEAD" | "CANCELLED" | "BLOCKED";
type JsonObject = Record<string, unknown>;

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  multiplier: number;
}

export interface NewJob {
  jobId: string;
  queue: string;
  payload: JsonObject;
  priority: number;
  /** Null: now. */
  runTime: string | null;
  maxAttempts: number;
  backoff: BackoffPolicy;
  dedupeKey: string | null;
  sessionId: string;
  /** Parent job ids (see dependencies.ts); absent: none. */
  dependsOn?: string[];
  /** The job's group for its queue's flow control (queue-config.ts); absent or "": none. */
  groupKey?: string;
}

export interface JobRecord extends Omit<NewJob, "runTime" | "dependsOn" | "groupKey"> {
  state: JobStateName;
  /** "" when the job belongs to no group (ungrouped jobs form one group of their own). */
  groupKey: string;
  dependsOn: string[];
  progress: JsonObject | null;
  runTime: string;
  attempt: number;
  workerId: string;
  leaseExpireTime: string | null;
  lastError: { message: string; details: JsonObject | null } | null;
  result: JsonObject | null;
  createTime: string;
  updateTime: string;
  finishTime: string | null;
}

export interface JobEnqueue {
  job: NewJob;
  idempotency: Idempotency | null;
  /** Where the request sits in its call ("requests[2]."), for a violation only the database finds (a missing parent). */
  at?: string;
}

export interface EnqueueOutcome {
  job: JobRecord;
  deduplicated: boolean;
}

export interface Lease {
  job: JobRecord;
  leaseToken: string;
}

export interface CompletionOutcome {
  jobId: string;
  ok: boolean;
  reason: string;
}

/** A lease as its holder names it. */
export interface HeldLease {
  jobId: string;
  token: string;
}

export interface QueueStats {
  counts: Record<string, number>;
  oldestAvailable: string | null;
  paused: boolean;
}

/**
 * The NOTIFY payload that wakes leasers of one queue: `namespace:queue`, so
 * a waiter on "q" in one namespace is not woken by another's "q". A
 * namespace never contains ':', so the first ':' splits it unambiguously.
 */
export const wakeKey = (namespace: string, queue: string) => `${namespace}:${queue}`;
/** wakeKey in SQL, over a row's (or a parameter's) namespace and queue. */
export const wakeKeySql = (namespace: string, queue: string) => `${namespace} || ':' || ${queue}`;

/** One bounded round of lease rescue. */
const RESCUE_BATCH = 1000;

/** How readers see a job's state: a SCHEDULED job whose run_time has come is AVAILABLE. */
const effectiveState = (t: string) => `CASE WHEN ${t}state = 'SCHEDULED' AND ${t}run_time <= now() THEN 'AVAILABLE' ELSE ${t}state END`;

/** A job row as its record; last_error is stored in the record's shape ({message, details}). */
export const FIELDS: Fields<JobRecord> = {
  jobId: "job_id",
  queue: "queue",
  payload: "payload",
  state: effectiveState,
  priority: "priority",
  runTime: "run_time",
  attempt: "attempt",
  maxAttempts: "max_attempts",
  backoff: (t) =>
    `json_build_object('initialMs', ${t}backoff_initial_ms, 'maxMs', ${t}backoff_max_ms, 'multiplier', ${t}backoff_multiplier)`,
  dedupeKey: "dedupe_key",
  sessionId: "session_id",
  groupKey: "group_key",
  workerId: "worker_id",
  leaseExpireTime: "lease_expire_time",
  lastError: "last_error",
  result: "result",
  createTime: "create_time",
  updateTime: "update_time",
  finishTime: "finish_time",
  dependsOn: "depends_on",
  progress: "progress",
};

const COLUMNS = selectList(FIELDS);

/** The fields a read mask may leave out of the SELECT: the documents. */
export type JobDocument = "payload" | "result" | "lastError" | "progress";

const SIZES: Sizes<JobRecord> = {
  jobId: textSize("job_id"),
  queue: textSize("queue"),
  payload: jsonSize("payload"),
  dedupeKey: textSize("dedupe_key"),
  sessionId: textSize("session_id"),
  groupKey: textSize("group_key"),
  workerId: textSize("worker_id"),
  lastError: jsonSize("last_error"),
  result: jsonSize("result"),
  dependsOn: "octet_length(depends_on::text)",
  progress: jsonSize("progress"),
};

/** The delay before retry number `attempt` (1-based): initial × multiplier^(attempt−1), capped. */
const BACKOFF_SQL = `least(backoff_max_ms, backoff_initial_ms * power(backoff_multiplier, greatest(attempt - 1, 0)))
  * interval '1 millisecond'`;

/**
 * Claims up to `max` runnable jobs of an unpaused queue, priority desc then
 * run_time asc. Nothing from a queue under flow control: those lease in
 * flow-lease.ts (reading queue_configs here is also what makes turning
 * flow control on wait for this statement; see there).
 */
export async function lease(q: Queryable, ns: string, queue: string, workerId: string, max: number, leaseMs: number): Promise<Lease[]> {
  const result = await q.prepared<JobRecord & { leaseToken: string }>(
    "jobs_lease",
    `WITH picked AS (
       SELECT job_id FROM jobs
        WHERE namespace = $1 AND queue = $2 AND state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND run_time <= now()
          AND NOT EXISTS (SELECT 1 FROM job_queues q WHERE q.namespace = $1 AND q.queue = $2 AND q.paused)
          AND NOT EXISTS (SELECT 1 FROM queue_configs c WHERE c.namespace = $1 AND c.queue = $2 AND c.controlled)
        ORDER BY priority DESC, run_time, job_id
        LIMIT $3
        FOR UPDATE SKIP LOCKED
     )
     UPDATE jobs j SET state = 'RUNNING', attempt = j.attempt + 1, worker_id = $4, lease_token = gen_random_uuid(),
            lease_expire_time = now() + $5::bigint * interval '1 millisecond', update_time = now()
       FROM picked WHERE j.namespace = $1 AND j.job_id = picked.job_id
     RETURNING ${selectList(FIELDS, "j.")}, j.lease_token AS "leaseToken"`,
    [ns, queue, max, workerId, leaseMs],
  );
  // UPDATE ... RETURNING comes back in no particular order.
  return result.rows
    .map(({ leaseToken, ...job }) => ({ job, leaseToken }))
    .sort((a, b) => b.job.priority - a.job.priority || a.job.runTime.localeCompare(b.job.runTime) || a.job.jobId.localeCompare(b.job.jobId));
}

/**
 * Returned with a finished job (its value is nothing): wakes the leasers of
 * its queue when the queue caps its running jobs, since the finish may have
 * made room. From the finishing statement itself, so a finish through any
 * replica or a Commit wakes them; the NOTIFY goes out at commit, one per
 * queue and transaction.
 */
const wakeIfCapped = (t: string) => `(SELECT pg_notify('${CHANNELS.jobs}', ${wakeKeySql("c.namespace", "c.queue")}) FROM queue_configs c
    WHERE c.namespace = ${t}.namespace AND c.queue = ${t}.queue AND (c.max_running > 0 OR c.max_running_per_group > 0)) AS woken`;

/** A finished job's row, without wakeIfCapped's column. */
function finishedRow(rows: (JobRecord & { woken?: unknown })[]): JobRecord | undefined {
  if (!rows[0]) return undefined;
  const { woken: _, ...job } = rows[0];
  return job;
}

/** SUCCEEDED, fenced by the lease token ($3); $4 the result. */
const COMPLETE_SQL = `UPDATE jobs SET state = 'SUCCEEDED', result = $4::jsonb, finish_time = now(), update_time = now(),
         lease_token = NULL, lease_expire_time = NULL
   WHERE namespace = $1 AND job_id = $2 AND lease_token = $3::uuid AND state = 'RUNNING'`;

/**
 * A job nothing depends on completes in one statement. One that others
 * depend on (has_children; see dependencies.ts) completes in a transaction
 * that also releases its children.
 */
export async function complete(q: Queryable, ns: string, jobId: string, token: string, result: JsonObject | null): Promise<JobRecord> {
  const values = [ns, jobId, token, result === null ? null : JSON.stringify(result)];
  const done = finishedRow((await q.query<JobRecord>(`${COMPLETE_SQL} AND NOT has_children RETURNING ${COLUMNS}, ${wakeIfCapped("jobs")}`, values)).rows);
  if (done) return done;
  return q.atomic(async (tx) => {
    const parent = await completeParent(tx, values);
    if (!parent) throw await whyNoLease(tx, ns, jobId);
    return parent;
  });
}

/** Completes a job that others may depend on and releases its children, in the caller's transaction; undefined when the lease is not held. */
async function completeParent(tx: Queryable, values: unknown[]): Promise<JobRecord | undefined> {
  const parent = finishedRow((await tx.query<JobRecord>(`${COMPLETE_SQL} RETURNING ${COLUMNS}, ${wakeIfCapped("jobs")}`, values)).rows);
  if (parent) await releaseChildren(tx, values[0] as string, [parent.jobId]);
  return parent;
}

/**
 * Each completion stands alone; a lost lease fails only its own item. Jobs
 * that others depend on complete one transaction each (with their children).
 */
export async function completeMany(q: Queryable, ns: string, items: (HeldLease & { result: JsonObject | null })[]): Promise<CompletionOutcome[]> {
  const done = await q.query<{ job_id: string }>(
    `UPDATE jobs j SET state = 'SUCCEEDED', result = c.result, finish_time = now(), update_time = now(),
            lease_token = NULL, lease_expire_time = NULL
       FROM jsonb_to_recordset($2::jsonb) AS c (job_id text, token uuid, result jsonb)
      WHERE j.namespace = $1 AND j.job_id = c.job_id AND j.lease_token = c.token AND j.state = 'RUNNING'
        AND j.job_id = ANY ($3::text[]) AND NOT j.has_children
      RETURNING j.job_id, ${wakeIfCapped("j")}`,
    [ns, JSON.stringify(items.map((i) => ({ job_id: i.jobId, token: i.token, result: i.result }))), items.map((i) => i.jobId)],
  );
  const ok = new Set(done.rows.map((r) => r.job_id));
  const conflicts = new Map<string, string>();
  const parents = await withChildren(q, ns, items.filter((i) => !ok.has(i.jobId)).map((i) => i.jobId));
  for (const i of items.filter((i) => parents.has(i.jobId))) {
    try {
      const values = [ns, i.jobId, i.token, i.result === null ? null : JSON.stringify(i.result)];
      if (await q.atomic((tx) => completeParent(tx, values))) ok.add(i.jobId);
    } catch (error) {
      // A deadlock or serialization failure of this item's transaction fails it alone.
      if (!(error instanceof CairnError) || error.kind !== "aborted") throw error;
      conflicts.set(i.jobId, error.reason);
    }
  }
  const missing = items.filter((i) => !ok.has(i.jobId)).map((i) => i.jobId);
  const known = missing.length ? await existing(q, ns, missing) : new Set<string>();
  return items.map((i) => ({
    jobId: i.jobId,
    ok: ok.has(i.jobId),
    reason: ok.has(i.jobId) ? "" : (conflicts.get(i.jobId) ?? (known.has(i.jobId) ? "LEASE_LOST" : "NOT_FOUND")),
  }));
}

/** Which of these jobs others depend on. */
async function withChildren(q: Queryable, ns: string, jobIds: string[]): Promise<Set<string>> {
  if (jobIds.length === 0) return new Set();
  const result = await q.query<{ job_id: string }>(
    `SELECT job_id FROM jobs WHERE namespace = $1 AND job_id = ANY ($2::text[]) AND has_children`,
    [ns, jobIds],
  );
  return new Set(result.rows.map((r) => r.job_id));
}

/** RETRYING after backoff (or $5, retry_after) when $4 (retry) and attempts remain, else DEAD; fenced by the token ($3). */
const FAIL_SQL = `UPDATE jobs SET
       state = CASE WHEN $4 AND attempt < max_attempts THEN 'RETRYING' ELSE 'DEAD' END,
       run_time = CASE WHEN $4 AND attempt < max_attempts
                       THEN now() + coalesce($5::bigint * interval '1 millisecond', ${BACKOFF_SQL})
                       ELSE run_time END,
       finish_time = CASE WHEN $4 AND attempt < max_attempts THEN NULL ELSE now() END,
       last_error = $6::jsonb, update_time = now(), lease_token = NULL, lease_expire_time = NULL, worker_id = ''
     WHERE namespace = $1 AND job_id = $2 AND lease_token = $3::uuid AND state = 'RUNNING'`;

/**
 * RETRYING after backoff (or retry_after), or DEAD when attempts are spent
 * or retry is false. A job that others depend on fails in a transaction
 * that, when it goes DEAD, also cancels its BLOCKED descendants.
 */
export async function fail(
  q: Queryable,
  ns: string,
  jobId: string,
  token: string,
  error: { message: string; details: JsonObject | null },
  retry: boolean,
  retryAfterMs: number | null,
): Promise<JobRecord> {
  const values = [ns, jobId, token, retry, retryAfterMs, JSON.stringify(error)];
  const failed = finishedRow((await q.query<JobRecord>(`${FAIL_SQL} AND NOT has_children RETURNING ${COLUMNS}, ${wakeIfCapped("jobs")}`, values)).rows);
  if (failed) return failed;
  return q.atomic(async (tx) => {
    const parent = finishedRow((await tx.query<JobRecord>(`${FAIL_SQL} RETURNING ${COLUMNS}, ${wakeIfCapped("jobs")}`, values)).rows);
    if (!parent) throw await whyNoLease(tx, ns, jobId);
    if (parent.state === "DEAD") await cancelDescendants(tx, ns, [jobId]);
    return parent;
  });
}

/**
 * Heartbeat: a later lease expiry and, when given, the worker's progress.
 * On a job cancelled while this lease ran it: JOB_CANCELLED (cancelling
 * keeps the token on the row for this), so the worker learns to stop.
 */
export async function extend(q: Queryable, ns: string, jobId: string, token: string, leaseMs: number, progress: JsonObject | null): Promise<JobRecord> {
  const extended = await q.query<JobRecord>(
    `UPDATE jobs SET lease_expire_time = now() + $4::bigint * interval '1 millisecond', progress = coalesce($5::jsonb, progress),
            update_time = now()
      WHERE namespace = $1 AND job_id = $2 AND lease_token = $3::uuid AND state = 'RUNNING'
      RETURNING ${COLUMNS}`,
    [ns, jobId, token, leaseMs, progress === null ? null : JSON.stringify(progress)],
  );
  if (extended.rows[0]) return extended.rows[0];
  const job = await q.query<{ cancelled: boolean }>(
    `SELECT state = 'CANCELLED' AND lease_token = $3::uuid AS cancelled FROM jobs WHERE namespace = $1 AND job_id = $2`,
    [ns, jobId, token],
  );
  if (!job.rows[0]) throw notFound("job", jobId);
  throw job.rows[0].cancelled ? jobCancelled(jobId) : leaseLost(jobId);
}

/**
 * Gives back leases whose holder went away (a StreamJobs client), for
 * others to take. Not a failed attempt, unless the lease had already
 * expired: those are left to the rescue, which counts them.
 */
export async function release(q: Queryable, ns: string, leases: HeldLease[]): Promise<void> {
  if (leases.length === 0) return;
  await q.query(
    `WITH back AS (
       UPDATE jobs j SET state = 'AVAILABLE', attempt = j.attempt - 1, worker_id = '', lease_token = NULL,
              lease_expire_time = NULL, update_time = now()
         FROM unnest($2::text[], $3::uuid[]) AS l (job_id, token)
        WHERE j.namespace = $1 AND j.job_id = l.job_id AND j.lease_token = l.token AND j.state = 'RUNNING'
          AND j.lease_expire_time > now()
        RETURNING j.queue
     )
     SELECT queue, pg_notify('${CHANNELS.jobs}', ${wakeKeySql("$1", "queue")}) FROM back GROUP BY queue`,
    [ns, leases.map((l) => l.jobId), leases.map((l) => l.token)],
  );
}

/** The job ids of these leases that are still held (the job RUNNING under that token). */
export async function heldLeases(q: Queryable, ns: string, leases: HeldLease[]): Promise<Set<string>> {
  if (leases.length === 0) return new Set();
  const held = await q.query<{ job_id: string }>(
    `SELECT j.job_id FROM jobs j JOIN unnest($2::text[], $3::uuid[]) AS l (job_id, token)
        ON j.namespace = $1 AND j.job_id = l.job_id AND j.lease_token = l.token AND j.state = 'RUNNING'`,
    [ns, leases.map((l) => l.jobId), leases.map((l) => l.token)],
  );
  return new Set(held.rows.map((r) => r.job_id));
}

/**
 * Expired leases become RETRYING (a failed attempt, with backoff) or DEAD;
 * one bounded batch per round (the rescue runs often). Returns how many
 * jobs it rescued; each queue they belong to is notified once. Works across
 * namespaces (a maintenance round): rows are picked by (namespace, job_id)
 * and each queue is woken under its own namespace. A job others depend on
 * that goes DEAD cancels its BLOCKED descendants in the same transaction.
 */
export function rescueExpiredLeases(q: Queryable): Promise<number> {
  return q.atomic(async (tx) => {
    const round = await rescueRound(tx);
    for (const [ns, parents] of Object.entries(round.deadParents)) await cancelDescendants(tx, ns, parents);
    return round.rescued;
  });
}

async function rescueRound(q: Queryable): Promise<{ rescued: number; deadParents: Record<string, string[]> }> {
  const rescued = await q.query<{ rescued: number; deadParents: Record<string, string[]> }>(
    `WITH rescued AS (
       UPDATE jobs SET
         state = CASE WHEN attempt < max_attempts THEN 'RETRYING' ELSE 'DEAD' END,
         run_time = CASE WHEN attempt < max_attempts THEN now() + ${BACKOFF_SQL} ELSE run_time END,
         finish_time = CASE WHEN attempt < max_attempts THEN NULL ELSE now() END,
         last_error = jsonb_build_object('message', 'lease expired', 'details', jsonb_build_object('worker_id', worker_id)),
         worker_id = '', lease_token = NULL, lease_expire_time = NULL, update_time = now()
       WHERE (namespace, job_id) IN (
         SELECT namespace, job_id FROM jobs WHERE state = 'RUNNING' AND lease_expire_time <= now()
          LIMIT $1 FOR UPDATE SKIP LOCKED)
         AND state = 'RUNNING' AND lease_expire_time <= now()
       RETURNING namespace, queue, job_id, state, has_children
     ), notified AS (
       SELECT pg_notify('${CHANNELS.jobs}', ${wakeKeySql("namespace", "queue")}) FROM rescued GROUP BY namespace, queue
     )
     SELECT (SELECT count(*) FROM rescued)::int AS rescued, (SELECT count(*) FROM notified) AS queues,
            coalesce((SELECT jsonb_object_agg(namespace, ids) FROM (
              SELECT namespace, jsonb_agg(job_id) AS ids FROM rescued WHERE state = 'DEAD' AND has_children GROUP BY namespace) d),
              '{}') AS "deadParents"`,
    [RESCUE_BATCH],
  );
  return rescued.rows[0]!;
}

/** Unfinished states, as stored (a SCHEDULED job may be due). */
export const UNFINISHED = `('BLOCKED', 'SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING')`;

/**
 * CANCELLED, with its BLOCKED descendants. A running job's lease is
 * revoked by the state alone: its token stays, so that the holder's next
 * ExtendLease can tell it JOB_CANCELLED rather than LEASE_LOST.
 */
export function cancel(q: Queryable, ns: string, jobId: string): Promise<JobRecord> {
  return q.atomic(async (tx) => {
    const cancelled = await tx.query<JobRecord>(
      `UPDATE jobs SET state = 'CANCELLED', finish_time = now(), update_time = now(), lease_expire_time = NULL
        WHERE namespace = $1 AND job_id = $2 AND state IN ${UNFINISHED}
        RETURNING ${COLUMNS}, ${wakeIfCapped("jobs")}`,
      [ns, jobId],
    );
    const job = finishedRow(cancelled.rows);
    if (job) {
      await cancelDescendants(tx, ns, [jobId]);
      return job;
    }
    const current = await get(tx, ns, jobId);
    throw failedPrecondition(`job ${JSON.stringify(jobId)} is ${current.state}; only unfinished jobs can be cancelled`, {
      job_id: jobId,
      state: current.state,
    });
  });
}

/**
 * Redrives a DEAD or CANCELLED job: AVAILABLE now, attempts reset. A job
 * with parents is BLOCKED again until they all succeed (FAILED_PRECONDITION
 * while one is DEAD or CANCELLED: retry that one first); jobs that were
 * cancelled because of this one stay cancelled.
 */
export function retry(q: Queryable, ns: string, jobId: string): Promise<JobRecord> {
  return q.atomic(async (tx) => {
    const job = await redrive(tx, ns, jobId);
    if (job) return job.state === "BLOCKED" ? reblock(tx, ns, job) : job;
    const current = await get(tx, ns, jobId);
    throw failedPrecondition(`job ${JSON.stringify(jobId)} is ${current.state}; only DEAD or CANCELLED jobs can be retried`, {
      job_id: jobId,
      state: current.state,
    });
  });
}

async function redrive(tx: Queryable, ns: string, jobId: string): Promise<JobRecord | undefined> {
  let retried;
  try {
    retried = await tx.query<JobRecord & { notified: unknown }>(
      `WITH back AS (
         UPDATE jobs SET state = CASE WHEN cardinality(depends_on) > 0 THEN 'BLOCKED' ELSE 'AVAILABLE' END,
                attempt = 0, run_time = now(), finish_time = NULL, update_time = now(), lease_token = NULL
          WHERE namespace = $1 AND job_id = $2 AND state IN ('DEAD', 'CANCELLED')
          RETURNING ${COLUMNS}
       )
       SELECT back.*, CASE WHEN back.state <> 'BLOCKED' THEN pg_notify('${CHANNELS.jobs}', ${wakeKeySql("$1", "back.queue")}) END AS notified
         FROM back`,
      [ns, jobId],
    );
  } catch (error) {
    // The partial unique index on (namespace, queue, dedupe_key) of unfinished jobs.
    if (isUniqueViolation(error)) {
      throw failedPrecondition(`another unfinished job of the queue holds this job's dedupe_key`, { job_id: jobId });
    }
    throw error;
  }
  const row = retried.rows[0];
  if (!row) return undefined;
  const { notified: _, ...job } = row;
  return job;
}

/** The job, or undefined when there is none (for callers that give absence their own meaning). */
export async function find(q: Queryable, ns: string, jobId: string): Promise<JobRecord | undefined> {
  const result = await q.query<JobRecord>(`SELECT ${COLUMNS} FROM jobs WHERE namespace = $1 AND job_id = $2`, [ns, jobId]);
  return result.rows[0];
}

export async function get(q: Queryable, ns: string, jobId: string): Promise<JobRecord> {
  const job = await find(q, ns, jobId);
  if (!job) throw notFound("job", jobId);
  return job;
}

/** A page of jobs by (create_time, job_id), after the keyset `after`; `omit`: documents left out (NULL). */
export async function list(
  q: Queryable,
  ns: string,
  queue: string | null,
  states: JobStateName[],
  limits: PageLimits,
  after: { time: string; jobId: string } | undefined,
  omit: readonly JobDocument[] = [],
): Promise<Page<JobRecord>> {
  const sql = pagedSql({
    fields: omitting(FIELDS, omit),
    size: rowSize(SIZES, omit),
    from: `FROM jobs
      WHERE namespace = $1
        AND ($2::text IS NULL OR queue = $2)
        AND (cardinality($3::text[]) = 0 OR ${effectiveState("")} = ANY ($3::text[]))
        AND ($4::timestamptz IS NULL OR (create_time, job_id) > ($4, $5::text))`,
    order: [
      ["createTime", "ASC"],
      ["jobId", "ASC"],
    ],
    limit: "$6",
    budget: "$7",
  });
  const result = await q.query<Paged<JobRecord>>(sql, [ns, queue, states, after?.time ?? null, after?.jobId ?? null, limits.rows, limits.bytes]);
  return toPage(result.rows);
}

export async function stats(q: Queryable, ns: string, queue: string): Promise<QueueStats> {
  const result = await q.query<QueueStats>(
    `SELECT coalesce((SELECT jsonb_object_agg(state, n) FROM (
              SELECT ${effectiveState("")} AS state, count(*) AS n
                FROM jobs WHERE namespace = $1 AND queue = $2 GROUP BY 1) s), '{}') AS counts,
            (SELECT min(run_time) FROM jobs
              WHERE namespace = $1 AND queue = $2 AND state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND run_time <= now()) AS "oldestAvailable",
            coalesce((SELECT paused FROM job_queues WHERE namespace = $1 AND queue = $2), false) AS paused`,
    [ns, queue],
  );
  return result.rows[0]!;
}

/** Pauses or resumes a queue of one namespace; the NOTIFY wakes waiting leasers of a resumed one. */
export async function setPaused(q: Queryable, ns: string, queue: string, paused: boolean): Promise<void> {
  await q.query(
    `WITH q AS (
       INSERT INTO job_queues (namespace, queue, paused) VALUES ($1, $2, $3)
       ON CONFLICT (namespace, queue) DO UPDATE SET paused = EXCLUDED.paused
     )
     SELECT pg_notify('${CHANNELS.jobs}', $4)`,
    [ns, queue, paused, wakeKey(ns, queue)],
  );
}

/** Deletes finished jobs older than the retention, in batches, in every namespace (a maintenance round). */
export function deleteFinished(q: Queryable, retentionMs: number): Promise<number> {
  return inBatches((limit) => deleteFinishedBatch(q, retentionMs, limit));
}

async function deleteFinishedBatch(q: Queryable, retentionMs: number, limit: number): Promise<number> {
  // A job's rows in job_dependencies (as the child) go with it.
  const result = await q.query<{ deleted: number }>(
    `WITH deleted AS (
       DELETE FROM jobs WHERE (namespace, job_id) IN (
         SELECT namespace, job_id FROM jobs WHERE finish_time < now() - $1::bigint * interval '1 millisecond'
            AND state IN ('SUCCEEDED', 'DEAD', 'CANCELLED')
          LIMIT $2)
       RETURNING namespace, job_id, depends_on
     ), edges AS (
       DELETE FROM job_dependencies d USING deleted, unnest(deleted.depends_on) AS p (parent_id)
        WHERE d.namespace = deleted.namespace AND d.parent_id = p.parent_id AND d.job_id = deleted.job_id
     )
     SELECT count(*)::int AS deleted FROM deleted`,
    [retentionMs, limit],
  );
  return result.rows[0]!.deleted;
}

/**
 * Deleting sessions of a namespace cancels their unfinished jobs in that
 * namespace (kept, not deleted, so workers and lists still see them).
 */
export async function onSessionsDeleted(tx: Queryable, ns: string, sessionIds: string[]): Promise<void> {
  const cancelled = await tx.query<{ job_id: string; has_children: boolean }>(
    `UPDATE jobs SET state = 'CANCELLED', finish_time = now(), update_time = now(), lease_expire_time = NULL
      WHERE namespace = $1 AND session_id = ANY ($2::text[]) AND state IN ${UNFINISHED}
      RETURNING job_id, has_children`,
    [ns, sessionIds],
  );
  const parents = cancelled.rows.filter((r) => r.has_children).map((r) => r.job_id);
  if (parents.length) await cancelDescendants(tx, ns, parents);
}

/** Which of these job ids exist in the namespace. */
export async function existing(q: Queryable, ns: string, jobIds: string[]): Promise<Set<string>> {
  const result = await q.query<{ job_id: string }>(`SELECT job_id FROM jobs WHERE namespace = $1 AND job_id = ANY ($2::text[])`, [
    ns,
    jobIds,
  ]);
  return new Set(result.rows.map((r) => r.job_id));
}

/** Why a fenced update matched nothing: the job is unknown (in this namespace), or the lease is not held. */
async function whyNoLease(q: Queryable, ns: string, jobId: string): Promise<CairnError> {
  const exists = await q.query(`SELECT 1 FROM jobs WHERE namespace = $1 AND job_id = $2`, [ns, jobId]);
  return exists.rowCount ? leaseLost(jobId) : notFound("job", jobId);
}
