// The per-trace queue of appends: FIFO per trace, no deadlock whatever
// traces calls share, a caller that gives up leaves the order intact.
import { expect, it } from "vitest";
import { TraceQueue } from "../../src/traces/queue.js";

/** A task that records when it starts and finishes only when told to. */
function gated(log: string[], name: string) {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  return {
    run: async () => {
      log.push(`start ${name}`);
      await gate;
      log.push(`end ${name}`);
      return name;
    },
    open: () => open(),
  };
}

const turn = () => new Promise((r) => setImmediate(r));

it("runs calls naming one trace one at a time, in arrival order; other traces do not wait", async () => {
  const queue = new TraceQueue();
  const log: string[] = [];
  const a1 = gated(log, "a1");
  const a2 = gated(log, "a2");
  const b1 = gated(log, "b1");
  const runs = [queue.run(["a"], undefined, a1.run), queue.run(["a"], undefined, a2.run), queue.run(["b"], undefined, b1.run)];
  await turn();
  expect(log).toEqual(["start a1", "start b1"]);
  a1.open();
  await turn();
  expect(log).toEqual(["start a1", "start b1", "end a1", "start a2"]);
  a2.open();
  b1.open();
  expect(await Promise.all(runs)).toEqual(["a1", "a2", "b1"]);
  expect(queue.size).toBe(0);
});

it("calls naming several traces, in any order, never wait for each other in a cycle", async () => {
  const queue = new TraceQueue();
  const traces = ["a", "b", "c"];
  let running = 0;
  let most = 0;
  const calls = Array.from({ length: 30 }, (_, i) =>
    queue.run([traces[i % 3]!, traces[(i + 1 + (i % 2)) % 3]!], undefined, async () => {
      most = Math.max(most, ++running);
      await turn();
      running--;
      return i;
    }),
  );
  expect(await Promise.all(calls)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  // Every call shares a trace with every other (any two of three), so they ran one at a time.
  expect(most).toBe(1);
  expect(queue.size).toBe(0);
});

it("a caller that gives up while waiting is CANCELLED, and the next still waits for the one running", async () => {
  const queue = new TraceQueue();
  const log: string[] = [];
  const first = gated(log, "first");
  const last = gated(log, "last");
  const leaving = new AbortController();
  const running = queue.run(["t"], undefined, first.run);
  const gone = queue.run(["t"], leaving.signal, async () => "never");
  const after = queue.run(["t"], undefined, last.run);
  leaving.abort({ kind: "cancelled" });
  await expect(gone).rejects.toMatchObject({ reason: "CANCELLED" });
  await turn();
  expect(log).toEqual(["start first"]);
  first.open();
  last.open();
  expect(await Promise.all([running, after])).toEqual(["first", "last"]);
  expect(log).toEqual(["start first", "end first", "start last", "end last"]);
  expect(queue.size).toBe(0);
});
