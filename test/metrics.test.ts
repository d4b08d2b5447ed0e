// The operations endpoint (API.md "Operations endpoint"): /metrics after real
// calls on a real daemon, /healthz, and /readyz through a real database
// outage (a TCP proxy between the daemon and PostgreSQL, cut and restored).
import { CairnClient } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon } from "../src/daemon.js";
import { createLogger } from "../src/logger.js";
import { databaseBehindProxy, failure, type Harness, startHarness, testConfig } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

async function get(address: string, path: string): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`http://${address}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get("content-type") };
}

/** The value of one sample of the Prometheus text format, or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3]);
  }
  return undefined;
}

const uid = (p: string) => `${p}-${Math.random().toString(36).slice(2, 10)}`;
const getSession = { grpc_type: "unary", grpc_service: "cairn.v1.SessionService", grpc_method: "GetSession" };

describe("/metrics, /healthz, /readyz", () => {
  let h: Harness;
  let address: string;
  const scrape = async () => {
    const res = await get(address, "/metrics");
    expect(res.status).toBe(200);
    return res.body;
  };

  beforeAll(async () => {
    h = await startHarness({ metricsListen: "127.0.0.1:0", reaperIntervalMs: 200 });
    address = h.daemon.metricsAddress!;
  });
  afterAll(() => h?.stop());

  it("binds port 0 to a real port and answers the probes", async () => {
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(address).not.toBe("127.0.0.1:0");
    expect((await get(address, "/healthz")).status).toBe(200);
    await waitFor("ready", async () => (await get(address, "/readyz")).status === 200);
    expect((await get(address, "/nothing")).status).toBe(404);
    const res = await get(address, "/metrics");
    expect(res.type).toContain("text/plain");
  });

  it("refuses to start on a port already taken, naming the setting", async () => {
    const config = testConfig(h.databaseUrl, { metricsListen: address });
    await expect(startDaemon(config, createLogger("silent"))).rejects.toThrow(/CAIRN_METRICS_LISTEN .*EADDRINUSE/);
  });

  it("counts gRPC calls with grpc-ecosystem names, labels and Go code names", async () => {
    const before = await scrape();
    const started0 = sample(before, "grpc_server_started_total", getSession) ?? 0;
    const ok0 = sample(before, "grpc_server_handled_total", { ...getSession, grpc_code: "OK" }) ?? 0;
    const notFound0 = sample(before, "grpc_server_handled_total", { ...getSession, grpc_code: "NotFound" }) ?? 0;
    const count0 = sample(before, "grpc_server_handling_seconds_count", getSession) ?? 0;

    const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "metrics" } });
    await h.client.sessions.getSession({ sessionId });
    await h.client.sessions.getSession({ sessionId });
    expect((await failure(h.client.sessions.getSession({ sessionId: "00000000-0000-7000-8000-000000000000" }))).code).toBe(status.NOT_FOUND);
    expect((await failure(h.client.sessions.createSession({ session: { agentId: "" } }))).code).toBe(status.INVALID_ARGUMENT);

    const after = await scrape();
    expect(sample(after, "grpc_server_started_total", getSession)).toBe(started0 + 3);
    expect(sample(after, "grpc_server_handled_total", { ...getSession, grpc_code: "OK" })).toBe(ok0 + 2);
    expect(sample(after, "grpc_server_handled_total", { ...getSession, grpc_code: "NotFound" })).toBe(notFound0 + 1);
    expect(
      sample(after, "grpc_server_handled_total", { grpc_method: "CreateSession", grpc_service: "cairn.v1.SessionService", grpc_code: "InvalidArgument" }),
    ).toBeGreaterThanOrEqual(1);
    // The histogram: count, sum, and a cumulative +Inf bucket equal to the count.
    const count = sample(after, "grpc_server_handling_seconds_count", getSession)!;
    expect(count).toBe(count0 + 3);
    expect(sample(after, "grpc_server_handling_seconds_bucket", { ...getSession, le: "+Inf" })).toBe(count);
    expect(sample(after, "grpc_server_handling_seconds_bucket", { ...getSession, le: "0.005" })).toBeLessThanOrEqual(count);
    expect(sample(after, "grpc_server_handling_seconds_sum", getSession)).toBeGreaterThan(0);
    expect(after).toMatch(/# TYPE grpc_server_handling_seconds histogram/);
    expect(after).toMatch(/# TYPE grpc_server_handled_total counter/);
  });

  it("labels streams by type, and counts open streams by method", async () => {
    const sub = h.client.traces.subscribeEvents({ fromNow: true });
    sub.on("data", () => {});
    sub.on("error", () => {});
    try {
      await waitFor("the stream to be open", async () => sample(await scrape(), "cairn_streams_open", { kind: "SubscribeEvents" }) === 1);
      const text = await scrape();
      expect(
        sample(text, "grpc_server_started_total", { grpc_type: "server_stream", grpc_service: "cairn.v1.TraceEventService", grpc_method: "SubscribeEvents" }),
      ).toBeGreaterThanOrEqual(1);
    } finally {
      sub.cancel();
    }
    await waitFor("the stream to close", async () => (sample(await scrape(), "cairn_streams_open", { kind: "SubscribeEvents" }) ?? 0) === 0);
    const text = await scrape();
    expect(
      sample(text, "grpc_server_handled_total", {
        grpc_type: "server_stream",
        grpc_method: "SubscribeEvents",
        grpc_code: "Canceled",
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it("counts appended trace events, not duplicates", async () => {
    const before = sample(await scrape(), "cairn_trace_events_appended_total") ?? 0;
    const traceId = uid("trace");
    const events = [1, 2, 3].map((i) => ({ traceId, eventId: `e${i}`, eventType: "tool.call", payload: { i } }));
    await h.client.traces.appendEvents({ events });
    await h.client.traces.appendEvents({ events: events.slice(0, 2) });
    expect(sample(await scrape(), "cairn_trace_events_appended_total")).toBe(before + 3);
  });

  it("reads jobs per queue and state, and the oldest available job's age", async () => {
    const queue = uid("q");
    await h.client.jobs.enqueueJob({ job: { queue } });
    await h.client.jobs.enqueueJob({ job: { queue } });
    await h.client.jobs.enqueueJob({ job: { queue, runTime: { seconds: Math.floor(Date.now() / 1000) + 3_600, nanos: 0 } } });
    const text = await scrape();
    expect(sample(text, "cairn_jobs", { queue, state: "available" })).toBe(2);
    expect(sample(text, "cairn_jobs", { queue, state: "scheduled" })).toBe(1);
    expect(sample(text, "cairn_jobs", { queue, state: "running" })).toBe(0);
    expect(sample(text, "cairn_job_oldest_available_seconds", { queue })).toBeGreaterThanOrEqual(0);
    expect(text).toContain("across namespaces");
  });

  it("counts the reaper's deletions, the pool's connections and Node's default metrics", async () => {
    const kind = "expired entries";
    const before = sample(await scrape(), "cairn_reaper_deleted_total", { kind }) ?? 0;
    await h.client.keyValue.put({ entry: { key: uid("ttl"), value: { $case: "jsonValue" as const, value: { v: 1 } } }, ttl: { seconds: 0, nanos: 1_000_000 } });
    await waitFor("the reaper to count", async () => (sample(await scrape(), "cairn_reaper_deleted_total", { kind }) ?? 0) > before);
    const text = await scrape();
    for (const state of ["idle", "active", "waiting"]) {
      expect(sample(text, "cairn_db_pool_connections", { state })).toBeGreaterThanOrEqual(0);
    }
    expect(sample(text, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(sample(text, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
  });
});

describe("/readyz through a database outage", () => {
  it("says 503 while the database is unreachable and 200 after, while /healthz and /metrics keep answering", async () => {
    const { database, proxy, url: viaProxy } = await databaseBehindProxy();
    const daemon = await startDaemon(testConfig(viaProxy, { metricsListen: "127.0.0.1:0" }), createLogger("silent"));
    const client = new CairnClient(daemon.address);
    const address = daemon.metricsAddress!;
    try {
      await client.jobs.enqueueJob({ job: { queue: "outage" } });
      await waitFor("ready", async () => (await get(address, "/readyz")).status === 200);

      await proxy.cut();
      await waitFor("not ready", async () => (await get(address, "/readyz")).status === 503);
      expect((await get(address, "/healthz")).status).toBe(200);
      // The scrape still succeeds; only what needs the database is missing.
      const down = await get(address, "/metrics");
      expect(down.status).toBe(200);
      expect(sample(down.body, "grpc_server_started_total", { grpc_method: "EnqueueJob" })).toBe(1);
      expect(sample(down.body, "cairn_jobs", { queue: "outage", state: "available" })).toBeUndefined();

      await proxy.restore();
      await waitFor("ready again", async () => (await get(address, "/readyz")).status === 200);
      await waitFor("jobs gauges again", async () => sample((await get(address, "/metrics")).body, "cairn_jobs", { queue: "outage", state: "available" }) === 1);
    } finally {
      client.close();
      await daemon.stop();
      await proxy.cut();
      await database.drop();
    }
    // Stopped: the endpoint is closed with the daemon.
    await expect(fetch(`http://${address}/healthz`)).rejects.toThrow();
  });
});
