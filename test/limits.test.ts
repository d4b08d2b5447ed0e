// Limits and overload (API.md "Limits and overload"): stream counts, slow
// consumers, a saturated pool, connection bounds, and errors that always
// carry their details — on a daemon with small limits so each bound is
// reached quickly.
import { CairnClient, ErrorInfo, errorDetails, Status, SubscribeEventsRequest, SubscribeEventsResponse } from "@cairn/client";
import * as grpc from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus as Serving, HealthClient } from "@cairn/client/gen/grpc/health/v1/health";
import http2 from "node:http2";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { rawServerStream } from "./support/raw-grpc.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let n = 0;
const uid = (p: string) => `${p}-${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  h = await startHarness({
    dbPoolMax: 2,
    poolWaitMs: 300,
    connectionIdleMs: 1_000,
    maxConnections: 20,
    streams: { maxStreams: 12, maxStreamsPerPrincipal: 6, bufferBytes: 16 * 1024, slowConsumerTimeoutMs: 1_000, memoryBytes: 64 * 1024 * 1024 },
  });
});
afterAll(async () => {
  await h?.stop();
});

const payload = (bytes: number) => ({ blob: "x".repeat(bytes) });

describe("stream counts", () => {
  it("a stream past the principal's bound is RESOURCE_EXHAUSTED TOO_MANY_STREAMS; closing one makes room", async () => {
    const open = Array.from({ length: 6 }, () => collect(h.client.traces.subscribeEvents({ traceId: uid("idle"), fromNow: true })));
    await waitFor("six streams open", async () => {
      const extra = collect(h.client.traces.subscribeEvents({ traceId: uid("extra"), fromNow: true }));
      await waitFor("the extra stream to end", () => extra.error !== undefined || extra.messages.length > 0, 5_000).catch(() => {});
      const refused = extra.error?.code === grpc.status.RESOURCE_EXHAUSTED;
      extra.cancel();
      if (refused) {
        const info = errorDetails(extra.error as grpc.ServiceError).errorInfo;
        expect(info).toMatchObject({ reason: "TOO_MANY_STREAMS", metadata: { scope: "principal", limit: "6" } });
      }
      return refused;
    });
    open[0]!.cancel();
    await waitFor("room for one more", async () => {
      const again = collect(h.client.keyValue.watch({ prefix: uid("w") }));
      await new Promise((r) => setTimeout(r, 200));
      const ok = again.error === undefined;
      again.cancel();
      return ok;
    });
    for (const s of open) s.cancel();
  });
});

describe("slow consumers", () => {
  const offsetsOf = (messages: Buffer[]) =>
    messages
      .map((m) => SubscribeEventsResponse.decode(m).message)
      .filter((m) => m?.$case === "event")
      .map((m) => (m as { value: { offset: number } }).value.offset);

  it("a stream that is not read stops at its byte bound, ends SLOW_CONSUMER with resume_offset, and resuming there loses nothing", async () => {
    const trace = uid("slow");
    const request = SubscribeEventsRequest.encode(SubscribeEventsRequest.fromPartial({ traceId: trace, startOffset: 1 })).finish();
    const raw = rawServerStream(h.daemon.address, "/cairn.v1.TraceEventService/SubscribeEvents", request);
    raw.pause();
    const appended: number[] = [];
    for (let i = 0; i < 10; i++) {
      const events = Array.from({ length: 5 }, () => ({ traceId: trace, eventType: "big", payload: payload(16 * 1024) }));
      const { results } = await h.client.traces.appendEvents({ events });
      appended.push(...results.map((r) => r.offset));
    }
    // Nothing read for longer than the slow-consumer timeout: the server gives up on the stream.
    await waitFor("the server to end the stream", () => (h.daemon.openStreams().get("SubscribeEvents") ?? 0) === 0, 5_000);
    raw.resume();
    const trailers = await raw.status;
    raw.close();
    expect(trailers["grpc-status"]).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
    const info = detailsOf(trailers);
    expect(info.reason).toBe("SLOW_CONSUMER");
    const seen = offsetsOf(raw.messages);
    // The bound held most events back: only about a buffer's worth was written.
    expect(seen.length).toBeLessThan(appended.length / 2);
    const resumeAt = Number(info.metadata.resume_offset);
    expect(resumeAt).toBeLessThanOrEqual((seen.at(-1) ?? 0) + 1);
    const rest = collect(h.client.traces.subscribeEvents({ traceId: trace, startOffset: resumeAt }));
    const wanted = appended.filter((o) => o >= resumeAt).length;
    await rest.until("the rest", (m) => m.filter((x) => x.message?.$case === "event").length >= wanted);
    rest.cancel();
    const resumed = rest.messages.filter((m) => m.message?.$case === "event").map((m) => (m.message as { value: { offset: number } }).value.offset);
    expect([...new Set([...seen, ...resumed])].sort((a, b) => a - b)).toEqual(appended);
  });

  it("a client that drains nothing, not even its status, is reset after a second period", async () => {
    const trace = uid("stuck");
    const request = SubscribeEventsRequest.encode(SubscribeEventsRequest.fromPartial({ traceId: trace, startOffset: 1 })).finish();
    const raw = rawServerStream(h.daemon.address, "/cairn.v1.TraceEventService/SubscribeEvents", request);
    raw.pause();
    const events = Array.from({ length: 8 }, () => ({ traceId: trace, eventType: "big", payload: payload(16 * 1024) }));
    await h.client.traces.appendEvents({ events });
    await expect(raw.status).rejects.toThrow(/without a status/);
    raw.close();
  });
});

function detailsOf(trailers: http2.IncomingHttpHeaders) {
  const status = Status.decode(Buffer.from(String(trailers["grpc-status-details-bin"]), "base64"));
  const any = status.details.find((d) => d.typeUrl.endsWith("google.rpc.ErrorInfo"))!;
  return ErrorInfo.decode(any.value);
}

describe("overload is not an outage", () => {
  it("with every pool connection busy a call waits CAIRN_POOL_WAIT_MS, then RESOURCE_EXHAUSTED OVERLOADED; health stays SERVING", async () => {
    const a = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const b = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const locker = await h.sql.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT 1 FROM sessions WHERE session_id = ANY ($1) FOR UPDATE", [[a.sessionId, b.sessionId]]);
      // Each append waits on its session's row lock, holding one of the pool's two connections.
      const blocked = [a, b].map((s) => h.client.sessions.appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: "hi" }] }));
      await waitFor("both pool connections busy", async () => {
        const waiting = await h.sql.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()");
        return waiting.rows[0].n >= 2;
      });
      const f = await failure(h.client.sessions.getSession({ sessionId: a.sessionId }));
      expect(f).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, reason: "OVERLOADED" });
      const health = new HealthClient(h.daemon.address, grpc.credentials.createInsecure());
      const status = await new Promise<Serving>((resolve, reject) => health.check({ service: "" }, (e, r) => (e ? reject(e) : resolve(r.status))));
      health.close();
      expect(status).toBe(Serving.SERVING);
      await locker.query("COMMIT");
      await Promise.all(blocked);
    } finally {
      await locker.query("ROLLBACK").catch(() => {});
      locker.release();
    }
  });
});

describe("connections", () => {
  it("an idle connection is closed after CAIRN_CONNECTION_IDLE_MS", async () => {
    const [host, port] = [h.daemon.address.slice(0, h.daemon.address.lastIndexOf(":")), h.daemon.address.split(":").pop()];
    const session = http2.connect(`http://${host}:${port}`);
    session.on("error", () => {});
    const started = Date.now();
    await new Promise<void>((resolve) => session.once("close", () => resolve()));
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("connections past CAIRN_MAX_CONNECTIONS are refused at accept", async () => {
    const port = Number(h.daemon.address.split(":").pop());
    const sockets: net.Socket[] = [];
    const closed = new Set<net.Socket>();
    try {
      for (let i = 0; i < 25; i++) {
        const s = net.connect(port, "127.0.0.1");
        s.on("error", () => {});
        s.on("close", () => closed.add(s));
        sockets.push(s);
      }
      await waitFor("the extra sockets closed", () => closed.size >= 5, 5_000);
      expect(sockets.length - closed.size).toBeLessThanOrEqual(20);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});

describe("every error carries its details", () => {
  it("health's NOT_FOUND for an unknown service has ErrorInfo", async () => {
    const health = new HealthClient(h.daemon.address, grpc.credentials.createInsecure());
    const error = await new Promise<grpc.ServiceError>((resolve) => health.check({ service: "no.such.Service" }, (e) => resolve(e!)));
    health.close();
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(errorDetails(error).errorInfo).toMatchObject({ reason: "NOT_FOUND", domain: "cairn.v1" });
  });

  it("an oversized request is RESOURCE_EXHAUSTED with ErrorInfo MESSAGE_TOO_LARGE", async () => {
    const small = await startHarness({ limits: { maxMessageBytes: 64 * 1024 } as never });
    try {
      const f = await failure(small.client.keyValue.put({ entry: { key: "big", value: { $case: "bytesValue", value: Buffer.alloc(100 * 1024) } } }));
      expect(f).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, reason: "MESSAGE_TOO_LARGE" });
    } finally {
      await small.stop();
    }
  });

  it("at most 20 field violations travel, with violation_count holding the total", async () => {
    const requests = Array.from({ length: 300 }, () => ({ entry: { key: "same", value: { $case: "jsonValue" as const, value: 1 } } }));
    const f = await failure(h.client.keyValue.batchPut({ requests }));
    expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(f.fields).toHaveLength(20);
    expect(f.metadata.violation_count).toBe("299");
  });
});

describe("undecodable requests", () => {
  const raw = () => new grpc.Client(h.daemon.address, grpc.credentials.createInsecure());
  const call = (client: grpc.Client, path: string, bytes: Buffer) =>
    new Promise<grpc.ServiceError | undefined>((resolve) =>
      client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, bytes, (e) => resolve(e ?? undefined)),
    );

  it("an int64 beyond 2^53 is INVALID_ARGUMENT naming the field, not INTERNAL", async () => {
    const client = raw();
    // IncrementRequest{key: "k" (1), delta: 2^63-1 (2)}
    const bytes = Buffer.from([0x0a, 0x01, 0x6b, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    const e = await call(client, "/cairn.v1.KeyValueService/Increment", bytes);
    client.close();
    expect(e!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(errorDetails(e!).badRequest!.fieldViolations.map((v) => v.field)).toEqual(["delta"]);
  });

  it("invalid UTF-8 in a string is refused naming the field, not replaced", async () => {
    const client = raw();
    // GetRequest{key: 0xC3 0x28}
    const e = await call(client, "/cairn.v1.KeyValueService/Get", Buffer.from([0x0a, 0x02, 0xc3, 0x28]));
    client.close();
    expect(e!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(errorDetails(e!).badRequest!.fieldViolations.map((v) => v.field)).toEqual(["key"]);
  });

  it("bytes that are not protobuf at all are INVALID_ARGUMENT", async () => {
    const client = raw();
    const e = await call(client, "/cairn.v1.SessionService/GetSession", Buffer.from([0x0a, 0xff, 0xff, 0xff]));
    client.close();
    expect(e!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(errorDetails(e!).errorInfo?.reason).toBe("INVALID_ARGUMENT");
  });
});

it("the client keeps working with its own connection after all this", async () => {
  const client = new CairnClient(h.daemon.address);
  await client.sessions.createSession({ session: { agentId: "after" } });
  client.close();
});
