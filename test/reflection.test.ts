// Interop: an independent client (Python grpcio, C-core) that has none of
// Cairn's protos lists, describes and calls every method through server
// reflection alone, as grpcurl would.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";

const PYTHON = "/usr/bin/python3";
const SCRIPT = new URL("./interop/reflection_client.py", import.meta.url).pathname;
const run = promisify(execFile);

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

async function reflect(version: string) {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: install python3-grpcio python3-protobuf (see .ci/run)`);
  const { stdout } = await run(PYTHON, [SCRIPT, h.daemon.address, version], { timeout: 60_000 }).catch((error) => {
    throw new Error(`reflection client failed (needs Debian's python3-grpcio and python3-protobuf): ${error.stderr ?? error}`);
  });
  return JSON.parse(stdout) as {
    services: string[];
    methods: Record<string, { input: string; output: string; input_fields: Record<string, string | number> }>;
    calls: Record<string, { code: string; response?: any; responses?: any[]; message?: string }>;
  };
}

describe.each(["v1", "v1alpha"])("reflection %s", (version) => {
  it("lists, describes and calls every method", async () => {
    const r = await reflect(version);
    expect(r.services).toEqual(
      expect.arrayContaining([
        "cairn.v1.SessionService",
        "cairn.v1.ResolutionService",
        "cairn.v1.TraceEventService",
        "cairn.v1.KeyValueService",
        "cairn.v1.JobService",
        "cairn.v1.MetricService",
        "cairn.v1.TransactionService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]),
    );
    // Well-known types resolved through reflection, dependencies included.
    expect(r.methods["cairn.v1.SessionService/UpdateSession"]).toMatchObject({
      input: "cairn.v1.UpdateSessionRequest",
      output: "cairn.v1.Session",
      input_fields: { session: "cairn.v1.Session", update_mask: "google.protobuf.FieldMask" },
    });
    expect(r.methods["cairn.v1.SessionService/ListSessions"]!.input_fields.filter).toBe("cairn.v1.SessionFilter");
    expect(r.methods["cairn.v1.JobService/LeaseJobs"]!.input_fields.wait).toBe("google.protobuf.Duration");
    expect(Object.keys(r.methods).filter((m) => m.startsWith("cairn.v1."))).toHaveLength(17 + 7 + 6 + 11 + 25 + 2 + 1);

    const c = r.calls;
    const created = c["CreateSession"]!.response;
    expect(created).toMatchObject({ agentId: "py-agent", version: "1", state: { counter: 1, nested: { ok: true } } });
    expect(created.createTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    expect(c["CreateSession(retry)"]!.response.sessionId).toBe(created.sessionId);
    expect(c["GetSession"]!.response).toEqual(created);
    expect(c["UpdateSession"]!.response).toMatchObject({ version: "2", state: { counter: 2 } });
    expect(c["UpdateSession(conflict)"]!.code).toBe("ABORTED");
    expect(c["ListSessions"]!.response.sessions.map((s: any) => s.sessionId)).toEqual([created.sessionId]);
    expect(c["CountSessions"]!.response.count).toBe("1");
    expect(c["BatchCreateSessions"]!.response.sessions).toHaveLength(2);
    expect(c["BatchGetSessions"]!.response.sessions).toHaveLength(3);
    expect(c["GetSessionStats"]!.response.byStatus).toEqual({
      SESSION_STATUS_ACTIVE: "2",
      SESSION_STATUS_ENDED: "1",
      SESSION_STATUS_ERROR: "0",
    });
    expect(c["AppendMessages"]!.response.messages.map((m: any) => m.sequence)).toEqual(["1", "2"]);
    expect(c["ListMessages"]!.response.messages.map((m: any) => m.content)).toEqual(["hi", "hello"]);
    expect(c["BatchDeleteSessions"]!.code).toBe("OK");
    expect(c["DeleteSession"]!.code).toBe("OK");
    expect(c["GetSession(deleted)"]!.code).toBe("NOT_FOUND");
    expect(c["grpc.health.v1.Health/Check"]!.response).toEqual({ status: "SERVING" });
    expect(c["AppendEvents"]!.response.results.map((r: any) => r.sequence)).toEqual(["1", "2"]);
    expect(c["IngestEvents"]!.responses).toEqual([expect.objectContaining({ batchId: "py-b", accepted: 1 })]);
    const listed = c["ListTraceEvents"]!.response.events;
    expect(listed.map((e: any) => e.sequence)).toEqual(["1", "2", "3"]);
    expect(listed[0]).toMatchObject({ severity: "SEVERITY_WARNING", time: "2026-11-22T08:20:29.123456Z", payload: { i: 1 } });
    expect(c["ListSessionEvents"]!.response.events).toHaveLength(3);
    expect(c["SubscribeEvents"]!.code).toBe("DEADLINE_EXCEEDED");
    expect(c["SubscribeEvents"]!.responses!.map((r: any) => r.event?.sequence)).toEqual(["1", "2", "3"]);
    expect(c["VerifyTrace"]!.response).toMatchObject({ valid: true, eventCount: "3", headHash: listed[2].eventHash });
    const resolution = c["CreateResolution"]!.response;
    expect(resolution).toMatchObject({ decision: "DECISION_PARTIAL", contextBlocks: [{ doc: 1 }] });
    expect(Date.parse(resolution.expireTime) - Date.parse(resolution.createTime)).toBeCloseTo(60_000, -3);
    expect(c["BatchCreateResolutions"]!.response.resolutions).toHaveLength(2);
    expect(c["GetResolution"]!.response).toEqual(resolution);
    expect(c["ListResolutions"]!.response.resolutions).toHaveLength(3);
    expect(c["DeleteResolution"]!.code).toBe("OK");
    expect(c["PurgeExpiredResolutions"]!.code).toBe("OK");
    expect(c["Put"]!.response).toMatchObject({ version: "1", jsonValue: { a: [1, "b"] } });
    expect(c["Put(bytes)"]!.response.bytesValue).toBe("AAH+");
    expect(c["Get"]!.response).toEqual(c["Put"]!.response);
    expect(c["BatchPut"]!.response.entries).toHaveLength(2);
    expect(c["BatchGet"]!.response.entries.map((e: any) => e.jsonValue)).toEqual([1, "two"]);
    expect(c["Increment"]!.response.jsonValue).toBe(41);
    expect(c["List"]!.response.entries.map((e: any) => e.key.split("/").pop())).toEqual(["doc", "n", "raw", "x", "y"]);
    expect(c["List"]!.response.entries.every((e: any) => e.jsonValue === undefined && e.bytesValue === undefined)).toBe(true);
    expect(c["Watch"]!.code).toBe("DEADLINE_EXCEEDED");
    expect(c["Watch"]!.responses!.filter((r: any) => r.event).map((r: any) => r.event.entry.key.split("/").pop())).toEqual([
      "doc",
      "raw",
      "x",
      "y",
      "n",
    ]);
    expect(c["Delete"]!.response).toEqual({ deleted: true });
    expect(c["BatchDelete"]!.response).toEqual({ deletedCount: "2" });
    expect(c["PurgeExpired"]!.code).toBe("OK");
    expect(c["EnqueueJob"]!.response.job).toMatchObject({ state: "JOB_STATE_AVAILABLE", priority: 5, backoff: { multiplier: 3 } });
    expect(c["BatchEnqueueJobs"]!.response.jobs).toHaveLength(2);
    expect(c["PauseQueue"]!.code).toBe("OK");
    expect(c["ResumeQueue"]!.code).toBe("OK");
    expect(c["LeaseJobs"]!.response.leases).toHaveLength(2);
    expect(c["ExtendLease"]!.code).toBe("OK");
    expect(c["CompleteJob"]!.response).toMatchObject({ state: "JOB_STATE_SUCCEEDED", result: { ok: true } });
    expect(c["FailJob"]!.response).toMatchObject({ state: "JOB_STATE_DEAD", lastError: { message: "nope" } });
    expect(c["RetryJob"]!.response.state).toBe("JOB_STATE_AVAILABLE");
    expect(c["StreamJobs"]!.code).toBe("DEADLINE_EXCEEDED");
    expect(c["StreamJobs"]!.responses).toHaveLength(1);
    // Whether the completion beat the release of the ended stream's lease is a race; either outcome is per item.
    const streamedJob = c["StreamJobs"]!.responses![0].job.jobId;
    expect(c["BatchCompleteJobs"]!.response.results).toEqual([expect.objectContaining({ jobId: streamedJob })]);
    expect(c["CancelJob"]!.response.state).toBe("JOB_STATE_CANCELLED");
    expect(c["GetJob"]!.response.state).toBe("JOB_STATE_SUCCEEDED");
    expect(c["ListJobs"]!.response.jobs).toHaveLength(3);
    const counts = c["GetQueueStats"]!.response.counts;
    expect(Object.values(counts).reduce((sum: number, v) => sum + Number(v), 0)).toBe(3);
    expect(counts.JOB_STATE_CANCELLED).toBe("1");
    expect(c["ImportSessions"]!.response.sessions[0]).toMatchObject({ createTime: "2025-01-02T03:04:05Z", status: "SESSION_STATUS_ENDED" });
    expect(c["BatchUpdateSessions"]!.response.sessions[0]).toMatchObject({ version: "2", state: { step: 2 } });
    expect(c["ListSessionVersions"]!.response.sessions.map((s: any) => s.version)).toEqual(["2", "1"]);
    expect(c["ForkSession"]!.response).toMatchObject({ version: "1", state: { step: 1 }, parentVersion: "1" });
    expect(c["DeleteMessages"]!.response).toEqual({ deletedCount: "1" });
    expect(c["ImportResolutions"]!.response.resolutions[0].createTime).toBe("2025-01-01T00:00:00Z");
    expect(c["Count"]!.response).toEqual({ count: "1" });
    expect(c["GetQueueConfig"]!.code).toBe("OK");
    expect(c["UpdateQueueConfig"]!.response).toMatchObject({ maxRunning: 3, fair: true });
    expect(c["CreateSchedule"]!.response).toMatchObject({ cron: "0 0 1 1 *", timeZone: "Europe/Paris" });
    expect(c["ListSchedules"]!.response.schedules).toHaveLength(1);
    expect(c["UpdateSchedule"]!.response.cron).toBe("0 0 2 1 *");
    expect(c["PauseSchedule"]!.response.paused).toBe(true);
    expect(c["TriggerSchedule"]!.response.job).toMatchObject({ payload: { report: true } });
    expect(c["DeleteSchedule"]!.code).toBe("OK");
    expect(c["Commit"]!.response.results).toHaveLength(2);
    expect(c["RecordMetrics"]!.code).toBe("OK");
    expect(c["QueryMetrics"]!.response.series[0].points.map((p: any) => p.value)).toEqual([8]);
    // Every method of every Cairn service was called through reflection alone.
    expect((r as unknown as { uncalled: string[] }).uncalled).toEqual([]);
  });
});
