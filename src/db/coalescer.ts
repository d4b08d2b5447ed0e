// Coalesces calls that arrive together into one statement. Under load, gRPC
// delivers many calls in one event-loop turn; instead of one pool checkout
// and round trip each, everything submitted in that turn runs as one batch
// (a lone call pays only a setImmediate hop). A batch's statement is
// cancelled when every caller in it has gone (cancelled or past deadline);
// until then statement_timeout bounds it.
//
// Serial coalescers run one batch at a time: what arrives while a batch
// runs waits and makes the next one (group commit). Items then run in
// arrival order across batches, and the batches hold one connection.
import type { AbortReason } from "./errors.js";
import { cancelled, deadlineExceeded } from "../errors.js";

interface Batch {
  waiters: Waiter<unknown, unknown>[];
  controller: AbortController;
}

interface Waiter<I, R> {
  item: I;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
  gone: boolean;
  batch?: Batch;
}

export interface CoalescerOptions<I> {
  keyOf: (item: I) => string;
  /** Reads: equal keys share one slot. Writes: a key appears once per batch. */
  shareEqualKeys: boolean;
  maxBatch?: number;
  /** One batch at a time, the next made of what arrived meanwhile (see above). */
  serial?: boolean;
}

export class Coalescer<I, R> {
  private pending: Waiter<I, R>[] = [];
  private scheduled = false;
  /** A serial coalescer's batch is running. */
  private busy = false;

  constructor(
    /** Runs one batch of distinct items; returns one result per item, in order. */
    private readonly runBatch: (items: I[], signal: AbortSignal) => Promise<R[]>,
    private readonly options: CoalescerOptions<I>,
  ) {}

  submit(item: I, signal?: AbortSignal): Promise<R> {
    if (signal?.aborted) return Promise.reject(cancelled());
    return new Promise<R>((resolve, reject) => {
      const waiter: Waiter<I, R> = { item, resolve, reject, gone: false };
      this.pending.push(waiter);
      signal?.addEventListener("abort", () => this.leave(waiter, signal.reason as AbortReason | undefined), { once: true });
      this.schedule();
    });
  }

  /** A flush after this turn of the event loop (so that calls arriving together make one batch), unless a serial batch runs. */
  private schedule(): void {
    if (this.scheduled || this.busy) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private leave(waiter: Waiter<I, R>, reason: AbortReason | undefined): void {
    waiter.gone = true;
    waiter.reject(reason?.kind === "deadline" ? deadlineExceeded() : cancelled());
    const batch = waiter.batch;
    if (batch && batch.waiters.every((w) => w.gone)) batch.controller.abort({ kind: "cancelled" } satisfies AbortReason);
  }

  private flush(): void {
    this.scheduled = false;
    const waiters = this.pending.filter((w) => !w.gone);
    this.pending = [];
    const batches = this.split(waiters);
    if (!this.options.serial) {
      for (const slots of batches) void this.run(slots);
      return;
    }
    const [first, ...later] = batches;
    if (!first) return;
    // The later batches' callers go back in line, ahead of anyone arriving meanwhile.
    this.pending = later.flat(2);
    this.busy = true;
    void this.run(first).finally(() => {
      this.busy = false;
      if (this.pending.length > 0) this.schedule();
    });
  }

  private split(waiters: Waiter<I, R>[]): Waiter<I, R>[][][] {
    const max = this.options.maxBatch ?? 500;
    const batches: Map<string, Waiter<I, R>[]>[] = [];
    for (const w of waiters) {
      const key = this.options.keyOf(w.item);
      let batch = batches.find((slots) =>
        this.options.shareEqualKeys ? slots.has(key) || slots.size < max : !slots.has(key) && slots.size < max,
      );
      if (!batch) batches.push((batch = new Map()));
      const slot = batch.get(key);
      if (slot) slot.push(w);
      else batch.set(key, [w]);
    }
    return batches.map((slots) => [...slots.values()]);
  }

  private async run(slots: Waiter<I, R>[][]): Promise<void> {
    const batch: Batch = { waiters: slots.flat() as Waiter<unknown, unknown>[], controller: new AbortController() };
    for (const w of batch.waiters) w.batch = batch;
    try {
      const results = await this.runBatch(
        slots.map((slot) => slot[0]!.item),
        batch.controller.signal,
      );
      slots.forEach((slot, i) => slot.forEach((w) => w.resolve(results[i]!)));
    } catch (error) {
      for (const w of batch.waiters) w.reject(error);
    }
  }
}
