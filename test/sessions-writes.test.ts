// Session writes of issue 12: state_patch (RFC 7386, merged in the
// database), allow_missing upserts, BatchUpdateSessions, AppendMessages with
// a state patch and expected_version, DeleteMessages, ImportSessions, the
// new ListSessions filters and end_time order, and ListMessages roles.
import { type Session, SessionStatus, type Timestamp } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Database } from "../src/db/database.js";
import { createPool } from "../src/db/pool.js";
import { CairnError } from "../src/errors.js";
import { applyUpdates } from "../src/sessions/updates.js";
import { failure, type Harness, startHarness } from "./support/harness.js";

/** Small limits, so the size and batch bounds are cheap to reach. */
const MAX_DOCUMENT_BYTES = 4096;
const BATCH_LIMIT = 20;

let h: Harness;
let seq = 0;
/** Unique ids per test so tests in this file don't see each other's rows. */
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

beforeAll(async () => {
  h = await startHarness({ limits: { maxDocumentBytes: MAX_DOCUMENT_BYTES, maxBatchItems: BATCH_LIMIT } as never });
});
afterAll(async () => {
  await h?.stop();
});

const sessions = () => h.client.sessions;
const create = (state?: Record<string, unknown>, extra: Partial<Session> = {}) =>
  sessions().createSession({ session: { agentId: "writer", state, ...extra } });
const ts = (iso: string): Timestamp => {
  const ms = Date.parse(iso);
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
};
const iso = (t: Timestamp | undefined) => (t ? new Date(t.seconds * 1000 + t.nanos / 1_000_000).toISOString() : undefined);
const rowCount = async (sql: string, params: unknown[]) => (await h.sql.query(sql, params)).rows[0].n as number;

describe("UpdateSession state_patch", () => {
  it("merges as RFC 7386: null deletes, objects merge, anything else replaces; version + 1", async () => {
    const s = await create({ a: { b: 1, c: 2 }, list: [1, 2], keep: "x", gone: true });
    const u = await sessions().updateSession({
      session: { sessionId: s.sessionId },
      statePatch: { a: { c: null, d: 4 }, list: [3], gone: null, added: { deep: null, kept: 1 } },
    });
    expect(u.state).toEqual({ a: { b: 1, d: 4 }, list: [3], keep: "x", added: { kept: 1 } });
    expect(u.version).toBe(2);
    expect((await sessions().getSession({ sessionId: s.sessionId })).state).toEqual(u.state);
  });

  it("patches a session without state from {} and combines with other masked fields", async () => {
    const s = await create(undefined, { labels: { a: "1" } });
    const u = await sessions().updateSession({
      session: { sessionId: s.sessionId, labels: { b: "2" } },
      updateMask: ["labels"],
      statePatch: { k: 1 },
      expectedVersion: 1,
    });
    expect(u).toMatchObject({ state: { k: 1 }, labels: { b: "2" }, version: 2 });
  });

  it("20 concurrent patches of different keys all survive", async () => {
    const s = await create({ base: 0 });
    const n = 20;
    await Promise.all(
      Array.from({ length: n }, (_, i) => sessions().updateSession({ session: { sessionId: s.sessionId }, statePatch: { [`k${i}`]: i } })),
    );
    const got = await sessions().getSession({ sessionId: s.sessionId });
    expect(got.version).toBe(1 + n);
    expect(got.state).toEqual({ base: 0, ...Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])) });
  });

  it("with state in the mask or the fields is INVALID_ARGUMENT naming state_patch", async () => {
    const s = await create({ a: 1 });
    for (const request of [
      { session: { sessionId: s.sessionId, state: { b: 2 } }, statePatch: { c: 3 } },
      { session: { sessionId: s.sessionId }, updateMask: ["state"], statePatch: { c: 3 } },
      { session: { sessionId: s.sessionId }, updateMask: ["*"], statePatch: { c: 3 } },
    ]) {
      expect(await failure(sessions().updateSession(request))).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["state_patch"] });
    }
    expect(await sessions().getSession({ sessionId: s.sessionId })).toMatchObject({ version: 1, state: { a: 1 } });
  });

  it("is checked like a document, naming the path inside it", async () => {
    const s = await create();
    const f = await failure(sessions().updateSession({ session: { sessionId: s.sessionId }, statePatch: { a: { b: "nul\u0000" } } }));
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["state_patch.a.b"] });
  });

  it("a merged state over the document limit is INVALID_ARGUMENT naming state_patch; concurrent patches of other sessions still apply", async () => {
    const half = "x".repeat(MAX_DOCUMENT_BYTES / 2);
    const big = await create({ a: half });
    const other = await create({ n: 0 });
    const [tooLarge, fine] = await Promise.all([
      failure(sessions().updateSession({ session: { sessionId: big.sessionId }, statePatch: { b: half } })),
      sessions().updateSession({ session: { sessionId: other.sessionId }, statePatch: { n: 1 } }),
    ]);
    expect(tooLarge).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["state_patch"] });
    expect(tooLarge.message).toContain(`limit is ${MAX_DOCUMENT_BYTES}`);
    expect(fine).toMatchObject({ version: 2, state: { n: 1 } });
    expect(await sessions().getSession({ sessionId: big.sessionId })).toMatchObject({ version: 1, state: { a: half } });
  });

  it("in one shared UPDATE (as coalesced calls run), an oversized merge fails alone and the other update applies", async () => {
    const half = "x".repeat(MAX_DOCUMENT_BYTES / 2);
    const big = await create({ a: half });
    const other = await create({ n: 0 });
    const pool = createPool({ connectionString: h.databaseUrl, max: 1, statementTimeoutMs: 30_000 });
    try {
      const merge = (patch: Record<string, unknown>) => ({ stateMerge: { patch, field: "state_patch", maxBytes: MAX_DOCUMENT_BYTES } });
      const outcomes = await applyUpdates(new Database(pool).on({}), [
        { ns: "default", sessionId: big.sessionId, patch: merge({ b: half }), expectedVersion: undefined },
        { ns: "default", sessionId: other.sessionId, patch: merge({ n: 1 }), expectedVersion: undefined },
      ]);
      expect(outcomes[0]).toBeInstanceOf(CairnError);
      expect((outcomes[0] as CairnError).fieldViolations.map((f) => f.field)).toEqual(["state_patch"]);
      expect(outcomes[1]).toMatchObject({ version: 2, state: { n: 1 } });
    } finally {
      await pool.end();
    }
    expect(await sessions().getSession({ sessionId: big.sessionId })).toMatchObject({ version: 1, state: { a: half } });
  });

  it("NOT_FOUND for an unknown session; VERSION_CONFLICT at another version", async () => {
    expect(await failure(sessions().updateSession({ session: { sessionId: uid("none") }, statePatch: { a: 1 } }))).toMatchObject({
      code: status.NOT_FOUND,
    });
    const s = await create();
    const f = await failure(sessions().updateSession({ session: { sessionId: s.sessionId }, statePatch: { a: 1 }, expectedVersion: 5 }));
    expect(f).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { current_version: "1" } });
  });
});

describe("UpdateSession allow_missing", () => {
  it("creates a missing session from the whole session, as CreateSession would (the mask is ignored)", async () => {
    const id = uid("upsert");
    const u = await sessions().updateSession({
      session: { sessionId: id, agentId: "planner", userId: "u1", labels: { team: "red" }, metadata: { m: 1 } },
      updateMask: ["labels"],
      allowMissing: true,
      statePatch: { step: 1, dropped: null, nested: { x: null, y: 2 } },
    });
    expect(u).toMatchObject({
      sessionId: id,
      agentId: "planner",
      userId: "u1",
      labels: { team: "red" },
      metadata: { m: 1 },
      state: { step: 1, nested: { y: 2 } },
      status: SessionStatus.SESSION_STATUS_ACTIVE,
      version: 1,
    });
    expect(u.createTime).toEqual(u.updateTime);
  });

  it("updates an existing session through the mask; the agent_id sent must be the stored one", async () => {
    const s = await create({ a: 1 }, { userId: "u1", labels: { keep: "1" } });
    const u = await sessions().updateSession({
      session: { sessionId: s.sessionId, agentId: "writer", userId: "u2", labels: { ignored: "1" } },
      updateMask: ["user_id"],
      allowMissing: true,
      statePatch: { b: 2 },
    });
    expect(u).toMatchObject({ userId: "u2", labels: { keep: "1" }, state: { a: 1, b: 2 }, version: 2 });
    const f = await failure(
      sessions().updateSession({ session: { sessionId: s.sessionId, agentId: "someone-else" }, allowMissing: true, statePatch: { c: 3 } }),
    );
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["session.agent_id"] });
    expect((await sessions().getSession({ sessionId: s.sessionId })).version).toBe(2);
  });

  it("requires agent_id, and with it state_patch excludes session.state", async () => {
    const id = uid("upsert");
    expect(await failure(sessions().updateSession({ session: { sessionId: id }, allowMissing: true }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      fields: ["session.agent_id"],
    });
    const f = await failure(
      sessions().updateSession({ session: { sessionId: id, agentId: "a", state: { s: 1 } }, updateMask: ["labels"], allowMissing: true, statePatch: { p: 1 } }),
    );
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["state_patch"] });
    expect(await rowCount("SELECT count(*)::int AS n FROM sessions WHERE session_id = $1", [id])).toBe(0);
  });

  it("expected_version 0 means must not exist: creates once, then VERSION_CONFLICT", async () => {
    const id = uid("upsert");
    const request = { session: { sessionId: id, agentId: "a" }, allowMissing: true, expectedVersion: 0 };
    expect((await sessions().updateSession(request)).version).toBe(1);
    expect(await failure(sessions().updateSession(request))).toMatchObject({
      code: status.ABORTED,
      reason: "VERSION_CONFLICT",
      metadata: { current_version: "1" },
    });
  });

  it("expected_version other than 0 for a missing session is VERSION_CONFLICT with current_version 0", async () => {
    const id = uid("upsert");
    const f = await failure(sessions().updateSession({ session: { sessionId: id, agentId: "a" }, allowMissing: true, expectedVersion: 3 }));
    expect(f).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { current_version: "0" } });
  });

  it("expected_version 0 without allow_missing is INVALID_ARGUMENT", async () => {
    const s = await create();
    const f = await failure(sessions().updateSession({ session: { sessionId: s.sessionId, userId: "u" }, expectedVersion: 0 }));
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["expected_version"] });
  });

  it("concurrent upserts of a new id: one creates, the others update; no ALREADY_EXISTS", async () => {
    const id = uid("race");
    const n = 12;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        sessions().updateSession({ session: { sessionId: id, agentId: "racer" }, allowMissing: true, statePatch: { [`w${i}`]: i } }),
      ),
    );
    expect(results.map((r) => r.version).sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const got = await sessions().getSession({ sessionId: id });
    expect(got.version).toBe(n);
    expect(Object.keys(got.state ?? {}).sort()).toEqual(Array.from({ length: n }, (_, i) => `w${i}`).sort());
  });
});

describe("BatchUpdateSessions", () => {
  it("updates and upserts together, each with its own expected_version, in request order", async () => {
    const a = await create({ n: 1 });
    const b = await create({ n: 1 });
    const newId = uid("batch-new");
    const { sessions: updated } = await sessions().batchUpdateSessions({
      requests: [
        { session: { sessionId: b.sessionId }, statePatch: { n: 2 }, expectedVersion: 1 },
        { session: { sessionId: newId, agentId: "batch" }, allowMissing: true, expectedVersion: 0, statePatch: { fresh: true } },
        { session: { sessionId: a.sessionId, userId: "u9" }, expectedVersion: 1 },
      ],
    });
    expect(updated.map((s) => [s.sessionId, s.version])).toEqual([
      [b.sessionId, 2],
      [newId, 1],
      [a.sessionId, 2],
    ]);
    expect(updated[0]!.state).toEqual({ n: 2 });
    expect(updated[1]!.state).toEqual({ fresh: true });
    expect(updated[2]!.userId).toBe("u9");
  });

  it("is atomic: one version conflict and nothing is written, not even the upserts", async () => {
    const a = await create({ n: 1 });
    const b = await create({ n: 1 });
    const newId = uid("batch-new");
    const f = await failure(
      sessions().batchUpdateSessions({
        requests: [
          { session: { sessionId: a.sessionId }, statePatch: { n: 2 }, expectedVersion: 1 },
          { session: { sessionId: newId, agentId: "batch" }, allowMissing: true },
          { session: { sessionId: b.sessionId }, statePatch: { n: 2 }, expectedVersion: 7 },
        ],
      }),
    );
    expect(f).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { id: b.sessionId, current_version: "1" } });
    expect((await sessions().getSession({ sessionId: a.sessionId })).version).toBe(1);
    expect(await rowCount("SELECT count(*)::int AS n FROM sessions WHERE session_id = $1", [newId])).toBe(0);
  });

  it("NOT_FOUND for a missing session without allow_missing, nothing written", async () => {
    const a = await create({ n: 1 });
    const missing = uid("missing");
    const f = await failure(
      sessions().batchUpdateSessions({
        requests: [
          { session: { sessionId: a.sessionId }, statePatch: { n: 2 } },
          { session: { sessionId: missing }, statePatch: { n: 2 } },
        ],
      }),
    );
    expect(f).toMatchObject({ code: status.NOT_FOUND, metadata: { id: missing } });
    expect((await sessions().getSession({ sessionId: a.sessionId })).version).toBe(1);
  });

  it("a merged state over the limit fails the whole batch, naming requests[i].state_patch", async () => {
    const half = "x".repeat(MAX_DOCUMENT_BYTES / 2);
    const a = await create({ n: 1 });
    const big = await create({ a: half });
    const f = await failure(
      sessions().batchUpdateSessions({
        requests: [
          { session: { sessionId: a.sessionId }, statePatch: { n: 2 } },
          { session: { sessionId: big.sessionId }, statePatch: { b: half } },
        ],
      }),
    );
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["requests[1].state_patch"] });
    expect((await sessions().getSession({ sessionId: a.sessionId })).version).toBe(1);
  });

  it("validation names requests[i] fields; duplicate ids and oversized batches are INVALID_ARGUMENT", async () => {
    const a = await create();
    const dup = await failure(
      sessions().batchUpdateSessions({
        requests: [
          { session: { sessionId: a.sessionId, userId: "x" } },
          { session: { sessionId: a.sessionId, userId: "y" } },
        ],
      }),
    );
    expect(dup).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["requests[1].session.session_id"] });
    const bad = await failure(
      sessions().batchUpdateSessions({
        requests: [
          { session: { sessionId: a.sessionId }, updateMask: ["nope"] },
          { session: { sessionId: uid("x"), labels: { "": "v" } }, updateMask: ["labels"] },
          { session: { sessionId: uid("y") }, allowMissing: true },
        ],
      }),
    );
    expect(bad.fields).toEqual(["requests[0].update_mask.paths[0]", 'requests[1].session.labels[""]', "requests[2].session.agent_id"]);
    const tooMany = await failure(
      sessions().batchUpdateSessions({
        requests: Array.from({ length: BATCH_LIMIT + 1 }, (_, i) => ({ session: { sessionId: `many-${i}` }, statePatch: { i } })),
      }),
    );
    expect(tooMany).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["requests"] });
    expect(await failure(sessions().batchUpdateSessions({ requests: [] }))).toMatchObject({ fields: ["requests"] });
  });
});

describe("AppendMessages with expected_version and state_patch", () => {
  it("with state_patch, messages and state commit together, version + 1, the session returned", async () => {
    const s = await create({ turn: 0, keep: true });
    const r = await sessions().appendMessages({
      sessionId: s.sessionId,
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: "hello" },
      ],
      expectedVersion: 1,
      statePatch: { turn: 1 },
    });
    expect(r.messages.map((m) => m.sequence)).toEqual([1, 2]);
    expect(r.session).toMatchObject({ sessionId: s.sessionId, version: 2, state: { turn: 1, keep: true } });
    expect(iso(r.session!.updateTime)).toBe(iso(r.messages[0]!.createTime));
    expect((await sessions().getSession({ sessionId: s.sessionId })).version).toBe(2);
  });

  it("without state_patch the version stays and no session is returned; expected_version guards the append", async () => {
    const s = await create();
    const r = await sessions().appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: "a" }], expectedVersion: 1 });
    expect(r.session).toBeUndefined();
    expect((await sessions().getSession({ sessionId: s.sessionId })).version).toBe(1);
    const f = await failure(sessions().appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: "b" }], expectedVersion: 2 }));
    expect(f).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { current_version: "1" } });
    const listed = await sessions().listMessages({ sessionId: s.sessionId });
    expect(listed.messages.map((m) => m.content)).toEqual(["a"]);
  });

  it("a merged state over the limit appends nothing", async () => {
    const half = "x".repeat(MAX_DOCUMENT_BYTES / 2);
    const s = await create({ a: half });
    const f = await failure(sessions().appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: "c" }], statePatch: { b: half } }));
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["state_patch"] });
    expect((await sessions().listMessages({ sessionId: s.sessionId })).messages).toEqual([]);
    expect((await sessions().getSession({ sessionId: s.sessionId })).version).toBe(1);
    // The sequence it would have taken was not used up.
    const r = await sessions().appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: "d" }] });
    expect(r.messages[0]!.sequence).toBe(1);
  });

  it("concurrent appends with patches of different keys: every key, every message, version + n", async () => {
    const s = await create();
    const n = 10;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        sessions().appendMessages({ sessionId: s.sessionId, messages: [{ role: "tool", content: `r${i}` }], statePatch: { [`t${i}`]: i } }),
      ),
    );
    const got = await sessions().getSession({ sessionId: s.sessionId });
    expect(got.version).toBe(1 + n);
    expect(Object.keys(got.state ?? {})).toHaveLength(n);
    const listed = await sessions().listMessages({ sessionId: s.sessionId });
    expect(listed.messages.map((m) => m.sequence)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  });

  it("validation names the fields", async () => {
    const s = await create();
    const f = await failure(
      sessions().appendMessages({ sessionId: s.sessionId, messages: [{ role: "", content: "x" }], expectedVersion: 0, statePatch: { a: "\u0000" } }),
    );
    expect(f.fields.sort()).toEqual(["expected_version", "messages[0].role", "state_patch.a"]);
  });
});

describe("DeleteMessages", () => {
  it("deletes before a sequence or all, keeps the version, and sequences are never reused", async () => {
    const s = await create();
    await sessions().appendMessages({
      sessionId: s.sessionId,
      messages: ["a", "b", "c", "d"].map((content) => ({ role: "user", content })),
    });
    expect((await sessions().deleteMessages({ sessionId: s.sessionId, beforeSequence: 3 })).deletedCount).toBe(2);
    expect((await sessions().listMessages({ sessionId: s.sessionId })).messages.map((m) => m.sequence)).toEqual([3, 4]);
    expect((await sessions().deleteMessages({ sessionId: s.sessionId, beforeSequence: 0 })).deletedCount).toBe(2);
    expect((await sessions().listMessages({ sessionId: s.sessionId })).messages).toEqual([]);
    const next = await sessions().appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: "e" }] });
    expect(next.messages[0]!.sequence).toBe(5);
    expect((await sessions().getSession({ sessionId: s.sessionId })).version).toBe(1);
  });

  it("an empty history deletes 0; NOT_FOUND for an unknown session; a negative before_sequence is INVALID_ARGUMENT", async () => {
    const s = await create();
    expect((await sessions().deleteMessages({ sessionId: s.sessionId, beforeSequence: 0 })).deletedCount).toBe(0);
    expect(await failure(sessions().deleteMessages({ sessionId: uid("none"), beforeSequence: 0 }))).toMatchObject({ code: status.NOT_FOUND });
    expect(await failure(sessions().deleteMessages({ sessionId: s.sessionId, beforeSequence: -1 }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      fields: ["before_sequence"],
    });
  });
});

describe("ImportSessions", () => {
  it("keeps times, status, version and messages; appends continue the numbering; stats use the kept times", async () => {
    const agent = uid("imported-agent");
    const ended = uid("imp");
    const active = uid("imp");
    const { sessions: imported } = await sessions().importSessions({
      sessions: [
        {
          sessionId: ended,
          agentId: agent,
          status: SessionStatus.SESSION_STATUS_ENDED,
          version: 7,
          state: { done: true },
          createTime: ts("2023-01-01T10:00:00.000Z"),
          updateTime: ts("2023-01-01T11:00:00.000Z"),
          endTime: ts("2023-01-01T12:00:00.000Z"),
        },
        { sessionId: active, agentId: agent, createTime: ts("2023-02-01T00:00:00.000Z") },
      ],
      messages: [
        { sessionId: ended, sequence: 2, role: "assistant", content: "two", createTime: ts("2023-01-01T10:05:00.000Z") },
        { sessionId: ended, sequence: 1, role: "user", content: "one", createTime: ts("2023-01-01T10:01:00.000Z") },
        { sessionId: ended, sequence: 10, role: "user", content: "ten", createTime: ts("2023-01-01T10:10:00.000Z") },
      ],
    });
    expect(imported.map((s) => s.sessionId)).toEqual([ended, active]);
    expect(imported[0]).toMatchObject({ status: SessionStatus.SESSION_STATUS_ENDED, version: 7, state: { done: true } });
    expect([iso(imported[0]!.createTime), iso(imported[0]!.updateTime), iso(imported[0]!.endTime)]).toEqual([
      "2023-01-01T10:00:00.000Z",
      "2023-01-01T11:00:00.000Z",
      "2023-01-01T12:00:00.000Z",
    ]);
    // Defaults: version 1, ACTIVE, update_time = create_time, no end_time.
    expect(imported[1]).toMatchObject({ status: SessionStatus.SESSION_STATUS_ACTIVE, version: 1 });
    expect(iso(imported[1]!.updateTime)).toBe("2023-02-01T00:00:00.000Z");
    expect(imported[1]!.endTime).toBeUndefined();

    const listed = await sessions().listMessages({ sessionId: ended });
    expect(listed.messages.map((m) => [m.sequence, m.content, iso(m.createTime)])).toEqual([
      [1, "one", "2023-01-01T10:01:00.000Z"],
      [2, "two", "2023-01-01T10:05:00.000Z"],
      [10, "ten", "2023-01-01T10:10:00.000Z"],
    ]);
    const appended = await sessions().appendMessages({ sessionId: ended, messages: [{ role: "user", content: "eleven" }] });
    expect(appended.messages[0]!.sequence).toBe(11);
    expect((await sessions().appendMessages({ sessionId: active, messages: [{ role: "user", content: "x" }] })).messages[0]!.sequence).toBe(1);

    const stats = await sessions().getSessionStats({ filter: { agentId: agent } });
    expect(stats.avgDuration).toEqual({ seconds: 7200, nanos: 0 });
    expect(iso(stats.oldestActiveCreateTime)).toBe("2023-02-01T00:00:00.000Z");
  });

  it("is atomic: ALREADY_EXISTS when an id is taken, and nothing is imported", async () => {
    const taken = await create();
    const fresh = uid("imp");
    const f = await failure(
      sessions().importSessions({
        sessions: [
          { sessionId: fresh, agentId: "a" },
          { sessionId: taken.sessionId, agentId: "a" },
        ],
        messages: [{ sessionId: fresh, sequence: 1, role: "user", content: "x" }],
      }),
    );
    expect(f).toMatchObject({ code: status.ALREADY_EXISTS, metadata: { id: taken.sessionId } });
    expect(await rowCount("SELECT count(*)::int AS n FROM sessions WHERE session_id = $1", [fresh])).toBe(0);
    expect(await rowCount("SELECT count(*)::int AS n FROM session_messages WHERE session_id = $1", [fresh])).toBe(0);
  });

  it("defaults missing times to now", async () => {
    const before = Date.now();
    const { sessions: imported } = await sessions().importSessions({
      sessions: [{ sessionId: uid("imp"), agentId: "a", status: SessionStatus.SESSION_STATUS_ERROR }],
      messages: [],
    });
    const created = Date.parse(iso(imported[0]!.createTime)!);
    expect(created).toBeGreaterThanOrEqual(before - 1000);
    expect(imported[0]!.updateTime).toEqual(imported[0]!.createTime);
    expect(imported[0]!.endTime).toEqual(imported[0]!.updateTime);
    const ended = await sessions().importSessions({
      sessions: [
        {
          sessionId: uid("imp"),
          agentId: "a",
          status: SessionStatus.SESSION_STATUS_ENDED,
          createTime: ts("2023-05-01T00:00:00.000Z"),
          endTime: ts("2023-05-02T00:00:00.000Z"),
        },
      ],
      messages: [],
    });
    expect(iso(ended.sessions[0]!.updateTime)).toBe("2023-05-02T00:00:00.000Z");
  });

  it("validation names the fields", async () => {
    const id = uid("imp");
    const f = await failure(
      sessions().importSessions({
        sessions: [
          { sessionId: id, agentId: "a", endTime: ts("2023-01-01T00:00:00.000Z"), createTime: ts("2023-01-02T00:00:00.000Z") },
          { sessionId: id, agentId: "" },
          { sessionId: uid("imp"), agentId: "a", updateTime: ts("2023-01-01T00:00:00.000Z") },
          { sessionId: uid("imp"), agentId: "a", version: -1 },
        ],
        messages: [
          { sessionId: "elsewhere", sequence: 1, role: "user", content: "x" },
          { sessionId: id, sequence: 0, role: "user", content: "x" },
          { sessionId: id, sequence: 4, role: "user", content: "x" },
          { sessionId: id, sequence: 4, role: "", content: "x" },
        ],
      }),
    );
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.fields.sort()).toEqual(
      [
        "sessions[0].end_time", // before create_time
        "sessions[0].end_time", // on an ACTIVE session
        "sessions[1].session_id",
        "sessions[1].agent_id",
        "sessions[2].create_time",
        "sessions[3].version",
        "messages[0].session_id",
        "messages[1].sequence",
        "messages[3].sequence",
        "messages[3].role",
      ].sort(),
    );
    expect(await rowCount("SELECT count(*)::int AS n FROM sessions WHERE session_id = $1", [id])).toBe(0);
  });
});

describe("ListSessions: new filters and order_by end_time", () => {
  /** Imports sessions with the given end times (null: ACTIVE) under one fresh label; returns their ids and the label filter. */
  async function importEnded(ends: (string | null)[], extra: (i: number) => Partial<Session> = () => ({})) {
    const suite = uid("suite");
    const ids = ends.map((_, i) => `${suite}-${String.fromCharCode(97 + i)}`);
    await sessions().importSessions({
      sessions: ends.map((end, i) => ({
        sessionId: ids[i]!,
        agentId: "lister",
        labels: { suite },
        status: end ? SessionStatus.SESSION_STATUS_ENDED : SessionStatus.SESSION_STATUS_ACTIVE,
        createTime: ts("2024-01-01T00:00:00.000Z"),
        updateTime: ts(end ?? `2024-01-0${1 + i}T06:00:00.000Z`),
        endTime: end ? ts(end) : undefined,
        ...extra(i),
      })),
      messages: [],
    });
    return { ids, filter: { labels: { suite } } };
  }

  async function allPages(filter: object, orderBy: string, pageSize = 2): Promise<string[]> {
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await sessions().listSessions({ filter, orderBy, pageSize, pageToken });
      seen.push(...page.sessions.map((s) => s.sessionId));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return seen;
  }

  it("end_time puts sessions without one last in both directions, across pages", async () => {
    const { ids, filter } = await importEnded([
      null,
      "2024-01-03T00:00:00.000Z",
      "2024-01-02T00:00:00.000Z",
      null,
      "2024-01-03T00:00:00.000Z",
      null,
    ]);
    const [a, b, c, d, e, f] = ids as [string, string, string, string, string, string];
    expect(await allPages(filter, "end_time")).toEqual([c, b, e, a, d, f]);
    expect(await allPages(filter, "end_time desc")).toEqual([e, b, c, f, d, a]);
    expect(await allPages(filter, "end_time", 1)).toEqual([c, b, e, a, d, f]);
    expect(await allPages(filter, "end_time desc", 4)).toEqual([e, b, c, f, d, a]);
  });

  it("a token is bound to its order; a forged one is INVALID_ARGUMENT", async () => {
    const { filter } = await importEnded([null, null, null]);
    const page = await sessions().listSessions({ filter, orderBy: "end_time", pageSize: 1 });
    expect(await failure(sessions().listSessions({ filter, orderBy: "end_time desc", pageToken: page.nextPageToken }))).toMatchObject({
      reason: "INVALID_PAGE_TOKEN",
    });
    // The real token's fingerprint, with a key that is no time: only the key's own check can refuse it.
    const body = JSON.parse(Buffer.from(page.nextPageToken, "base64url").toString()) as { f: string; k: unknown[] };
    const forged = Buffer.from(JSON.stringify({ ...body, k: ["not a time", ...body.k.slice(1)] })).toString("base64url");
    expect(await failure(sessions().listSessions({ filter, orderBy: "end_time", pageToken: forged }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      reason: "INVALID_PAGE_TOKEN",
    });
  });

  it("updated_after/before, ended_after/before and parent_session_id filter; Count and Stats use them too", async () => {
    const parent = uid("parent");
    const { ids, filter } = await importEnded(
      ["2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z", null],
      (i) => (i === 2 ? {} : { parentSessionId: parent, parentVersion: i + 1 }),
    );
    const [a, b, c] = ids as [string, string, string];
    const list = async (extra: object) =>
      (await sessions().listSessions({ filter: { ...filter, ...extra }, pageSize: 10 })).sessions.map((s) => s.sessionId).sort();
    expect(await list({ endedAfter: ts("2024-02-15T00:00:00.000Z") })).toEqual([b]);
    expect(await list({ endedBefore: ts("2024-02-15T00:00:00.000Z") })).toEqual([a]);
    expect(await list({ updatedAfter: ts("2024-02-15T00:00:00.000Z") })).toEqual([b]);
    expect(await list({ updatedBefore: ts("2024-02-15T00:00:00.000Z") })).toEqual([a, c]);
    expect(await list({ parentSessionId: parent })).toEqual([a, b]);
    const ended = { ...filter, endedAfter: ts("2024-01-01T00:00:00.000Z") };
    expect((await sessions().countSessions({ filter: ended })).count).toBe(2);
    expect((await sessions().getSessionStats({ filter: { ...filter, parentSessionId: parent } })).total).toBe(2);
    expect(
      await failure(sessions().listSessions({ filter: { parentSessionId: "bad id!", endedAfter: { seconds: 1e12, nanos: 0 } } })),
    ).toMatchObject({ fields: ["filter.parent_session_id", "filter.ended_after"] });
  });

  it("an unknown order_by is INVALID_ARGUMENT", async () => {
    expect(await failure(sessions().listSessions({ orderBy: "end_time sideways" }))).toMatchObject({ fields: ["order_by"] });
  });
});

describe("ListMessages roles", () => {
  it("returns only the roles asked for, across pages, with the token bound to them", async () => {
    const s = await create();
    const roles = ["user", "assistant", "tool", "assistant", "user", "tool", "assistant"];
    await sessions().appendMessages({ sessionId: s.sessionId, messages: roles.map((role, i) => ({ role, content: `${i}` })) });
    const seen: number[] = [];
    let pageToken = "";
    do {
      const page = await sessions().listMessages({ sessionId: s.sessionId, roles: ["assistant", "tool"], pageSize: 2, pageToken });
      expect(page.messages.every((m) => m.role !== "user")).toBe(true);
      seen.push(...page.messages.map((m) => m.sequence));
      pageToken = page.nextPageToken;
      if (pageToken) {
        expect(await failure(sessions().listMessages({ sessionId: s.sessionId, roles: ["user"], pageToken }))).toMatchObject({
          reason: "INVALID_PAGE_TOKEN",
        });
      }
    } while (pageToken !== "");
    expect(seen).toEqual([2, 3, 4, 6, 7]);
    expect((await sessions().listMessages({ sessionId: s.sessionId, roles: ["nobody"] })).messages).toEqual([]);
  });

  it("validates the list and each role", async () => {
    const s = await create();
    expect(await failure(sessions().listMessages({ sessionId: s.sessionId, roles: ["user", ""] }))).toMatchObject({ fields: ["roles[1]"] });
    const many = Array.from({ length: 101 }, (_, i) => `r${i}`);
    expect(await failure(sessions().listMessages({ sessionId: s.sessionId, roles: many }))).toMatchObject({ fields: ["roles"] });
    expect(await failure(sessions().listMessages({ sessionId: uid("none"), roles: ["user"] }))).toMatchObject({ code: status.NOT_FOUND });
  });
});
