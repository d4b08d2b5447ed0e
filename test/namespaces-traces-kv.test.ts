// Namespaces through TraceEventService and KeyValueService: two clients in
// two namespaces on one daemon. The same trace id is two chains, the same key
// two entries; nothing of one namespace is visible, streamable, deletable or
// purgeable from the other. Offsets and revisions stay one global order, so a
// namespace's streams see gaps and must resume across them.
import { CairnClient, type SubscribeEventsResponse, type WatchResponse, WatchEventType } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let red: CairnClient;
let blue: CairnClient;
/** Names "default" explicitly; h.client names no namespace. */
let named: CairnClient;
let n = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  h = await startHarness({ reaperIntervalMs: 200, progressIntervalMs: 300 });
  red = new CairnClient(h.daemon.address, { namespace: "team-red" });
  blue = new CairnClient(h.daemon.address, { namespace: "team-blue" });
  named = new CairnClient(h.daemon.address, { namespace: "default" });
});
afterAll(async () => {
  red?.close();
  blue?.close();
  named?.close();
  await h?.stop();
});

const json = (value: unknown) => ({ $case: "jsonValue" as const, value });
const eventsOf = (messages: SubscribeEventsResponse[]) => messages.flatMap((m) => (m.message?.$case === "event" ? [m.message.value] : []));
const changesOf = (messages: WatchResponse[]) => messages.flatMap((m) => (m.message?.$case === "event" ? [m.message.value] : []));
const valueOf = (entry: { value?: { $case: string; value: unknown } } | undefined) => entry?.value?.value;

describe("traces", () => {
  it("the same trace id in two namespaces is two chains, each from sequence 1, verified apart", async () => {
    const trace = uid("t");
    const time = { seconds: 1_795_000_000, nanos: 0 };
    const ev = (eventId: string, payload: object) => ({ traceId: trace, eventId, eventType: "step", time, payload });
    const r1 = await red.traces.appendEvents({ events: [ev("e1", { who: "red" }), ev("e2", { who: "red" })] });
    // The same event ids in blue are new events there, not duplicates of red's.
    const b1 = await blue.traces.appendEvents({ events: [ev("e1", { who: "blue" }), ev("e2", { who: "blue" }), ev("e3", { who: "blue" })] });
    const r2 = await red.traces.appendEvents({ events: [ev("e3", { who: "red" })] });
    expect(r1.results.map((r) => [r.sequence, r.duplicate])).toEqual([[1, false], [2, false]]);
    expect(b1.results.map((r) => [r.sequence, r.duplicate])).toEqual([[1, false], [2, false], [3, false]]);
    expect(r2.results.map((r) => [r.sequence, r.duplicate])).toEqual([[3, false]]);

    // Duplicates are by event id within the namespace: the original's sequence and offset.
    const redAgain = await red.traces.appendEvents({ events: [ev("e2", { who: "red" }), ev("e4", { who: "red" })] });
    expect(redAgain.results[0]).toMatchObject({ sequence: 2, offset: r1.results[1]!.offset, duplicate: true });
    expect(redAgain.results[1]).toMatchObject({ sequence: 4, duplicate: false });
    const blueAgain = await blue.traces.appendEvents({ events: [ev("e3", {}), ev("e4", { who: "blue" })] });
    expect(blueAgain.results[0]).toMatchObject({ sequence: 3, offset: b1.results[2]!.offset, duplicate: true });
    expect(blueAgain.results[1]).toMatchObject({ sequence: 4, duplicate: false });

    // Offsets are one global order: no offset is in both namespaces.
    const redOffsets = [...r1.results, ...r2.results, redAgain.results[1]!].map((r) => r.offset);
    const blueOffsets = [...b1.results, blueAgain.results[1]!].map((r) => r.offset);
    expect(redOffsets.filter((o) => blueOffsets.includes(o))).toEqual([]);

    const redEvents = (await red.traces.listTraceEvents({ traceId: trace })).events;
    const blueEvents = (await blue.traces.listTraceEvents({ traceId: trace })).events;
    expect(redEvents.map((e) => [e.sequence, e.eventId, (e.payload as { who: string }).who])).toEqual([
      [1, "e1", "red"],
      [2, "e2", "red"],
      [3, "e3", "red"],
      [4, "e4", "red"],
    ]);
    expect(blueEvents.map((e) => [e.sequence, (e.payload as { who: string }).who])).toEqual([
      [1, "blue"],
      [2, "blue"],
      [3, "blue"],
      [4, "blue"],
    ]);
    expect(redEvents.map((e) => e.offset)).toEqual(redOffsets);

    const redVerified = await red.traces.verifyTrace({ traceId: trace });
    const blueVerified = await blue.traces.verifyTrace({ traceId: trace });
    expect(redVerified).toEqual({ valid: true, eventCount: 4, headHash: redEvents[3]!.eventHash, firstInvalidSequence: 0, reason: "" });
    expect(blueVerified).toEqual({ valid: true, eventCount: 4, headHash: blueEvents[3]!.eventHash, firstInvalidSequence: 0, reason: "" });
    expect(redVerified.headHash).not.toBe(blueVerified.headHash);

    // Nowhere else: the default namespace has no such trace.
    expect((await h.client.traces.listTraceEvents({ traceId: trace })).events).toEqual([]);
    expect((await failure(h.client.traces.verifyTrace({ traceId: trace }))).code).toBe(status.NOT_FOUND);
  });

  it("tampering in one namespace breaks only that namespace's chain", async () => {
    const trace = uid("tamper");
    const events = Array.from({ length: 3 }, (_, i) => ({ traceId: trace, eventType: "step", payload: { i } }));
    await red.traces.appendEvents({ events });
    await blue.traces.appendEvents({ events });
    await h.sql.query(`UPDATE trace_events SET payload = '{"i": 99}' WHERE namespace = 'team-blue' AND trace_id = $1 AND sequence = 2`, [trace]);
    expect(await red.traces.verifyTrace({ traceId: trace })).toMatchObject({ valid: true, eventCount: 3 });
    expect(await blue.traces.verifyTrace({ traceId: trace })).toMatchObject({ valid: false, eventCount: 1, firstInvalidSequence: 2 });
  });

  it("ListSessionEvents sees only its namespace's events of the session", async () => {
    const session = uid("s");
    await red.traces.appendEvents({ events: [{ traceId: uid("a"), sessionId: session, eventType: "red.one" }] });
    await blue.traces.appendEvents({ events: [{ traceId: uid("b"), sessionId: session, eventType: "blue.one" }] });
    await red.traces.appendEvents({ events: [{ traceId: uid("c"), sessionId: session, eventType: "red.two" }] });
    expect((await red.traces.listSessionEvents({ sessionId: session })).events.map((e) => e.eventType)).toEqual(["red.one", "red.two"]);
    expect((await blue.traces.listSessionEvents({ sessionId: session })).events.map((e) => e.eventType)).toEqual(["blue.one"]);
    expect((await h.client.traces.listSessionEvents({ sessionId: session })).events).toEqual([]);

    // Paged one at a time: the token resumes past blue's offset in between.
    const first = await red.traces.listSessionEvents({ sessionId: session, pageSize: 1 });
    expect(first.events.map((e) => e.eventType)).toEqual(["red.one"]);
    const second = await red.traces.listSessionEvents({ sessionId: session, pageSize: 1, pageToken: first.nextPageToken });
    expect(second.events.map((e) => e.eventType)).toEqual(["red.two"]);
  });

  it("SubscribeEvents delivers only its namespace's events, and resumes across the other's offsets", async () => {
    const trace = uid("sub");
    const sub = collect(red.traces.subscribeEvents({ fromNow: true }));
    await sub.until("a progress message", (m) => m.some((x) => x.message?.$case === "progress"), 5_000);
    const appended: number[] = [];
    for (let i = 0; i < 6; i++) {
      // Interleaved: every red event has blue offsets on both sides.
      await blue.traces.appendEvents({ events: [{ traceId: trace, eventType: "blue", payload: { i } }] });
      appended.push((await red.traces.appendEvents({ events: [{ traceId: trace, eventType: "red", payload: { i } }] })).results[0]!.offset);
      await h.client.traces.appendEvents({ events: [{ traceId: trace, eventType: "default", payload: { i } }] });
    }
    await sub.until("6 red events", (m) => eventsOf(m).length >= 6);
    await new Promise((r) => setTimeout(r, 300));
    sub.cancel();
    const seen = eventsOf(sub.messages);
    expect(seen.map((e) => e.eventType)).toEqual(Array(6).fill("red"));
    expect(seen.map((e) => e.offset)).toEqual(appended);
    expect(seen.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6]);

    // Resume where a client that saw only the first two would: one past the
    // second's offset; blue's and default's offsets in between are skipped.
    const resumed = collect(red.traces.subscribeEvents({ traceId: trace, startOffset: appended[1]! + 1 }));
    await resumed.until("the 4 after", (m) => eventsOf(m).length >= 4);
    await new Promise((r) => setTimeout(r, 300));
    resumed.cancel();
    expect(eventsOf(resumed.messages).map((e) => e.offset)).toEqual(appended.slice(2));

    // From before every event: only blue's, in blue's own order.
    const blueSub = collect(blue.traces.subscribeEvents({ traceId: trace, startOffset: 1 }));
    await blueSub.until("blue's 6", (m) => eventsOf(m).length >= 6);
    await new Promise((r) => setTimeout(r, 300));
    blueSub.cancel();
    expect(eventsOf(blueSub.messages).map((e) => [e.eventType, e.sequence])).toEqual(
      Array.from({ length: 6 }, (_, i) => ["blue", i + 1]),
    );

    // Progress after the last event: the offset reported is past the others' events too.
    const last = Math.max(...appended) + 1; // default's last event follows red's
    const idle = collect(red.traces.subscribeEvents({ traceId: trace, startOffset: appended[5]! + 1 }));
    await idle.until("progress past the others' events", (m) =>
      m.some((x) => x.message?.$case === "progress" && x.message.value.offset >= last),
    5_000);
    idle.cancel();
    expect(eventsOf(idle.messages)).toEqual([]);
  });

  it("the default namespace is 'default': no header and the named header see the same chain", async () => {
    const trace = uid("dflt");
    await h.client.traces.appendEvents({ events: [{ traceId: trace, eventType: "x", eventId: "one" }] });
    const again = await named.traces.appendEvents({ events: [{ traceId: trace, eventType: "x", eventId: "one" }, { traceId: trace, eventType: "y" }] });
    expect(again.results.map((r) => [r.sequence, r.duplicate])).toEqual([[1, true], [2, false]]);
    expect(await h.client.traces.verifyTrace({ traceId: trace })).toMatchObject({ valid: true, eventCount: 2 });
    expect((await failure(red.traces.verifyTrace({ traceId: trace }))).code).toBe(status.NOT_FOUND);
  });
});

describe("key-value", () => {
  it("the same key in two namespaces is two entries: Get, Put with CAS, Delete, Increment", async () => {
    const key = uid("k");
    const r1 = await red.keyValue.put({ entry: { key, value: json("red") }, expectedVersion: 0 });
    expect((await failure(blue.keyValue.get({ key }))).code).toBe(status.NOT_FOUND);
    // Create-only succeeds in blue: the key does not exist there.
    const b1 = await blue.keyValue.put({ entry: { key, value: json("blue") }, expectedVersion: 0 });
    expect([r1.version, b1.version]).toEqual([1, 1]);
    expect(b1.modRevision).toBeGreaterThan(r1.modRevision);

    // CAS compares with the namespace's own version.
    const r2 = await red.keyValue.put({ entry: { key, value: json("red-2") }, expectedVersion: 1 });
    expect(r2.version).toBe(2);
    const conflict = await failure(blue.keyValue.put({ entry: { key, value: json("blue-2") }, expectedVersion: 2 }));
    expect(conflict.code).toBe(status.ABORTED);
    expect(valueOf(await red.keyValue.get({ key }))).toBe("red-2");
    expect(valueOf(await blue.keyValue.get({ key }))).toBe("blue");

    // Delete with a version checks the namespace's own entry, and deletes only it.
    expect((await failure(blue.keyValue.delete({ key, expectedVersion: 2 }))).code).toBe(status.ABORTED);
    expect(await blue.keyValue.delete({ key, expectedVersion: 1 })).toEqual({ deleted: true });
    expect(await blue.keyValue.delete({ key })).toEqual({ deleted: false });
    expect(valueOf(await red.keyValue.get({ key }))).toBe("red-2");

    const counter = uid("count");
    await red.keyValue.increment({ key: counter, delta: 5 });
    await blue.keyValue.increment({ key: counter, delta: 2 });
    expect(valueOf(await red.keyValue.increment({ key: counter, delta: 1 }))).toBe(6);
    expect(valueOf(await blue.keyValue.get({ key: counter }))).toBe(2);
    expect((await failure(h.client.keyValue.get({ key: counter }))).code).toBe(status.NOT_FOUND);
  });

  it("coalesced writes and reads of the same key in both namespaces stay apart", async () => {
    const counter = uid("hot");
    // Arriving together: one coalesced batch holds both namespaces' writes to one key.
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? red : blue).keyValue.increment({ key: counter, delta: i % 2 === 0 ? 1 : 10 })));
    const key = uid("same");
    await Promise.all([red.keyValue.put({ entry: { key, value: json("r") } }), blue.keyValue.put({ entry: { key, value: json("b") } })]);
    const [rc, bc, rk, bk, dk] = await Promise.all([
      red.keyValue.get({ key: counter }),
      blue.keyValue.get({ key: counter }),
      red.keyValue.get({ key }),
      blue.keyValue.get({ key }),
      failure(h.client.keyValue.get({ key })),
    ]);
    expect([valueOf(rc), valueOf(bc), rc.version, bc.version]).toEqual([20, 200, 20, 20]);
    expect([valueOf(rk), valueOf(bk)]).toEqual(["r", "b"]);
    expect(dk.code).toBe(status.NOT_FOUND);
  });

  it("List, BatchGet, BatchPut and BatchDelete see only their namespace", async () => {
    const p = uid("list");
    await red.keyValue.batchPut({ requests: ["a", "b", "c"].map((k) => ({ entry: { key: `${p}/${k}`, value: json(`red-${k}`) } })) });
    await blue.keyValue.batchPut({ requests: ["b", "d"].map((k) => ({ entry: { key: `${p}/${k}`, value: json(`blue-${k}`) } })) });
    const listed = async (c: CairnClient, pageSize = 0) => {
      const keys: string[] = [];
      let pageToken = "";
      do {
        const page = await c.keyValue.list({ prefix: `${p}/`, pageSize, pageToken });
        keys.push(...page.entries.map((e) => `${e.key.slice(p.length + 1)}=${valueOf(e)}`));
        pageToken = page.nextPageToken;
      } while (pageToken);
      return keys;
    };
    expect(await listed(red)).toEqual(["a=red-a", "b=red-b", "c=red-c"]);
    expect(await listed(red, 1)).toEqual(["a=red-a", "b=red-b", "c=red-c"]);
    expect(await listed(blue)).toEqual(["b=blue-b", "d=blue-d"]);
    expect(await listed(h.client)).toEqual([]);

    const got = await blue.keyValue.batchGet({ keys: ["a", "b", "c", "d"].map((k) => `${p}/${k}`) });
    expect(got.entries.map((e) => valueOf(e))).toEqual(["blue-b", "blue-d"]);

    // BatchPut's conditions are the namespace's own: b exists in red and blue, not in default.
    const createOnly = { requests: [{ entry: { key: `${p}/b`, value: json("new") }, expectedVersion: 0 }] };
    expect((await failure(red.keyValue.batchPut(createOnly))).code).toBe(status.ABORTED);
    expect((await failure(blue.keyValue.batchPut(createOnly))).code).toBe(status.ABORTED);
    await h.client.keyValue.batchPut(createOnly);

    expect(await red.keyValue.batchDelete({ keys: ["b", "d"].map((k) => `${p}/${k}`) })).toEqual({ deletedCount: 1 });
    expect(await listed(red)).toEqual(["a=red-a", "c=red-c"]);
    expect(await listed(blue)).toEqual(["b=blue-b", "d=blue-d"]);
    expect(await listed(named)).toEqual(["b=new"]);
  });

  it("Watch sees only its namespace's changes, and resumes across the other's revisions", async () => {
    const p = uid("watch");
    const watch = collect(red.keyValue.watch({ prefix: `${p}/` }));
    await watch.until("progress", (m) => m.some((x) => x.message?.$case === "progress"), 5_000);
    const revisions: number[] = [];
    for (let i = 0; i < 4; i++) {
      await blue.keyValue.put({ entry: { key: `${p}/k`, value: json(`blue-${i}`) } });
      revisions.push((await red.keyValue.put({ entry: { key: `${p}/k`, value: json(`red-${i}`) } })).modRevision);
      await h.client.keyValue.put({ entry: { key: `${p}/k`, value: json(`default-${i}`) } });
    }
    await blue.keyValue.delete({ key: `${p}/k` });
    await red.keyValue.delete({ key: `${p}/k` });
    await watch.until("4 puts and a delete", (m) => changesOf(m).length >= 5);
    await new Promise((r) => setTimeout(r, 300));
    watch.cancel();
    const seen = changesOf(watch.messages);
    expect(seen.map((c) => [c.type, valueOf(c.entry)])).toEqual([
      ...[0, 1, 2, 3].map((i) => [WatchEventType.WATCH_EVENT_TYPE_PUT, `red-${i}`]),
      [WatchEventType.WATCH_EVENT_TYPE_DELETE, "red-3"],
    ]);
    expect(seen.slice(0, 4).map((c) => c.revision)).toEqual(revisions);
    expect(seen.slice(0, 4).map((c) => c.entry!.version)).toEqual([1, 2, 3, 4]);

    // Resume one past the second change: blue's and default's revisions in between are skipped.
    const resumed = collect(red.keyValue.watch({ prefix: `${p}/`, startRevision: revisions[1]! + 1 }));
    await resumed.until("the 3 after", (m) => changesOf(m).length >= 3);
    await new Promise((r) => setTimeout(r, 300));
    resumed.cancel();
    expect(changesOf(resumed.messages).map((c) => c.revision)).toEqual([...seen.slice(2).map((c) => c.revision)]);

    const blueWatch = collect(blue.keyValue.watch({ prefix: `${p}/`, startRevision: revisions[0]! - 1 }));
    await blueWatch.until("blue's 5", (m) => changesOf(m).length >= 5);
    await new Promise((r) => setTimeout(r, 300));
    blueWatch.cancel();
    expect(changesOf(blueWatch.messages).map((c) => valueOf(c.entry))).toEqual(["blue-0", "blue-1", "blue-2", "blue-3", "blue-3"]);
  });

  it("PurgeExpired purges only the caller's namespace; the reaper purges every namespace, logging each in its own", async () => {
    const p = uid("purge");
    // Hold the reaper's lock, so that only PurgeExpired removes anything at first.
    const reaperLock = await h.sql.connect();
    await reaperLock.query("SELECT pg_advisory_lock($1)", [0x43414952]);
    try {
      const short = { seconds: 0, nanos: 1_000_000 };
      for (const c of [red, blue, h.client]) {
        await c.keyValue.put({ entry: { key: `${p}/gone`, value: json(1) }, ttl: short });
        await c.keyValue.put({ entry: { key: `${p}/kept`, value: json(1) } });
      }
      await new Promise((r) => setTimeout(r, 20));
      const stored = async (ns: string) =>
        (await h.sql.query("SELECT key FROM kv_entries WHERE namespace = $1 AND key LIKE $2 ORDER BY key", [ns, `${p}/%`])).rows.map(
          (r) => r.key.slice(p.length + 1),
        );
      expect(await stored("team-blue")).toEqual(["gone", "kept"]);
      // Other tests' expired entries may be in red too; blue and default are untouched.
      expect((await red.keyValue.purgeExpired({})).deletedCount).toBeGreaterThanOrEqual(1);
      expect(await stored("team-red")).toEqual(["kept"]);
      expect(await stored("team-blue")).toEqual(["gone", "kept"]);
      expect(await stored("default")).toEqual(["gone", "kept"]);
      expect((await red.keyValue.purgeExpired({})).deletedCount).toBe(0);
      const expiredRed = await h.sql.query("SELECT namespace FROM kv_changes WHERE key = $1 AND change_type = 3", [`${p}/gone`]);
      expect(expiredRed.rows).toEqual([{ namespace: "team-red" }]);
    } finally {
      await reaperLock.query("SELECT pg_advisory_unlock_all()");
      reaperLock.release();
    }
    // The reaper (every namespace) removes the rest, each EXPIRE logged in its entry's namespace.
    await waitFor(
      "the reaper",
      async () => (await h.sql.query("SELECT 1 FROM kv_entries WHERE key = $1", [`${p}/gone`])).rowCount === 0,
      5_000,
    );
    const expired = await h.sql.query("SELECT namespace FROM kv_changes WHERE key = $1 AND change_type = 3 ORDER BY namespace", [`${p}/gone`]);
    expect(expired.rows.map((r) => r.namespace)).toEqual(["default", "team-blue", "team-red"]);
    for (const c of [red, blue, h.client]) await c.keyValue.get({ key: `${p}/kept` });
  });

  it("the default namespace is 'default': no header and the named header see the same entries", async () => {
    const key = uid("dflt");
    await h.client.keyValue.put({ entry: { key, value: json("d") } });
    expect(valueOf(await named.keyValue.get({ key }))).toBe("d");
    expect(await named.keyValue.delete({ key })).toEqual({ deleted: true });
    expect((await failure(h.client.keyValue.get({ key }))).code).toBe(status.NOT_FOUND);
  });
});

describe("deleting a session", () => {
  it("deletes only the deleting namespace's traces and entries of that session id", async () => {
    const sessionId = uid("sess");
    await red.sessions.createSession({ sessionId, session: { agentId: "a" } });
    await blue.sessions.createSession({ sessionId, session: { agentId: "a" } });
    const trace = uid("owned");
    const mixed = uid("mixed");
    for (const c of [red, blue]) {
      await c.traces.appendEvents({ events: [{ traceId: trace, sessionId, eventType: "x" }, { traceId: trace, sessionId, eventType: "y" }] });
      // A trace with another session's event too is kept whole.
      await c.traces.appendEvents({ events: [{ traceId: mixed, sessionId, eventType: "x" }, { traceId: mixed, sessionId: "other", eventType: "y" }] });
      await c.keyValue.put({ entry: { key: `${sessionId}/scoped`, value: json(1), sessionId } });
    }
    const watch = collect(blue.keyValue.watch({ prefix: `${sessionId}/` }));
    await watch.until("progress", (m) => m.some((x) => x.message?.$case === "progress"), 5_000);

    await red.sessions.deleteSession({ sessionId });

    expect((await failure(red.traces.verifyTrace({ traceId: trace }))).code).toBe(status.NOT_FOUND);
    expect((await failure(red.keyValue.get({ key: `${sessionId}/scoped` }))).code).toBe(status.NOT_FOUND);
    expect(await red.traces.verifyTrace({ traceId: mixed })).toMatchObject({ valid: true, eventCount: 2 });
    // Blue's rows of the same session id, trace id and key are untouched.
    expect(await blue.traces.verifyTrace({ traceId: trace })).toMatchObject({ valid: true, eventCount: 2 });
    expect((await blue.traces.listSessionEvents({ sessionId })).events).toHaveLength(3);
    await blue.keyValue.get({ key: `${sessionId}/scoped` });
    await new Promise((r) => setTimeout(r, 400));
    watch.cancel();
    expect(changesOf(watch.messages)).toEqual([]);

    // A red append starts the deleted trace afresh; blue's chain goes on.
    expect((await red.traces.appendEvents({ events: [{ traceId: trace, eventType: "z" }] })).results[0]!.sequence).toBe(1);
    expect((await blue.traces.appendEvents({ events: [{ traceId: trace, eventType: "z" }] })).results[0]!.sequence).toBe(3);

    await blue.sessions.deleteSession({ sessionId });
    expect((await failure(blue.keyValue.get({ key: `${sessionId}/scoped` }))).code).toBe(status.NOT_FOUND);
    expect(await blue.traces.verifyTrace({ traceId: trace })).toMatchObject({ valid: true, eventCount: 3 });
  });
});
