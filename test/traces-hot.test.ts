// A hot trace on a small pool: appends to one trace wait their turn in the
// daemon, holding no pool connection, so they all succeed with gapless
// sequences and an unrelated call is answered while they wait.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

const APPENDS = 200;

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ dbPoolMax: 2 });
});
afterAll(async () => {
  await h?.stop();
});

/** Backends of the daemon's pool waiting for a lock. */
async function lockWaiters(): Promise<number> {
  const result = await h.sql.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'cairn' AND wait_event_type = 'Lock'`,
  );
  return result.rows[0].n;
}

it(`${APPENDS} concurrent appends to one trace on a pool of 2 all succeed, gapless, while other calls are answered`, { timeout: 60_000 }, async () => {
  const traceId = "hot-trace";
  await h.client.traces.appendEvents({ events: [{ traceId, eventType: "first" }] });

  // Hold the trace's head row, so that every append to it has to wait.
  const holder = await h.sql.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("SELECT 1 FROM trace_heads WHERE trace_id = $1 FOR UPDATE", [traceId]);
    const appends = Promise.all(
      Array.from({ length: APPENDS }, (_, i) => h.client.traces.appendEvents({ events: [{ traceId, eventType: "step", payload: { i } }] })),
    );
    appends.catch(() => {}); // awaited below; a failure before that is reported by the assertion that failed
    await waitFor("an append to wait on the head row", async () => (await lockWaiters()) >= 1);

    // The appends wait, but the pool still serves everyone else.
    expect(await failure(h.client.sessions.getSession({ sessionId: "no-such-session" }))).toMatchObject({ code: status.NOT_FOUND });
    await h.client.keyValue.put({ entry: { key: "unrelated", value: { $case: "jsonValue", value: { ok: true } } } });
    expect(await lockWaiters()).toBe(1);

    await holder.query("COMMIT");
    const results = await appends;
    const sequences = results.map((r) => r.results[0]!.sequence).sort((a, b) => a - b);
    expect(sequences).toEqual(Array.from({ length: APPENDS }, (_, i) => i + 2));
  } finally {
    await holder.query("ROLLBACK").catch(() => {});
    holder.release();
  }
  expect(await h.client.traces.verifyTrace({ traceId })).toMatchObject({ valid: true, eventCount: APPENDS + 1 });
});

it("batches sharing traces in every order all succeed on a pool of 2", { timeout: 60_000 }, async () => {
  const traces = ["ta", "tb", "tc", "td"];
  // Each batch names two or three traces, in a rotating order.
  const batches = Array.from({ length: 60 }, (_, b) =>
    Array.from({ length: 2 + (b % 2) }, (_, i) => ({ traceId: traces[(b + i * (1 + (b % 3))) % traces.length]!, eventType: "mixed", payload: { b, i } })),
  );
  await Promise.all(batches.map((events) => h.client.traces.appendEvents({ events })));
  for (const traceId of traces) {
    const expected = batches.flat().filter((e) => e.traceId === traceId).length;
    expect(await h.client.traces.verifyTrace({ traceId }), traceId).toMatchObject({ valid: true, eventCount: expected });
  }
});
