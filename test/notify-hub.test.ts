// Live delivery survives the loss of the replica's LISTEN connection: the hub
// reconnects and wakes every subscriber, well before the polling backstop.
import type { SubscribeEventsResponse } from "@cairn/client";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
beforeAll(async () => {
  // The backstop fires only every 5 s, so prompt delivery proves the wake-up.
  h = await startHarness({ progressIntervalMs: 5_000 });
});
afterAll(async () => {
  await h?.stop();
});

const events = (m: SubscribeEventsResponse[]) => m.filter((x) => x.message?.$case === "event");

async function listeners(): Promise<number[]> {
  const result = await h.sql.query(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cairn-listen'`,
  );
  return result.rows.map((r) => r.pid);
}

it("delivers promptly through NOTIFY, and again after the LISTEN connection is killed", async () => {
  const sub = collect(h.client.traces.subscribeEvents({ traceId: "hub", fromNow: true }));
  await new Promise((r) => setTimeout(r, 300));
  let started = Date.now();
  await h.client.traces.appendEvents({ events: [{ traceId: "hub", eventType: "x" }] });
  await sub.until("the first event", (m) => events(m).length === 1, 4_000);
  expect(Date.now() - started).toBeLessThan(2_000);

  const [pid] = await listeners();
  expect(pid).toBeDefined();
  await h.sql.query("SELECT pg_terminate_backend($1)", [pid]);
  await waitFor("a new LISTEN connection", async () => {
    const now = await listeners();
    return now.length === 1 && now[0] !== pid;
  });
  started = Date.now();
  await h.client.traces.appendEvents({ events: [{ traceId: "hub", eventType: "x" }] });
  await sub.until("the second event", (m) => events(m).length === 2, 4_000);
  expect(Date.now() - started).toBeLessThan(2_000);
  sub.cancel();
});
