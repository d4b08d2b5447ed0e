// Large appends (more events than batcher.ts groups) to one trace take
// turns here, in the daemon, before they touch the pool. Every append
// locks its traces' head rows (store.ts), so appends to a hot trace run
// one at a time anyway; without this queue each would hold a
// pool connection while it waits on that row lock, and a few hundred
// appends to one trace would take every connection and starve the calls
// that have nothing to do with that trace. Here they wait holding nothing.
//
// Turns are FIFO per trace. A call naming several traces joins every one of
// their queues in the same synchronous step, so all queues share one order
// (the order of arrival) and no two calls can wait for each other: no
// deadlock, whatever traces batches share. Other replicas are not queued
// here; between replicas the head row locks still decide, in trace_id order.
//
// A trace is (namespace, trace_id), so turns are keyed by both (traceTurn):
// the same trace id in two namespaces is two chains and two head rows, and
// appends to one never wait for the other's.
import type { AbortReason } from "../db/errors.js";
import { cancelled, deadlineExceeded } from "../errors.js";

/** The queue key of a trace: its namespace and id (a namespace never contains NUL). */
export function traceTurn(ns: string, traceId: string): string {
  return `${ns}\u0000${traceId}`;
}

export class TraceQueue {
  /** Per trace, a promise that settles when the last queued turn has finished. */
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier call naming any of `traces` (traceTurn keys) has finished. */
  async run<T>(traces: Iterable<string>, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const turns = [...new Set(traces)].map((id) => this.join(id));
    try {
      await untilAborted(Promise.all(turns.map((t) => t.ready)), signal);
      return await fn();
    } finally {
      // A caller that gave up while waiting releases at once: the next in
      // line still waits for whoever was before it, so the order holds.
      for (const t of turns) t.release();
    }
  }

  /** How many traces have calls running or waiting (for tests: none are left behind). */
  get size(): number {
    return this.tails.size;
  }

  private join(traceId: string): { ready: Promise<void>; release: () => void } {
    const ready = this.tails.get(traceId) ?? Promise.resolve();
    let release!: () => void;
    const finished = new Promise<void>((resolve) => (release = resolve));
    const tail = ready.then(() => finished);
    this.tails.set(traceId, tail);
    // Forget the trace once its last turn is over and nobody queued after it.
    void tail.then(() => {
      if (this.tails.get(traceId) === tail) this.tails.delete(traceId);
    });
    return { ready, release };
  }
}

/** `promise`, or the call's cancellation or deadline if that comes first. */
function untilAborted(promise: Promise<unknown>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return promise.then(() => {});
  return new Promise<void>((resolve, reject) => {
    const fail = () => reject((signal.reason as AbortReason | undefined)?.kind === "deadline" ? deadlineExceeded() : cancelled());
    if (signal.aborted) return fail();
    signal.addEventListener("abort", fail, { once: true });
    promise.then(
      () => {
        signal.removeEventListener("abort", fail);
        resolve();
      },
      (error) => {
        signal.removeEventListener("abort", fail);
        reject(error);
      },
    );
  });
}
