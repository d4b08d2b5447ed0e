// BatchEnqueueJobs as bulk producers use it: read_mask trimming the echo,
// and the batch without request ids, parents or dedupe keys (one plain
// INSERT): still atomic, still naming a taken job, still waking workers.
import { CairnClient, JobState } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { createLogger } from "../src/logger.js";
import { failure, type Harness, startHarness, testConfig } from "./support/harness.js";

let h: Harness;
let replicaB: Daemon;
let b: CairnClient;
let n = 0;
const queue = () => `qb-${Date.now().toString(36)}-${++n}`;
const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: 0 });

beforeAll(async () => {
  h = await startHarness();
  replicaB = await startDaemon(testConfig(h.databaseUrl), createLogger("silent"));
  b = new CairnClient(replicaB.address);
});
afterAll(async () => {
  b?.close();
  await replicaB?.stop();
  await h?.stop();
});

const jobs = () => h.client.jobs;
const jobCount = async (q: string) => (await h.sql.query("SELECT count(*)::int AS n FROM jobs WHERE queue = $1", [q])).rows[0].n as number;

describe("BatchEnqueueJobs read_mask", () => {
  it("job_id,state echoes only those; the jobs are stored whole", async () => {
    const q = queue();
    const later = { seconds: Math.floor(Date.now() / 1000) + 3600, nanos: 0 };
    const { jobs: echoed } = await jobs().batchEnqueueJobs({
      requests: [{ job: { queue: q, payload: { n: 1 } } }, { job: { queue: q, payload: { n: 2 }, runTime: later, priority: 4 } }],
      readMask: ["job_id", "state"],
    });
    expect(echoed.map((j) => j.state)).toEqual([JobState.JOB_STATE_AVAILABLE, JobState.JOB_STATE_SCHEDULED]);
    for (const j of echoed) {
      expect(j.jobId).not.toBe("");
      expect(j).toMatchObject({ queue: "", priority: 0, maxAttempts: 0 });
      expect(j.payload).toBeUndefined();
      expect(j.runTime).toBeUndefined();
      expect(j.createTime).toBeUndefined();
      expect(j.updateTime).toBeUndefined();
      expect(j.backoff).toBeUndefined();
    }
    const stored = await jobs().getJob({ jobId: echoed[1]!.jobId });
    expect(stored).toMatchObject({ queue: q, payload: { n: 2 }, priority: 4, runTime: later, maxAttempts: 5, state: JobState.JOB_STATE_SCHEDULED });
    expect(stored.createTime).toBeDefined();
  });

  it("a mask with the times echoes the stored times", async () => {
    const q = queue();
    const { jobs: echoed } = await jobs().batchEnqueueJobs({
      requests: [{ job: { queue: q, payload: { n: 1 } } }],
      readMask: ["job_id", "run_time", "create_time", "update_time", "payload"],
    });
    const stored = await jobs().getJob({ jobId: echoed[0]!.jobId });
    expect(echoed[0]).toMatchObject({ payload: { n: 1 }, runTime: stored.runTime, createTime: stored.createTime, updateTime: stored.updateTime, state: 0 });
    expect(stored.createTime).toBeDefined();
  });

  it("an empty mask echoes every field", async () => {
    const q = queue();
    const { jobs: echoed } = await jobs().batchEnqueueJobs({ requests: [{ job: { queue: q, payload: { n: 1 }, groupKey: "g" } }] });
    expect(echoed[0]).toEqual(await jobs().getJob({ jobId: echoed[0]!.jobId }));
  });

  it("an unknown path is INVALID_ARGUMENT naming read_mask, and nothing is written", async () => {
    const q = queue();
    const bad = await failure(jobs().batchEnqueueJobs({ requests: [{ job: { queue: q } }], readMask: ["job_id", "no_such_field"] }));
    expect(bad).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["read_mask.paths[1]"] });
    expect(await jobCount(q)).toBe(0);
  });

  it("the same mask applies to deduplicated and dependent jobs (the general path)", async () => {
    const q = queue();
    const first = await jobs().enqueueJob({ job: { queue: q, dedupeKey: "k", payload: { n: 1 } } });
    const { jobs: echoed } = await jobs().batchEnqueueJobs({
      requests: [{ job: { queue: q, dedupeKey: "k", payload: { n: 2 } } }, { job: { queue: q, jobId: `${q}-child`, dependsOn: [first.job!.jobId] } }],
      readMask: ["job_id", "state"],
    });
    expect(echoed[0]).toMatchObject({ jobId: first.job!.jobId, state: JobState.JOB_STATE_AVAILABLE, queue: "" });
    expect(echoed[0]!.payload).toBeUndefined();
    expect(echoed[1]).toMatchObject({ jobId: `${q}-child`, state: JobState.JOB_STATE_BLOCKED, dependsOn: [] });
  });
});

describe("BatchEnqueueJobs without request ids, parents or dedupe keys", () => {
  it("a taken job_id fails the batch as ALREADY_EXISTS naming that job, nothing written", async () => {
    const q = queue();
    const taken = `${q}-taken`;
    await jobs().enqueueJob({ job: { queue: q, jobId: taken } });
    const requests = Array.from({ length: 50 }, (_, i) => ({ job: { queue: q, jobId: i === 30 ? taken : `${q}-${i}` } }));
    const error = await failure(jobs().batchEnqueueJobs({ requests, readMask: ["job_id"] }));
    expect(error).toMatchObject({ code: status.ALREADY_EXISTS, metadata: { resource: "job", id: taken } });
    expect(await jobCount(q)).toBe(1);
  });

  it("wakes a LeaseJobs waiting on another replica", async () => {
    const q = queue();
    const waiting = b.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 10, wait: seconds(20) });
    // Early in the waiter's first wait, so that its 1 s backstop poll falls well past 700 ms.
    await new Promise((r) => setTimeout(r, 100));
    const sent = Date.now();
    await jobs().batchEnqueueJobs({ requests: Array.from({ length: 5 }, () => ({ job: { queue: q } })), readMask: ["job_id"] });
    const { leases } = await waiting;
    expect(leases.length).toBeGreaterThan(0);
    expect(Date.now() - sent).toBeLessThan(700);
  });

  it("a batch with a request id replays its response (the general path)", async () => {
    const q = queue();
    const requests = [{ job: { queue: q, payload: { n: 1 } }, requestId: `${q}-r1` }, { job: { queue: q } }];
    const first = await jobs().batchEnqueueJobs({ requests, readMask: ["job_id", "state"] });
    const again = await jobs().batchEnqueueJobs({ requests, readMask: ["job_id", "state"] });
    expect(again.jobs[0]!.jobId).toBe(first.jobs[0]!.jobId);
    expect(await jobCount(q)).toBe(3);
  });
});
