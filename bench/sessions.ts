// CreateSession, GetSession and UpdateSession over gRPC against the same
// SQL (the session store's own functions) on a raw pg pool of the same size, in one run.
// The raw side runs one statement per call; Cairn coalesces the GetSession
// and UpdateSession calls that arrive together into one statement, which is
// part of what is measured. Then the cost of authentication: the same
// daemon with TLS and a bearer token against plaintext without auth
// (BENCH_AUTH=0 skips it). Then the cost of the metrics: the same daemon with
// the operations endpoint off and on (BENCH_METRICS=0 skips it).
import { CairnClient } from "@cairn/client";
import { credentials } from "@grpc/grpc-js";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { v7 as uuidv7 } from "uuid";
import { TestCa } from "../test/support/certs.js";
import { Database } from "../src/db/database.js";
import { createPool } from "../src/db/pool.js";
import { applyUpdates, createSessions, readSessionKeys } from "../src/sessions/store.js";
import { performance } from "node:perf_hooks";
import { GrpcServerMetrics } from "../src/ops/metrics.js";
import { startBenchEnvironment } from "./environment.js";
import { compare, formatTable, measure } from "./measure.js";

const CONCURRENCIES = [1, 16, 64];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const SEED_SESSIONS = 2000;

interface Target {
  create(worker: number, i: number): Promise<unknown>;
  get(worker: number, i: number): Promise<unknown>;
  update(worker: number, i: number): Promise<unknown>;
}

const state = (i: number) => ({ step: i, memory: { goal: "benchmark", notes: ["a", "b", "c"] } });

export async function benchSessions(): Promise<void> {
  const env = await startBenchEnvironment();
  const client = new CairnClient(env.cairnAddress);
  const pool = createPool({ connectionString: env.databaseUrl, max: env.poolMax, statementTimeoutMs: 30_000 });
  const q = new Database(pool).on({});
  try {
    const { sessions } = await client.sessions.batchCreateSessions({
      requests: Array.from({ length: 1000 }, () => ({ session: { agentId: "bench", state: state(0) } })),
    });
    const more = await client.sessions.batchCreateSessions({
      requests: Array.from({ length: SEED_SESSIONS - 1000 }, () => ({ session: { agentId: "bench", state: state(0) } })),
    });
    const ids = [...sessions, ...more.sessions].map((s) => s.sessionId);
    const pick = (worker: number, i: number) => ids[(worker * 7919 + i * 31) % ids.length]!;
    // Each worker updates sessions of its own, so updates never conflict.
    const own = (worker: number, i: number) => ids[(worker * 64 + (i % 16)) % ids.length]!;

    const cairn: Target = {
      create: () => client.sessions.createSession({ session: { agentId: "bench", labels: { kind: "bench" }, state: state(0) } }),
      get: (w, i) => client.sessions.getSession({ sessionId: pick(w, i) }),
      update: (w, i) => client.sessions.updateSession({ session: { sessionId: own(w, i), state: state(i) }, updateMask: ["state"] }),
    };
    const raw: Target = {
      create: () =>
        createSessions(q, "default", [
          {
            session: { sessionId: uuidv7(), agentId: "bench", userId: "", status: "ACTIVE", labels: { kind: "bench" }, metadata: null, state: state(0) },
            idempotency: null,
          },
        ]),
      // The statements GetSession and UpdateSession run, once per call.
      get: (w, i) => readSessionKeys(q, [{ ns: "default", sessionId: pick(w, i) }]),
      update: (w, i) => applyUpdates(q, [{ ns: "default", sessionId: own(w, i), patch: { state: state(i) }, expectedVersion: undefined }]),
    };

    const rows = await compare(
      [
        ["CreateSession", cairn.create, raw.create],
        ["GetSession", cairn.get, raw.get],
        ["UpdateSession", cairn.update, raw.update],
      ],
      CONCURRENCIES,
      SECONDS,
    );
    console.log(`\nsessions benchmark (${SECONDS} s per cell, pool ${env.poolMax}, node ${process.version})\n`);
    console.log(formatTable(rows));
  } finally {
    client.close();
    await pool.end();
    await env.close();
  }
  if (process.env.BENCH_AUTH !== "0") await benchAuthenticated();
  if (process.env.BENCH_METRICS !== "0") await benchMetrics();
}

/**
 * What the metrics cost on the hot path: GetSession at concurrency 64 on a
 * daemon with CAIRN_METRICS_LISTEN="" (off) and on one with it on (port 0
 * rather than the default 9464, so that nothing else on the machine can
 * make the start fail; the code path is the same). Both daemons stay up and
 * the rounds alternate, so that drift of the machine falls on both sides.
 */
export async function benchMetrics(): Promise<void> {
  const ROUNDS = Number(process.env.BENCH_METRICS_ROUNDS ?? 3);
  const off = await startBenchEnvironment(20, { CAIRN_METRICS_LISTEN: "" });
  const on = await startBenchEnvironment(20, { CAIRN_METRICS_LISTEN: "127.0.0.1:0" });
  const prepare = async (env: Awaited<ReturnType<typeof startBenchEnvironment>>) => {
    const client = new CairnClient(env.cairnAddress);
    const { sessions } = await client.sessions.batchCreateSessions({
      requests: Array.from({ length: 1000 }, () => ({ session: { agentId: "bench", state: state(0) } })),
    });
    const ids = sessions.map((s) => s.sessionId);
    const get = (w: number, i: number) => client.sessions.getSession({ sessionId: ids[(w * 7919 + i * 31) % ids.length]! });
    await measure(64, 0.5, get);
    return { client, get };
  };
  const a = await prepare(off);
  const b = await prepare(on);
  const totals = { off: 0, on: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    totals.off += (await measure(64, SECONDS, a.get)).callsPerSecond / ROUNDS;
    totals.on += (await measure(64, SECONDS, b.get)).callsPerSecond / ROUNDS;
  }
  for (const [env, side] of [
    [off, a],
    [on, b],
  ] as const) {
    side.client.close();
    await env.close();
  }
  console.log(`\nmetrics at concurrency 64 (${ROUNDS} alternating rounds of ${SECONDS} s): CAIRN_METRICS_LISTEN="" vs on\n`);
  console.log(
    formatTable([
      ["method", "off calls/s", "on calls/s", "cost"],
      ["GetSession", totals.off.toFixed(0), totals.on.toFixed(0), `${((100 * (totals.off - totals.on)) / totals.off).toFixed(1)}%`],
    ]),
  );
  // On a busy machine the difference above is mostly noise; this bounds the
  // cost from below the noise: the work the interceptor adds to one call,
  // times the calls per second, is the share of the daemon's one JS thread
  // that the metrics take at that throughput.
  const grpcMetrics = new GrpcServerMetrics();
  const N = 2_000_000;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const record = grpcMetrics.method("/cairn.v1.SessionService/GetSession", false, false);
    record.started++;
    record.handle(0, (i % 100) / 10_000);
  }
  const ns = ((performance.now() - t0) * 1e6) / N;
  console.log(`\nmetrics work per call: ${ns.toFixed(0)} ns; at ${totals.off.toFixed(0)} calls/s that is ${((ns * totals.off) / 1e7).toFixed(3)}% of one thread`);
}

/**
 * What authentication costs: GetSession and CreateSession at concurrency 64
 * on a plaintext daemon without an auth file, then on one with TLS and a
 * bearer token (each call's token hashed and checked, its role looked up).
 */
async function benchAuthenticated(): Promise<void> {
  const ca = new TestCa();
  const server = ca.issue("server", "/CN=cairn-bench", "server");
  const token = "bench-token";
  const authFile = join(ca.dir, "auth.yaml");
  writeFileSync(
    authFile,
    `principals:\n  - name: bench\n    token_sha256: ${createHash("sha256").update(token).digest("hex")}\n    namespaces: {"*": admin}\n`,
  );
  const measureOn = async (env: Awaited<ReturnType<typeof startBenchEnvironment>>, client: CairnClient) => {
    const { sessions } = await client.sessions.batchCreateSessions({
      requests: Array.from({ length: 1000 }, () => ({ session: { agentId: "bench", state: state(0) } })),
    });
    const ids = sessions.map((s) => s.sessionId);
    const get = (w: number, i: number) => client.sessions.getSession({ sessionId: ids[(w * 7919 + i * 31) % ids.length]! });
    const create = () => client.sessions.createSession({ session: { agentId: "bench", state: state(0) } });
    await measure(64, 0.5, get);
    const g = await measure(64, SECONDS, get);
    const c = await measure(64, SECONDS, create);
    client.close();
    await env.close();
    return { get: g.callsPerSecond, create: c.callsPerSecond };
  };
  const plainEnv = await startBenchEnvironment();
  const plain = await measureOn(plainEnv, new CairnClient(plainEnv.cairnAddress));
  const secureEnv = await startBenchEnvironment(
    20,
    { CAIRN_AUTH_FILE: authFile, CAIRN_TLS_CERT_FILE: server.certFile, CAIRN_TLS_KEY_FILE: server.keyFile },
    credentials.createSsl(Buffer.from(ca.ca.cert)),
  );
  const secure = await measureOn(secureEnv, new CairnClient(secureEnv.cairnAddress, { token, tls: { ca: ca.ca.cert } }));
  const row = (name: string, a: number, b: number) => [name, a.toFixed(0), b.toFixed(0), `${((100 * (a - b)) / a).toFixed(1)}%`];
  console.log(`\nauthentication at concurrency 64 (${SECONDS} s per cell): plaintext without auth vs TLS + bearer token\n`);
  console.log(
    formatTable([
      ["method", "plain calls/s", "TLS+token calls/s", "cost"],
      row("GetSession", plain.get, secure.get),
      row("CreateSession", plain.create, secure.create),
    ]),
  );
}
