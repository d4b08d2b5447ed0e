// Small appends commit in groups (traces/batcher.ts): many callers at once,
// of two namespaces, sharing traces, with client-chosen event ids repeated
// within a group and across groups. Every chain must come out gapless and
// verifiable, in each caller's order per trace, every duplicate must report
// its original's sequence and offset, and the namespaces' chains must stay
// apart.
import { CairnClient, Severity } from "@cairn/client";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";

let h: Harness;
let red: CairnClient;
let n = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  h = await startHarness();
  red = new CairnClient(h.daemon.address, { namespace: "team-red" });
});
afterAll(async () => {
  red?.close();
  await h?.stop();
});

it("concurrent small appends sharing traces and event ids chain gaplessly, duplicates answered with the original", { timeout: 60_000 }, async () => {
  const traces = [uid("g"), uid("g"), uid("g")];
  const calls = 120;
  const results = await Promise.all(
    Array.from({ length: calls }, (_, c) => {
      const client = c % 3 === 0 ? red : h.client;
      // Every fourth call re-sends the events of the call three before it (same namespace, traces and ids), in flight at once.
      const source = c % 4 === 3 ? c - 3 : c;
      const events = Array.from({ length: 1 + (source % 3) }, (_, i) => ({
        eventId: `e-${source}-${i}`,
        traceId: traces[(Math.floor(source / 3) + i) % traces.length]!,
        eventType: "step",
        severity: Severity.SEVERITY_INFO,
        payload: { source, i },
      }));
      return client.traces.appendEvents({ events }).then((r) => ({ client, events, results: r.results }));
    }),
  );
  for (const client of [h.client, red]) {
    const mine = results.filter((r) => r.client === client);
    const fresh = mine.flatMap((r) => r.results.map((x, i) => ({ ...x, traceId: r.events[i]!.traceId }))).filter((x) => !x.duplicate);
    for (const traceId of traces) {
      const sequences = fresh.filter((x) => x.traceId === traceId).map((x) => x.sequence);
      expect([...sequences].sort((a, b) => a - b)).toEqual(Array.from({ length: sequences.length }, (_, i) => i + 1));
      const verdict = await client.traces.verifyTrace({ traceId });
      expect(verdict.valid, verdict.reason).toBe(true);
      expect(verdict.eventCount).toBe(sequences.length);
    }
    // A duplicate carries its original's sequence and offset, whichever group either was in.
    const byId = new Map(fresh.map((x) => [`${x.traceId}/${x.eventId}`, x]));
    const duplicates = mine.flatMap((r) => r.results.map((x, i) => ({ ...x, traceId: r.events[i]!.traceId }))).filter((x) => x.duplicate);
    expect(duplicates.length).toBeGreaterThan(0);
    for (const d of duplicates) {
      const original = byId.get(`${d.traceId}/${d.eventId}`)!;
      expect({ sequence: d.sequence, offset: d.offset }).toEqual({ sequence: original.sequence, offset: original.offset });
    }
  }
  // Offsets are one order across namespaces: every fresh event has its own.
  const offsets = results.flatMap((r) => r.results.filter((x) => !x.duplicate).map((x) => x.offset));
  expect(new Set(offsets).size).toBe(offsets.length);
});

it("one caller's appends to a trace, sent without waiting, keep their order", { timeout: 30_000 }, async () => {
  const traceId = uid("order");
  const sent = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      h.client.traces.appendEvents({ events: [{ traceId, eventId: `o-${i}`, eventType: "step", severity: Severity.SEVERITY_INFO, payload: { i } }] }),
    ),
  );
  // Calls go out in order on one channel and are grouped in arrival order.
  expect(sent.map((r) => r.results[0]!.sequence)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  const page = await h.client.traces.listTraceEvents({ traceId, pageSize: 100 });
  expect(page.events.map((e) => e.eventId)).toEqual(Array.from({ length: 40 }, (_, i) => `o-${i}`));
});

it("a call the database refuses fails alone; the rest of its group commits", { timeout: 30_000 }, async () => {
  // A trigger stands in for whatever the database might refuse in one call's events.
  await h.sql.query(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.event_type = 'poison' THEN RAISE EXCEPTION 'poisoned event'; END IF; RETURN NEW; END $$`);
  await h.sql.query(`CREATE TRIGGER refuse_poison BEFORE INSERT ON trace_events FOR EACH ROW EXECUTE FUNCTION refuse_poison()`);
  try {
    const traceId = uid("poison");
    const settled = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        h.client.traces.appendEvents({
          events: [{ traceId, eventId: `p-${i}`, eventType: i === 5 ? "poison" : "step", severity: Severity.SEVERITY_INFO, payload: { i } }],
        }),
      ),
    );
    expect(settled.map((s) => s.status)).toEqual(Array.from({ length: 12 }, (_, i) => (i === 5 ? "rejected" : "fulfilled")));
    // The others chained in their order, without the refused one.
    const page = await h.client.traces.listTraceEvents({ traceId, pageSize: 100 });
    expect(page.events.map((e) => e.eventId)).toEqual(Array.from({ length: 12 }, (_, i) => `p-${i}`).filter((id) => id !== "p-5"));
    expect((await h.client.traces.verifyTrace({ traceId })).valid).toBe(true);
  } finally {
    await h.sql.query(`DROP TRIGGER refuse_poison ON trace_events`);
    await h.sql.query(`DROP FUNCTION refuse_poison()`);
  }
});
