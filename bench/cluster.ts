// CAIRN_PROCESSES: the same load against one daemon process, then against
// two on the same port (cluster.ts), in one run: GetSession, KV Put and
// UpdateSession at concurrency 64, over 8 connections (the primary hands out
// connections, not calls, so one connection would use one process). Each
// daemon gets CAIRN_DB_POOL_MAX=20, divided between its processes.
//
// Besides calls/s, the CPU each side used while measured: the daemon's
// processes (primary and workers, from /proc), PostgreSQL's backends serving
// them (when PostgreSQL runs on this machine), the benchmark's own, and the
// whole machine's (anything else running included).
// On a 2-core machine the client, PostgreSQL and the daemon share the two
// cores, so two processes cannot double anything here; the CPU columns say
// which resource ran out, and the daemon's CPU per call what one core of
// daemon serves.
import { CairnClient } from "@cairn/client";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "../src/db/embedded.js";
import { PROJECT_ROOT } from "../src/paths.js";
import { startBenchEnvironment } from "./environment.js";
import { cpuSeconds, formatTable, measure, type Op, type Result, TICKS_PER_SECOND } from "./measure.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONCURRENCY = 64;
const CONNECTIONS = 8;
const POOL_MAX = 20;
const SESSIONS = 1000;

const state = (i: number) => ({ step: i, memory: { goal: "benchmark", notes: ["a", "b", "c"] } });

interface Daemon {
  pid: number;
  address: string;
  close(): Promise<void>;
}

/**
 * A daemon of `processes` processes, once all of them serve (the primary
 * says so in its "cairn serving" line; a connection opened before a worker
 * listens would stay with the others).
 */
async function startDaemon(databaseUrl: string, processes: number): Promise<Daemon> {
  const address = `127.0.0.1:${await freePort()}`;
  const child: ChildProcess = spawn(process.execPath, [join(PROJECT_ROOT, "dist/src/main.js"), "serve"], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      CAIRN_LISTEN: address,
      CAIRN_PROCESSES: String(processes),
      CAIRN_DB_POOL_MAX: String(POOL_MAX),
      CAIRN_METRICS_LISTEN: "",
      CAIRN_LOG_LEVEL: process.env.CAIRN_BENCH_LOG_LEVEL ?? "info",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    let seen = "";
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const line = seen.split("\n").find((l) => l.includes('"msg":"cairn serving"') && (processes === 1 || l.includes('"processes"')));
      if (!line) return;
      // From here on the call lines go nowhere, as in the other benchmarks.
      child.stdout!.off("data", onData).resume();
      resolve();
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`cairn (${processes} processes) exited with ${code} before serving`)));
  });
  return {
    pid: child.pid!,
    address,
    async close() {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

/** CPU seconds used so far by a process and its children (the workers). */
function processTreeCpuSeconds(pid: number): number {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number);
  return [pid, ...children].reduce((sum, p) => sum + cpuSeconds(p), 0);
}

/**
 * CPU seconds used so far by each PostgreSQL backend of the benchmark's
 * database (the daemon's connections), when PostgreSQL runs on this machine.
 */
async function backendCpuSeconds(sql: pg.Client): Promise<Map<number, number>> {
  const { rows } = await sql.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
  return new Map(rows.map((r) => [r.pid, cpuSeconds(r.pid)]));
}

/** Busy and total CPU seconds of the whole machine so far (/proc/stat). */
function machineCpuSeconds(): { busy: number; total: number } {
  const values = readFileSync("/proc/stat", "utf8").split("\n")[0]!.split(/\s+/).slice(1).map(Number);
  const total = values.reduce((a, b) => a + b, 0);
  const idle = values[3]! + values[4]!;
  return { busy: (total - idle) / TICKS_PER_SECOND, total: total / TICKS_PER_SECOND };
}

interface Measured {
  result: Result;
  /** Cores' worth of CPU used while measured. */
  daemonCores: number;
  postgresCores: number;
  benchCores: number;
  machineBusy: number;
}

async function measureWithCpu(daemonPid: number, sql: pg.Client, op: Op): Promise<Measured> {
  await measure(CONCURRENCY, 0.5, op);
  const backends0 = await backendCpuSeconds(sql);
  const daemon0 = processTreeCpuSeconds(daemonPid);
  const bench0 = process.cpuUsage();
  const machine0 = machineCpuSeconds();
  const started = performance.now();
  const result = await measure(CONCURRENCY, SECONDS, op);
  const elapsed = (performance.now() - started) / 1000;
  const bench = process.cpuUsage(bench0);
  const machine1 = machineCpuSeconds();
  const daemon1 = processTreeCpuSeconds(daemonPid);
  let postgres = 0;
  for (const [pid, seconds] of await backendCpuSeconds(sql)) postgres += seconds - (backends0.get(pid) ?? 0);
  return {
    result,
    daemonCores: (daemon1 - daemon0) / elapsed,
    postgresCores: postgres / elapsed,
    benchCores: (bench.user + bench.system) / 1e6 / elapsed,
    machineBusy: (machine1.busy - machine0.busy) / (machine1.total - machine0.total),
  };
}

async function runLoads(daemon: Daemon, sql: pg.Client, sessionIds: string[]): Promise<Map<string, Measured>> {
  const clients = Array.from({ length: CONNECTIONS }, () => new CairnClient(daemon.address, { channelOptions: { "grpc.use_local_subchannel_pool": 1 } }));
  const client = (w: number) => clients[w % CONNECTIONS]!;
  const loads: [string, Op][] = [
    ["GetSession", (w, i) => client(w).sessions.getSession({ sessionId: sessionIds[(w * 7919 + i * 31) % sessionIds.length]! })],
    ["KV Put", (w, i) => client(w).keyValue.put({ entry: { key: `bench-cluster/${w}/${i % 8}`, value: { $case: "jsonValue", value: state(i) } } })],
    ["UpdateSession", (w, i) => client(w).sessions.updateSession({ session: { sessionId: sessionIds[w]!, state: state(i) }, updateMask: ["state"] })],
  ];
  const measured = new Map<string, Measured>();
  try {
    for (const [name, op] of loads) measured.set(name, await measureWithCpu(daemon.pid, sql, op));
  } finally {
    for (const c of clients) c.close();
  }
  return measured;
}

export async function benchCluster(): Promise<void> {
  // The environment's own daemon creates the sessions, then idles.
  const env = await startBenchEnvironment(POOL_MAX);
  const seeding = new CairnClient(env.cairnAddress);
  const { sessions } = await seeding.sessions.batchCreateSessions({
    requests: Array.from({ length: SESSIONS }, () => ({ session: { agentId: "bench", state: state(0) } })),
  });
  seeding.close();
  const sessionIds = sessions.map((s) => s.sessionId);
  const runs: Map<string, Measured>[] = [];
  const sql = new pg.Client({ connectionString: env.databaseUrl });
  await sql.connect();
  try {
    for (const processes of [1, 2]) {
      const daemon = await startDaemon(env.databaseUrl, processes);
      try {
        runs.push(await runLoads(daemon, sql, sessionIds));
      } finally {
        await daemon.close();
      }
    }
  } finally {
    await sql.end();
    await env.close();
  }
  const rows = [["method (c=64)", "procs", "calls/s", "p50 ms", "p99 ms", "daemon cores", "CPU ms/call", "pg cores", "bench cores", "machine busy", "2/1"]];
  for (const name of runs[0]!.keys()) {
    const [one, two] = [runs[0]!.get(name)!, runs[1]!.get(name)!];
    runs.forEach((run, i) => {
      const m = run.get(name)!;
      if (m.result.errors) console.error(`${name} with ${i + 1} processes: ${m.result.errors} errors`);
      rows.push([
        name,
        String(i + 1),
        m.result.callsPerSecond.toFixed(0),
        m.result.p50Ms.toFixed(2),
        m.result.p99Ms.toFixed(2),
        m.daemonCores.toFixed(2),
        ((1000 * m.daemonCores) / m.result.callsPerSecond).toFixed(2),
        m.postgresCores.toFixed(2),
        m.benchCores.toFixed(2),
        `${(100 * m.machineBusy).toFixed(0)}%`,
        i === 1 ? `${(two.result.callsPerSecond / one.result.callsPerSecond).toFixed(2)}x` : "",
      ]);
    });
  }
  console.log(`\none process against two (${SECONDS} s per cell, ${CONNECTIONS} connections, pool ${POOL_MAX} in all, node ${process.version})\n`);
  console.log(formatTable(rows));
}
