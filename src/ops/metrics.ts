// Cairn's Prometheus metrics: one prom-client Registry per daemon (tests run
// several daemons in one process, so nothing is registered globally).
//
// The gRPC metrics follow go-grpc-prometheus's names, labels and code names,
// so existing dashboards and alerts work unchanged. They are on every call's
// path, so they are not kept in prom-client's labelled metrics (whose
// children hash their label values into a string on every increment):
// each method gets one record of plain numbers when it is first called, the
// call path only adds to it, and the records are turned into samples when
// /metrics is scraped. Everything else is read at scrape time too (pool
// counts, open streams, the jobs table) or counted where it happens.
import * as grpc from "@grpc/grpc-js";
import type pg from "pg";
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from "prom-client";

/** gRPC's code names as Go spells them (codes.Code.String()), which the grpc-ecosystem metrics use. */
const GO_CODE_NAMES = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];

export function goCodeName(code: grpc.status): string {
  return GO_CODE_NAMES[code] ?? `Code(${code})`;
}

/** Prometheus's default buckets, which go-grpc-prometheus uses too (seconds). */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type GrpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

/** What one method has done since the daemon started: only numbers change on a call. */
export class MethodRecord {
  started = 0;
  /** Calls handled, by numeric status code. */
  readonly handled: number[] = new Array<number>(GO_CODE_NAMES.length).fill(0);
  /** Non-cumulative bucket counts; the last slot is +Inf. */
  readonly buckets: number[] = new Array<number>(BUCKETS.length + 1).fill(0);
  sum = 0;
  count = 0;

  constructor(readonly labels: { grpc_type: GrpcType; grpc_service: string; grpc_method: string }) {}

  /** The call's final status and how long it took, in seconds. */
  handle(code: grpc.status, seconds: number): void {
    if (code >= 0 && code < this.handled.length) this.handled[code]!++;
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
    this.buckets[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** The per-method records the call interceptor fills. */
export class GrpcServerMetrics {
  private readonly methods = new Map<string, MethodRecord>();

  /**
   * The record of a method, made on its first call. grpc-js runs
   * interceptors only for registered methods (unknown paths are answered
   * before), so this map is bounded by the services served.
   */
  method(path: string, requestStream: boolean, responseStream: boolean): MethodRecord {
    let record = this.methods.get(path);
    if (!record) {
      const slash = path.lastIndexOf("/");
      const type: GrpcType = requestStream ? (responseStream ? "bidi_stream" : "client_stream") : responseStream ? "server_stream" : "unary";
      record = new MethodRecord({ grpc_type: type, grpc_service: path.slice(1, slash), grpc_method: path.slice(slash + 1) });
      this.methods.set(path, record);
    }
    return record;
  }

  records(): Iterable<MethodRecord> {
    return this.methods.values();
  }
}

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/**
 * A metric whose samples are computed from the records when scraped. It has
 * the shape prom-client's Registry reads (name, help, type, get()).
 */
class ComputedMetric {
  readonly aggregator = "sum";
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "histogram",
    private readonly samples: () => Sample[],
  ) {}
  get() {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.samples() };
  }
  reset(): void {}
}

function grpcMetrics(grpcServer: GrpcServerMetrics): ComputedMetric[] {
  const started = () => [...grpcServer.records()].map((r) => ({ labels: r.labels, value: r.started }));
  const handled = () => {
    const samples: Sample[] = [];
    for (const r of grpcServer.records()) {
      r.handled.forEach((n, code) => {
        if (n > 0) samples.push({ labels: { ...r.labels, grpc_code: goCodeName(code) }, value: n });
      });
    }
    return samples;
  };
  const handling = () => {
    const name = "grpc_server_handling_seconds";
    const samples: Sample[] = [];
    for (const r of grpcServer.records()) {
      let cumulative = 0;
      BUCKETS.forEach((le, i) => {
        cumulative += r.buckets[i]!;
        samples.push({ metricName: `${name}_bucket`, labels: { ...r.labels, le }, value: cumulative });
      });
      samples.push({ metricName: `${name}_bucket`, labels: { ...r.labels, le: "+Inf" }, value: r.count });
      samples.push({ metricName: `${name}_sum`, labels: r.labels, value: r.sum });
      samples.push({ metricName: `${name}_count`, labels: r.labels, value: r.count });
    }
    return samples;
  };
  return [
    new ComputedMetric("grpc_server_started_total", "Total number of RPCs started on the server.", "counter", started),
    new ComputedMetric(
      "grpc_server_handled_total",
      "Total number of RPCs completed on the server, regardless of success or failure.",
      "counter",
      handled,
    ),
    new ComputedMetric(
      "grpc_server_handling_seconds",
      "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      "histogram",
      handling,
    ),
  ];
}

/** What the scrape reads from the running daemon; set once each part exists. */
export interface MetricsSources {
  pool?: pg.Pool;
  streams?: () => Map<string, number>;
}

/** How long the jobs query may take at a scrape; past it the scrape goes on without the jobs gauges. */
const JOBS_QUERY_TIMEOUT_MS = 2_000;

const JOB_STATES = ["blocked", "scheduled", "available", "running", "retrying", "succeeded", "dead", "cancelled"];

export class CairnMetrics {
  readonly registry = new Registry();
  readonly grpc = new GrpcServerMetrics();
  readonly sources: MetricsSources = {};
  readonly traceEventsAppended: Counter;
  readonly reaperDeleted: Counter<"kind">;

  /** `databaseGauges`: whether to report the gauges read from the database (one process of several does). */
  constructor({ databaseGauges = true }: { databaseGauges?: boolean } = {}) {
    const registers = [this.registry];
    for (const metric of grpcMetrics(this.grpc)) this.registry.registerMetric(metric as unknown as Metric);
    this.traceEventsAppended = new Counter({
      name: "cairn_trace_events_appended_total",
      help: "Trace events appended (duplicates of an existing event_id not counted).",
      registers,
    });
    this.reaperDeleted = new Counter({
      name: "cairn_reaper_deleted_total",
      help: "Rows removed by the background tasks of this replica (expired job leases: rescued), by task.",
      labelNames: ["kind"],
      registers,
    });
    const sources = this.sources;
    new Gauge({
      name: "cairn_db_pool_connections",
      help: "Connections of the daemon's PostgreSQL pool: idle, active (checked out), and waiting (callers queued for one).",
      labelNames: ["state"],
      registers,
      collect() {
        const pool = sources.pool;
        if (!pool) return;
        this.set({ state: "idle" }, pool.idleCount);
        this.set({ state: "active" }, pool.totalCount - pool.idleCount);
        this.set({ state: "waiting" }, pool.waitingCount);
      },
    });
    new Gauge({
      name: "cairn_streams_open",
      help: "Open streams of this replica, by method name.",
      labelNames: ["kind"],
      registers,
      collect() {
        this.reset();
        for (const [kind, n] of sources.streams?.() ?? []) this.set({ kind }, n);
      },
    });
    if (databaseGauges) registerJobGauges(registers, sources);
    collectDefaultMetrics({ register: this.registry });
  }
}

/** The jobs gauges, read from the database at each scrape. One query fills both: the registry collects every metric at once, so both wait on the same in-flight query. */
function registerJobGauges(registers: Registry[], sources: MetricsSources): void {
  let inFlight: Promise<JobRow[]> | undefined;
  const jobRows = () => {
    inFlight ??= queryJobs(sources.pool).finally(() => setImmediate(() => (inFlight = undefined)));
    return inFlight;
  };
  new Gauge({
    name: "cairn_jobs",
    help: "Jobs by queue and state, summed across namespaces (read from the database at each scrape).",
    labelNames: ["queue", "state"],
    registers,
    async collect() {
      const rows = await jobRows();
      this.reset();
      const seen = new Set<string>();
      for (const row of rows) {
        // Every state of a known queue has a sample, 0 included, so alerts need no absent().
        if (!seen.has(row.queue)) for (const state of JOB_STATES) this.set({ queue: row.queue, state }, 0);
        seen.add(row.queue);
        this.set({ queue: row.queue, state: row.state }, row.n);
      }
    },
  });
  new Gauge({
    name: "cairn_job_oldest_available_seconds",
    help: "Age of the oldest job ready to run but not leased (0: none), by queue, across namespaces (read from the database at each scrape).",
    labelNames: ["queue"],
    registers,
    async collect() {
      const rows = await jobRows();
      this.reset();
      const oldest = new Map<string, number>();
      for (const row of rows) oldest.set(row.queue, Math.max(oldest.get(row.queue) ?? 0, row.oldest ?? 0));
      for (const [queue, seconds] of oldest) this.set({ queue }, seconds);
    },
  });
}

interface JobRow {
  queue: string;
  state: string;
  n: number;
  oldest: number | null;
}

/**
 * Counts jobs by queue and effective state (a SCHEDULED job whose time has
 * come is AVAILABLE, as readers see it) and the age of each group's oldest
 * waiting job, in one statement with its own short timeout. An unreachable
 * or slow database gives no rows: a scrape must not fail for it (/readyz and
 * the pool gauges tell that story).
 */
async function queryJobs(pool: pg.Pool | undefined): Promise<JobRow[]> {
  if (!pool) return [];
  let client: pg.PoolClient | undefined;
  let timer: NodeJS.Timeout | undefined;
  const query = (async () => {
    client = await pool.connect();
    try {
      await client.query(`BEGIN READ ONLY; SET LOCAL statement_timeout = ${JOBS_QUERY_TIMEOUT_MS}`);
      const result = await client.query<JobRow>(
        `SELECT queue,
                lower(CASE WHEN state = 'SCHEDULED' AND run_time <= now() THEN 'AVAILABLE' ELSE state END) AS state,
                count(*)::int AS n,
                extract(epoch FROM now() - min(run_time) FILTER (
                  WHERE state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND run_time <= now()))::float8 AS oldest
           FROM jobs GROUP BY 1, 2`,
      );
      await client.query("COMMIT");
      return result.rows;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  })();
  // The pool's own wait for a connection may be longer than a scrape should take.
  const deadline = new Promise<JobRow[]>((resolve) => {
    timer = setTimeout(() => resolve([]), JOBS_QUERY_TIMEOUT_MS + 500);
  });
  try {
    return await Promise.race([query.catch(() => []), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
