// Small appends, committed in groups: AppendEvents calls (and small
// IngestEvents batches) queue here, and one transaction at a time appends
// everything queued, in arrival order, each call keeping its own outcomes
// (store.ts appendAll). While one group commits, the next gathers. Under
// many small commits (agents appending a few events per step) this keeps
// append latency, and so subscriber lag, from growing with the commit
// rate: one transaction per call paid four round trips and a WAL flush
// each, and calls to a shared trace took turns, one commit each.
//
// A group that fails wrote nothing; unless the database is out of reach
// or slow, its calls are tried again one by one, so that a call the
// database refuses fails alone.
//
// Order and fairness: calls are appended in the order they arrived, so two
// calls to one trace chain in that order, in one group or consecutive
// ones. Groups hold one pool connection, so a hot trace cannot take the
// pool. Large calls do not queue here: each already amortizes its
// transaction, and several in parallel keep more of PostgreSQL busy; they
// take their traces' turns in queue.ts, and meet groups only at the head
// row locks, in (namespace, trace_id) order on both sides.
import type { AbortReason } from "../db/errors.js";
import type { CallScope, Database } from "../db/database.js";
import { CairnError, cancelled, deadlineExceeded } from "../errors.js";
import { type AppendCall, type AppendOutcome, appendAll } from "./store.js";

/** A call with more events than this is not grouped (see above). */
export const SMALL_CALL_EVENTS = 64;
/** At most this many calls share a transaction (with SMALL_CALL_EVENTS, at most 4,096 events). */
const MAX_CALLS = 64;

/**
 * Whether a group's failure may come from one call's data (worth trying
 * each call alone) rather than from the database or the moment (an outage,
 * a timeout, overload), which trying each call alone would only repeat.
 */
function mayComeFromOneCall(error: unknown): boolean {
  return !(error instanceof CairnError) || !["unavailable", "deadline_exceeded", "cancelled", "resource_exhausted"].includes(error.kind);
}

interface Waiter {
  call: AppendCall;
  resolve: (outcomes: AppendOutcome[]) => void;
  reject: (error: unknown) => void;
  /** The caller went away (cancelled or past its deadline) and has been answered so. */
  gone: boolean;
  /** The group's controller, once the call is in one. */
  group?: AbortController;
  members?: Waiter[];
}

export class AppendBatcher {
  private queued: Waiter[] = [];
  private running = false;

  constructor(private readonly db: Database) {}

  /** Appends a small call with the others queued now; its outcomes once its group has committed. */
  append(scope: CallScope, call: AppendCall): Promise<AppendOutcome[]> {
    const { signal } = scope;
    if (signal?.aborted) return Promise.reject(cancelled());
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { call, resolve, reject, gone: false };
      this.queued.push(waiter);
      signal?.addEventListener("abort", () => this.leave(waiter, signal.reason as AbortReason | undefined), { once: true });
      this.start();
    });
  }

  /**
   * A caller left: answered at once. Still queued, its call is dropped; in
   * a group, it may yet commit (as any call cancelled in flight), and the
   * group's statement is cancelled only when every member has left.
   */
  private leave(waiter: Waiter, reason: AbortReason | undefined): void {
    if (waiter.gone) return;
    waiter.gone = true;
    waiter.reject(reason?.kind === "deadline" ? deadlineExceeded() : cancelled());
    if (!waiter.group) this.queued = this.queued.filter((w) => w !== waiter);
    else if (waiter.members!.every((w) => w.gone)) waiter.group.abort({ kind: "cancelled" } satisfies AbortReason);
  }

  private start(): void {
    if (this.running) return;
    this.running = true;
    // After this turn of the event loop, so that calls arriving together make one group.
    setImmediate(() => void this.commitGroups());
  }

  private async commitGroups(): Promise<void> {
    while (this.queued.length > 0) {
      const members = this.queued.splice(0, MAX_CALLS);
      const group = new AbortController();
      for (const w of members) Object.assign(w, { group, members });
      try {
        const outcomes = await this.commit(members.map((w) => w.call), group.signal);
        members.forEach((w, i) => w.gone || w.resolve(outcomes[i]!));
      } catch (error) {
        if (members.length === 1 || group.signal.aborted || !mayComeFromOneCall(error)) for (const w of members) w.gone || w.reject(error);
        else await this.commitEachAlone(members, group.signal);
      }
    }
    this.running = false;
  }

  private commit(calls: AppendCall[], signal: AbortSignal): Promise<AppendOutcome[][]> {
    return this.db.transaction({ signal }, (tx) => appendAll(tx, calls));
  }

  /**
   * A group that failed wrote nothing (one transaction): its calls are
   * tried again one by one, in order, so that a call the database refuses
   * fails alone rather than taking the others with it.
   */
  private async commitEachAlone(members: Waiter[], signal: AbortSignal): Promise<void> {
    for (const w of members) {
      if (w.gone) continue;
      try {
        w.resolve((await this.commit([w.call], signal))[0]!);
      } catch (error) {
        w.reject(error);
      }
    }
  }
}
