// The outbox write, three ways: a session update, a KV put and an enqueue
// in one TransactionService.Commit; the same three as separate gRPC calls
// (three commits, not atomic); and, as the raw side of each, the very store
// functions those calls run, on a raw pg pool of the same size: in one
// BEGIN..COMMIT for the Commit, each on its own for the separate calls. So
// the Commit row shows what gRPC, validation and the lock plan add to one
// transaction, and the two Cairn columns what one call saves over three.
import { CairnClient } from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import { Database, type Queryable } from "../src/db/database.js";
import { createPool } from "../src/db/pool.js";
import { enqueueAll } from "../src/jobs/enqueue.js";
import { putEntry } from "../src/keyvalue/writes.js";
import { applyUpdates } from "../src/sessions/updates.js";
import { startBenchEnvironment } from "./environment.js";
import { compare, formatTable } from "./measure.js";

const CONCURRENCIES = [1, 16];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);

const state = (i: number) => ({ step: i, memory: { goal: "benchmark", notes: ["a", "b", "c"] } });
const job = (i: number) => ({ queue: "bench-outbox", payload: { step: i } });

export async function benchCommit(): Promise<void> {
  const env = await startBenchEnvironment();
  const client = new CairnClient(env.cairnAddress);
  const pool = createPool({ connectionString: env.databaseUrl, max: env.poolMax, statementTimeoutMs: 30_000 });
  const db = new Database(pool);
  try {
    const { sessions } = await client.sessions.batchCreateSessions({
      requests: Array.from({ length: 1000 }, () => ({ session: { agentId: "bench", state: state(0) } })),
    });
    // Each worker writes sessions and keys of its own, so nothing conflicts.
    const own = (worker: number, i: number) => sessions[(worker * 64 + (i % 16)) % sessions.length]!.sessionId;
    const key = (worker: number, i: number) => `bench/${worker}/${i % 16}`;

    const commit = (w: number, i: number) =>
      client.transactions.commit({
        operations: [
          { op: { $case: "updateSession", value: { session: { sessionId: own(w, i), state: state(i) }, updateMask: ["state"] } } },
          { op: { $case: "put", value: { entry: { key: key(w, i), value: { $case: "jsonValue", value: { step: i } } } } } },
          { op: { $case: "enqueueJob", value: { job: job(i) } } },
        ],
      });
    const separate = async (w: number, i: number) => {
      await client.sessions.updateSession({ session: { sessionId: own(w, i), state: state(i) }, updateMask: ["state"] });
      await client.keyValue.put({ entry: { key: key(w, i), value: { $case: "jsonValue", value: { step: i } } } });
      await client.jobs.enqueueJob({ job: job(i) });
    };
    // The statements the three calls run, in the caller's queryable.
    const writes = async (q: Queryable, w: number, i: number) => {
      await applyUpdates(q, [{ ns: "default", sessionId: own(w, i), patch: { state: state(i) }, expectedVersion: undefined }]);
      const entry = { key: key(w, i), value: { kind: "json" as const, json: { step: i } }, sessionId: "", ttlMicros: null, expectedVersion: undefined };
      await putEntry(q, "default", entry);
      const backoff = { initialMs: 1000, maxMs: 3_600_000, multiplier: 2 };
      const newJob = { jobId: uuidv7(), ...job(i), priority: 0, runTime: null, maxAttempts: 5, backoff, dedupeKey: null, sessionId: "" };
      await enqueueAll(q, "default", [{ job: newJob, idempotency: null }]);
    };
    const rows = await compare(
      [
        ["Commit (update + put + enqueue)", commit, (w, i) => db.transaction({}, (tx) => writes(tx, w, i))],
        ["3 separate calls", separate, (w, i) => writes(db.on({}), w, i)],
      ],
      CONCURRENCIES,
      SECONDS,
    );
    console.log(`\noutbox write: session update + KV put + enqueue (${SECONDS} s per cell, pool ${env.poolMax}, node ${process.version})\n`);
    console.log(formatTable(rows));
  } finally {
    client.close();
    await pool.end();
    await env.close();
  }
}
