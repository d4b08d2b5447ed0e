// Trace ingestion and subscription lag.
//  1. IngestEvents: 4 concurrent streams sending batches of 500 events, over
//     gRPC, against raw COPY of the same rows (same columns, same indexes)
//     through pg, 4 concurrent COPYs of 500 rows, in the same run. Each
//     stream writes its own 50 traces, as an agent runtime writes its runs.
//  2. Subscriber lag: 50 subscribers, each tailing its own trace (an agent
//     following its run), while 2,000 events/s are ingested across those
//     traces in BENCH_LAG_COMMITS commits a second (20: 100 events each; 500:
//     4 each, 25 sent at once every 50 ms); lag = delivery time - send time,
//     so it includes the commit.
// Both against NATS JetStream 2.9 when installed (see peers/nats.ts), with
// the same events as JSON messages, one subject per trace: (1) acknowledged
// publishes, each batch's 500 sent at once and awaited, two batches in flight
// per publisher, and (2) 50 ordered consumers (one subject each, from now,
// no acks) while the same 100 events every 50 ms are published and awaited.
import { CairnClient, type SubscribeEventsResponse } from "@cairn/client";
import { DeliverPolicy, type JetStreamClient, JSONCodec } from "nats";
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { startBenchEnvironment } from "./environment.js";
import { formatTable, percentile } from "./measure.js";
import { startJetStream, TRACE_STREAM, traceSubject } from "./peers/nats.js";

const STREAMS = 4;
const BATCH = 500;
const BATCHES_PER_STREAM = Number(process.env.BENCH_TRACE_BATCHES ?? 40);
const TRACES_PER_STREAM = 50;
const SUBSCRIBERS = 50;
const LAG_RATE = 2000;
const LAG_SECONDS = Number(process.env.BENCH_LAG_SECONDS ?? 10);
/** Commits a second the lag's events are split into: a multiple of 20, dividing LAG_RATE / 20. */
const LAG_COMMITS = Number(process.env.BENCH_LAG_COMMITS ?? 20);

function payload(i: number) {
  return { tool: "search", args: { q: `query ${i}`, limit: 10 }, result: { hits: i % 17, ms: 12.5 }, tags: ["agent", "bench"] };
}

/** Event `i` of stream `s`'s batches: each stream writes its own TRACES_PER_STREAM traces. */
function ingestEvent(s: number, i: number) {
  return { traceId: `bench-${s}-${i % TRACES_PER_STREAM}`, sessionId: `session-${s}`, eventType: "tool.call", payload: payload(i) };
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
        const events = Array.from({ length: BATCH }, (_, i) => ingestEvent(s, i));
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

/** The same events published to JetStream, every publish acknowledged. */
async function jetStreamPublishThroughput(js: JetStreamClient): Promise<number> {
  const codec = JSONCodec();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: STREAMS }, async (_, s) => {
      const inFlight: Promise<unknown>[] = [];
      for (let b = 0; b < BATCHES_PER_STREAM; b++) {
        const events = Array.from({ length: BATCH }, (_, i) => ingestEvent(s, i));
        inFlight.push(Promise.all(events.map((event) => js.publish(traceSubject(event.traceId), codec.encode(event)))));
        if (inFlight.length > 2) await inFlight.shift();
      }
      await Promise.all(inFlight);
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

interface Lag {
  p50: number;
  p99: number;
  delivered: number;
  sent: number;
}

interface LagEvent {
  traceId: string;
  eventType: string;
  payload: { sentAt: number; i: number };
}

const wallClock = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * LAG_RATE events a second across the subscribers' traces, 20 ticks a second
 * of LAG_COMMITS / 20 sends at once (awaited, then a pause to the tick's
 * 50 ms slot), for LAG_SECONDS, after a second for the subscriptions to
 * settle and before one for the last deliveries; `lags` (ms, filled by the
 * subscribers meanwhile) summarized. Sends slower than their slot send
 * fewer events: `sent` says how many went.
 */
async function runLag(send: (events: LagEvent[]) => Promise<unknown>, lags: number[]): Promise<Lag> {
  await sleep(1000);
  const perTick = LAG_RATE / 20;
  const perSend = perTick / (LAG_COMMITS / 20);
  let sent = 0;
  const end = performance.now() + LAG_SECONDS * 1000;
  for (let tick = 0; performance.now() < end; tick++) {
    const due = performance.now() + 50;
    const events = Array.from({ length: perTick }, (_, i) => ({
      traceId: `lag-${(tick * perTick + i) % SUBSCRIBERS}`,
      eventType: "step",
      payload: { sentAt: wallClock(), i },
    }));
    const sends = Array.from({ length: perTick / perSend }, (_, s) => events.slice(s * perSend, (s + 1) * perSend));
    await Promise.all(sends.map(send));
    sent += events.length;
    await sleep(Math.max(0, due - performance.now()));
  }
  await sleep(1000);
  return {
    p50: percentile(lags, 50),
    p99: percentile(lags, 99),
    delivered: lags.length,
    sent,
  };
}

async function subscriberLag(client: CairnClient): Promise<Lag> {
  const lags: number[] = [];
  const subs = Array.from({ length: SUBSCRIBERS }, (_, i) => {
    const stream = client.traces.subscribeEvents({ traceId: `lag-${i}`, fromNow: true });
    stream.on("data", (m: SubscribeEventsResponse) => {
      if (m.message?.$case === "event") lags.push(wallClock() - (m.message.value.payload!.sentAt as number));
    });
    stream.on("error", () => {});
    return stream;
  });
  const lag = await runLag((events) => client.traces.appendEvents({ events }), lags);
  for (const s of subs) s.cancel();
  return lag;
}

async function jetStreamConsumerLag(js: JetStreamClient): Promise<Lag> {
  const codec = JSONCodec<LagEvent>();
  const lags: number[] = [];
  const consumers = await Promise.all(
    Array.from({ length: SUBSCRIBERS }, async (_, i) => {
      const consumer = await js.consumers.get(TRACE_STREAM, { filterSubjects: traceSubject(`lag-${i}`), deliver_policy: DeliverPolicy.New });
      return consumer.consume({ callback: (m) => lags.push(wallClock() - codec.decode(m.data).payload.sentAt) });
    }),
  );
  const lag = await runLag(
    (events) => Promise.all(events.map((event) => js.publish(traceSubject(event.traceId), codec.encode(event)))),
    lags,
  );
  await Promise.all(consumers.map((c) => c.close()));
  return lag;
}

export async function benchTraces(): Promise<void> {
  const env = await startBenchEnvironment();
  const client = new CairnClient(env.cairnAddress);
  const jetStream = await startJetStream();
  try {
    const cairn = await ingestThroughput(client);
    const raw = await rawCopyThroughput(env.databaseUrl);
    const peer = jetStream && (await jetStreamPublishThroughput(jetStream.js));
    const lag = await subscriberLag(client);
    const peerLag = jetStream && (await jetStreamConsumerLag(jetStream.js));
    const events = String(STREAMS * BATCHES_PER_STREAM * BATCH);
    const percent = (of: number) => `${((100 * cairn) / of).toFixed(0)}%`;
    console.log(`\ntraces benchmark (node ${process.version}${jetStream ? `, NATS JetStream ${jetStream.version}` : ""})\n`);
    console.log(
      formatTable([
        ["ingestion", "streams", "batch", "events", "events/s"],
        ["cairn IngestEvents", String(STREAMS), String(BATCH), events, cairn.toFixed(0)],
        ["raw pg COPY", String(STREAMS), String(BATCH), events, raw.toFixed(0)],
        ...(peer ? [["JetStream publish, acked", String(STREAMS), String(BATCH), events, peer.toFixed(0)]] : []),
        ["cairn/raw", "", "", "", percent(raw)],
        ...(peer ? [["cairn/jetstream", "", "", "", percent(peer)]] : []),
      ]),
    );
    const line = (what: string, l: Lag) => `${what}: p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms (${l.delivered}/${l.sent} delivered)`;
    console.log(`\nsubscriber lag: ${SUBSCRIBERS} subscribers (one trace each), ${LAG_RATE} events/s for ${LAG_SECONDS} s in ${LAG_COMMITS} sends/s`);
    console.log(line("  cairn SubscribeEvents", lag));
    if (peerLag) {
      console.log(line("  JetStream ordered consumers", peerLag));
      console.log(`  cairn/jetstream: p50 ${(lag.p50 / peerLag.p50).toFixed(1)}×, p99 ${(lag.p99 / peerLag.p99).toFixed(1)}×`);
    }
  } finally {
    client.close();
    await env.close();
    await jetStream?.close();
  }
}
