// A running Cairn: database (embedded or external), migrations, pool, gRPC
// server and database monitor, with an orderly stop.
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import type { Config } from "./config.js";
import { Database } from "./db/database.js";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "./db/embedded.js";
import { isConnectionError } from "./db/errors.js";
import { migrate } from "./db/migrate.js";
import { DatabaseMonitor } from "./db/monitor.js";
import { CHANNELS, NotifyHub } from "./db/notify-hub.js";
import { createPool } from "./db/pool.js";
import type { Logger } from "./logger.js";
import { buildServer } from "./server.js";

const EMBEDDED_DATABASE = "cairn";
const STARTUP_RETRY_MS = 60_000;

export interface Daemon {
  /** host:port actually bound (CAIRN_LISTEN may ask for port 0). */
  address: string;
  databaseUrl: string;
  stop(): Promise<void>;
}

async function ensureDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const exists = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    // CREATE DATABASE takes no parameters; the name is our own constant.
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
}

/** Starts the embedded PostgreSQL when no DATABASE_URL is configured. */
export async function resolveDatabase(config: Config, log: Logger): Promise<{ url: string; embedded?: EmbeddedDatabase }> {
  if (config.databaseUrl) return { url: config.databaseUrl };
  const embedded = await startEmbeddedPostgres(config.dataDir, config.embeddedPgPort, log);
  try {
    await ensureDatabase(embedded.adminUrl, EMBEDDED_DATABASE);
  } catch (error) {
    await embedded.stop();
    throw error;
  }
  return { url: embedded.urlFor(EMBEDDED_DATABASE), embedded };
}

/** Migrates, retrying for a while if the database is not up yet. */
async function migrateWhenReachable(url: string, log: Logger): Promise<void> {
  const giveUpAt = Date.now() + STARTUP_RETRY_MS;
  for (let delay = 250; ; delay = Math.min(delay * 2, 5_000)) {
    try {
      await migrate(url, log);
      return;
    } catch (error) {
      if (!isConnectionError(error) || Date.now() > giveUpAt) throw error;
      log.warn({ err: error, retry_in_ms: delay }, "database not reachable yet; retrying");
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

function bind(server: grpc.Server, listen: string): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
  );
}

export async function startDaemon(config: Config, log: Logger): Promise<Daemon> {
  const database = await resolveDatabase(config, log);
  let pool: pg.Pool | undefined;
  let hub: NotifyHub | undefined;
  try {
    await migrateWhenReachable(database.url, log);
    pool = createPool({ connectionString: database.url, max: config.dbPoolMax, statementTimeoutMs: config.statementTimeoutMs });
    const db = new Database(pool);
    hub = new NotifyHub(database.url, Object.values(CHANNELS), log);
    await hub.start();
    const { server, streams, background, setServing } = buildServer(config, db, hub, log);
    const monitor = new DatabaseMonitor(pool, config.healthCheckIntervalMs, log, setServing);
    const port = await bind(server, config.listen);
    const address = `${config.listen.slice(0, config.listen.lastIndexOf(":"))}:${port}`;
    monitor.start();
    for (const loop of background) loop.start();
    log.info({ address, embedded: Boolean(database.embedded) }, "cairn serving");

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        log.info("shutting down");
        setServing(false);
        // Streams never end on their own: end them first, then give unary
        // calls the grace period.
        streams.endAll("server shutting down");
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            log.warn("grace period over; cancelling remaining calls");
            server.forceShutdown();
            resolve();
          }, config.shutdownGraceMs);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        monitor.stop();
        for (const loop of background) await loop.stop();
        await hub!.stop();
        await pool!.end();
        await database.embedded?.stop();
        log.info("stopped");
      })());
    return { address, databaseUrl: database.url, stop };
  } catch (error) {
    await hub?.stop();
    await pool?.end().catch(() => {});
    await database.embedded?.stop();
    throw error;
  }
}
