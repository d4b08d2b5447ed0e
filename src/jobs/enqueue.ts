// Enqueueing jobs: one multi-row INSERT per batch that also NOTIFYs each
// queue it added to, dedupe keys settled by the partial unique index, and
// AIP-155 request ids through db/idempotency.ts. EnqueueJob calls that
// arrive together are coalesced into one such batch, whatever their
// namespaces: each row carries its own namespace, and every lookup (taken
// ids, dedupe holders, request ids) is by (namespace, …).
import { Coalescer } from "../db/coalescer.js";
import { type Fields, selectList } from "../db/columns.js";
import type { CallScope, Database, Queryable } from "../db/database.js";
import { isUniqueViolation } from "../db/errors.js";
import { releaseClaim, rememberResponse, replayOrClaim } from "../db/idempotency.js";
import { CHANNELS } from "../db/notify-hub.js";
import { alreadyExists, CairnError, requestIdReused, transactionConflict } from "../errors.js";
import { refuseMissingParents, settleNewDependents } from "./dependencies.js";
import { type EnqueueOutcome, FIELDS, find, type JobEnqueue, type JobRecord, type NewJob, UNFINISHED, wakeKeySql } from "./store.js";

/** Request ids of EnqueueJob and BatchEnqueueJobs share one scope: a batch item may replay a single call. */
const ENQUEUE_SCOPE = "cairn.v1.JobService/EnqueueJob";
/** A dedupe holder may finish between an INSERT and its lookup; give up (TRANSACTION_CONFLICT) after this many tries. */
const DEDUPE_ROUNDS = 5;

type Outcome = EnqueueOutcome | CairnError;

/** An enqueue and the namespace it is in (a coalesced batch mixes namespaces). */
interface Scoped extends JobEnqueue {
  ns: string;
}

/** A job's slot in a batch: job ids are unique per namespace. */
const jobSlot = (ns: string, jobId: string) => `${ns}\u0000${jobId}`;

/**
 * EnqueueJob: calls arriving together share one multi-row INSERT and one
 * NOTIFY per queue; each keeps its own outcome (a taken job_id fails only
 * its own call).
 */
export class JobEnqueuer {
  private readonly batches: Coalescer<Scoped, Outcome>;

  constructor(db: Database) {
    this.batches = new Coalescer<Scoped, Outcome>(
      (enqueues, signal) =>
        // Without request ids or parents each statement stands alone (the
        // INSERT has its NOTIFY inside), so no BEGIN/COMMIT round trips are needed.
        enqueues.some((e) => e.idempotency !== null || (e.job.dependsOn?.length ?? 0) > 0)
          ? db.transaction({ signal }, (tx) => enqueueMany(tx, enqueues))
          : enqueueMany(db.on({ signal }), enqueues),
      { keyOf: (e) => jobSlot(e.ns, e.job.jobId), shareEqualKeys: false },
    );
  }

  async enqueue(scope: CallScope, ns: string, e: JobEnqueue): Promise<EnqueueOutcome> {
    const outcome = await this.batches.submit({ ...e, ns }, scope.signal);
    if (outcome instanceof CairnError) throw outcome;
    return outcome;
  }
}

/**
 * BatchEnqueueJobs, on the pool (never inside a caller's transaction): a
 * batch without request ids, parents or dedupe keys is one plain INSERT in
 * a transaction of its own, with no BEGIN/COMMIT round trips and no
 * conflict checks. Such a batch can fail only on a taken job_id, and then
 * the statement wrote nothing: enqueueAll runs the batch again and names
 * the job. `times`: false when the echo's read mask shows none of the
 * jobs' times (see InsertMode).
 */
export async function enqueueBatch(db: Database, scope: CallScope, ns: string, enqueues: JobEnqueue[], times: boolean): Promise<EnqueueOutcome[]> {
  const q = db.on(scope);
  if (enqueues.every(standsAlone)) {
    const scoped = enqueues.map((e) => ({ ...e, ns }));
    try {
      const inserted = await insertJobs(q, scoped, { conflicts: "fail", times });
      return scoped.map((e) => ({ job: inserted.get(jobSlot(ns, e.job.jobId))!, deduplicated: false }));
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
  }
  return enqueueAll(q, ns, enqueues);
}

/** An enqueue whose outcome can only be a new job (or a taken job_id): nothing to replay, deduplicate or wait for. */
const standsAlone = (e: JobEnqueue) => e.idempotency === null && e.job.dedupeKey === null && !e.job.dependsOn?.length;

/** BatchEnqueueJobs: every job or none, all in one namespace; a job may depend on others of the batch. */
export function enqueueAll(q: Queryable, ns: string, enqueues: JobEnqueue[]): Promise<EnqueueOutcome[]> {
  return q.atomic(async (tx) =>
    (await enqueueMany(tx, enqueues.map((e) => ({ ...e, ns })), true)).map((o) => {
      if (o instanceof CairnError) throw o;
      return o;
    }),
  );
}

/**
 * Enqueues jobs (in the caller's transaction when it is one); returns one
 * outcome per job, in order. While an unfinished job holds the same
 * (namespace, queue, dedupe_key), the partial unique index turns the insert
 * into a no-op and that job is returned instead (deduplicated); a taken
 * job_id (in the job's namespace) is ALREADY_EXISTS for that job alone.
 * Jobs with parents need a transaction (dependencies.ts); `sameCall`: the
 * enqueues are one call's, so they may name each other as parents.
 */
async function enqueueMany(q: Queryable, enqueues: Scoped[], sameCall = false): Promise<Outcome[]> {
  const leader = firstWithRequestId(enqueues);
  const outcomes = await replays(q, enqueues, leader);
  const claimed = enqueues.map((e, i) => e.idempotency !== null && leader[i] === i && outcomes[i] === undefined);
  const withParents = enqueues.map((e, i) => leader[i] === i && outcomes[i] === undefined && (e.job.dependsOn?.length ?? 0) > 0);
  if (withParents.some(Boolean)) {
    (await refuseMissingParents(q, enqueues, withParents, sameCall)).forEach((error, i) => error && (outcomes[i] = error));
  }
  const created: number[] = [];
  for (let round = 0; round < DEDUPE_ROUNDS; round++) {
    const open = enqueues.map((e, i) => ({ e, i })).filter(({ i }) => leader[i] === i && outcomes[i] === undefined);
    if (open.length === 0) break;
    const inserted = await insertJobs(q, open.map(({ e }) => e), { conflicts: "skip", times: true });
    const skipped = open.filter(({ e }) => !inserted.has(jobSlot(e.ns, e.job.jobId))).map(({ e }) => e);
    const taken = await takenIds(q, skipped);
    const holders = await dedupeHolders(q, skipped);
    for (const { e, i } of open) {
      const job = inserted.get(jobSlot(e.ns, e.job.jobId));
      const holder = e.job.dedupeKey === null ? undefined : holders.get(dedupeSlot(e.ns, e.job.queue, e.job.dedupeKey));
      if (job) {
        outcomes[i] = { job, deduplicated: false };
        created.push(i);
      } else if (holder) outcomes[i] = { job: holder, deduplicated: true };
      else if (taken.has(jobSlot(e.ns, e.job.jobId))) outcomes[i] = alreadyExists("job", e.job.jobId);
    }
  }
  await settleDependents(q, enqueues, outcomes, created.filter((i) => withParents[i]), sameCall);
  const settled = settle(enqueues, leader, outcomes);
  await settleClaims(q, enqueues, claimed, settled);
  return settled;
}

/**
 * The jobs just created with parents (`created`, indexes) are settled by
 * their parents' states, and their outcomes show them as they now are. A
 * parent named in the same call is the job its enqueue returned. A call
 * that fails as a whole (any error with `sameCall`) is rolled back anyway.
 */
async function settleDependents(q: Queryable, enqueues: Scoped[], outcomes: (Outcome | undefined)[], created: number[], sameCall: boolean): Promise<void> {
  if (created.length === 0 || (sameCall && outcomes.some((o) => o instanceof CairnError))) return;
  const named = new Map(enqueues.map((e, i) => [jobSlot(e.ns, e.job.jobId), i]));
  const resolve = (ns: string, id: string) => {
    const o = sameCall ? outcomes[named.get(jobSlot(ns, id)) ?? -1] : undefined;
    return o && !(o instanceof CairnError) ? o.job.jobId : id;
  };
  const jobs = created.map((i) => ({ ns: enqueues[i]!.ns, job: (outcomes[i] as EnqueueOutcome).job }));
  const settled = new Map((await settleNewDependents(q, jobs, resolve)).map(({ ns, job }) => [jobSlot(ns, job.jobId), job]));
  for (const i of created) outcomes[i] = { job: settled.get(jobSlot(enqueues[i]!.ns, enqueues[i]!.job.jobId))!, deduplicated: false };
}

/** Every outcome: a job still open gave up on its dedupe holder; a follower gets its first call's outcome. */
function settle(enqueues: Scoped[], leader: number[], outcomes: (Outcome | undefined)[]): Outcome[] {
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
 * would find the claim but not yet the job. Request ids are per namespace:
 * the same id in two namespaces is two first calls.
 */
function firstWithRequestId(enqueues: Scoped[]): number[] {
  const firstOf = new Map<string, number>();
  return enqueues.map((e, i) => {
    if (e.idempotency === null) return i;
    const key = `${e.ns}\u0000${e.idempotency.requestId}`;
    const first = firstOf.get(key);
    if (first !== undefined) return first;
    firstOf.set(key, i);
    return i;
  });
}

/**
 * Request ids claimed by this batch record their call's response (the job
 * created, or the dedupe holder with deduplicated: true), so a replay
 * returns exactly that; a claim whose job failed alone is given up.
 */
async function settleClaims(q: Queryable, enqueues: Scoped[], claimed: boolean[], outcomes: Outcome[]): Promise<void> {
  for (const [i, e] of enqueues.entries()) {
    if (!claimed[i] || e.idempotency === null) continue;
    const o = outcomes[i]!;
    if (o instanceof CairnError) await releaseClaim(q, e.ns, ENQUEUE_SCOPE, e.idempotency);
    else await rememberResponse(q, e.ns, ENQUEUE_SCOPE, e.idempotency, o.job.jobId, o);
  }
}

/**
 * Request ids first: a replay's outcome is its first call's response (or
 * that call's error, per item); undefined leaves the job to the INSERT, its
 * request id claimed.
 */
async function replays(q: Queryable, enqueues: Scoped[], leader: number[]): Promise<(Outcome | undefined)[]> {
  const outcomes: (Outcome | undefined)[] = enqueues.map(() => undefined);
  for (const [i, e] of enqueues.entries()) {
    if (e.idempotency === null || leader[i] !== i) continue;
    try {
      outcomes[i] = await replayOrClaim<EnqueueOutcome>(q, e.ns, {
        scope: ENQUEUE_SCOPE,
        idempotency: e.idempotency,
        resource: "job",
        resourceId: e.job.jobId,
        read: async (jobId) => {
          const job = await find(q, e.ns, jobId);
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

/**
 * What the server decides for a new job; the rest of its record is what
 * was sent. Its times are left out when the echo does not show them.
 */
type Inserted = Pick<JobRecord, "jobId" | "state"> & Partial<Pick<JobRecord, "runTime" | "createTime">> & { ns: string };
const DECIDED: Fields<Pick<Inserted, "ns" | "jobId" | "state">> = { ns: "namespace", jobId: FIELDS.jobId, state: FIELDS.state };
const DECIDED_TIMES: Fields<Required<Pick<Inserted, "runTime" | "createTime">>> = { runTime: FIELDS.runTime, createTime: FIELDS.createTime };

/** How insertJobs treats a conflict, and whether it returns the new jobs' times. */
interface InsertMode {
  /** A taken (namespace, job_id) or an unfinished dedupe holder: the row is skipped, or the statement fails (ALREADY_EXISTS, nothing inserted). */
  conflicts: "skip" | "fail";
  /** False: run_time, create_time and update_time stay empty in the records (an echo whose read mask leaves them out). */
  times: boolean;
}

/**
 * One INSERT for many jobs, each row in its own namespace, conflicts as
 * `mode` says. Only what the server decided comes back, so payloads are
 * not parsed again. Keyed by jobSlot; each (namespace, queue) added to is
 * woken once.
 */
async function insertJobs(q: Queryable, enqueues: Scoped[], mode: InsertMode): Promise<Map<string, JobRecord>> {
  const result = await q.query<Inserted>(
    `WITH inserted AS (
     INSERT INTO jobs (namespace, job_id, queue, payload, state, priority, run_time, max_attempts, backoff_initial_ms,
                       backoff_max_ms, backoff_multiplier, dedupe_key, session_id, group_key, depends_on)
     SELECT v.namespace, v.job_id, v.queue, v.payload,
            CASE WHEN v.depends_on IS NOT NULL THEN 'BLOCKED' WHEN v.run_time > now() THEN 'SCHEDULED' ELSE 'AVAILABLE' END,
            coalesce(v.priority, 0), coalesce(v.run_time, now()), v.max_attempts, v.backoff_initial_ms, v.backoff_max_ms,
            v.backoff_multiplier, v.dedupe_key, coalesce(v.session_id, ''), coalesce(v.group_key, ''), coalesce(v.depends_on, '{}')
       FROM jsonb_to_recordset($1::jsonb) AS v (namespace text, job_id text, queue text, payload jsonb, priority int,
            run_time timestamptz, max_attempts int, backoff_initial_ms bigint, backoff_max_ms bigint,
            backoff_multiplier double precision, dedupe_key text, session_id text, group_key text, depends_on text[])
     ${mode.conflicts === "skip" ? "ON CONFLICT DO NOTHING" : ""}
     RETURNING namespace, job_id, queue, state, run_time, create_time
     ), notified AS (
       SELECT pg_notify('${CHANNELS.jobs}', ${wakeKeySql("namespace", "queue")}) FROM (SELECT DISTINCT namespace, queue FROM inserted) AS q
     )
     SELECT ${selectList(mode.times ? { ...DECIDED, ...DECIDED_TIMES } : DECIDED)}, (SELECT count(*) FROM notified) AS queues FROM inserted`,
    [JSON.stringify(enqueues.map(toInsertRow))],
  );
  const sent = new Map(enqueues.map((e) => [jobSlot(e.ns, e.job.jobId), e.job]));
  const inserted = new Map<string, JobRecord>();
  for (const row of result.rows) {
    const slot = jobSlot(row.ns, row.jobId);
    inserted.set(slot, newJobRecord(sent.get(slot)!, row));
  }
  return inserted;
}

/**
 * A job just inserted: what was sent, and what the server decided. Built
 * field by field (one shape for every record): spreading the sent job and
 * overriding some of its fields cost tens of microseconds a job.
 */
function newJobRecord(j: NewJob, r: Inserted): JobRecord {
  return {
    jobId: j.jobId,
    queue: j.queue,
    payload: j.payload,
    state: r.state,
    priority: j.priority,
    runTime: r.runTime ?? "",
    maxAttempts: j.maxAttempts,
    backoff: j.backoff,
    dedupeKey: j.dedupeKey,
    sessionId: j.sessionId,
    groupKey: j.groupKey ?? "",
    dependsOn: j.dependsOn ?? [],
    progress: null,
    attempt: 0,
    workerId: "",
    leaseExpireTime: null,
    lastError: null,
    result: null,
    createTime: r.createTime ?? "",
    updateTime: r.createTime ?? "",
    finishTime: null,
  };
}

/**
 * A job as insertJobs' jsonb_to_recordset reads it, with its namespace.
 * What is absent (undefined: left out of the JSON, which a bulk producer's
 * rows are mostly made of) the INSERT takes as none or zero: priority 0,
 * no run_time, dedupe key, session, group or parents.
 */
function toInsertRow({ ns, job: j }: Scoped) {
  return {
    namespace: ns,
    job_id: j.jobId,
    queue: j.queue,
    payload: j.payload,
    priority: j.priority || undefined,
    run_time: j.runTime ?? undefined,
    max_attempts: j.maxAttempts,
    backoff_initial_ms: j.backoff.initialMs,
    backoff_max_ms: j.backoff.maxMs,
    backoff_multiplier: j.backoff.multiplier,
    dedupe_key: j.dedupeKey ?? undefined,
    session_id: j.sessionId || undefined,
    group_key: j.groupKey || undefined,
    depends_on: j.dependsOn?.length ? j.dependsOn : undefined,
  };
}

/** Which of these (skipped) jobs' ids are taken in their namespace, by jobSlot. */
async function takenIds(q: Queryable, enqueues: Scoped[]): Promise<Set<string>> {
  if (enqueues.length === 0) return new Set();
  const result = await q.query<{ ns: string; job_id: string }>(
    `SELECT namespace AS ns, job_id FROM jobs
      WHERE (namespace, job_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    [enqueues.map((e) => e.ns), enqueues.map((e) => e.job.jobId)],
  );
  return new Set(result.rows.map((r) => jobSlot(r.ns, r.job_id)));
}

const dedupeSlot = (ns: string, queue: string, dedupeKey: string) => `${ns}\u0000${queue}\u0000${dedupeKey}`;

/** The unfinished jobs holding these jobs' (namespace, queue, dedupe_key), by dedupeSlot. */
async function dedupeHolders(q: Queryable, enqueues: Scoped[]): Promise<Map<string, JobRecord>> {
  const keyed = enqueues.filter((e) => e.job.dedupeKey !== null);
  if (keyed.length === 0) return new Map();
  const result = await q.query<JobRecord & { ns: string }>(
    `SELECT namespace AS ns, ${selectList(FIELDS)} FROM jobs
      WHERE (namespace, queue, dedupe_key) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
        AND state IN ${UNFINISHED}`,
    [keyed.map((e) => e.ns), keyed.map((e) => e.job.queue), keyed.map((e) => e.job.dedupeKey)],
  );
  return new Map(result.rows.map(({ ns, ...r }) => [dedupeSlot(ns, r.queue, r.dedupeKey!), r]));
}
