// JobService handlers: validate, convert, call the store; LeaseJobs waits
// on LISTEN/NOTIFY (with a polling backstop), StreamJobs keeps at most
// max_in_flight leases and gives them back when its client goes away.
import { EventEmitter } from "node:events";
import {
  type EnqueueJobRequest,
  type Job,
  JobServiceService,
  JobState,
} from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import type { Limits } from "../config.js";
import { requestHash } from "../db/idempotency.js";
import { CHANNELS, type NotifyHub } from "../db/notify-hub.js";
import { invalidPageToken } from "../errors.js";
import { writeMessage } from "../grpc/backpressure.js";
import { isoFromTimestamp, positiveDurationMicros, timestampFromIso } from "../grpc/convert.js";
import type { CallContext, ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageSize, paginate } from "../grpc/pagination.js";
import { Violations, checkBatchSize, checkDocument, checkId, checkText, checkUnique } from "../grpc/validate.js";
import type { JobEnqueue, JobRecord, JobStateName, JobStore, Lease } from "./store.js";

export interface JobServiceOptions {
  limits: Limits;
  hub: NotifyHub;
}

const STATES: JobStateName[] = ["SCHEDULED", "AVAILABLE", "RUNNING", "RETRYING", "SUCCEEDED", "DEAD", "CANCELLED"];
const DEFAULTS = { maxAttempts: 5, initialMs: 1_000, maxMs: 3_600_000, multiplier: 2, leaseMs: 30_000 };
const MAX_WAIT_MS = 60_000;
/** Re-check for work this often even without a notification (missed NOTIFY, due scheduled jobs). */
const BACKSTOP_MS = 1_000;
const MAX_LEASE_MS = 24 * 3600 * 1000;

const ms = (micros: number) => Math.ceil(micros / 1000);
const duration = (millis: number) => ({ seconds: Math.floor(millis / 1000), nanos: (millis % 1000) * 1_000_000 });

function toWire(j: JobRecord): Job {
  return {
    jobId: j.jobId,
    queue: j.queue,
    payload: j.payload,
    state: (STATES.indexOf(j.state) + 1) as JobState,
    priority: j.priority,
    runTime: timestampFromIso(j.runTime),
    attempt: j.attempt,
    maxAttempts: j.maxAttempts,
    backoff: { initialDelay: duration(j.backoff.initialMs), maxDelay: duration(j.backoff.maxMs), multiplier: j.backoff.multiplier },
    dedupeKey: j.dedupeKey ?? "",
    sessionId: j.sessionId,
    workerId: j.workerId,
    leaseExpireTime: timestampFromIso(j.leaseExpireTime),
    lastError: j.lastError ? { message: j.lastError.message, details: j.lastError.details ?? undefined } : undefined,
    result: j.result ?? undefined,
    createTime: timestampFromIso(j.createTime),
    updateTime: timestampFromIso(j.updateTime),
    finishTime: timestampFromIso(j.finishTime),
  };
}

const toWireLease = (l: Lease) => ({ job: toWire(l.job), leaseToken: l.leaseToken });

function durationMs(v: Violations, field: string, d: { seconds: number; nanos: number } | undefined, fallback: number, allowZero = false): number {
  if (!d) return fallback;
  if (allowZero && d.seconds === 0 && d.nanos === 0) return 0;
  return ms(v.collect(() => positiveDurationMicros(d, field)) ?? 0) || fallback;
}

function toEnqueue(v: Violations, request: EnqueueJobRequest, at: string, limits: Limits): JobEnqueue {
  const job = request.job;
  if (!job) {
    v.add(`${at}job`, "is required");
    return undefined as never;
  }
  checkId(v, `${at}job.job_id`, job.jobId, false);
  checkId(v, `${at}job.queue`, job.queue, true);
  checkId(v, `${at}job.session_id`, job.sessionId, false);
  checkId(v, `${at}request_id`, request.requestId, false);
  checkText(v, `${at}job.dedupe_key`, job.dedupeKey, 256);
  checkDocument(v, `${at}job.payload`, job.payload, limits);
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
    },
    requestId: request.requestId,
    requestHash: request.requestId ? requestHash({ job }) : "",
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function checkLease(v: Violations, at: string, jobId: string, token: string): void {
  checkId(v, `${at}job_id`, jobId, true);
  if (!UUID.test(token)) v.add(`${at}lease_token`, "must be the lease_token of a lease");
}

export function jobHandlers(store: JobStore, options: JobServiceOptions): ServiceHandlers<typeof JobServiceService> {
  const { limits, hub } = options;
  /** Local news of finished leases, so a StreamJobs on this replica refills at once. */
  const finished = new EventEmitter().setMaxListeners(0);
  const announce = (jobIds: string[]) => {
    for (const id of jobIds) finished.emit(id);
  };

  /** Resolves on a notification for `queue` (registered before the caller's next read), a timeout or an abort. */
  function waiter(queue: string, signal: AbortSignal) {
    let notified = false;
    let wake: () => void = () => {};
    const remove = hub.listen(CHANNELS.jobs, (payload) => {
      if (payload === undefined || payload === queue) {
        notified = true;
        wake();
      }
    });
    return {
      async wait(timeoutMs: number): Promise<void> {
        if (notified || signal.aborted) {
          notified = false;
          return;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          const done = () => {
            clearTimeout(timer);
            signal.removeEventListener("abort", done);
            resolve();
          };
          wake = done;
          signal.addEventListener("abort", done, { once: true });
        });
        notified = false;
      },
      /** Wakes the waiter from this process (a local lease finished). */
      poke: () => {
        notified = true;
        wake();
      },
      dispose: remove,
    };
  }

  async function leaseWithWait(ctx: CallContext, queue: string, workerId: string, max: number, leaseMs: number, waitMs: number) {
    const until = Date.now() + waitMs;
    const w = waiter(queue, ctx.signal);
    try {
      for (;;) {
        const leases = await store.lease(ctx, queue, workerId, max, leaseMs);
        if (leases.length > 0 || Date.now() >= until || ctx.signal.aborted) return leases;
        await w.wait(Math.min(until - Date.now(), BACKSTOP_MS));
      }
    } finally {
      w.dispose();
    }
  }

  return {
    async enqueueJob(request, ctx) {
      const v = new Violations();
      const e = toEnqueue(v, request, "", limits);
      v.throwIfAny();
      const out = await store.enqueueOne(ctx, e);
      return { job: toWire(out.job), deduplicated: out.deduplicated };
    },

    async batchEnqueueJobs(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "requests", request.requests.length, limits);
      const enqueues = request.requests.map((r, i) => toEnqueue(v, r, `requests[${i}].`, limits));
      v.throwIfAny();
      return { jobs: (await store.enqueueAll(ctx, enqueues)).map((o) => toWire(o.job)) };
    },

    async leaseJobs(request, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, true);
      checkText(v, "worker_id", request.workerId, 128);
      if (request.maxJobs < 1 || request.maxJobs > 1000) v.add("max_jobs", "must be 1..1000");
      const leaseMs = durationMs(v, "lease_duration", request.leaseDuration, DEFAULTS.leaseMs);
      if (leaseMs > MAX_LEASE_MS) v.add("lease_duration", "must be at most 24 h");
      const waitMs = durationMs(v, "wait", request.wait, 0, true);
      if (waitMs > MAX_WAIT_MS) v.add("wait", "must be at most 60 s");
      v.throwIfAny();
      const leases = await leaseWithWait(ctx, request.queue, request.workerId, request.maxJobs, leaseMs, waitMs);
      return { leases: leases.map(toWireLease) };
    },

    async streamJobs(request, call, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, true);
      checkText(v, "worker_id", request.workerId, 128);
      if (request.maxInFlight < 1 || request.maxInFlight > 1000) v.add("max_in_flight", "must be 1..1000");
      const leaseMs = durationMs(v, "lease_duration", request.leaseDuration, DEFAULTS.leaseMs);
      v.throwIfAny();
      const held = new Map<string, string>();
      const w = waiter(request.queue, ctx.signal);
      const onFinished = () => w.poke();
      try {
        while (!ctx.signal.aborted) {
          if (held.size > 0) {
            const still = await store.heldLeases(ctx, [...held].map(([jobId, token]) => ({ jobId, token })));
            for (const jobId of [...held.keys()]) {
              if (!still.has(jobId)) {
                held.delete(jobId);
                finished.removeListener(jobId, onFinished);
              }
            }
          }
          const room = request.maxInFlight - held.size;
          const leases = room > 0 ? await store.lease(ctx, request.queue, request.workerId, room, leaseMs) : [];
          // Held before any is written: if the client leaves mid-batch, the
          // whole batch is given back, not only the leases it received.
          for (const lease of leases) {
            held.set(lease.job.jobId, lease.leaseToken);
            finished.once(lease.job.jobId, onFinished);
          }
          for (const lease of leases) await writeMessage(call, toWireLease(lease), ctx.signal);
          if (room > 0 && leases.length === room) continue;
          await w.wait(BACKSTOP_MS);
        }
      } finally {
        w.dispose();
        for (const jobId of held.keys()) finished.removeListener(jobId, onFinished);
        // The client went away: its unfinished leases go back to the queue.
        await store.release({}, [...held].map(([jobId, token]) => ({ jobId, token }))).catch(() => {});
      }
    },

    async completeJob(request, ctx) {
      const v = new Violations();
      checkLease(v, "", request.jobId, request.leaseToken);
      checkDocument(v, "result", request.result, limits);
      v.throwIfAny();
      const job = await store.complete(ctx, request.jobId, request.leaseToken, request.result ?? null);
      announce([job.jobId]);
      return toWire(job);
    },

    async batchCompleteJobs(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "requests", request.requests.length, limits);
      request.requests.forEach((r, i) => {
        checkLease(v, `requests[${i}].`, r.jobId, r.leaseToken);
        checkDocument(v, `requests[${i}].result`, r.result, limits);
      });
      checkUnique(
        v,
        "requests",
        request.requests.map((r) => r.jobId),
        ".job_id",
      );
      v.throwIfAny();
      const results = await store.completeMany(
        ctx,
        request.requests.map((r) => ({ jobId: r.jobId, token: r.leaseToken, result: r.result ?? null })),
      );
      announce(results.filter((r) => r.ok).map((r) => r.jobId));
      return { results };
    },

    async failJob(request, ctx) {
      const v = new Violations();
      checkLease(v, "", request.jobId, request.leaseToken);
      checkText(v, "error.message", request.error?.message ?? "", 4096);
      checkDocument(v, "error.details", request.error?.details, limits);
      const retryAfterMs = request.retryAfter ? durationMs(v, "retry_after", request.retryAfter, 0, true) : null;
      v.throwIfAny();
      const job = await store.fail(
        ctx,
        request.jobId,
        request.leaseToken,
        { message: request.error?.message ?? "", details: request.error?.details ?? null },
        request.retry ?? true,
        retryAfterMs,
      );
      announce([job.jobId]);
      return toWire(job);
    },

    async extendLease(request, ctx) {
      const v = new Violations();
      checkLease(v, "", request.jobId, request.leaseToken);
      const leaseMs = durationMs(v, "lease_duration", request.leaseDuration, DEFAULTS.leaseMs);
      if (leaseMs > MAX_LEASE_MS) v.add("lease_duration", "must be at most 24 h");
      v.throwIfAny();
      return toWire(await store.extend(ctx, request.jobId, request.leaseToken, leaseMs));
    },

    async cancelJob(request, ctx) {
      const v = new Violations();
      checkId(v, "job_id", request.jobId, true);
      v.throwIfAny();
      const job = await store.cancel(ctx, request.jobId);
      announce([job.jobId]);
      return toWire(job);
    },

    async retryJob(request, ctx) {
      const v = new Violations();
      checkId(v, "job_id", request.jobId, true);
      v.throwIfAny();
      return toWire(await store.retry(ctx, request.jobId));
    },

    async getJob(request, ctx) {
      const v = new Violations();
      checkId(v, "job_id", request.jobId, true);
      v.throwIfAny();
      return toWire(await store.get(ctx, request.jobId));
    },

    async listJobs(request, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, false);
      const states = request.states.map((s, i) => {
        const name = STATES[s - 1];
        if (!name) v.add(`states[${i}]`, "must be a JobState other than JOB_STATE_UNSPECIFIED");
        return name!;
      });
      const limit = pageSize(request.pageSize);
      v.throwIfAny();
      const bound = { queue: request.queue, states: [...new Set(states)].sort() };
      const key = decodePageToken(request.pageToken, bound);
      if (key && (typeof key[0] !== "string" || typeof key[1] !== "string")) throw invalidPageToken("is not a token this server issued");
      const rows = await store.list(ctx, request.queue || null, bound.states, limit + 1, key ? { time: key[0] as string, jobId: key[1] as string } : undefined);
      const { page, nextPageToken } = paginate(rows, limit, bound, (j) => [j.createTime, j.jobId]);
      return { jobs: page.map(toWire), nextPageToken };
    },

    async getQueueStats(request, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, true);
      v.throwIfAny();
      const stats = await store.stats(ctx, request.queue);
      return {
        counts: Object.fromEntries(Object.entries(stats.counts).map(([state, n]) => [`JOB_STATE_${state}`, n])),
        oldestAvailableTime: timestampFromIso(stats.oldestAvailable),
        paused: stats.paused,
      };
    },

    async pauseQueue(request, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, true);
      v.throwIfAny();
      await store.setPaused(ctx, request.queue, true);
      return {};
    },

    async resumeQueue(request, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, true);
      v.throwIfAny();
      await store.setPaused(ctx, request.queue, false);
      return {};
    },
  };
}
