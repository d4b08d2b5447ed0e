// The replicas' live feeds (db/live-feed.ts): a change a replica commits
// enters its window at once, other replicas' changes are read after their
// NOTIFY, and either way every watcher sees every change once, in revision
// order, exactly as the change log holds it. The feeds read on connections
// of their own, so live delivery goes on while the replica's pool is busy.
import { CairnClient, type SubscribeEventsResponse, type WatchResponse } from "@cairn/client";
import { afterAll, beforeAll, expect, it } from "vitest";
import pg from "pg";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { createLogger } from "../src/logger.js";
import { type Harness, startHarness, testConfig } from "./support/harness.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let replicaB: Daemon;
let b: CairnClient;
let n = 0;
const uid = (p: string) => `${p}-${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  // A pool of 2, so that two blocked writes take all of it.
  const settings = { progressIntervalMs: 500, dbPoolMax: 2 };
  h = await startHarness(settings);
  replicaB = await startDaemon(testConfig(h.databaseUrl, settings), createLogger("silent"));
  b = new CairnClient(replicaB.address);
});
afterAll(async () => {
  b?.close();
  await replicaB?.stop();
  await h?.stop();
});

const json = (value: unknown) => ({ $case: "jsonValue" as const, value });
const changesOf = (messages: WatchResponse[]) => messages.flatMap((m) => (m.message?.$case === "event" ? [m.message.value] : []));
const progressed = (m: WatchResponse[] | SubscribeEventsResponse[]) => m.some((x) => x.message?.$case === "progress");

it("watchers on both replicas see every change once, in order, as the change log holds it", { timeout: 60_000 }, async () => {
  const p = uid("feed");
  const watchers = [collect(h.client.keyValue.watch({ prefix: `${p}/` })), collect(b.keyValue.watch({ prefix: `${p}/` }))];
  await Promise.all(watchers.map((w) => w.until("progress", progressed, 5_000)));
  // Single Puts and Increments (coalesced, entering their replica's window as they commit),
  // BatchPuts and Deletes (read after their NOTIFY), from 3 writers on each replica at once.
  const writer = async (client: CairnClient, w: number) => {
    for (let i = 0; i < 15; i++) {
      const key = `${p}/${w}-${i % 4}`;
      await client.keyValue.put({ entry: { key, value: json({ w, i }) } });
      await client.keyValue.increment({ key: `${p}/count-${w % 2}`, delta: 1 });
      if (i % 5 === 0) await client.keyValue.batchPut({ requests: [{ entry: { key: `${p}/batch-${w}-a`, value: json(i) } }, { entry: { key: `${p}/batch-${w}-b`, value: json(i) } }] });
      if (i % 4 === 3) await client.keyValue.delete({ key });
    }
  };
  await Promise.all([0, 1, 2].flatMap((w) => [writer(h.client, w), writer(b, w + 3)]));
  const logged = (
    await h.sql.query(`SELECT revision FROM kv_changes WHERE namespace = 'default' AND key LIKE $1 ORDER BY revision`, [`${p}/%`])
  ).rows.map((r) => Number(r.revision));
  expect(logged.length).toBeGreaterThan(150);
  for (const w of watchers) await w.until("every change", (m) => changesOf(m).length >= logged.length);
  await new Promise((r) => setTimeout(r, 300));
  for (const w of watchers) {
    w.cancel();
    expect(changesOf(w.messages).map((c) => c.revision)).toEqual(logged);
  }
  // A third replica, with no window yet, reads the same changes from the log.
  const replicaC = await startDaemon(testConfig(h.databaseUrl, { progressIntervalMs: 500 }), createLogger("silent"));
  const c = new CairnClient(replicaC.address);
  try {
    const fromLog = collect(c.keyValue.watch({ prefix: `${p}/`, startRevision: logged[0]! }));
    await fromLog.until("every change", (m) => changesOf(m).length >= logged.length);
    fromLog.cancel();
    expect(changesOf(watchers[0]!.messages)).toEqual(changesOf(fromLog.messages));
    expect(changesOf(watchers[1]!.messages)).toEqual(changesOf(fromLog.messages));
  } finally {
    c.close();
    await replicaC.stop();
  }
});

it("live changes and events reach a replica's streams while its pool is taken by blocked writes", { timeout: 30_000 }, async () => {
  const p = uid("busy");
  const trace = uid("busy-trace");
  const watch = collect(h.client.keyValue.watch({ prefix: `${p}/` }));
  const subscription = collect(h.client.traces.subscribeEvents({ traceId: trace, fromNow: true }));
  await watch.until("progress", progressed, 5_000);
  await subscription.until("progress", progressed, 5_000);
  // Writes of two keys whose locks another session holds take both connections of the pool and wait.
  const blocker = new pg.Client({ connectionString: h.databaseUrl });
  await blocker.connect();
  const blocked = [`${p}-locked/1`, `${p}-locked/2`];
  try {
    for (const key of blocked) await blocker.query(`SELECT pg_advisory_lock(hashtextextended('default:' || $1, 0))`, [key]);
    const waiting = blocked.map(async (key, i) => {
      // One after the other, so that they are two transactions, not one coalesced batch.
      await new Promise((r) => setTimeout(r, i * 200));
      return h.client.keyValue.put({ entry: { key, value: json(i) } });
    });
    await waitFor("both pool connections waiting on the locks", async () => {
      const result = await h.sql.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'cairn' AND wait_event_type = 'Lock'`,
      );
      return result.rows[0].n === 2;
    });
    // Through the other replica; this replica's feeds read them on their own connections.
    const put = await b.keyValue.put({ entry: { key: `${p}/k`, value: json("live") } });
    await b.traces.appendEvents({ events: [{ traceId: trace, eventType: "live" }] });
    await watch.until("the change", (m) => changesOf(m).length === 1, 3_000);
    await subscription.until("the event", (m) => m.some((x) => x.message?.$case === "event"), 3_000);
    expect(changesOf(watch.messages)[0]!.revision).toBe(put.modRevision);
    for (const key of blocked) await blocker.query(`SELECT pg_advisory_unlock(hashtextextended('default:' || $1, 0))`, [key]);
    await Promise.all(waiting);
  } finally {
    await blocker.end();
    watch.cancel();
    subscription.cancel();
  }
});
