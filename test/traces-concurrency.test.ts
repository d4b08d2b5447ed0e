// The concurrency proof: 8 writers on 2 daemon replicas ingest into 20 traces
// while 3 subscribers (on both replicas, one started mid-way) tail the log.
// Every subscriber must see every offset exactly once, in order; every
// trace's sequences must be gapless and its chain must verify.
import { CairnClient, type SubscribeEventsResponse } from "@cairn/client";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Replicas, startReplicas } from "./support/harness.js";
import { collect } from "./support/streams.js";
import pg from "pg";

const TRACES = 20;
const WRITERS = 8;
const BATCHES_PER_WRITER = 12;
const EVENTS_PER_BATCH = 25;

let replicas: Replicas;
let clients: CairnClient[] = [];
let database: { url: string };

beforeAll(async () => {
  replicas = await startReplicas(2, { progressIntervalMs: 500 });
  clients = replicas.clients;
  database = { url: replicas.databaseUrl };
});
afterAll(async () => {
  await replicas?.stop();
});

const offsetsOf = (messages: SubscribeEventsResponse[]) =>
  messages.flatMap((m) => (m.message?.$case === "event" ? [m.message.value.offset] : []));

async function writer(client: CairnClient, w: number, onBatch: (lastOffset: number) => void): Promise<void> {
  const call = client.traces.ingestEvents();
  const acks = collect(call);
  for (let b = 0; b < BATCHES_PER_WRITER; b++) {
    const events = Array.from({ length: EVENTS_PER_BATCH }, (_, i) => ({
      traceId: `trace-${(w * 7 + b * 3 + i) % TRACES}`,
      eventType: "step",
      payload: { w, b, i },
    }));
    call.write({ batchId: `w${w}-b${b}`, events });
    await acks.until(`ack ${b} of writer ${w}`, (m) => m.length === b + 1);
    onBatch(acks.messages[b]!.lastOffset);
  }
  call.end();
  await acks.until(`writer ${w} to end`, () => acks.ended);
}

it("every subscriber sees every offset once, in order, across replicas", { timeout: 120_000 }, async () => {
  const early = [collect(clients[0]!.traces.subscribeEvents({})), collect(clients[1]!.traces.subscribeEvents({ startOffset: 0 }))];
  let late: ReturnType<typeof collect<SubscribeEventsResponse>> | undefined;
  let lateStart = 0;
  let batchesDone = 0;
  const total = WRITERS * BATCHES_PER_WRITER * EVENTS_PER_BATCH;

  await Promise.all(
    Array.from({ length: WRITERS }, (_, w) =>
      writer(clients[w % 2]!, w, (lastOffset) => {
        batchesDone++;
        if (!late && batchesDone === (WRITERS * BATCHES_PER_WRITER) / 3) {
          // Mid-way, on the other replica, from an offset in the middle of the log.
          lateStart = Math.max(1, lastOffset - 40);
          late = collect(clients[(w + 1) % 2]!.traces.subscribeEvents({ startOffset: lateStart }));
        }
      }),
    ),
  );
  expect(late).toBeDefined();
  const everything = Array.from({ length: total }, (_, i) => i + 1);
  for (const sub of early) {
    await sub.until("every offset", (m) => offsetsOf(m).length >= total, 60_000);
    expect(offsetsOf(sub.messages)).toEqual(everything);
  }
  await late!.until("every later offset", (m) => offsetsOf(m).length >= total - lateStart + 1, 60_000);
  expect(offsetsOf(late!.messages)).toEqual(everything.slice(lateStart - 1));
  // Nothing more arrives: no duplicates trickling in late.
  await new Promise((r) => setTimeout(r, 700));
  for (const sub of [...early, late!]) {
    expect(offsetsOf(sub.messages).length).toBe(offsetsOf(sub.messages).at(-1)! - offsetsOf(sub.messages)[0]! + 1);
    sub.cancel();
  }

  const sql = new pg.Client({ connectionString: database.url });
  await sql.connect();
  const gaps = await sql.query(
    `SELECT trace_id, count(*)::int AS n, max(sequence)::int AS top, min(sequence)::int AS bottom
       FROM trace_events GROUP BY trace_id ORDER BY trace_id`,
  );
  await sql.end();
  expect(gaps.rows).toHaveLength(TRACES);
  expect(gaps.rows.reduce((sum, r) => sum + r.n, 0)).toBe(total);
  for (const row of gaps.rows) expect([row.bottom, row.top]).toEqual([1, row.n]);
  for (let t = 0; t < TRACES; t++) {
    const verdict = await clients[t % 2]!.traces.verifyTrace({ traceId: `trace-${t}` });
    expect(verdict.valid, `trace-${t}: ${verdict.reason}`).toBe(true);
  }
});
