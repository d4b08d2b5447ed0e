// A retried create with the same request_id returns the first call's
// response (AIP-155), not the resource as it is now: a session updated
// since, a job leased since, a job that was deduplicated.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";

let h: Harness;
let seq = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;
const seconds = (s: number) => ({ seconds: s, nanos: 0 });

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const leaseAll = (queue: string) => h.client.jobs.leaseJobs({ queue, workerId: "w", maxJobs: 10, leaseDuration: seconds(30) });

it("CreateSession: a replay after an update returns the session as first created", async () => {
  const request = { requestId: uid("req"), session: { agentId: "replay", state: { step: 1 }, labels: { k: "v" } } };
  const first = await h.client.sessions.createSession(request);
  await h.client.sessions.updateSession({ session: { sessionId: first.sessionId, state: { step: 2 } }, updateMask: ["state"] });
  expect(await h.client.sessions.createSession(request)).toEqual(first);
  expect((await h.client.sessions.getSession({ sessionId: first.sessionId })).version).toBe(2);
});

it("BatchCreateSessions: a replay after an update returns the first batch", async () => {
  const request = {
    requests: [
      { requestId: uid("req"), session: { agentId: "replay-batch", state: { n: 1 } } },
      { requestId: uid("req"), session: { agentId: "replay-batch", state: { n: 2 } } },
    ],
  };
  const first = await h.client.sessions.batchCreateSessions(request);
  const updated = first.sessions[1]!;
  await h.client.sessions.updateSession({ session: { sessionId: updated.sessionId, state: { n: 3 } }, updateMask: ["state"] });
  expect(await h.client.sessions.batchCreateSessions(request)).toEqual(first);
});

it("a replay of a session deleted since is NOT_FOUND", async () => {
  const request = { requestId: uid("req"), session: { agentId: "replay-deleted" } };
  const first = await h.client.sessions.createSession(request);
  await h.client.sessions.deleteSession({ sessionId: first.sessionId });
  expect(await failure(h.client.sessions.createSession(request))).toMatchObject({ code: status.NOT_FOUND });
});

it("EnqueueJob: a replay after the job was leased returns the job as enqueued", async () => {
  const queue = uid("q");
  const request = { requestId: uid("req"), job: { queue, payload: { a: 1 } } };
  const first = await h.client.jobs.enqueueJob(request);
  expect((await leaseAll(queue)).leases).toHaveLength(1);
  expect(await h.client.jobs.enqueueJob(request)).toEqual(first);
});

it("BatchEnqueueJobs: a replay after the jobs were leased returns the first batch", async () => {
  const queue = uid("q");
  const request = { requests: [1, 2].map((n) => ({ requestId: uid("req"), job: { queue, payload: { n } } })) };
  const first = await h.client.jobs.batchEnqueueJobs(request);
  expect((await leaseAll(queue)).leases).toHaveLength(2);
  expect(await h.client.jobs.batchEnqueueJobs(request)).toEqual(first);
});

it("EnqueueJob: a deduplicated first call replays as deduplicated, with the holder as it was", async () => {
  const queue = uid("q");
  const holder = await h.client.jobs.enqueueJob({ job: { queue, dedupeKey: "once" } });
  const request = { requestId: uid("req"), job: { queue, dedupeKey: "once" } };
  const first = await h.client.jobs.enqueueJob(request);
  expect(first).toMatchObject({ deduplicated: true, job: { jobId: holder.job!.jobId } });
  expect((await leaseAll(queue)).leases).toHaveLength(1);
  expect(await h.client.jobs.enqueueJob(request)).toEqual(first);
});

it("EnqueueJob: retries arriving together with one request_id enqueue one job and all get it", async () => {
  const queue = uid("q");
  const request = { requestId: uid("req"), job: { queue, payload: { once: true } } };
  const results = await Promise.all(Array.from({ length: 10 }, () => h.client.jobs.enqueueJob(request)));
  expect(new Set(results.map((r) => r.job!.jobId)).size).toBe(1);
  const count = await h.sql.query("SELECT count(*)::int AS n FROM jobs WHERE queue = $1", [queue]);
  expect(count.rows[0].n).toBe(1);
});

it("EnqueueJob: a create that failed (job_id taken) keeps no claim, so a retry fails the same way", async () => {
  const queue = uid("q");
  const jobId = uid("job");
  await h.client.jobs.enqueueJob({ job: { queue, jobId } });
  const request = { requestId: uid("req"), job: { queue, jobId, payload: { mine: true } } };
  expect(await failure(h.client.jobs.enqueueJob(request))).toMatchObject({ code: status.ALREADY_EXISTS, reason: "ALREADY_EXISTS" });
  expect(await failure(h.client.jobs.enqueueJob(request))).toMatchObject({ code: status.ALREADY_EXISTS, reason: "ALREADY_EXISTS" });
});
