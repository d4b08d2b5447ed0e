// Tracing against a real OTLP/HTTP receiver started here: a call's span
// continues the caller's `traceparent` and its SQL statements are its
// children; no endpoint (or tracing switched off) exports nothing. The
// OTEL_* settings go through Config.otel, not process.env, so this file
// does not change the environment of the other test files.
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { MAX_STATEMENT_CHARS, startTracing } from "../src/ops/tracing.js";
import { failure, startHarness } from "./support/harness.js";

// ---- a minimal OTLP receiver: POST /v1/traces, protobuf ExportTraceServiceRequest ----

interface Field {
  no: number;
  wire: number;
  bytes?: Buffer;
  int?: bigint;
}

/** The fields of one protobuf message (wire types 0, 1, 2 and 5). */
function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const byte = buf[at++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
    }
  };
  while (at < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ no, wire, int: varint() });
    else if (wire === 1) {
      out.push({ no, wire, int: buf.readBigUInt64LE(at) });
      at += 8;
    } else if (wire === 2) {
      const length = Number(varint());
      out.push({ no, wire, bytes: buf.subarray(at, at + length) });
      at += length;
    } else if (wire === 5) {
      out.push({ no, wire, int: BigInt(buf.readUInt32LE(at)) });
      at += 4;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

const all = (fs: Field[], no: number) => fs.filter((f) => f.no === no);
const one = (fs: Field[], no: number) => fs.find((f) => f.no === no);

type AttributeValue = string | boolean | number | undefined;

/** KeyValue list → object (string, bool, int and double values). */
function attributes(kvs: Field[]): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of kvs) {
    const f = fields(kv.bytes!);
    const key = one(f, 1)!.bytes!.toString();
    const value = one(f, 2) ? fields(one(f, 2)!.bytes!) : [];
    const v = value[0];
    out[key] =
      v === undefined
        ? undefined
        : v.no === 1
          ? v.bytes!.toString()
          : v.no === 2
            ? v.int === 1n
            : v.no === 3
              ? Number(BigInt.asIntN(64, v.int!))
              : v.no === 4
                ? Buffer.from(BigInt.asUintN(64, v.int!).toString(16).padStart(16, "0"), "hex").readDoubleBE()
                : undefined;
  }
  return out;
}

interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, AttributeValue>;
  statusCode: number;
  resource: Record<string, AttributeValue>;
}

function decodeRequest(body: Buffer): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const rs of all(fields(body), 1)) {
    const rsf = fields(rs.bytes!);
    const resource = one(rsf, 1) ? attributes(all(fields(one(rsf, 1)!.bytes!), 1)) : {};
    for (const ss of all(rsf, 2)) {
      for (const s of all(fields(ss.bytes!), 2)) {
        const f = fields(s.bytes!);
        const hex = (no: number) => one(f, no)?.bytes?.toString("hex") ?? "";
        const status = one(f, 15) ? fields(one(f, 15)!.bytes!) : [];
        spans.push({
          traceId: hex(1),
          spanId: hex(2),
          parentSpanId: hex(4),
          name: one(f, 5)!.bytes!.toString(),
          kind: Number(one(f, 6)?.int ?? 0n),
          attributes: attributes(all(f, 9)),
          statusCode: Number(one(status, 3)?.int ?? 0n),
          resource,
        });
      }
    }
  }
  return spans;
}

interface Receiver {
  endpoint: string;
  paths: string[];
  bodies: Buffer[];
  spans: ReceivedSpan[];
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const received: Omit<Receiver, "endpoint" | "close"> = { paths: [], bodies: [], spans: [] };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      received.paths.push(`${req.method} ${req.url} ${req.headers["content-type"]}`);
      received.bodies.push(body);
      received.spans.push(...decodeRequest(body));
      // An empty ExportTraceServiceResponse: everything accepted.
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    ...received,
    endpoint: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// ---- tests ----

let receiver: Receiver;
beforeAll(async () => {
  receiver = await startReceiver();
});
afterAll(async () => {
  await receiver?.close();
});

const hex = (bytes: number) => randomBytes(bytes).toString("hex");
const withTraceparent = (traceId: string, parentId: string) => {
  const metadata = new grpc.Metadata();
  metadata.set("traceparent", `00-${traceId}-${parentId}-01`);
  return metadata;
};

it("a call's span continues the caller's traceparent; its SQL statements are child spans without values", async () => {
  const h = await startHarness({ otel: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_SERVICE_NAME: "cairn-under-test" } });
  // Client data that must appear in no span: the agent id, state and labels.
  const secret = `secret-${hex(8)}`;
  const traceId = hex(16);
  const parentId = hex(8);
  let sessionId: string;
  const otherTraceId = hex(16);
  try {
    const created = await h.client.sessions.createSession(
      { requestId: `req-${hex(4)}`, session: { agentId: secret, state: { secret }, labels: { k: secret } } },
      { metadata: withTraceparent(traceId, parentId) },
    );
    sessionId = created.sessionId;
    await h.client.sessions.getSession({ sessionId }, { metadata: withTraceparent(traceId, parentId) });
    // A caller's mistake: the span records the code but is not an error span.
    expect((await failure(h.client.sessions.getSession({ sessionId: "0".repeat(8) }, { metadata: withTraceparent(otherTraceId, parentId) }))).code).not.toBe(
      grpc.status.OK,
    );
    // No traceparent: a new trace, with no parent.
    await h.client.sessions.getSession({ sessionId });
  } finally {
    // Stopping the daemon shuts the tracer provider down, which exports what it buffered.
    await h.stop();
  }

  expect(receiver.paths.length).toBeGreaterThan(0);
  for (const p of receiver.paths) expect(p).toBe("POST /v1/traces application/x-protobuf");
  for (const body of receiver.bodies) expect(body.includes(secret)).toBe(false);

  const calls = receiver.spans.filter((s) => s.traceId === traceId && s.kind === 2 /* SERVER */);
  expect(calls.map((s) => s.name).sort()).toEqual(["cairn.v1.SessionService/CreateSession", "cairn.v1.SessionService/GetSession"]);
  for (const call of calls) {
    expect(call.parentSpanId).toBe(parentId);
    expect(call.attributes).toMatchObject({ "rpc.system.name": "grpc", "rpc.method": call.name, "rpc.status_code": "OK" });
    expect(call.resource["service.name"]).toBe("cairn-under-test");
    expect(call.statusCode).toBe(0); // unset

    const statements = receiver.spans.filter((s) => s.parentSpanId === call.spanId);
    expect(statements.length).toBeGreaterThan(0);
    for (const sql of statements) {
      expect(sql.traceId).toBe(traceId);
      expect(sql.kind).toBe(3); // CLIENT
      expect(sql.attributes["db.system.name"]).toBe("postgresql");
      const text = sql.attributes["db.query.text"];
      expect(typeof text).toBe("string");
      expect((text as string).length).toBeLessThanOrEqual(MAX_STATEMENT_CHARS + 1);
    }
  }
  // The create writes in a transaction: its BEGIN and COMMIT are statements of the call too.
  const create = calls.find((s) => s.name.endsWith("/CreateSession"))!;
  const createStatements = receiver.spans.filter((s) => s.parentSpanId === create.spanId).map((s) => s.attributes["db.query.text"]);
  expect(createStatements).toContain("BEGIN");
  expect(createStatements).toContain("COMMIT");
  expect(createStatements.some((t) => /INSERT/i.test(String(t)))).toBe(true);

  const notFound = receiver.spans.find((s) => s.traceId === otherTraceId && s.kind === 2)!;
  expect(notFound.parentSpanId).toBe(parentId);
  expect(notFound.attributes["rpc.status_code"]).toBe("NOT_FOUND");
  expect(notFound.statusCode).toBe(0);

  const roots = receiver.spans.filter((s) => s.kind === 2 && s.traceId !== traceId && s.traceId !== otherTraceId);
  expect(roots).toHaveLength(1);
  expect(roots[0]!.parentSpanId).toBe("");
  expect(receiver.spans.filter((s) => s.parentSpanId === roots[0]!.spanId).length).toBeGreaterThan(0);
});

it("without an OTLP endpoint, or with tracing switched off, nothing is traced or exported", async () => {
  const log = createLogger("silent");
  expect(await startTracing({}, log)).toBeUndefined();
  expect(await startTracing({ OTEL_SERVICE_NAME: "cairn", OTEL_TRACES_SAMPLER: "always_on" }, log)).toBeUndefined();

  const before = receiver.bodies.length;
  const switchedOff: Record<string, string>[] = [{ OTEL_SDK_DISABLED: "true" }, { OTEL_TRACES_EXPORTER: "none" }];
  for (const off of switchedOff) {
    const h = await startHarness({ otel: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, ...off } });
    try {
      const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "untraced" } }, { metadata: withTraceparent(hex(16), hex(8)) });
      await h.client.sessions.getSession({ sessionId }, { metadata: withTraceparent(hex(16), hex(8)) });
    } finally {
      await h.stop();
    }
  }
  // The harness's own config (no OTEL_* at all): the daemon runs untraced.
  const plain = await startHarness();
  try {
    await plain.client.sessions.createSession({ session: { agentId: "untraced" } }, { metadata: withTraceparent(hex(16), hex(8)) });
  } finally {
    await plain.stop();
  }
  expect(receiver.bodies.length).toBe(before);
});

it("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as given", async () => {
  const h = await startHarness({ otel: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.endpoint}/custom/traces` } });
  const traceId = hex(16);
  try {
    await h.client.sessions.createSession({ session: { agentId: "traced" } }, { metadata: withTraceparent(traceId, hex(8)) });
  } finally {
    await h.stop();
  }
  expect(receiver.paths).toContain("POST /custom/traces application/x-protobuf");
  expect(receiver.spans.some((s) => s.traceId === traceId && s.name === "cairn.v1.SessionService/CreateSession")).toBe(true);
});
