import { CairnClient, type Job, JobState } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { createLogger } from "../src/logger.js";
import { failure, type Harness, startHarness, testConfig } from "./support/harness.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let replicaB: Daemon;
let b: CairnClient;
let n = 0;
const queue = () => `q-${Date.now().toString(36)}-${++n}`;
const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) });

beforeAll(async () => {
  const overrides = { leaseRescueIntervalMs: 100 };
  h = await startHarness(overrides);
  replicaB = await startDaemon(testConfig(h.databaseUrl, overrides), createLogger("silent"));
  b = new CairnClient(replicaB.address);
});
afterAll(async () => {
  b?.close();
  await replicaB?.stop();
  await h?.stop();
});

const jobs = () => h.client.jobs;
const enqueue = (q: string, extra: Partial<Job> = {}) => jobs().enqueueJob({ job: { queue: q, payload: { n: 1 }, ...extra } });
const lease = (q: string, max = 10, extra: object = {}) => jobs().leaseJobs({ queue: q, workerId: "w", maxJobs: max, leaseDuration: seconds(30), ...extra });
const jobCount = async () => (await h.sql.query("SELECT count(*)::int AS n FROM jobs")).rows[0].n as number;

describe("enqueue and lease", () => {
  it("leases by priority desc then run_time asc, once each, and completes with the token", async () => {
    const q = queue();
    const low = await enqueue(q, { priority: 0 });
    const high = await enqueue(q, { priority: 10 });
    const lowLater = await enqueue(q, { priority: 0 });
    expect(low.job!.state).toBe(JobState.JOB_STATE_AVAILABLE);
    const { leases } = await lease(q);
    expect(leases.map((l) => l.job!.jobId)).toEqual([high.job!.jobId, low.job!.jobId, lowLater.job!.jobId]);
    expect(leases.every((l) => l.job!.state === JobState.JOB_STATE_RUNNING && l.job!.attempt === 1)).toBe(true);
    expect(new Set(leases.map((l) => l.leaseToken)).size).toBe(3);
    expect((await lease(q)).leases).toEqual([]);
    const done = await jobs().completeJob({ jobId: leases[0]!.job!.jobId, leaseToken: leases[0]!.leaseToken, result: { ok: true } });
    expect(done).toMatchObject({ state: JobState.JOB_STATE_SUCCEEDED, result: { ok: true } });
    expect(done.finishTime).toBeDefined();
    const again = await failure(jobs().completeJob({ jobId: leases[0]!.job!.jobId, leaseToken: leases[0]!.leaseToken }));
    expect(again).toMatchObject({ code: status.ABORTED, reason: "LEASE_LOST" });
  });

  it("does not lease a scheduled job early; once due it reads and lists as AVAILABLE", async () => {
    const q = queue();
    const later = { seconds: Math.floor(Date.now() / 1000) + 2, nanos: 0 };
    const s = await enqueue(q, { runTime: later });
    expect(s.job!.state).toBe(JobState.JOB_STATE_SCHEDULED);
    expect((await lease(q)).leases).toHaveLength(0);
    expect((await jobs().listJobs({ queue: q, states: [JobState.JOB_STATE_SCHEDULED] })).jobs).toHaveLength(1);
    await new Promise((r) => setTimeout(r, later.seconds * 1000 - Date.now() + 50));
    expect((await jobs().getJob({ jobId: s.job!.jobId })).state).toBe(JobState.JOB_STATE_AVAILABLE);
    expect((await jobs().listJobs({ queue: q, states: [JobState.JOB_STATE_AVAILABLE] })).jobs).toHaveLength(1);
    expect((await jobs().listJobs({ queue: q, states: [JobState.JOB_STATE_SCHEDULED] })).jobs).toHaveLength(0);
    const { leases } = await lease(q, 1, { wait: seconds(4) });
    expect(leases[0]!.job!.jobId).toBe(s.job!.jobId);
    expect(Date.now() / 1000).toBeGreaterThanOrEqual(later.seconds);
  });

  it("request_id makes enqueue idempotent", async () => {
    const q = queue();
    const request = { job: { queue: q, payload: { a: 1 } }, requestId: `r-${q}` };
    const first = await jobs().enqueueJob(request);
    expect((await jobs().enqueueJob(request)).job).toEqual(first.job);
    expect((await failure(jobs().enqueueJob({ ...request, job: { queue: q, payload: { a: 2 } } }))).reason).toBe("REQUEST_ID_REUSED");
  });

  it("50 concurrent enqueues with one dedupe key make one job, until it finishes", async () => {
    const q = queue();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? b : h.client).jobs.enqueueJob({ job: { queue: q, dedupeKey: "once" } })),
    );
    expect(new Set(results.map((r) => r.job!.jobId)).size).toBe(1);
    expect(results.filter((r) => !r.deduplicated)).toHaveLength(1);
    const [l] = (await lease(q)).leases;
    expect((await enqueue(q, { dedupeKey: "once" })).job!.jobId).toBe(l!.job!.jobId); // running still holds the key
    await jobs().completeJob({ jobId: l!.job!.jobId, leaseToken: l!.leaseToken });
    const fresh = await enqueue(q, { dedupeKey: "once" });
    expect(fresh.deduplicated).toBe(false);
    expect(fresh.job!.jobId).not.toBe(l!.job!.jobId);
  });

  it("concurrent enqueues stand alone: a taken job_id fails only its own call", async () => {
    const q = queue();
    const taken = (await enqueue(q)).job!.jobId;
    const outcomes = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => (i === 7 ? enqueue(q, { jobId: taken }) : enqueue(q, { payload: { i } }))),
    );
    expect(outcomes.map((o) => o.status).filter((s) => s === "rejected")).toHaveLength(1);
    expect(outcomes[7]!.status).toBe("rejected");
    expect(((outcomes[7] as PromiseRejectedResult).reason as { code: number }).code).toBe(status.ALREADY_EXISTS);
    expect((await jobs().getQueueStats({ queue: q })).counts).toEqual({ JOB_STATE_AVAILABLE: 20 });
  });

  it("batch enqueue is atomic", async () => {
    const q = queue();
    const ok = await jobs().batchEnqueueJobs({ requests: [{ job: { queue: q } }, { job: { queue: q, priority: 3 } }] });
    expect(ok.jobs).toHaveLength(2);
    const before = await jobCount();
    const bad = await failure(jobs().batchEnqueueJobs({ requests: [{ job: { queue: q } }, { job: { queue: "bad queue!" } }] }));
    expect(bad.fields).toEqual(["requests[1].job.queue"]);
    const taken = await failure(jobs().batchEnqueueJobs({ requests: [{ job: { queue: q } }, { job: { queue: q, jobId: ok.jobs[0]!.jobId } }] }));
    expect(taken.code).toBe(status.ALREADY_EXISTS);
    expect(await jobCount()).toBe(before);
  });

  it("batch enqueue rejects a job_id named twice and writes nothing", async () => {
    const q = queue();
    const jobId = `${q}-twice`;
    const before = await jobCount();
    const dup = await failure(jobs().batchEnqueueJobs({ requests: [{ job: { queue: q, jobId } }, { job: { queue: q, jobId, priority: 1 } }] }));
    expect(dup).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["requests[1].job.job_id"] });
    expect(await jobCount()).toBe(before);
    expect((await failure(jobs().getJob({ jobId }))).code).toBe(status.NOT_FOUND);
  });

  it("a waiting LeaseJobs returns promptly after an enqueue on the other replica", async () => {
    const q = queue();
    const started = Date.now();
    const waiting = jobs().leaseJobs({ queue: q, workerId: "w", maxJobs: 1, wait: seconds(20) });
    await new Promise((r) => setTimeout(r, 300));
    const enqueuedAt = Date.now();
    await b.jobs.enqueueJob({ job: { queue: q } });
    const { leases } = await waiting;
    expect(leases).toHaveLength(1);
    expect(Date.now() - enqueuedAt).toBeLessThan(700);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("an empty wait ends when the wait does", async () => {
    const started = Date.now();
    expect((await lease(queue(), 1, { wait: seconds(0.6) })).leases).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
  });
});

describe("failure, backoff, rescue, redrive", () => {
  it("retries with exponential backoff capped by max_delay, then DEAD after max_attempts", async () => {
    const q = queue();
    const { job } = await enqueue(q, { maxAttempts: 3, backoff: { initialDelay: seconds(0.2), maxDelay: seconds(0.3), multiplier: 4 } });
    const runAfter = async (attempt: number) => {
      const [l] = (await lease(q, 1, { wait: seconds(3) })).leases;
      expect(l!.job!.attempt).toBe(attempt);
      const failedAt = Date.now();
      const failed = await jobs().failJob({ jobId: job!.jobId, leaseToken: l!.leaseToken, error: { message: `boom ${attempt}`, details: { attempt } } });
      return { failed, failedAt };
    };
    const first = await runAfter(1);
    expect(first.failed).toMatchObject({ state: JobState.JOB_STATE_RETRYING, lastError: { message: "boom 1", details: { attempt: 1 } } });
    const delay1 = first.failed.runTime!.seconds * 1000 + first.failed.runTime!.nanos / 1e6 - first.failedAt;
    expect(delay1).toBeGreaterThan(100);
    expect(delay1).toBeLessThan(400); // 0.2 s
    const second = await runAfter(2);
    const delay2 = second.failed.runTime!.seconds * 1000 + second.failed.runTime!.nanos / 1e6 - second.failedAt;
    expect(delay2).toBeGreaterThan(200);
    expect(delay2).toBeLessThan(500); // 0.8 s capped at 0.3 s
    const third = await runAfter(3);
    expect(third.failed).toMatchObject({ state: JobState.JOB_STATE_DEAD, attempt: 3 });
    const redriven = await jobs().retryJob({ jobId: job!.jobId });
    expect(redriven).toMatchObject({ state: JobState.JOB_STATE_AVAILABLE, attempt: 0 });
    expect((await lease(q)).leases).toHaveLength(1);
  });

  it("retry = false goes straight to DEAD; retry_after overrides the backoff", async () => {
    const q = queue();
    await enqueue(q);
    await enqueue(q);
    const [a, c] = (await lease(q)).leases;
    expect((await jobs().failJob({ jobId: a!.job!.jobId, leaseToken: a!.leaseToken, retry: false })).state).toBe(JobState.JOB_STATE_DEAD);
    const later = await jobs().failJob({ jobId: c!.job!.jobId, leaseToken: c!.leaseToken, retryAfter: seconds(60) });
    expect(later.runTime!.seconds - Date.now() / 1000).toBeGreaterThan(55);
  });

  it("an expired lease is rescued as a failed attempt; the old token is LEASE_LOST", async () => {
    const q = queue();
    const { job } = await enqueue(q, { backoff: { initialDelay: seconds(0.05), maxDelay: seconds(0.05), multiplier: 0 } });
    const [stale] = (await lease(q, 1, { leaseDuration: seconds(0.2) })).leases;
    const [fresh] = (await lease(q, 1, { wait: seconds(5) })).leases;
    expect(fresh!.job!.attempt).toBe(2);
    expect(fresh!.job!.jobId).toBe(job!.jobId);
    const lost = await failure(jobs().completeJob({ jobId: job!.jobId, leaseToken: stale!.leaseToken }));
    expect(lost.reason).toBe("LEASE_LOST");
    expect((await failure(jobs().extendLease({ jobId: job!.jobId, leaseToken: stale!.leaseToken }))).reason).toBe("LEASE_LOST");
    await jobs().completeJob({ jobId: job!.jobId, leaseToken: fresh!.leaseToken });
  });

  it("ExtendLease keeps a lease alive past its first expiry", async () => {
    const q = queue();
    await enqueue(q);
    const [l] = (await lease(q, 1, { leaseDuration: seconds(0.4) })).leases;
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 200));
      await jobs().extendLease({ jobId: l!.job!.jobId, leaseToken: l!.leaseToken, leaseDuration: seconds(0.4) });
    }
    expect((await jobs().completeJob({ jobId: l!.job!.jobId, leaseToken: l!.leaseToken })).attempt).toBe(1);
  });

  it("cancelling a running job revokes its lease; finished jobs cannot be cancelled", async () => {
    const q = queue();
    await enqueue(q);
    const [l] = (await lease(q)).leases;
    expect((await jobs().cancelJob({ jobId: l!.job!.jobId })).state).toBe(JobState.JOB_STATE_CANCELLED);
    expect((await failure(jobs().completeJob({ jobId: l!.job!.jobId, leaseToken: l!.leaseToken }))).reason).toBe("LEASE_LOST");
    expect((await failure(jobs().cancelJob({ jobId: l!.job!.jobId }))).code).toBe(status.FAILED_PRECONDITION);
    expect((await jobs().retryJob({ jobId: l!.job!.jobId })).state).toBe(JobState.JOB_STATE_AVAILABLE);
  });
});

describe("batches, queues, streams, lists", () => {
  it("BatchCompleteJobs: each completion stands alone", async () => {
    const q = queue();
    for (let i = 0; i < 3; i++) await enqueue(q);
    const ls = (await lease(q)).leases;
    const results = await jobs().batchCompleteJobs({
      requests: [
        { jobId: ls[0]!.job!.jobId, leaseToken: ls[0]!.leaseToken },
        { jobId: ls[1]!.job!.jobId, leaseToken: ls[2]!.leaseToken },
        { jobId: "no-such-job", leaseToken: ls[2]!.leaseToken },
        { jobId: ls[2]!.job!.jobId, leaseToken: ls[2]!.leaseToken, result: { r: 1 } },
      ],
    });
    expect(results.results.map((r) => [r.ok, r.reason])).toEqual([
      [true, ""],
      [false, "LEASE_LOST"],
      [false, "NOT_FOUND"],
      [true, ""],
    ]);
    const dup = await failure(
      jobs().batchCompleteJobs({
        requests: [
          { jobId: ls[0]!.job!.jobId, leaseToken: ls[0]!.leaseToken },
          { jobId: ls[0]!.job!.jobId, leaseToken: ls[0]!.leaseToken },
        ],
      }),
    );
    expect(dup).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["requests[1].job_id"] });
  });

  it("a paused queue leases nothing; enqueue still works; stats tell", async () => {
    const q = queue();
    await jobs().pauseQueue({ queue: q });
    await enqueue(q);
    expect((await lease(q)).leases).toEqual([]);
    const stats = await jobs().getQueueStats({ queue: q });
    expect(stats).toMatchObject({ paused: true, counts: { JOB_STATE_AVAILABLE: 1 } });
    expect(stats.oldestAvailableTime).toBeDefined();
    const waiting = lease(q, 1, { wait: seconds(10) });
    await new Promise((r) => setTimeout(r, 200));
    await b.jobs.resumeQueue({ queue: q });
    expect((await waiting).leases).toHaveLength(1);
    expect((await jobs().getQueueStats({ queue: q })).counts).toEqual({ JOB_STATE_RUNNING: 1 });
  });

  it("StreamJobs never holds more than max_in_flight, refills on completion, releases on disconnect", async () => {
    const q = queue();
    for (let i = 0; i < 7; i++) await enqueue(q);
    const stream = collect(jobs().streamJobs({ queue: q, workerId: "s", maxInFlight: 3, leaseDuration: seconds(30) }));
    await stream.until("3 leases", (m) => m.length === 3);
    await new Promise((r) => setTimeout(r, 300));
    expect(stream.messages).toHaveLength(3);
    await jobs().completeJob({ jobId: stream.messages[0]!.job!.jobId, leaseToken: stream.messages[0]!.leaseToken });
    await stream.until("a 4th lease", (m) => m.length === 4, 3_000);
    stream.cancel();
    await waitFor("the leases to come back", async () => (await jobs().getQueueStats({ queue: q })).counts.JOB_STATE_RUNNING === undefined);
    const stats = await jobs().getQueueStats({ queue: q });
    expect(stats.counts).toEqual({ JOB_STATE_SUCCEEDED: 1, JOB_STATE_AVAILABLE: 6 });
    const relet = (await lease(q)).leases;
    expect(relet).toHaveLength(6);
    expect(relet.every((l) => l.job!.attempt === 1)).toBe(true); // a release is not a failed attempt
  });

  it("lists by queue and state, paged", async () => {
    const q = queue();
    for (let i = 0; i < 5; i++) await enqueue(q);
    await lease(q, 2);
    const running = await jobs().listJobs({ queue: q, states: [JobState.JOB_STATE_RUNNING] });
    expect(running.jobs).toHaveLength(2);
    const p1 = await jobs().listJobs({ queue: q, pageSize: 3 });
    const p2 = await jobs().listJobs({ queue: q, pageSize: 3, pageToken: p1.nextPageToken });
    expect(new Set([...p1.jobs, ...p2.jobs].map((j) => j.jobId)).size).toBe(5);
    expect(p2.nextPageToken).toBe("");
  });

  it("jobs of a deleted session are cancelled, not deleted", async () => {
    const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const q = queue();
    const { job } = await enqueue(q, { sessionId });
    await h.client.sessions.deleteSession({ sessionId });
    expect((await jobs().getJob({ jobId: job!.jobId })).state).toBe(JobState.JOB_STATE_CANCELLED);
  });
});

describe("bad input writes nothing", () => {
  it.each([
    [{ job: { queue: "has space" } }, "job.queue"],
    [{ job: { queue: "" } }, "job.queue"],
    [{ job: { queue: "ok", backoff: { initialDelay: { seconds: -1, nanos: 0 } } } }, "job.backoff.initial_delay"],
    [{ job: { queue: "ok", payload: { big: "x".repeat(1024 * 1024) } } }, "job.payload"],
    [{ job: { queue: "ok", maxAttempts: -2 } }, "job.max_attempts"],
    [{}, "job"],
  ])("enqueue %#", async (request, field) => {
    const before = await jobCount();
    const f = await failure(jobs().enqueueJob(request));
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.fields).toContain(field);
    expect(await jobCount()).toBe(before);
  });

  it.each([
    [{ queue: "q", maxJobs: 0 }, "max_jobs"],
    [{ queue: "q", maxJobs: 1001 }, "max_jobs"],
    [{ queue: "q", maxJobs: 1, wait: { seconds: 61, nanos: 0 } }, "wait"],
    [{ queue: "q", maxJobs: 1, leaseDuration: { seconds: -1, nanos: 0 } }, "lease_duration"],
    [{ queue: "bad/queue", maxJobs: 1 }, "queue"],
  ])("lease %#", async (request, field) => {
    const f = await failure(jobs().leaseJobs(request));
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.fields).toContain(field);
  });
});
