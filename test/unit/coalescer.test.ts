import { expect, it } from "vitest";
import { Coalescer } from "../../src/db/coalescer.js";
import { CairnError } from "../../src/errors.js";

function recorder() {
  const batches: string[][] = [];
  const signals: AbortSignal[] = [];
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const run = async (items: string[], signal: AbortSignal) => {
    batches.push(items);
    signals.push(signal);
    await gate;
    return items.map((i) => i.toUpperCase());
  };
  return { batches, signals, run, release: () => release() };
}

it("runs everything submitted in one turn as one batch; equal read keys share a slot", async () => {
  const r = recorder();
  const reads = new Coalescer(r.run, { keyOf: (k: string) => k, shareEqualKeys: true });
  const results = Promise.all(["a", "b", "a", "c"].map((k) => reads.submit(k)));
  r.release();
  expect(await results).toEqual(["A", "B", "A", "C"]);
  expect(r.batches).toEqual([["a", "b", "c"]]);
});

it("never puts one key twice in a write batch, and caps batch size", async () => {
  const r = recorder();
  const writes = new Coalescer(r.run, { keyOf: (k: string) => k, shareEqualKeys: false, maxBatch: 2 });
  const results = Promise.all(["a", "a", "b", "c", "a"].map((k) => writes.submit(k)));
  r.release();
  expect(await results).toEqual(["A", "A", "B", "C", "A"]);
  expect(r.batches).toEqual([["a", "b"], ["a", "c"], ["a"]]);
});

it("a batch's signal aborts only once every caller in it has gone", async () => {
  const r = recorder();
  const writes = new Coalescer(r.run, { keyOf: (k: string) => k, shareEqualKeys: false });
  const one = new AbortController();
  const two = new AbortController();
  const first = writes.submit("a", one.signal);
  const second = writes.submit("b", two.signal);
  await new Promise((resolve) => setImmediate(resolve));
  expect(r.signals).toHaveLength(1);
  one.abort({ kind: "cancelled" });
  await expect(first).rejects.toBeInstanceOf(CairnError);
  expect(r.signals[0]!.aborted).toBe(false);
  two.abort({ kind: "deadline" });
  await expect(second).rejects.toMatchObject({ kind: "deadline_exceeded" });
  expect(r.signals[0]!.aborted).toBe(true);
  r.release();
});

it("a failed batch fails each of its callers", async () => {
  const failing = new Coalescer<string, string>(async () => Promise.reject(new Error("boom")), {
    keyOf: (k) => k,
    shareEqualKeys: true,
  });
  const results = await Promise.allSettled([failing.submit("x"), failing.submit("y")]);
  expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
});

it("a serial coalescer runs one batch at a time; what arrives meanwhile makes the next, in order", async () => {
  const r = recorder();
  const serial = new Coalescer(r.run, { keyOf: (k: string) => k, shareEqualKeys: false, maxBatch: 2, serial: true });
  const first = Promise.all(["a", "b", "c"].map((k) => serial.submit(k)));
  await new Promise((resolve) => setImmediate(resolve));
  const later = Promise.all(["d", "e"].map((k) => serial.submit(k)));
  await new Promise((resolve) => setTimeout(resolve, 20));
  // Only the first batch has started: "c" (over the cap) and the later arrivals wait for it.
  expect(r.batches).toEqual([["a", "b"]]);
  r.release();
  expect(await first).toEqual(["A", "B", "C"]);
  expect(await later).toEqual(["D", "E"]);
  expect(r.batches).toEqual([["a", "b"], ["c", "d"], ["e"]]);
});
