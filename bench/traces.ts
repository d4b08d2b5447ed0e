// Trace ingestion and subscription lag.
//  1. IngestEvents: 4 concurrent streams sending batches of 500 events, over
//     gRPC, against raw COPY of the same rows (same columns, same indexes)
//     through pg, 4 concurrent COPYs of 500 rows, in the same run. Each
//     stream writes its own 50 traces, as an agent runtime writes its runs.
//  2. Subscriber lag: 50 subscribers, each tailing its own trace (an agent
//     following its run), while 2,000 events/s are ingested across those
//     traces; lag = delivery time - send time, so it includes the commit.
import { CairnClient, type SubscribeEventsResponse } from "@cairn/client";
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { startBenchEnvironment } from "./environment.js";
import { formatTable } from "./measure.js";

const STREAMS = 4;
const BATCH = 500;
const BATCHES_PER_STREAM = Number(process.env.BENCH_TRACE_BATCHES ?? 40);
const TRACES_PER_STREAM = 50;
const SUBSCRIBERS = 50;
const LAG_RATE = 2000;
const LAG_SECONDS = Number(process.env.BENCH_LAG_SECONDS ?? 10);

function payload(i: number) {
  return { tool: "search", args: { q: `query ${i}`, limit: 10 }, result: { hits: i % 17, ms: 12.5 }, tags: ["agent", "bench"] };
}

async function ingestThroughput(client: CairnClient): Promise<number> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: STREAMS }, async (_, s) => {
      const call = client.traces.ingestEvents();
      let acked = 0;
      let wake: () => void = () => {};
      call.on("data", () => {
        acked++;
        wake();
      });
      const failed = new Promise((_, reject) => call.on("error", reject));
      for (let b = 0; b < BATCHES_PER_STREAM; b++) {
        const events = Array.from({ length: BATCH }, (_, i) => ({
          traceId: `bench-${s}-${i % TRACES_PER_STREAM}`,
          sessionId: `session-${s}`,
          eventType: "tool.call",
          payload: payload(i),
        }));
        call.write({ batchId: `s${s}-b${b}`, events });
        // At most two batches in flight per stream.
        while (b + 1 - acked > 2) await Promise.race([new Promise<void>((r) => (wake = r)), failed]);
      }
      call.end();
      while (acked < BATCHES_PER_STREAM) await Promise.race([new Promise<void>((r) => (wake = r)), failed]);
    }),
  );
  return (STREAMS * BATCHES_PER_STREAM * BATCH) / ((performance.now() - started) / 1000);
}

/** COPY of the same rows (hashes and all precomputed) into an identical table. */
async function rawCopyThroughput(databaseUrl: string): Promise<number> {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query("DROP TABLE IF EXISTS trace_events_raw");
  await admin.query("CREATE TABLE trace_events_raw (LIKE trace_events INCLUDING ALL)");
  await admin.end();
  const now = new Date().toISOString();
  const rows = (s: number, b: number) => {
    const lines: string[] = [];
    for (let i = 0; i < BATCH; i++) {
      const offset = (s * BATCHES_PER_STREAM + b) * BATCH + i + 1;
      const hash = createHash("sha256").update(String(offset)).digest("hex");
      const json = JSON.stringify(payload(i)).replaceAll("\\", "\\\\");
      lines.push(
        ["default", offset, `raw-${s}-${i % TRACES_PER_STREAM}`, offset, `e${offset}`, `session-${s}`, "tool.call", 2, now, json, now, hash, hash].join("\t"),
      );
    }
    return lines.join("\n") + "\n";
  };
  const started = performance.now();
  await Promise.all(
    Array.from({ length: STREAMS }, async (_, s) => {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      for (let b = 0; b < BATCHES_PER_STREAM; b++) {
        const copy = client.query(
          copyFrom(
            `COPY trace_events_raw (namespace, event_offset, trace_id, sequence, event_id, session_id, event_type, severity,
               event_time, payload, ingest_time, prev_hash, event_hash) FROM STDIN`,
          ),
        );
        await pipeline(Readable.from([rows(s, b)]), copy);
      }
      await client.end();
    }),
  );
  return (STREAMS * BATCHES_PER_STREAM * BATCH) / ((performance.now() - started) / 1000);
}

async function subscriberLag(client: CairnClient): Promise<{ p50: number; p99: number; delivered: number; sent: number }> {
  const lags: number[] = [];
  const subs = Array.from({ length: SUBSCRIBERS }, (_, i) => {
    const stream = client.traces.subscribeEvents({ traceId: `lag-${i}`, fromNow: true });
    stream.on("data", (m: SubscribeEventsResponse) => {
      if (m.message?.$case === "event") lags.push(performance.timeOrigin + performance.now() - (m.message.value.payload!.sentAt as number));
    });
    stream.on("error", () => {});
    return stream;
  });
  await new Promise((r) => setTimeout(r, 1000));
  const perTick = LAG_RATE / 20; // 20 appends per second
  let sent = 0;
  const end = performance.now() + LAG_SECONDS * 1000;
  for (let tick = 0; performance.now() < end; tick++) {
    const due = performance.now() + 50;
    const events = Array.from({ length: perTick }, (_, i) => ({
      traceId: `lag-${(tick * perTick + i) % SUBSCRIBERS}`,
      eventType: "step",
      payload: { sentAt: performance.timeOrigin + performance.now(), i },
    }));
    await client.traces.appendEvents({ events });
    sent += events.length;
    await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
  }
  await new Promise((r) => setTimeout(r, 1000));
  for (const s of subs) s.cancel();
  const sorted = Float64Array.from(lags).sort();
  return {
    p50: sorted[Math.floor(sorted.length * 0.5)]!,
    p99: sorted[Math.floor(sorted.length * 0.99)]!,
    delivered: lags.length,
    sent,
  };
}

export async function benchTraces(): Promise<void> {
  const env = await startBenchEnvironment();
  const client = new CairnClient(env.cairnAddress);
  try {
    const cairn = await ingestThroughput(client);
    const raw = await rawCopyThroughput(env.databaseUrl);
    const lag = await subscriberLag(client);
    console.log(`\ntraces benchmark (node ${process.version})\n`);
    console.log(
      formatTable([
        ["ingestion", "streams", "batch", "events", "events/s"],
        ["cairn IngestEvents", String(STREAMS), String(BATCH), String(STREAMS * BATCHES_PER_STREAM * BATCH), cairn.toFixed(0)],
        ["raw pg COPY", String(STREAMS), String(BATCH), String(STREAMS * BATCHES_PER_STREAM * BATCH), raw.toFixed(0)],
        ["cairn/raw", "", "", "", `${((100 * cairn) / raw).toFixed(0)}%`],
      ]),
    );
    console.log(
      `\nsubscriber lag: ${SUBSCRIBERS} subscribers (one trace each), ${LAG_RATE} events/s for ${LAG_SECONDS} s: ` +
        `p50 ${lag.p50.toFixed(1)} ms, p99 ${lag.p99.toFixed(1)} ms (${lag.delivered}/${lag.sent} delivered)`,
    );
  } finally {
    client.close();
    await env.close();
  }
}
