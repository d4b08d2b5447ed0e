// Per-test-file fixtures: a fresh database on the run's PostgreSQL, a real
// daemon on a loopback port, and a @cairn/client connected to it.
import { CairnClient, errorDetails } from "@cairn/client";
import type { ServiceError } from "@grpc/grpc-js";
import pg from "pg";
import { randomBytes } from "node:crypto";
import { inject } from "vitest";
import { type Config, loadConfig } from "../../src/config.js";
import { type Daemon, startDaemon } from "../../src/daemon.js";
import { createLogger } from "../../src/logger.js";
import { TcpProxy } from "./tcp-proxy.js";

export function adminUrl(): string {
  return inject("adminUrl");
}

export function urlForDatabase(name: string): string {
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

/** Creates an empty database with a unique name; returns its URL and a dropper. */
export async function createTestDatabase(prefix = "cairn_test"): Promise<{ name: string; url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  // The name is generated above from hex digits; identifiers take no parameters.
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return {
    name,
    url: urlForDatabase(name),
    drop: async () => {
      const client = new pg.Client({ connectionString: adminUrl() });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/** A fresh database reached through a TCP proxy the test can cut: for database outages. */
export async function databaseBehindProxy(): Promise<{ database: Awaited<ReturnType<typeof createTestDatabase>>; proxy: TcpProxy; url: string }> {
  const database = await createTestDatabase();
  const target = new URL(database.url);
  const proxy = new TcpProxy(target.hostname, Number(target.port));
  await proxy.start();
  const url = new URL(database.url);
  url.port = String(proxy.port);
  return { database, proxy, url: url.toString() };
}

export function testConfig(databaseUrl: string, overrides: Partial<Config> = {}): Config {
  const base = loadConfig([], {
    CAIRN_LISTEN: "127.0.0.1:0",
    // Off unless a test asks (metricsListen: "127.0.0.1:0"): parallel files must not contend for 9464.
    CAIRN_METRICS_LISTEN: "",
    DATABASE_URL: databaseUrl,
    CAIRN_LOG_LEVEL: process.env.CAIRN_TEST_LOG_LEVEL ?? "silent",
    CAIRN_DB_POOL_MAX: "10",
    CAIRN_HEALTH_CHECK_INTERVAL_MS: "200",
    CAIRN_SHUTDOWN_GRACE_MS: "2000",
  });
  return { ...base, ...overrides, limits: { ...base.limits, ...overrides.limits }, streams: { ...base.streams, ...overrides.streams } };
}

export interface Harness {
  daemon: Daemon;
  client: CairnClient;
  /** A direct pool on the test database, for checks the API cannot make. */
  sql: pg.Pool;
  databaseUrl: string;
  stop(): Promise<void>;
}

export async function startHarness(overrides: Partial<Config> = {}): Promise<Harness> {
  const database = await createTestDatabase();
  const config = testConfig(database.url, overrides);
  const daemon = await startDaemon(config, createLogger(config.logLevel));
  const client = new CairnClient(daemon.address);
  const sql = new pg.Pool({ connectionString: database.url, max: 4 });
  // DROP DATABASE ... WITH (FORCE) at the end may still find a closing client.
  sql.on("error", () => {});
  sql.on("connect", (client) => client.on("error", () => {}));
  return {
    daemon,
    client,
    sql,
    databaseUrl: database.url,
    async stop() {
      client.close();
      await daemon.stop();
      await sql.end();
      await database.drop();
    },
  };
}

/** The rejection of `promise`, with its gRPC code, ErrorInfo and BadRequest decoded. */
export async function failure(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    const e = error as ServiceError;
    const details = errorDetails(e);
    return {
      code: e.code,
      message: e.details,
      reason: details.errorInfo?.reason,
      domain: details.errorInfo?.domain,
      metadata: details.errorInfo?.metadata ?? {},
      fields: details.badRequest?.fieldViolations.map((v) => v.field) ?? [],
    };
  }
  throw new Error("expected the call to fail, but it succeeded");
}

export interface Replicas {
  databaseUrl: string;
  clients: CairnClient[];
  stop(): Promise<void>;
}

/** Several daemons (replicas) on one fresh database, each with its own client. */
export async function startReplicas(count: number, overrides: Partial<Config> = {}): Promise<Replicas> {
  const database = await createTestDatabase();
  const config = testConfig(database.url, overrides);
  const daemons: Daemon[] = [];
  for (let i = 0; i < count; i++) daemons.push(await startDaemon(config, createLogger(config.logLevel)));
  const clients = daemons.map((d) => new CairnClient(d.address));
  return {
    databaseUrl: database.url,
    clients,
    async stop() {
      for (const c of clients) c.close();
      for (const d of daemons) await d.stop();
      await database.drop();
    },
  };
}
