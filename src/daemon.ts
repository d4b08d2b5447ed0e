// A running Cairn: database (embedded or external), migrations, pool, gRPC
// server and database monitor, with an orderly stop.
import pg from "pg";
import type { Config } from "./config.js";
import { Database } from "./db/database.js";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "./db/embedded.js";
import { isConnectionError } from "./db/errors.js";
import { migrate } from "./db/migrate.js";
import { DatabaseMonitor } from "./db/monitor.js";
import { CHANNELS, NotifyHub } from "./db/notify-hub.js";
import { createPool } from "./db/pool.js";
import { HISTORY_SETTING } from "./sessions/history.js";
import type { Logger } from "./logger.js";
import { startOpsServer } from "./ops/http.js";
import { CairnMetrics } from "./ops/metrics.js";
import { type Tracing, startTracing } from "./ops/tracing.js";
import { type CallerSettler, openDoor } from "./auth/caller.js";
import type { AuthConfig } from "./auth/file.js";
import { buildServer } from "./server.js";
import { type Listener, listen } from "./transport.js";

const EMBEDDED_DATABASE = "cairn";
const STARTUP_RETRY_MS = 60_000;

export interface Daemon {
  /** host:port actually bound (CAIRN_LISTEN may ask for port 0). */
  address: string;
  /** host:port of the operations endpoint (/metrics, /healthz, /readyz); undefined when CAIRN_METRICS_LISTEN is empty. */
  metricsAddress: string | undefined;
  databaseUrl: string;
  /** Open streams of Cairn's services by method name (SubscribeEvents, Watch, …). */
  openStreams(): Map<string, number>;
  /** SIGHUP: reads the auth file, its JWKS and the TLS files again; a file that fails keeps the previous configuration. */
  reload(): void;
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
export async function migrateWhenReachable(url: string, log: Logger): Promise<void> {
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

/**
 * What a worker of a multi-process daemon (cluster.ts) does differently: its
 * primary has migrated the database, and serves the operations endpoint from
 * the workers' metrics and readiness.
 */
export interface WorkerRole {
  /** This worker's metrics, scraped through the primary; undefined when the endpoint is off. */
  metrics: CairnMetrics | undefined;
  onReadyChange(ready: boolean): void;
}

export async function startDaemon(config: Config, log: Logger, worker?: WorkerRole): Promise<Daemon> {
  // First, so that /healthz answers (and /readyz says 503) while the database starts and migrates.
  const metrics = worker ? worker.metrics : config.metricsListen ? new CairnMetrics() : undefined;
  let ready = false;
  const setReady = (value: boolean) => {
    if (value !== ready) worker?.onReadyChange(value);
    ready = value;
  };
  let stopRequested = false;
  const ops = metrics && !worker ? await startOpsServer(config.metricsListen!, metrics, () => ready, log) : undefined;
  let database: Awaited<ReturnType<typeof resolveDatabase>>;
  try {
    database = await resolveDatabase(config, log);
  } catch (error) {
    await ops?.close();
    throw error;
  }
  let pool: pg.Pool | undefined;
  let livePool: pg.Pool | undefined;
  let hub: NotifyHub | undefined;
  let tracing: Tracing | undefined;
  try {
    if (!worker) await migrateWhenReachable(database.url, log);
    // Undefined unless an OTLP endpoint is configured: then nothing is traced at all.
    tracing = await startTracing(config.otel, log);
    pool = createPool({
      connectionString: database.url,
      max: config.dbPoolMax,
      statementTimeoutMs: config.statementTimeoutMs,
      poolWaitMs: config.poolWaitMs,
      // The history trigger reads it (migrations/1763800800000_session_history.sql).
      settings: { [HISTORY_SETTING]: config.sessionHistoryVersions },
    });
    const db = new Database(pool, tracing);
    // The live feeds (Watch, SubscribeEvents) read after every commit on connections of their own,
    // kept open: live delivery never queues behind a busy pool, nor reconnects after a quiet spell.
    // Their reads serve the replica, not one call: they are not traced.
    livePool = createPool({
      connectionString: database.url,
      max: 2,
      statementTimeoutMs: config.statementTimeoutMs,
      applicationName: "cairn-live",
      idleTimeoutMs: 0,
    });
    hub = new NotifyHub(database.url, Object.values(CHANNELS), log);
    await hub.start();
    // The principals are read before anything is served: a bad auth file stops the start.
    // Loaded only with an auth file: jose and yaml cost every start ~80 ms otherwise.
    const authModules = config.authFile
      ? await Promise.all([import("./auth/file.js"), import("./auth/authenticator.js")])
      : undefined;
    let auth: AuthConfig | undefined = authModules && config.authFile ? authModules[0].loadAuthFile(config.authFile) : undefined;
    let listener: Listener | undefined;
    const callers: CallerSettler = auth
      ? new authModules![1].Authenticator(() => auth!, (peer) => listener?.peerSubject(peer))
      : openDoor;
    const { server, streams, background, setServing, beginStopping } = buildServer(config, db, hub, log, callers, metrics, new Database(livePool));
    if (metrics) {
      metrics.sources.pool = pool;
      metrics.sources.streams = () => streams.countsByKind();
      for (const loop of background) loop.onReaped = (kind, removed) => metrics.reaperDeleted.inc({ kind }, removed);
    }
    // Readiness follows the monitor, as gRPC health does; migrations are done by now.
    const monitor = new DatabaseMonitor(database.url, config.healthCheckIntervalMs, log, (reachable) => {
      setReady(reachable && !stopRequested);
      setServing(reachable);
    });
    // A call that failed to reach the database has the monitor look at once.
    db.onConnectionError = () => void monitor.probe();
    listener = await listen(server, config.listen, config.maxConnections, config.tls);
    const address = `${config.listen.slice(0, config.listen.lastIndexOf(":"))}:${listener.port}`;
    monitor.start();
    for (const loop of background) loop.start();
    log.info({ address, embedded: Boolean(database.embedded), tls: Boolean(config.tls), auth: Boolean(auth) }, "cairn serving");
    const reload = () => {
      if (config.authFile) {
        try {
          auth = authModules![0].loadAuthFile(config.authFile);
          log.info({ file: config.authFile }, "auth file reloaded");
        } catch (error) {
          log.error({ file: config.authFile, err: (error as Error).message }, "auth file not reloaded; keeping the previous principals");
        }
      }
      if (config.tls) {
        try {
          listener!.reloadTls();
          log.info("TLS certificates reloaded");
        } catch (error) {
          log.error({ err: (error as Error).message }, "TLS certificates not reloaded; keeping the previous ones");
        }
      }
    };

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        log.info("shutting down");
        stopRequested = true;
        setReady(false);
        setServing(false);
        listener!.stopAccepting();
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
        await livePool!.end();
        await database.embedded?.stop();
        await ops?.close();
        // Last: exports the spans of the calls that ended during shutdown. A
        // collector that cannot be reached costs at most the exporter's timeout.
        await tracing?.stop().catch((error: unknown) => log.warn({ err: (error as Error).message }, "tracing: spans not exported at shutdown"));
        log.info("stopped");
      })());
    return { address, metricsAddress: ops?.address, databaseUrl: database.url, openStreams: () => streams.countsByKind(), reload, stop };
  } catch (error) {
    await hub?.stop();
    await pool?.end().catch(() => {});
    await livePool?.end().catch(() => {});
    await database.embedded?.stop();
    await ops?.close();
    await tracing?.stop().catch(() => {});
    throw error;
  }
}
