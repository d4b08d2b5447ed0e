import { SessionStatus } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";

let h: Harness;
let seq = 0;
/** Unique ids per test so tests in this file don't see each other's rows. */
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

describe("CreateSession / GetSession", () => {
  it("creates with defaults and reads back the same session", async () => {
    const created = await h.client.sessions.createSession({
      session: { agentId: "agent-1", userId: "user-1", labels: { env: "test" }, metadata: { a: 1 }, state: { n: [1, "x", null, true] } },
    });
    expect(created.sessionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/); // UUIDv7
    expect(created.status).toBe(SessionStatus.SESSION_STATUS_ACTIVE);
    expect(created.version).toBe(1);
    expect(created.createTime).toEqual(created.updateTime);
    expect(created.endTime).toBeUndefined();
    const got = await h.client.sessions.getSession({ sessionId: created.sessionId });
    expect(got).toEqual(created);
    expect(got.state).toEqual({ n: [1, "x", null, true] });
  });

  it("uses the client's id, from the request or from the session", async () => {
    const a = uid("s");
    const b = uid("s");
    expect((await h.client.sessions.createSession({ sessionId: a, session: { agentId: "x" } })).sessionId).toBe(a);
    expect((await h.client.sessions.createSession({ session: { sessionId: b, agentId: "x" } })).sessionId).toBe(b);
  });

  it("ALREADY_EXISTS when the id is taken", async () => {
    const id = uid("dup");
    await h.client.sessions.createSession({ sessionId: id, session: { agentId: "x" } });
    const f = await failure(h.client.sessions.createSession({ sessionId: id, session: { agentId: "y" } }));
    expect(f).toMatchObject({ code: status.ALREADY_EXISTS, reason: "ALREADY_EXISTS", domain: "cairn.v1" });
    expect((await h.client.sessions.getSession({ sessionId: id })).agentId).toBe("x");
  });

  it("sets end_time when created in a finished status", async () => {
    const s = await h.client.sessions.createSession({ session: { agentId: "x", status: SessionStatus.SESSION_STATUS_ENDED } });
    expect(s.endTime).toBeDefined();
  });

  it("request_id makes a retried create return the first result", async () => {
    const request = { requestId: uid("req"), session: { agentId: "idem", state: { k: 1 } } };
    const first = await h.client.sessions.createSession(request);
    const second = await h.client.sessions.createSession(request);
    expect(second).toEqual(first);
    const count = await h.sql.query("SELECT count(*)::int AS n FROM sessions WHERE agent_id = 'idem'");
    expect(count.rows[0].n).toBe(1);
  });

  it("concurrent retries with one request_id create one session", async () => {
    const request = { requestId: uid("race"), session: { agentId: "idem-race" } };
    const results = await Promise.all(Array.from({ length: 10 }, () => h.client.sessions.createSession(request)));
    expect(new Set(results.map((r) => r.sessionId)).size).toBe(1);
  });

  it("the same request_id with another body is REQUEST_ID_REUSED", async () => {
    const requestId = uid("req");
    await h.client.sessions.createSession({ requestId, session: { agentId: "a" } });
    const f = await failure(h.client.sessions.createSession({ requestId, session: { agentId: "b" } }));
    expect(f).toMatchObject({ code: status.ALREADY_EXISTS, reason: "REQUEST_ID_REUSED" });
  });

  it("NOT_FOUND for an unknown id, with the resource named", async () => {
    const f = await failure(h.client.sessions.getSession({ sessionId: "nope" }));
    expect(f).toMatchObject({ code: status.NOT_FOUND, reason: "NOT_FOUND", metadata: { resource: "session", id: "nope" } });
  });

  it.each([
    [{ session: { agentId: "" } }, "session.agent_id"],
    [{}, "session"],
    [{ sessionId: "has space", session: { agentId: "a" } }, "session_id"],
    [{ session: { sessionId: "x".repeat(129), agentId: "a" } }, "session.session_id"],
    [{ sessionId: "a", session: { sessionId: "b", agentId: "a" } }, "session_id"],
    [{ session: { agentId: "a", status: 99 as SessionStatus } }, "session.status"],
    [{ session: { agentId: "a", labels: { "": "v" } } }, 'session.labels[""]'],
    [{ requestId: "bad id!", session: { agentId: "a" } }, "request_id"],
  ])("INVALID_ARGUMENT names the field (%j)", async (request, field) => {
    const before = await h.sql.query("SELECT count(*)::int AS n FROM sessions");
    const f = await failure(h.client.sessions.createSession(request));
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.reason).toBe("INVALID_ARGUMENT");
    expect(f.fields).toContain(field);
    const after = await h.sql.query("SELECT count(*)::int AS n FROM sessions");
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it("rejects a state over the document limit, naming it", async () => {
    const big = { blob: "x".repeat(1024 * 1024) };
    const f = await failure(h.client.sessions.createSession({ session: { agentId: "a", state: big } }));
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["session.state"] });
  });

  it("GetSession validates the id", async () => {
    expect(await failure(h.client.sessions.getSession({ sessionId: "" }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      fields: ["session_id"],
    });
  });
});

describe("UpdateSession", () => {
  it("updates only the masked fields and bumps the version", async () => {
    const s = await h.client.sessions.createSession({
      session: { agentId: "a", userId: "u1", labels: { a: "1" }, metadata: { m: 1 }, state: { n: 1 } },
    });
    const u = await h.client.sessions.updateSession({
      session: { sessionId: s.sessionId, state: { n: 2 }, labels: { ignored: "yes" } },
      updateMask: ["state"],
    });
    expect(u.version).toBe(2);
    expect(u.state).toEqual({ n: 2 });
    expect(u.labels).toEqual({ a: "1" });
    expect(u.metadata).toEqual({ m: 1 });
    expect(u.userId).toBe("u1");
    expect(u.createTime).toEqual(s.createTime);
    expect(BigInt(u.updateTime!.seconds) * 1_000_000_000n + BigInt(u.updateTime!.nanos)).toBeGreaterThan(
      BigInt(s.updateTime!.seconds) * 1_000_000_000n + BigInt(s.updateTime!.nanos),
    );
  });

  it("a `*` mask replaces every mutable field", async () => {
    const s = await h.client.sessions.createSession({ session: { agentId: "a", userId: "u1", labels: { a: "1" }, metadata: { m: 1 } } });
    const u = await h.client.sessions.updateSession({ session: { sessionId: s.sessionId, state: { only: true } }, updateMask: ["*"] });
    expect(u).toMatchObject({ userId: "", labels: {}, state: { only: true }, status: SessionStatus.SESSION_STATUS_ACTIVE });
    expect(u.metadata).toBeUndefined();
  });

  it("status leaving ACTIVE sets end_time; returning clears it", async () => {
    const s = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const ended = await h.client.sessions.updateSession({
      session: { sessionId: s.sessionId, status: SessionStatus.SESSION_STATUS_ENDED },
      updateMask: ["status"],
    });
    expect(ended.endTime).toBeDefined();
    const errored = await h.client.sessions.updateSession({
      session: { sessionId: s.sessionId, status: SessionStatus.SESSION_STATUS_ERROR },
      updateMask: ["status"],
    });
    expect(errored.endTime).toEqual(ended.endTime);
    const active = await h.client.sessions.updateSession({
      session: { sessionId: s.sessionId, status: SessionStatus.SESSION_STATUS_ACTIVE },
      updateMask: ["status"],
    });
    expect(active.endTime).toBeUndefined();
  });

  it("expected_version: matching succeeds, stale is ABORTED VERSION_CONFLICT with current_version", async () => {
    const s = await h.client.sessions.createSession({ session: { agentId: "a" } });
    await h.client.sessions.updateSession({ session: { sessionId: s.sessionId, state: { v: 1 } }, updateMask: ["state"], expectedVersion: 1 });
    const f = await failure(
      h.client.sessions.updateSession({ session: { sessionId: s.sessionId, state: { v: 9 } }, updateMask: ["state"], expectedVersion: 1 }),
    );
    expect(f).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { current_version: "2" } });
    expect((await h.client.sessions.getSession({ sessionId: s.sessionId })).state).toEqual({ v: 1 });
  });

  it("NOT_FOUND for an unknown session", async () => {
    const f = await failure(h.client.sessions.updateSession({ session: { sessionId: "ghost" }, updateMask: ["state"] }));
    expect(f.code).toBe(status.NOT_FOUND);
  });

  it.each([
    [{ session: { sessionId: "x" }, updateMask: ["state", "agent_id"] }, "update_mask.paths[1]"],
    [{ session: { sessionId: "x" }, updateMask: ["nope"] }, "update_mask.paths[0]"],
    [{ updateMask: ["state"] }, "session"],
    [{ session: { sessionId: "" }, updateMask: ["state"] }, "session.session_id"],
    [{ session: { sessionId: "x" }, updateMask: ["status"] }, "session.status"],
    [{ session: { sessionId: "x" }, updateMask: ["state"], expectedVersion: 0 }, "expected_version"],
  ])("INVALID_ARGUMENT names the field (%j)", async (request, field) => {
    const f = await failure(h.client.sessions.updateSession(request));
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.fields).toContain(field);
  });
});

describe("DeleteSession / BatchDeleteSessions", () => {
  it("deletes a session and its messages", async () => {
    const s = await h.client.sessions.createSession({ session: { agentId: "a" } });
    await h.client.sessions.appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: "hi" }] });
    await h.client.sessions.deleteSession({ sessionId: s.sessionId });
    expect((await failure(h.client.sessions.getSession({ sessionId: s.sessionId }))).code).toBe(status.NOT_FOUND);
    const left = await h.sql.query("SELECT count(*)::int AS n FROM session_messages WHERE session_id = $1", [s.sessionId]);
    expect(left.rows[0].n).toBe(0);
  });

  it("honours expected_version and reports NOT_FOUND", async () => {
    const s = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const f = await failure(h.client.sessions.deleteSession({ sessionId: s.sessionId, expectedVersion: 7 }));
    expect(f).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { current_version: "1" } });
    await h.client.sessions.deleteSession({ sessionId: s.sessionId, expectedVersion: 1 });
    expect((await failure(h.client.sessions.deleteSession({ sessionId: s.sessionId }))).code).toBe(status.NOT_FOUND);
  });

  it("batch delete is atomic: one missing id deletes nothing", async () => {
    const a = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const b = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const f = await failure(h.client.sessions.batchDeleteSessions({ sessionIds: [a.sessionId, "missing-one", b.sessionId] }));
    expect(f).toMatchObject({ code: status.NOT_FOUND, metadata: { id: "missing-one" } });
    await h.client.sessions.batchGetSessions({ sessionIds: [a.sessionId, b.sessionId] });
    await h.client.sessions.batchDeleteSessions({ sessionIds: [a.sessionId, b.sessionId] });
    expect((await failure(h.client.sessions.getSession({ sessionId: a.sessionId }))).code).toBe(status.NOT_FOUND);
  });

  it("batch delete validates its ids", async () => {
    expect(await failure(h.client.sessions.batchDeleteSessions({ sessionIds: [] }))).toMatchObject({ fields: ["session_ids"] });
    expect(await failure(h.client.sessions.batchDeleteSessions({ sessionIds: ["a", "a"] }))).toMatchObject({ fields: ["session_ids[1]"] });
  });
});

describe("batch create and get", () => {
  it("creates all and returns them in order", async () => {
    const ids = [uid("b"), uid("b"), uid("b")];
    const res = await h.client.sessions.batchCreateSessions({
      requests: ids.map((sessionId) => ({ sessionId, session: { agentId: "batch" } })),
    });
    expect(res.sessions.map((s) => s.sessionId)).toEqual(ids);
    const got = await h.client.sessions.batchGetSessions({ sessionIds: [...ids].reverse() });
    expect(got.sessions.map((s) => s.sessionId)).toEqual([...ids].reverse());
  });

  it("is atomic: a taken id fails the batch and creates nothing", async () => {
    const taken = uid("taken");
    await h.client.sessions.createSession({ sessionId: taken, session: { agentId: "batch" } });
    const fresh = uid("fresh");
    const f = await failure(
      h.client.sessions.batchCreateSessions({
        requests: [
          { sessionId: fresh, session: { agentId: "batch" } },
          { sessionId: taken, session: { agentId: "batch" } },
        ],
      }),
    );
    expect(f).toMatchObject({ code: status.ALREADY_EXISTS, metadata: { id: taken } });
    expect((await failure(h.client.sessions.getSession({ sessionId: fresh }))).code).toBe(status.NOT_FOUND);
  });

  it("names the bad item's field, and duplicate ids", async () => {
    const f = await failure(
      h.client.sessions.batchCreateSessions({
        requests: [{ session: { agentId: "ok" } }, { session: { agentId: "" } }, { sessionId: "d", session: { agentId: "a" } }, { sessionId: "d", session: { agentId: "a" } }],
      }),
    );
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.fields).toEqual(["requests[1].session.agent_id", "requests[3]"]);
  });

  it("rejects more than the batch limit", async () => {
    const requests = Array.from({ length: 1001 }, () => ({ session: { agentId: "a" } }));
    expect(await failure(h.client.sessions.batchCreateSessions({ requests }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      fields: ["requests"],
    });
  });

  it("batch get is NOT_FOUND when any id is missing", async () => {
    const s = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const f = await failure(h.client.sessions.batchGetSessions({ sessionIds: [s.sessionId, "gone"] }));
    expect(f).toMatchObject({ code: status.NOT_FOUND, metadata: { id: "gone" } });
  });
});

describe("ListSessions / CountSessions / GetSessionStats", () => {
  const agent = uid("list-agent");
  let ids: string[] = [];

  beforeAll(async () => {
    const specs = [
      { userId: "alice", labels: { team: "red", tier: "1" }, metadata: { region: "eu", tags: ["a", "b"] }, state: { step: 1 } },
      { userId: "alice", labels: { team: "red" }, metadata: { region: "us" }, state: { step: 2 } },
      { userId: "bob", labels: { team: "blue", tier: "1" }, metadata: { region: "eu" }, state: { step: 1 }, status: SessionStatus.SESSION_STATUS_ENDED },
      { userId: "bob", labels: {}, status: SessionStatus.SESSION_STATUS_ERROR },
      { userId: "carol", labels: { team: "red", tier: "2" } },
    ];
    ids = [];
    for (const spec of specs) {
      ids.push((await h.client.sessions.createSession({ session: { agentId: agent, ...spec } })).sessionId);
    }
  });

  const list = async (filter: object, orderBy = "", pageSize = 0) =>
    (await h.client.sessions.listSessions({ filter: { agentId: agent, ...filter }, orderBy, pageSize })).sessions.map((s) =>
      ids.indexOf(s.sessionId),
    );

  it("filters by every field", async () => {
    expect(await list({})).toEqual([0, 1, 2, 3, 4]);
    expect(await list({ userId: "alice" })).toEqual([0, 1]);
    expect(await list({ statuses: [SessionStatus.SESSION_STATUS_ENDED, SessionStatus.SESSION_STATUS_ERROR] })).toEqual([2, 3]);
    expect(await list({ labels: { team: "red" } })).toEqual([0, 1, 4]);
    expect(await list({ labels: { team: "red", tier: "1" } })).toEqual([0]);
    expect(await list({ metadataContains: { region: "eu" } })).toEqual([0, 2]);
    expect(await list({ metadataContains: { tags: ["b"] } })).toEqual([0]);
    expect(await list({ stateContains: { step: 1 } })).toEqual([0, 2]);
    const all = (await h.client.sessions.listSessions({ filter: { agentId: agent } })).sessions;
    expect(await list({ createdAfter: all[1]!.createTime, createdBefore: all[4]!.createTime })).toEqual([2, 3]);
  });

  it("orders by create_time or update_time, either way", async () => {
    expect(await list({}, "create_time desc")).toEqual([4, 3, 2, 1, 0]);
    await h.client.sessions.updateSession({ session: { sessionId: ids[2]!, labels: { team: "blue", tier: "1" } }, updateMask: ["labels"] });
    expect(await list({}, "update_time")).toEqual([0, 1, 3, 4, 2]);
    expect(await list({}, "update_time desc")).toEqual([2, 4, 3, 1, 0]);
  });

  it("pages with keyset tokens to the end", async () => {
    const seen: number[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const res = await h.client.sessions.listSessions({ filter: { agentId: agent }, orderBy: "create_time desc", pageSize: 2, pageToken });
      seen.push(...res.sessions.map((s) => ids.indexOf(s.sessionId)));
      pageToken = res.nextPageToken;
      pages++;
    } while (pageToken);
    expect(seen).toEqual([4, 3, 2, 1, 0]);
    expect(pages).toBe(3);
  });

  it("a token is bound to its filter and order", async () => {
    const first = await h.client.sessions.listSessions({ filter: { agentId: agent }, pageSize: 2 });
    expect(first.nextPageToken).not.toBe("");
    const otherFilter = await failure(
      h.client.sessions.listSessions({ filter: { agentId: agent, userId: "bob" }, pageSize: 2, pageToken: first.nextPageToken }),
    );
    expect(otherFilter).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_PAGE_TOKEN", fields: ["page_token"] });
    const otherOrder = await failure(
      h.client.sessions.listSessions({ filter: { agentId: agent }, orderBy: "update_time", pageSize: 2, pageToken: first.nextPageToken }),
    );
    expect(otherOrder.reason).toBe("INVALID_PAGE_TOKEN");
    expect((await failure(h.client.sessions.listSessions({ pageToken: "garbage" }))).reason).toBe("INVALID_PAGE_TOKEN");
  });

  it("clamps page_size to 1000 and rejects bad paging and ordering", async () => {
    await h.client.sessions.listSessions({ pageSize: 5000 });
    expect((await failure(h.client.sessions.listSessions({ pageSize: -1 }))).fields).toEqual(["page_size"]);
    expect((await failure(h.client.sessions.listSessions({ orderBy: "agent_id" }))).fields).toEqual(["order_by"]);
    expect((await failure(h.client.sessions.listSessions({ orderBy: "create_time sideways" }))).fields).toEqual(["order_by"]);
    expect((await failure(h.client.sessions.listSessions({ filter: { statuses: [42 as SessionStatus] } }))).fields).toEqual([
      "filter.statuses[0]",
    ]);
  });

  it("counts and stats use the same filter", async () => {
    expect((await h.client.sessions.countSessions({ filter: { agentId: agent } })).count).toBe(5);
    expect((await h.client.sessions.countSessions({ filter: { agentId: agent, labels: { team: "red" } } })).count).toBe(3);
    const stats = await h.client.sessions.getSessionStats({ filter: { agentId: agent } });
    expect(stats.total).toBe(5);
    expect(stats.byStatus).toEqual({ SESSION_STATUS_ACTIVE: 3, SESSION_STATUS_ENDED: 1, SESSION_STATUS_ERROR: 1 });
    const first = (await h.client.sessions.getSession({ sessionId: ids[0]! })).createTime;
    expect(stats.oldestActiveCreateTime).toEqual(first);
    expect(stats.avgDuration).toEqual({ seconds: 0, nanos: 0 }); // created ended: end_time = create_time
    const none = await h.client.sessions.getSessionStats({ filter: { agentId: "nobody-at-all" } });
    expect(none).toMatchObject({ total: 0, avgDuration: undefined, oldestActiveCreateTime: undefined });
  });

  it("stats average the durations of ended sessions", async () => {
    const a = uid("dur-agent");
    const s = await h.client.sessions.createSession({ session: { agentId: a } });
    await h.sql.query("UPDATE sessions SET create_time = create_time - interval '90 seconds' WHERE session_id = $1", [s.sessionId]);
    await h.client.sessions.updateSession({ session: { sessionId: s.sessionId, status: SessionStatus.SESSION_STATUS_ENDED }, updateMask: ["status"] });
    const stats = await h.client.sessions.getSessionStats({ filter: { agentId: a } });
    expect(stats.avgDuration!.seconds).toBe(90);
    expect(stats.oldestActiveCreateTime).toBeUndefined();
  });
});

describe("messages", () => {
  it("appends with per-session sequences and lists them in order, paged", async () => {
    const s = await h.client.sessions.createSession({ session: { agentId: "chat" } });
    const other = await h.client.sessions.createSession({ session: { agentId: "chat" } });
    const first = await h.client.sessions.appendMessages({
      sessionId: s.sessionId,
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: "hi", metadata: { lang: "en" } },
      ],
    });
    expect(first.messages.map((m) => [m.sequence, m.role])).toEqual([
      [1, "system"],
      [2, "user"],
    ]);
    expect(first.messages[1]!.metadata).toEqual({ lang: "en" });
    await h.client.sessions.appendMessages({ sessionId: other.sessionId, messages: [{ role: "user", content: "elsewhere" }] });
    const more = await h.client.sessions.appendMessages({
      sessionId: s.sessionId,
      messages: [{ role: "assistant", content: "hello" }, { role: "tool", content: "{}" }, { role: "user", content: "bye" }],
    });
    expect(more.messages.map((m) => m.sequence)).toEqual([3, 4, 5]);

    const page1 = await h.client.sessions.listMessages({ sessionId: s.sessionId, pageSize: 2 });
    expect(page1.messages.map((m) => m.sequence)).toEqual([1, 2]);
    const page2 = await h.client.sessions.listMessages({ sessionId: s.sessionId, pageSize: 2, pageToken: page1.nextPageToken });
    expect(page2.messages.map((m) => m.sequence)).toEqual([3, 4]);
    const page3 = await h.client.sessions.listMessages({ sessionId: s.sessionId, pageSize: 2, pageToken: page2.nextPageToken });
    expect(page3.messages.map((m) => m.sequence)).toEqual([5]);
    expect(page3.nextPageToken).toBe("");
    const after = await h.client.sessions.listMessages({ sessionId: s.sessionId, afterSequence: 3 });
    expect(after.messages.map((m) => [m.sequence, m.content])).toEqual([
      [4, "{}"],
      [5, "bye"],
    ]);
  });

  it("concurrent appends get gapless, distinct sequences", async () => {
    const s = await h.client.sessions.createSession({ session: { agentId: "chat" } });
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        h.client.sessions.appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: `a${i}` }, { role: "user", content: `b${i}` }] }),
      ),
    );
    const all = await h.client.sessions.listMessages({ sessionId: s.sessionId, pageSize: 100 });
    expect(all.messages.map((m) => m.sequence)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });

  it("NOT_FOUND for an unknown session; bad input names the field", async () => {
    expect((await failure(h.client.sessions.appendMessages({ sessionId: "ghost", messages: [{ role: "user" }] }))).code).toBe(status.NOT_FOUND);
    expect((await failure(h.client.sessions.listMessages({ sessionId: "ghost" }))).code).toBe(status.NOT_FOUND);
    const s = await h.client.sessions.createSession({ session: { agentId: "chat" } });
    expect(await failure(h.client.sessions.appendMessages({ sessionId: s.sessionId, messages: [] }))).toMatchObject({ fields: ["messages"] });
    expect(
      await failure(h.client.sessions.appendMessages({ sessionId: s.sessionId, messages: [{ role: "user" }, { role: "" }] })),
    ).toMatchObject({ fields: ["messages[1].role"] });
    expect((await failure(h.client.sessions.listMessages({ sessionId: s.sessionId, afterSequence: -1 }))).fields).toEqual(["after_sequence"]);
    const left = await h.client.sessions.listMessages({ sessionId: s.sessionId });
    expect(left.messages).toEqual([]);
  });
});
