// The per-call log is accurate and carries no client data: one line per
// call with the status that actually left the server, CANCELLED for a
// stream the client cancelled, health and reflection at debug.
import { CairnClient } from "@cairn/client";
import { HealthClient } from "@cairn/client/gen/grpc/health/v1/health";
import * as grpc from "@grpc/grpc-js";
import { Writable } from "node:stream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { safeCause } from "../src/grpc/interceptor.js";
import { createLogger } from "../src/logger.js";
import { createTestDatabase, testConfig } from "./support/harness.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

interface Line {
  level: number;
  msg: string;
  method?: string;
  code?: string;
  reason?: string;
  principal?: string;
  namespace?: string;
}

const lines: Line[] = [];
let daemon: Daemon;
let client: CairnClient;
let drop: () => Promise<void>;

beforeAll(async () => {
  const database = await createTestDatabase();
  drop = database.drop;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString("utf8").split("\n").filter(Boolean)) lines.push(JSON.parse(text) as Line);
      done();
    },
  });
  daemon = await startDaemon(testConfig(database.url), createLogger("debug", sink));
  client = new CairnClient(daemon.address);
});
afterAll(async () => {
  client?.close();
  await daemon?.stop();
  await drop?.();
});

const callLines = (method: string) => lines.filter((l) => l.method === method);

it("a unary call is one info line with its code; a failed one names its reason", async () => {
  await client.sessions.createSession({ session: { agentId: "log" } });
  await client.sessions.getSession({ sessionId: "missing-one" }).catch(() => {});
  await waitFor("the lines", () => callLines("cairn.v1.SessionService/GetSession").length > 0);
  expect(callLines("cairn.v1.SessionService/CreateSession")).toMatchObject([{ level: 30, code: "OK" }]);
  expect(callLines("cairn.v1.SessionService/GetSession")).toMatchObject([{ level: 30, code: "NOT_FOUND", reason: "NOT_FOUND" }]);
});

it("a stream the client cancelled is logged CANCELLED, once", async () => {
  const stream = collect(client.traces.subscribeEvents({ traceId: "log-trace", fromNow: true }));
  await waitFor("the stream open", () => (daemon.openStreams().get("SubscribeEvents") ?? 0) === 1);
  stream.cancel();
  await waitFor("its line", () => callLines("cairn.v1.TraceEventService/SubscribeEvents").length > 0);
  await new Promise((r) => setTimeout(r, 100));
  expect(callLines("cairn.v1.TraceEventService/SubscribeEvents")).toMatchObject([{ code: "CANCELLED" }]);
});

it("health calls are logged at debug", async () => {
  const health = new HealthClient(daemon.address, grpc.credentials.createInsecure());
  await new Promise((resolve) => health.check({ service: "" }, resolve));
  health.close();
  await waitFor("its line", () => callLines("grpc.health.v1.Health/Check").length > 0);
  expect(callLines("grpc.health.v1.Health/Check").every((l) => l.level === 20)).toBe(true);
});

it("a database error is logged by its SQLSTATE and names, never its message, detail or context", () => {
  const pgError = Object.assign(new Error('duplicate key value violates unique constraint "x"'), {
    code: "23505",
    severity: "ERROR",
    detail: "Key (key)=(secret-customer-data) already exists.",
    where: "SQL statement with secret-customer-data",
    routine: "_bt_check_unique",
    constraint: "kv_entries_pkey",
  });
  const logged = JSON.stringify(safeCause(pgError));
  expect(logged).not.toContain("secret-customer-data");
  expect(JSON.parse(logged)).toMatchObject({ sqlstate: "23505", constraint: "kv_entries_pkey" });
});

it("the call line names principal and namespace, never the credentials", async () => {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", "Bearer secret-token-xyz");
  metadata.set("x-cairn-namespace", "team-log");
  await client.keyValue.list({}, { metadata });
  await waitFor("its line", () => callLines("cairn.v1.KeyValueService/List").length > 0);
  expect(callLines("cairn.v1.KeyValueService/List")).toMatchObject([{ principal: "anonymous", namespace: "team-log" }]);
  expect(JSON.stringify(lines)).not.toContain("secret-token-xyz");
});
