// The replica's fan-out window gives every subscriber the pages the table
// would give, whether the cursor is inside the window or behind it (evicted),
// for any filter and namespace.
import { CairnClient } from "@cairn/client";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Database } from "../src/db/database.js";
import { createPool } from "../src/db/pool.js";
import { TraceFanout } from "../src/traces/fanout.js";
import { type EventFilter, readFeed } from "../src/traces/store.js";
import { type Harness, startHarness } from "./support/harness.js";

let h: Harness;
let db: Database;
beforeAll(async () => {
  h = await startHarness();
  db = new Database(createPool({ connectionString: h.databaseUrl, max: 4, statementTimeoutMs: 10_000 }));
});
afterAll(async () => {
  await db?.pool.end();
  await h?.stop();
});

const encode = (e: { offset: number; payload: unknown }) => Buffer.from(JSON.stringify([e.offset, e.payload]));
const signal = new AbortController().signal;

async function drain(read: (cursor: number) => Promise<{ items: { offset: number }[]; scannedThrough: number; head: number }>, from: number) {
  const offsets: number[] = [];
  let cursor = from;
  for (;;) {
    const page = await read(cursor);
    offsets.push(...page.items.map((i) => i.offset));
    cursor = page.scannedThrough + 1;
    if (page.scannedThrough >= page.head) return offsets;
  }
}

it("pages from the window and from behind it equal the table's, for every filter and namespace", async () => {
  // A window of ~3 KB: most of the 60 events below are evicted before they are read.
  const fanout = new TraceFanout(db, encode as never, 3_000);
  await fanout.page("default", 1, { sessionId: null, traceId: null, eventTypes: [], minSeverity: null }, 1 << 20, signal);
  // The same traces and sessions in a second namespace, interleaved: the window holds both.
  const other = new CairnClient(h.daemon.address, { namespace: "fan-other" });
  const first = (await h.client.traces.appendEvents({ events: [{ traceId: "f-a", eventType: "start" }] })).results[0]!.offset;
  for (let i = 0; i < 20; i++) {
    await other.traces.appendEvents({ events: [{ traceId: "f-a", sessionId: "s2", eventType: "tool", severity: 5, payload: { i, other: true } }] });
    await h.client.traces.appendEvents({
      events: [
        { traceId: "f-a", sessionId: "s1", eventType: "tool", payload: { i, pad: "x".repeat(100) } },
        { traceId: "f-b", sessionId: "s2", eventType: "note", severity: 4, payload: { i } },
        { traceId: "f-a", sessionId: "s2", eventType: "tool", severity: 5, payload: { i } },
      ],
    });
  }
  const filters: EventFilter[] = [
    { sessionId: null, traceId: null, eventTypes: [], minSeverity: null },
    { sessionId: null, traceId: "f-a", eventTypes: [], minSeverity: null },
    { sessionId: "s2", traceId: null, eventTypes: ["tool"], minSeverity: null },
    { sessionId: null, traceId: null, eventTypes: [], minSeverity: "ERROR" },
  ];
  const seen = new Map<string, Set<number>>();
  for (const ns of ["default", "fan-other"]) {
    seen.set(ns, new Set());
    for (const filter of filters) {
      for (const from of [first, first + 30]) {
        const fromTable = await drain(async (cursor) => readFeed(db.on({}), ns, cursor, filter, 2_000), from);
        const fromFanout = await drain((cursor) => fanout.page(ns, cursor, filter, 2_000, signal), from);
        expect(fromFanout).toEqual(fromTable);
        expect(fromTable.length).toBeGreaterThan(0);
        fromTable.forEach((offset) => seen.get(ns)!.add(offset));
      }
    }
  }
  // No offset is in both namespaces' pages.
  expect([...seen.get("default")!].filter((offset) => seen.get("fan-other")!.has(offset))).toEqual([]);
  other.close();
});
