// The chaos run: 5,000 jobs, 8 workers across 2 daemon replicas on one
// database. Some LeaseJobs workers vanish mid-job (their leases expire and
// are rescued); StreamJobs workers drop their streams now and then (their
// unfinished leases are given back). In the end every job is SUCCEEDED or
// DEAD, no job was completed under two leases, each job's attempt count is
// exactly what happened to it, and every stale completion got LEASE_LOST.
import { CairnClient, errorDetails, type JobLease } from "@cairn/client";
import type { ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import pg from "pg";
import { type Replicas, startReplicas } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

const JOBS = 5000;
const QUEUE = "chaos";
const MAX_ATTEMPTS = 4;

let replicas: Replicas;
let clients: CairnClient[] = [];
let database: { url: string };

beforeAll(async () => {
  replicas = await startReplicas(2, { leaseRescueIntervalMs: 100, dbPoolMax: 10 });
  clients = replicas.clients;
  database = { url: replicas.databaseUrl };
});
afterAll(async () => {
  await replicas?.stop();
});

const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) });

/** A seeded generator, so a failing run can be replayed. */
function random(seed: number) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
}

it("every job ends SUCCEEDED or DEAD, completed under one lease, with honest attempt counts", { timeout: 180_000 }, async () => {
  for (let i = 0; i < JOBS; i += 1000) {
    await clients[0]!.jobs.batchEnqueueJobs({
      requests: Array.from({ length: 1000 }, (_, j) => ({
        job: {
          queue: QUEUE,
          jobId: `job-${i + j}`,
          payload: { i: i + j },
          maxAttempts: MAX_ATTEMPTS,
          backoff: { initialDelay: seconds(0.05), maxDelay: seconds(0.2), multiplier: 2 },
        },
      })),
    });
  }

  const leasesOf = new Map<string, number>(); // leases handed to us, per job
  const released = new Map<string, number>(); // stream leases given back on a drop, per job
  const completedOk = new Map<string, number>();
  const stale: { jobId: string; leaseToken: string }[] = [];
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  const record = (l: JobLease) => bump(leasesOf, l.job!.jobId);
  let done = false;

  async function leaseWorker(client: CairnClient, w: number) {
    const rand = random(w + 1);
    while (!done) {
      const { leases } = await client.jobs.leaseJobs({ queue: QUEUE, workerId: `lease-${w}`, maxJobs: 50, leaseDuration: seconds(1), wait: seconds(0.3) });
      const completions = [];
      for (const l of leases) {
        record(l);
        const r = rand();
        if (r < 0.02) stale.push({ jobId: l.job!.jobId, leaseToken: l.leaseToken }); // vanishes: no heartbeat, no answer
        else if (r < 0.05) await failOrLoseLease(client, l);
        else completions.push({ jobId: l.job!.jobId, leaseToken: l.leaseToken, result: { by: w } });
      }
      if (completions.length > 0) {
        const { results } = await client.jobs.batchCompleteJobs({ requests: completions });
        for (const r of results) {
          if (r.ok) bump(completedOk, r.jobId);
          // A 1 s lease may run out on a busy machine: refused, never NOT_FOUND.
          else expect(r.reason, r.jobId).toBe("LEASE_LOST");
        }
      }
    }
  }

  /**
   * Fails a job; on a busy machine its 1 s lease may have run out first, and
   * then the answer must be LEASE_LOST (the job was rescued: its attempt
   * stays counted). Any other error fails the run.
   */
  async function failOrLoseLease(client: CairnClient, l: JobLease) {
    try {
      await client.jobs.failJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken, error: { message: "flaky" } });
    } catch (error) {
      if (errorDetails(error as ServiceError).errorInfo?.reason !== "LEASE_LOST") throw error;
      stale.push({ jobId: l.job!.jobId, leaseToken: l.leaseToken });
    }
  }

  async function streamWorker(client: CairnClient, w: number) {
    while (!done) {
      const call = client.jobs.streamJobs({ queue: QUEUE, workerId: `stream-${w}`, maxInFlight: 20, leaseDuration: seconds(30) });
      const unanswered = new Map<string, string>();
      const pending = new Set<Promise<void>>();
      let received = 0;
      let vanishing = false;
      await new Promise<void>((resolve) => {
        call.on("data", (l: JobLease) => {
          record(l);
          received++;
          if (vanishing) {
            // Arrived while dropping the stream: left unanswered too.
            unanswered.set(l.job!.jobId, l.leaseToken);
            return;
          }
          if (received % 150 === 0) {
            vanishing = true;
            // Vanish: drop the stream with this lease and every unanswered one.
            unanswered.set(l.job!.jobId, l.leaseToken);
            call.pause();
            void Promise.all(pending).then(() => {
              for (const [jobId, leaseToken] of unanswered) {
                bump(released, jobId);
                stale.push({ jobId, leaseToken });
              }
              call.cancel();
              resolve();
            });
            return;
          }
          unanswered.set(l.job!.jobId, l.leaseToken);
          const p = client.jobs.completeJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken }).then(
            () => {
              bump(completedOk, l.job!.jobId);
              unanswered.delete(l.job!.jobId);
            },
            () => {
              unanswered.delete(l.job!.jobId);
            },
          );
          pending.add(p);
          void p.finally(() => pending.delete(p));
        });
        call.on("error", () => resolve());
        call.on("end", () => resolve());
        const stop = setInterval(() => {
          if (done) {
            clearInterval(stop);
            void Promise.all(pending).then(() => {
              call.cancel();
              resolve();
            });
          }
        }, 100);
      });
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const workers = [0, 1, 2, 3, 4, 5, 6, 7].map((w) =>
    w % 2 === 0 ? leaseWorker(clients[w % 4 < 2 ? 0 : 1]!, w) : streamWorker(clients[w % 4 < 2 ? 1 : 0]!, w),
  );

  // Workers run until `done`; one that throws ends the wait with its error.
  const running = Promise.all(workers);
  const sql = new pg.Client({ connectionString: database.url });
  await sql.connect();
  try {
    await Promise.race([
      waitFor(
        "every job to finish",
        async () => (await sql.query(`SELECT count(*)::int AS n FROM jobs WHERE state NOT IN ('SUCCEEDED', 'DEAD')`)).rows[0].n === 0,
        150_000,
      ),
      running,
    ]);
    done = true;
    await running;

    const rows = (await sql.query(`SELECT job_id, state, attempt FROM jobs ORDER BY job_id`)).rows as { job_id: string; state: string; attempt: number }[];
    expect(rows).toHaveLength(JOBS);
    let succeeded = 0;
    for (const row of rows) {
      const ok = completedOk.get(row.job_id) ?? 0;
      // One successful completion for a SUCCEEDED job, none for a DEAD one: never two leases.
      expect(ok, row.job_id).toBe(row.state === "SUCCEEDED" ? 1 : 0);
      // attempt = leases handed out, less the stream leases given back on a drop.
      expect(row.attempt, row.job_id).toBe((leasesOf.get(row.job_id) ?? 0) - (released.get(row.job_id) ?? 0));
      if (row.state === "DEAD") expect(row.attempt).toBe(MAX_ATTEMPTS);
      if (row.state === "SUCCEEDED") succeeded++;
    }
    expect(succeeded).toBeGreaterThan(JOBS * 0.95);
    expect(stale.length).toBeGreaterThan(0);
    expect(released.size).toBeGreaterThan(0);

    // Every stale lease, answered late, is refused and changes nothing.
    for (let i = 0; i < stale.length; i += 50) {
      const outcomes = await Promise.allSettled(
        stale.slice(i, i + 50).map((s, j) => clients[j % 2]!.jobs.completeJob({ ...s, result: { late: true } })),
      );
      for (const o of outcomes) {
        expect(o.status).toBe("rejected");
        expect(errorDetails((o as PromiseRejectedResult).reason).errorInfo?.reason).toBe("LEASE_LOST");
      }
    }
    const late = await sql.query(`SELECT count(*)::int AS n FROM jobs WHERE result @> '{"late": true}'`);
    expect(late.rows[0].n).toBe(0);
  } finally {
    done = true;
    await running.catch(() => {});
    await sql.end();
  }
});
