// Shutdown does not wait for LeaseJobs' waits: they end at once with no
// leases, so a replica with idle workers stops without using up its grace
// period. The grace period (60 s) and the wait (30 s) are both longer than
// this test's timeout: a wait that held shutdown would fail it.
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ shutdownGraceMs: 60_000 });
});
afterAll(async () => {
  await h?.stop();
});

it("a waiting LeaseJobs ends with no leases when the daemon stops, and the stop does not wait for it", { timeout: 20_000 }, async () => {
  const waiting = h.client.jobs.leaseJobs({ queue: "idle-queue", workerId: "w", maxJobs: 1, wait: { seconds: 30, nanos: 0 } });
  // Let the call reach its wait (the outcome is the same if it has not yet).
  await new Promise((r) => setTimeout(r, 300));
  const stopped = h.daemon.stop();
  expect(await waiting).toEqual({ leases: [] });
  await stopped;
});
