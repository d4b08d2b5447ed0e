// Offsets without a lock held to commit: an appending transaction that drew
// a lower offset and commits late is never skipped by a subscriber or a
// page of ListSessionEvents, and it does not hold up other appends. The
// late appender here is a transaction held open by hand, drawing its offset
// as every append does (cairn_draw_trace_offsets: an offset slot, then the
// sequence); drawing from the sequence without the slot, it would be passed
// by the subscriber before it commits.
import { Severity, type SubscribeEventsResponse } from "@cairn/client";
import type pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";
import { collect } from "./support/streams.js";

let h: Harness;
let n = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  h = await startHarness({ progressIntervalMs: 200 });
});
afterAll(async () => {
  await h?.stop();
});

const eventsOf = (messages: SubscribeEventsResponse[]) =>
  messages.flatMap((m) => (m.message?.$case === "event" ? [{ offset: m.message.value.offset, eventId: m.message.value.eventId }] : []));

/** Opens a transaction that appends one event to `traceId` the way the daemon does, and leaves it open. */
async function heldAppend(traceId: string, sessionId: string): Promise<{ client: pg.PoolClient; offset: number; eventId: string }> {
  const client = await h.sql.connect();
  const eventId = uid("held");
  await client.query("BEGIN");
  const { rows } = await client.query<{ event_offset: string }>(
    `INSERT INTO trace_events (namespace, event_offset, trace_id, sequence, event_id, session_id, event_type, severity,
                               event_time, payload, ingest_time, prev_hash, event_hash)
     VALUES ('default', (SELECT cairn_draw_trace_offsets(1)), $1, 1, $2, $3, 'held', 2, now(), '{}', now(), '', '')
     RETURNING event_offset`,
    [traceId, eventId, sessionId],
  );
  return { client, offset: Number(rows[0]!.event_offset), eventId };
}

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it("a late commit with a lower offset reaches the subscriber first, and appends do not wait for it", { timeout: 30_000 }, async () => {
  const session = uid("s");
  const subscription = collect(h.client.traces.subscribeEvents({ sessionId: session, fromNow: true }));
  await subscription.until("the first progress", (m) => m.some((x) => x.message?.$case === "progress"));

  const held = await heldAppend(uid("late"), session);
  // Appended and committed while the lower offset is still open: nothing waits for it.
  const { results } = await h.client.traces.appendEvents({
    events: [{ traceId: uid("early"), sessionId: session, eventType: "early", severity: Severity.SEVERITY_INFO, payload: {} }],
  });
  const early = results[0]!;
  expect(early.offset).toBeGreaterThan(held.offset);

  // The subscriber may not pass the open offset: the committed later event waits behind it.
  await settle(600);
  expect(eventsOf(subscription.messages)).toEqual([]);
  const progress = subscription.messages.flatMap((m) => (m.message?.$case === "progress" ? [m.message.value.offset] : []));
  expect(Math.max(0, ...progress)).toBeLessThan(held.offset);

  await held.client.query("COMMIT");
  held.client.release();
  await subscription.until("both events", (m) => eventsOf(m).length >= 2);
  expect(eventsOf(subscription.messages)).toEqual([
    { offset: held.offset, eventId: held.eventId },
    { offset: early.offset, eventId: early.eventId },
  ]);
  subscription.cancel();
});

it("an open append that rolls back leaves a gap the subscriber passes once it ends", { timeout: 30_000 }, async () => {
  const session = uid("s");
  const subscription = collect(h.client.traces.subscribeEvents({ sessionId: session, fromNow: true }));
  await subscription.until("the first progress", (m) => m.some((x) => x.message?.$case === "progress"));
  const held = await heldAppend(uid("late"), session);
  const { results } = await h.client.traces.appendEvents({
    events: [{ traceId: uid("early"), sessionId: session, eventType: "early", severity: Severity.SEVERITY_INFO, payload: {} }],
  });
  await settle(300);
  expect(eventsOf(subscription.messages)).toEqual([]);
  await held.client.query("ROLLBACK");
  held.client.release();
  await subscription.until("the committed event", (m) => eventsOf(m).length >= 1);
  expect(eventsOf(subscription.messages)).toEqual([{ offset: results[0]!.offset, eventId: results[0]!.eventId }]);
  subscription.cancel();
});

it("a page of ListSessionEvents never passes an offset that may still commit", { timeout: 30_000 }, async () => {
  const session = uid("s");
  const held = await heldAppend(uid("late"), session);
  const { results } = await h.client.traces.appendEvents({
    events: [{ traceId: uid("early"), sessionId: session, eventType: "early", severity: Severity.SEVERITY_INFO, payload: {} }],
  });
  // The list waits for the open append to end rather than return the later event alone.
  let listed: { offset: number }[] | undefined;
  const listing = h.client.traces.listSessionEvents({ sessionId: session }).then((r) => (listed = r.events));
  await settle(400);
  expect(listed).toBeUndefined();
  await held.client.query("COMMIT");
  held.client.release();
  await listing;
  expect(listed!.map((e) => e.offset)).toEqual([held.offset, results[0]!.offset]);
});

it("appends to different traces commit in parallel: many writers, every offset once, in order", { timeout: 60_000 }, async () => {
  const session = uid("s");
  const subscription = collect(h.client.traces.subscribeEvents({ sessionId: session, fromNow: true }));
  await subscription.until("the first progress", (m) => m.some((x) => x.message?.$case === "progress"));
  const writers = 8;
  const rounds = 15;
  const written: number[] = [];
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let r = 0; r < rounds; r++) {
        const { results } = await h.client.traces.appendEvents({
          events: Array.from({ length: 3 }, (_, i) => ({
            traceId: `${session}-w${w}-${i}`,
            sessionId: session,
            eventType: "step",
            severity: Severity.SEVERITY_INFO,
            payload: { w, r, i },
          })),
        });
        written.push(...results.map((x) => x.offset));
      }
    }),
  );
  await subscription.until("every event", (m) => eventsOf(m).length >= written.length);
  const seen = eventsOf(subscription.messages).map((e) => e.offset);
  expect(seen).toEqual([...written].sort((a, b) => a - b));
  subscription.cancel();
});

it("a reader cancelled while it waits for an open append leaves no slot held", { timeout: 30_000 }, async () => {
  const held = await heldAppend(uid("late"), uid("s"));
  const reader = await h.sql.connect();
  try {
    const pid = (await reader.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
    const waiting = reader.query("SELECT cairn_settled_trace_offset()").then(
      () => "returned",
      (error: { code?: string }) => error.code,
    );
    await settle(300);
    await h.sql.query("SELECT pg_cancel_backend($1)", [pid]);
    expect(await waiting).toBe("57014");
    const locks = await h.sql.query("SELECT mode FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", [pid]);
    expect(locks.rows).toEqual([]);
    // The slots are free for appenders again: a new append commits while the held one is still open.
    const { results } = await h.client.traces.appendEvents({
      events: [{ traceId: uid("after"), eventType: "after", severity: Severity.SEVERITY_INFO, payload: {} }],
    });
    expect(results[0]!.offset).toBeGreaterThan(held.offset);
  } finally {
    reader.release();
    await held.client.query("ROLLBACK");
    held.client.release();
  }
});
