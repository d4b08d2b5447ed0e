// SQL for the job queue, as free functions over a Queryable (the pool or an
// open transaction). Claims use FOR UPDATE SKIP LOCKED and hand out a fresh
// random lease_token; every completion, failure and heartbeat names that
// token in its WHERE clause (fencing), so a worker whose lease was lost can
// change nothing. Rescue of expired leases touches only rows still RUNNING
// with an expired lease. Enqueueing (insert, dedupe, request ids) lives in
// enqueue.ts.
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
import { type CairnError, failedPrecondition, leaseLost, notFound } from "../errors.js";

export type JobStateName = "SCHEDULED" | "AVAILABLE" | "RUNNING" | "RETRYING" | "SUCCEEDED" | "DEAD" | "CANCELLED";
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
}

export interface JobRecord extends Omit<NewJob, "runTime"> {
  state: JobStateName;
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
  workerId: "worker_id",
  leaseExpireTime: "lease_expire_time",
  lastError: "last_error",
  result: "result",
  createTime: "create_time",
  updateTime: "update_time",
  finishTime: "finish_time",
};

const COLUMNS = selectList(FIELDS);

/** The fields a read mask may leave out of the SELECT: the documents. */
export type JobDocument = "payload" | "result" | "lastError";

const SIZES: Sizes<JobRecord> = {
  jobId: textSize("job_id"),
  queue: textSize("queue"),
  payload: jsonSize("payload"),
  dedupeKey: textSize("dedupe_key"),
  sessionId: textSize("session_id"),
  workerId: textSize("worker_id"),
  lastError: jsonSize("last_error"),
  result: jsonSize("result"),
};

/** The delay before retry number `attempt` (1-based): initial × multiplier^(attempt−1), capped. */
const BACKOFF_SQL = `least(backoff_max_ms, backoff_initial_ms * power(backoff_multiplier, greatest(attempt - 1, 0)))
  * interval '1 millisecond'`;

/** Claims up to `max` runnable jobs of an unpaused queue, priority desc then run_time asc. */
export async function lease(q: Queryable, ns: string, queue: string, workerId: string, max: number, leaseMs: number): Promise<Lease[]> {
  const result = await q.prepared<JobRecord & { leaseToken: string }>(
    "jobs_lease",
    `WITH picked AS (
       SELECT job_id FROM jobs
        WHERE namespace = $1 AND queue = $2 AND state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND run_time <= now()
          AND NOT EXISTS (SELECT 1 FROM job_queues q WHERE q.namespace = $1 AND q.queue = $2 AND q.paused)
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

export async function complete(q: Queryable, ns: string, jobId: string, token: string, result: JsonObject | null): Promise<JobRecord> {
  const done = await q.query<JobRecord>(
    `UPDATE jobs SET state = 'SUCCEEDED', result = $4::jsonb, finish_time = now(), update_time = now(),
            lease_token = NULL, lease_expire_time = NULL
      WHERE namespace = $1 AND job_id = $2 AND lease_token = $3::uuid AND state = 'RUNNING'
      RETURNING ${COLUMNS}`,
    [ns, jobId, token, result === null ? null : JSON.stringify(result)],
  );
  if (done.rows[0]) return done.rows[0];
  throw await whyNoLease(q, ns, jobId);
}

/** Each completion stands alone; a lost lease fails only its own item. */
export async function completeMany(q: Queryable, ns: string, items: (HeldLease & { result: JsonObject | null })[]): Promise<CompletionOutcome[]> {
  const done = await q.query<{ job_id: string }>(
    `UPDATE jobs j SET state = 'SUCCEEDED', result = c.result, finish_time = now(), update_time = now(),
            lease_token = NULL, lease_expire_time = NULL
       FROM jsonb_to_recordset($2::jsonb) AS c (job_id text, token uuid, result jsonb)
      WHERE j.namespace = $1 AND j.job_id = c.job_id AND j.lease_token = c.token AND j.state = 'RUNNING'
        AND j.job_id = ANY ($3::text[])
      RETURNING j.job_id`,
    [ns, JSON.stringify(items.map((i) => ({ job_id: i.jobId, token: i.token, result: i.result }))), items.map((i) => i.jobId)],
  );
  const ok = new Set(done.rows.map((r) => r.job_id));
  const missing = items.filter((i) => !ok.has(i.jobId)).map((i) => i.jobId);
  const known = missing.length ? await existing(q, ns, missing) : new Set<string>();
  return items.map((i) => ({
    jobId: i.jobId,
    ok: ok.has(i.jobId),
    reason: ok.has(i.jobId) ? "" : known.has(i.jobId) ? "LEASE_LOST" : "NOT_FOUND",
  }));
}

/** RETRYING after backoff (or retry_after), or DEAD when attempts are spent or retry is false. */
export async function fail(
  q: Queryable,
  ns: string,
  jobId: string,
  token: string,
  error: { message: string; details: JsonObject | null },
  retry: boolean,
  retryAfterMs: number | null,
): Promise<JobRecord> {
  const failed = await q.query<JobRecord>(
    `UPDATE jobs SET
       state = CASE WHEN $4 AND attempt < max_attempts THEN 'RETRYING' ELSE 'DEAD' END,
       run_time = CASE WHEN $4 AND attempt < max_attempts
                       THEN now() + coalesce($5::bigint * interval '1 millisecond', ${BACKOFF_SQL})
                       ELSE run_time END,
       finish_time = CASE WHEN $4 AND attempt < max_attempts THEN NULL ELSE now() END,
       last_error = $6::jsonb, update_time = now(), lease_token = NULL, lease_expire_time = NULL, worker_id = ''
     WHERE namespace = $1 AND job_id = $2 AND lease_token = $3::uuid AND state = 'RUNNING'
     RETURNING ${COLUMNS}`,
    [ns, jobId, token, retry, retryAfterMs, JSON.stringify(error)],
  );
  if (failed.rows[0]) return failed.rows[0];
  throw await whyNoLease(q, ns, jobId);
}

export async function extend(q: Queryable, ns: string, jobId: string, token: string, leaseMs: number): Promise<JobRecord> {
  const extended = await q.query<JobRecord>(
    `UPDATE jobs SET lease_expire_time = now() + $4::bigint * interval '1 millisecond', update_time = now()
      WHERE namespace = $1 AND job_id = $2 AND lease_token = $3::uuid AND state = 'RUNNING'
      RETURNING ${COLUMNS}`,
    [ns, jobId, token, leaseMs],
  );
  if (extended.rows[0]) return extended.rows[0];
  throw await whyNoLease(q, ns, jobId);
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
 * and each queue is woken under its own namespace.
 */
export async function rescueExpiredLeases(q: Queryable): Promise<number> {
  const rescued = await q.query<{ rescued: number }>(
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
       RETURNING namespace, queue
     ), notified AS (
       SELECT pg_notify('${CHANNELS.jobs}', ${wakeKeySql("namespace", "queue")}) FROM rescued GROUP BY namespace, queue
     )
     SELECT (SELECT count(*) FROM rescued)::int AS rescued, (SELECT count(*) FROM notified) AS queues`,
    [RESCUE_BATCH],
  );
  return rescued.rows[0]?.rescued ?? 0;
}

export async function cancel(q: Queryable, ns: string, jobId: string): Promise<JobRecord> {
  const cancelled = await q.query<JobRecord>(
    `UPDATE jobs SET state = 'CANCELLED', finish_time = now(), update_time = now(),
            lease_token = NULL, lease_expire_time = NULL
      WHERE namespace = $1 AND job_id = $2 AND state IN ('SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING')
      RETURNING ${COLUMNS}`,
    [ns, jobId],
  );
  if (cancelled.rows[0]) return cancelled.rows[0];
  const job = await get(q, ns, jobId);
  throw failedPrecondition(`job ${JSON.stringify(jobId)} is ${job.state}; only unfinished jobs can be cancelled`, { job_id: jobId, state: job.state });
}

/** Redrives a DEAD or CANCELLED job: AVAILABLE now, attempts reset. */
export async function retry(q: Queryable, ns: string, jobId: string): Promise<JobRecord> {
  let retried;
  try {
    retried = await q.query<JobRecord & { notified: unknown }>(
      `WITH back AS (
         UPDATE jobs SET state = 'AVAILABLE', attempt = 0, run_time = now(), finish_time = NULL, update_time = now()
          WHERE namespace = $1 AND job_id = $2 AND state IN ('DEAD', 'CANCELLED')
          RETURNING ${COLUMNS}
       )
       SELECT back.*, pg_notify('${CHANNELS.jobs}', ${wakeKeySql("$1", "back.queue")}) AS notified FROM back`,
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
  if (row) {
    const { notified: _, ...job } = row;
    return job;
  }
  const job = await get(q, ns, jobId);
  throw failedPrecondition(`job ${JSON.stringify(jobId)} is ${job.state}; only DEAD or CANCELLED jobs can be retried`, { job_id: jobId, state: job.state });
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
  const result = await q.query(
    `DELETE FROM jobs WHERE (namespace, job_id) IN (
       SELECT namespace, job_id FROM jobs WHERE finish_time < now() - $1::bigint * interval '1 millisecond'
          AND state IN ('SUCCEEDED', 'DEAD', 'CANCELLED')
        LIMIT $2)`,
    [retentionMs, limit],
  );
  return result.rowCount ?? 0;
}

/**
 * Deleting sessions of a namespace cancels their unfinished jobs in that
 * namespace (kept, not deleted, so workers and lists still see them).
 */
export async function onSessionsDeleted(tx: Queryable, ns: string, sessionIds: string[]): Promise<void> {
  await tx.query(
    `UPDATE jobs SET state = 'CANCELLED', finish_time = now(), update_time = now(), lease_token = NULL, lease_expire_time = NULL
      WHERE namespace = $1 AND session_id = ANY ($2::text[]) AND state IN ('SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING')`,
    [ns, sessionIds],
  );
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
