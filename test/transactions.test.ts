import { CairnClient, type CommitRequest, JobState, type Operation, type OperationResult, SessionStatus, WatchEventType } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let n = 0;
const uid = (p: string) => `${p}-${Date.now().toString(36)}-${++n}`;
const seconds = (s: number) => ({ seconds: s, nanos: 0 });
const json = (value: unknown) => ({ $case: "jsonValue" as const, value });

beforeAll(async () => {
  h = await startHarness({ progressIntervalMs: 500 });
});
afterAll(async () => {
  await h?.stop();
});

type Loose<T> = { [K in keyof T]?: unknown };
const commit = (request: Loose<CommitRequest>, client: CairnClient = h.client) => client.transactions.commit(request as never);
/** One operation, as `{kind: request}`. */
const op = (kind: string, value: object) => ({ op: { $case: kind, value } }) as unknown as Operation;
type Result = NonNullable<OperationResult["result"]>;
/** The value of a result of the expected kind. */
function valueOf<K extends Result["$case"]>(result: OperationResult | undefined, kind: K): Extract<Result, { $case: K }>["value"] {
  expect(result?.result?.$case).toBe(kind);
  return (result!.result as unknown as { value: never }).value;
}
const count = async (sql: string, params: unknown[] = []) => Number((await h.sql.query(sql, params)).rows[0].n);
const createSession = (sessionId: string) => h.client.sessions.createSession({ session: { sessionId, agentId: "planner", state: { step: 0 } } });
const leasedJob = async (queue: string) => {
  await h.client.jobs.enqueueJob({ job: { queue, payload: { n: 1 } } });
  const { leases } = await h.client.jobs.leaseJobs({ queue, workerId: "w", maxJobs: 1, leaseDuration: seconds(60) });
  return leases[0]!;
};

describe("the outbox", () => {
  it("updates a session and enqueues its job in one commit", async () => {
    const sessionId = uid("s");
    const queue = uid("q");
    await createSession(sessionId);
    const { results } = await commit({
      operations: [
        op("updateSession", { session: { sessionId, state: { step: 1, plan: "ship it" } }, expectedVersion: 1 }),
        op("enqueueJob", { job: { queue, sessionId, payload: { session: sessionId, step: 1 } } }),
      ],
    });
    expect(results).toHaveLength(2);
    expect(valueOf(results[0], "updateSession")).toMatchObject({ sessionId, version: 2, state: { step: 1, plan: "ship it" } });
    const enqueued = valueOf(results[1], "enqueueJob");
    expect(enqueued).toMatchObject({ deduplicated: false, job: { queue, sessionId, state: JobState.JOB_STATE_AVAILABLE } });
    const { leases } = await h.client.jobs.leaseJobs({ queue, workerId: "w", maxJobs: 5 });
    expect(leases.map((l) => l.job!.jobId)).toEqual([enqueued.job!.jobId]);
    expect((await h.client.sessions.getSession({ sessionId })).state).toEqual({ step: 1, plan: "ship it" });
  });
});

describe("the twelve kinds", () => {
  it("runs each kind and returns its method's response, in order", async () => {
    const [sessionId, doomed, trace, key, counter, gone, queue] = ["s", "doomed", "t", "k", "c", "gone", "q"].map(uid);
    await createSession(doomed);
    await h.client.keyValue.put({ entry: { key: gone!, value: json("bye") } });
    const toComplete = await leasedJob(queue!);
    const toFail = await leasedJob(queue!);
    const { results } = await commit({
      operations: [
        op("createSession", { session: { sessionId, agentId: "planner", state: { a: 1 } } }),
        op("updateSession", { session: { sessionId, status: SessionStatus.SESSION_STATUS_ENDED } }),
        op("deleteSession", { sessionId: doomed }),
        op("appendMessages", { sessionId, messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }] }),
        op("createResolution", { resolution: { requestId: "r1", agentId: "planner", sessionId, decision: 1 }, ttl: seconds(60) }),
        op("appendEvents", { events: [{ traceId: trace, sessionId, eventType: "step", payload: { i: 1 } }, { traceId: trace, eventType: "step" }] }),
        op("put", { entry: { key, value: json({ x: 1 }), sessionId } }),
        op("delete", { key: gone }),
        op("increment", { key: counter, delta: 5 }),
        op("enqueueJob", { job: { queue, payload: { next: true } } }),
        op("completeJob", { jobId: toComplete.job!.jobId, leaseToken: toComplete.leaseToken, result: { ok: true } }),
        op("failJob", { jobId: toFail.job!.jobId, leaseToken: toFail.leaseToken, error: { message: "boom" }, retry: false }),
      ],
    });
    expect(results).toHaveLength(12);
    expect(valueOf(results[0], "createSession")).toMatchObject({ sessionId, version: 1, state: { a: 1 } });
    expect(valueOf(results[1], "updateSession")).toMatchObject({ sessionId, version: 2, status: SessionStatus.SESSION_STATUS_ENDED });
    expect(valueOf(results[2], "deleteSession")).toEqual({});
    expect(valueOf(results[3], "appendMessages").messages.map((m) => [m.sequence, m.role])).toEqual([
      [1, "user"],
      [2, "assistant"],
    ]);
    expect(valueOf(results[4], "createResolution")).toMatchObject({ requestId: "r1", sessionId });
    const appended = valueOf(results[5], "appendEvents").results;
    expect(appended.map((r) => [r.sequence, r.duplicate])).toEqual([
      [1, false],
      [2, false],
    ]);
    expect(appended[1]!.offset).toBe(appended[0]!.offset + 1);
    expect(valueOf(results[6], "put")).toMatchObject({ key, version: 1, value: json({ x: 1 }), sessionId });
    expect(valueOf(results[7], "delete")).toEqual({ deleted: true });
    expect(valueOf(results[8], "increment")).toMatchObject({ key: counter, value: json(5) });
    expect(valueOf(results[9], "enqueueJob").job).toMatchObject({ queue, state: JobState.JOB_STATE_AVAILABLE });
    expect(valueOf(results[10], "completeJob")).toMatchObject({ state: JobState.JOB_STATE_SUCCEEDED, result: { ok: true } });
    expect(valueOf(results[11], "failJob")).toMatchObject({ state: JobState.JOB_STATE_DEAD, lastError: { message: "boom" } });
    // Revisions of one commit's KV changes are consecutive, in operation order.
    const put = valueOf(results[6], "put");
    const incremented = valueOf(results[8], "increment");
    // Put, Delete, Increment: three changes, three revisions in a row.
    expect(incremented.modRevision).toBe(put.modRevision + 2);
    expect((await failure(h.client.sessions.getSession({ sessionId: doomed }))).code).toBe(status.NOT_FOUND);
    expect((await h.client.traces.verifyTrace({ traceId: trace })).valid).toBe(true);
  });

  it("lets later operations see earlier ones", async () => {
    const sessionId = uid("s");
    const key = uid("k");
    const { results } = await commit({
      operations: [
        op("createSession", { session: { sessionId, agentId: "planner" } }),
        op("appendMessages", { sessionId, messages: [{ role: "user", content: "first" }] }),
        op("put", { entry: { key, value: json(40) } }),
        op("increment", { key, delta: 2 }),
        op("updateSession", { session: { sessionId, metadata: { seen: true } }, expectedVersion: 1 }),
        op("put", { entry: { key, value: json("done") }, expectedVersion: 2 }),
      ],
    });
    expect(valueOf(results[1], "appendMessages").messages[0]).toMatchObject({ sessionId, sequence: 1 });
    expect(valueOf(results[3], "increment").value).toEqual(json(42));
    expect(valueOf(results[4], "updateSession").version).toBe(2);
    expect(valueOf(results[5], "put")).toMatchObject({ version: 3, value: json("done") });
  });
});

describe("the single methods' options", () => {
  it("upserts, state patches and guarded appends work inside a commit", async () => {
    const sessionId = uid("s");
    const { results } = await commit({
      operations: [
        op("updateSession", { session: { sessionId, agentId: "planner" }, allowMissing: true, statePatch: { a: 1, b: { c: 2 } } }),
        op("updateSession", { session: { sessionId }, statePatch: { b: { c: null, d: 3 } }, expectedVersion: 1 }),
        op("appendMessages", { sessionId, messages: [{ role: "tool", content: "x" }], statePatch: { last: "tool" }, expectedVersion: 2 }),
      ],
    });
    expect(valueOf(results[0], "updateSession")).toMatchObject({ version: 1, state: { a: 1, b: { c: 2 } } });
    expect(valueOf(results[1], "updateSession")).toMatchObject({ version: 2, state: { a: 1, b: { d: 3 } } });
    expect(valueOf(results[2], "appendMessages").session).toMatchObject({ version: 3, state: { a: 1, b: { d: 3 }, last: "tool" } });
    const stale = await failure(
      commit({ operations: [op("appendMessages", { sessionId, messages: [{ role: "user", content: "y" }], expectedVersion: 2 })] }),
    );
    expect(stale).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { operation_index: "0", current_version: "3" } });
  });

  it("a deleted session's cascade runs in the commit", async () => {
    const [sessionId, trace, key, other, queue] = ["s", "t", "k", "o", "q"].map(uid) as string[];
    await createSession(sessionId);
    await h.client.keyValue.put({ entry: { key, value: json(1), sessionId } });
    await h.client.traces.appendEvents({ events: [{ traceId: trace, sessionId, eventType: "e" }] });
    const { job } = await h.client.jobs.enqueueJob({ job: { queue, sessionId } });
    await commit({ operations: [op("put", { entry: { key: other, value: json(2) } }), op("deleteSession", { sessionId })] });
    expect((await h.client.keyValue.batchGet({ keys: [key, other] })).entries.map((e) => e.key)).toEqual([other]);
    expect(await count("SELECT count(*) AS n FROM trace_events WHERE trace_id = $1", [trace])).toBe(0);
    expect((await h.client.jobs.getJob({ jobId: job!.jobId })).state).toBe(JobState.JOB_STATE_CANCELLED);
  });
});

describe("conditions", () => {
  it("pass, and the operations run", async () => {
    const sessionId = uid("s");
    const key = uid("k");
    const job = await leasedJob(uid("q"));
    await createSession(sessionId);
    const { results } = await commit({
      conditions: [
        { kind: { $case: "session", value: { sessionId, expectedVersion: 1 } } },
        { kind: { $case: "session", value: { sessionId: uid("absent"), exists: false } } },
        { kind: { $case: "entry", value: { key, expectedVersion: 0 } } },
        { kind: { $case: "job", value: { jobId: job.job!.jobId, states: [JobState.JOB_STATE_RUNNING] } } },
        { kind: { $case: "job", value: { jobId: job.job!.jobId, states: [] } } },
      ],
      operations: [op("put", { entry: { key, value: json(1) } })],
    });
    expect(valueOf(results[0], "put").version).toBe(1);
  });

  it("fail with CONDITION_FAILED, the condition's index and what is there now; nothing is written", async () => {
    const sessionId = uid("s");
    const key = uid("k");
    const written = uid("w");
    const job = await leasedJob(uid("q"));
    await createSession(sessionId);
    await h.client.keyValue.put({ entry: { key, value: json(1) } });
    const put = op("put", { entry: { key: written, value: json(1) } });
    const cases: [unknown, Record<string, string>][] = [
      [{ $case: "session", value: { sessionId, expectedVersion: 7 } }, { current_version: "1" }],
      [{ $case: "session", value: { sessionId, exists: false } }, { current_version: "1" }],
      [{ $case: "session", value: { sessionId: uid("absent"), exists: true } }, { current_version: "0" }],
      [{ $case: "entry", value: { key, expectedVersion: 0 } }, { current_version: "1" }],
      [{ $case: "entry", value: { key: uid("absent"), expectedVersion: 3 } }, { current_version: "0" }],
      [{ $case: "job", value: { jobId: job.job!.jobId, states: [JobState.JOB_STATE_AVAILABLE] } }, { current_state: "JOB_STATE_RUNNING" }],
      [{ $case: "job", value: { jobId: uid("absent"), states: [] } }, { current_state: "" }],
    ];
    for (const [kind, current] of cases) {
      const passing = { kind: { $case: "session", value: { sessionId, exists: true } } };
      const f = await failure(commit({ conditions: [passing, { kind }], operations: [put] }));
      expect(f).toMatchObject({ code: status.ABORTED, reason: "CONDITION_FAILED", metadata: { condition_index: "1", ...current } });
    }
    expect((await h.client.keyValue.batchGet({ keys: [written] })).entries).toEqual([]);
  });
});

describe("a failing operation", () => {
  it("fails the commit with its own status and reason, plus operation_index; earlier operations are undone", async () => {
    const sessionId = uid("s");
    const key = uid("k");
    await createSession(sessionId);
    const conflict = await failure(
      commit({
        operations: [
          op("put", { entry: { key, value: json(1) } }),
          op("updateSession", { session: { sessionId, metadata: { a: 1 } }, expectedVersion: 5 }),
        ],
      }),
    );
    expect(conflict).toMatchObject({
      code: status.ABORTED,
      reason: "VERSION_CONFLICT",
      metadata: { operation_index: "1", current_version: "1" },
    });
    expect(conflict.message).toContain("operations[1]");
    const job = await leasedJob(uid("q"));
    const lost = await failure(
      commit({
        operations: [
          op("put", { entry: { key, value: json(1) } }),
          op("appendMessages", { sessionId, messages: [{ role: "user", content: "x" }] }),
          op("completeJob", { jobId: job.job!.jobId, leaseToken: "00000000-0000-4000-8000-000000000000" }),
        ],
      }),
    );
    expect(lost).toMatchObject({ code: status.ABORTED, reason: "LEASE_LOST", metadata: { operation_index: "2" } });
    const missing = await failure(commit({ operations: [op("appendMessages", { sessionId: uid("nope"), messages: [{ role: "u", content: "x" }] })] }));
    expect(missing).toMatchObject({ code: status.NOT_FOUND, metadata: { operation_index: "0" } });
    expect((await h.client.keyValue.batchGet({ keys: [key] })).entries).toEqual([]);
    expect((await h.client.sessions.getSession({ sessionId })).version).toBe(1);
    expect(await count("SELECT count(*) AS n FROM session_messages WHERE session_id = $1", [sessionId])).toBe(0);
    expect((await h.client.jobs.getJob({ jobId: job.job!.jobId })).state).toBe(JobState.JOB_STATE_RUNNING);
  });
});

describe("request_id", () => {
  it("a retry returns the first results and writes nothing again; another body is REQUEST_ID_REUSED", async () => {
    const requestId = uid("req");
    const queue = uid("q");
    const key = uid("k");
    const request = {
      requestId,
      operations: [
        op("createSession", { session: { agentId: "planner" } }),
        op("increment", { key, delta: 1 }),
        op("put", { entry: { key: `${key}-bytes`, value: { $case: "bytesValue", value: Buffer.from([0, 255]) } } }),
        op("enqueueJob", { job: { queue } }),
      ],
    };
    const first = await commit(request);
    const again = await commit(request);
    expect(again).toEqual(first);
    expect(Buffer.from((valueOf(again.results[2], "put").value as { value: Buffer }).value)).toEqual(Buffer.from([0, 255]));
    expect((await h.client.keyValue.get({ key })).value).toEqual(json(1));
    expect(await count("SELECT count(*) AS n FROM jobs WHERE queue = $1", [queue])).toBe(1);
    const sessionId = valueOf(first.results[0], "createSession").sessionId;
    expect(await count("SELECT count(*) AS n FROM sessions WHERE session_id = $1", [sessionId])).toBe(1);
    const reused = await failure(commit({ ...request, operations: request.operations.slice(1) }));
    expect(reused).toMatchObject({ code: status.ALREADY_EXISTS, reason: "REQUEST_ID_REUSED" });
  });

  it("a failed commit leaves its request_id free", async () => {
    const requestId = uid("req");
    const key = uid("k");
    const conditions = [{ kind: { $case: "entry", value: { key, expectedVersion: 1 } } }];
    const operations = [op("increment", { key, delta: 1 })];
    expect((await failure(commit({ requestId, conditions, operations }))).reason).toBe("CONDITION_FAILED");
    await h.client.keyValue.put({ entry: { key, value: json(10) } });
    const { results } = await commit({ requestId, conditions, operations });
    expect(valueOf(results[0], "increment").value).toEqual(json(11));
  });
});

describe("validation", () => {
  it("names every bad field and writes nothing", async () => {
    const key = uid("k");
    const f = await failure(
      commit({
        conditions: [
          { kind: { $case: "session", value: { sessionId: "s", expectedVersion: 1, exists: true } } },
          { kind: { $case: "entry", value: { key: "", expectedVersion: -1 } } },
          { kind: { $case: "job", value: { jobId: "bad id!", states: [99] } } },
          {},
        ],
        operations: [
          op("put", { entry: { key, value: json(1) } }),
          op("put", { entry: { key: "" } }),
          op("appendEvents", { events: [{ traceId: "", eventType: "x" }] }),
          {},
          op("updateSession", { session: { sessionId: "" } }),
          op("completeJob", { jobId: "j", leaseToken: "not-a-token" }),
        ],
      }),
    );
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.fields).toEqual(
      expect.arrayContaining([
        "conditions[0].session",
        "conditions[1].entry.key",
        "conditions[1].entry.expected_version",
        "conditions[2].job.job_id",
        "conditions[2].job.states[0]",
        "conditions[3].kind",
        "operations[1].put.entry.key",
        "operations[1].put.entry.value",
        "operations[2].append_events.events[0].trace_id",
        "operations[3].op",
        "operations[4].update_session.session.session_id",
        "operations[5].complete_job.lease_token",
      ]),
    );
    expect((await h.client.keyValue.batchGet({ keys: [key] })).entries).toEqual([]);
  });

  it("takes at most 1000 operations", async () => {
    const key = uid("k");
    const operations = Array.from({ length: 1001 }, () => op("increment", { key, delta: 1 }));
    const f = await failure(commit({ operations }));
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["operations"] });
    const { results } = await commit({ operations: operations.slice(1) });
    expect(valueOf(results[999], "increment").value).toEqual(json(1000));
  });
});

describe("namespaces", () => {
  it("applies x-cairn-namespace to every operation and condition", async () => {
    const other = new CairnClient(h.daemon.address, { namespace: "tx-other" });
    try {
      const sessionId = uid("s");
      const key = uid("k");
      await createSession(sessionId);
      await h.client.keyValue.put({ entry: { key, value: json("default") } });
      // In tx-other the session and the key do not exist.
      const absent = await failure(commit({ conditions: [{ kind: { $case: "session", value: { sessionId, exists: true } } }] }, other));
      expect(absent.metadata).toMatchObject({ condition_index: "0", current_version: "0" });
      const { results } = await commit(
        {
          conditions: [{ kind: { $case: "entry", value: { key, expectedVersion: 0 } } }],
          operations: [
            op("createSession", { session: { sessionId, agentId: "other" } }),
            op("put", { entry: { key, value: json("other") } }),
          ],
        },
        other,
      );
      expect(valueOf(results[1], "put").version).toBe(1);
      expect((await h.client.keyValue.get({ key })).value).toEqual(json("default"));
      expect((await other.keyValue.get({ key })).value).toEqual(json("other"));
      expect((await h.client.sessions.getSession({ sessionId })).agentId).toBe("planner");
      expect((await other.sessions.getSession({ sessionId })).agentId).toBe("other");
    } finally {
      other.close();
    }
  });
});

describe("concurrent commits", () => {
  it("never deadlock, whatever order their operations come in, and lose nothing", async () => {
    const [k1, k2, t1, t2, s1, s2, queue] = ["k1", "k2", "t1", "t2", "s1", "s2", "q"].map(uid) as string[];
    await createSession(s1);
    await createSession(s2);
    const forward = (i: number): Operation[] => [
      op("increment", { key: k1, delta: 1 }),
      op("appendEvents", { events: [{ traceId: t1, eventType: "e", payload: { i } }] }),
      op("updateSession", { session: { sessionId: s1, metadata: { i } } }),
      op("appendMessages", { sessionId: s2, messages: [{ role: "user", content: `m${i}` }] }),
      op("increment", { key: k2, delta: 1 }),
      op("appendEvents", { events: [{ traceId: t2, eventType: "e", payload: { i } }] }),
      op("updateSession", { session: { sessionId: s2, metadata: { i } } }),
      op("enqueueJob", { job: { queue, payload: { i } } }),
    ];
    const loops = 8;
    const rounds = 30;
    const failures: unknown[] = [];
    // Single calls on the same keys, traces and sessions at the same time.
    let singles = 0;
    let running = true;
    const single = async () => {
      while (running) {
        await Promise.all([
          h.client.keyValue.increment({ key: k2, delta: 1 }),
          h.client.traces.appendEvents({ events: [{ traceId: t2, eventType: "single" }, { traceId: t1, eventType: "single" }] }),
          h.client.sessions.updateSession({ session: { sessionId: s1, labels: { single: "yes" } } }),
        ]).catch((e) => failures.push(e));
        singles++;
      }
    };
    const singleLoop = single();
    await Promise.all(
      Array.from({ length: loops }, async (_, loop) => {
        for (let r = 0; r < rounds; r++) {
          const ops = forward(loop * rounds + r);
          await commit({ operations: loop % 2 === 0 ? ops : ops.reverse() }).catch((e) => failures.push(e));
        }
      }),
    );
    running = false;
    await singleLoop;
    expect(failures).toEqual([]);
    const total = loops * rounds;
    expect((await h.client.keyValue.get({ key: k1 })).value).toEqual(json(total));
    expect((await h.client.keyValue.get({ key: k2 })).value).toEqual(json(total + singles));
    for (const trace of [t1, t2]) {
      const verified = await h.client.traces.verifyTrace({ traceId: trace });
      expect(verified).toMatchObject({ valid: true, eventCount: total + singles });
    }
    expect((await h.client.sessions.getSession({ sessionId: s1 })).version).toBe(1 + total + singles);
    expect((await h.client.sessions.getSession({ sessionId: s2 })).version).toBe(1 + total);
    expect(await count("SELECT count(*) AS n FROM session_messages WHERE session_id = $1", [s2])).toBe(total);
    expect(await count("SELECT count(*) AS n FROM jobs WHERE queue = $1", [queue])).toBe(total);
  }, 90_000);
});

describe("visibility", () => {
  it("watchers, subscribers and waiting workers see a commit only once it commits, all of it; a failed one never", async () => {
    const prefix = uid("vis");
    const trace = uid("t");
    const queue = uid("q");
    const dedupeKey = uid("d");
    const kvBefore = await count("SELECT last_revision AS n FROM kv_revisions");
    const offsetBefore = await count("SELECT last_value AS n FROM trace_event_offsets");
    const watch = collect(h.client.keyValue.watch({ prefix, startRevision: 0 }));
    const events = collect(h.client.traces.subscribeEvents({ traceId: trace, fromNow: true }));
    await watch.until("the watch's first progress", (m) => m.some((x) => x.message?.$case === "progress"));
    await events.until("the subscription's first progress", (m) => m.some((x) => x.message?.$case === "progress"));
    let leased: Awaited<ReturnType<typeof h.client.jobs.leaseJobs>> | undefined;
    const waiting = h.client.jobs.leaseJobs({ queue, workerId: "w", maxJobs: 10, wait: seconds(30) }).then((r) => (leased = r));
    const seen = () => ({
      puts: watch.messages.filter((m) => m.message?.$case === "event").length,
      events: events.messages.filter((m) => m.message?.$case === "event").length,
      leased,
    });
    const operations = (key: string) => [
      op("put", { entry: { key: `${prefix}/${key}`, value: json(key) } }),
      op("appendEvents", { events: [{ traceId: trace, eventType: key }] }),
      op("enqueueJob", { job: { queue, dedupeKey, payload: { key } } }),
    ];

    // A commit whose last operation fails leaves nothing behind and shows nothing.
    const unknownJob = op("completeJob", { jobId: uid("nope"), leaseToken: "00000000-0000-4000-8000-000000000000" });
    const f = await failure(commit({ operations: [...operations("failed"), unknownJob] }));
    expect(f).toMatchObject({ code: status.NOT_FOUND, metadata: { operation_index: "3" } });
    expect(await count("SELECT count(*) AS n FROM kv_entries WHERE key LIKE $1", [`${prefix}/%`])).toBe(0);
    expect(await count("SELECT count(*) AS n FROM kv_changes WHERE key LIKE $1", [`${prefix}/%`])).toBe(0);
    expect(await count("SELECT count(*) AS n FROM trace_events WHERE trace_id = $1", [trace])).toBe(0);
    expect(await count("SELECT count(*) AS n FROM trace_heads WHERE trace_id = $1", [trace])).toBe(0);
    expect(await count("SELECT count(*) AS n FROM jobs WHERE queue = $1", [queue])).toBe(0);

    // A commit held open after its Put and AppendEvents ran: an uncommitted job with the same dedupe key makes its enqueue wait.
    const blocker = new pg.Client({ connectionString: h.databaseUrl });
    await blocker.connect();
    await blocker.query("BEGIN");
    await blocker.query(
      `INSERT INTO jobs (namespace, job_id, queue, state, run_time, max_attempts, backoff_initial_ms, backoff_max_ms, backoff_multiplier, dedupe_key)
       VALUES ('default', $1, $2, 'SCHEDULED', now() + interval '1 hour', 1, 1000, 1000, 2, $3)`,
      [uid("blocker"), queue, dedupeKey],
    );
    const blockerPid = (await blocker.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
    const pending = commit({ operations: operations("ok") });
    // Only the commit's enqueue waits for the blocker's row (a subscriber waiting on the commit's offset slot does not).
    await waitFor("the commit's enqueue to wait for the blocker", async () =>
      (await count(`SELECT count(*) AS n FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))`, [blockerPid])) > 0,
    );
    await new Promise((r) => setTimeout(r, 1_200));
    expect(seen()).toEqual({ puts: 0, events: 0, leased: undefined });
    await blocker.query("ROLLBACK");
    await blocker.end();
    const { results } = await pending;
    await watch.until("the commit's put", (m) => m.some((x) => x.message?.$case === "event"));
    await events.until("the commit's event", (m) => m.some((x) => x.message?.$case === "event"));
    await waiting;
    const put = valueOf(results[0], "put");
    const appended = valueOf(results[1], "appendEvents").results[0]!;
    const job = valueOf(results[2], "enqueueJob").job!;
    expect(seen().puts).toBe(1);
    expect(seen().events).toBe(1);
    const watched = watch.messages.find((m) => m.message?.$case === "event")!.message as { value: { type: number; revision: number } };
    expect(watched.value).toMatchObject({ type: WatchEventType.WATCH_EVENT_TYPE_PUT, revision: put.modRevision });
    const subscribed = events.messages.find((m) => m.message?.$case === "event")!.message as { value: { offset: number } };
    expect(subscribed.value.offset).toBe(appended.offset);
    expect(leased!.leases.map((l) => l.job!.jobId)).toEqual([job.jobId]);
    // The failed commit took no revision (allocated under a lock, rolled back with it); it may have
    // drawn an offset from the sequence, a gap no subscriber ever sees an event at.
    expect(put.modRevision).toBe(kvBefore + 1);
    expect(appended.offset).toBeGreaterThan(offsetBefore);
    watch.cancel();
    events.cancel();
  }, 30_000);
});
