// LeaseJobs' waiter: a wait of many backstop rounds must not pile up abort
// listeners on the call's signal (MaxListenersExceededWarning after 11 s).
import { getEventListeners } from "node:events";
import { expect, it } from "vitest";
import { waiter } from "../../src/jobs/leasing.js";

const quietHub = { listen: () => () => {} };

it("leaves no abort listener behind, however each wait ends", async () => {
  const call = new AbortController();
  const stopping = new AbortController();
  const w = waiter(quietHub, "default", "q", [call.signal, stopping.signal]);
  // Every round ends on its timeout, as a quiet queue's backstop does.
  for (let round = 0; round < 20; round++) await w.wait(1);
  expect(getEventListeners(call.signal, "abort")).toHaveLength(0);
  expect(getEventListeners(stopping.signal, "abort")).toHaveLength(0);

  // Ended by a poke: the same.
  const poked = w.wait(60_000);
  w.poke();
  await poked;
  expect(getEventListeners(call.signal, "abort")).toHaveLength(0);
  w.dispose();
});

it("a wait ends at once when any of its signals aborts", async () => {
  const call = new AbortController();
  const stopping = new AbortController();
  const w = waiter(quietHub, "default", "q", [call.signal, stopping.signal]);
  const waiting = w.wait(60_000);
  stopping.abort();
  await waiting;
  expect(getEventListeners(call.signal, "abort")).toHaveLength(0);
  // Already aborted: returns without waiting.
  await w.wait(60_000);
  w.dispose();
});
