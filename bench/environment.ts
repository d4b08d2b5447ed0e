// What every benchmark needs: a PostgreSQL (embedded in a scratch directory,
// or CAIRN_BENCH_DATABASE_URL), a fresh database on it, and a Cairn daemon as
// its own process, so that the server does not share the benchmark's thread.
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { HealthClient } from "@cairn/client/gen/grpc/health/v1/health";
import { type ChannelCredentials, credentials } from "@grpc/grpc-js";
import { freePort, startEmbeddedPostgres } from "../src/db/embedded.js";
import { migrate } from "../src/db/migrate.js";
import { createLogger } from "../src/logger.js";
import { PROJECT_ROOT } from "../src/paths.js";

export interface BenchEnvironment {
  databaseUrl: string;
  cairnAddress: string;
  poolMax: number;
  /** The daemon's process id (for its RSS). */
  pid: number;
  close(): Promise<void>;
}

async function waitServing(address: string, channel: ChannelCredentials): Promise<void> {
  const client = new HealthClient(address, channel);
  try {
    for (let i = 0; i < 600; i++) {
      const serving = await new Promise<boolean>((resolve) =>
        client.check({ service: "" }, (error, response) => resolve(!error && response.status === 1)),
      );
      if (serving) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`cairn at ${address} never became SERVING`);
  } finally {
    client.close();
  }
}

/**
 * `env`: more CAIRN_* settings for the daemon (a benchmark's own limits);
 * `channel`: how to reach it (TLS when the env turns TLS on).
 */
export async function startBenchEnvironment(
  poolMax = 20,
  env: Record<string, string> = {},
  channel: ChannelCredentials = credentials.createInsecure(),
): Promise<BenchEnvironment> {
  const log = createLogger("warn");
  let adminUrl = process.env.CAIRN_BENCH_DATABASE_URL;
  let stopEmbedded = async () => {};
  let scratch: string | undefined;
  if (!adminUrl) {
    scratch = mkdtempSync(join(tmpdir(), "cairn-bench-"));
    chmodSync(scratch, 0o755);
    const embedded = await startEmbeddedPostgres(join(scratch, "data"), 0, log);
    adminUrl = embedded.adminUrl;
    stopEmbedded = () => embedded.stop();
  }
  const dbName = `cairn_bench_${Date.now()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const databaseUrl = url.toString();
  await migrate(databaseUrl, log);

  const port = await freePort();
  const cairnAddress = `127.0.0.1:${port}`;
  const daemon: ChildProcess = spawn(process.execPath, [join(PROJECT_ROOT, "dist/src/main.js"), "serve"], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      CAIRN_LISTEN: cairnAddress,
      CAIRN_DB_POOL_MAX: String(poolMax),
      CAIRN_LOG_LEVEL: process.env.CAIRN_BENCH_LOG_LEVEL ?? "info",
      // Benchmarks start several daemons; one default metrics port would collide.
      CAIRN_METRICS_LISTEN: "127.0.0.1:0",
      ...env,
    },
    // The daemon logs a line per call, as in production; the lines go nowhere.
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitServing(cairnAddress, channel);
  return {
    databaseUrl,
    cairnAddress,
    poolMax,
    pid: daemon.pid!,
    async close() {
      daemon.kill("SIGTERM");
      await new Promise((r) => daemon.once("exit", r));
      await stopEmbedded();
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    },
  };
}
