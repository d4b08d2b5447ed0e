// SQL for the job queue. Claims use FOR UPDATE SKIP LOCKED and hand out a
// fresh random lease_token; every completion, failure and heartbeat names
// that token in its WHERE clause (fencing), so a worker whose lease was lost
// can change nothing. Rescue of expired leases touches only rows still
// RUNNING with an expired lease.
import { Coalescer } from "../db/coalescer.js";
import type { CallScope, Database, Queryable } from "../db/database.js";
import { claimRequestId } from "../db/idempotency.js";
import { CHANNELS } from "../db/notify-hub.js";
import { alreadyExists, CairnError, failedPrecondition, notFound } from "../errors.js";

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
  requestId: string;
  requestHash: string;
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

export const ENQUEUE_SCOPE = "cairn.v1.JobService/EnqueueJob";
const BATCH = 1000;

/** How readers see a job's state: a SCHEDULED job whose run_time has come is AVAILABLE. */
function effectiveState(t = ""): string {
  return `CASE WHEN ${t}state = 'SCHEDULED' AND ${t}run_time <= now() THEN 'AVAILABLE' ELSE ${t}state END`;
}

/** The columns of a job row, optionally qualified (`t` = "j."), with its state as readers see it. */
function columns(t = ""): string {
  return `${t}job_id, ${t}queue, ${t}payload, ${effectiveState(t)} AS state, ${t}priority, ${t}run_time, ${t}attempt,
  ${t}max_attempts, ${t}backoff_initial_ms, ${t}backoff_max_ms, ${t}backoff_multiplier, ${t}dedupe_key, ${t}session_id,
  ${t}worker_id, ${t}lease_token, ${t}lease_expire_time, ${t}last_error, ${t}result, ${t}create_time, ${t}update_time,
  ${t}finish_time`;
}

const COLUMNS = columns();

/** The delay before retry number `attempt` (1-based): initial × multiplier^(attempt−1), capped. */
const BACKOFF_SQL = `least(backoff_max_ms, backoff_initial_ms * power(backoff_multiplier, greatest(attempt - 1, 0)))
  * interval '1 millisecond'`;

interface Row {
  job_id: string;
  queue: string;
  payload: JsonObject;
  state: JobStateName;
  priority: number;
  run_time: string;
  attempt: number;
  max_attempts: number;
  backoff_initial_ms: number;
  backoff_max_ms: number;
  backoff_multiplier: number;
  dedupe_key: string | null;
  session_id: string;
  worker_id: string;
  lease_token: string | null;
  lease_expire_time: string | null;
  last_error: { message: string; details: JsonObject | null } | null;
  result: JsonObject | null;
  create_time: string;
  update_time: string;
  finish_time: string | null;
}

function toJob(r: Row): JobRecord {
  return {
    jobId: r.job_id,
    queue: r.queue,
    payload: r.payload,
    state: r.state,
    priority: r.priority,
    runTime: r.run_time,
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    backoff: { initialMs: r.backoff_initial_ms, maxMs: r.backoff_max_ms, multiplier: r.backoff_multiplier },
    dedupeKey: r.dedupe_key,
    sessionId: r.session_id,
    workerId: r.worker_id,
    leaseExpireTime: r.lease_expire_time,
    lastError: r.last_error,
    result: r.result,
    createTime: r.create_time,
    updateTime: r.update_time,
    finishTime: r.finish_time,
  };
}

function leaseLost(jobId: string): CairnError {
  return new CairnError("aborted", "LEASE_LOST", `the lease on job ${JSON.stringify(jobId)} is no longer held`, { job_id: jobId });
}

export class JobStore {
  constructor(private readonly db: Database) {}

  /**
   * EnqueueJob: calls arriving together share one transaction, one
   * multi-row INSERT and one NOTIFY; each keeps its own outcome.
   */
  async enqueueOne(scope: CallScope, e: JobEnqueue): Promise<EnqueueOutcome> {
    const outcome = await this.enqueues.submit(e, scope.signal);
    if (outcome instanceof CairnError) throw outcome;
    return outcome;
  }

  /** BatchEnqueueJobs: every job or none. */
  enqueueAll(scope: CallScope, enqueues: JobEnqueue[]): Promise<EnqueueOutcome[]> {
    return this.db.transaction(scope, async (tx) =>
      (await enqueueMany(tx, enqueues)).map((o) => {
        if (o instanceof CairnError) throw o;
        return o;
      }),
    );
  }

  private readonly enqueues = new Coalescer<JobEnqueue, EnqueueOutcome | CairnError>(
    (enqueues, signal) =>
      // Without request ids each statement stands alone (one INSERT, its
      // NOTIFY inside), so no BEGIN/COMMIT round trips are needed.
      enqueues.some((e) => e.requestId !== "")
        ? this.db.transaction({ signal }, (tx) => enqueueMany(tx, enqueues))
        : enqueueMany(this.db.scoped({ signal }), enqueues),
    { keyOf: (e) => e.job.jobId, shareEqualKeys: false },
  );

  /** Claims up to `max` runnable jobs of an unpaused queue, priority desc then run_time asc. */
  async lease(scope: CallScope, queue: string, workerId: string, max: number, leaseMs: number): Promise<Lease[]> {
    const result = await this.db.runPrepared<Row>(
      scope,
      "jobs_lease",
      `WITH picked AS (
         SELECT job_id FROM jobs
          WHERE queue = $1 AND state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND run_time <= now()
            AND NOT EXISTS (SELECT 1 FROM job_queues q WHERE q.queue = $1 AND q.paused)
          ORDER BY priority DESC, run_time, job_id
          LIMIT $2
          FOR UPDATE SKIP LOCKED
       )
       UPDATE jobs j SET state = 'RUNNING', attempt = j.attempt + 1, worker_id = $3, lease_token = gen_random_uuid(),
              lease_expire_time = now() + $4::bigint * interval '1 millisecond', update_time = now()
         FROM picked WHERE j.job_id = picked.job_id
       RETURNING ${columns("j.")}`,
      [queue, max, workerId, leaseMs],
    );
    return result.rows
      .map((r) => ({ job: toJob(r), leaseToken: r.lease_token! }))
      .sort((a, b) => b.job.priority - a.job.priority || a.job.runTime.localeCompare(b.job.runTime) || a.job.jobId.localeCompare(b.job.jobId));
  }

  async complete(scope: CallScope, jobId: string, token: string, result: JsonObject | null): Promise<JobRecord> {
    const done = await this.db.run<Row>(
      scope,
      `UPDATE jobs SET state = 'SUCCEEDED', result = $3::jsonb, finish_time = now(), update_time = now(),
              lease_token = NULL, lease_expire_time = NULL
        WHERE job_id = $1 AND lease_token = $2::uuid AND state = 'RUNNING'
        RETURNING ${COLUMNS}`,
      [jobId, token, result === null ? null : JSON.stringify(result)],
    );
    if (done.rows[0]) return toJob(done.rows[0]);
    throw await this.whyNoLease(scope, jobId);
  }

  /** Each completion stands alone; a lost lease fails only its own item. */
  async completeMany(scope: CallScope, items: { jobId: string; token: string; result: JsonObject | null }[]): Promise<CompletionOutcome[]> {
    const done = await this.db.run<{ job_id: string }>(
      scope,
      `UPDATE jobs j SET state = 'SUCCEEDED', result = c.result, finish_time = now(), update_time = now(),
              lease_token = NULL, lease_expire_time = NULL
         FROM jsonb_to_recordset($1::jsonb) AS c (job_id text, token uuid, result jsonb)
        WHERE j.job_id = c.job_id AND j.lease_token = c.token AND j.state = 'RUNNING'
          AND j.job_id = ANY ($2::text[])
        RETURNING j.job_id`,
      [JSON.stringify(items.map((i) => ({ job_id: i.jobId, token: i.token, result: i.result }))), items.map((i) => i.jobId)],
    );
    const ok = new Set(done.rows.map((r) => r.job_id));
    const missing = items.filter((i) => !ok.has(i.jobId)).map((i) => i.jobId);
    const known = missing.length
      ? new Set((await this.db.run<{ job_id: string }>(scope, `SELECT job_id FROM jobs WHERE job_id = ANY ($1::text[])`, [missing])).rows.map((r) => r.job_id))
      : new Set<string>();
    return items.map((i) => ({
      jobId: i.jobId,
      ok: ok.has(i.jobId),
      reason: ok.has(i.jobId) ? "" : known.has(i.jobId) ? "LEASE_LOST" : "NOT_FOUND",
    }));
  }

  /** RETRYING after backoff (or retry_after), or DEAD when attempts are spent or retry is false. */
  async fail(
    scope: CallScope,
    jobId: string,
    token: string,
    error: { message: string; details: JsonObject | null },
    retry: boolean,
    retryAfterMs: number | null,
  ): Promise<JobRecord> {
    const failed = await this.db.run<Row>(
      scope,
      `UPDATE jobs SET
         state = CASE WHEN $3 AND attempt < max_attempts THEN 'RETRYING' ELSE 'DEAD' END,
         run_time = CASE WHEN $3 AND attempt < max_attempts
                         THEN now() + coalesce($4::bigint * interval '1 millisecond', ${BACKOFF_SQL})
                         ELSE run_time END,
         finish_time = CASE WHEN $3 AND attempt < max_attempts THEN NULL ELSE now() END,
         last_error = $5::jsonb, update_time = now(), lease_token = NULL, lease_expire_time = NULL, worker_id = ''
       WHERE job_id = $1 AND lease_token = $2::uuid AND state = 'RUNNING'
       RETURNING ${COLUMNS}`,
      [jobId, token, retry, retryAfterMs, JSON.stringify(error)],
    );
    if (failed.rows[0]) return toJob(failed.rows[0]);
    throw await this.whyNoLease(scope, jobId);
  }

  async extend(scope: CallScope, jobId: string, token: string, leaseMs: number): Promise<JobRecord> {
    const extended = await this.db.run<Row>(
      scope,
      `UPDATE jobs SET lease_expire_time = now() + $3::bigint * interval '1 millisecond', update_time = now()
        WHERE job_id = $1 AND lease_token = $2::uuid AND state = 'RUNNING'
        RETURNING ${COLUMNS}`,
      [jobId, token, leaseMs],
    );
    if (extended.rows[0]) return toJob(extended.rows[0]);
    throw await this.whyNoLease(scope, jobId);
  }

  /**
   * Gives back leases whose holder went away (a StreamJobs client), for
   * others to take. Not a failed attempt, unless the lease had already
   * expired: those are left to the rescue, which counts them.
   */
  async release(scope: CallScope, leases: { jobId: string; token: string }[]): Promise<number> {
    if (leases.length === 0) return 0;
    const released = await this.db.run<{ queue: string }>(
      scope,
      `WITH back AS (
         UPDATE jobs j SET state = 'AVAILABLE', attempt = j.attempt - 1, worker_id = '', lease_token = NULL,
                lease_expire_time = NULL, update_time = now()
           FROM unnest($1::text[], $2::uuid[]) AS l (job_id, token)
          WHERE j.job_id = l.job_id AND j.lease_token = l.token AND j.state = 'RUNNING' AND j.lease_expire_time > now()
          RETURNING j.queue
       )
       SELECT queue, pg_notify('${CHANNELS.jobs}', queue) FROM back GROUP BY queue`,
      [leases.map((l) => l.jobId), leases.map((l) => l.token)],
    );
    return released.rowCount ?? 0;
  }

  /** How many of these leases are still held (the job RUNNING under that token). */
  async heldLeases(scope: CallScope, leases: { jobId: string; token: string }[]): Promise<Set<string>> {
    if (leases.length === 0) return new Set();
    const held = await this.db.run<{ job_id: string }>(
      scope,
      `SELECT j.job_id FROM jobs j JOIN unnest($1::text[], $2::uuid[]) AS l (job_id, token)
          ON j.job_id = l.job_id AND j.lease_token = l.token AND j.state = 'RUNNING'`,
      [leases.map((l) => l.jobId), leases.map((l) => l.token)],
    );
    return new Set(held.rows.map((r) => r.job_id));
  }

  /** Expired leases become RETRYING (a failed attempt, with backoff) or DEAD; a bounded batch. */
  async rescueExpiredLeases(scope: CallScope): Promise<number> {
    const rescued = await this.db.run<{ queue: string }>(
      scope,
      `WITH rescued AS (
         UPDATE jobs SET
           state = CASE WHEN attempt < max_attempts THEN 'RETRYING' ELSE 'DEAD' END,
           run_time = CASE WHEN attempt < max_attempts THEN now() + ${BACKOFF_SQL} ELSE run_time END,
           finish_time = CASE WHEN attempt < max_attempts THEN NULL ELSE now() END,
           last_error = jsonb_build_object('message', 'lease expired', 'details', jsonb_build_object('worker_id', worker_id)),
           worker_id = '', lease_token = NULL, lease_expire_time = NULL, update_time = now()
         WHERE job_id IN (
           SELECT job_id FROM jobs WHERE state = 'RUNNING' AND lease_expire_time <= now()
            LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)
           AND state = 'RUNNING' AND lease_expire_time <= now()
         RETURNING queue
       )
       SELECT queue, pg_notify('${CHANNELS.jobs}', queue) FROM rescued GROUP BY queue`,
    );
    return rescued.rowCount ?? 0;
  }

  async cancel(scope: CallScope, jobId: string): Promise<JobRecord> {
    const cancelled = await this.db.run<Row>(
      scope,
      `UPDATE jobs SET state = 'CANCELLED', finish_time = now(), update_time = now(),
              lease_token = NULL, lease_expire_time = NULL
        WHERE job_id = $1 AND state IN ('SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING')
        RETURNING ${COLUMNS}`,
      [jobId],
    );
    if (cancelled.rows[0]) return toJob(cancelled.rows[0]);
    const job = await this.get(scope, jobId);
    throw failedPrecondition(`job ${JSON.stringify(jobId)} is ${job.state}; only unfinished jobs can be cancelled`, { job_id: jobId, state: job.state });
  }

  async retry(scope: CallScope, jobId: string): Promise<JobRecord> {
    let retried;
    try {
      retried = await this.db.run<Row>(
        scope,
        `WITH back AS (
           UPDATE jobs SET state = 'AVAILABLE', attempt = 0, run_time = now(), finish_time = NULL, update_time = now()
            WHERE job_id = $1 AND state IN ('DEAD', 'CANCELLED')
            RETURNING ${COLUMNS}
         )
         SELECT back.*, pg_notify('${CHANNELS.jobs}', back.queue) FROM back`,
        [jobId],
      );
    } catch (error) {
      if ((error as CairnError).cause && ((error as CairnError).cause as { code?: string }).code === "23505") {
        throw failedPrecondition(`another unfinished job of the queue holds this job's dedupe_key`, { job_id: jobId });
      }
      throw error;
    }
    if (retried.rows[0]) return toJob(retried.rows[0]);
    const job = await this.get(scope, jobId);
    throw failedPrecondition(`job ${JSON.stringify(jobId)} is ${job.state}; only DEAD or CANCELLED jobs can be retried`, { job_id: jobId, state: job.state });
  }

  async get(scope: CallScope, jobId: string): Promise<JobRecord> {
    const result = await this.db.run<Row>(scope, `SELECT ${COLUMNS} FROM jobs WHERE job_id = $1`, [jobId]);
    if (!result.rows[0]) throw notFound("job", jobId);
    return toJob(result.rows[0]);
  }

  async list(
    scope: CallScope,
    queue: string | null,
    states: JobStateName[],
    limit: number,
    after: { time: string; jobId: string } | undefined,
  ): Promise<JobRecord[]> {
    const result = await this.db.run<Row>(
      scope,
      `SELECT ${COLUMNS} FROM jobs
        WHERE ($1::text IS NULL OR queue = $1)
          AND (cardinality($2::text[]) = 0 OR ${effectiveState()} = ANY ($2::text[]))
          AND ($3::timestamptz IS NULL OR (create_time, job_id) > ($3, $4::text))
        ORDER BY create_time, job_id LIMIT $5`,
      [queue, states, after?.time ?? null, after?.jobId ?? null, limit],
    );
    return result.rows.map(toJob);
  }

  async stats(scope: CallScope, queue: string): Promise<{ counts: Record<string, number>; oldestAvailable: string | null; paused: boolean }> {
    const result = await this.db.run<{ counts: Record<string, number>; oldest: string | null; paused: boolean | null }>(
      scope,
      `SELECT coalesce((SELECT jsonb_object_agg(state, n) FROM (
                SELECT ${effectiveState()} AS state, count(*) AS n
                  FROM jobs WHERE queue = $1 GROUP BY 1) s), '{}') AS counts,
              (SELECT min(run_time) FROM jobs
                WHERE queue = $1 AND state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND run_time <= now()) AS oldest,
              (SELECT paused FROM job_queues WHERE queue = $1) AS paused`,
      [queue],
    );
    const row = result.rows[0]!;
    return { counts: row.counts, oldestAvailable: row.oldest, paused: row.paused ?? false };
  }

  async setPaused(scope: CallScope, queue: string, paused: boolean): Promise<void> {
    await this.db.run(
      scope,
      `WITH q AS (
         INSERT INTO job_queues (queue, paused) VALUES ($1, $2)
         ON CONFLICT (queue) DO UPDATE SET paused = EXCLUDED.paused
       )
       SELECT pg_notify('${CHANNELS.jobs}', $1)`,
      [queue, paused],
    );
  }

  /** Deletes finished jobs older than the retention, in batches. */
  async deleteFinished(scope: CallScope, retentionMs: number): Promise<number> {
    let total = 0;
    for (;;) {
      const result = await this.db.run(
        scope,
        `DELETE FROM jobs WHERE job_id IN (
           SELECT job_id FROM jobs WHERE finish_time < now() - $1::bigint * interval '1 millisecond'
              AND state IN ('SUCCEEDED', 'DEAD', 'CANCELLED')
            LIMIT ${BATCH})`,
        [retentionMs],
      );
      total += result.rowCount ?? 0;
      if ((result.rowCount ?? 0) < BATCH) return total;
    }
  }

  /** Why a fenced update matched nothing: the job is unknown, or the lease is not held. */
  private async whyNoLease(scope: CallScope, jobId: string): Promise<CairnError> {
    const exists = await this.db.run(scope, `SELECT 1 FROM jobs WHERE job_id = $1`, [jobId]);
    return exists.rowCount ? leaseLost(jobId) : notFound("job", jobId);
  }
}

/**
 * Enqueues jobs with one multi-row INSERT that also NOTIFYs each queue it
 * added to (in the caller's transaction when it has one); returns one
 * outcome per job, in order. While an
 * unfinished job holds the same (queue, dedupe_key), the partial unique
 * index turns the insert into a no-op and that job is returned instead
 * (deduplicated); a taken job_id is ALREADY_EXISTS for that job alone.
 */
async function enqueueMany(db: Queryable, enqueues: JobEnqueue[]): Promise<(EnqueueOutcome | CairnError)[]> {
  const outcomes: (EnqueueOutcome | CairnError | undefined)[] = enqueues.map(() => undefined);
  // Request ids first: a replay returns the job its first call created.
  for (const [i, e] of enqueues.entries()) {
    if (e.requestId === "") continue;
    try {
      const claim = await claimRequestId(db, ENQUEUE_SCOPE, e.requestId, e.requestHash, e.job.jobId);
      if (claim.kind === "replay") {
        const existing = await db.query<Row>(`SELECT ${COLUMNS} FROM jobs WHERE job_id = $1`, [claim.resourceId]);
        outcomes[i] = existing.rows[0]
          ? { job: toJob(existing.rows[0]), deduplicated: false }
          : notFound("job", claim.resourceId, "created by this request_id, since deleted");
      }
    } catch (error) {
      if (!(error instanceof CairnError)) throw error;
      outcomes[i] = error;
    }
  }
  // A dedupe holder may finish between the INSERT and the lookup: try again.
  for (let round = 0; round < 5; round++) {
    const open = enqueues.map((e, i) => ({ e, i })).filter(({ i }) => outcomes[i] === undefined);
    if (open.length === 0) break;
    const inserted = await insertJobs(db, open.map(({ e }) => e.job));
    const skipped = open.filter(({ e }) => !inserted.has(e.job.jobId));
    const taken = skipped.length
      ? new Set((await db.query<{ job_id: string }>(`SELECT job_id FROM jobs WHERE job_id = ANY ($1::text[])`, [skipped.map(({ e }) => e.job.jobId)])).rows.map((r) => r.job_id))
      : new Set<string>();
    const holders = skipped.length ? await dedupeHolders(db, skipped.map(({ e }) => e.job)) : new Map<string, JobRecord>();
    for (const { e, i } of open) {
      const job = inserted.get(e.job.jobId);
      if (job) outcomes[i] = { job, deduplicated: false };
      else if (e.job.dedupeKey !== null && holders.has(`${e.job.queue}\u0000${e.job.dedupeKey}`)) {
        outcomes[i] = { job: holders.get(`${e.job.queue}\u0000${e.job.dedupeKey}`)!, deduplicated: true };
      } else if (taken.has(e.job.jobId)) outcomes[i] = alreadyExists("job", e.job.jobId);
    }
  }
  return outcomes.map(
    (o, i) => o ?? new CairnError("aborted", "TRANSACTION_CONFLICT", "the deduplicating job kept changing; retry", { queue: enqueues[i]!.job.queue }),
  );
}

/**
 * One INSERT for many jobs; conflicts (job_id, or an unfinished dedupe
 * holder) are skipped. Only what the server decided comes back; the rest of
 * each record is what was sent, so payloads are not parsed again.
 */
async function insertJobs(tx: Queryable, jobs: NewJob[]): Promise<Map<string, JobRecord>> {
  const result = await tx.query<{ job_id: string; state: JobStateName; run_time: string; create_time: string }>(
    `WITH inserted AS (
     INSERT INTO jobs (job_id, queue, payload, state, priority, run_time, max_attempts, backoff_initial_ms,
                       backoff_max_ms, backoff_multiplier, dedupe_key, session_id)
     SELECT v.job_id, v.queue, v.payload,
            CASE WHEN v.run_time > now() THEN 'SCHEDULED' ELSE 'AVAILABLE' END,
            v.priority, coalesce(v.run_time, now()), v.max_attempts, v.backoff_initial_ms, v.backoff_max_ms,
            v.backoff_multiplier, v.dedupe_key, v.session_id
       FROM jsonb_to_recordset($1::jsonb) AS v (job_id text, queue text, payload jsonb, priority int,
            run_time timestamptz, max_attempts int, backoff_initial_ms bigint, backoff_max_ms bigint,
            backoff_multiplier double precision, dedupe_key text, session_id text)
     ON CONFLICT DO NOTHING
     RETURNING job_id, queue, state, run_time, create_time
     ), notified AS (
       SELECT pg_notify('${CHANNELS.jobs}', queue) FROM (SELECT DISTINCT queue FROM inserted) AS q
     )
     SELECT job_id, state, run_time, create_time, (SELECT count(*) FROM notified) AS queues FROM inserted`,
    [
      JSON.stringify(
        jobs.map((j) => ({
          job_id: j.jobId,
          queue: j.queue,
          payload: j.payload,
          priority: j.priority,
          run_time: j.runTime,
          max_attempts: j.maxAttempts,
          backoff_initial_ms: j.backoff.initialMs,
          backoff_max_ms: j.backoff.maxMs,
          backoff_multiplier: j.backoff.multiplier,
          dedupe_key: j.dedupeKey,
          session_id: j.sessionId,
        })),
      ),
    ],
  );
  const sent = new Map(jobs.map((j) => [j.jobId, j]));
  return new Map(
    result.rows.map((r) => {
      const j = sent.get(r.job_id)!;
      const job: JobRecord = {
        ...j,
        state: r.state,
        runTime: r.run_time,
        attempt: 0,
        workerId: "",
        leaseExpireTime: null,
        lastError: null,
        result: null,
        createTime: r.create_time,
        updateTime: r.create_time,
        finishTime: null,
      };
      return [r.job_id, job];
    }),
  );
}

/** The unfinished jobs holding these jobs' (queue, dedupe_key), keyed "queue\0key". */
async function dedupeHolders(tx: Queryable, jobs: NewJob[]): Promise<Map<string, JobRecord>> {
  const keyed = jobs.filter((j) => j.dedupeKey !== null);
  if (keyed.length === 0) return new Map();
  const result = await tx.query<Row>(
    `SELECT ${COLUMNS} FROM jobs
      WHERE (queue, dedupe_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
        AND state IN ('SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING')`,
    [keyed.map((j) => j.queue), keyed.map((j) => j.dedupeKey)],
  );
  return new Map(result.rows.map((r) => [`${r.queue}\u0000${r.dedupe_key}`, toJob(r)]));
}

/** Cancels the unfinished jobs of these sessions (inside a session delete). */
export async function cancelSessionJobs(tx: Queryable, sessionIds: string[]): Promise<void> {
  await tx.query(
    `UPDATE jobs SET state = 'CANCELLED', finish_time = now(), update_time = now(), lease_token = NULL, lease_expire_time = NULL
      WHERE session_id = ANY ($1::text[]) AND state IN ('SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING')`,
    [sessionIds],
  );
}
