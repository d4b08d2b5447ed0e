import { errorDetails, Severity, type SubscribeEventsResponse, type TraceEvent } from "@cairn/client";
import { type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { collect } from "./support/streams.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let n = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  h = await startHarness({ progressIntervalMs: 300 });
});
afterAll(async () => {
  await h?.stop();
});

const event = (traceId: string, extra: Partial<TraceEvent> = {}) => ({
  traceId,
  eventType: "tool.call",
  severity: Severity.SEVERITY_INFO,
  payload: { tool: "search", args: { q: "x" } },
  ...extra,
});

const rowCount = async () => (await h.sql.query("SELECT count(*)::int AS n FROM trace_events")).rows[0].n as number;

describe("AppendEvents and the hash chain", () => {
  it("assigns gapless sequences, increasing offsets and a verifiable chain", async () => {
    const trace = uid("t");
    const first = await h.client.traces.appendEvents({ events: [event(trace), event(trace), event(uid("other"))] });
    const second = await h.client.traces.appendEvents({ events: [event(trace, { eventId: "mine-1", sessionId: "s1" })] });
    const results = [...first.results, ...second.results];
    expect(results.map((r) => r.sequence)).toEqual([1, 2, 1, 3]);
    expect(results.every((r) => !r.duplicate)).toBe(true);
    const offsets = results.map((r) => r.offset);
    expect([...offsets].sort((a, b) => a - b)).toEqual(offsets);
    expect(second.results[0]!.eventId).toBe("mine-1");
    expect(first.results[0]!.eventId).toMatch(/^[0-9a-f-]{36}$/);

    const { events } = await h.client.traces.listTraceEvents({ traceId: trace });
    expect(events.map((e) => e.sequence)).toEqual([1, 2, 3]);
    expect(events[0]!.prevHash).toBe("");
    expect(events[1]!.prevHash).toBe(events[0]!.eventHash);
    expect(events[2]!.prevHash).toBe(events[1]!.eventHash);
    expect(events[0]!.eventHash).toMatch(/^[0-9a-f]{64}$/);
    expect(events[0]!.time).toEqual(events[0]!.ingestTime); // time defaults to ingest time
    expect(events[2]).toMatchObject({ sessionId: "s1", eventType: "tool.call", payload: { tool: "search", args: { q: "x" } } });

    const verified = await h.client.traces.verifyTrace({ traceId: trace });
    expect(verified).toEqual({ valid: true, eventCount: 3, headHash: events[2]!.eventHash, firstInvalidSequence: 0, reason: "" });
  });

  it("keeps microseconds of the client's time and hashes them", async () => {
    const trace = uid("t");
    await h.client.traces.appendEvents({ events: [event(trace, { time: { seconds: 1_795_000_000, nanos: 123_456_789 } })] });
    const [e] = (await h.client.traces.listTraceEvents({ traceId: trace })).events;
    expect(e!.time).toEqual({ seconds: 1_795_000_000, nanos: 123_456_000 });
    expect((await h.client.traces.verifyTrace({ traceId: trace })).valid).toBe(true);
  });

  it("reports duplicates, in a batch and across batches, with the original sequence and offset", async () => {
    const trace = uid("t");
    const a = await h.client.traces.appendEvents({ events: [event(trace, { eventId: "e1" }), event(trace, { eventId: "e2" }), event(trace, { eventId: "e1" })] });
    expect(a.results.map((r) => [r.eventId, r.sequence, r.duplicate])).toEqual([
      ["e1", 1, false],
      ["e2", 2, false],
      ["e1", 1, true],
    ]);
    expect(a.results[2]!.offset).toBe(a.results[0]!.offset);
    const b = await h.client.traces.appendEvents({ events: [event(trace, { eventId: "e2" }), event(trace, { eventId: "e3" })] });
    expect(b.results.map((r) => [r.eventId, r.sequence, r.duplicate])).toEqual([
      ["e2", 2, true],
      ["e3", 3, false],
    ]);
    expect(b.results[0]!.offset).toBe(a.results[1]!.offset);
    // The same event id in another trace is another event.
    const c = await h.client.traces.appendEvents({ events: [event(uid("t"), { eventId: "e1" })] });
    expect(c.results[0]!.duplicate).toBe(false);
  });

  it.each([
    ["a missing trace_id", [event("")], "events[0].trace_id"],
    ["an unknown severity", [event("t-ok"), event("t-ok", { severity: 9 as Severity })], "events[1].severity"],
    ["a payload over the limit", [event("t-ok", { payload: { big: "x".repeat(1024 * 1024) } })], "events[0].payload"],
    ["a missing event_type", [event("t-ok", { eventType: "" })], "events[0].event_type"],
    ["a bad event_id", [event("t-ok", { eventId: "no spaces" })], "events[0].event_id"],
    ["more than 1000 events", Array.from({ length: 1001 }, () => event("t-ok")), "events"],
    ["no events", [], "events"],
  ])("rejects %s with INVALID_ARGUMENT naming the field, writing nothing", async (_, events, field) => {
    const before = await rowCount();
    const f = await failure(h.client.traces.appendEvents({ events }));
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.fields).toContain(field);
    expect(await rowCount()).toBe(before);
  });
});

describe("ListTraceEvents / ListSessionEvents", () => {
  it("pages a trace in sequence order", async () => {
    const trace = uid("t");
    await h.client.traces.appendEvents({ events: Array.from({ length: 7 }, () => event(trace)) });
    const seen: number[] = [];
    let pageToken = "";
    do {
      const page = await h.client.traces.listTraceEvents({ traceId: trace, pageSize: 3, pageToken });
      seen.push(...page.events.map((e) => e.sequence));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const after = await h.client.traces.listTraceEvents({ traceId: trace, afterSequence: 5 });
    expect(after.events.map((e) => e.sequence)).toEqual([6, 7]);
  });

  it("filters a session's events by type, severity and time, in offset order", async () => {
    const session = uid("s");
    const t = (s: number) => ({ seconds: 1_800_000_000 + s, nanos: 0 });
    await h.client.traces.appendEvents({
      events: [
        event(uid("t"), { sessionId: session, eventType: "a", severity: Severity.SEVERITY_DEBUG, time: t(1) }),
        event(uid("t"), { sessionId: session, eventType: "b", severity: Severity.SEVERITY_ERROR, time: t(2) }),
        event(uid("t"), { sessionId: session, eventType: "a", severity: Severity.SEVERITY_WARNING, time: t(3) }),
        event(uid("t"), { sessionId: "someone-else", eventType: "a", time: t(4) }),
      ],
    });
    const list = async (q: object) =>
      (await h.client.traces.listSessionEvents({ sessionId: session, ...q })).events.map((e) => e.time!.seconds - 1_800_000_000);
    expect(await list({})).toEqual([1, 2, 3]);
    expect(await list({ eventTypes: ["a"] })).toEqual([1, 3]);
    expect(await list({ minSeverity: Severity.SEVERITY_WARNING })).toEqual([2, 3]);
    expect(await list({ afterTime: t(1), beforeTime: t(3) })).toEqual([2]);
    const page = await h.client.traces.listSessionEvents({ sessionId: session, pageSize: 2 });
    expect(page.events).toHaveLength(2);
    const rest = await h.client.traces.listSessionEvents({ sessionId: session, pageSize: 2, pageToken: page.nextPageToken });
    expect(rest.events.map((e) => e.time!.seconds - 1_800_000_000)).toEqual([3]);
    expect((await failure(h.client.traces.listSessionEvents({ sessionId: session, eventTypes: ["b"], pageToken: page.nextPageToken }))).reason).toBe(
      "INVALID_PAGE_TOKEN",
    );
    expect((await failure(h.client.traces.listSessionEvents({ sessionId: "" }))).fields).toEqual(["session_id"]);
  });
});

describe("VerifyTrace catches tampering in SQL", () => {
  async function chain(length: number) {
    const trace = uid("tamper");
    await h.client.traces.appendEvents({ events: Array.from({ length }, (_, i) => event(trace, { payload: { i } })) });
    return trace;
  }

  it("an altered payload is a hash mismatch at its sequence", async () => {
    const trace = await chain(5);
    await h.sql.query(`UPDATE trace_events SET payload = '{"i": 99}' WHERE trace_id = $1 AND sequence = 3`, [trace]);
    expect(await h.client.traces.verifyTrace({ traceId: trace })).toMatchObject({ valid: false, firstInvalidSequence: 3, reason: "hash mismatch", eventCount: 2 });
  });

  it("a deleted event is a sequence gap", async () => {
    const trace = await chain(5);
    await h.sql.query(`DELETE FROM trace_events WHERE trace_id = $1 AND sequence = 4`, [trace]);
    expect(await h.client.traces.verifyTrace({ traceId: trace })).toMatchObject({ valid: false, firstInvalidSequence: 4, reason: "sequence gap" });
  });

  it("a re-linked hash is a broken link", async () => {
    const trace = await chain(5);
    await h.sql.query(`UPDATE trace_events SET prev_hash = repeat('0', 64) WHERE trace_id = $1 AND sequence = 2`, [trace]);
    expect(await h.client.traces.verifyTrace({ traceId: trace })).toMatchObject({ valid: false, firstInvalidSequence: 2, reason: "broken link" });
  });

  it("an unknown trace is NOT_FOUND", async () => {
    expect((await failure(h.client.traces.verifyTrace({ traceId: "never-written" }))).code).toBe(status.NOT_FOUND);
  });
});

describe("IngestEvents", () => {
  function open() {
    const call = h.client.traces.ingestEvents();
    return { call, acks: collect(call) };
  }
  const batch = (batchId: string, events: ReturnType<typeof event>[]) => ({ batchId, events });

  it("acks every batch in order after committing it", async () => {
    const trace = uid("ingest");
    // A deferred trigger makes each COMMIT of this trace's events take ~200 ms,
    // so an ack written before its commit would reach the client while the
    // batch is still invisible to every other connection.
    await h.sql.query(`CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN PERFORM pg_sleep(0.01); RETURN NULL; END $$`);
    await h.sql.query(`CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON trace_events
                         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                         WHEN (NEW.trace_id = '${trace}') EXECUTE FUNCTION slow_commit()`);
    try {
      const { call, acks } = open();
      // Read on the ack's own tick, through the test's pool (another
      // connection than the daemon's transaction): the batch must be visible.
      const seen: Promise<{ n: number; last: number }>[] = [];
      call.on("data", () => {
        seen.push(
          h.sql
            .query("SELECT count(*)::int AS n, max(event_offset)::int AS last FROM trace_events WHERE trace_id = $1", [trace])
            .then((r) => r.rows[0]),
        );
      });
      for (let b = 0; b < 5; b++) {
        call.write(batch(`b${b}`, Array.from({ length: 20 }, () => event(trace))));
        await acks.until(`the ack of b${b}`, (m) => m.length === b + 1);
        // Checked before the next batch is sent, so the next commit cannot hide a late one.
        expect(await seen[b]).toEqual({ n: 20 * (b + 1), last: acks.messages[b]!.lastOffset });
      }
      call.end();
      await acks.until("5 acks and the end", (m) => m.length === 5 && acks.ended);
      expect(acks.messages.map((a) => a.batchId)).toEqual(["b0", "b1", "b2", "b3", "b4"]);
      expect(acks.messages.every((a) => a.accepted === 20 && a.duplicates === 0)).toBe(true);
      const lastOffsets = acks.messages.map((a) => a.lastOffset);
      expect([...lastOffsets].sort((x, y) => x - y)).toEqual(lastOffsets);
      expect((await h.client.traces.verifyTrace({ traceId: trace })).eventCount).toBe(100);
    } finally {
      await h.sql.query("DROP TRIGGER slow_commit ON trace_events");
      await h.sql.query("DROP FUNCTION slow_commit()");
    }
  });

  it("a bad batch ends the stream with INVALID_ARGUMENT naming it; acked batches stay", async () => {
    const trace = uid("ingest");
    const { call, acks } = open();
    call.write(batch("good-1", [event(trace)]));
    call.write(batch("bad-2", [event(trace), event("")]));
    call.write(batch("never-3", [event(trace)]));
    call.end();
    await waitFor("the stream to fail", () => acks.error !== undefined);
    expect(acks.error!.code).toBe(status.INVALID_ARGUMENT);
    expect(acks.error!.message).toContain('batch "bad-2"');
    expect(acks.error!.message).toContain("events[1].trace_id");
    const details = errorDetails(acks.error as ServiceError);
    expect(details.errorInfo?.metadata).toEqual({ batch_id: "bad-2" });
    expect(details.badRequest?.fieldViolations.map((f) => f.field)).toEqual(["events[1].trace_id"]);
    expect(acks.messages.map((a) => a.batchId)).toEqual(["good-1"]);
    const { events } = await h.client.traces.listTraceEvents({ traceId: trace });
    expect(events).toHaveLength(1);
  });

  it("resuming after a dropped stream by re-sending the unacked batch stores nothing twice", async () => {
    const trace = uid("resume");
    const ids = (prefix: string) => Array.from({ length: 10 }, (_, i) => event(trace, { eventId: `${prefix}-${i}` }));
    const first = open();
    first.call.write(batch("b1", ids("a")));
    await first.acks.until("ack of b1", (m) => m.length === 1);
    first.call.write(batch("b2", ids("b")));
    // The connection drops before b2's ack is seen: the client cannot know whether b2 was stored.
    first.call.cancel();
    const second = open();
    second.call.write(batch("b2", ids("b")));
    second.call.write(batch("b3", ids("c")));
    second.call.end();
    await second.acks.until("two acks", (m) => m.length === 2 && second.acks.ended);
    const b2 = second.acks.messages[0]!;
    expect(b2.accepted + b2.duplicates).toBe(10);
    const { events } = await h.client.traces.listTraceEvents({ traceId: trace, pageSize: 100 });
    expect(events.map((e) => e.sequence)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(new Set(events.map((e) => e.eventId)).size).toBe(30);
    expect((await h.client.traces.verifyTrace({ traceId: trace })).valid).toBe(true);
  });
});

describe("SubscribeEvents", () => {
  const subscribe = (request: object) => collect(h.client.traces.subscribeEvents(request));
  const eventsOf = (messages: SubscribeEventsResponse[]) =>
    messages.flatMap((m) => (m.message?.$case === "event" ? [m.message.value] : []));

  it("catches up from start_offset, then delivers live events, filtered, each once", async () => {
    const trace = uid("sub");
    const before = await h.client.traces.appendEvents({ events: Array.from({ length: 3 }, () => event(trace)) });
    const start = before.results[1]!.offset;
    const sub = subscribe({ traceId: trace, startOffset: start });
    await sub.until("catch-up", (m) => eventsOf(m).length === 2);
    await h.client.traces.appendEvents({ events: [event(uid("noise")), event(trace), event(trace)] });
    await sub.until("live events", (m) => eventsOf(m).length === 4);
    sub.cancel();
    expect(eventsOf(sub.messages).map((e) => e.sequence)).toEqual([2, 3, 4, 5]);
  });

  it("from_now skips the past; idle streams get progress", async () => {
    const trace = uid("sub");
    await h.client.traces.appendEvents({ events: [event(trace)] });
    const sub = subscribe({ traceId: trace, fromNow: true });
    await sub.until("a progress message", (m) => m.some((x) => x.message?.$case === "progress"), 5_000);
    await h.client.traces.appendEvents({ events: [event(trace)] });
    await sub.until("the live event", (m) => eventsOf(m).length === 1);
    sub.cancel();
    expect(eventsOf(sub.messages)[0]!.sequence).toBe(2);
    const progress = sub.messages.find((m) => m.message?.$case === "progress")!;
    expect(progress.message!.value).toMatchObject({ offset: expect.any(Number) });
  });

  it("validates its request", async () => {
    const sub = subscribe({ minSeverity: 42 });
    await waitFor("the error", () => sub.error !== undefined);
    expect(sub.error!.code).toBe(status.INVALID_ARGUMENT);
  });
});

it("deleting a session deletes its events", async () => {
  const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "a" } });
  const trace = uid("owned");
  await h.client.traces.appendEvents({ events: [event(trace, { sessionId }), event(trace, { sessionId })] });
  await h.client.sessions.deleteSession({ sessionId });
  expect((await h.client.traces.listSessionEvents({ sessionId })).events).toEqual([]);
  expect((await h.client.traces.listTraceEvents({ traceId: trace })).events).toEqual([]);
  expect((await failure(h.client.traces.verifyTrace({ traceId: trace }))).code).toBe(status.NOT_FOUND);
  // The trace starts afresh.
  const again = await h.client.traces.appendEvents({ events: [event(trace)] });
  expect(again.results[0]!.sequence).toBe(1);
});

it("deleting a session keeps whole every trace it shares, so the chain stays verifiable", async () => {
  const session = async () => (await h.client.sessions.createSession({ session: { agentId: "a" } })).sessionId;
  const [a, b] = [await session(), await session()];
  const shared = uid("shared");
  const unscoped = uid("unscoped");
  const owned = uid("owned");
  await h.client.traces.appendEvents({
    events: [
      event(shared, { sessionId: a }),
      event(shared, { sessionId: b }),
      event(shared, { sessionId: a }),
      event(unscoped, { sessionId: a }),
      event(unscoped),
      event(owned, { sessionId: a }),
    ],
  });
  const before = await h.client.traces.verifyTrace({ traceId: shared });
  await h.client.sessions.deleteSession({ sessionId: a });

  // A trace that also holds another session's events keeps all of them, the deleted session's included.
  const { events } = await h.client.traces.listTraceEvents({ traceId: shared });
  expect(events.map((e) => [e.sequence, e.sessionId])).toEqual([
    [1, a],
    [2, b],
    [3, a],
  ]);
  expect(await h.client.traces.verifyTrace({ traceId: shared })).toEqual({ ...before, valid: true, eventCount: 3 });
  // Events with no session count as another owner.
  expect(await h.client.traces.verifyTrace({ traceId: unscoped })).toMatchObject({ valid: true, eventCount: 2 });
  // A trace the deleted session alone wrote goes, in the same deletion.
  expect((await h.client.traces.listTraceEvents({ traceId: owned })).events).toEqual([]);
  expect((await h.client.traces.listSessionEvents({ sessionId: a })).events.map((e) => e.traceId)).toEqual([shared, shared, unscoped]);
  // The kept chain goes on.
  const next = await h.client.traces.appendEvents({ events: [event(shared, { sessionId: b })] });
  expect(next.results[0]!.sequence).toBe(4);
  expect(await h.client.traces.verifyTrace({ traceId: shared })).toMatchObject({ valid: true, eventCount: 4 });
});

it("idle subscriptions hold no pool connection; cancelled ones go away", async () => {
  // The harness pool has 10 connections; 25 idle subscribers must not starve it.
  const subs = Array.from({ length: 25 }, (_, i) => collect(h.client.traces.subscribeEvents({ traceId: `idle-${i}`, fromNow: true })));
  await Promise.all(subs.map((s) => s.until("a progress message", (m) => m.some((x) => x.message?.$case === "progress"), 5_000)));
  const started = Date.now();
  const appended = await h.client.traces.appendEvents({ events: Array.from({ length: 25 }, (_, i) => event(`idle-${i}`)) });
  expect(appended.results).toHaveLength(25);
  expect(Date.now() - started).toBeLessThan(2_000);
  await Promise.all(subs.map((s) => s.until("its event", (m) => m.some((x) => x.message?.$case === "event"))));
  const busy = await h.sql.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'cairn' AND state = 'active' AND pid <> pg_backend_pid()`,
  );
  expect(busy.rows[0].n).toBe(0);
  for (const s of subs) s.cancel();
});

it("a subscriber starting inside the replica's window of live events does not get events deleted since", async () => {
  const sessionId = (await h.client.sessions.createSession({ session: { agentId: "a" } })).sessionId;
  const trace = uid("forgotten");
  const live = collect(h.client.traces.subscribeEvents({ traceId: trace, fromNow: true }));
  await waitFor("the live subscription", () => (h.daemon.openStreams().get("SubscribeEvents") ?? 0) > 0);
  const { results } = await h.client.traces.appendEvents({ events: [event(trace, { sessionId }), event(trace, { sessionId })] });
  // The live subscriber got them: they are in the window now.
  await live.until("the events", (m) => m.filter((x) => x.message?.$case === "event").length === 2);
  live.cancel();
  await h.client.sessions.deleteSession({ sessionId });
  const late = collect(h.client.traces.subscribeEvents({ traceId: trace, startOffset: results[0]!.offset }));
  const last = results[1]!.offset;
  await late.until("progress past the deleted events", (m) =>
    m.some((x) => x.message?.$case === "progress" && (x.message.value as { offset: number }).offset >= last),
  );
  late.cancel();
  expect(late.messages.filter((x) => x.message?.$case === "event")).toEqual([]);
});
