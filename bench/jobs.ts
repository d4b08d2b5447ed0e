// Cairn's JobService (over gRPC, the hop included) against pg-boss and
// graphile-worker (in the benchmark process, as they are used), on the same
// PostgreSQL in one run:
//  - single enqueues at concurrency 32,
//  - batched enqueues (1,000 per call, 4 callers),
//  - processing throughput: lease plus complete of a backlog, each system
//    with its batching on (Cairn: LeaseJobs 500 + BatchCompleteJobs;
//    pg-boss: fetch batchSize 500 + complete(ids); graphile-worker:
//    localQueue 500 with batched completion),
//  - enqueue-to-start latency of a waiting worker (Cairn: StreamJobs),
//  - processing under flow control, the backlog spread over 100 groups,
//    workers taking FLOW_BATCH per lease (4 × 100 in flight at most: the
//    limit of 5 per group, 500 in all, never binds, so its row measures
//    what enforcing it costs): Cairn with no config (the reference), with
//    `fair`, and with at most 5 and at most 1 running per group
//    (max_running_per_group). The peers' nearest equivalent is one running
//    per group: pg-boss's `singleton` queue policy (one active job per
//    singletonKey) and graphile-worker's named queues (queue_name: a
//    queue's jobs run one at a time). Neither has fairness or a per-group
//    limit above 1. Each flow row's queue is ANALYZEd once filled, as a
//    database in service would have it.
// Cairn's batched enqueue asks for read_mask job_id,state, as a bulk producer
// would; a second row has the full echo of every job.
// BENCH_JOBS_ONLY=flow runs Cairn's flow rows alone (BENCH_FLOW_ROWS picks
// some, BENCH_ROUNDS repeats them in turn; each row's median, range and the
// CPU its jobs cost the daemon, PostgreSQL and the benchmark).
// BENCH_JOBS_ONLY=enqueue runs the batched enqueue rows alone (BENCH_ROUNDS
// rounds of every system in turn; each row's median, range and CPU per job).
import { CairnClient, type JobLease } from "@cairn/client";
import { Logger, makeWorkerUtils, run as runGraphile } from "graphile-worker";
import PgBoss from "pg-boss";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { type BenchEnvironment, startBenchEnvironment } from "./environment.js";
import { cpuSeconds, formatTable, measure, percentile } from "./measure.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const BACKLOG = Number(process.env.BENCH_JOB_BACKLOG ?? 20_000);
const LATENCY_JOBS = 150;
const GROUPS = 100;
const WORKERS = 4;
const LEASE_BATCH = 500;
const FLOW_BATCH = 100;
/** BENCH_JOBS_ONLY=flow: only Cairn's flow-control rows (the reference without a config included), for quick comparisons. */
const FLOW_ONLY = process.env.BENCH_JOBS_ONLY === "flow";
/** BENCH_JOBS_ONLY=enqueue: only the batched enqueue rows, Cairn's with and without its read mask, and the peers'. */
const ENQUEUE_ONLY = process.env.BENCH_JOBS_ONLY === "enqueue";
/** What a bulk producer asks BatchEnqueueJobs to echo of each job. */
const BULK_MASK = ["job_id", "state"];

/** How a processing run over GROUPS groups is set up: Cairn's QueueConfig ({}: none); the peers only do perGroup 1. */
interface Flow {
  fair?: boolean;
  perGroup?: number;
}

interface System {
  name: string;
  enqueue(i: number): Promise<unknown>;
  enqueueBatch(n: number): Promise<unknown>;
  /** As enqueueBatch, each job echoed whole (Cairn only: the peers' batch inserts have one shape). */
  enqueueBatchFullEcho?(n: number): Promise<unknown>;
  /** Enqueues `n` jobs on a fresh queue, then processes them; returns jobs/s of the processing alone. */
  process(n: number): Promise<number>;
  /** Enqueue-to-start latencies (ms) of jobs enqueued one at a time while a worker waits. */
  latency(count: number): Promise<number[]>;
  /**
   * As process, the jobs spread over GROUPS groups, under `flow`; absent
   * when the system has no equivalent. `settle` runs between filling the
   * queue and processing it.
   */
  processFlow?(n: number, flow: Flow, settle: () => Promise<void>): Promise<number>;
  close(): Promise<void>;
}

const payload = (i: number) => ({ task: "send-email", to: `user${i}@example.com`, attempt: 0 });
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function fill(enqueueBatch: (n: number) => Promise<unknown>, n: number) {
  for (let done = 0; done < n; done += 1000) await enqueueBatch(Math.min(1000, n - done));
}

/** Told when a drain starts and ends (the flow-only run's CPU accounting). */
interface DrainMeter {
  start(): Promise<void>;
  stop(jobs: number): Promise<void>;
}

function cairn(address: string, meter?: DrainMeter): System {
  const client = new CairnClient(address);
  let round = 0;
  /** One BatchEnqueueJobs of n jobs, echoed as `readMask` says ([]: whole). */
  function enqueueBatch(n: number, job: (i: number) => { queue: string; payload: object; groupKey?: string }, readMask: string[]) {
    return client.jobs.batchEnqueueJobs({ requests: Array.from({ length: n }, (_, i) => ({ job: job(i) })), readMask });
  }
  /**
   * WORKERS workers lease `batch` at a time and complete each batch in
   * one call, until n are done; jobs/s up to the moment the last completed.
   * A worker held back by a limit waits (LeaseJobs' wait) for room.
   */
  async function drain(queue: string, n: number, batch: number): Promise<number> {
    let processed = 0;
    let finished = 0;
    await meter?.start();
    const started = performance.now();
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        while (processed < n) {
          const { leases } = await client.jobs.leaseJobs({
            queue,
            workerId: `w${w}`,
            maxJobs: batch,
            leaseDuration: { seconds: 60, nanos: 0 },
            wait: { seconds: 1, nanos: 0 },
          });
          if (leases.length === 0) continue;
          await client.jobs.batchCompleteJobs({ requests: leases.map((l) => ({ jobId: l.job!.jobId, leaseToken: l.leaseToken })) });
          processed += leases.length;
          if (processed >= n) finished = performance.now();
        }
      }),
    );
    await meter?.stop(processed);
    return processed / ((finished - started) / 1000);
  }
  return {
    name: "cairn",
    enqueue: (i) => client.jobs.enqueueJob({ job: { queue: "enqueue", payload: payload(i) } }),
    enqueueBatch: (n) => enqueueBatch(n, (i) => ({ queue: "enqueue", payload: payload(i) }), BULK_MASK),
    enqueueBatchFullEcho: (n) => enqueueBatch(n, (i) => ({ queue: "enqueue", payload: payload(i) }), []),
    async process(n) {
      const queue = `process-${++round}`;
      await fill((k) => enqueueBatch(k, (i) => ({ queue, payload: payload(i) }), BULK_MASK), n);
      return drain(queue, n, LEASE_BATCH);
    },
    async processFlow(n, flow, settle) {
      const queue = `flow-${++round}`;
      if (flow.fair || flow.perGroup) {
        await client.jobs.updateQueueConfig({ config: { queue, fair: flow.fair ?? false, maxRunningPerGroup: flow.perGroup ?? 0 } });
      }
      await fill((k) => enqueueBatch(k, (i) => ({ queue, payload: payload(i), groupKey: `tenant-${i % GROUPS}` }), BULK_MASK), n);
      await settle();
      return drain(queue, n, FLOW_BATCH);
    },
    async latency(count) {
      const queue = `latency-${++round}`;
      const latencies: number[] = [];
      const stream = client.jobs.streamJobs({ queue, workerId: "lat", maxInFlight: 10 });
      stream.on("data", (l: JobLease) => {
        latencies.push(now() - (l.job!.payload!.sentAt as number));
        void client.jobs.completeJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken });
      });
      stream.on("error", () => {});
      await sleep(300);
      for (let i = 0; i < count; i++) {
        await client.jobs.enqueueJob({ job: { queue, payload: { sentAt: now() } } });
        await sleep(20);
      }
      await sleep(1000);
      stream.cancel();
      return latencies;
    },
    async close() {
      client.close();
    },
  };
}

async function pgBoss(databaseUrl: string): Promise<System> {
  const boss = new PgBoss({ connectionString: databaseUrl, max: 20 });
  boss.on("error", () => {});
  await boss.start();
  await boss.createQueue("enqueue");
  let round = 0;
  /** boss.complete of a batch; two batches completing at once can deadlock in pg-boss (40P01): then again. */
  async function completeBatch(queue: string, ids: string[]): Promise<void> {
    for (;;) {
      try {
        await boss.complete(queue, ids);
        return;
      } catch (error) {
        if ((error as { code?: string }).code !== "40P01") throw error;
      }
    }
  }
  /**
   * As Cairn's drain: fetch `batch`, complete them in one call. pg-boss
   * cannot wait for work: an empty fetch (nothing runnable, or a singleton
   * key already active, which fails the fetch) tries again 2 ms later.
   */
  async function drain(queue: string, n: number, batch: number): Promise<number> {
    let processed = 0;
    let finished = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        while (processed < n) {
          const jobs = await boss.fetch(queue, { batchSize: batch });
          if (jobs.length === 0) {
            await sleep(2);
            continue;
          }
          await completeBatch(queue, jobs.map((j) => j.id));
          processed += jobs.length;
          if (processed >= n) finished = performance.now();
        }
      }),
    );
    return processed / ((finished - started) / 1000);
  }
  return {
    name: "pg-boss",
    enqueue: (i) => boss.send("enqueue", payload(i)),
    enqueueBatch: (n) => boss.insert(Array.from({ length: n }, (_, i) => ({ name: "enqueue", data: payload(i) }))),
    async process(n) {
      const queue = `process-${++round}`;
      await boss.createQueue(queue);
      await fill((k) => boss.insert(Array.from({ length: k }, (_, i) => ({ name: queue, data: payload(i) }))), n);
      return drain(queue, n, LEASE_BATCH);
    },
    async processFlow(n, flow, settle) {
      if (flow.fair || flow.perGroup !== 1) throw new Error("pg-boss has no fairness, nor a per-key limit above 1");
      const queue = `flow-${++round}`;
      // singleton: at most one active job per singletonKey.
      await boss.createQueue(queue, { name: queue, policy: "singleton" });
      const job = (i: number) => ({ name: queue, data: payload(i), singletonKey: `tenant-${i % GROUPS}` });
      await fill((k) => boss.insert(Array.from({ length: k }, (_, i) => job(i))), n);
      await settle();
      return drain(queue, n, FLOW_BATCH);
    },
    async latency(count) {
      const queue = `latency-${++round}`;
      await boss.createQueue(queue);
      const latencies: number[] = [];
      // 0.5 s is the shortest polling interval pg-boss 10 accepts.
      await boss.work<{ sentAt: number }>(queue, { pollingIntervalSeconds: 0.5, batchSize: 10 }, async (jobs) => {
        for (const j of jobs) latencies.push(now() - j.data.sentAt);
      });
      for (let i = 0; i < count; i++) {
        await boss.send(queue, { sentAt: now() });
        await sleep(20);
      }
      await sleep(1500);
      await boss.offWork(queue);
      return latencies;
    },
    close: () => boss.stop({ graceful: false, wait: true }),
  };
}

async function graphileWorker(databaseUrl: string): Promise<System> {
  const logger = new Logger(() => () => {});
  const utils = await makeWorkerUtils({ connectionString: databaseUrl, logger });
  await utils.migrate();
  let round = 0;
  const preset = { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } };
  async function runUntil(taskList: Record<string, (p: any) => Promise<void>>, done: () => boolean, timeoutMs: number) {
    const runner = await runGraphile({ connectionString: databaseUrl, concurrency: 16, noHandleSignals: true, pollInterval: 1000, taskList, preset, logger } as never);
    const until = performance.now() + timeoutMs;
    while (!done() && performance.now() < until) await sleep(5);
    await runner.stop();
  }
  return {
    name: "graphile-worker",
    enqueue: (i) => utils.addJob("enqueue", payload(i)),
    enqueueBatch: (n) => utils.addJobs(Array.from({ length: n }, (_, i) => ({ identifier: "enqueue", payload: payload(i) }))),
    async process(n) {
      const task = `process_${++round}`;
      await fill((k) => utils.addJobs(Array.from({ length: k }, (_, i) => ({ identifier: task, payload: payload(i) }))), n);
      let processed = 0;
      const started = performance.now();
      await runUntil({ [task]: async () => void processed++ }, () => processed >= n, 300_000);
      return processed / ((performance.now() - started) / 1000);
    },
    async processFlow(n, flow, settle) {
      if (flow.fair || flow.perGroup !== 1) throw new Error("graphile-worker has no fairness, nor a per-queue limit above 1");
      const task = `flow_${++round}`;
      // A named queue runs its jobs one at a time: one per group.
      const job = (i: number) => ({ identifier: task, payload: payload(i), queueName: `${task}_tenant_${i % GROUPS}` });
      await fill((k) => utils.addJobs(Array.from({ length: k }, (_, i) => job(i))), n);
      await settle();
      let processed = 0;
      const started = performance.now();
      await runUntil({ [task]: async () => void processed++ }, () => processed >= n, 300_000);
      return processed / ((performance.now() - started) / 1000);
    },
    async latency(count) {
      const task = `latency_${++round}`;
      const latencies: number[] = [];
      let enqueued = 0;
      const running = runUntil({ [task]: async (p: { sentAt: number }) => void latencies.push(now() - p.sentAt) }, () => enqueued === count && latencies.length === count, 30_000);
      await sleep(1000);
      for (let i = 0; i < count; i++) {
        await utils.addJob(task, { sentAt: now() });
        enqueued++;
        await sleep(20);
      }
      await running;
      return latencies;
    },
    close: async () => {
      await utils.release();
    },
  };
}

/**
 * Statistics for the queue just filled, as a database in service has them
 * (a bench database is minutes old: before autovacuum's first ANALYZE, the
 * planner guesses, and a plan cached then may pick the wrong index).
 */
async function analyze(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("ANALYZE");
  } finally {
    await client.end();
  }
}

/** The flow-control rows, by result key: what Cairn runs (the peers run only perGroup 1). */
const FLOWS: Record<string, Flow> = { grouped: {}, fair: { fair: true }, perGroup5: { perGroup: 5 }, perGroup1: { perGroup: 1 } };

/** CPU time (ms) a process has used; 0 once it is gone. */
const cpuMs = (pid: number) => cpuSeconds(pid) * 1000;

/**
 * CPU per processed job while draining, by the daemon, the PostgreSQL
 * processes (all of the cluster's: meant for the bench's own) and this
 * process: what a shared machine's load does not change, unlike jobs/s.
 */
function cpuMeter(env: { pid: number; databaseUrl: string }) {
  const sql = new pg.Pool({ connectionString: env.databaseUrl, max: 1 });
  const pgPids = async () => (await sql.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity`)).rows.map((r) => r.pid);
  let before = { daemon: 0, postgres: new Map<number, number>(), bench: 0 };
  const usPerJob: Record<"daemon" | "postgres" | "bench", number[]> = { daemon: [], postgres: [], bench: [] };
  const meter: DrainMeter = {
    async start() {
      const pids = await pgPids();
      before = { daemon: cpuMs(env.pid), postgres: new Map(pids.map((p) => [p, cpuMs(p)])), bench: process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000 };
    },
    async stop(jobs) {
      let postgres = 0;
      for (const p of new Set([...before.postgres.keys(), ...(await pgPids())])) postgres += Math.max(0, cpuMs(p) - (before.postgres.get(p) ?? 0));
      const bench = process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000 - before.bench;
      usPerJob.daemon.push(((cpuMs(env.pid) - before.daemon) * 1000) / jobs);
      usPerJob.postgres.push((postgres * 1000) / jobs);
      usPerJob.bench.push((bench * 1000) / jobs);
    },
  };
  return { meter, usPerJob, close: () => sql.end() };
}

/**
 * Cairn's flow-control rows alone, each as a share of the run without a
 * config; BENCH_ROUNDS rounds of every row in turn (so a busy spell of a
 * shared machine falls on every row), each row's median and range, and
 * the CPU each job cost.
 */
async function benchFlowOnly(env: BenchEnvironment): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
  const cpu = cpuMeter(env);
  const c = cairn(env.cairnAddress, cpu.meter);
  try {
    const runs: Record<string, number[]> = {};
    const cpuRuns: Record<string, { daemon: number; postgres: number; bench: number }[]> = {};
    // BENCH_FLOW_ROWS: some of the rows (the reference is always run).
    const only = process.env.BENCH_FLOW_ROWS?.split(",");
    const flows = Object.entries(FLOWS).filter(([row]) => !only || row === "grouped" || only.includes(row));
    for (let i = 0; i < rounds; i++) {
      for (const [row, flow] of flows) {
        (runs[row] ??= []).push(await c.processFlow!(BACKLOG, flow, () => analyze(env.databaseUrl)));
        (cpuRuns[row] ??= []).push({ daemon: cpu.usPerJob.daemon.at(-1)!, postgres: cpu.usPerJob.postgres.at(-1)!, bench: cpu.usPerJob.bench.at(-1)! });
      }
    }
    const median = (row: string) => percentile(runs[row]!, 50);
    const range = (row: string) => `${Math.min(...runs[row]!).toFixed(0)}–${Math.max(...runs[row]!).toFixed(0)}`;
    const cpuOf = (row: string, who: "daemon" | "postgres" | "bench") => percentile(cpuRuns[row]!.map((r) => r[who]), 50);
    const cpuTotal = (row: string) => percentile(cpuRuns[row]!.map((r) => r.daemon + r.postgres + r.bench), 50);
    console.log(`\njobs benchmark, flow control only (backlog ${BACKLOG}, ${GROUPS} groups, ${WORKERS} × ${FLOW_BATCH} per lease, median of ${rounds})\n`);
    console.log(
      formatTable([
        ["row", "jobs/s", "range", "of no config", "CPU µs/job: daemon", "postgres", "bench", "total", "of no config"],
        ...flows.map(([row]) => [
          row,
          median(row).toFixed(0),
          range(row),
          `${((100 * median(row)) / median("grouped")).toFixed(0)} %`,
          ...(["daemon", "postgres", "bench"] as const).map((who) => cpuOf(row, who).toFixed(0)),
          cpuTotal(row).toFixed(0),
          `${((100 * cpuTotal(row)) / cpuTotal("grouped")).toFixed(0)} %`,
        ]),
      ]),
    );
  } finally {
    await c.close();
    await cpu.close();
  }
}

/**
 * The batched enqueue rows alone: BENCH_ROUNDS rounds of every system in
 * turn (Cairn with its bulk read mask and with the full echo), each row's
 * median and range, Cairn's ratio to each peer, and the CPU each job cost
 * the daemon (idle for the peers), PostgreSQL and this process (the peers'
 * clients, and Cairn's) — what a shared machine's load does not change.
 */
async function benchEnqueueOnly(env: BenchEnvironment): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
  const cpu = cpuMeter(env);
  const c = cairn(env.cairnAddress);
  const systems = [c, await pgBoss(env.databaseUrl), await graphileWorker(env.databaseUrl)];
  const rows: [string, (n: number) => Promise<unknown>][] = [
    [`cairn, read_mask ${BULK_MASK.join(",")}`, c.enqueueBatch],
    ["cairn, full echo", c.enqueueBatchFullEcho!],
    ...systems.slice(1).map((s): [string, (n: number) => Promise<unknown>] => [s.name, s.enqueueBatch]),
  ];
  try {
    const runs = new Map<string, number[]>(rows.map(([row]) => [row, []]));
    const cpuRuns = new Map<string, { daemon: number; postgres: number; bench: number }[]>(rows.map(([row]) => [row, []]));
    for (const [, enqueueBatch] of rows) await measure(4, 0.5, () => enqueueBatch(1000));
    for (let i = 0; i < rounds; i++) {
      for (const [row, enqueueBatch] of rows) {
        await cpu.meter.start();
        const result = await measure(4, SECONDS, () => enqueueBatch(1000));
        await cpu.meter.stop(result.calls * 1000);
        runs.get(row)!.push(result.callsPerSecond * 1000);
        cpuRuns.get(row)!.push({ daemon: cpu.usPerJob.daemon.at(-1)!, postgres: cpu.usPerJob.postgres.at(-1)!, bench: cpu.usPerJob.bench.at(-1)! });
      }
    }
    const median = (row: string) => percentile(runs.get(row)!, 50);
    const range = (row: string) => `${Math.min(...runs.get(row)!).toFixed(0)}–${Math.max(...runs.get(row)!).toFixed(0)}`;
    const cpuOf = (row: string, who: "daemon" | "postgres" | "bench") => percentile(cpuRuns.get(row)!.map((r) => r[who]), 50).toFixed(1);
    const peers = systems.slice(1).map((s) => s.name);
    console.log(`\njobs benchmark, batched enqueue only (1000 per call, 4 callers, ${SECONDS} s per row, median of ${rounds}; ratios > 1 favour Cairn)\n`);
    console.log(
      formatTable([
        ["row", "jobs/s", "range", ...peers.map((p) => `vs ${p}`), "CPU µs/job: daemon", "postgres", "bench"],
        ...rows.map(([row]) => [
          row,
          median(row).toFixed(0),
          range(row),
          ...peers.map((p) => `${(median(row) / median(p)).toFixed(2)}x`),
          ...(["daemon", "postgres", "bench"] as const).map((who) => cpuOf(row, who)),
        ]),
      ]),
    );
  } finally {
    for (const s of systems) await s.close().catch(() => {});
    await cpu.close();
  }
}

export async function benchJobs(): Promise<void> {
  const env = await startBenchEnvironment();
  if (FLOW_ONLY || ENQUEUE_ONLY) {
    try {
      return await (FLOW_ONLY ? benchFlowOnly(env) : benchEnqueueOnly(env));
    } finally {
      await env.close();
    }
  }
  const systems = [cairn(env.cairnAddress), await pgBoss(env.databaseUrl), await graphileWorker(env.databaseUrl)];
  try {
    const results = new Map<string, Record<string, number>>();
    for (const s of systems) {
      const r: Record<string, number> = {};
      await measure(32, 0.5, (w, i) => s.enqueue(w * 100_000 + i));
      r.single = (await measure(32, SECONDS, (w, i) => s.enqueue(w * 100_000 + i))).callsPerSecond;
      r.batched = (await measure(4, SECONDS, () => s.enqueueBatch(1000))).callsPerSecond * 1000;
      if (s.enqueueBatchFullEcho) r.batchedFullEcho = (await measure(4, SECONDS, () => s.enqueueBatchFullEcho!(1000))).callsPerSecond * 1000;
      r.processed = await s.process(BACKLOG);
      for (const [row, flow] of Object.entries(FLOWS)) {
        if (s.name === "cairn" || flow.perGroup === 1) r[row] = await s.processFlow!(BACKLOG, flow, () => analyze(env.databaseUrl));
      }
      const latencies = await s.latency(LATENCY_JOBS);
      r.p50 = percentile(latencies, 50);
      r.p99 = percentile(latencies, 99);
      r.delivered = latencies.length;
      results.set(s.name, r);
      console.error(s.name, JSON.stringify(r));
    }
    const c = results.get("cairn")!;
    const peers = ["pg-boss", "graphile-worker"];
    const ratio = (row: string, peer: string, lowerIsBetter = false) => {
      const x = c[row]!;
      const y = results.get(peer)![row]!;
      return lowerIsBetter ? `${(y / x).toFixed(2)}x` : `${(x / y).toFixed(2)}x`;
    };
    const fmt = (v: number, digits = 0) => v.toFixed(digits);
    /** A flow-control row: Cairn's figure with its share of the same run without a config; "-" where a peer has no equivalent. */
    const flowRow = (label: string, row: string) => [
      label,
      `${fmt(c[row]!)} (${fmt((100 * c[row]!) / c.grouped!)} %)`,
      ...peers.map((p) => (results.get(p)![row] === undefined ? "-" : fmt(results.get(p)![row]!))),
      ...peers.map((p) => (results.get(p)![row] === undefined ? "-" : ratio(row, p))),
    ];
    const rows = [
      ["measure", "cairn", ...peers, ...peers.map((p) => `cairn vs ${p}`)],
      ["single enqueue, conc 32 (jobs/s)", fmt(c.single!), ...peers.map((p) => fmt(results.get(p)!.single!)), ...peers.map((p) => ratio("single", p))],
      [`batched enqueue, 1000/call, read_mask ${BULK_MASK.join(",")} (jobs/s)`, fmt(c.batched!), ...peers.map((p) => fmt(results.get(p)!.batched!)), ...peers.map((p) => ratio("batched", p))],
      ["  the same, each job echoed whole (jobs/s)", fmt(c.batchedFullEcho!), "-", "-", ...peers.map((p) => `${(c.batchedFullEcho! / results.get(p)!.batched!).toFixed(2)}x`)],
      [`processing, backlog ${BACKLOG} (jobs/s)`, fmt(c.processed!), ...peers.map((p) => fmt(results.get(p)!.processed!)), ...peers.map((p) => ratio("processed", p))],
      [`${GROUPS} groups, ${WORKERS} × ${FLOW_BATCH} per lease, no config (jobs/s)`, `${fmt(c.grouped!)} (100 %)`, "-", "-", "-", "-"],
      flowRow(`  ${GROUPS} groups, fair`, "fair"),
      flowRow(`  ${GROUPS} groups, ≤ 5 running per group`, "perGroup5"),
      flowRow(`  ${GROUPS} groups, ≤ 1 running per group (peers: singleton / queue_name)`, "perGroup1"),
      ["enqueue-to-start p50 (ms)", fmt(c.p50!, 1), ...peers.map((p) => fmt(results.get(p)!.p50!, 1)), ...peers.map((p) => ratio("p50", p, true))],
      ["enqueue-to-start p99 (ms)", fmt(c.p99!, 1), ...peers.map((p) => fmt(results.get(p)!.p99!, 1)), ...peers.map((p) => ratio("p99", p, true))],
    ];
    console.log(`\njobs benchmark (${SECONDS} s per enqueue row, node ${process.version}; ratios > 1 favour Cairn)\n`);
    console.log(formatTable(rows));
  } finally {
    for (const s of systems) await s.close().catch(() => {});
    await env.close();
  }
}
