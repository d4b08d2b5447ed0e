import { status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ dbPoolMax: 20 });
});
afterAll(async () => {
  await h?.stop();
});

it("20 clients doing read-modify-write with expected_version end at the exact total", async () => {
  const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "race", state: { counter: 0 } } });
  const CLIENTS = 20;
  const INCREMENTS = 10;
  let conflicts = 0;

  async function increment(): Promise<void> {
    for (;;) {
      const current = await h.client.sessions.getSession({ sessionId });
      try {
        await h.client.sessions.updateSession({
          session: { sessionId, state: { counter: (current.state!.counter as number) + 1 } },
          updateMask: ["state"],
          expectedVersion: current.version,
        });
        return;
      } catch (error) {
        if ((error as ServiceError).code !== status.ABORTED) throw error;
        conflicts++;
      }
    }
  }

  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      for (let i = 0; i < INCREMENTS; i++) await increment();
    }),
  );
  const final = await h.client.sessions.getSession({ sessionId });
  expect(final.state).toEqual({ counter: CLIENTS * INCREMENTS });
  expect(final.version).toBe(1 + CLIENTS * INCREMENTS);
  // The race really happened: some writes lost and retried.
  expect(conflicts).toBeGreaterThan(0);
});

it.each(["create_time", "create_time desc"])(
  "pagination (%s) under concurrent inserts returns every earlier session exactly once",
  async (orderBy) => {
    const agentId = `page-race-${orderBy.replace(" ", "-")}`;
    const { sessions } = await h.client.sessions.batchCreateSessions({
      requests: Array.from({ length: 120 }, () => ({ session: { agentId } })),
    });
    const existing = new Set(sessions.map((s) => s.sessionId));

    let inserting = true;
    const inserter = (async () => {
      let n = 0;
      while (inserting && n < 400) {
        await h.client.sessions.createSession({ session: { agentId } });
        n++;
      }
      return n;
    })();

    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await h.client.sessions.listSessions({ filter: { agentId }, orderBy, pageSize: 7, pageToken });
      seen.push(...page.sessions.map((s) => s.sessionId));
      pageToken = page.nextPageToken;
    } while (pageToken);
    inserting = false;
    const inserted = await inserter;

    expect(inserted).toBeGreaterThan(0);
    expect(new Set(seen).size).toBe(seen.length); // nothing twice
    for (const id of existing) expect(seen).toContain(id); // nothing earlier skipped
  },
);

it("a burst of updates to many sessions, some with stale versions, succeeds or conflicts one by one", async () => {
  const { sessions } = await h.client.sessions.batchCreateSessions({
    requests: Array.from({ length: 60 }, (_, i) => ({ session: { agentId: "burst", state: { i } } })),
  });
  const outcomes = await Promise.allSettled(
    sessions.map((s, i) =>
      h.client.sessions.updateSession({
        session: { sessionId: s.sessionId, state: { i, updated: true } },
        updateMask: ["state"],
        expectedVersion: i % 3 === 0 ? 5 : 1,
      }),
    ),
  );
  outcomes.forEach((outcome, i) => {
    if (i % 3 === 0) {
      expect(outcome.status).toBe("rejected");
      expect(((outcome as PromiseRejectedResult).reason as ServiceError).code).toBe(status.ABORTED);
    } else {
      expect(outcome.status).toBe("fulfilled");
      expect((outcome as PromiseFulfilledResult<{ state: unknown; version: number }>).value).toMatchObject({
        state: { i, updated: true },
        version: 2,
      });
    }
  });
  const after = await h.client.sessions.batchGetSessions({ sessionIds: sessions.map((s) => s.sessionId) });
  after.sessions.forEach((s, i) => expect(s.version).toBe(i % 3 === 0 ? 1 : 2));
});
