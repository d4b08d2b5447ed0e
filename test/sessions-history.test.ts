// Session history and forks: every committed version is kept (the newest
// CAIRN_SESSION_HISTORY_VERSIONS, here 5), whatever path wrote it;
// GetSession at a version, ListSessionVersions newest first, ForkSession
// with renumbered messages and parent links; VERSION_PRUNED past the depth,
// and the reaper reclaiming what reads no longer show.
import { CairnClient, type Session, SessionStatus } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

const KEEP = 5;
let h: Harness;
/** A daemon whose reaper does not run during the tests: pruned rows stay, and reads must hide them. */
let idle: Harness;
let seq = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;
const clients: CairnClient[] = [];

beforeAll(async () => {
  h = await startHarness({ sessionHistoryVersions: KEEP, reaperIntervalMs: 200 });
  idle = await startHarness({ sessionHistoryVersions: KEEP, reaperIntervalMs: 3_600_000 });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await h?.stop();
  await idle?.stop();
});

function clientIn(namespace: string): CairnClient {
  const client = new CairnClient(h.daemon.address, { namespace });
  clients.push(client);
  return client;
}

/** A session updated to version `versions`, its state {n: version} at each. */
async function sessionAt(versions: number, client = h.client): Promise<Session> {
  let session = await client.sessions.createSession({ session: { agentId: "hist", state: { n: 1 }, labels: { v: "1" } } });
  for (let n = 2; n <= versions; n++) {
    session = await client.sessions.updateSession({
      session: { sessionId: session.sessionId, state: { n }, labels: { v: String(n) } },
      updateMask: ["state", "labels"],
    });
  }
  return session;
}

async function allVersions(sessionId: string, pageSize: number, readMask: string[] = [], client = h.client): Promise<Session[]> {
  const all: Session[] = [];
  let pageToken = "";
  do {
    const page = await client.sessions.listSessionVersions({ sessionId, pageSize, pageToken, readMask });
    all.push(...page.sessions);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return all;
}

const historyRows = async (sessionId: string) =>
  (await h.sql.query("SELECT version FROM session_versions WHERE session_id = $1 ORDER BY version", [sessionId])).rows.map((r) => Number(r.version));

describe("GetSession at a version", () => {
  it("returns that version's fields with the session's fixed ones", async () => {
    const created = await h.client.sessions.createSession({ session: { agentId: "a", userId: "u1", metadata: { m: 1 }, state: { s: 1 } } });
    const ended = await h.client.sessions.updateSession({
      session: { sessionId: created.sessionId, status: SessionStatus.SESSION_STATUS_ENDED, userId: "u2", state: { s: 2 } },
    });
    const v1 = await h.client.sessions.getSession({ sessionId: created.sessionId, version: 1 });
    expect(v1).toEqual(created);
    const v2 = await h.client.sessions.getSession({ sessionId: created.sessionId, version: 2 });
    expect(v2).toEqual(ended);
    expect(v2.endTime).toBeDefined();
    // Version 0 is the current one.
    expect(await h.client.sessions.getSession({ sessionId: created.sessionId, version: 0 })).toEqual(ended);
  });

  it("applies the read mask", async () => {
    const s = await sessionAt(3);
    const v2 = await h.client.sessions.getSession({ sessionId: s.sessionId, version: 2, readMask: ["version", "state"] });
    expect(v2).toMatchObject({ sessionId: "", agentId: "", version: 2, state: { n: 2 }, labels: {} });
  });

  it("NOT_FOUND for a version the session never reached or an unknown session; INVALID_ARGUMENT for a negative one", async () => {
    const s = await sessionAt(2);
    const beyond = await failure(h.client.sessions.getSession({ sessionId: s.sessionId, version: 3 }));
    expect(beyond).toMatchObject({ code: status.NOT_FOUND, reason: "NOT_FOUND", metadata: { resource: "session", id: s.sessionId } });
    expect(await failure(h.client.sessions.getSession({ sessionId: uid("nope"), version: 1 }))).toMatchObject({ code: status.NOT_FOUND, reason: "NOT_FOUND" });
    expect(await failure(h.client.sessions.getSession({ sessionId: s.sessionId, version: -1 }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      fields: ["version"],
    });
  });

  it("VERSION_PRUNED past the newest KEEP versions at once, while the rows are still there", async () => {
    const s = await sessionAt(KEEP + 3, idle.client); // versions 1..8; 4..8 kept
    for (const version of [1, 2, 3]) {
      const f = await failure(idle.client.sessions.getSession({ sessionId: s.sessionId, version }));
      expect(f).toMatchObject({ code: status.NOT_FOUND, reason: "VERSION_PRUNED", metadata: { version: String(version), oldest_version: "4" } });
    }
    expect((await idle.client.sessions.getSession({ sessionId: s.sessionId, version: 4 })).state).toEqual({ n: 4 });
    const rows = await idle.sql.query("SELECT version FROM session_versions WHERE session_id = $1 ORDER BY version", [s.sessionId]);
    expect(rows.rows.map((r) => Number(r.version))).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it("the reaper then deletes the versions no longer kept", async () => {
    const s = await sessionAt(KEEP + 3); // versions 1..8; 4..8 kept
    // The current version lives in sessions; history holds the 4 before it.
    await waitFor("the reaper to prune", async () => (await historyRows(s.sessionId)).join() === "4,5,6,7");
  });
});

describe("ListSessionVersions", () => {
  it("pages newest first over the kept versions, current included (older rows still stored)", async () => {
    const s = await sessionAt(KEEP + 2, idle.client);
    const versions = await allVersions(s.sessionId, 2, [], idle.client);
    expect(versions.map((v) => v.version)).toEqual([7, 6, 5, 4, 3]);
    expect(versions.map((v) => v.state)).toEqual([7, 6, 5, 4, 3].map((n) => ({ n })));
    expect(versions.map((v) => v.labels.v)).toEqual(["7", "6", "5", "4", "3"]);
    expect(versions[0]).toEqual(s);
    expect(new Set(versions.map((v) => v.createTime?.seconds))).toEqual(new Set([s.createTime?.seconds]));
  });

  it("shows no row a session's history holds at or above its current version (left by a namesake deleted outside Cairn)", async () => {
    const s = await sessionAt(2);
    await h.sql.query(
      `INSERT INTO session_versions (namespace, session_id, version, status, user_id, labels, state, update_time)
       VALUES ('default', $1, 2, 'ACTIVE', '', '{}', '{"stale": true}', now()), ('default', $1, 9, 'ACTIVE', '', '{}', '{"stale": true}', now())`,
      [s.sessionId],
    );
    expect((await allVersions(s.sessionId, 10)).map((v) => [v.version, v.state])).toEqual([
      [2, { n: 2 }],
      [1, { n: 1 }],
    ]);
    expect((await failure(h.client.sessions.getSession({ sessionId: s.sessionId, version: 9 }))).code).toBe(status.NOT_FOUND);
  });

  it("applies the read mask to every version", async () => {
    const s = await sessionAt(3);
    const versions = await allVersions(s.sessionId, 10, ["version"]);
    expect(versions.map((v) => [v.version, v.state, v.sessionId])).toEqual([
      [3, undefined, ""],
      [2, undefined, ""],
      [1, undefined, ""],
    ]);
  });

  it("NOT_FOUND for an unknown session; a token is bound to its session", async () => {
    expect((await failure(h.client.sessions.listSessionVersions({ sessionId: uid("nope") }))).code).toBe(status.NOT_FOUND);
    const a = await sessionAt(3);
    const b = await sessionAt(3);
    const page = await h.client.sessions.listSessionVersions({ sessionId: a.sessionId, pageSize: 1 });
    const f = await failure(h.client.sessions.listSessionVersions({ sessionId: b.sessionId, pageToken: page.nextPageToken }));
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_PAGE_TOKEN" });
  });
});

describe("versions recorded by every write path", () => {
  it("BatchCreateSessions then updates", async () => {
    const { sessions } = await h.client.sessions.batchCreateSessions({
      requests: [{ session: { agentId: "b", state: { x: 1 } } }, { session: { agentId: "b", state: { y: 1 } } }],
    });
    for (const s of sessions) {
      await h.client.sessions.updateSession({ session: { sessionId: s.sessionId, state: { z: 2 } }, updateMask: ["state"] });
      expect((await h.client.sessions.getSession({ sessionId: s.sessionId, version: 1 })).state).toEqual(s.state);
    }
  });

  it("an AppendMessages without state_patch changes no version and records none", async () => {
    const s = await sessionAt(2);
    await h.client.sessions.appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: "hi" }] });
    expect((await allVersions(s.sessionId, 10)).map((v) => v.version)).toEqual([2, 1]);
  });

  it("state_patch, AppendMessages with state_patch, BatchUpdateSessions and an upsert", async () => {
    const s = await sessionAt(1);
    await h.client.sessions.updateSession({ session: { sessionId: s.sessionId }, statePatch: { a: 1 } });
    await h.client.sessions.appendMessages({ sessionId: s.sessionId, messages: [{ role: "user", content: "x" }], statePatch: { b: 2 } });
    await h.client.sessions.batchUpdateSessions({ requests: [{ session: { sessionId: s.sessionId }, statePatch: { n: null } }] });
    const upserted = uid("upsert");
    await h.client.sessions.updateSession({ session: { sessionId: upserted, agentId: "u", state: { u: 1 } }, allowMissing: true });
    await h.client.sessions.updateSession({ session: { sessionId: upserted, agentId: "u", state: { u: 2 } }, allowMissing: true });
    expect((await allVersions(s.sessionId, 10)).map((v) => v.state)).toEqual([{ a: 1, b: 2 }, { n: 1, a: 1, b: 2 }, { n: 1, a: 1 }, { n: 1 }]);
    expect((await allVersions(upserted, 10)).map((v) => [v.version, v.state])).toEqual([
      [2, { u: 2 }],
      [1, { u: 1 }],
    ]);
  });
});

describe("versions recorded by Commit and after an import", () => {
  it("each update of a Commit is a version", async () => {
    const s = await sessionAt(1);
    const patch = (c: number) => ({ op: { $case: "updateSession" as const, value: { session: { sessionId: s.sessionId }, statePatch: { c } } } });
    await h.client.transactions.commit({ operations: [patch(1), patch(2)] });
    expect((await allVersions(s.sessionId, 10)).map((v) => [v.version, v.state])).toEqual([
      [3, { n: 1, c: 2 }],
      [2, { n: 1, c: 1 }],
      [1, { n: 1 }],
    ]);
  });

  it("an imported session's history starts at its imported version", async () => {
    const sessionId = uid("imported");
    await h.client.sessions.importSessions({ sessions: [{ sessionId, agentId: "imp", version: 7, state: { i: 7 } }] });
    await h.client.sessions.updateSession({ session: { sessionId, state: { i: 8 } } });
    expect((await allVersions(sessionId, 10)).map((v) => [v.version, v.state])).toEqual([
      [8, { i: 8 }],
      [7, { i: 7 }],
    ]);
    // Versions before the import were never held here.
    expect(await failure(h.client.sessions.getSession({ sessionId, version: 6 }))).toMatchObject({
      reason: "VERSION_PRUNED",
      metadata: { oldest_version: "7" },
    });
  });
});

describe("ForkSession", () => {
  async function withMessages(count: number): Promise<Session> {
    const s = await sessionAt(3);
    await h.client.sessions.appendMessages({
      sessionId: s.sessionId,
      messages: Array.from({ length: count }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: `m${i + 1}`, metadata: { i: i + 1 } })),
    });
    return s;
  }

  it("forks a version with messages up to a sequence, renumbered, with parent links", async () => {
    const source = await withMessages(5);
    const sourceMessages = (await h.client.sessions.listMessages({ sessionId: source.sessionId })).messages;
    const fork = await h.client.sessions.forkSession({ sessionId: source.sessionId, version: 2, upToSequence: 3 });
    expect(fork).toMatchObject({
      agentId: "hist",
      status: SessionStatus.SESSION_STATUS_ACTIVE,
      version: 1,
      state: { n: 2 },
      labels: { v: "2" },
      parentSessionId: source.sessionId,
      parentVersion: 2,
    });
    expect(fork.sessionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(await h.client.sessions.getSession({ sessionId: fork.sessionId })).toEqual(fork);
    const copied = (await h.client.sessions.listMessages({ sessionId: fork.sessionId })).messages;
    expect(copied.map((m) => [m.sequence, m.role, m.content, m.metadata, m.createTime])).toEqual(
      sourceMessages.slice(0, 3).map((m, i) => [i + 1, m.role, m.content, m.metadata, m.createTime]),
    );
    // The fork's own messages follow the copies.
    const appended = await h.client.sessions.appendMessages({ sessionId: fork.sessionId, messages: [{ role: "user", content: "next" }] });
    expect(appended.messages[0]!.sequence).toBe(4);
    // The source is untouched; ListSessions finds forks by parent.
    expect((await h.client.sessions.getSession({ sessionId: source.sessionId })).version).toBe(3);
    const forks = await h.client.sessions.listSessions({ filter: { parentSessionId: source.sessionId } });
    expect(forks.sessions.map((s) => s.sessionId)).toEqual([fork.sessionId]);
  });

  it("renumbers from 1 what is left after messages were deleted, and forks the current version by default", async () => {
    const source = await withMessages(4);
    await h.client.sessions.deleteMessages({ sessionId: source.sessionId, beforeSequence: 3 });
    const fork = await h.client.sessions.forkSession({ sessionId: source.sessionId, newSessionId: uid("fork") });
    expect(fork).toMatchObject({ version: 1, state: { n: 3 }, parentVersion: 3 });
    const copied = (await h.client.sessions.listMessages({ sessionId: fork.sessionId })).messages;
    expect(copied.map((m) => [m.sequence, m.content])).toEqual([
      [1, "m3"],
      [2, "m4"],
    ]);
  });

  it("a retried request_id returns the first fork; ALREADY_EXISTS for a taken id", async () => {
    const source = await withMessages(2);
    const request = { sessionId: source.sessionId, requestId: uid("req") };
    const first = await h.client.sessions.forkSession(request);
    await h.client.sessions.updateSession({ session: { sessionId: first.sessionId, state: { changed: true } } });
    expect(await h.client.sessions.forkSession(request)).toEqual(first);
    const forks = await h.sql.query("SELECT count(*)::int AS n FROM sessions WHERE parent_session_id = $1", [source.sessionId]);
    expect(forks.rows[0].n).toBe(1);
    const taken = await failure(h.client.sessions.forkSession({ sessionId: source.sessionId, newSessionId: first.sessionId }));
    expect(taken).toMatchObject({ code: status.ALREADY_EXISTS, reason: "ALREADY_EXISTS", metadata: { id: first.sessionId } });
    expect((await failure(h.client.sessions.forkSession({ ...request, upToSequence: 1 }))).reason).toBe("REQUEST_ID_REUSED");
  });

  it("VERSION_PRUNED for a pruned version, NOT_FOUND for an unknown session, nothing created", async () => {
    const source = await sessionAt(KEEP + 1);
    const newSessionId = uid("fork");
    const pruned = await failure(h.client.sessions.forkSession({ sessionId: source.sessionId, version: 1, newSessionId }));
    expect(pruned).toMatchObject({ code: status.NOT_FOUND, reason: "VERSION_PRUNED" });
    expect((await failure(h.client.sessions.forkSession({ sessionId: uid("nope"), newSessionId }))).reason).toBe("NOT_FOUND");
    expect((await failure(h.client.sessions.getSession({ sessionId: newSessionId }))).code).toBe(status.NOT_FOUND);
    const bad = await failure(h.client.sessions.forkSession({ sessionId: source.sessionId, version: -1, upToSequence: -2 }));
    expect(bad).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["version", "up_to_sequence"] });
  });
});

describe("deletes and namespaces", () => {
  it("deleting a session deletes its history", async () => {
    const s = await sessionAt(4);
    expect(await historyRows(s.sessionId)).toEqual([1, 2, 3]);
    await h.client.sessions.deleteSession({ sessionId: s.sessionId });
    expect(await historyRows(s.sessionId)).toEqual([]);
    // A session created again under the id starts a history of its own.
    await h.client.sessions.createSession({ sessionId: s.sessionId, session: { agentId: "again" } });
    expect((await failure(h.client.sessions.getSession({ sessionId: s.sessionId, version: 2 }))).reason).toBe("NOT_FOUND");
  });

  it("another namespace can neither read nor fork a session's versions", async () => {
    const red = clientIn(uid("red"));
    const blue = clientIn(uid("blue"));
    const s = await sessionAt(3, red);
    const missing = async (p: Promise<unknown>) => expect(await failure(p)).toMatchObject({ code: status.NOT_FOUND, reason: "NOT_FOUND" });
    await missing(blue.sessions.getSession({ sessionId: s.sessionId, version: 1 }));
    await missing(blue.sessions.listSessionVersions({ sessionId: s.sessionId }));
    await missing(blue.sessions.forkSession({ sessionId: s.sessionId }));
    // The same id in blue has its own history.
    await blue.sessions.createSession({ sessionId: s.sessionId, session: { agentId: "blue" } });
    expect((await blue.sessions.listSessionVersions({ sessionId: s.sessionId })).sessions.map((v) => v.agentId)).toEqual(["blue"]);
    expect((await red.sessions.listSessionVersions({ sessionId: s.sessionId })).sessions).toHaveLength(3);
  });
});

describe("history off (CAIRN_SESSION_HISTORY_VERSIONS=0)", () => {
  it("records nothing, and only the current version is readable", async () => {
    const off = await startHarness({ sessionHistoryVersions: 0 });
    try {
      const created = await off.client.sessions.createSession({ session: { agentId: "off", state: { n: 1 } } });
      await off.client.sessions.updateSession({ session: { sessionId: created.sessionId, state: { n: 2 } } });
      const rows = await off.sql.query("SELECT count(*)::int AS n FROM session_versions");
      expect(rows.rows[0].n).toBe(0);
      expect((await failure(off.client.sessions.getSession({ sessionId: created.sessionId, version: 1 }))).reason).toBe("VERSION_PRUNED");
      expect((await off.client.sessions.listSessionVersions({ sessionId: created.sessionId })).sessions.map((v) => v.version)).toEqual([2]);
    } finally {
      await off.stop();
    }
  });
});
