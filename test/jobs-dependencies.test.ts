// Job dependencies (depends_on, JOB_STATE_BLOCKED) and heartbeats with
// progress, over gRPC against a real PostgreSQL: release on the parents'
// success, transitive cancellation on a DEAD or CANCELLED parent, missing
// parents and cycles refused, the races between a parent's transition and
// its children, and JOB_CANCELLED on ExtendLease.
import { CairnClient, type Job, type JobLease, JobState } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { Database } from "../src/db/database.js";
import { deleteFinished } from "../src/jobs/store.js";
import { createLogger } from "../src/logger.js";
import { failure, type Harness, startHarness, testConfig } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let replicaB: Daemon;
let b: CairnClient;
let n = 0;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++n}`;
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
const enqueue = async (queue: string, extra: Partial<Job> = {}) => (await jobs().enqueueJob({ job: { queue, ...extra } })).job!;
const get = (jobId: string) => jobs().getJob({ jobId });
const leaseOne = async (queue: string, extra: object = {}): Promise<JobLease> => {
  const { leases } = await jobs().leaseJobs({ queue, workerId: "w", maxJobs: 1, leaseDuration: seconds(30), ...extra });
  expect(leases).toHaveLength(1);
  return leases[0]!;
};
const complete = (l: JobLease) => jobs().completeJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken });
const killDead = (l: JobLease) => jobs().failJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken, error: { message: "boom" }, retry: false });

describe("blocked until every parent succeeded", () => {
  it("a child of one parent is BLOCKED, not leased, and AVAILABLE once the parent completes", async () => {
    const q = unique("q");
    const parent = await enqueue(q, { jobId: unique("p") });
    const child = await enqueue(q, { jobId: unique("c"), dependsOn: [parent.jobId], payload: { step: 2 } });
    expect(child.state).toBe(JobState.JOB_STATE_BLOCKED);
    expect(child.dependsOn).toEqual([parent.jobId]);
    const l = await leaseOne(q);
    expect(l.job!.jobId).toBe(parent.jobId);
    expect((await jobs().leaseJobs({ queue: q, workerId: "w", maxJobs: 10 })).leases).toEqual([]);
    expect((await get(child.jobId)).state).toBe(JobState.JOB_STATE_BLOCKED);
    await complete(l);
    const released = await get(child.jobId);
    expect(released.state).toBe(JobState.JOB_STATE_AVAILABLE);
    // It queues from its release, not from its enqueue.
    const ms = (t: NonNullable<typeof released.runTime>) => t.seconds * 1000 + t.nanos / 1e6;
    expect(ms(released.runTime!)).toBeGreaterThan(ms(child.runTime!));
    expect((await leaseOne(q)).job!.jobId).toBe(child.jobId);
  });

  it("a child of several parents waits for the last, completed by CompleteJob and BatchCompleteJobs", async () => {
    const q = unique("q");
    const [p1, p2, p3] = [await enqueue(q), await enqueue(q), await enqueue(q)];
    const child = await enqueue(unique("other"), { dependsOn: [p1.jobId, p2.jobId, p3.jobId] });
    const { leases } = await jobs().leaseJobs({ queue: q, workerId: "w", maxJobs: 3, leaseDuration: seconds(30) });
    const byId = new Map(leases.map((l) => [l.job!.jobId, l]));
    await complete(byId.get(p1.jobId)!);
    expect((await get(child.jobId)).state).toBe(JobState.JOB_STATE_BLOCKED);
    const batch = await jobs().batchCompleteJobs({
      requests: [p2, p3].map((p) => ({ jobId: p.jobId, leaseToken: byId.get(p.jobId)!.leaseToken, result: { ok: p.jobId } })),
    });
    expect(batch.results.map((r) => [r.ok, r.reason])).toEqual([
      [true, ""],
      [true, ""],
    ]);
    expect((await get(p3.jobId)).result).toEqual({ ok: p3.jobId });
    expect((await get(child.jobId)).state).toBe(JobState.JOB_STATE_AVAILABLE);
  });

  it("a child with a future run_time becomes SCHEDULED, not AVAILABLE", async () => {
    const q = unique("q");
    const parent = await enqueue(q);
    const later = { seconds: Math.floor(Date.now() / 1000) + 3600, nanos: 0 };
    const child = await enqueue(q, { dependsOn: [parent.jobId], runTime: later });
    expect(child.state).toBe(JobState.JOB_STATE_BLOCKED);
    await complete(await leaseOne(q));
    const released = await get(child.jobId);
    expect(released.state).toBe(JobState.JOB_STATE_SCHEDULED);
    expect(released.runTime).toEqual(later);
  });

  it("a parent already SUCCEEDED holds nothing back; one already DEAD creates the job CANCELLED, naming it", async () => {
    const q = unique("q");
    await enqueue(q);
    const done = await complete(await leaseOne(q));
    const free = await enqueue(q, { dependsOn: [done.jobId] });
    expect(free.state).toBe(JobState.JOB_STATE_AVAILABLE);
    await complete(await leaseOne(q));

    const doomed = await enqueue(q);
    await killDead(await leaseOne(q));
    const late = await enqueue(q, { dependsOn: [done.jobId, doomed.jobId] });
    expect(late.state).toBe(JobState.JOB_STATE_CANCELLED);
    expect(late.lastError).toEqual({
      message: `parent job ${doomed.jobId} is DEAD`,
      details: { parent_job_id: doomed.jobId, parent_state: "JOB_STATE_DEAD" },
    });
    expect(late.finishTime).toBeDefined();
  });

  it("a waiting LeaseJobs worker gets the released child at once (woken, not polling)", async () => {
    const parentQueue = unique("parents");
    const childQueue = unique("children");
    await enqueue(parentQueue);
    const l = await leaseOne(parentQueue);
    const child = await enqueue(childQueue, { dependsOn: [l.job!.jobId] });
    const waiting = jobs().leaseJobs({ queue: childQueue, workerId: "w", maxJobs: 1, wait: seconds(20) });
    // Let the waiter pass its first (empty) attempt and settle into its wait, early in it: its
    // next poll (the 1 s backstop) is then far later than the 700 ms a wake-up is allowed.
    await new Promise((r) => setTimeout(r, 200));
    const completedAt = Date.now();
    await b.jobs.completeJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken });
    const { leases } = await waiting;
    expect(leases.map((x) => x.job!.jobId)).toEqual([child.jobId]);
    // The polling backstop is 1 s; a NOTIFY from the other replica's completion is much sooner.
    expect(Date.now() - completedAt).toBeLessThan(700);
  });

  it("BLOCKED shows in ListJobs (and its states filter) and GetQueueStats", async () => {
    const q = unique("q");
    const parent = await enqueue(q);
    await enqueue(q, { dependsOn: [parent.jobId] });
    await enqueue(q, { dependsOn: [parent.jobId] });
    const blocked = await jobs().listJobs({ queue: q, states: [JobState.JOB_STATE_BLOCKED] });
    expect(blocked.jobs).toHaveLength(2);
    expect(blocked.jobs.every((j) => j.state === JobState.JOB_STATE_BLOCKED && j.dependsOn[0] === parent.jobId)).toBe(true);
    expect((await jobs().getQueueStats({ queue: q })).counts).toEqual({ JOB_STATE_AVAILABLE: 1, JOB_STATE_BLOCKED: 2 });
  });

  it("a blocked job holds its dedupe key: the same key again returns it", async () => {
    const q = unique("q");
    const parent = await enqueue(q);
    const first = await jobs().enqueueJob({ job: { queue: q, dedupeKey: "k", dependsOn: [parent.jobId] } });
    const again = await jobs().enqueueJob({ job: { queue: q, dedupeKey: "k", dependsOn: [parent.jobId] } });
    expect(again).toMatchObject({ deduplicated: true, job: { jobId: first.job!.jobId, state: JobState.JOB_STATE_BLOCKED } });
  });
});

describe("a DEAD or CANCELLED parent cancels its descendants", () => {
  /** parent <- child <- grandchild, plus an unrelated sibling chain that must stay. */
  async function chain(q: string) {
    const parent = await enqueue(q, { jobId: unique("p"), maxAttempts: 1, priority: 10 });
    const child = await enqueue(q, { jobId: unique("c"), dependsOn: [parent.jobId] });
    const grandchild = await enqueue(unique("other"), { jobId: unique("g"), dependsOn: [child.jobId] });
    const bystander = await enqueue(q, { jobId: unique("b"), dependsOn: [await enqueue(q).then((j) => j.jobId)] });
    return { parent, child, grandchild, bystander };
  }

  const expectCancelledBy = async (jobId: string, parentId: string, parentState: string) => {
    const job = await get(jobId);
    expect(job.state).toBe(JobState.JOB_STATE_CANCELLED);
    expect(job.lastError).toEqual({
      message: `parent job ${parentId} is ${parentState}`,
      details: { parent_job_id: parentId, parent_state: `JOB_STATE_${parentState}` },
    });
  };

  it("FailJob without retry: DEAD, and children and grandchildren CANCELLED, each naming its parent", async () => {
    const q = unique("q");
    const c = await chain(q);
    const l = await leaseOne(q);
    expect(l.job!.jobId).toBe(c.parent.jobId);
    expect((await killDead(l)).state).toBe(JobState.JOB_STATE_DEAD);
    await expectCancelledBy(c.child.jobId, c.parent.jobId, "DEAD");
    await expectCancelledBy(c.grandchild.jobId, c.child.jobId, "CANCELLED");
    expect((await get(c.bystander.jobId)).state).toBe(JobState.JOB_STATE_BLOCKED);
  });

  it("a FailJob that retries cancels nothing", async () => {
    const q = unique("q");
    const parent = await enqueue(q, { maxAttempts: 3 });
    const child = await enqueue(q, { dependsOn: [parent.jobId] });
    const l = await leaseOne(q);
    expect((await jobs().failJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken, error: { message: "again" } })).state).toBe(
      JobState.JOB_STATE_RETRYING,
    );
    expect((await get(child.jobId)).state).toBe(JobState.JOB_STATE_BLOCKED);
  });

  it("CancelJob: the parent and, transitively, its blocked descendants", async () => {
    const q = unique("q");
    const c = await chain(q);
    expect((await jobs().cancelJob({ jobId: c.parent.jobId })).state).toBe(JobState.JOB_STATE_CANCELLED);
    await expectCancelledBy(c.child.jobId, c.parent.jobId, "CANCELLED");
    await expectCancelledBy(c.grandchild.jobId, c.child.jobId, "CANCELLED");
    expect((await get(c.bystander.jobId)).state).toBe(JobState.JOB_STATE_BLOCKED);
  });

  it("a lease that expires on the last attempt: the rescue makes it DEAD and cancels its descendants", async () => {
    const q = unique("q");
    const c = await chain(q);
    await leaseOne(q, { leaseDuration: seconds(0.2) });
    await waitFor("the rescue", async () => (await get(c.parent.jobId)).state === JobState.JOB_STATE_DEAD);
    await expectCancelledBy(c.child.jobId, c.parent.jobId, "DEAD");
    await expectCancelledBy(c.grandchild.jobId, c.child.jobId, "CANCELLED");
  });

  it("RetryJob of a DEAD parent leaves its cancelled children cancelled; a retried child waits for it again", async () => {
    const q = unique("q");
    const c = await chain(q);
    await killDead(await leaseOne(q));
    const refused = await failure(jobs().retryJob({ jobId: c.child.jobId }));
    expect(refused).toMatchObject({ code: status.FAILED_PRECONDITION, metadata: { parent_job_id: c.parent.jobId } });
    expect((await jobs().retryJob({ jobId: c.parent.jobId })).state).toBe(JobState.JOB_STATE_AVAILABLE);
    expect((await get(c.child.jobId)).state).toBe(JobState.JOB_STATE_CANCELLED);
    const retried = await jobs().retryJob({ jobId: c.child.jobId });
    expect(retried.state).toBe(JobState.JOB_STATE_BLOCKED);
    await complete(await leaseOne(q));
    expect((await get(c.child.jobId)).state).toBe(JobState.JOB_STATE_AVAILABLE);
    expect((await get(c.grandchild.jobId)).state).toBe(JobState.JOB_STATE_CANCELLED);
  });

  it("deleting a session cancels its jobs' blocked descendants in other sessions", async () => {
    const q = unique("q");
    const session = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const parent = await enqueue(q, { sessionId: session.sessionId });
    const child = await enqueue(q, { dependsOn: [parent.jobId] });
    await h.client.sessions.deleteSession({ sessionId: session.sessionId });
    expect((await get(parent.jobId)).state).toBe(JobState.JOB_STATE_CANCELLED);
    await expectCancelledBy(child.jobId, parent.jobId, "CANCELLED");
  });
});

describe("what depends_on may name", () => {
  it("a missing parent is INVALID_ARGUMENT naming the entry and the id; nothing is written", async () => {
    const q = unique("q");
    const parent = await enqueue(q);
    const missing = unique("nope");
    const single = await failure(jobs().enqueueJob({ job: { queue: q, dependsOn: [parent.jobId, missing] } }));
    expect(single).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["job.depends_on[1]"] });
    expect(single.message).toContain(missing);
    const batch = await failure(
      jobs().batchEnqueueJobs({ requests: [{ job: { queue: q } }, { job: { queue: q, dependsOn: [missing] } }] }),
    );
    expect(batch).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["requests[1].job.depends_on[0]"] });
    expect((await jobs().getQueueStats({ queue: q })).counts).toEqual({ JOB_STATE_AVAILABLE: 1 });
  });

  it("a parent in another namespace is missing", async () => {
    const q = unique("q");
    const red = new CairnClient(h.daemon.address, { namespace: "team-red" });
    const blue = new CairnClient(h.daemon.address, { namespace: "team-blue" });
    try {
      const parent = (await red.jobs.enqueueJob({ job: { queue: q } })).job!;
      const refused = await failure(blue.jobs.enqueueJob({ job: { queue: q, dependsOn: [parent.jobId] } }));
      expect(refused).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["job.depends_on[0]"] });
      // And a red child of it works in red.
      expect((await red.jobs.enqueueJob({ job: { queue: q, dependsOn: [parent.jobId] } })).job!.state).toBe(JobState.JOB_STATE_BLOCKED);
    } finally {
      red.close();
      blue.close();
    }
  });

  it("malformed lists: bad ids, duplicates, itself, more than 100", async () => {
    const q = unique("q");
    const self = unique("self");
    const bad = await failure(jobs().enqueueJob({ job: { queue: q, jobId: self, dependsOn: ["ok-id", "bad id!", "ok-id", self] } }));
    expect(bad.fields).toEqual(["job.depends_on[1]", "job.depends_on[3]", "job.depends_on[2]"]);
    const many = await failure(jobs().enqueueJob({ job: { queue: q, dependsOn: Array.from({ length: 101 }, (_, i) => `p${i}`) } }));
    expect(many.fields).toEqual(["job.depends_on"]);
  });

  it("a batch may name its own jobs as parents, in any order, and is released in order", async () => {
    const q = unique("q");
    const [a, b2, c] = [unique("a"), unique("b"), unique("c")];
    // c <- b <- a, listed child first.
    const { jobs: made } = await jobs().batchEnqueueJobs({
      requests: [{ job: { queue: q, jobId: c, dependsOn: [b2] } }, { job: { queue: q, jobId: b2, dependsOn: [a] } }, { job: { queue: q, jobId: a } }],
    });
    expect(made.map((j) => j.state)).toEqual([JobState.JOB_STATE_BLOCKED, JobState.JOB_STATE_BLOCKED, JobState.JOB_STATE_AVAILABLE]);
    for (const expected of [a, b2, c]) {
      const l = await leaseOne(q);
      expect(l.job!.jobId).toBe(expected);
      await complete(l);
    }
  });

  it("a cycle within a batch is INVALID_ARGUMENT naming the entry that closes it", async () => {
    const q = unique("q");
    const [a, b2, c] = [unique("a"), unique("b"), unique("c")];
    const cycle = await failure(
      jobs().batchEnqueueJobs({
        requests: [
          { job: { queue: q, jobId: a, dependsOn: [b2] } },
          { job: { queue: q, jobId: b2, dependsOn: [c] } },
          { job: { queue: q, jobId: c, dependsOn: [a] } },
        ],
      }),
    );
    expect(cycle).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["requests[2].job.depends_on[0]"] });
    expect(cycle.message).toContain(`${a} -> ${b2} -> ${c} -> ${a}`);
    expect((await jobs().listJobs({ queue: q })).jobs).toEqual([]);
  });

  it("a batch parent that is deduplicated stands for the job it was deduplicated to", async () => {
    const q = unique("q");
    const holder = (await jobs().enqueueJob({ job: { queue: q, dedupeKey: "once" } })).job!;
    const named = unique("named");
    const { jobs: made } = await jobs().batchEnqueueJobs({
      requests: [{ job: { queue: q, jobId: named, dedupeKey: "once" } }, { job: { queue: q, dependsOn: [named] } }],
    });
    expect(made[0]!.jobId).toBe(holder.jobId);
    expect(made[1]).toMatchObject({ state: JobState.JOB_STATE_BLOCKED, dependsOn: [holder.jobId] });
    await complete(await leaseOne(q));
    expect((await get(made[1]!.jobId)).state).toBe(JobState.JOB_STATE_AVAILABLE);
  });
});

describe("retention", () => {
  it("deleting finished jobs deletes their dependency rows with them", async () => {
    const q = unique("q");
    const parent = await enqueue(q);
    const child = await enqueue(q, { dependsOn: [parent.jobId] });
    await complete(await leaseOne(q));
    await complete(await leaseOne(q));
    const edges = () => h.sql.query("SELECT parent_id, job_id FROM job_dependencies WHERE job_id = $1", [child.jobId]);
    expect((await edges()).rows).toEqual([{ parent_id: parent.jobId, job_id: child.jobId }]);
    await h.sql.query("UPDATE jobs SET finish_time = now() - interval '1 day' WHERE job_id = ANY ($1)", [[parent.jobId, child.jobId]]);
    expect(await deleteFinished(new Database(h.sql).on({}), 3_600_000)).toBeGreaterThanOrEqual(2);
    expect((await edges()).rows).toEqual([]);
  });
});

describe("races between a parent's transition and its children", () => {
  it("two parents completing at once on two replicas always release their child", async () => {
    for (let round = 0; round < 15; round++) {
      const q = unique("race");
      const [p1, p2] = [await enqueue(q), await enqueue(q)];
      const child = await enqueue(unique("child"), { dependsOn: [p1.jobId, p2.jobId] });
      const { leases } = await jobs().leaseJobs({ queue: q, workerId: "w", maxJobs: 2, leaseDuration: seconds(30) });
      await Promise.all([complete(leases[0]!), b.jobs.completeJob({ jobId: leases[1]!.job!.jobId, leaseToken: leases[1]!.leaseToken })]);
      expect((await get(child.jobId)).state).toBe(JobState.JOB_STATE_AVAILABLE);
    }
  });

  it("a child enqueued while its parent completes or dies is released or cancelled, never left blocked", async () => {
    for (let round = 0; round < 20; round++) {
      const q = unique("race");
      const parent = await enqueue(q);
      // A first child marks the parent (has_children); the racing second finds it marked.
      const first = await enqueue(unique("child"), { dependsOn: [parent.jobId] });
      const l = await leaseOne(q);
      const succeed = round % 2 === 0;
      const [, second] = await Promise.all([
        succeed ? complete(l) : killDead(l),
        b.jobs.enqueueJob({ job: { queue: unique("child"), dependsOn: [parent.jobId] } }).then((r) => r.job!),
      ]);
      const expected = succeed ? JobState.JOB_STATE_AVAILABLE : JobState.JOB_STATE_CANCELLED;
      expect([(await get(first.jobId)).state, (await get(second.jobId)).state]).toEqual([expected, expected]);
    }
  });
});

describe("heartbeats", () => {
  it("ExtendLease stores progress as Job.progress; a heartbeat without progress keeps it", async () => {
    const q = unique("q");
    await enqueue(q);
    const l = await leaseOne(q);
    const extended = await jobs().extendLease({ jobId: l.job!.jobId, leaseToken: l.leaseToken, leaseDuration: seconds(60), progress: { done: 3, of: 10 } });
    expect(extended.progress).toEqual({ done: 3, of: 10 });
    expect((await jobs().extendLease({ jobId: l.job!.jobId, leaseToken: l.leaseToken })).progress).toEqual({ done: 3, of: 10 });
    expect((await get(l.job!.jobId)).progress).toEqual({ done: 3, of: 10 });
    const masked = await jobs().getJob({ jobId: l.job!.jobId, readMask: ["job_id", "state"] });
    expect(masked.progress).toBeUndefined();
    const done = await complete(l);
    expect(done.progress).toEqual({ done: 3, of: 10 });
  });

  it("progress is checked like any document", async () => {
    const q = unique("q");
    await enqueue(q);
    const l = await leaseOne(q);
    const nul = await failure(jobs().extendLease({ jobId: l.job!.jobId, leaseToken: l.leaseToken, progress: { note: "a\u0000b" } }));
    expect(nul).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(nul.fields[0]).toMatch(/^progress/);
    const big = await failure(jobs().extendLease({ jobId: l.job!.jobId, leaseToken: l.leaseToken, progress: { log: "x".repeat(1_100_000) } }));
    expect(big).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["progress"] });
    expect((await get(l.job!.jobId)).progress).toBeUndefined();
  });

  it("ExtendLease on a job cancelled while running is JOB_CANCELLED; Complete stays LEASE_LOST", async () => {
    const q = unique("q");
    await enqueue(q);
    const l = await leaseOne(q);
    await jobs().cancelJob({ jobId: l.job!.jobId });
    const heartbeat = await failure(jobs().extendLease({ jobId: l.job!.jobId, leaseToken: l.leaseToken }));
    expect(heartbeat).toMatchObject({ code: status.ABORTED, reason: "JOB_CANCELLED", metadata: { job_id: l.job!.jobId } });
    const stale = await failure(jobs().extendLease({ jobId: l.job!.jobId, leaseToken: "00000000-0000-4000-8000-000000000000" }));
    expect(stale).toMatchObject({ code: status.ABORTED, reason: "LEASE_LOST" });
    expect(await failure(complete(l))).toMatchObject({ code: status.ABORTED, reason: "LEASE_LOST" });
    // Redriven and leased again, the old lease is only lost, not cancelled.
    await jobs().retryJob({ jobId: l.job!.jobId });
    const again = await leaseOne(q);
    expect((await failure(jobs().extendLease({ jobId: l.job!.jobId, leaseToken: l.leaseToken }))).reason).toBe("LEASE_LOST");
    await complete(again);
  });
});
