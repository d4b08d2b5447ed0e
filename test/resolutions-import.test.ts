// ImportResolutions: whole resolutions migrated in with their own times
// (even already expired), all or none, admin only.
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CairnClient, Decision, type Resolution, type Timestamp } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { createLogger } from "../src/logger.js";
import { failure, type Harness, startHarness, testConfig } from "./support/harness.js";

let h: Harness;
let n = 0;
const uid = (p: string) => `${p}-${Date.now().toString(36)}-${++n}`;
const BATCH_LIMIT = 10;

beforeAll(async () => {
  // The reaper stays away (an imported, already expired resolution must stay stored to be listed).
  h = await startHarness({ reaperIntervalMs: 3_600_000, limits: { maxBatchItems: BATCH_LIMIT } as never });
});
afterAll(async () => {
  await h?.stop();
});

const at = (iso: string): Timestamp => {
  const ms = Date.parse(iso);
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
};
const resolution = (extra: Partial<Resolution> = {}): Partial<Resolution> => ({
  resolutionId: uid("imp"),
  requestId: uid("req"),
  agentId: "agent-import",
  sessionId: "session-import",
  decision: Decision.DECISION_DENY,
  contextBlocks: [{ kind: "doc" }],
  allowedActions: [],
  deniedActions: [{ action: "write" }],
  policiesApplied: [{ policy: "p", version: 1 }],
  metadata: { source: "legacy" },
  ...extra,
});
const stored = async (ids: string[]) =>
  (await h.sql.query("SELECT count(*)::int AS n FROM resolutions WHERE resolution_id = ANY ($1)", [ids])).rows[0].n as number;

describe("ImportResolutions", () => {
  it("keeps create_time and expire_time as given, even already expired; reads, lists and orders by them", async () => {
    const agentId = uid("agent");
    const given = [
      resolution({ agentId, createTime: at("2024-01-01T10:00:00.123Z") }),
      resolution({ agentId, createTime: at("2024-01-03T10:00:00Z"), expireTime: at("2024-01-04T10:00:00Z") }),
      resolution({ agentId, createTime: at("2024-01-02T10:00:00Z"), expireTime: at("2999-01-01T00:00:00Z"), decision: Decision.DECISION_ALLOW }),
    ];
    const { resolutions } = await h.client.resolutions.importResolutions({ resolutions: given });
    expect(resolutions.map((r) => [r.resolutionId, r.createTime, r.expireTime])).toEqual(
      given.map((g) => [g.resolutionId, g.createTime, g.expireTime]),
    );
    expect(resolutions[0]).toMatchObject({ contextBlocks: [{ kind: "doc" }], deniedActions: [{ action: "write" }], metadata: { source: "legacy" } });

    const [old, expired, live] = resolutions;
    expect(await h.client.resolutions.getResolution({ resolutionId: live!.resolutionId })).toEqual(live);
    expect(await h.client.resolutions.getResolution({ resolutionId: old!.resolutionId })).toEqual(old);
    expect((await failure(h.client.resolutions.getResolution({ resolutionId: expired!.resolutionId }))).code).toBe(status.NOT_FOUND);

    // A resolution created now is the newest; the imported ones follow in their own create_time order.
    const fresh = await h.client.resolutions.createResolution({ resolution: resolution({ agentId, resolutionId: "" }) });
    const ids = async (q: object) => (await h.client.resolutions.listResolutions({ agentId, ...q })).resolutions.map((r) => r.resolutionId);
    expect(await ids({})).toEqual([fresh.resolutionId, live!.resolutionId, old!.resolutionId]);
    expect(await ids({ includeExpired: true })).toEqual([fresh.resolutionId, expired!.resolutionId, live!.resolutionId, old!.resolutionId]);
    expect(await ids({ includeExpired: true, createdBefore: at("2024-01-02T12:00:00Z") })).toEqual([live!.resolutionId, old!.resolutionId]);
  });

  it("without create_time it is now; without an id it gets a UUIDv7 of its create_time", async () => {
    const before = Date.now();
    const { resolutions } = await h.client.resolutions.importResolutions({
      resolutions: [resolution({ createTime: undefined }), resolution({ resolutionId: "", createTime: at("2023-05-06T07:08:09.010Z") })],
    });
    const [now, unnamed] = resolutions;
    const createdMs = now!.createTime!.seconds * 1000 + now!.createTime!.nanos / 1e6;
    expect(createdMs).toBeGreaterThanOrEqual(before - 1000);
    expect(createdMs).toBeLessThanOrEqual(Date.now() + 1000);
    expect(now!.expireTime).toBeUndefined();
    expect(unnamed!.resolutionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const idMs = parseInt(unnamed!.resolutionId.replace(/-/g, "").slice(0, 12), 16);
    expect(new Date(idMs).toISOString()).toBe("2023-05-06T07:08:09.010Z");
  });

  it("is atomic: an id already taken fails the import with ALREADY_EXISTS and writes nothing", async () => {
    const taken = await h.client.resolutions.createResolution({ resolution: resolution() });
    const batch = [resolution({ createTime: at("2022-01-01T00:00:00Z") }), resolution({ resolutionId: taken.resolutionId }), resolution()];
    const f = await failure(h.client.resolutions.importResolutions({ resolutions: batch }));
    expect(f.code).toBe(status.ALREADY_EXISTS);
    expect(f.message).toContain(taken.resolutionId);
    expect(await stored(batch.map((r) => r.resolutionId!).filter((id) => id !== taken.resolutionId))).toBe(0);
    // An expired resolution still holds its id until it is purged.
    const expired = resolution({ createTime: at("2020-01-01T00:00:00Z"), expireTime: at("2020-01-02T00:00:00Z") });
    await h.client.resolutions.importResolutions({ resolutions: [expired] });
    expect((await failure(h.client.resolutions.importResolutions({ resolutions: [resolution({ resolutionId: expired.resolutionId })] }))).code).toBe(
      status.ALREADY_EXISTS,
    );
  });

  it.each([
    [{ resolutions: [] }, "resolutions"],
    [{ resolutions: Array.from({ length: BATCH_LIMIT + 1 }, () => resolution()) }, "resolutions"],
    [{ resolutions: [resolution({ resolutionId: "dup-1" }), resolution({ resolutionId: "dup-1" })] }, "resolutions[1].resolution_id"],
    [{ resolutions: [resolution(), resolution({ agentId: "" })] }, "resolutions[1].agent_id"],
    [{ resolutions: [resolution({ requestId: "" })] }, "resolutions[0].request_id"],
    [{ resolutions: [resolution({ resolutionId: "not ok!" })] }, "resolutions[0].resolution_id"],
    [{ resolutions: [resolution({ decision: Decision.DECISION_UNSPECIFIED })] }, "resolutions[0].decision"],
    [{ resolutions: [resolution({ metadata: { bad: "nul\u0000" } })] }, "resolutions[0].metadata.bad"],
    [{ resolutions: [resolution({ createTime: at("2024-01-02T00:00:00Z"), expireTime: at("2024-01-01T00:00:00Z") })] }, "resolutions[0].expire_time"],
    [{ resolutions: [resolution({ createTime: { seconds: 1, nanos: -1 } })] }, "resolutions[0].create_time"],
  ])("INVALID_ARGUMENT names the field and writes nothing (%#)", async (request, field) => {
    const f = await failure(h.client.resolutions.importResolutions(request));
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.fields).toContain(field);
    expect(await stored(request.resolutions.map((r) => r.resolutionId!))).toBe(0);
  });

  it("imports into the call's namespace only", async () => {
    const other = new CairnClient(h.daemon.address, { namespace: uid("ns").toLowerCase() });
    try {
      const r = resolution();
      await other.resolutions.importResolutions({ resolutions: [r] });
      await h.client.resolutions.importResolutions({ resolutions: [r] });
      expect(await stored([r.resolutionId!])).toBe(2);
      expect((await other.resolutions.getResolution({ resolutionId: r.resolutionId! })).resolutionId).toBe(r.resolutionId);
    } finally {
      other.close();
    }
  });
});

describe("ImportResolutions needs the admin role", () => {
  const TOKENS = { writer: "import-writer-token", admin: "import-admin-token" };
  const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
  let replica: Daemon;
  const clients: CairnClient[] = [];
  beforeAll(async () => {
    const authFile = join(mkdtempSync(join(tmpdir(), "cairn-import-")), "auth.yaml");
    writeFileSync(
      authFile,
      `principals:
  - name: writer-svc
    token_sha256: ${sha256(TOKENS.writer)}
    namespaces: {default: writer}
  - name: admin-svc
    token_sha256: ${sha256(TOKENS.admin)}
    namespaces: {default: admin}
`,
    );
    replica = await startDaemon(testConfig(h.databaseUrl, { authFile, reaperIntervalMs: 3_600_000 }), createLogger("silent"));
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await replica?.stop();
  });
  const client = (token: string) => {
    const c = new CairnClient(replica.address, { token });
    clients.push(c);
    return c;
  };

  it("a writer is PERMISSION_DENIED; an admin imports", async () => {
    const r = resolution();
    expect(await failure(client(TOKENS.writer).resolutions.importResolutions({ resolutions: [r] }))).toMatchObject({
      code: status.PERMISSION_DENIED,
      metadata: { required_role: "admin" },
    });
    expect(await stored([r.resolutionId!])).toBe(0);
    const { resolutions } = await client(TOKENS.admin).resolutions.importResolutions({ resolutions: [r] });
    expect(resolutions[0]!.resolutionId).toBe(r.resolutionId);
  });
});
