// CAIRN_PROCESSES: the built daemon (dist/, which `npm test` builds first)
// as a real process with two workers on one port. Calls over several connections are served by both workers (each
// call's log line carries its process id), /metrics sums them, a killed
// worker is replaced while the other serves on, SIGTERM stops them all and
// exits 0, and a port in use ends the start with exit code 1.
import { CairnClient } from "@cairn/client";
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../src/db/embedded.js";
import { createTestDatabase } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

const MAIN = new URL("../dist/src/main.js", import.meta.url).pathname;

interface Running {
  child: ChildProcess;
  output: () => string;
  /** The JSON log lines so far (lines of two processes may interleave; a broken one is skipped). */
  lines: () => Record<string, any>[];
  exited: Promise<number | null>;
}

function cairn(env: Record<string, string>): Running {
  const child = spawn(process.execPath, [MAIN, "serve"], {
    env: {
      ...process.env,
      CAIRN_PROCESSES: "2",
      CAIRN_METRICS_LISTEN: "127.0.0.1:0",
      CAIRN_LOG_LEVEL: "info",
      CAIRN_DB_POOL_MAX: "8",
      CAIRN_SHUTDOWN_GRACE_MS: "2000",
      CAIRN_HEALTH_CHECK_INTERVAL_MS: "200",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const lines = () =>
    output.split("\n").flatMap((line) => {
      try {
        return line.startsWith("{") ? [JSON.parse(line) as Record<string, any>] : [];
      } catch {
        return [];
      }
    });
  return { child, output: () => output, lines, exited };
}

/** Clients on connections of their own (grpc-js would otherwise share one connection among equal channels). */
function clients(address: string, count: number): CairnClient[] {
  return Array.from({ length: count }, () => new CairnClient(address, { channelOptions: { "grpc.use_local_subchannel_pool": 1 } }));
}

const soon = () => new Date(Date.now() + 5_000);

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("CAIRN_PROCESSES=2", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });

  it("serves from both workers, replaces a killed one, and stops all on SIGTERM", { timeout: 90_000 }, async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const daemon = cairn({ DATABASE_URL: database.url, CAIRN_LISTEN: address });
    try {
      await waitFor("cairn serving with 2 processes", () => daemon.lines().some((l) => l.msg === "cairn serving" && l.processes === 2), 60_000);
      const pids = daemon.lines().find((l) => l.processes === 2)!.pids as number[];
      expect(pids).toHaveLength(2);
      expect(pids).not.toContain(daemon.child.pid);
      const servedBy = () => new Set(daemon.lines().filter((l) => l.msg === "call" && l.method === "cairn.v1.SessionService/GetSession").map((l) => l.pid));

      const first = clients(address, 8);
      const { sessionId } = await first[0]!.sessions.createSession({ session: { agentId: "cluster" } });
      await first[0]!.jobs.enqueueJob({ job: { queue: "cluster-gauge" } });
      await Promise.all(first.flatMap((client) => Array.from({ length: 25 }, () => client.sessions.getSession({ sessionId }, { deadline: soon() }))));
      await waitFor("both workers' call lines", () => pids.every((pid) => servedBy().has(pid)));

      // One endpoint for the daemon: counters summed over the workers, readiness of all.
      const ops = daemon.lines().find((l) => l.msg?.startsWith("operations endpoint"))!.address as string;
      const metrics = await (await fetch(`http://${ops}/metrics`)).text();
      const handled = /grpc_server_handled_total\{[^}]*grpc_method="GetSession"[^}]*grpc_code="OK"[^}]*\} (\d+)/.exec(metrics);
      expect(Number(handled?.[1])).toBe(200);
      // Read from the database by one worker only: the job is counted once, not once per worker.
      const jobs = /cairn_jobs\{[^}]*queue="cluster-gauge"[^}]*state="available"[^}]*\} (\d+)/.exec(metrics) ?? /cairn_jobs\{[^}]*state="available"[^}]*queue="cluster-gauge"[^}]*\} (\d+)/.exec(metrics);
      expect(Number(jobs?.[1])).toBe(1);
      expect((await fetch(`http://${ops}/readyz`)).status).toBe(200);

      // A worker dies: once the primary has seen it, new connections go to the other, and it is replaced.
      // (A connection handed over in the very instant of the death is lost with the worker:
      // its client waits for its connect timeout, then connects again.)
      process.kill(pids[0]!, "SIGKILL");
      const exited = (l: Record<string, any>) => l.msg === "worker exited; starting another" && l.pid === pids[0] && l.signal === "SIGKILL";
      await waitFor("the primary to see the worker's end", () => daemon.lines().some(exited));
      const during = clients(address, 4);
      await Promise.all(during.map((client) => client.sessions.getSession({ sessionId }, { deadline: soon() })));
      await waitFor("a worker in place of the killed one", () => daemon.lines().some((l) => l.msg === "worker serving" && !pids.includes(l.pid)), 30_000);
      const replacement = daemon.lines().find((l) => l.msg === "worker serving" && !pids.includes(l.pid))!.pid as number;
      const after = clients(address, 8);
      await waitFor(
        "calls served by the replacement",
        async () => {
          await Promise.all(after.map((client) => client.sessions.getSession({ sessionId }, { deadline: soon() })));
          return servedBy().has(replacement);
        },
        20_000,
      );
      for (const client of [...first, ...during, ...after]) client.close();

      daemon.child.kill("SIGTERM");
      expect(await daemon.exited).toBe(0);
      expect([pids[1]!, replacement].filter(isRunning)).toEqual([]);
      expect(daemon.lines().filter((l) => l.msg === "stopped")).toHaveLength(3);
    } catch (error) {
      console.error(daemon.output().slice(-6000));
      throw error;
    } finally {
      daemon.child.kill("SIGKILL");
    }
  });

  it("exits 1 when the workers cannot listen (port in use) instead of restarting them for ever", { timeout: 90_000 }, async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as net.AddressInfo).port;
    const daemon = cairn({ DATABASE_URL: database.url, CAIRN_LISTEN: `127.0.0.1:${port}`, CAIRN_METRICS_LISTEN: "" });
    try {
      expect(await daemon.exited).toBe(1);
      expect(daemon.output()).toContain("EADDRINUSE");
      expect(daemon.output()).toContain("failed to start 5 times in a row");
    } finally {
      daemon.child.kill("SIGKILL");
      taken.close();
    }
  });
});
