// JobService handlers: validate, convert wire <-> record, call the store.
// Enqueueing is in enqueue.ts, waiting for work (LeaseJobs' wait, the
// StreamJobs loop) in leasing.ts, the SQL in store.ts. The factory is the
// union of four small groups (enqueue, lease, finish, manage) so that no
// function grows past a screen. Every store call names ctx.namespace: jobs,
// queues, pauses, dedupe keys and request ids are all per namespace.
import { type Backoff, type CompleteJobRequest, type Duration, type EnqueueJobRequest, type FailJobRequest, Job, JobServiceService, JobState } from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import type { Limits } from "../config.js";
import { idempotency } from "../db/idempotency.js";
import { writeMessage } from "../grpc/streams.js";
import { isoFromTimestamp, positiveDurationMicros, timestampFromIso } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageResponse, pageSize } from "../grpc/pagination.js";
import { maskedResource, parseReadMask } from "../grpc/read-mask.js";
import {
  Violations,
  checkBatchSize,
  checkDocument,
  checkFilterList,
  checkId,
  checkReference,
  checkText,
  checkUnique,
} from "../grpc/validate.js";
import { checkBatchCycles, checkDependsOn } from "./dependencies.js";
import { enqueueBatch, JobEnqueuer } from "./enqueue.js";
import { FinishedLeases, FlowControl, leaseWithWait, streamLeases } from "./leasing.js";
import { flowStats } from "./queue-config.js";
import { queueConfigHandlers } from "./queue-config-service.js";
import type { ScheduleMethod } from "./schedule-service.js";
import * as store from "./store.js";
import type { BackoffPolicy, JobDocument, JobEnqueue, JobRecord, JobStateName, Lease } from "./store.js";

const JOB_STATES = enumCodec<JobState, JobStateName>(JobState, "JOB_STATE_");
const JOB_FIELDS = maskedResource(Job);
/** The documents a read mask may leave out of the SELECT, by field name. */
const JOB_DOCUMENTS: Record<string, JobDocument> = { payload: "payload", result: "result", last_error: "lastError", progress: "progress" };
/** The times a new job's echo shows; a read mask with none of them spares the store reading them. */
const JOB_TIMES = ["run_time", "create_time", "update_time"];
const DEFAULTS = { maxAttempts: 5, initialMs: 1_000, maxMs: 3_600_000, multiplier: 2, leaseMs: 30_000 };
const MAX_WAIT_MS = 60_000;
const MAX_LEASE_MS = 24 * 3600 * 1000;

const ms = (micros: number) => Math.ceil(micros / 1000);
const duration = (millis: number) => ({ seconds: Math.floor(millis / 1000), nanos: (millis % 1000) * 1_000_000 });

/** A retry policy as the wire carries it (a job's, or a schedule's template). */
export function toWireBackoff(b: BackoffPolicy): Backoff {
  return { initialDelay: duration(b.initialMs), maxDelay: duration(b.maxMs), multiplier: b.multiplier };
}

export function toWire(j: JobRecord): Job {
  return {
    jobId: j.jobId,
    queue: j.queue,
    payload: j.payload,
    state: JOB_STATES.toWire(j.state),
    priority: j.priority,
    runTime: timestampFromIso(j.runTime),
    attempt: j.attempt,
    maxAttempts: j.maxAttempts,
    backoff: toWireBackoff(j.backoff),
    dedupeKey: j.dedupeKey ?? "",
    sessionId: j.sessionId,
    groupKey: j.groupKey,
    workerId: j.workerId,
    leaseExpireTime: timestampFromIso(j.leaseExpireTime),
    lastError: j.lastError ? { message: j.lastError.message, details: j.lastError.details ?? undefined } : undefined,
    result: j.result ?? undefined,
    createTime: timestampFromIso(j.createTime),
    updateTime: timestampFromIso(j.updateTime),
    finishTime: timestampFromIso(j.finishTime),
    dependsOn: j.dependsOn,
    progress: j.progress ?? undefined,
  };
}

const toWireLease = (l: Lease) => ({ job: toWire(l.job), leaseToken: l.leaseToken });

function durationMs(v: Violations, field: string, d: Duration | undefined, fallback: number, allowZero = false): number {
  if (!d) return fallback;
  if (allowZero && d.seconds === 0 && d.nanos === 0) return 0;
  return ms(v.collect(() => positiveDurationMicros(d, field)) ?? 0) || fallback;
}

/** lease_duration as LeaseJobs, StreamJobs and ExtendLease all take it: 30 s when unset, at most 24 h. */
function leaseDurationMs(v: Violations, d: Duration | undefined): number {
  const leaseMs = durationMs(v, "lease_duration", d, DEFAULTS.leaseMs);
  if (leaseMs > MAX_LEASE_MS) v.add("lease_duration", "must be at most 24 h");
  return leaseMs;
}

export function toEnqueue(v: Violations, request: EnqueueJobRequest, at: string, limits: Limits): JobEnqueue {
  const job = request.job;
  if (!job) {
    v.add(`${at}job`, "is required");
    return undefined as never;
  }
  checkId(v, `${at}job.job_id`, job.jobId, false);
  checkId(v, `${at}job.queue`, job.queue, true);
  checkId(v, `${at}job.session_id`, job.sessionId, false);
  checkReference(v, `${at}job.group_key`, job.groupKey, false);
  checkId(v, `${at}request_id`, request.requestId, false);
  checkText(v, `${at}job.dedupe_key`, job.dedupeKey, 256);
  checkDocument(v, `${at}job.payload`, job.payload, limits);
  checkDependsOn(v, at, job.jobId, job.dependsOn);
  if (job.maxAttempts < 0 || job.maxAttempts > 1000) v.add(`${at}job.max_attempts`, "must be 1..1000 (0: the default, 5)");
  const b = job.backoff;
  const initialMs = durationMs(v, `${at}job.backoff.initial_delay`, b?.initialDelay, DEFAULTS.initialMs);
  const maxMs = durationMs(v, `${at}job.backoff.max_delay`, b?.maxDelay, DEFAULTS.maxMs);
  const multiplier = b?.multiplier || DEFAULTS.multiplier;
  if (!(multiplier >= 1 && multiplier <= 100)) v.add(`${at}job.backoff.multiplier`, "must be 1..100 (0: the default, 2)");
  if (initialMs > maxMs) v.add(`${at}job.backoff.max_delay`, "must not be less than initial_delay");
  const runTime = v.collect(() => isoFromTimestamp(job.runTime, `${at}job.run_time`));
  return {
    job: {
      jobId: job.jobId || uuidv7(),
      queue: job.queue,
      payload: job.payload ?? {},
      priority: job.priority,
      runTime,
      maxAttempts: job.maxAttempts || DEFAULTS.maxAttempts,
      backoff: { initialMs, maxMs, multiplier },
      dedupeKey: job.dedupeKey || null,
      sessionId: job.sessionId,
      groupKey: job.groupKey,
      dependsOn: job.dependsOn,
    },
    idempotency: idempotency(request.requestId, () => ({ job })),
    at,
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function checkLease(v: Violations, at: string, jobId: string, token: string): void {
  checkId(v, `${at}job_id`, jobId, true);
  if (!UUID.test(token)) v.add(`${at}lease_token`, "must be the lease_token of a lease");
}

function checkQueue(queue: string): void {
  const v = new Violations();
  checkId(v, "queue", queue, true);
  v.throwIfAny();
}

function checkJobId(jobId: string): void {
  const v = new Violations();
  checkId(v, "job_id", jobId, true);
  v.throwIfAny();
}

type JobHandlers = ServiceHandlers<typeof JobServiceService>;

/** Every method but the schedules' (schedule-service.ts; server.ts joins the two). */
export function jobHandlers(deps: ServiceDeps): Omit<JobHandlers, ScheduleMethod> {
  const flow = new FlowControl();
  const finished = new FinishedLeases();
  return {
    ...enqueueHandlers(deps),
    ...leaseHandlers(deps, finished, flow),
    ...finishHandlers(deps, finished),
    ...manageHandlers(deps, finished),
    ...queueConfigHandlers(deps),
  };
}

function enqueueHandlers({ db, limits }: ServiceDeps): Pick<JobHandlers, "enqueueJob" | "batchEnqueueJobs"> {
  const enqueuer = new JobEnqueuer(db);
  return {
    async enqueueJob(request, ctx) {
      const v = new Violations();
      const e = toEnqueue(v, request, "", limits);
      v.throwIfAny();
      const out = await enqueuer.enqueue(ctx, ctx.namespace, e);
      return { job: toWire(out.job), deduplicated: out.deduplicated };
    },

    async batchEnqueueJobs(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "requests", request.requests.length, limits);
      const enqueues = request.requests.map((r, i) => toEnqueue(v, r, `requests[${i}].`, limits));
      // Only ids the client gave: generated ones are unique anyway.
      checkUnique(v, "requests", request.requests.map((r) => r.job?.jobId ?? ""), ".job.job_id");
      checkBatchCycles(v, request.requests.map((r, i) => ({ at: `requests[${i}].`, jobId: r.job?.jobId ?? "", dependsOn: r.job?.dependsOn ?? [] })));
      const mask = parseReadMask(v, request.readMask, JOB_FIELDS);
      v.throwIfAny();
      const times = JOB_TIMES.some((field) => mask.includes(field));
      return { jobs: (await enqueueBatch(db, ctx, ctx.namespace, enqueues, times)).map((o) => mask.apply(toWire(o.job))) };
    },
  };
}

function leaseHandlers(
  { db, hub, stopping, limits }: ServiceDeps,
  finished: FinishedLeases,
  flow: FlowControl,
): Pick<JobHandlers, "leaseJobs" | "streamJobs" | "extendLease"> {
  return {
    async leaseJobs(request, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, true);
      checkReference(v, "worker_id", request.workerId, false);
      if (request.maxJobs < 1 || request.maxJobs > 1000) v.add("max_jobs", "must be 1..1000");
      const leaseMs = leaseDurationMs(v, request.leaseDuration);
      const waitMs = durationMs(v, "wait", request.wait, 0, true);
      if (waitMs > MAX_WAIT_MS) v.add("wait", "must be at most 60 s");
      v.throwIfAny();
      const r = { namespace: ctx.namespace, queue: request.queue, workerId: request.workerId, leaseMs };
      const leases = await leaseWithWait({ db, hub, stopping, flow }, ctx, r, request.maxJobs, waitMs);
      return { leases: leases.map(toWireLease) };
    },

    async streamJobs(request, call, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, true);
      checkReference(v, "worker_id", request.workerId, false);
      if (request.maxInFlight < 1 || request.maxInFlight > 1000) v.add("max_in_flight", "must be 1..1000");
      const leaseMs = leaseDurationMs(v, request.leaseDuration);
      v.throwIfAny();
      const r = { namespace: ctx.namespace, queue: request.queue, workerId: request.workerId, leaseMs };
      await streamLeases({ db, hub, finished, flow }, ctx, r, request.maxInFlight, (l) => writeMessage(call, toWireLease(l), ctx.signal));
    },

    async extendLease(request, ctx) {
      const v = new Violations();
      checkLease(v, "", request.jobId, request.leaseToken);
      const leaseMs = leaseDurationMs(v, request.leaseDuration);
      checkDocument(v, "progress", request.progress, limits);
      v.throwIfAny();
      return toWire(await store.extend(db.on(ctx), ctx.namespace, request.jobId, request.leaseToken, leaseMs, request.progress ?? null));
    },
  };
}

/** CompleteJob's request, validated (field paths prefixed with `at`) and converted for store.complete. */
export function planCompleteJob(v: Violations, request: CompleteJobRequest, at: string, limits: Limits) {
  checkLease(v, at, request.jobId, request.leaseToken);
  checkDocument(v, `${at}result`, request.result, limits);
  return { jobId: request.jobId, token: request.leaseToken, result: request.result ?? null };
}

/** FailJob's request, validated (field paths prefixed with `at`) and converted for store.fail. */
export function planFailJob(v: Violations, request: FailJobRequest, at: string, limits: Limits) {
  checkLease(v, at, request.jobId, request.leaseToken);
  checkText(v, `${at}error.message`, request.error?.message ?? "", 4096);
  checkDocument(v, `${at}error.details`, request.error?.details, limits);
  const retryAfterMs = request.retryAfter ? durationMs(v, `${at}retry_after`, request.retryAfter, 0, true) : null;
  const error = { message: request.error?.message ?? "", details: request.error?.details ?? null };
  return { jobId: request.jobId, token: request.leaseToken, error, retry: request.retry ?? true, retryAfterMs };
}

/** Fenced by the lease token; each finish is announced so a local StreamJobs refills at once. */
function finishHandlers({ db, limits }: ServiceDeps, finished: FinishedLeases): Pick<JobHandlers, "completeJob" | "batchCompleteJobs" | "failJob"> {
  return {
    async completeJob(request, ctx) {
      const v = new Violations();
      const c = planCompleteJob(v, request, "", limits);
      v.throwIfAny();
      const job = await store.complete(db.on(ctx), ctx.namespace, c.jobId, c.token, c.result);
      finished.announce(ctx.namespace, [job.jobId]);
      return toWire(job);
    },

    async batchCompleteJobs(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "requests", request.requests.length, limits);
      request.requests.forEach((r, i) => {
        checkLease(v, `requests[${i}].`, r.jobId, r.leaseToken);
        checkDocument(v, `requests[${i}].result`, r.result, limits);
      });
      checkUnique(v, "requests", request.requests.map((r) => r.jobId), ".job_id");
      v.throwIfAny();
      const items = request.requests.map((r) => ({ jobId: r.jobId, token: r.leaseToken, result: r.result ?? null }));
      const results = await store.completeMany(db.on(ctx), ctx.namespace, items);
      finished.announce(ctx.namespace, results.filter((r) => r.ok).map((r) => r.jobId));
      return { results };
    },

    async failJob(request, ctx) {
      const v = new Violations();
      const f = planFailJob(v, request, "", limits);
      v.throwIfAny();
      const job = await store.fail(db.on(ctx), ctx.namespace, f.jobId, f.token, f.error, f.retry, f.retryAfterMs);
      finished.announce(ctx.namespace, [job.jobId]);
      return toWire(job);
    },
  };
}

type Managing = "cancelJob" | "retryJob" | "getJob" | "listJobs" | "getQueueStats" | "pauseQueue" | "resumeQueue";

function manageHandlers({ db, limits }: ServiceDeps, finished: FinishedLeases): Pick<JobHandlers, Managing> {
  return {
    async cancelJob(request, ctx) {
      checkJobId(request.jobId);
      const job = await store.cancel(db.on(ctx), ctx.namespace, request.jobId);
      finished.announce(ctx.namespace, [job.jobId]);
      return toWire(job);
    },

    async retryJob(request, ctx) {
      checkJobId(request.jobId);
      return toWire(await store.retry(db.on(ctx), ctx.namespace, request.jobId));
    },

    async getJob(request, ctx) {
      const v = new Violations();
      checkId(v, "job_id", request.jobId, true);
      const mask = parseReadMask(v, request.readMask, JOB_FIELDS);
      v.throwIfAny();
      return mask.apply(toWire(await store.get(db.on(ctx), ctx.namespace, request.jobId)));
    },

    async listJobs(request, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, false);
      checkFilterList(v, "states", request.states.length, limits);
      const states = request.states.map((s, i) => JOB_STATES.parse(v, `states[${i}]`, s));
      const limit = pageSize(v, request.pageSize);
      const mask = parseReadMask(v, request.readMask, JOB_FIELDS);
      v.throwIfAny();
      const bound = { queue: request.queue, states: [...new Set(states as JobStateName[])].sort() };
      const key = decodePageToken(request.pageToken, bound, ["time", "id"]);
      const after = key ? { time: key[0], jobId: key[1] } : undefined;
      const pageLimits = { rows: limit, bytes: limits.maxPageBytes };
      const page = await store.list(db.on(ctx), ctx.namespace, request.queue || null, bound.states, pageLimits, after, mask.omitted(JOB_DOCUMENTS));
      const { items, nextPageToken } = pageResponse(page, {
        bound,
        keyOf: (j) => [j.createTime, j.jobId],
        toWire: (j) => mask.apply(toWire(j)),
        encoder: Job,
        maxBytes: limits.maxPageBytes,
      });
      return { jobs: items, nextPageToken };
    },

    async getQueueStats(request, ctx) {
      checkQueue(request.queue);
      const [stats, flow] = await Promise.all([
        store.stats(db.on(ctx), ctx.namespace, request.queue),
        flowStats(db.on(ctx), ctx.namespace, request.queue),
      ]);
      return {
        counts: Object.fromEntries(Object.entries(stats.counts).map(([state, n]) => [JOB_STATES.fullName(state as JobStateName), n])),
        oldestAvailableTime: timestampFromIso(stats.oldestAvailable),
        paused: stats.paused,
        runningByGroup: flow.runningByGroup,
        heldBackCount: flow.heldBack,
      };
    },

    async pauseQueue(request, ctx) {
      checkQueue(request.queue);
      await store.setPaused(db.on(ctx), ctx.namespace, request.queue, true);
      return {};
    },

    async resumeQueue(request, ctx) {
      checkQueue(request.queue);
      await store.setPaused(db.on(ctx), ctx.namespace, request.queue, false);
      return {};
    },
  };
}
