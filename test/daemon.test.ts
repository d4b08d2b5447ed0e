// The daemon's cross-cutting behaviour: health, error details, UNIMPLEMENTED,
// database outages, deadlines and cancellation bounding SQL.
import { errorDetails } from "@cairn/client";
import {
  HealthCheckResponse_ServingStatus as Serving,
  HealthClient,
} from "@cairn/client/gen/grpc/health/v1/health";
import { credentials, status, type ServiceError } from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CairnClient } from "@cairn/client";
import { startDaemon } from "../src/daemon.js";
import { createLogger } from "../src/logger.js";
import { createTestDatabase, databaseBehindProxy, failure, type Harness, startHarness, testConfig } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

function healthOf(address: string) {
  const client = new HealthClient(address, credentials.createInsecure());
  return {
    check: (service: string) =>
      new Promise<Serving | "NOT_FOUND" | "UNAVAILABLE">((resolve, reject) =>
        client.check({ service }, (error, response) => {
          if (error?.code === status.NOT_FOUND) resolve("NOT_FOUND");
          else if (error?.code === status.UNAVAILABLE) resolve("UNAVAILABLE");
          else if (error) reject(error);
          else resolve(response.status);
        }),
      ),
    close: () => client.close(),
  };
}

describe("with a healthy database", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("reports SERVING overall and for SessionService; unknown services are NOT_FOUND", async () => {
    const health = healthOf(h.daemon.address);
    await waitFor("SERVING", async () => (await health.check("")) === Serving.SERVING);
    expect(await health.check("cairn.v1.SessionService")).toBe(Serving.SERVING);
    expect(await health.check("no.such.Service")).toBe("NOT_FOUND");
    health.close();
  });

  it("every error carries google.rpc.Status details with ErrorInfo in the trailer", async () => {
    try {
      await h.client.sessions.getSession({ sessionId: "" });
      expect.unreachable();
    } catch (error) {
      const e = error as ServiceError;
      expect(e.metadata.get("grpc-status-details-bin")).toHaveLength(1);
      const details = errorDetails(e);
      expect(details.errorInfo).toMatchObject({ domain: "cairn.v1", reason: "INVALID_ARGUMENT" });
      expect(details.badRequest?.fieldViolations).toEqual([{ field: "session_id", description: "is required", reason: "", localizedMessage: undefined }]);
    }
  });

  /**
   * Statements of this test's database now waiting on a lock: the daemon's
   * UpdateSession (matched by waiting, not by its text, which
   * pg_stat_activity cuts at track_activity_query_size).
   */
  async function blockedUpdates(sql: pg.Pool): Promise<number> {
    const result = await sql.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND state = 'active' AND wait_event_type = 'Lock'
          AND pid <> pg_backend_pid()`,
    );
    return result.rows[0].n;
  }

  it("a passed deadline cancels the call's SQL (DEADLINE_EXCEEDED, no query left running)", async () => {
    const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "deadline" } });
    const locker = await h.sql.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT 1 FROM sessions WHERE session_id = $1 FOR UPDATE", [sessionId]);
      const started = Date.now();
      const call = failure(
        h.client.sessions.updateSession({ session: { sessionId, state: { x: 1 } }, updateMask: ["state"] }, { deadline: 1_500 }),
      );
      await waitFor("the UPDATE to block", async () => (await blockedUpdates(h.sql)) === 1, 1_400);
      expect((await call).code).toBe(status.DEADLINE_EXCEEDED);
      expect(Date.now() - started).toBeLessThan(5_000);
      // Without the cancel the UPDATE would wait on the lock for statement_timeout (30 s).
      await waitFor("the UPDATE to be cancelled", async () => (await blockedUpdates(h.sql)) === 0, 3_000);
    } finally {
      await locker.query("ROLLBACK");
      locker.release();
    }
    expect((await h.client.sessions.getSession({ sessionId })).version).toBe(1);
  });

  it("a cancelled call cancels its SQL", async () => {
    const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "cancel" } });
    const locker = await h.sql.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT 1 FROM sessions WHERE session_id = $1 FOR UPDATE", [sessionId]);
      const controller = new AbortController();
      const call = failure(
        h.client.sessions.updateSession({ session: { sessionId, state: { x: 1 } }, updateMask: ["state"] }, { signal: controller.signal }),
      );
      await waitFor("the UPDATE to block", async () => (await blockedUpdates(h.sql)) === 1, 3_000);
      controller.abort();
      expect((await call).code).toBe(status.CANCELLED);
      await waitFor("the UPDATE to be cancelled", async () => (await blockedUpdates(h.sql)) === 0, 3_000);
    } finally {
      await locker.query("ROLLBACK");
      locker.release();
    }
  });
});

describe("through a database outage", () => {
  it("answers UNAVAILABLE and NOT_SERVING while the database is unreachable, and recovers on its own", async () => {
    const { database, proxy, url: viaProxy } = await databaseBehindProxy();
    const config = testConfig(viaProxy);
    const daemon = await startDaemon(config, createLogger("silent"));
    const client = new CairnClient(daemon.address);
    const health = healthOf(daemon.address);
    try {
      const { sessionId } = await client.sessions.createSession({ session: { agentId: "outage" } });
      await waitFor("SERVING", async () => (await health.check("")) === Serving.SERVING);

      await proxy.cut();
      const f = await failure(client.sessions.getSession({ sessionId }));
      expect(f).toMatchObject({ code: status.UNAVAILABLE, reason: "DATABASE_UNAVAILABLE" });
      const w = await failure(client.sessions.createSession({ session: { agentId: "outage" } }));
      expect(w.code).toBe(status.UNAVAILABLE);
      await waitFor("NOT_SERVING", async () => (await health.check("")) === Serving.NOT_SERVING);
      expect(await health.check("cairn.v1.SessionService")).toBe(Serving.NOT_SERVING);

      await proxy.restore();
      await waitFor("SERVING again", async () => (await health.check("")) === Serving.SERVING);
      await waitFor("calls to succeed again", async () => {
        try {
          return (await client.sessions.getSession({ sessionId })).sessionId === sessionId;
        } catch {
          return false;
        }
      });
    } finally {
      health.close();
      client.close();
      await daemon.stop();
      await proxy.cut();
      await database.drop();
    }
  });
});

describe("shutdown", () => {
  it("ends live streams with UNAVAILABLE and finishes promptly", async () => {
    const database = await createTestDatabase();
    const daemon = await startDaemon(testConfig(database.url), createLogger("silent"));
    const client = new CairnClient(daemon.address);
    try {
      const events: { code?: number }[] = [];
      const sub = client.traces.subscribeEvents({ fromNow: true });
      sub.on("data", () => {});
      const ended = new Promise<void>((resolve) =>
        sub.on("error", (e: { code?: number }) => {
          events.push(e);
          resolve();
        }),
      );
      const watch = client.keyValue.watch({ prefix: "x" });
      watch.on("data", () => {});
      watch.on("error", () => {});
      await new Promise((r) => setTimeout(r, 300));
      const started = Date.now();
      await daemon.stop();
      await ended;
      expect(events[0]!.code).toBe(status.UNAVAILABLE);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      client.close();
      await database.drop();
    }
  });
});
