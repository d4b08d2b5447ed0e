// Small appends, committed in groups: AppendEvents calls (and small
// IngestEvents batches) queue in a serial coalescer (db/coalescer.ts), and
// one transaction at a time appends everything queued, in arrival order,
// each call keeping its own outcomes (store.ts appendAll). While one group commits, the next gathers. Under
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
import { Coalescer } from "../db/coalescer.js";
import type { CallScope, Database } from "../db/database.js";
import { CairnError } from "../errors.js";
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

/** A call's outcomes, or why it alone failed. */
type Result = AppendOutcome[] | { failed: unknown };

export class AppendBatcher {
  private next = 0;
  private readonly groups = new Coalescer<AppendCall & { id: number }, Result>((calls, signal) => this.commitGroup(calls, signal), {
    keyOf: (call) => String(call.id),
    shareEqualKeys: false,
    maxBatch: MAX_CALLS,
    serial: true,
  });

  constructor(private readonly db: Database) {}

  /** Appends a small call with the others queued now; its outcomes once its group has committed. */
  async append(scope: CallScope, call: AppendCall): Promise<AppendOutcome[]> {
    const result = await this.groups.submit({ ...call, id: this.next++ }, scope.signal);
    if ("failed" in result) throw result.failed;
    return result;
  }

  /**
   * One group, one transaction. A group that failed wrote nothing: unless
   * the cause is the database or the moment (every call gets that error),
   * its calls are tried again one by one, in order, so that a call the
   * database refuses fails alone.
   */
  private async commitGroup(calls: AppendCall[], signal: AbortSignal): Promise<Result[]> {
    try {
      return await this.commit(calls, signal);
    } catch (error) {
      if (calls.length === 1 || signal.aborted || !mayComeFromOneCall(error)) throw error;
      const results: Result[] = [];
      for (const call of calls) results.push(await this.commit([call], signal).then(([outcomes]) => outcomes!, (failed: unknown) => ({ failed })));
      return results;
    }
  }

  private commit(calls: AppendCall[], signal: AbortSignal): Promise<AppendOutcome[][]> {
    return this.db.transaction({ signal }, (tx) => appendAll(tx, calls));
  }
}
