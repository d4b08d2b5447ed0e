// Get, Put and Increment over gRPC against the same statements
// (the key-value store's own functions) on a raw pg pool of the same size, in one run.
// Each worker increments and puts keys of its own, so the numbers measure
// throughput rather than contention on one key (that is serialized, and
// exact, by design). Cairn coalesces the Get, Put and Increment calls that
// arrive together (one statement, one commit); the raw side runs each call
// in its own transaction.
//
// Then, at concurrency 64, against etcd 3.4 (when installed; see
// peers/etcd.ts), both through grpc-js: Put, Get (etcd serializable and
// linearizable), compare-and-set (Put with expected_version against a Txn
// comparing mod_revision, each worker on a key of its own so every call
// succeeds), and watch lag: one watcher on a prefix while ~500 puts/s land
// under it, from each put's acknowledgement (and from its sending) to its
// event's arrival.
import { CairnClient, type WatchResponse } from "@cairn/client";
import { performance } from "node:perf_hooks";
import { Database } from "../src/db/database.js";
import { createPool } from "../src/db/pool.js";
import { readEntries } from "../src/keyvalue/store.js";
import { putAll, writeAll } from "../src/keyvalue/writes.js";
import { startBenchEnvironment } from "./environment.js";
import { compare, formatTable, measure, type Op, percentile, type Result } from "./measure.js";
import { compareAndSet, type EtcdPeer, startEtcd } from "./peers/etcd.js";

const CONCURRENCIES = [1, 16, 64];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const KEYS = 2000;
const PEER_CONCURRENCY = 64;
const WATCH_RATE = 500;

const value = (i: number) => ({ config: { model: "m", temperature: 0.2 }, step: i });
/** A key of the prefilled KEYS for worker `w`'s read `i`. */
const pick = (w: number, i: number) => `bench/${(w * 7919 + i * 31) % KEYS}`;
/** Worker `w`'s own keys on one side (its writes do not contend with other workers'). */
const own = (side: string, w: number, i: number) => `bench-${side}/${w}/${i % 8}`;

export async function benchKeyValue(): Promise<void> {
  const env = await startBenchEnvironment();
  const client = new CairnClient(env.cairnAddress);
  const pool = createPool({ connectionString: env.databaseUrl, max: env.poolMax, statementTimeoutMs: 30_000 });
  const q = new Database(pool).on({});
  const etcd = await startEtcd();
  try {
    for (let i = 0; i < KEYS; i += 500) {
      await client.keyValue.batchPut({
        requests: Array.from({ length: 500 }, (_, j) => ({ entry: { key: `bench/${i + j}`, value: { $case: "jsonValue", value: value(0) } } })),
      });
    }
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
    if (etcd) await benchAgainstEtcd(client, etcd);
  } finally {
    client.close();
    await pool.end();
    await env.close();
    await etcd?.close();
  }
}

/** Measures each pair back to back at PEER_CONCURRENCY, a short warm-up before each; rows with Cairn/peer. */
async function compareWithPeer(peer: string, pairs: [name: string, cairn: Op, peer: Op][]): Promise<string[][]> {
  const rows = [["method", "conc", "cairn calls/s", "p50 ms", "p99 ms", `${peer} calls/s`, "p50 ms", "p99 ms", `cairn/${peer}`]];
  const fmt = (r: Result) => [r.callsPerSecond.toFixed(0), r.p50Ms.toFixed(2), r.p99Ms.toFixed(2)];
  for (const [name, cairnOp, peerOp] of pairs) {
    await measure(PEER_CONCURRENCY, 0.5, cairnOp);
    const c = await measure(PEER_CONCURRENCY, SECONDS, cairnOp);
    await measure(PEER_CONCURRENCY, 0.5, peerOp);
    const p = await measure(PEER_CONCURRENCY, SECONDS, peerOp);
    if (c.errors || p.errors) console.error(`${name}: ${c.errors} cairn errors, ${p.errors} ${peer} errors`);
    rows.push([name, String(PEER_CONCURRENCY), ...fmt(c), ...fmt(p), `${((100 * c.callsPerSecond) / p.callsPerSecond).toFixed(0)}%`]);
    console.error(rows[rows.length - 1]!.join(" "));
  }
  return rows;
}

async function benchAgainstEtcd(client: CairnClient, etcd: EtcdPeer): Promise<void> {
  const kv = etcd.client;
  for (let i = 0; i < KEYS; i += PEER_CONCURRENCY) {
    const batch = Math.min(PEER_CONCURRENCY, KEYS - i);
    await Promise.all(Array.from({ length: batch }, (_, j) => kv.put(`bench/${i + j}`).value(JSON.stringify(value(0))).exec()));
  }
  // Compare-and-set: each worker's key and the version (Cairn) or mod_revision (etcd) it last wrote.
  const casKey = (side: string, w: number) => `cas-${side}/${w}`;
  const workers = Array.from({ length: PEER_CONCURRENCY }, (_, w) => w);
  const versions = await Promise.all(
    workers.map(async (w) => (await client.keyValue.put({ entry: { key: casKey("c", w), value: { $case: "jsonValue", value: value(0) } } })).version),
  );
  const modRevisions = await Promise.all(workers.map(async (w) => (await kv.put(casKey("e", w)).value(JSON.stringify(value(0))).exec()).header.revision));

  const rows = await compareWithPeer("etcd", [
    [
      "Put",
      (w, i) => client.keyValue.put({ entry: { key: own("c", w, i), value: { $case: "jsonValue", value: value(i) } } }),
      (w, i) => kv.put(own("e", w, i)).value(JSON.stringify(value(i))).exec(),
    ],
    ["Get (etcd serializable)", (w, i) => client.keyValue.get({ key: pick(w, i) }), (w, i) => kv.get(pick(w, i)).serializable(true).json()],
    ["Get (etcd linearizable)", (w, i) => client.keyValue.get({ key: pick(w, i) }), (w, i) => kv.get(pick(w, i)).json()],
    [
      "compare-and-set",
      async (w, i) => {
        const entry = await client.keyValue.put({
          entry: { key: casKey("c", w), value: { $case: "jsonValue", value: value(i) } },
          expectedVersion: versions[w],
        });
        versions[w] = entry.version;
      },
      async (w, i) => {
        modRevisions[w] = await compareAndSet(kv, casKey("e", w), modRevisions[w]!, JSON.stringify(value(i)));
      },
    ],
  ]);
  const cairnLag = await watchLag({
    async watch(prefix, onPut) {
      const stream = client.keyValue.watch({ prefix, startRevision: 0 });
      stream.on("data", (m: WatchResponse) => {
        if (m.message?.$case === "event" && m.message.value.entry) onPut(m.message.value.entry.key);
      });
      stream.on("error", () => {});
      return async () => stream.cancel();
    },
    put: (key, i) => client.keyValue.put({ entry: { key, value: { $case: "jsonValue", value: value(i) } } }),
    prefix: "watch-c/",
  });
  const etcdLag = await watchLag({
    async watch(prefix, onPut) {
      const watcher = await kv.watch().prefix(prefix).create();
      watcher.on("put", (entry) => onPut(entry.key.toString()));
      return () => watcher.cancel();
    },
    put: (key, i) => kv.put(key).value(JSON.stringify(value(i))).exec(),
    prefix: "watch-e/",
  });

  console.log(`\nagainst etcd ${etcd.version} (one member on loopback, default durability; ${SECONDS} s per cell)\n`);
  console.log(formatTable(rows));
  // No ratio against a lag that rounds to 0 ms (the event came with the ack).
  const times = (c: number, e: number) => (e >= 0.05 ? `${(c / e).toFixed(1)}×` : "-");
  const cells = (l: Lag) => [
    l.afterAck.p50.toFixed(1),
    l.afterAck.p99.toFixed(1),
    l.afterSend.p50.toFixed(1),
    l.afterSend.p99.toFixed(1),
    `${l.beforeAck}`,
    `${l.delivered}/${l.sent}`,
  ];
  console.log(
    `\nwatch lag: one watcher, ${WATCH_RATE} puts/s for ${SECONDS} s; ` +
      `event received after the put's ack (an event before it counts 0) and after the put was sent\n`,
  );
  console.log(
    formatTable([
      ["", "after ack p50 ms", "p99 ms", "after send p50 ms", "p99 ms", "before ack", "delivered"],
      ["cairn Watch", ...cells(cairnLag)],
      ["etcd Watch", ...cells(etcdLag)],
      [
        "cairn/etcd",
        times(cairnLag.afterAck.p50, etcdLag.afterAck.p50),
        times(cairnLag.afterAck.p99, etcdLag.afterAck.p99),
        times(cairnLag.afterSend.p50, etcdLag.afterSend.p50),
        times(cairnLag.afterSend.p99, etcdLag.afterSend.p99),
        "",
        "",
      ],
    ]),
  );
}

interface WatchSide {
  /** Starts a watch on `prefix` calling `onPut` with each put key; resolves to what stops it. */
  watch(prefix: string, onPut: (key: string) => void): Promise<() => Promise<unknown>>;
  put(key: string, i: number): Promise<unknown>;
  prefix: string;
}

interface Percentiles {
  p50: number;
  p99: number;
}

interface Lag {
  afterAck: Percentiles;
  afterSend: Percentiles;
  /** Events that arrived before their put's acknowledgement. */
  beforeAck: number;
  delivered: number;
  sent: number;
}

function percentiles(samples: number[]): Percentiles {
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

/**
 * Puts WATCH_RATE keys a second under the side's prefix, on a fixed schedule
 * whatever the puts' latency, for SECONDS, while one watcher follows the
 * prefix; lag of each put = its event's arrival - its acknowledgement
 * (and - its sending, which adds the put's own latency).
 */
async function watchLag(side: WatchSide): Promise<Lag> {
  const total = Math.round(WATCH_RATE * SECONDS);
  const sentAt = new Float64Array(total).fill(NaN);
  const ackAt = new Float64Array(total).fill(NaN);
  const eventAt = new Float64Array(total).fill(NaN);
  const ready = `${side.prefix}ready`;
  let live = false;
  let delivered = 0;
  const stop = await side.watch(side.prefix, (key) => {
    if (key === ready) live = true;
    const i = Number(key.slice(side.prefix.length));
    if (Number.isInteger(i) && i < total && Number.isNaN(eventAt[i]!)) {
      eventAt[i] = performance.now();
      delivered++;
    }
  });
  // A watch from "now" misses changes committed before it is registered: wait until one arrives.
  for (let attempt = 0; !live; attempt++) {
    if (attempt === 50) throw new Error(`watch on ${side.prefix} never delivered`);
    await side.put(ready, 0);
    await sleep(100);
  }
  const pending: Promise<unknown>[] = [];
  const started = performance.now();
  for (let sent = 0; sent < total; ) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * WATCH_RATE) + 1);
    for (; sent < due; sent++) {
      const i = sent;
      sentAt[i] = performance.now();
      pending.push(side.put(`${side.prefix}${i}`, i).then(() => (ackAt[i] = performance.now())));
    }
    await sleep(1);
  }
  const failed = (await Promise.allSettled(pending)).filter((r) => r.status === "rejected").length;
  if (failed) console.error(`watch lag on ${side.prefix}: ${failed} puts failed`);
  const deadline = performance.now() + 5000;
  while (delivered < total - failed && performance.now() < deadline) await sleep(50);
  await stop();
  const afterAck = Array.from(ackAt, (ack, i) => eventAt[i]! - ack);
  return {
    afterAck: percentiles(afterAck.map((lag) => Math.max(0, lag))),
    afterSend: percentiles(Array.from(sentAt, (sent, i) => eventAt[i]! - sent)),
    beforeAck: afterAck.filter((lag) => lag < 0).length,
    delivered,
    sent: total,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
