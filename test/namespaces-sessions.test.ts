// Namespaces through SessionService and ResolutionService: two clients in
// two namespaces on one daemon. The same ids in both are independent rows,
// and nothing of one namespace is visible, countable, updatable, deletable
// or purgeable from the other; request ids are per namespace too.
import { CairnClient, Decision, SessionStatus } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import type { PoolClient } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCKS } from "../src/reaper.js";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let seq = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;
const clients: CairnClient[] = [];

beforeAll(async () => {
  h = await startHarness({ reaperIntervalMs: 200 });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await h?.stop();
});

/** A client of a fresh namespace (nothing else in it, so counts are exact). */
function clientIn(namespace = uid("ns")): CairnClient {
  const client = new CairnClient(h.daemon.address, { namespace });
  clients.push(client);
  return client;
}

/** Two fresh namespaces, red and blue. */
const pair = () => ({ red: clientIn(), blue: clientIn() });

const ids = (sessions: { sessionId: string }[]) => sessions.map((s) => s.sessionId).sort();

describe("sessions", () => {
  it("the same session id in two namespaces is two independent sessions", async () => {
    const { red, blue } = pair();
    const id = uid("s");
    await red.sessions.createSession({ sessionId: id, session: { agentId: "red-agent", state: { n: 1 } } });
    // Not ALREADY_EXISTS: the id is taken only in red.
    await blue.sessions.createSession({ sessionId: id, session: { agentId: "blue-agent", state: { n: 2 } } });
    expect((await red.sessions.getSession({ sessionId: id })).agentId).toBe("red-agent");
    expect((await blue.sessions.getSession({ sessionId: id })).agentId).toBe("blue-agent");
    const rows = await h.sql.query("SELECT namespace, agent_id FROM sessions WHERE session_id = $1 ORDER BY agent_id", [id]);
    expect(rows.rows.map((r) => [r.agent_id, r.namespace.startsWith("ns-")])).toEqual([
      ["blue-agent", true],
      ["red-agent", true],
    ]);
    // Taken in red stays taken in red.
    expect((await failure(red.sessions.createSession({ sessionId: id, session: { agentId: "x" } }))).code).toBe(status.ALREADY_EXISTS);
  });

  it("nothing of one namespace can be read, updated or deleted from another", async () => {
    const { red, blue } = pair();
    const { sessionId } = await red.sessions.createSession({ session: { agentId: "a" } });
    const missing = async (p: Promise<unknown>) => expect((await failure(p)).code).toBe(status.NOT_FOUND);
    await missing(blue.sessions.getSession({ sessionId }));
    await missing(blue.sessions.batchGetSessions({ sessionIds: [sessionId] }));
    await missing(blue.sessions.updateSession({ session: { sessionId, state: { x: 1 } }, updateMask: ["state"] }));
    await missing(blue.sessions.updateSession({ session: { sessionId, state: { x: 1 } }, updateMask: ["state"], expectedVersion: 1 }));
    await missing(blue.sessions.deleteSession({ sessionId }));
    await missing(blue.sessions.deleteSession({ sessionId, expectedVersion: 1 }));
    await missing(blue.sessions.batchDeleteSessions({ sessionIds: [sessionId] }));
    await missing(blue.sessions.appendMessages({ sessionId, messages: [{ role: "user", content: "hi" }] }));
    await missing(blue.sessions.listMessages({ sessionId }));
    const got = await red.sessions.getSession({ sessionId });
    expect(got.version).toBe(1);
    expect(await red.sessions.listMessages({ sessionId })).toEqual({ messages: [], nextPageToken: "" });
  });

  it("the write methods of sessions' later features do not reach another namespace either", async () => {
    const { red, blue } = pair();
    const { sessionId } = await red.sessions.createSession({ session: { agentId: "a", state: { n: 1 } } });
    await red.sessions.appendMessages({ sessionId, messages: [{ role: "user", content: "red's" }] });
    const missing = async (p: Promise<unknown>) => expect((await failure(p)).code).toBe(status.NOT_FOUND);
    await missing(blue.sessions.deleteMessages({ sessionId, beforeSequence: 0 }));
    await missing(blue.sessions.updateSession({ session: { sessionId }, statePatch: { n: 2 } }));
    await missing(blue.sessions.appendMessages({ sessionId, messages: [{ role: "user", content: "x" }], statePatch: { n: 3 } }));
    await missing(blue.sessions.batchUpdateSessions({ requests: [{ session: { sessionId, state: { n: 4 } }, updateMask: ["state"] }] }));
    // allow_missing in blue creates blue's own session of that id; red's is untouched.
    await blue.sessions.batchUpdateSessions({ requests: [{ session: { sessionId, agentId: "b", state: { n: 5 } }, allowMissing: true }] });
    expect((await blue.sessions.getSession({ sessionId })).state).toEqual({ n: 5 });
    const redNow = await red.sessions.getSession({ sessionId });
    expect([redNow.version, redNow.state]).toEqual([1, { n: 1 }]);
    expect((await red.sessions.listMessages({ sessionId })).messages.map((m) => m.content)).toEqual(["red's"]);
  });

  it("a client naming no namespace works in 'default'", async () => {
    const named = clientIn("default");
    const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "default-agent" } });
    expect((await named.sessions.getSession({ sessionId })).agentId).toBe("default-agent");
    const other = await named.sessions.createSession({ session: { agentId: "default-agent-2" } });
    expect((await h.client.sessions.getSession({ sessionId: other.sessionId })).agentId).toBe("default-agent-2");
    const rows = await h.sql.query("SELECT namespace FROM sessions WHERE session_id = ANY ($1)", [[sessionId, other.sessionId]]);
    expect(rows.rows.map((r) => r.namespace)).toEqual(["default", "default"]);
    expect((await failure(clientIn().sessions.getSession({ sessionId }))).code).toBe(status.NOT_FOUND);
  });

  it("GetSession and UpdateSession calls for one id in two namespaces, arriving together, each reach their own", async () => {
    const { red, blue } = pair();
    const id = uid("s");
    await red.sessions.createSession({ sessionId: id, session: { agentId: "red", state: { who: "red" } } });
    await blue.sessions.createSession({ sessionId: id, session: { agentId: "blue", state: { who: "blue" } } });
    // Sent in one turn, so the daemon coalesces them into one statement each.
    const [r, b] = await Promise.all([red.sessions.getSession({ sessionId: id }), blue.sessions.getSession({ sessionId: id })]);
    expect([r.agentId, b.agentId]).toEqual(["red", "blue"]);
    const update = (c: CairnClient, who: string) =>
      c.sessions.updateSession({ session: { sessionId: id, state: { who, updated: true } }, updateMask: ["state"], expectedVersion: 1 });
    const [ru, bu] = await Promise.all([update(red, "red"), update(blue, "blue")]);
    expect([ru.state, ru.version]).toEqual([{ who: "red", updated: true }, 2]);
    expect([bu.state, bu.version]).toEqual([{ who: "blue", updated: true }, 2]);
    expect((await red.sessions.getSession({ sessionId: id })).state).toEqual({ who: "red", updated: true });
    expect((await blue.sessions.getSession({ sessionId: id })).state).toEqual({ who: "blue", updated: true });
  });

  it("List, Count and Stats see only their namespace, with every filter", async () => {
    const { red, blue } = pair();
    const start = { seconds: Math.floor(Date.now() / 1000) - 60, nanos: 0 };
    const matching = {
      agentId: "agent-m",
      userId: "user-m",
      status: SessionStatus.SESSION_STATUS_ACTIVE,
      labels: { team: "m" },
      metadata: { tier: "gold" },
      state: { step: 7 },
    };
    const other = { agentId: "agent-o", userId: "user-o", status: SessionStatus.SESSION_STATUS_ENDED, labels: { team: "o" } };
    const shared = uid("s");
    // Red: the shared id matching, and one that matches nothing. Blue: the
    // same two ids, the same shapes, and one more matching session.
    for (const c of [red, blue]) {
      await c.sessions.createSession({ sessionId: shared, session: matching });
      await c.sessions.createSession({ sessionId: `${shared}-o`, session: other });
    }
    const blueOnly = (await blue.sessions.createSession({ session: matching })).sessionId;

    const filters: Record<string, object> = {
      none: {},
      agentId: { agentId: "agent-m" },
      userId: { userId: "user-m" },
      statuses: { statuses: [SessionStatus.SESSION_STATUS_ACTIVE] },
      labels: { labels: { team: "m" } },
      metadataContains: { metadataContains: { tier: "gold" } },
      stateContains: { stateContains: { step: 7 } },
      createdAfter: { createdAfter: start, agentId: "agent-m" },
      createdBefore: { createdBefore: { seconds: start.seconds + 3600, nanos: 0 }, statuses: [SessionStatus.SESSION_STATUS_ACTIVE] },
    };
    for (const [name, filter] of Object.entries(filters)) {
      const expectRed = name === "none" ? [shared, `${shared}-o`].sort() : [shared];
      const expectBlue = name === "none" ? [shared, `${shared}-o`, blueOnly].sort() : [shared, blueOnly].sort();
      expect(ids((await red.sessions.listSessions({ filter })).sessions), name).toEqual(expectRed);
      expect(ids((await blue.sessions.listSessions({ filter })).sessions), name).toEqual(expectBlue);
      expect((await red.sessions.countSessions({ filter })).count, name).toBe(expectRed.length);
      expect((await blue.sessions.countSessions({ filter })).count, name).toBe(expectBlue.length);
      expect((await red.sessions.getSessionStats({ filter })).total, name).toBe(expectRed.length);
      expect((await blue.sessions.getSessionStats({ filter })).total, name).toBe(expectBlue.length);
    }
    const stats = await red.sessions.getSessionStats({});
    expect(stats.byStatus).toEqual({ SESSION_STATUS_ACTIVE: 1, SESSION_STATUS_ENDED: 1, SESSION_STATUS_ERROR: 0 });
    // Pages stay in the namespace too.
    const p1 = await blue.sessions.listSessions({ pageSize: 2 });
    const p2 = await blue.sessions.listSessions({ pageSize: 2, pageToken: p1.nextPageToken });
    expect(ids([...p1.sessions, ...p2.sessions])).toEqual([shared, `${shared}-o`, blueOnly].sort());
    const redFromToken = await red.sessions.listSessions({ pageSize: 2, pageToken: p1.nextPageToken });
    expect(ids(redFromToken.sessions).every((id) => [shared, `${shared}-o`].includes(id))).toBe(true);
  });

  it("messages of the same session id in two namespaces are two histories", async () => {
    const { red, blue } = pair();
    const id = uid("s");
    for (const c of [red, blue]) await c.sessions.createSession({ sessionId: id, session: { agentId: "a" } });
    await red.sessions.appendMessages({ sessionId: id, messages: [{ role: "user", content: "r1" }, { role: "user", content: "r2" }] });
    const appended = await blue.sessions.appendMessages({ sessionId: id, messages: [{ role: "user", content: "b1" }] });
    // Blue's sequences start at 1: red's appends took none of blue's.
    expect(appended.messages.map((m) => m.sequence)).toEqual([1]);
    expect((await red.sessions.listMessages({ sessionId: id })).messages.map((m) => [m.sequence, m.content])).toEqual([
      [1, "r1"],
      [2, "r2"],
    ]);
    expect((await blue.sessions.listMessages({ sessionId: id })).messages.map((m) => [m.sequence, m.content])).toEqual([[1, "b1"]]);
  });

  it("deleting a session cascades within its namespace only", async () => {
    const { red, blue } = pair();
    const id = uid("s");
    const other = uid("s");
    for (const c of [red, blue]) {
      await c.sessions.createSession({ sessionId: id, session: { agentId: "a" } });
      await c.sessions.createSession({ sessionId: other, session: { agentId: "a" } });
      await c.sessions.appendMessages({ sessionId: id, messages: [{ role: "user", content: "m" }] });
      await c.sessions.appendMessages({ sessionId: other, messages: [{ role: "user", content: "m" }] });
      await c.resolutions.createResolution({ resolution: resolutionOf(id) });
      await c.resolutions.createResolution({ resolution: resolutionOf(other) });
    }
    const resolutionsOf = async (c: CairnClient, sessionId: string) => (await c.resolutions.listResolutions({ sessionId })).resolutions.length;
    const messagesOf = async (c: CairnClient, sessionId: string) => (await c.sessions.listMessages({ sessionId })).messages.length;

    await red.sessions.deleteSession({ sessionId: id });
    expect((await failure(red.sessions.getSession({ sessionId: id }))).code).toBe(status.NOT_FOUND);
    expect(await resolutionsOf(red, id)).toBe(0);
    expect(await messagesOf(blue, id)).toBe(1);
    expect(await resolutionsOf(blue, id)).toBe(1);

    await blue.sessions.batchDeleteSessions({ sessionIds: [id, other] });
    expect(await resolutionsOf(blue, id)).toBe(0);
    expect(await resolutionsOf(blue, other)).toBe(0);
    expect(await messagesOf(red, other)).toBe(1);
    expect(await resolutionsOf(red, other)).toBe(1);
    // A batch naming a session only the other namespace still has deletes nothing.
    expect((await failure(blue.sessions.batchDeleteSessions({ sessionIds: [other] }))).code).toBe(status.NOT_FOUND);
    expect((await red.sessions.getSession({ sessionId: other })).sessionId).toBe(other);
  });

  it("a request_id is per namespace: the same one in another namespace is a new create", async () => {
    const { red, blue } = pair();
    const requestId = uid("req");
    const request = { requestId, session: { agentId: "idem", state: { k: 1 } } };
    const first = await red.sessions.createSession(request);
    const inBlue = await blue.sessions.createSession(request);
    expect(inBlue.sessionId).not.toBe(first.sessionId);
    expect(await red.sessions.createSession(request)).toEqual(first);
    expect(await blue.sessions.createSession(request)).toEqual(inBlue);
    // Another body under the same id is REQUEST_ID_REUSED only where the id was used for it.
    const changed = { requestId, session: { agentId: "idem", state: { k: 2 } } };
    expect((await failure(red.sessions.createSession(changed))).reason).toBe("REQUEST_ID_REUSED");
    const third = clientIn();
    expect((await third.sessions.createSession(changed)).state).toEqual({ k: 2 });
    // A replay of a session deleted since is NOT_FOUND in its namespace only.
    await red.sessions.deleteSession({ sessionId: first.sessionId });
    expect((await failure(red.sessions.createSession(request))).code).toBe(status.NOT_FOUND);
    expect(await blue.sessions.createSession(request)).toEqual(inBlue);
    const claims = await h.sql.query("SELECT count(DISTINCT namespace)::int AS n FROM request_ids WHERE request_id = $1", [requestId]);
    expect(claims.rows[0].n).toBe(3);
  });
});

const resolutionOf = (sessionId: string, extra: object = {}) => ({
  requestId: "agent-request",
  agentId: "agent-1",
  sessionId,
  decision: Decision.DECISION_ALLOW,
  contextBlocks: [],
  allowedActions: [],
  deniedActions: [],
  policiesApplied: [],
  ...extra,
});

/** Runs fn while the reaper cannot run, so expired rows hold still. */
async function withReaperPaused<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await h.sql.connect();
  await client.query("SELECT pg_advisory_lock($1)", [LOCKS.reaper]);
  try {
    return await fn(client);
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [LOCKS.reaper]);
    client.release();
  }
}

describe("resolutions", () => {
  it("the same resolution id in two namespaces: get, list and delete each their own", async () => {
    const { red, blue } = pair();
    const id = uid("r");
    await red.resolutions.createResolution({ resolution: resolutionOf("s", { resolutionId: id, agentId: "red" }) });
    await blue.resolutions.createResolution({ resolution: resolutionOf("s", { resolutionId: id, agentId: "blue" }) });
    expect((await red.resolutions.getResolution({ resolutionId: id })).agentId).toBe("red");
    expect((await blue.resolutions.getResolution({ resolutionId: id })).agentId).toBe("blue");
    const listed = async (c: CairnClient, filter: object) => (await c.resolutions.listResolutions(filter)).resolutions.map((r) => r.agentId);
    for (const filter of [{}, { sessionId: "s" }, { requestId: "agent-request" }, { decisions: [Decision.DECISION_ALLOW] }, { includeExpired: true }]) {
      expect(await listed(red, filter)).toEqual(["red"]);
      expect(await listed(blue, filter)).toEqual(["blue"]);
    }
    expect(await listed(red, { agentId: "blue" })).toEqual([]);
    await red.resolutions.deleteResolution({ resolutionId: id });
    expect((await failure(red.resolutions.getResolution({ resolutionId: id }))).code).toBe(status.NOT_FOUND);
    expect((await failure(red.resolutions.deleteResolution({ resolutionId: id }))).code).toBe(status.NOT_FOUND);
    expect((await blue.resolutions.getResolution({ resolutionId: id })).agentId).toBe("blue");
  });

  it("a resolution of one namespace cannot be read or deleted from another", async () => {
    const { red, blue } = pair();
    const { resolutionId } = await red.resolutions.createResolution({ resolution: resolutionOf("s") });
    expect((await failure(blue.resolutions.getResolution({ resolutionId }))).code).toBe(status.NOT_FOUND);
    expect((await failure(blue.resolutions.deleteResolution({ resolutionId }))).code).toBe(status.NOT_FOUND);
    expect((await red.resolutions.getResolution({ resolutionId })).resolutionId).toBe(resolutionId);
  });

  it("a request_id is per namespace", async () => {
    const { red, blue } = pair();
    const request = { requestId: uid("req"), resolution: resolutionOf("s") };
    const first = await red.resolutions.createResolution(request);
    const inBlue = await blue.resolutions.createResolution(request);
    expect(inBlue.resolutionId).not.toBe(first.resolutionId);
    expect(await red.resolutions.createResolution(request)).toEqual(first);
    expect(await blue.resolutions.createResolution(request)).toEqual(inBlue);
    expect((await red.resolutions.listResolutions({})).resolutions).toHaveLength(1);
  });

  it("PurgeExpiredResolutions purges only the caller's namespace", async () => {
    const red = uid("ns");
    const blue = uid("ns");
    await withReaperPaused(async (client) => {
      for (const [ns, n] of [
        [red, 3],
        [blue, 5],
      ] as const) {
        await client.query(
          `INSERT INTO resolutions (namespace, resolution_id, request_id, agent_id, session_id, decision, expire_time)
           SELECT $1, 'purge-' || g, 'r', 'a', 's', 'ALLOW', now() - interval '1 minute' FROM generate_series(1, $2::int) g`,
          [ns, n],
        );
      }
      const left = async (ns: string) =>
        (await client.query("SELECT count(*)::int AS n FROM resolutions WHERE namespace = $1", [ns])).rows[0].n as number;
      expect((await clientIn(red).resolutions.purgeExpiredResolutions({})).deletedCount).toBe(3);
      expect([await left(red), await left(blue)]).toEqual([0, 5]);
      expect((await clientIn(blue).resolutions.purgeExpiredResolutions({})).deletedCount).toBe(5);
      expect(await left(blue)).toBe(0);
    });
  });

  it("the reaper reclaims expired resolutions of every namespace", async () => {
    const { red, blue } = pair();
    const short = { seconds: 0, nanos: 50_000_000 };
    const made = [
      await red.resolutions.createResolution({ resolution: resolutionOf("s"), ttl: short }),
      await blue.resolutions.createResolution({ resolution: resolutionOf("s"), ttl: short }),
    ].map((r) => r.resolutionId);
    await waitFor(
      "the reaper",
      async () => (await h.sql.query("SELECT 1 FROM resolutions WHERE resolution_id = ANY ($1)", [made])).rowCount === 0,
      5_000,
    );
  });
});
