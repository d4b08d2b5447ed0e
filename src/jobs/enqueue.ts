// Enqueueing jobs: one multi-row INSERT per batch that also NOTIFYs each
// queue it added to, dedupe keys settled by the partial unique index, and
// AIP-155 request ids through db/idempotency.ts. EnqueueJob calls that
// arrive together are coalesced into one such batch.
import { Coalescer } from "../db/coalescer.js";
import { type Fields, selectList } from "../db/columns.js";
import type { CallScope, Database, Queryable } from "../db/database.js";
import { releaseClaim, rememberResponse, replayOrClaim } from "../db/idempotency.js";
import { CHANNELS } from "../db/notify-hub.js";
import { alreadyExists, CairnError, requestIdReused, transactionConflict } from "../errors.js";
import { type EnqueueOutcome, existing, FIELDS, find, type JobEnqueue, type JobRecord, type NewJob } from "./store.js";

/** Request ids of EnqueueJob and BatchEnqueueJobs share one scope: a batch item may replay a single call. */
const ENQUEUE_SCOPE = "cairn.v1.JobService/EnqueueJob";
/** A dedupe holder may finish between an INSERT and its lookup; give up (TRANSACTION_CONFLICT) after this many tries. */
const DEDUPE_ROUNDS = 5;

type Outcome = EnqueueOutcome | CairnError;

/**
 * EnqueueJob: calls arriving together share one multi-row INSERT and one
 * NOTIFY per queue; each keeps its own outcome (a taken job_id fails only
 * its own call).
 */
export class JobEnqueuer {
  private readonly batches: Coalescer<JobEnqueue, Outcome>;

  constructor(db: Database) {
    this.batches = new Coalescer<JobEnqueue, Outcome>(
      (enqueues, signal) =>
        // Without request ids each statement stands alone (the INSERT has
        // its NOTIFY inside), so no BEGIN/COMMIT round trips are needed.
        enqueues.some((e) => e.idempotency !== null)
          ? db.transaction({ signal }, (tx) => enqueueMany(tx, enqueues))
          : enqueueMany(db.on({ signal }), enqueues),
      { keyOf: (e) => e.job.jobId, shareEqualKeys: false },
    );
  }

  async enqueue(scope: CallScope, e: JobEnqueue): Promise<EnqueueOutcome> {
    const outcome = await this.batches.submit(e, scope.signal);
    if (outcome instanceof CairnError) throw outcome;
    return outcome;
  }
}

/** BatchEnqueueJobs: every job or none. */
export function enqueueAll(q: Queryable, enqueues: JobEnqueue[]): Promise<EnqueueOutcome[]> {
  return q.atomic(async (tx) =>
    (await enqueueMany(tx, enqueues)).map((o) => {
      if (o instanceof CairnError) throw o;
      return o;
    }),
  );
}

/**
 * Enqueues jobs (in the caller's transaction when it is one); returns one
 * outcome per job, in order. While an unfinished job holds the same
 * (queue, dedupe_key), the partial unique index turns the insert into a
 * no-op and that job is returned instead (deduplicated); a taken job_id is
 * ALREADY_EXISTS for that job alone.
 */
async function enqueueMany(q: Queryable, enqueues: JobEnqueue[]): Promise<Outcome[]> {
  const leader = firstWithRequestId(enqueues);
  const outcomes = await replays(q, enqueues, leader);
  const claimed = enqueues.map((e, i) => e.idempotency !== null && leader[i] === i && outcomes[i] === undefined);
  for (let round = 0; round < DEDUPE_ROUNDS; round++) {
    const open = enqueues.map((e, i) => ({ e, i })).filter(({ i }) => leader[i] === i && outcomes[i] === undefined);
    if (open.length === 0) break;
    const inserted = await insertJobs(q, open.map(({ e }) => e.job));
    const skipped = open.filter(({ e }) => !inserted.has(e.job.jobId)).map(({ e }) => e.job);
    const taken = skipped.length ? await existing(q, skipped.map((j) => j.jobId)) : new Set<string>();
    const holders = await dedupeHolders(q, skipped);
    for (const { e, i } of open) {
      const job = inserted.get(e.job.jobId);
      const holder = e.job.dedupeKey === null ? undefined : holders.get(dedupeSlot(e.job.queue, e.job.dedupeKey));
      if (job) outcomes[i] = { job, deduplicated: false };
      else if (holder) outcomes[i] = { job: holder, deduplicated: true };
      else if (taken.has(e.job.jobId)) outcomes[i] = alreadyExists("job", e.job.jobId);
    }
  }
  const settled = settle(enqueues, leader, outcomes);
  await settleClaims(q, enqueues, claimed, settled);
  return settled;
}

/** Every outcome: a job still open gave up on its dedupe holder; a follower gets its first call's outcome. */
function settle(enqueues: JobEnqueue[], leader: number[], outcomes: (Outcome | undefined)[]): Outcome[] {
  const settled: Outcome[] = [];
  for (const [i, e] of enqueues.entries()) {
    const first = leader[i]!;
    if (first === i) settled.push(outcomes[i] ?? transactionConflict("the deduplicating job kept changing; retry", { queue: e.job.queue }));
    else if (enqueues[first]!.idempotency!.requestHash === e.idempotency!.requestHash) settled.push(settled[first]!);
    else settled.push(requestIdReused(e.idempotency!.requestId));
  }
  return settled;
}

/**
 * For each enqueue, the index of the first in the batch with its request id
 * (its own index when it is the first, or has none). A retry coalesced with
 * its first call follows that call instead of claiming the id again, which
 * would find the claim but not yet the job.
 */
function firstWithRequestId(enqueues: JobEnqueue[]): number[] {
  const firstOf = new Map<string, number>();
  return enqueues.map((e, i) => {
    if (e.idempotency === null) return i;
    const first = firstOf.get(e.idempotency.requestId);
    if (first !== undefined) return first;
    firstOf.set(e.idempotency.requestId, i);
    return i;
  });
}

/**
 * Request ids claimed by this batch record their call's response (the job
 * created, or the dedupe holder with deduplicated: true), so a replay
 * returns exactly that; a claim whose job failed alone is given up.
 */
async function settleClaims(q: Queryable, enqueues: JobEnqueue[], claimed: boolean[], outcomes: Outcome[]): Promise<void> {
  for (const [i, e] of enqueues.entries()) {
    if (!claimed[i] || e.idempotency === null) continue;
    const o = outcomes[i]!;
    if (o instanceof CairnError) await releaseClaim(q, ENQUEUE_SCOPE, e.idempotency);
    else await rememberResponse(q, ENQUEUE_SCOPE, e.idempotency, o.job.jobId, o);
  }
}

/**
 * Request ids first: a replay's outcome is its first call's response (or
 * that call's error, per item); undefined leaves the job to the INSERT, its
 * request id claimed.
 */
async function replays(q: Queryable, enqueues: JobEnqueue[], leader: number[]): Promise<(Outcome | undefined)[]> {
  const outcomes: (Outcome | undefined)[] = enqueues.map(() => undefined);
  for (const [i, e] of enqueues.entries()) {
    if (e.idempotency === null || leader[i] !== i) continue;
    try {
      outcomes[i] = await replayOrClaim<EnqueueOutcome>(q, {
        scope: ENQUEUE_SCOPE,
        idempotency: e.idempotency,
        resource: "job",
        resourceId: e.job.jobId,
        read: async (jobId) => {
          const job = await find(q, jobId);
          return job && { job, deduplicated: false };
        },
      });
    } catch (error) {
      if (!(error instanceof CairnError)) throw error;
      outcomes[i] = error;
    }
  }
  return outcomes;
}

/** What the server decides for a new job; the rest of its record is what was sent. */
type Inserted = Pick<JobRecord, "jobId" | "state" | "runTime" | "createTime">;
const INSERTED: Fields<Inserted> = {
  jobId: FIELDS.jobId,
  state: FIELDS.state,
  runTime: FIELDS.runTime,
  createTime: FIELDS.createTime,
};

/**
 * One INSERT for many jobs; conflicts (job_id, or an unfinished dedupe
 * holder) are skipped. Only what the server decided comes back, so
 * payloads are not parsed again.
 */
async function insertJobs(q: Queryable, jobs: NewJob[]): Promise<Map<string, JobRecord>> {
  const result = await q.query<Inserted>(
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
     SELECT ${selectList(INSERTED)}, (SELECT count(*) FROM notified) AS queues FROM inserted`,
    [JSON.stringify(jobs.map(toInsertRow))],
  );
  const sent = new Map(jobs.map((j) => [j.jobId, j]));
  return new Map(
    result.rows.map((r) => {
      const job: JobRecord = {
        ...sent.get(r.jobId)!,
        state: r.state,
        runTime: r.runTime,
        attempt: 0,
        workerId: "",
        leaseExpireTime: null,
        lastError: null,
        result: null,
        createTime: r.createTime,
        updateTime: r.createTime,
        finishTime: null,
      };
      return [r.jobId, job];
    }),
  );
}

/** A job as insertJobs' jsonb_to_recordset reads it. */
function toInsertRow(j: NewJob) {
  return {
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
  };
}

const dedupeSlot = (queue: string, dedupeKey: string) => `${queue}\u0000${dedupeKey}`;

/** The unfinished jobs holding these jobs' (queue, dedupe_key), by dedupeSlot. */
async function dedupeHolders(q: Queryable, jobs: NewJob[]): Promise<Map<string, JobRecord>> {
  const keyed = jobs.filter((j) => j.dedupeKey !== null);
  if (keyed.length === 0) return new Map();
  const result = await q.query<JobRecord>(
    `SELECT ${selectList(FIELDS)} FROM jobs
      WHERE (queue, dedupe_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
        AND state IN ('SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING')`,
    [keyed.map((j) => j.queue), keyed.map((j) => j.dedupeKey)],
  );
  return new Map(result.rows.map((r) => [dedupeSlot(r.queue, r.dedupeKey!), r]));
}
