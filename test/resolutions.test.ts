import { Decision } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let n = 0;
const uid = (p: string) => `${p}-${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  h = await startHarness({ reaperIntervalMs: 200 });
});
afterAll(async () => {
  await h?.stop();
});

const resolution = (extra: object = {}) => ({
  requestId: uid("req"),
  agentId: "agent-1",
  sessionId: "session-1",
  decision: Decision.DECISION_ALLOW,
  contextBlocks: [{ kind: "doc", id: "d1" }],
  allowedActions: [{ action: "read" }],
  deniedActions: [],
  policiesApplied: [{ policy: "p1", version: 3 }],
  metadata: { latency_ms: 4 },
  ...extra,
});
const minutes = (m: number) => ({ seconds: m * 60, nanos: 0 });
const rows = async () => (await h.sql.query("SELECT count(*)::int AS n FROM resolutions")).rows[0].n as number;
const REAPER_LOCK = 0x43414952;

/** Runs fn while the reaper cannot run, so row counts hold still. */
async function withReaperPaused<T>(fn: (client: import("pg").PoolClient) => Promise<T>): Promise<T> {
  const client = await h.sql.connect();
  await client.query("SELECT pg_advisory_lock($1)", [REAPER_LOCK]);
  try {
    return await fn(client);
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [REAPER_LOCK]);
    client.release();
  }
}

describe("CreateResolution / GetResolution", () => {
  it("creates with a ttl and reads it back", async () => {
    const created = await h.client.resolutions.createResolution({ resolution: resolution(), ttl: minutes(5) });
    expect(created.resolutionId).toMatch(/^[0-9a-f-]{36}$/);
    const ttl = created.expireTime!.seconds - created.createTime!.seconds;
    expect(ttl).toBeGreaterThanOrEqual(299);
    expect(ttl).toBeLessThanOrEqual(300);
    expect(await h.client.resolutions.getResolution({ resolutionId: created.resolutionId })).toEqual(created);
    expect(created).toMatchObject({ contextBlocks: [{ kind: "doc", id: "d1" }], policiesApplied: [{ policy: "p1", version: 3 }] });
  });

  it("takes an expire_time instead, or none (never expires)", async () => {
    const at = { seconds: Math.floor(Date.now() / 1000) + 3600, nanos: 250_000_000 };
    const a = await h.client.resolutions.createResolution({ resolution: resolution({ expireTime: at }) });
    expect(a.expireTime).toEqual(at);
    const b = await h.client.resolutions.createResolution({ resolution: resolution() });
    expect(b.expireTime).toBeUndefined();
  });

  it("is NOT_FOUND the moment it expires, before any purge", async () => {
    const r = await h.client.resolutions.createResolution({ resolution: resolution({ resolutionId: uid("short") }), ttl: { seconds: 1, nanos: 0 } });
    await h.client.resolutions.getResolution({ resolutionId: r.resolutionId });
    await new Promise((resolve) => setTimeout(resolve, 1_050));
    expect((await failure(h.client.resolutions.getResolution({ resolutionId: r.resolutionId }))).code).toBe(status.NOT_FOUND);
  });

  it("request_id replays the first result; another body is REQUEST_ID_REUSED", async () => {
    const body = { resolution: resolution(), ttl: minutes(1), requestId: uid("idem") };
    const first = await h.client.resolutions.createResolution(body);
    expect(await h.client.resolutions.createResolution(body)).toEqual(first);
    const f = await failure(h.client.resolutions.createResolution({ ...body, ttl: minutes(2) }));
    expect(f).toMatchObject({ code: status.ALREADY_EXISTS, reason: "REQUEST_ID_REUSED" });
  });

  it("the reaper forgets request ids past the 24 h window and keeps the others", async () => {
    const recent = { resolution: resolution(), requestId: uid("recent") };
    const old = { resolution: resolution(), requestId: uid("old") };
    await h.client.resolutions.createResolution(recent);
    await h.client.resolutions.createResolution(old);
    await h.sql.query(`UPDATE request_ids SET create_time = now() - interval '25 hours' WHERE request_id = $1`, [old.requestId]);
    const held = async (requestId: string) => (await h.sql.query("SELECT 1 FROM request_ids WHERE request_id = $1", [requestId])).rowCount === 1;
    await waitFor("the reaper", async () => !(await held(old.requestId)), 5_000);
    expect(await held(recent.requestId)).toBe(true);
  });

  it("ALREADY_EXISTS for a taken id", async () => {
    const id = uid("r");
    await h.client.resolutions.createResolution({ resolution: resolution({ resolutionId: id }) });
    expect((await failure(h.client.resolutions.createResolution({ resolution: resolution({ resolutionId: id }) }))).code).toBe(status.ALREADY_EXISTS);
  });

  it.each([
    [{ resolution: resolution({ agentId: "" }) }, "resolution.agent_id"],
    [{ resolution: resolution({ sessionId: "" }) }, "resolution.session_id"],
    [{ resolution: resolution({ requestId: "" }) }, "resolution.request_id"],
    [{ resolution: resolution({ decision: Decision.DECISION_UNSPECIFIED }) }, "resolution.decision"],
    [{ resolution: resolution(), ttl: { seconds: -5, nanos: 0 } }, "ttl"],
    [{ resolution: resolution(), ttl: { seconds: 0, nanos: 0 } }, "ttl"],
    [{ resolution: resolution({ expireTime: { seconds: 1_000_000, nanos: 0 } }) }, "resolution.expire_time"],
    [{ resolution: resolution({ metadata: { big: "x".repeat(1024 * 1024) } }) }, "resolution.metadata"],
    [{}, "resolution"],
  ])("INVALID_ARGUMENT names the field (%#)", async (request, field) => {
    await withReaperPaused(async () => {
      const before = await rows();
      const f = await failure(h.client.resolutions.createResolution(request));
      expect(f.code).toBe(status.INVALID_ARGUMENT);
      expect(f.fields).toContain(field);
      expect(await rows()).toBe(before);
    });
  });
});

describe("BatchCreateResolutions", () => {
  it("saves all atomically: one bad item or taken id writes nothing", async () => {
    const ok = await h.client.resolutions.batchCreateResolutions({
      requests: [{ resolution: resolution() }, { resolution: resolution(), ttl: minutes(1) }],
    });
    expect(ok.resolutions).toHaveLength(2);
    await withReaperPaused(async () => {
      const before = await rows();
      const bad = await failure(
        h.client.resolutions.batchCreateResolutions({ requests: [{ resolution: resolution() }, { resolution: resolution({ agentId: "" }) }] }),
      );
      expect(bad.fields).toEqual(["requests[1].resolution.agent_id"]);
      const taken = await failure(
        h.client.resolutions.batchCreateResolutions({
          requests: [{ resolution: resolution() }, { resolution: resolution({ resolutionId: ok.resolutions[0]!.resolutionId }) }],
        }),
      );
      expect(taken.code).toBe(status.ALREADY_EXISTS);
      expect(await rows()).toBe(before);
    });
  });
});

describe("ListResolutions", () => {
  const agent = uid("list-agent");
  const made: string[] = [];
  // The reaper (every 200 ms) is held off for these tests: the expired
  // resolution below must still be stored to be listed with include_expired.
  let reaperHeld: import("pg").PoolClient;
  afterAll(async () => {
    await reaperHeld?.query("SELECT pg_advisory_unlock($1)", [REAPER_LOCK]);
    reaperHeld?.release();
  });
  beforeAll(async () => {
    reaperHeld = await h.sql.connect();
    await reaperHeld.query("SELECT pg_advisory_lock($1)", [REAPER_LOCK]);
    const specs = [
      { sessionId: "s-a", decision: Decision.DECISION_ALLOW },
      { sessionId: "s-a", decision: Decision.DECISION_DENY },
      { sessionId: "s-b", decision: Decision.DECISION_PARTIAL, requestId: "the-request" },
      { sessionId: "s-b", decision: Decision.DECISION_DENY },
    ];
    for (const spec of specs) made.push((await h.client.resolutions.createResolution({ resolution: resolution({ agentId: agent, ...spec }) })).resolutionId);
    const expired = await h.client.resolutions.createResolution({ resolution: resolution({ agentId: agent, sessionId: "s-a" }), ttl: { seconds: 0, nanos: 1_000_000 } });
    made.push(expired.resolutionId);
    await new Promise((r) => setTimeout(r, 20));
  });
  const list = async (q: object) =>
    (await h.client.resolutions.listResolutions({ agentId: agent, ...q })).resolutions.map((r) => made.indexOf(r.resolutionId));

  it("lists newest first with every filter; expired only when asked", async () => {
    expect(await list({})).toEqual([3, 2, 1, 0]);
    expect(await list({ includeExpired: true })).toEqual([4, 3, 2, 1, 0]);
    expect(await list({ sessionId: "s-a" })).toEqual([1, 0]);
    expect(await list({ decisions: [Decision.DECISION_DENY] })).toEqual([3, 1]);
    expect(await list({ requestId: "the-request" })).toEqual([2]);
    const all = (await h.client.resolutions.listResolutions({ agentId: agent })).resolutions;
    expect(await list({ createdAfter: all[3]!.createTime, createdBefore: all[0]!.createTime })).toEqual([2, 1]);
  });

  it("pages with tokens bound to the filter", async () => {
    const p1 = await h.client.resolutions.listResolutions({ agentId: agent, pageSize: 3 });
    const p2 = await h.client.resolutions.listResolutions({ agentId: agent, pageSize: 3, pageToken: p1.nextPageToken });
    expect([...p1.resolutions, ...p2.resolutions].map((r) => made.indexOf(r.resolutionId))).toEqual([3, 2, 1, 0]);
    expect(p2.nextPageToken).toBe("");
    expect((await failure(h.client.resolutions.listResolutions({ agentId: "other", pageToken: p1.nextPageToken }))).reason).toBe("INVALID_PAGE_TOKEN");
  });
});

describe("DeleteResolution, purge and the reaper", () => {
  it("deletes; NOT_FOUND after", async () => {
    const r = await h.client.resolutions.createResolution({ resolution: resolution() });
    await h.client.resolutions.deleteResolution({ resolutionId: r.resolutionId });
    expect((await failure(h.client.resolutions.deleteResolution({ resolutionId: r.resolutionId }))).code).toBe(status.NOT_FOUND);
  });

  it("PurgeExpiredResolutions counts exactly what it removed", async () => {
    // The reaper (every 200 ms) is held off so that it cannot race this count.
    await withReaperPaused(async (reaperLock) => {
      await reaperLock.query(
        `INSERT INTO resolutions (namespace, resolution_id, request_id, agent_id, session_id, decision, expire_time)
         SELECT 'default', 'purge-' || g, 'r', 'a', 's', 'ALLOW', now() - interval '1 minute' FROM generate_series(1, 2500) g`,
      );
      // Other tests' short-lived resolutions may have expired too.
      const expired = await reaperLock.query("SELECT count(*)::int AS n FROM resolutions WHERE expire_time <= now()");
      const { deletedCount } = await h.client.resolutions.purgeExpiredResolutions({});
      expect(expired.rows[0].n).toBeGreaterThanOrEqual(2500);
      expect(deletedCount).toBe(expired.rows[0].n);
      expect((await h.client.resolutions.purgeExpiredResolutions({})).deletedCount).toBe(0);
    });
  });

  it("the reaper reclaims expired rows on its own", async () => {
    const r = await h.client.resolutions.createResolution({ resolution: resolution({ resolutionId: uid("reap") }), ttl: { seconds: 0, nanos: 100_000_000 } });
    await waitFor("the reaper", async () => (await h.sql.query("SELECT 1 FROM resolutions WHERE resolution_id = $1", [r.resolutionId])).rowCount === 0, 5_000);
  });

  it("deleting a session deletes its resolutions", async () => {
    const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const r = await h.client.resolutions.createResolution({ resolution: resolution({ sessionId }) });
    await h.client.sessions.deleteSession({ sessionId });
    expect((await failure(h.client.resolutions.getResolution({ resolutionId: r.resolutionId }))).code).toBe(status.NOT_FOUND);
  });
});
