// Jobs across namespaces: two clients on one daemon (and a second replica),
// each in its own namespace, use the same queue names, job ids, dedupe keys
// and request ids. Nothing of one namespace is visible, leasable, countable,
// pausable or cancellable from the other.
import { CairnClient, JobState } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { waiter } from "../src/jobs/leasing.js";
import { createLogger } from "../src/logger.js";
import { failure, type Harness, startHarness, testConfig } from "./support/harness.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let replicaB: Daemon;
let red: CairnClient;
let blue: CairnClient;
/** Blue on the second replica: a NOTIFY from another replica must not cross namespaces either. */
let blueB: CairnClient;
let anonymous: CairnClient;
let named: CairnClient;
let n = 0;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++n}`;
const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) });
const lease = (c: CairnClient, queue: string, extra: object = {}) =>
  c.jobs.leaseJobs({ queue, workerId: "w", maxJobs: 100, leaseDuration: seconds(30), ...extra });

beforeAll(async () => {
  const overrides = { leaseRescueIntervalMs: 100 };
  h = await startHarness(overrides);
  replicaB = await startDaemon(testConfig(h.databaseUrl, overrides), createLogger("silent"));
  red = new CairnClient(h.daemon.address, { namespace: "team-red" });
  blue = new CairnClient(h.daemon.address, { namespace: "team-blue" });
  blueB = new CairnClient(replicaB.address, { namespace: "team-blue" });
  anonymous = h.client;
  named = new CairnClient(h.daemon.address, { namespace: "default" });
});
afterAll(async () => {
  for (const c of [red, blue, blueB, named]) c?.close();
  await replicaB?.stop();
  await h?.stop();
});

describe("the same ids in two namespaces", () => {
  it("job ids, dedupe keys and request ids are independent (coalesced in one batch too)", async () => {
    const queue = unique("q");
    const jobId = unique("job");
    const request = (ns: string) => ({ job: { jobId, queue, dedupeKey: "once", payload: { ns } }, requestId: `r-${jobId}` });
    // Arriving together, the two land in one coalesced INSERT.
    const [r, b] = await Promise.all([red.jobs.enqueueJob(request("red")), blue.jobs.enqueueJob(request("blue"))]);
    expect(r).toMatchObject({ deduplicated: false, job: { jobId, payload: { ns: "red" } } });
    expect(b).toMatchObject({ deduplicated: false, job: { jobId, payload: { ns: "blue" } } });
    const rows = await h.sql.query("SELECT namespace, payload FROM jobs WHERE job_id = $1 ORDER BY namespace", [jobId]);
    expect(rows.rows).toEqual([
      { namespace: "team-blue", payload: { ns: "blue" } },
      { namespace: "team-red", payload: { ns: "red" } },
    ]);
    // Each request id replays its own namespace's first response (another body
    // under a request id the other namespace holds would be REQUEST_ID_REUSED).
    expect((await red.jobs.enqueueJob(request("red"))).job).toEqual(r.job);
    expect((await blue.jobs.enqueueJob(request("blue"))).job).toEqual(b.job);
    // The dedupe key still holds within a namespace, and only there.
    const again = await red.jobs.enqueueJob({ job: { queue, dedupeKey: "once", payload: { ns: "red", n: 2 } } });
    expect(again).toMatchObject({ deduplicated: true, job: { jobId, payload: { ns: "red" } } });
    // The id is taken in red and blue only.
    expect(await failure(red.jobs.enqueueJob({ job: { jobId, queue } }))).toMatchObject({ code: status.ALREADY_EXISTS });
    expect((await red.jobs.getJob({ jobId })).payload).toEqual({ ns: "red" });
    expect((await blue.jobs.getJob({ jobId })).payload).toEqual({ ns: "blue" });
    expect(await failure(named.jobs.getJob({ jobId }))).toMatchObject({ code: status.NOT_FOUND });
  });

  it("many single enqueues of both namespaces coalesced together each keep their own outcome", async () => {
    const queue = unique("q");
    const ids = Array.from({ length: 20 }, (_, i) => `j-${queue}-${i}`);
    const calls = ids.flatMap((jobId, i) => [
      red.jobs.enqueueJob({ job: { jobId, queue, dedupeKey: `k${i % 5}`, payload: { ns: "red" } } }),
      blue.jobs.enqueueJob({ job: { jobId, queue, dedupeKey: `k${i % 5}`, payload: { ns: "blue" } } }),
    ]);
    const out = await Promise.all(calls);
    for (const ns of ["red", "blue"]) {
      const mine = out.filter((o) => (o.job!.payload as { ns: string }).ns === ns);
      expect(mine).toHaveLength(20);
      // Five dedupe keys per namespace: five jobs created there, fifteen deduplicated onto them.
      expect(mine.filter((o) => !o.deduplicated)).toHaveLength(5);
    }
    const counts = await h.sql.query("SELECT namespace, count(*)::int AS n FROM jobs WHERE queue = $1 GROUP BY 1 ORDER BY 1", [queue]);
    expect(counts.rows).toEqual([
      { namespace: "team-blue", n: 5 },
      { namespace: "team-red", n: 5 },
    ]);
  });

  it("BatchEnqueueJobs with the same ids in both namespaces", async () => {
    const queue = unique("q");
    const requests = (ns: string) => ["a", "b", "c"].map((id) => ({ job: { jobId: `${queue}-${id}`, queue, payload: { ns } } }));
    const [r, b] = await Promise.all([red.jobs.batchEnqueueJobs({ requests: requests("red") }), blue.jobs.batchEnqueueJobs({ requests: requests("blue") })]);
    expect(r.jobs.map((j) => j.payload)).toEqual([{ ns: "red" }, { ns: "red" }, { ns: "red" }]);
    expect(b.jobs.map((j) => j.payload)).toEqual([{ ns: "blue" }, { ns: "blue" }, { ns: "blue" }]);
  });

  it("a client naming no namespace is in \"default\"", async () => {
    const queue = unique("q");
    const { job } = await anonymous.jobs.enqueueJob({ job: { queue } });
    expect((await named.jobs.getJob({ jobId: job!.jobId })).queue).toBe(queue);
    expect((await named.jobs.listJobs({ queue })).jobs.map((j) => j.jobId)).toEqual([job!.jobId]);
    expect((await red.jobs.listJobs({ queue })).jobs).toEqual([]);
    expect((await h.sql.query("SELECT namespace FROM jobs WHERE job_id = $1", [job!.jobId])).rows).toEqual([{ namespace: "default" }]);
  });
});

describe("leasing stays in its namespace", () => {
  it("LeaseJobs leases only the caller's namespace's queue", async () => {
    const queue = unique("q");
    for (let i = 0; i < 5; i++) {
      await red.jobs.enqueueJob({ job: { queue, payload: { ns: "red" } } });
      await blue.jobs.enqueueJob({ job: { queue, payload: { ns: "blue" } } });
    }
    const r = (await lease(red, queue)).leases;
    expect(r).toHaveLength(5);
    expect(r.every((l) => (l.job!.payload as { ns: string }).ns === "red")).toBe(true);
    expect((await lease(red, queue)).leases).toEqual([]);
    const b = (await lease(blueB, queue)).leases;
    expect(b).toHaveLength(5);
    expect(b.every((l) => (l.job!.payload as { ns: string }).ns === "blue")).toBe(true);
  });

  it("StreamJobs streams only the caller's namespace's jobs", async () => {
    const queue = unique("q");
    const stream = collect(blue.jobs.streamJobs({ queue, workerId: "s", maxInFlight: 50, leaseDuration: seconds(30) }));
    try {
      for (let i = 0; i < 4; i++) await red.jobs.enqueueJob({ job: { queue, payload: { ns: "red" } } });
      for (let i = 0; i < 3; i++) await blue.jobs.enqueueJob({ job: { queue, payload: { ns: "blue" } } });
      await stream.until("blue's 3 leases", (m) => m.length >= 3);
      await new Promise((r) => setTimeout(r, 300));
      expect(stream.messages).toHaveLength(3);
      expect(stream.messages.every((l) => (l.job!.payload as { ns: string }).ns === "blue")).toBe(true);
      expect((await red.jobs.getQueueStats({ queue })).counts).toEqual({ JOB_STATE_AVAILABLE: 4 });
    } finally {
      stream.cancel();
    }
    // Its leases go back to blue's queue, not anywhere else.
    await waitFor("blue's leases back", async () => (await blue.jobs.getQueueStats({ queue })).counts.JOB_STATE_RUNNING === undefined);
    expect((await blue.jobs.getQueueStats({ queue })).counts).toEqual({ JOB_STATE_AVAILABLE: 3 });
    expect((await red.jobs.getQueueStats({ queue })).counts).toEqual({ JOB_STATE_AVAILABLE: 4 });
  });

  it("a waiting LeaseJobs is served by its own namespace's enqueue, never another's", async () => {
    const queue = unique("q");
    const waiting = lease(red, queue, { wait: seconds(10), maxJobs: 1 });
    await new Promise((r) => setTimeout(r, 200));
    await blueB.jobs.enqueueJob({ job: { queue, payload: { ns: "blue" } } });
    await new Promise((r) => setTimeout(r, 200));
    const { job } = await red.jobs.enqueueJob({ job: { queue, payload: { ns: "red" } } });
    const { leases } = await waiting;
    expect(leases.map((l) => l.job!.jobId)).toEqual([job!.jobId]);
    expect((await blue.jobs.getQueueStats({ queue })).counts).toEqual({ JOB_STATE_AVAILABLE: 1 });
  });

  it("a waiter wakes on its namespace's queue only (the NOTIFY payload is namespace:queue)", async () => {
    let notify: (payload?: string) => void = () => {};
    const hub = {
      listen: (_channel: string, listener: (payload?: string) => void) => {
        notify = listener;
        return () => {};
      },
    };
    const w = waiter(hub, "team-red", "q", []);
    notify("team-blue:q");
    notify("q");
    const started = Date.now();
    await w.wait(300);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    notify("team-red:q");
    const woken = Date.now();
    await w.wait(5_000);
    expect(Date.now() - woken).toBeLessThan(1_000);
    w.dispose();
  });

  it("a lease of one namespace cannot be completed, failed, extended or cancelled from another", async () => {
    const queue = unique("q");
    await red.jobs.enqueueJob({ job: { queue } });
    const [l] = (await lease(red, queue)).leases;
    const held = { jobId: l!.job!.jobId, leaseToken: l!.leaseToken };
    expect(await failure(blue.jobs.completeJob(held))).toMatchObject({ code: status.NOT_FOUND });
    expect(await failure(blue.jobs.failJob({ ...held, error: { message: "no" } }))).toMatchObject({ code: status.NOT_FOUND });
    expect(await failure(blue.jobs.extendLease({ ...held, leaseDuration: seconds(60) }))).toMatchObject({ code: status.NOT_FOUND });
    expect(await failure(blue.jobs.cancelJob({ jobId: held.jobId }))).toMatchObject({ code: status.NOT_FOUND });
    expect((await blue.jobs.batchCompleteJobs({ requests: [held] })).results).toEqual([{ jobId: held.jobId, ok: false, reason: "NOT_FOUND" }]);
    expect((await red.jobs.getJob({ jobId: held.jobId })).state).toBe(JobState.JOB_STATE_RUNNING);
    expect((await red.jobs.completeJob(held)).state).toBe(JobState.JOB_STATE_SUCCEEDED);
  });

  it("lease rescue works across namespaces and keeps each job in its own", async () => {
    const queue = unique("q");
    const jobId = unique("job");
    for (const c of [red, blue]) {
      await c.jobs.enqueueJob({ job: { jobId, queue, backoff: { initialDelay: seconds(0.001), maxDelay: seconds(0.001) } } });
      expect((await lease(c, queue, { leaseDuration: seconds(0.2) })).leases).toHaveLength(1);
    }
    for (const c of [red, blue]) {
      await waitFor("the rescue", async () => (await c.jobs.getJob({ jobId })).state !== JobState.JOB_STATE_RUNNING);
      expect((await c.jobs.getJob({ jobId })).lastError?.message).toBe("lease expired");
    }
    const rows = await h.sql.query("SELECT namespace, queue FROM jobs WHERE job_id = $1 ORDER BY namespace", [jobId]);
    expect(rows.rows).toEqual([
      { namespace: "team-blue", queue },
      { namespace: "team-red", queue },
    ]);
    // Each rescued job is leased again from its own namespace only.
    for (const c of [red, blue]) expect((await lease(c, queue, { wait: seconds(5) })).leases.map((l) => l.job!.jobId)).toEqual([jobId]);
  });
});

describe("queues, stats and lists per namespace", () => {
  it("pausing a queue in one namespace does not pause the same queue in another", async () => {
    const queue = unique("q");
    await red.jobs.enqueueJob({ job: { queue } });
    await blue.jobs.enqueueJob({ job: { queue } });
    await red.jobs.pauseQueue({ queue });
    expect((await red.jobs.getQueueStats({ queue })).paused).toBe(true);
    expect((await blue.jobs.getQueueStats({ queue })).paused).toBe(false);
    expect((await lease(red, queue)).leases).toEqual([]);
    expect((await lease(blue, queue)).leases).toHaveLength(1);
    // Resuming blue's (never paused) queue leaves red's paused.
    await blue.jobs.resumeQueue({ queue });
    expect((await red.jobs.getQueueStats({ queue })).paused).toBe(true);
    const rows = await h.sql.query("SELECT namespace, paused FROM job_queues WHERE queue = $1 ORDER BY namespace", [queue]);
    expect(rows.rows).toEqual([
      { namespace: "team-blue", paused: false },
      { namespace: "team-red", paused: true },
    ]);
    await red.jobs.resumeQueue({ queue });
    expect((await lease(red, queue)).leases).toHaveLength(1);
  });

  it("stats and lists count only their namespace", async () => {
    const queue = unique("q");
    for (let i = 0; i < 3; i++) await red.jobs.enqueueJob({ job: { queue } });
    for (let i = 0; i < 5; i++) await blue.jobs.enqueueJob({ job: { queue } });
    await lease(blue, queue, { maxJobs: 2 });
    expect((await red.jobs.getQueueStats({ queue })).counts).toEqual({ JOB_STATE_AVAILABLE: 3 });
    expect((await blue.jobs.getQueueStats({ queue })).counts).toEqual({ JOB_STATE_AVAILABLE: 3, JOB_STATE_RUNNING: 2 });
    expect((await named.jobs.getQueueStats({ queue })).counts).toEqual({});
    expect((await red.jobs.listJobs({ queue })).jobs).toHaveLength(3);
    expect((await blue.jobs.listJobs({ queue, states: [JobState.JOB_STATE_RUNNING] })).jobs).toHaveLength(2);
    const p1 = await blue.jobs.listJobs({ queue, pageSize: 3 });
    const p2 = await blue.jobs.listJobs({ queue, pageSize: 3, pageToken: p1.nextPageToken });
    expect(p1.jobs.length + p2.jobs.length).toBe(5);
    // Without a queue filter too: nothing of red's is in blue's list.
    const redIds = new Set((await red.jobs.listJobs({ queue })).jobs.map((j) => j.jobId));
    const all = [];
    let pageToken = "";
    do {
      const page = await blue.jobs.listJobs({ pageSize: 1000, pageToken });
      all.push(...page.jobs);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(all.some((j) => redIds.has(j.jobId))).toBe(false);
  });

  it("RetryJob's dedupe check is per namespace", async () => {
    const queue = unique("q");
    const { job } = await red.jobs.enqueueJob({ job: { queue, dedupeKey: "k" } });
    await red.jobs.cancelJob({ jobId: job!.jobId });
    // An unfinished holder of the same (queue, dedupe_key), in blue only.
    await blue.jobs.enqueueJob({ job: { queue, dedupeKey: "k" } });
    expect((await red.jobs.retryJob({ jobId: job!.jobId })).state).toBe(JobState.JOB_STATE_AVAILABLE);
    expect(await failure(blue.jobs.retryJob({ jobId: job!.jobId }))).toMatchObject({ code: status.NOT_FOUND });
  });

  it("deleting a session cancels only its namespace's jobs", async () => {
    const sessionId = unique("s");
    const queue = unique("q");
    const jobs: Record<string, string> = {};
    for (const [name, c] of [["red", red], ["blue", blue]] as const) {
      await c.sessions.createSession({ session: { sessionId, agentId: "a" } });
      jobs[name] = (await c.jobs.enqueueJob({ job: { queue, sessionId } })).job!.jobId;
    }
    await red.sessions.deleteSession({ sessionId });
    expect((await red.jobs.getJob({ jobId: jobs.red! })).state).toBe(JobState.JOB_STATE_CANCELLED);
    expect((await blue.jobs.getJob({ jobId: jobs.blue! })).state).toBe(JobState.JOB_STATE_AVAILABLE);
  });
});
