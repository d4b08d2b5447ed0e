// Get, Put and Increment over gRPC against the same statements
// (the key-value store's own functions) on a raw pg pool of the same size, in one run.
// Each worker increments and puts keys of its own, so the numbers measure
// throughput rather than contention on one key (that is serialized, and
// exact, by design). Cairn coalesces the Get, Put and Increment calls that
// arrive together (one statement, one commit); the raw side runs each call
// in its own transaction.
import { CairnClient } from "@cairn/client";
import { Database } from "../src/db/database.js";
import { createPool } from "../src/db/pool.js";
import { readEntries } from "../src/keyvalue/store.js";
import { putAll, writeAll } from "../src/keyvalue/writes.js";
import { startBenchEnvironment } from "./environment.js";
import { compare, formatTable } from "./measure.js";

const CONCURRENCIES = [1, 16, 64];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const KEYS = 2000;

const value = (i: number) => ({ config: { model: "m", temperature: 0.2 }, step: i });

export async function benchKeyValue(): Promise<void> {
  const env = await startBenchEnvironment();
  const client = new CairnClient(env.cairnAddress);
  const pool = createPool({ connectionString: env.databaseUrl, max: env.poolMax, statementTimeoutMs: 30_000 });
  const q = new Database(pool).on({});
  try {
    for (let i = 0; i < KEYS; i += 500) {
      await client.keyValue.batchPut({
        requests: Array.from({ length: 500 }, (_, j) => ({ entry: { key: `bench/${i + j}`, value: { $case: "jsonValue", value: value(0) } } })),
      });
    }
    const pick = (w: number, i: number) => `bench/${(w * 7919 + i * 31) % KEYS}`;
    const own = (side: string, w: number, i: number) => `bench-${side}/${w}/${i % 8}`;
    const rows = await compare(
      [
        ["Get", (w, i) => client.keyValue.get({ key: pick(w, i) }), (w, i) => readEntries(q, "default", [pick(w, i)])],
        [
          "Put",
          (w, i) => client.keyValue.put({ entry: { key: own("c", w, i), value: { $case: "jsonValue", value: value(i) } } }),
          (w, i) =>
            putAll(q, "default", [{ key: own("r", w, i), value: { kind: "json", json: value(i) }, sessionId: "", ttlMicros: null, expectedVersion: undefined }]),
        ],
        [
          "Increment",
          (w) => client.keyValue.increment({ key: `count-c/${w}`, delta: 1 }),
          (w) => writeAll(q, "default", [{ kind: "increment", key: `count-r/${w}`, delta: 1, ttlMicros: null }]),
        ],
      ],
      CONCURRENCIES,
      SECONDS,
    );
    console.log(`\nkey-value benchmark (${SECONDS} s per cell, pool ${env.poolMax}, node ${process.version})\n`);
    console.log(formatTable(rows));
  } finally {
    client.close();
    await pool.end();
    await env.close();
  }
}
