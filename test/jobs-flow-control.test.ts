// Queue flow control: QueueConfig Get/Update (AIP-134 masks, versions,
// validation), and leasing under it on two replicas of one database. The
// chaos run leases with LeaseJobs and StreamJobs workers on both replicas,
// some vanishing mid-job (their leases expire and are rescued) or failing
// (retries), while a trigger logs every move into and out of RUNNING; the
// log then shows that no moment had more leases per group or per queue
// than the limits. Rate limits are checked over every sliding window,
// fairness and priority order by the order of leases, and the hold-back in
// the job states and GetQueueStats.
import { CairnClient, type Job, type JobLease, JobState, RateLimitScope } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Replicas, startReplicas } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

let replicas: Replicas;
let a: CairnClient;
let b: CairnClient;
let sql: pg.Pool;
let n = 0;
const queue = (what: string) => `${what}-${Date.now().toString(36)}-${++n}`;
const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Until a call of the daemon waits on a lock `holder` holds (the order a test names is then in place). */
async function waitBlockedBy(holder: pg.PoolClient): Promise<void> {
  const pid = (await holder.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
  await waitFor("a call waiting on the held lock", async () => {
    const { rows } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))", [pid]);
    return rows[0]!.n > 0;
  });
}

beforeAll(async () => {
  replicas = await startReplicas(2, { leaseRescueIntervalMs: 100, dbPoolMax: 10 });
  [a, b] = replicas.clients as [CairnClient, CairnClient];
  sql = new pg.Pool({ connectionString: replicas.databaseUrl, max: 4 });
  sql.on("error", () => {});
  // Every move of a job into or out of RUNNING, at the time the database
  // gave it: a lease at its update_time (read under the queue's lock), the
  // end of a lease at its transaction's start (before it committed). An
  // observer only: the daemon never reads it.
  await sql.query(`
    CREATE TABLE lease_log (queue text, group_key text, job_id text, running boolean, at timestamptz);
    CREATE FUNCTION log_lease() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.state = 'RUNNING' AND (OLD.state <> 'RUNNING' OR OLD.lease_token IS DISTINCT FROM NEW.lease_token) THEN
        INSERT INTO lease_log VALUES (NEW.queue, NEW.group_key, NEW.job_id, true, NEW.update_time);
      ELSIF OLD.state = 'RUNNING' AND NEW.state <> 'RUNNING' THEN
        INSERT INTO lease_log VALUES (NEW.queue, NEW.group_key, NEW.job_id, false, now());
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER log_lease AFTER UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION log_lease();`);
});
afterAll(async () => {
  await sql?.end();
  await replicas?.stop();
});

const enqueueAll = (client: CairnClient, jobs: Partial<Job>[]) =>
  client.jobs.batchEnqueueJobs({ requests: jobs.map((job) => ({ job: { payload: {}, ...job } as Job })) });

/** The most leases held at once, per key (`queue` or `group_key`), from the log: ends before starts at equal times. */
async function maxConcurrent(q: string, by: "queue" | "group_key"): Promise<Map<string, number>> {
  const rows = (await sql.query(`SELECT ${by} AS key, running, at FROM lease_log WHERE queue = $1 ORDER BY at, running`, [q])).rows as {
    key: string;
    running: boolean;
  }[];
  const now = new Map<string, number>();
  const most = new Map<string, number>();
  for (const r of rows) {
    const held = (now.get(r.key) ?? 0) + (r.running ? 1 : -1);
    now.set(r.key, held);
    most.set(r.key, Math.max(most.get(r.key) ?? 0, held));
  }
  return most;
}

describe("QueueConfig", () => {
  it("is the defaults at version 0 until updated; updates follow the mask and bump the version", async () => {
    const q = queue("config");
    expect(await a.jobs.getQueueConfig({ queue: q })).toMatchObject({ queue: q, maxRunning: 0, maxRunningPerGroup: 0, fair: false, version: 0 });

    const set = await a.jobs.updateQueueConfig({
      config: { queue: q, maxRunning: 10, maxRunningPerGroup: 2, rateLimit: { count: 5, period: seconds(1), scope: RateLimitScope.RATE_LIMIT_SCOPE_GROUP } },
    });
    expect(set).toMatchObject({ maxRunning: 10, maxRunningPerGroup: 2, fair: false, version: 1 });
    expect(set.rateLimit).toEqual({ count: 5, period: seconds(1), scope: RateLimitScope.RATE_LIMIT_SCOPE_GROUP });
    expect(set.updateTime).toBeDefined();

    // A mask names what changes; the rest stays, even when the request clears it.
    const masked = await b.jobs.updateQueueConfig({ config: { queue: q, fair: true, maxRunning: 0 }, updateMask: ["fair"] });
    expect(masked).toMatchObject({ maxRunning: 10, maxRunningPerGroup: 2, fair: true, version: 2 });
    // "*" replaces every field: those not given are cleared.
    const replaced = await a.jobs.updateQueueConfig({ config: { queue: q, maxRunning: 3 }, updateMask: ["*"] });
    expect(replaced).toMatchObject({ maxRunning: 3, maxRunningPerGroup: 0, fair: false, rateLimit: undefined, version: 3 });
    expect(await b.jobs.getQueueConfig({ queue: q })).toEqual(replaced);

    const stale = await failure(a.jobs.updateQueueConfig({ config: { queue: q, maxRunning: 4 }, expectedVersion: 2 }));
    expect(stale).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { current_version: "3" } });
    expect(await a.jobs.updateQueueConfig({ config: { queue: q, maxRunning: 4 }, expectedVersion: 3 })).toMatchObject({ maxRunning: 4, version: 4 });
  });

  it("rejects bad input naming the field, and writes nothing", async () => {
    const q = queue("invalid");
    const cases: [object, string][] = [
      [{ config: { queue: q, maxRunning: -1 } }, "config.max_running"],
      [{ config: { queue: q, maxRunningPerGroup: -5 } }, "config.max_running_per_group"],
      [{ config: { queue: q, rateLimit: { count: -1, period: seconds(1) } } }, "config.rate_limit.count"],
      [{ config: { queue: q, rateLimit: { count: 5 } } }, "config.rate_limit.period"],
      [{ config: { queue: q, rateLimit: { count: 5, period: seconds(0) } } }, "config.rate_limit.period"],
      [{ config: { queue: q, rateLimit: { count: 5, period: seconds(-1) } } }, "config.rate_limit.period"],
      [{ config: { queue: q, rateLimit: { count: 5, period: seconds(2 * 86400) } } }, "config.rate_limit.period"],
      [{ config: { queue: q, rateLimit: { count: 5, period: seconds(1), scope: 7 } } }, "config.rate_limit.scope"],
      [{ config: { queue: "bad queue", maxRunning: 1 } }, "config.queue"],
      [{ config: { queue: "", maxRunning: 1 } }, "config.queue"],
      [{}, "config"],
      [{ config: { queue: q, maxRunning: 1 }, updateMask: ["max_running", "paused"] }, "update_mask.paths[1]"],
    ];
    for (const [request, field] of cases) {
      const f = await failure(a.jobs.updateQueueConfig(request as never));
      expect(f.code, field).toBe(status.INVALID_ARGUMENT);
      expect(f.fields, JSON.stringify(request)).toContain(field);
    }
    expect((await failure(a.jobs.getQueueConfig({ queue: "" }))).fields).toEqual(["queue"]);
    expect((await a.jobs.getQueueConfig({ queue: q })).version).toBe(0);
    const badGroup = await failure(enqueueAll(a, [{ queue: q, groupKey: "tab\there" }]));
    expect(badGroup).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["requests[0].job.group_key"] });
  });
});

describe("leasing under limits", () => {
  it("holds jobs back AVAILABLE, and GetQueueStats shows per-group running and the held-back count", async () => {
    const q = queue("held");
    await a.jobs.updateQueueConfig({ config: { queue: q, maxRunningPerGroup: 1 } });
    await enqueueAll(a, [
      ...Array.from({ length: 3 }, () => ({ queue: q, groupKey: "team/a" })),
      ...Array.from({ length: 2 }, () => ({ queue: q, groupKey: "team/b" })),
    ]);
    const { leases } = await b.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 10 });
    expect(leases.map((l) => l.job!.groupKey).sort()).toEqual(["team/a", "team/b"]);
    expect((await a.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 10 })).leases).toEqual([]);

    const stats = await a.jobs.getQueueStats({ queue: q });
    expect(stats.runningByGroup).toEqual({ "team/a": 1, "team/b": 1 });
    expect(stats.heldBackCount).toBe(3);
    expect(stats.counts).toMatchObject({ JOB_STATE_AVAILABLE: 3, JOB_STATE_RUNNING: 2 });
    const waiting = await a.jobs.listJobs({ queue: q, states: [JobState.JOB_STATE_AVAILABLE] });
    expect(waiting.jobs).toHaveLength(3);

    // A finish makes room for exactly one more of that group; a lease
    // waiting on the other replica takes it at once (the finish's NOTIFY,
    // not the 1 s backstop).
    const waiter = a.jobs.leaseJobs({ queue: q, workerId: "w2", maxJobs: 10, wait: seconds(5) });
    await sleep(300);
    const started = Date.now();
    const first = leases.find((l) => l.job!.groupKey === "team/a")!;
    await b.jobs.completeJob({ jobId: first.job!.jobId, leaseToken: first.leaseToken });
    const next = await waiter;
    expect(next.leases.map((l) => l.job!.groupKey)).toEqual(["team/a"]);
    expect(Date.now() - started).toBeLessThan(500);
    expect((await a.jobs.getQueueStats({ queue: q })).heldBackCount).toBe(2);

    // Lifting the limit lets the rest go, and the counts say so.
    await a.jobs.updateQueueConfig({ config: { queue: q }, updateMask: ["*"] });
    expect((await a.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 10 })).leases).toHaveLength(2);
    expect(await a.jobs.getQueueStats({ queue: q })).toMatchObject({ heldBackCount: 0, runningByGroup: { "team/a": 2, "team/b": 2 } });
  });

  it("a finish through another replica than the lease's, or through a Commit, wakes a capped queue's waiters at once", async () => {
    const q = queue("woken");
    await a.jobs.updateQueueConfig({ config: { queue: q, maxRunning: 1 } });
    await enqueueAll(a, Array.from({ length: 3 }, () => ({ queue: q })));
    const finishes: ((l: JobLease) => Promise<unknown>)[] = [
      // Leased on b below, completed on a.
      (l) => a.jobs.completeJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken }),
      // Completed by a Commit.
      (l) =>
        a.transactions.commit({
          operations: [{ op: { $case: "completeJob", value: { jobId: l.job!.jobId, leaseToken: l.leaseToken } } }],
        } as never),
    ];
    let [held] = (await b.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 10 })).leases;
    for (const finish of finishes) {
      // Waiting on b, early in its wait: the 1 s backstop would come far later than 500 ms.
      const waiter = b.jobs.leaseJobs({ queue: q, workerId: "w2", maxJobs: 10, wait: seconds(5) });
      await sleep(100);
      const started = Date.now();
      await finish(held!);
      const next = await waiter;
      expect(next.leases).toHaveLength(1);
      expect(Date.now() - started).toBeLessThan(500);
      held = next.leases[0];
    }
  });

  it("fair: a small group is served at once under a big group's backlog, each group by priority", async () => {
    const fair = queue("fair");
    const unfair = queue("unfair");
    await a.jobs.updateQueueConfig({ config: { queue: fair, fair: true } });
    for (const q of [fair, unfair]) {
      await enqueueAll(a, Array.from({ length: 300 }, (_, i) => ({ queue: q, groupKey: "big", priority: i % 3, payload: { i } })));
      await enqueueAll(a, Array.from({ length: 4 }, (_, i) => ({ queue: q, groupKey: "small", payload: { i } })));
      await enqueueAll(a, Array.from({ length: 4 }, (_, i) => ({ queue: q, payload: { i } })));
    }
    const order = async (q: string) => {
      const leased: JobLease[] = [];
      for (;;) {
        const { leases } = await (leased.length % 2 ? a : b).jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 6 });
        if (leases.length === 0) return leased;
        leased.push(...leases);
      }
    };
    const fairOrder = await order(fair);
    expect(fairOrder).toHaveLength(308);
    // Round-robin: within the first 12 leases every group came up 4 times.
    const firstTwelve = fairOrder.slice(0, 12).map((l) => l.job!.groupKey);
    expect(firstTwelve.filter((g) => g === "small")).toHaveLength(4);
    expect(firstTwelve.filter((g) => g === "")).toHaveLength(4);
    // Within a group, priority order.
    const bigPriorities = fairOrder.filter((l) => l.job!.groupKey === "big").map((l) => l.job!.priority);
    expect(bigPriorities).toEqual([...bigPriorities].sort((x, y) => y - x));

    // Without fair the small group waits behind the backlog's higher priorities.
    const unfairOrder = await order(unfair);
    expect(unfairOrder.findIndex((l) => l.job!.groupKey === "small")).toBeGreaterThan(150);
  });
});

/** A seeded generator, so a failing run can be replayed. */
function random(seed: number) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
}

describe("changing a queue's config", () => {
  it("a limit added to a fair queue holds from the next lease on, on every replica", async () => {
    const q = queue("fair-then-limited");
    await a.jobs.updateQueueConfig({ config: { queue: q, fair: true } });
    await enqueueAll(a, Array.from({ length: 40 }, (_, i) => ({ queue: q, groupKey: `g${i % 4}` })));
    // Both replicas lease the fair queue (and remember it as fair alone).
    expect((await a.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 4 })).leases.map((l) => l.job!.groupKey).sort()).toEqual(["g0", "g1", "g2", "g3"]);
    expect((await b.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 4 })).leases).toHaveLength(4);
    await b.jobs.updateQueueConfig({ config: { queue: q, maxRunningPerGroup: 3 } });
    for (const client of [a, b]) {
      const { leases } = await client.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 40 });
      expect(leases.length).toBeLessThanOrEqual(4);
    }
    expect((await a.jobs.getQueueStats({ queue: q })).runningByGroup).toEqual({ g0: 3, g1: 3, g2: 3, g3: 3 });
  });

  it("waits for the leases in flight, which hold the queue's lease lock", async () => {
    const q = queue("change-waits");
    await a.jobs.updateQueueConfig({ config: { queue: q, fair: true } });
    const ns = (await sql.query(`SELECT namespace FROM queue_configs WHERE queue = $1`, [q])).rows[0].namespace as string;
    // What a fair lease holds while it leases, held open.
    const leasing = await sql.connect();
    try {
      await leasing.query("BEGIN");
      await leasing.query("SELECT cairn_flow_lock_queue($1, $2, false)", [ns, q]);
      let changed = false;
      const change = b.jobs.updateQueueConfig({ config: { queue: q, maxRunningPerGroup: 1 } }).then(() => (changed = true));
      await waitBlockedBy(leasing);
      expect(changed).toBe(false);
      await leasing.query("COMMIT");
      await change;
    } finally {
      leasing.release();
    }
    expect((await a.jobs.getQueueConfig({ queue: q })).maxRunningPerGroup).toBe(1);
  });
});

describe("limits under chaos, on two replicas", () => {
  // With max_running, leases of the queue take turns (the queue's advisory
  // lock, exclusive); with per-group limits alone, they take turns per group
  // (group try-locks under the queue's lock taken shared), fair or not.
  it.each([
    { name: "max_running and max_running_per_group", maxRunning: 7, fair: false },
    { name: "max_running_per_group alone, fair", maxRunning: 0, fair: true },
  ])("never holds more leases than $name allow, through crashes, retries and dropped streams", { timeout: 60_000 }, async ({ maxRunning, fair }) => {
    const q = queue("chaos");
    const MAX_RUNNING = maxRunning || Infinity;
    const PER_GROUP = 2;
    const JOBS = 400;
    const groups = ["g0", "g1", "g2", "g3", "g4", "g5", ""];
    await a.jobs.updateQueueConfig({ config: { queue: q, maxRunning, maxRunningPerGroup: PER_GROUP, fair } });
    await enqueueAll(
      b,
      Array.from({ length: JOBS }, (_, i) => ({
        queue: q,
        groupKey: groups[i % groups.length],
        priority: i % 5,
        maxAttempts: 4,
        backoff: { initialDelay: seconds(0.05), maxDelay: seconds(0.2), multiplier: 2 },
      })),
    );

    let done = false;
    const completed = new Map<string, number>();
    let vanished = 0;
    let dropped = 0;
    /** What a worker does with a lease: vanish (the lease expires and is rescued), fail (a retry) or complete. */
    async function work(client: CairnClient, l: JobLease, rand: () => number) {
      await sleep(rand() * 15);
      const r = rand();
      if (r < 0.04) {
        vanished++;
        return;
      }
      const call =
        r < 0.08
          ? client.jobs.failJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken, error: { message: "flaky" } })
          : client.jobs.completeJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken });
      // A 1 s lease may run out on a busy machine: then the answer is LEASE_LOST.
      const outcome = await failure(call).catch(() => undefined);
      if (outcome === undefined && r >= 0.08) completed.set(l.job!.jobId, (completed.get(l.job!.jobId) ?? 0) + 1);
      if (outcome !== undefined) expect(outcome.reason).toBe("LEASE_LOST");
    }

    async function leaseWorker(client: CairnClient, w: number) {
      const rand = random(w + 1);
      while (!done) {
        const { leases } = await client.jobs.leaseJobs({ queue: q, workerId: `lease-${w}`, maxJobs: 2 + w, leaseDuration: seconds(1), wait: seconds(0.3) });
        await Promise.all(leases.map((l) => work(client, l, rand)));
      }
    }

    async function streamWorker(client: CairnClient, w: number) {
      const rand = random(w + 100);
      while (!done) {
        const call = client.jobs.streamJobs({ queue: q, workerId: `stream-${w}`, maxInFlight: 3, leaseDuration: seconds(1) });
        let received = 0;
        await new Promise<void>((resolve) => {
          const pending = new Set<Promise<void>>();
          call.on("data", (l: JobLease) => {
            // Every 25th lease the stream drops with its leases unanswered: they are given back.
            if (++received % 25 === 0) {
              dropped++;
              call.cancel();
              return;
            }
            const p = work(client, l, rand);
            pending.add(p);
            void p.finally(() => pending.delete(p));
          });
          call.on("error", () => resolve());
          call.on("end", () => resolve());
          const stop = setInterval(() => {
            if (done) {
              clearInterval(stop);
              void Promise.all(pending).then(() => call.cancel());
            }
          }, 50);
          call.on("close", () => clearInterval(stop));
        });
      }
    }

    const workers = Promise.all([
      leaseWorker(a, 0),
      leaseWorker(b, 1),
      leaseWorker(a, 2),
      leaseWorker(b, 3),
      streamWorker(a, 4),
      streamWorker(b, 5),
    ]);
    try {
      await Promise.race([
        waitFor(
          "every job to finish",
          async () => (await sql.query(`SELECT count(*)::int AS n FROM jobs WHERE queue = $1 AND state NOT IN ('SUCCEEDED', 'DEAD')`, [q])).rows[0].n === 0,
          45_000,
        ),
        workers,
      ]);
    } finally {
      done = true;
      await workers;
    }

    expect(vanished).toBeGreaterThan(0);
    expect(dropped).toBeGreaterThan(0);
    const final = (await sql.query(`SELECT job_id, state FROM jobs WHERE queue = $1`, [q])).rows as { job_id: string; state: string }[];
    for (const row of final) expect(completed.get(row.job_id) ?? 0, row.job_id).toBe(row.state === "SUCCEEDED" ? 1 : 0);

    const perQueue = (await maxConcurrent(q, "queue")).get(q)!;
    const perGroup = await maxConcurrent(q, "group_key");
    expect(perQueue).toBeLessThanOrEqual(MAX_RUNNING);
    for (const [group, most] of perGroup) expect(most, `group ${JSON.stringify(group)}`).toBeLessThanOrEqual(PER_GROUP);
    // The limits were reached (the workers could have held far more), so the bounds above were tested.
    if (maxRunning) expect(perQueue).toBe(MAX_RUNNING);
    expect([...perGroup.values()].filter((most) => most === PER_GROUP).length).toBeGreaterThan(3);
  });

  it("a rate limit never lets more than count leases into any window of its period", { timeout: 30_000 }, async () => {
    const perGroup = queue("rate-group");
    const perQueue = queue("rate-queue");
    const period = 0.4;
    await a.jobs.updateQueueConfig({ config: { queue: perGroup, rateLimit: { count: 3, period: seconds(period), scope: RateLimitScope.RATE_LIMIT_SCOPE_GROUP } } });
    await b.jobs.updateQueueConfig({ config: { queue: perQueue, rateLimit: { count: 4, period: seconds(period) } } });
    for (const q of [perGroup, perQueue]) {
      await enqueueAll(a, Array.from({ length: 100 }, (_, i) => ({ queue: q, groupKey: i % 2 ? "key-1" : "key-2" })));
    }
    let done = false;
    const leaseWorker = async (client: CairnClient, q: string, w: number) => {
      while (!done) {
        const { leases } = await client.jobs.leaseJobs({ queue: q, workerId: `w${w}`, maxJobs: 2, wait: seconds(0.5) });
        await Promise.all(leases.map((l) => client.jobs.completeJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken })));
      }
    };
    const workers = Promise.all([perGroup, perQueue].flatMap((q) => [a, b, a, b].map((c, w) => leaseWorker(c, q, w))));
    await sleep(2_000);
    done = true;
    await workers;

    /** The most lease starts within any window (t − period, t], per key. */
    const busiestWindow = async (q: string, by: "queue" | "group_key") => {
      const rows = (await sql.query(`SELECT ${by} AS key, (extract(epoch FROM at) * 1000000)::bigint::text AS us FROM lease_log WHERE queue = $1 AND running ORDER BY at`, [q]))
        .rows as { key: string; us: string }[];
      const most = new Map<string, { window: number; total: number }>();
      const starts = new Map<string, number[]>();
      for (const r of rows) {
        const t = Number(r.us);
        const list = starts.get(r.key) ?? [];
        list.push(t);
        starts.set(r.key, list);
        const inWindow = list.filter((s) => s > t - period * 1_000_000).length;
        most.set(r.key, { window: Math.max(most.get(r.key)?.window ?? 0, inWindow), total: list.length });
      }
      return most;
    };
    const groups = await busiestWindow(perGroup, "group_key");
    expect([...groups.keys()].sort()).toEqual(["key-1", "key-2"]);
    for (const [, { window, total }] of groups) {
      // The count was reached (so the bound was tested), and over 2 s and the last calls' wait of 0.5 s
      // (the span of 6.25 periods touches at most 7 windows) at most 3 × 7 leases.
      expect(window).toBe(3);
      expect(total).toBeGreaterThanOrEqual(6);
      expect(total).toBeLessThanOrEqual(21);
    }
    const whole = (await busiestWindow(perQueue, "queue")).get(perQueue)!;
    expect(whole.window).toBe(4);
    expect(whole.total).toBeGreaterThanOrEqual(8);
    expect(whole.total).toBeLessThanOrEqual(28);
  });

  it("turning flow control on waits for leases in flight, and a lease that queued behind it sees the limit", async () => {
    const q = queue("turn-on");
    await enqueueAll(a, Array.from({ length: 30 }, () => ({ queue: q })));
    const ns = (await sql.query(`SELECT DISTINCT namespace FROM jobs WHERE queue = $1`, [q])).rows[0].namespace as string;
    // What UpdateQueueConfig does when a queue becomes controlled, held open.
    const updater = await sql.connect();
    try {
      await updater.query("BEGIN");
      await updater.query("LOCK TABLE queue_configs IN ACCESS EXCLUSIVE MODE");
      await updater.query("INSERT INTO queue_configs (namespace, queue, max_running) VALUES ($1, $2, 3)", [ns, q]);
      const leasing = a.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 30 });
      await waitBlockedBy(updater);
      await updater.query("COMMIT");
      expect((await leasing).leases).toHaveLength(3);
    } finally {
      updater.release();
    }
    expect((await b.jobs.leaseJobs({ queue: q, workerId: "w", maxJobs: 30 })).leases).toEqual([]);
  });
});
