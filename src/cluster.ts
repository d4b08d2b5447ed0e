// Several daemon processes on one gRPC port (CAIRN_PROCESSES > 1), so that
// every core serves calls: a daemon runs its JavaScript (decoding,
// validation, JSON, replies) on one thread, so one process uses one core.
//
// node:cluster rather than SO_REUSEPORT. grpc-js has no SO_REUSEPORT option
// (and Cairn binds its own net.Server, transport.ts), Node's net has
// `reusePort` only from 22.12 (Cairn runs on 20.11+), and SO_REUSEPORT has
// two faults here: any process of the same user may then bind the port too,
// so a second daemon started by mistake shares it silently instead of
// failing with EADDRINUSE; and connections waiting in the accept queue of a
// process that ends are reset (unless net.ipv4.tcp_migrate_req, Linux 5.14+).
// With node:cluster the primary holds the one listening socket and hands each
// accepted connection to the next worker (round-robin, Node's default on
// Linux and macOS): a port in use fails the start, a worker stopping
// gracefully has its pending connections given to another, and a worker
// that dies stops receiving them once the primary sees it gone (a
// connection handed over in that instant is lost; its client connects
// again). The hand-off costs one message per connection, not per call.
//
// The load spreads by connection: one client channel (one HTTP/2
// connection) is served by one process; clients open several to use them all.
//
// The primary starts the embedded PostgreSQL (when DATABASE_URL is unset)
// and migrates, once; then forks the workers. Each worker is a full replica,
// like a daemon on another host: its own pool, LISTEN connection, live
// feeds and background loops (one replica at a time works through advisory
// locks, whatever process it is in). CAIRN_DB_POOL_MAX is the budget of all
// processes together: each worker's pool gets floor(max / processes).
//
// The primary serves the operations endpoint: /metrics sums the workers'
// registries (prom-client's AggregatorRegistry; the gauges read from the
// database appear once), /readyz is 200 when a worker serves and every
// serving worker has its database, /healthz while the primary is up.
//
// A worker that exits is forked again, after a delay that doubles while it
// keeps exiting soon after its start; after STARTUP_ATTEMPTS exits in a row
// of one worker before it served, the primary stops everything and exits 1
// (a port in use, a bad auth file) rather than forking for ever. A primary
// that is killed takes its workers with it (Node ends a worker whose IPC
// channel closes), so none is left holding database connections.
import cluster, { type Worker } from "node:cluster";
import type { AddressInfo } from "node:net";
import { AggregatorRegistry } from "prom-client";
import type { Config } from "./config.js";
import { type Daemon, migrateWhenReachable, resolveDatabase, startDaemon } from "./daemon.js";
import type { Logger } from "./logger.js";
import { startOpsServer } from "./ops/http.js";
import { CairnMetrics } from "./ops/metrics.js";

/** What the primary gives each worker, in its environment (an internal variable, not a setting). */
const WORKER_ENV = "CAIRN_WORKER_SETTINGS";

interface WorkerSettings {
  databaseUrl: string;
  dbPoolMax: number;
  metrics: boolean;
  /** Whether this worker reports the gauges read from the database (the first one only: every worker would read the same rows). */
  databaseGauges: boolean;
}

interface ReadyMessage {
  cairn: "ready";
  ready: boolean;
}

const STARTUP_ATTEMPTS = 5;
const FIRST_RESTART_DELAY_MS = 200;
const MAX_RESTART_DELAY_MS = 10_000;
/** A worker that served this long before it exited is forked again after the first delay. */
const STABLE_AFTER_MS = 30_000;
/** Past the grace period, how long the primary waits for a worker's own shutdown before killing it. */
const STOP_MARGIN_MS = 10_000;

export type Running = Pick<Daemon, "reload" | "stop">;

/** Whether this process is a worker forked by startPrimary. */
export function isWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] !== undefined;
}

/** A worker's log lines carry its pid, so the lines of the processes can be told apart. */
export function workerLogger(log: Logger): Logger {
  return log.child({ worker: cluster.worker!.id, pid: process.pid });
}

export async function startWorker(config: Config, log: Logger): Promise<Daemon> {
  const settings = JSON.parse(process.env[WORKER_ENV]!) as WorkerSettings;
  const metrics = settings.metrics ? new CairnMetrics({ databaseGauges: settings.databaseGauges }) : undefined;
  if (metrics) {
    // Answers the primary's scrapes (prom-client's cluster messages) with this worker's registry.
    AggregatorRegistry.setRegistries([metrics.registry]);
    new AggregatorRegistry();
  }
  const workerConfig: Config = { ...config, databaseUrl: settings.databaseUrl, dbPoolMax: settings.dbPoolMax };
  return startDaemon(workerConfig, log, {
    metrics,
    onReadyChange: (ready) => {
      if (process.connected) process.send!({ cairn: "ready", ready } satisfies ReadyMessage);
    },
  });
}

interface Slot {
  worker: Worker | undefined;
  startedAt: number;
  listening: boolean;
  ready: boolean;
  /** Exits in a row before the worker served. */
  startupFailures: number;
  /** Exits in a row within STABLE_AFTER_MS of the start: the restart delay doubles with each. */
  quickExits: number;
  restartTimer: NodeJS.Timeout | undefined;
}

class Primary {
  private readonly slots: Slot[];
  private stopping = false;
  private port: number | undefined;
  private onAllServing!: () => void;
  readonly allServing = new Promise<void>((resolve) => (this.onAllServing = resolve));
  private onFailed!: (error: Error) => void;
  /** Settles only when the workers keep failing at startup. */
  readonly failed = new Promise<Error>((resolve) => (this.onFailed = resolve));

  constructor(
    count: number,
    private readonly settings: Omit<WorkerSettings, "databaseGauges">,
    private readonly stopWaitMs: number,
    private readonly log: Logger,
  ) {
    this.slots = Array.from({ length: count }, () => ({
      worker: undefined,
      startedAt: 0,
      listening: false,
      ready: false,
      startupFailures: 0,
      quickExits: 0,
      restartTimer: undefined,
    }));
  }

  start(): void {
    for (const slot of this.slots) this.fork(slot);
  }

  get boundPort(): number | undefined {
    return this.port;
  }

  pids(): number[] {
    return this.slots.flatMap((slot) => (slot.worker?.process.pid ? [slot.worker.process.pid] : []));
  }

  /** Some worker serves, and every serving one has its database. */
  ready(): boolean {
    const serving = this.slots.filter((slot) => slot.listening);
    return !this.stopping && serving.length > 0 && serving.every((slot) => slot.ready);
  }

  reload(): void {
    for (const slot of this.slots) slot.worker?.process.kill("SIGHUP");
  }

  /** Each worker drains as a single daemon does on SIGTERM; one that takes too long is killed. */
  async stop(): Promise<void> {
    this.stopping = true;
    const running: Worker[] = [];
    for (const slot of this.slots) {
      clearTimeout(slot.restartTimer);
      if (slot.worker && !slot.worker.isDead()) running.push(slot.worker);
    }
    const exited = running.map((worker) => new Promise((resolve) => worker.once("exit", resolve)));
    for (const worker of running) worker.process.kill("SIGTERM");
    const force = setTimeout(() => {
      this.log.warn("workers still running after the grace period; killing them");
      for (const worker of running) worker.process.kill("SIGKILL");
    }, this.stopWaitMs);
    await Promise.all(exited);
    clearTimeout(force);
  }

  private fork(slot: Slot): void {
    const worker = cluster.fork({ [WORKER_ENV]: JSON.stringify({ ...this.settings, databaseGauges: slot === this.slots[0] } satisfies WorkerSettings) });
    Object.assign(slot, { worker, startedAt: Date.now(), listening: false, ready: false, restartTimer: undefined });
    worker.on("listening", (address: AddressInfo) => {
      slot.listening = true;
      slot.startupFailures = 0;
      this.port = address.port;
      this.log.info({ worker: worker.id, pid: worker.process.pid }, "worker serving");
      if (this.slots.every((s) => s.listening)) this.onAllServing();
    });
    worker.on("message", (message: ReadyMessage) => {
      if (message?.cairn === "ready") slot.ready = message.ready;
    });
    worker.on("exit", (code, signal) => this.exited(slot, worker, code, signal));
  }

  private exited(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    const served = slot.listening;
    Object.assign(slot, { worker: undefined, listening: false, ready: false });
    if (this.stopping) return;
    if (!served) slot.startupFailures++;
    const fields = { worker: worker.id, pid: worker.process.pid, code, signal };
    if (slot.startupFailures >= STARTUP_ATTEMPTS) {
      this.log.error(fields, "worker exited before serving, again; giving up");
      this.onFailed(new Error(`a worker process failed to start ${STARTUP_ATTEMPTS} times in a row (see its errors above)`));
      return;
    }
    slot.quickExits = served && Date.now() - slot.startedAt >= STABLE_AFTER_MS ? 0 : slot.quickExits + 1;
    const delay = Math.min(FIRST_RESTART_DELAY_MS * 2 ** Math.max(0, slot.quickExits - 1), MAX_RESTART_DELAY_MS);
    this.log.error({ ...fields, restart_in_ms: delay }, served ? "worker exited; starting another" : "worker exited before serving; starting another");
    slot.restartTimer = setTimeout(() => this.fork(slot), delay);
  }
}

/**
 * The primary of CAIRN_PROCESSES > 1: database and migrations once, the
 * operations endpoint, and config.processes workers. Rejects when the
 * workers cannot start; later, if they keep failing, stops and exits 1.
 */
export async function startPrimary(config: Config, log: Logger): Promise<Running> {
  const aggregator = config.metricsListen ? new AggregatorRegistry() : undefined;
  let primary: Primary | undefined;
  const ops = aggregator
    ? await startOpsServer(
        config.metricsListen!,
        { registry: { metrics: () => aggregator.clusterMetrics(), contentType: aggregator.contentType } },
        () => primary?.ready() ?? false,
        log,
      )
    : undefined;
  let database: Awaited<ReturnType<typeof resolveDatabase>> | undefined;
  try {
    database = await resolveDatabase(config, log);
    await migrateWhenReachable(database.url, log);
  } catch (error) {
    await database?.embedded?.stop();
    await ops?.close();
    throw error;
  }
  const settings = { databaseUrl: database.url, dbPoolMax: Math.floor(config.dbPoolMax / config.processes), metrics: Boolean(aggregator) };
  const workers = new Primary(config.processes, settings, config.shutdownGraceMs + STOP_MARGIN_MS, log);
  primary = workers;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      log.info("shutting down");
      await workers.stop();
      await database.embedded?.stop();
      await ops?.close();
      log.info("stopped");
    })());
  workers.start();
  const failure = await Promise.race([workers.allServing.then(() => undefined), workers.failed]);
  if (failure) {
    await stop();
    throw failure;
  }
  void workers.failed.then(async (error) => {
    if (stopping) return;
    log.error({ err: error.message }, "stopping: workers keep failing");
    await stop();
    process.exit(1);
  });
  const host = config.listen.slice(0, config.listen.lastIndexOf(":"));
  log.info({ address: `${host}:${workers.boundPort}`, processes: config.processes, pids: workers.pids(), embedded: Boolean(database.embedded) }, "cairn serving");
  return { reload: () => workers.reload(), stop };
}
