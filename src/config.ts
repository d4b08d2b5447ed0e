// Configuration: environment variables, overridden by command-line flags,
// validated once at start into one typed Config.
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";

export interface Limits {
  /** Encoded JSON size of a document (state, payload, value). */
  maxDocumentBytes: number;
  maxKeyBytes: number;
  maxBatchItems: number;
  /** Largest gRPC message accepted or sent. */
  maxMessageBytes: number;
  /** A page of a list method ends at page_size items or this many encoded bytes. */
  maxPageBytes: number;
  /** Labels per resource, and a label key's and value's characters. */
  maxLabels: number;
  maxLabelKeyChars: number;
  maxLabelValueChars: number;
  /** Items in a filter list (statuses, event_types, states, …). */
  maxFilterItems: number;
  /** Levels of a JSON document; its root object or array is level 1. */
  maxJsonDepth: number;
}

/** What one replica allows its streams (see "Limits and overload" in README). */
export interface StreamLimits {
  maxStreams: number;
  maxStreamsPerPrincipal: number;
  /** Unsent bytes a stream may hold before it stops reading rows. */
  bufferBytes: number;
  /** How long a stream may stay full before it is ended with SLOW_CONSUMER. */
  slowConsumerTimeoutMs: number;
  /** Unsent bytes of all streams of the replica; past it a stream writes only once its own last write is flushed. */
  memoryBytes: number;
}

export interface Config {
  listen: string;
  /** Operations endpoint (/metrics, /healthz, /readyz); undefined: off. */
  metricsListen: string | undefined;
  /** Unset: start an embedded PostgreSQL under dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  /** Port of the embedded PostgreSQL; 0 picks a free one. */
  embeddedPgPort: number;
  dbPoolMax: number;
  /** Daemon processes serving the one listen address (cluster.ts); 1: this process alone. */
  processes: number;
  logLevel: string;
  /** Bound on any statement of a call that carries no deadline. */
  statementTimeoutMs: number;
  shutdownGraceMs: number;
  healthCheckIntervalMs: number;
  /** Longest silence of an idle subscription before a progress message. */
  progressIntervalMs: number;
  /** How often the reaper purges expired rows. */
  reaperIntervalMs: number;
  /** How long the key-value change log is kept for Watch. */
  watchRetentionMs: number;
  /** How often expired job leases are rescued. */
  leaseRescueIntervalMs: number;
  /** Longest sleep of the schedule ticker (it wakes sooner when a fire time comes first). */
  scheduleTickMs: number;
  /** How long finished jobs are kept. */
  jobRetentionMs: number;
  /** How long metric points are kept (by their time). */
  metricRetentionMs: number;
  /** Versions of each session its history keeps, the current one included; 0 (or 1): history off. */
  sessionHistoryVersions: number;
  limits: Limits;
  streams: StreamLimits;
  /** Longest wait for a free pool connection, when the call's deadline is not sooner. */
  poolWaitMs: number;
  /** Connections without a call for this long are closed. */
  connectionIdleMs: number;
  /** Open client connections per replica; more are refused at accept. */
  maxConnections: number;
  /** Principals, tokens and JWT settings (unset: every caller is an admin, loopback only). */
  authFile: string | undefined;
  tls: TlsFiles | undefined;
  /** Explicit consent to serve a non-loopback address without auth, or tokens without TLS. */
  insecure: boolean;
  /**
   * The standard OTEL_* variables (tracing, ops/tracing.ts), taken from the
   * environment loadConfig was given rather than read from process.env later,
   * so that one process can run daemons with different settings (the tests).
   */
  otel: Record<string, string>;
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Set: every connection must present a client certificate signed by this CA (mTLS). */
  clientCaFile: string | undefined;
}

type Parser<T> = (raw: string) => T;

interface Setting<T> {
  env: string;
  flag: string;
  default: T;
  parse: Parser<T>;
  help: string;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

function positiveInt(min = 1, max = Number.MAX_SAFE_INTEGER): Parser<number> {
  return (raw) => {
    if (!/^\d+$/.test(raw.trim())) throw new Error(`expected an integer, got ${JSON.stringify(raw)}`);
    const value = Number(raw);
    if (value < min || value > max) throw new Error(`expected ${min}..${max}, got ${value}`);
    return value;
  };
}

function hostPort(raw: string): string {
  const match = /^(.*):(\d{1,5})$/.exec(raw.trim());
  if (!match || !match[1] || Number(match[2]) > 65535) {
    throw new Error(`expected host:port (e.g. 127.0.0.1:50051), got ${JSON.stringify(raw)}`);
  }
  return raw.trim();
}

/** Empty turns the operations endpoint off. */
function optionalHostPort(raw: string): string | undefined {
  return raw.trim() === "" ? undefined : hostPort(raw);
}

function postgresUrl(raw: string): string | undefined {
  if (raw.trim() === "") return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error("expected a postgres:// URL");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new Error(`expected a postgres:// or postgresql:// URL, got ${url.protocol}`);
  }
  return raw;
}

function optionalPath(raw: string): string | undefined {
  return raw.trim() === "" ? undefined : resolve(raw.trim());
}

function boolean(raw: string): boolean {
  if (raw === "true" || raw === "1") return true;
  if (raw === "false" || raw === "0" || raw === "") return false;
  throw new Error(`expected true or false, got ${JSON.stringify(raw)}`);
}

/** "auto": one process per core Node may use. */
function processCount(raw: string): number {
  const value = raw.trim();
  if (value === "auto") return availableParallelism();
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 1024) throw new Error(`expected 1..1024 or auto, got ${JSON.stringify(raw)}`);
  return Number(value);
}

function logLevel(raw: string): string {
  if (!LOG_LEVELS.includes(raw)) throw new Error(`expected one of ${LOG_LEVELS.join(", ")}`);
  return raw;
}

export const SETTINGS = {
  listen: { env: "CAIRN_LISTEN", flag: "listen", default: "127.0.0.1:50051", parse: hostPort, help: "gRPC listen address" },
  metricsListen: {
    env: "CAIRN_METRICS_LISTEN",
    flag: "metrics-listen",
    default: "127.0.0.1:9464" as string | undefined,
    parse: optionalHostPort,
    help: "HTTP address of /metrics, /healthz and /readyz (empty: off)",
  },
  databaseUrl: {
    env: "DATABASE_URL",
    flag: "database-url",
    default: undefined,
    parse: postgresUrl,
    help: "PostgreSQL URL; unset starts an embedded PostgreSQL",
  },
  dataDir: {
    env: "CAIRN_DATA_DIR",
    flag: "data-dir",
    default: resolve("./.cairn/data"),
    parse: (raw: string) => resolve(raw),
    help: "data directory of the embedded PostgreSQL",
  },
  embeddedPgPort: {
    env: "CAIRN_EMBEDDED_PG_PORT",
    flag: "embedded-pg-port",
    default: 0,
    parse: positiveInt(0, 65535),
    help: "port of the embedded PostgreSQL (0: any free port)",
  },
  dbPoolMax: {
    env: "CAIRN_DB_POOL_MAX",
    flag: "db-pool-max",
    default: 20,
    parse: positiveInt(1, 1000),
    help: "pool size (with CAIRN_PROCESSES > 1: of all processes together, divided evenly)",
  },
  processes: {
    env: "CAIRN_PROCESSES",
    flag: "processes",
    default: 1,
    parse: processCount,
    help: "daemon processes serving the one gRPC port (auto: one per core)",
  },
  logLevel: { env: "CAIRN_LOG_LEVEL", flag: "log-level", default: "info", parse: logLevel, help: "pino log level" },
  statementTimeoutMs: {
    env: "CAIRN_STATEMENT_TIMEOUT_MS",
    flag: "statement-timeout-ms",
    default: 30_000,
    parse: positiveInt(1),
    help: "bound on each SQL statement of calls without a deadline",
  },
  shutdownGraceMs: {
    env: "CAIRN_SHUTDOWN_GRACE_MS",
    flag: "shutdown-grace-ms",
    default: 10_000,
    parse: positiveInt(0),
    help: "how long unary calls may finish after SIGTERM",
  },
  healthCheckIntervalMs: {
    env: "CAIRN_HEALTH_CHECK_INTERVAL_MS",
    flag: "health-check-interval-ms",
    default: 2_000,
    parse: positiveInt(50),
    help: "how often the database is probed for health",
  },
  progressIntervalMs: {
    env: "CAIRN_PROGRESS_INTERVAL_MS",
    flag: "progress-interval-ms",
    default: 4_000,
    parse: positiveInt(50, 5_000),
    help: "longest silence of an idle subscription before a progress message",
  },
  reaperIntervalMs: {
    env: "CAIRN_REAPER_INTERVAL_MS",
    flag: "reaper-interval-ms",
    default: 30_000,
    parse: positiveInt(50),
    help: "how often expired rows are purged (one replica at a time)",
  },
  watchRetentionMs: {
    env: "CAIRN_WATCH_RETENTION_MS",
    flag: "watch-retention-ms",
    default: 24 * 3600 * 1000,
    parse: positiveInt(1),
    help: "how long the key-value change log is kept for Watch",
  },
  leaseRescueIntervalMs: {
    env: "CAIRN_LEASE_RESCUE_INTERVAL_MS",
    flag: "lease-rescue-interval-ms",
    default: 1_000,
    parse: positiveInt(10),
    help: "how often expired job leases are rescued (one replica at a time)",
  },
  scheduleTickMs: {
    env: "CAIRN_SCHEDULE_TICK_MS",
    flag: "schedule-tick-ms",
    default: 1_000,
    parse: positiveInt(10, 60_000),
    help: "longest wait of the schedule ticker between looks for due fire times (one replica fires at a time)",
  },
  jobRetentionMs: {
    env: "CAIRN_JOB_RETENTION_MS",
    flag: "job-retention-ms",
    default: 7 * 24 * 3600 * 1000,
    parse: positiveInt(1),
    help: "how long finished jobs are kept",
  },
  metricRetentionMs: {
    env: "CAIRN_METRIC_RETENTION_MS",
    flag: "metric-retention-ms",
    default: 30 * 24 * 3600 * 1000,
    parse: positiveInt(1),
    help: "how long metric points are kept, counted from their time",
  },
  sessionHistoryVersions: {
    env: "CAIRN_SESSION_HISTORY_VERSIONS",
    flag: "session-history-versions",
    default: 100,
    parse: positiveInt(0, 1_000_000),
    help: "versions of each session kept for GetSession/ListSessionVersions/ForkSession, the current one included (0: history off)",
  },
  maxDocumentBytes: {
    env: "CAIRN_MAX_DOCUMENT_BYTES",
    flag: "max-document-bytes",
    default: 1024 * 1024,
    parse: positiveInt(1),
    help: "largest JSON document (encoded)",
  },
  maxKeyBytes: { env: "CAIRN_MAX_KEY_BYTES", flag: "max-key-bytes", default: 512, parse: positiveInt(1), help: "largest key" },
  maxBatchItems: {
    env: "CAIRN_MAX_BATCH_ITEMS",
    flag: "max-batch-items",
    default: 1000,
    parse: positiveInt(1, 100_000),
    help: "most items in one batch",
  },
  maxMessageBytes: {
    env: "CAIRN_MAX_MESSAGE_BYTES",
    flag: "max-message-bytes",
    default: 8 * 1024 * 1024,
    parse: positiveInt(1024),
    help: "largest gRPC message",
  },
  maxLabels: { env: "CAIRN_MAX_LABELS", flag: "max-labels", default: 64, parse: positiveInt(1, 10_000), help: "labels per resource" },
  maxFilterItems: {
    env: "CAIRN_MAX_FILTER_ITEMS",
    flag: "max-filter-items",
    default: 100,
    parse: positiveInt(1, 10_000),
    help: "items in one filter list (statuses, event_types, …)",
  },
  maxJsonDepth: {
    env: "CAIRN_MAX_JSON_DEPTH",
    flag: "max-json-depth",
    default: 64,
    parse: positiveInt(2, 1_000),
    help: "nesting levels of a JSON document (the root is level 1)",
  },
  maxPageBytes: {
    env: "CAIRN_MAX_PAGE_BYTES",
    flag: "max-page-bytes",
    default: 4 * 1024 * 1024,
    parse: positiveInt(1024),
    help: "a list page ends at page_size items or this many encoded bytes",
  },
  maxStreams: {
    env: "CAIRN_MAX_STREAMS",
    flag: "max-streams",
    default: 10_000,
    parse: positiveInt(1),
    help: "open streams per replica",
  },
  maxStreamsPerPrincipal: {
    env: "CAIRN_MAX_STREAMS_PER_PRINCIPAL",
    flag: "max-streams-per-principal",
    default: 1_000,
    parse: positiveInt(1),
    help: "open streams per principal, per replica",
  },
  streamBufferBytes: {
    env: "CAIRN_STREAM_BUFFER_BYTES",
    flag: "stream-buffer-bytes",
    default: 1024 * 1024,
    parse: positiveInt(1024),
    help: "unsent bytes a stream may hold before it stops reading",
  },
  slowConsumerTimeoutMs: {
    env: "CAIRN_SLOW_CONSUMER_TIMEOUT_MS",
    flag: "slow-consumer-timeout-ms",
    default: 30_000,
    parse: positiveInt(100),
    help: "how long a stream may stay undrained before SLOW_CONSUMER",
  },
  streamMemoryBytes: {
    env: "CAIRN_STREAM_MEMORY_BYTES",
    flag: "stream-memory-bytes",
    default: 256 * 1024 * 1024,
    parse: positiveInt(1024),
    help: "unsent bytes of all streams of a replica, past which each stream waits for its own flush",
  },
  poolWaitMs: {
    env: "CAIRN_POOL_WAIT_MS",
    flag: "pool-wait-ms",
    default: 5_000,
    parse: positiveInt(1),
    help: "longest wait for a free pool connection before OVERLOADED",
  },
  connectionIdleMs: {
    env: "CAIRN_CONNECTION_IDLE_MS",
    flag: "connection-idle-ms",
    default: 5 * 60 * 1000,
    parse: positiveInt(1000),
    help: "connections without a call for this long are closed",
  },
  maxConnections: {
    env: "CAIRN_MAX_CONNECTIONS",
    flag: "max-connections",
    default: 10_000,
    parse: positiveInt(1),
    help: "open client connections per replica; more are refused",
  },
  authFile: {
    env: "CAIRN_AUTH_FILE",
    flag: "auth-file",
    default: undefined,
    parse: optionalPath,
    help: "YAML file of principals (tokens, certificate subjects, JWT); read again on SIGHUP",
  },
  tlsCertFile: {
    env: "CAIRN_TLS_CERT_FILE",
    flag: "tls-cert-file",
    default: undefined,
    parse: optionalPath,
    help: "PEM certificate (chain) of the server; with the key, turns TLS on",
  },
  tlsKeyFile: { env: "CAIRN_TLS_KEY_FILE", flag: "tls-key-file", default: undefined, parse: optionalPath, help: "PEM private key of the server" },
  tlsClientCaFile: {
    env: "CAIRN_TLS_CLIENT_CA_FILE",
    flag: "tls-client-ca-file",
    default: undefined,
    parse: optionalPath,
    help: "PEM CA that must have signed every client's certificate (mTLS)",
  },
  insecure: {
    env: "CAIRN_INSECURE",
    flag: "insecure",
    default: false,
    parse: boolean,
    help: "true: serve a non-loopback address without auth, or tokens without TLS",
  },
} satisfies Record<string, Setting<unknown>>;

/** A label's key and value lengths, as API.md's "Common rules" give them. */
const LABEL_TEXT_LIMITS = { maxLabelKeyChars: 63, maxLabelValueChars: 256 };

type Values = { [K in keyof typeof SETTINGS]: (typeof SETTINGS)[K]["default"] | ReturnType<(typeof SETTINGS)[K]["parse"]> };

export class ConfigError extends Error {}

/** Reads env then flags; throws ConfigError naming every bad setting. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config {
  const { values: flags } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.values(SETTINGS).map((s) => [s.flag, { type: "string" as const }])),
    strict: true,
    allowPositionals: false,
  });
  const problems: string[] = [];
  const values = {} as Record<string, unknown>;
  for (const [key, setting] of Object.entries(SETTINGS) as [string, Setting<unknown>][]) {
    const fromFlag = flags[setting.flag] as string | undefined;
    const raw = fromFlag ?? env[setting.env];
    const source = fromFlag !== undefined ? `--${setting.flag}` : setting.env;
    if (raw === undefined) {
      values[key] = setting.default;
      continue;
    }
    try {
      values[key] = setting.parse(raw);
    } catch (error) {
      problems.push(`${source}: ${(error as Error).message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  const v = values as Values;
  const tls = tlsFiles(v.tlsCertFile, v.tlsKeyFile, v.tlsClientCaFile);
  if (v.processes > v.dbPoolMax) {
    throw new ConfigError(
      `CAIRN_PROCESSES (${v.processes}) exceeds CAIRN_DB_POOL_MAX (${v.dbPoolMax}): the pool size is divided among the processes, each needs at least one connection`,
    );
  }
  requireSecureDefaults(v.listen, v.authFile, tls, v.insecure);
  return {
    listen: v.listen,
    metricsListen: v.metricsListen,
    databaseUrl: v.databaseUrl,
    dataDir: v.dataDir,
    embeddedPgPort: v.embeddedPgPort,
    dbPoolMax: v.dbPoolMax,
    processes: v.processes,
    logLevel: v.logLevel,
    statementTimeoutMs: v.statementTimeoutMs,
    shutdownGraceMs: v.shutdownGraceMs,
    healthCheckIntervalMs: v.healthCheckIntervalMs,
    progressIntervalMs: v.progressIntervalMs,
    reaperIntervalMs: v.reaperIntervalMs,
    watchRetentionMs: v.watchRetentionMs,
    leaseRescueIntervalMs: v.leaseRescueIntervalMs,
    scheduleTickMs: v.scheduleTickMs,
    jobRetentionMs: v.jobRetentionMs,
    metricRetentionMs: v.metricRetentionMs,
    sessionHistoryVersions: v.sessionHistoryVersions,
    limits: {
      maxDocumentBytes: v.maxDocumentBytes,
      maxKeyBytes: v.maxKeyBytes,
      maxBatchItems: v.maxBatchItems,
      maxMessageBytes: v.maxMessageBytes,
      maxPageBytes: Math.min(v.maxPageBytes, v.maxMessageBytes),
      maxLabels: v.maxLabels,
      maxFilterItems: v.maxFilterItems,
      maxJsonDepth: v.maxJsonDepth,
      ...LABEL_TEXT_LIMITS,
    },
    streams: {
      maxStreams: v.maxStreams,
      maxStreamsPerPrincipal: v.maxStreamsPerPrincipal,
      bufferBytes: v.streamBufferBytes,
      slowConsumerTimeoutMs: v.slowConsumerTimeoutMs,
      memoryBytes: v.streamMemoryBytes,
    },
    poolWaitMs: v.poolWaitMs,
    connectionIdleMs: v.connectionIdleMs,
    maxConnections: v.maxConnections,
    authFile: v.authFile,
    tls,
    insecure: v.insecure,
    otel: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[0].startsWith("OTEL_") && e[1] !== undefined)),
  };
}

function tlsFiles(certFile: string | undefined, keyFile: string | undefined, clientCaFile: string | undefined): TlsFiles | undefined {
  if (!certFile && !keyFile) {
    if (clientCaFile) throw new ConfigError("CAIRN_TLS_CLIENT_CA_FILE needs CAIRN_TLS_CERT_FILE and CAIRN_TLS_KEY_FILE (mTLS is TLS first)");
    return undefined;
  }
  if (!certFile || !keyFile) throw new ConfigError("TLS needs both CAIRN_TLS_CERT_FILE and CAIRN_TLS_KEY_FILE");
  return { certFile, keyFile, clientCaFile };
}

/** Whether a listen address only reaches this machine. */
export function isLoopback(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(":")).replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Secure by default: past loopback, every caller must authenticate, and
 * bearer tokens must not travel in plaintext, unless CAIRN_INSECURE=true
 * says so explicitly.
 */
function requireSecureDefaults(listen: string, authFile: string | undefined, tls: TlsFiles | undefined, insecure: boolean): void {
  if (insecure || isLoopback(listen)) return;
  if (!authFile) {
    throw new ConfigError(
      `refusing to serve ${listen} (not loopback) without authentication: set CAIRN_AUTH_FILE (and CAIRN_TLS_CERT_FILE, CAIRN_TLS_KEY_FILE), listen on 127.0.0.1, or set CAIRN_INSECURE=true to accept anyone`,
    );
  }
  if (!tls) {
    throw new ConfigError(
      `refusing to serve ${listen} (not loopback) with bearer tokens over plaintext: set CAIRN_TLS_CERT_FILE and CAIRN_TLS_KEY_FILE, or CAIRN_INSECURE=true`,
    );
  }
}

/** The configuration table, for `cairn help` and the README. */
export function describeSettings(): string {
  return Object.values(SETTINGS)
    .map((s) => `  --${s.flag.padEnd(26)} ${s.env.padEnd(32)} ${s.help} (default: ${s.default ?? "unset"})`)
    .join("\n");
}
