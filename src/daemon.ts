// A running Cairn: database (embedded or external), migrations, pool, gRPC
// server and database monitor, with an orderly stop.
import * as grpc from "@grpc/grpc-js";
import net from "node:net";
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
  /** Open streams of Cairn's services by method name (SubscribeEvents, Watch, …). */
  openStreams(): Map<string, number>;
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

interface Listener {
  port: number;
  /** Stops accepting; open connections are ended by the gRPC server's shutdown. */
  stopAccepting(): void;
}

/**
 * Accepts connections on our own TCP server and hands them to grpc-js (its
 * connection injector), so that the replica's connections can be capped:
 * grpc-js itself has no such bound. Past `maxConnections`, Node closes a new
 * socket at accept.
 */
async function listen(server: grpc.Server, address: string, maxConnections: number): Promise<Listener> {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const tcp = net.createServer((socket) => injector.injectConnection(socket));
  tcp.maxConnections = maxConnections;
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen({ host, port: Number(address.slice(colon + 1)) }, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  return {
    port: (tcp.address() as net.AddressInfo).port,
    stopAccepting: () => void tcp.close(),
  };
}

export async function startDaemon(config: Config, log: Logger): Promise<Daemon> {
  const database = await resolveDatabase(config, log);
  let pool: pg.Pool | undefined;
  let hub: NotifyHub | undefined;
  try {
    await migrateWhenReachable(database.url, log);
    pool = createPool({
      connectionString: database.url,
      max: config.dbPoolMax,
      statementTimeoutMs: config.statementTimeoutMs,
      poolWaitMs: config.poolWaitMs,
    });
    const db = new Database(pool);
    hub = new NotifyHub(database.url, Object.values(CHANNELS), log);
    await hub.start();
    const { server, streams, background, setServing, beginStopping } = buildServer(config, db, hub, log);
    const monitor = new DatabaseMonitor(database.url, config.healthCheckIntervalMs, log, setServing);
    // A call that failed to reach the database has the monitor look at once.
    db.onConnectionError = () => void monitor.probe();
    const listener = await listen(server, config.listen, config.maxConnections);
    const address = `${config.listen.slice(0, config.listen.lastIndexOf(":"))}:${listener.port}`;
    monitor.start();
    for (const loop of background) loop.start();
    log.info({ address, embedded: Boolean(database.embedded) }, "cairn serving");

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        log.info("shutting down");
        setServing(false);
        listener.stopAccepting();
        // Waits for work end at once (with what they have), and streams never
        // end on their own: end them first, then give unary calls the grace period.
        beginStopping();
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
    return { address, databaseUrl: database.url, openStreams: () => streams.countsByKind(), stop };
  } catch (error) {
    await hub?.stop();
    await pool?.end().catch(() => {});
    await database.embedded?.stop();
    throw error;
  }
}
