import { CairnClient, errorDetails, type WatchResponse, WatchEventType } from "@cairn/client";
import { type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { createLogger } from "../src/logger.js";
import { failure, type Harness, startHarness, testConfig } from "./support/harness.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let replicaB: Daemon;
let b: CairnClient;
let n = 0;
const uid = (p: string) => `${p}/${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  h = await startHarness({ reaperIntervalMs: 200, progressIntervalMs: 500 });
  replicaB = await startDaemon(testConfig(h.databaseUrl, { reaperIntervalMs: 200, progressIntervalMs: 500 }), createLogger("silent"));
  b = new CairnClient(replicaB.address);
});
afterAll(async () => {
  b?.close();
  await replicaB?.stop();
  await h?.stop();
});

const json = (value: unknown) => ({ $case: "jsonValue" as const, value });
const kv = () => h.client.keyValue;

describe("Put / Get / Delete", () => {
  it("stores JSON and bytes, bumping version and revision on every change", async () => {
    const key = uid("doc");
    const first = await kv().put({ entry: { key, value: json({ a: [1, "two", null] }) } });
    expect(first).toMatchObject({ key, version: 1, value: { $case: "jsonValue", value: { a: [1, "two", null] } } });
    const second = await kv().put({ entry: { key, value: { $case: "bytesValue", value: Buffer.from([0, 1, 254]) } } });
    expect(second.version).toBe(2);
    expect(second.modRevision).toBeGreaterThan(first.modRevision);
    expect(second.createTime).toEqual(first.createTime);
    const got = await kv().get({ key });
    expect(Buffer.from((got.value as { value: Buffer }).value)).toEqual(Buffer.from([0, 1, 254]));
    expect(got.modRevision).toBe(second.modRevision);
  });

  it("Get is NOT_FOUND for a missing key; Delete reports whether it deleted", async () => {
    const key = uid("gone");
    expect((await failure(kv().get({ key }))).code).toBe(status.NOT_FOUND);
    expect((await kv().delete({ key })).deleted).toBe(false);
    await kv().put({ entry: { key, value: json(1) } });
    expect((await kv().delete({ key })).deleted).toBe(true);
    expect((await failure(kv().get({ key }))).code).toBe(status.NOT_FOUND);
  });

  it("compare-and-set: expected_version 0 creates only; n must match", async () => {
    const key = uid("cas");
    await kv().put({ entry: { key, value: json("v1") }, expectedVersion: 0 });
    const exists = await failure(kv().put({ entry: { key, value: json("again") }, expectedVersion: 0 }));
    expect(exists).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { current_version: "1", id: key } });
    await kv().put({ entry: { key, value: json("v2") }, expectedVersion: 1 });
    const stale = await failure(kv().put({ entry: { key, value: json("v3") }, expectedVersion: 1 }));
    expect(stale.metadata.current_version).toBe("2");
    expect((await failure(kv().delete({ key, expectedVersion: 1 }))).reason).toBe("VERSION_CONFLICT");
    expect((await kv().delete({ key, expectedVersion: 2 })).deleted).toBe(true);
    expect((await failure(kv().put({ entry: { key: uid("none"), value: json(1) }, expectedVersion: 3 }))).metadata.current_version).toBe("0");
  });

  it("50 concurrent create-only puts on one key: exactly one succeeds", async () => {
    const key = uid("race");
    const outcomes = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? b : h.client).keyValue.put({ entry: { key, value: json(i) }, expectedVersion: 0 })),
    );
    const won = outcomes.filter((o) => o.status === "fulfilled");
    expect(won).toHaveLength(1);
    for (const o of outcomes) {
      if (o.status === "rejected") expect((o.reason as ServiceError).code).toBe(status.ABORTED);
    }
    expect((await kv().get({ key })).version).toBe(1);
  });

  it.each([
    [{ entry: { key: "", value: json(1) } }, "entry.key"],
    [{ entry: { key: "k".repeat(513), value: json(1) } }, "entry.key"],
    [{ entry: { key: "ok" } }, "entry.value"],
    [{ entry: { key: "ok", value: json({ big: "x".repeat(1024 * 1024) }) } }, "entry.json_value"],
    [{ entry: { key: "ok", value: { $case: "bytesValue" as const, value: Buffer.alloc(1024 * 1024 + 1) } } }, "entry.bytes_value"],
    [{ entry: { key: "ok", value: json(1) }, ttl: { seconds: -1, nanos: 0 } }, "ttl"],
    [{ entry: { key: "ok", value: json(1) }, expectedVersion: -1 }, "expected_version"],
  ])("INVALID_ARGUMENT names the field (%#)", async (request, field) => {
    const f = await failure(kv().put(request));
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.fields).toContain(field);
    expect((await failure(kv().get({ key: "ok" }))).code).toBe(status.NOT_FOUND);
  });
});

describe("TTL", () => {
  it("an entry is invisible the moment it expires, and the reaper removes it", async () => {
    const key = uid("ttl");
    const put = await kv().put({ entry: { key, value: json(1) }, ttl: { seconds: 1, nanos: 0 } });
    expect(put.expireTime).toBeDefined();
    await kv().get({ key });
    await new Promise((r) => setTimeout(r, 1_050));
    expect((await failure(kv().get({ key }))).code).toBe(status.NOT_FOUND);
    expect((await kv().list({ prefix: key })).entries).toEqual([]);
    await waitFor("the reaper", async () => (await h.sql.query("SELECT 1 FROM kv_entries WHERE key = $1", [key])).rowCount === 0, 5_000);
  });

  it("a put over an expired entry starts it afresh at version 1", async () => {
    const key = uid("again");
    await kv().put({ entry: { key, value: json(1) }, ttl: { seconds: 0, nanos: 1_000_000 } });
    await new Promise((r) => setTimeout(r, 10));
    const fresh = await kv().put({ entry: { key, value: json(2) }, expectedVersion: 0 });
    expect(fresh.version).toBe(1);
  });

  it("PurgeExpired counts exactly what it removed", async () => {
    const reaperLock = await h.sql.connect();
    await reaperLock.query("SELECT pg_advisory_lock($1)", [0x43414952]);
    try {
      await reaperLock.query(
        `INSERT INTO kv_entries (namespace, key, json_value, version, mod_revision, expire_time)
         SELECT 'default', 'purge/' || g, '1', 1, 0, now() - interval '1 minute' FROM generate_series(1, 1500) g`,
      );
      const expired = await reaperLock.query("SELECT count(*)::int AS n FROM kv_entries WHERE expire_time <= now()");
      const { deletedCount } = await kv().purgeExpired({});
      expect(deletedCount).toBe(expired.rows[0].n);
      expect(deletedCount).toBeGreaterThanOrEqual(1500);
      expect((await kv().purgeExpired({})).deletedCount).toBe(0);
    } finally {
      await reaperLock.query("SELECT pg_advisory_unlock_all()");
      reaperLock.release();
    }
  });
});

describe("List and batches", () => {
  it("lists a prefix in key order, keys_only, paged; wildcards are literal", async () => {
    const p = uid("list");
    for (const k of ["b", "a", "c%", "c_", "d"]) await kv().put({ entry: { key: `${p}/${k}`, value: json(k) } });
    await kv().put({ entry: { key: `${p}x`, value: json("outside") } });
    const all = await kv().list({ prefix: `${p}/` });
    expect(all.entries.map((e) => e.key.slice(p.length + 1))).toEqual(["a", "b", "c%", "c_", "d"]);
    const wild = await kv().list({ prefix: `${p}/c%` });
    expect(wild.entries.map((e) => e.key.slice(p.length + 1))).toEqual(["c%"]);
    const keysOnly = await kv().list({ prefix: `${p}/`, keysOnly: true, pageSize: 2 });
    expect(keysOnly.entries.map((e) => e.value)).toEqual([undefined, undefined]);
    const rest = await kv().list({ prefix: `${p}/`, keysOnly: true, pageSize: 2, pageToken: keysOnly.nextPageToken });
    expect(rest.entries.map((e) => e.key.slice(p.length + 1))).toEqual(["c%", "c_"]);
    expect((await failure(kv().list({ prefix: `${p}/`, pageToken: keysOnly.nextPageToken }))).reason).toBe("INVALID_PAGE_TOKEN");
  });

  it("BatchGet returns the present keys; BatchDelete counts", async () => {
    const p = uid("batch");
    await kv().batchPut({ requests: [1, 2, 3].map((i) => ({ entry: { key: `${p}/${i}`, value: json(i) } })) });
    const got = await kv().batchGet({ keys: [`${p}/3`, `${p}/missing`, `${p}/1`] });
    expect(got.entries.map((e) => e.key)).toEqual([`${p}/3`, `${p}/1`]);
    expect((await kv().batchDelete({ keys: [`${p}/1`, `${p}/2`, `${p}/missing`] })).deletedCount).toBe(2);
  });

  it("BatchPut is atomic: one failed condition writes nothing and names the key", async () => {
    const p = uid("atomic");
    await kv().put({ entry: { key: `${p}/taken`, value: json(0) } });
    const f = await failure(
      kv().batchPut({
        requests: [
          { entry: { key: `${p}/new`, value: json(1) } },
          { entry: { key: `${p}/taken`, value: json(2) }, expectedVersion: 0 },
        ],
      }),
    );
    expect(f).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { id: `${p}/taken` } });
    expect((await failure(kv().get({ key: `${p}/new` }))).code).toBe(status.NOT_FOUND);
    const bad = await failure(kv().batchPut({ requests: [{ entry: { key: `${p}/x`, value: json(1) } }, { entry: { key: "", value: json(1) } }] }));
    expect(bad.fields).toEqual(["requests[1].entry.key"]);
    const dup = await failure(kv().batchPut({ requests: [{ entry: { key: `${p}/d`, value: json(1) } }, { entry: { key: `${p}/d`, value: json(2) } }] }));
    expect(dup.fields).toEqual(["requests[1].entry.key"]);
  });
});

describe("Increment", () => {
  it("creates at 0 and is exact under concurrency (20 clients × 100)", { timeout: 60_000 }, async () => {
    const key = uid("counter");
    expect((await kv().increment({ key, delta: 5 })).value).toEqual(json(5));
    await Promise.all(
      Array.from({ length: 20 }, async (_, c) => {
        const client = c % 2 ? b : h.client;
        for (let i = 0; i < 100; i++) await client.keyValue.increment({ key, delta: 1 });
      }),
    );
    const final = await kv().get({ key });
    expect(final.value).toEqual(json(2005));
    expect(final.version).toBe(2001);
  });

  it("refuses a value that is not an integer", async () => {
    const key = uid("text");
    await kv().put({ entry: { key, value: json("hello") } });
    expect((await failure(kv().increment({ key, delta: 1 }))).code).toBe(status.FAILED_PRECONDITION);
  });
});

describe("Watch", () => {
  const events = (m: WatchResponse[]) => m.flatMap((x) => (x.message?.$case === "event" ? [x.message.value] : []));

  it("a watcher on one replica sees changes made through the other, in order, once", async () => {
    const p = uid("watch");
    const watch = collect(h.client.keyValue.watch({ prefix: `${p}/` }));
    await watch.until("progress", (m) => m.some((x) => x.message?.$case === "progress"), 5_000);
    const bkv = b.keyValue;
    await bkv.put({ entry: { key: `${p}/a`, value: json(1) } });
    await bkv.put({ entry: { key: `${p}/a`, value: json(2) } });
    await bkv.put({ entry: { key: `${p}-outside`, value: json(0) } });
    await bkv.increment({ key: `${p}/n`, delta: 3 });
    await bkv.delete({ key: `${p}/a` });
    await watch.until("4 events", (m) => events(m).length >= 4);
    await new Promise((r) => setTimeout(r, 300));
    watch.cancel();
    const seen = events(watch.messages);
    expect(seen.map((e) => [e.type, e.entry!.key.slice(p.length + 1)])).toEqual([
      [WatchEventType.WATCH_EVENT_TYPE_PUT, "a"],
      [WatchEventType.WATCH_EVENT_TYPE_PUT, "a"],
      [WatchEventType.WATCH_EVENT_TYPE_PUT, "n"],
      [WatchEventType.WATCH_EVENT_TYPE_DELETE, "a"],
    ]);
    const revisions = seen.map((e) => e.revision);
    expect([...revisions].sort((x, y) => x - y)).toEqual(revisions);
    expect(seen[1]!.entry!.modRevision).toBe(seen[1]!.revision);

    // Resuming from a revision repeats and loses nothing.
    const resumed = collect(b.keyValue.watch({ prefix: `${p}/`, startRevision: revisions[1]! }));
    await resumed.until("3 events", (m) => events(m).length >= 3);
    await new Promise((r) => setTimeout(r, 300));
    resumed.cancel();
    expect(events(resumed.messages).map((e) => e.revision)).toEqual(revisions.slice(1));
  });

  it("expiry reaches watchers when the reaper removes the entry", async () => {
    const p = uid("expire");
    const watch = collect(h.client.keyValue.watch({ prefix: `${p}/` }));
    await watch.until("progress", (m) => m.some((x) => x.message?.$case === "progress"), 5_000);
    await kv().put({ entry: { key: `${p}/k`, value: json(1) }, ttl: { seconds: 0, nanos: 200_000_000 } });
    await watch.until("PUT then EXPIRE", (m) => events(m).length === 2, 5_000);
    watch.cancel();
    expect(events(watch.messages).map((e) => e.type)).toEqual([WatchEventType.WATCH_EVENT_TYPE_PUT, WatchEventType.WATCH_EVENT_TYPE_EXPIRE]);
  });

  it("a compacted start_revision is OUT_OF_RANGE with compact_revision", async () => {
    const p = uid("compact");
    const first = await kv().put({ entry: { key: `${p}/k`, value: json(1) } });
    await kv().put({ entry: { key: `${p}/k`, value: json(2) } });
    // Age the first change past the 24 h retention; the 200 ms reaper compacts it.
    await h.sql.query(`UPDATE kv_changes SET change_time = now() - interval '2 days' WHERE revision <= $1`, [first.modRevision]);
    await waitFor("compaction", async () => (await h.sql.query("SELECT compact_revision FROM kv_revisions")).rows[0].compact_revision >= first.modRevision);
    const watch = collect(kv().watch({ prefix: `${p}/`, startRevision: first.modRevision }));
    await waitFor("the error", () => watch.error !== undefined);
    expect(watch.error!.code).toBe(status.OUT_OF_RANGE);
    const info = errorDetails(watch.error as ServiceError).errorInfo!;
    expect(info.reason).toBe("REVISION_COMPACTED");
    expect(Number(info.metadata.compact_revision)).toBeGreaterThanOrEqual(first.modRevision);
  });

  it("deleting a session deletes its entries, and watchers see DELETE", async () => {
    const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const p = uid("scoped");
    await kv().put({ entry: { key: `${p}/mine`, value: json(1), sessionId } });
    await kv().put({ entry: { key: `${p}/shared`, value: json(1) } });
    const watch = collect(kv().watch({ prefix: `${p}/` }));
    await watch.until("progress", (m) => m.some((x) => x.message?.$case === "progress"), 5_000);
    await h.client.sessions.deleteSession({ sessionId });
    await watch.until("the DELETE", (m) => events(m).length === 1);
    watch.cancel();
    expect(events(watch.messages)[0]).toMatchObject({ type: WatchEventType.WATCH_EVENT_TYPE_DELETE, entry: { key: `${p}/mine` } });
    expect((await failure(kv().get({ key: `${p}/mine` }))).code).toBe(status.NOT_FOUND);
    await kv().get({ key: `${p}/shared` });
  });
});
