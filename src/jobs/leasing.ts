// Leasing that waits for work. A waiter wakes on a NOTIFY for its queue
// (from any replica; the payload is `namespace:queue`, see wakeKey), on a
// lease of this replica finishing, or after a polling backstop (a missed
// NOTIFY, a scheduled job coming due). LeaseJobs waits up to its `wait`;
// StreamJobs holds at most max_in_flight leases, refills as they finish,
// and gives them back when its client goes away.
// Nothing here holds a pool connection while waiting.
//
// A queue under flow control leases through flow-lease.ts; which path a
// queue takes is remembered per replica (FlowControl), only as a hint: the
// SQL of each path checks for itself. A waiter held back by a limit wakes
// when a job of the queue finishes (the finishing statement's NOTIFY, from
// any replica or Commit, for queues whose config limits RUNNING jobs; see
// store.ts wakeIfCapped), when a rate-limit
// token comes back, or, when the groups with room were held by other
// leases, a moment later.
import { EventEmitter } from "node:events";
import type { Database, Queryable } from "../db/database.js";
import { CHANNELS, type NotifyHub } from "../db/notify-hub.js";
import { leaseControlled } from "./flow-lease.js";
import { isQueueControlled } from "./queue-config.js";
import { heldLeases, type Lease, lease, release, wakeKey } from "./store.js";

/** Re-check for work this often even without a notification (missed NOTIFY, due scheduled jobs). */
const BACKSTOP_MS = 1_000;

export interface LeaseRequest {
  /** The caller's namespace: only its queue is leased. */
  namespace: string;
  queue: string;
  workerId: string;
  leaseMs: number;
}

/** What leasing needs of the service: the pool, the LISTEN hub, this replica's finished leases, its flow-control hints. */
export interface LeasingDeps {
  db: Database;
  hub: NotifyHub;
  finished: FinishedLeases;
  flow: FlowControl;
}

/** How many queues' hints a replica keeps; past it they are forgotten. */
const MAX_HINTS = 10_000;

/**
 * Which queues this replica has seen under flow control (by wakeKey). A
 * wrong hint costs a statement, never a limit: the fast path leases
 * nothing from a controlled queue, and the controlled path hands an
 * uncontrolled one back.
 */
export class FlowControl {
  private readonly controlled = new Set<string>();

  /** Whether the queue's last lease found it controlled (as far as this replica knows). */
  isControlled(namespace: string, queue: string): boolean {
    return this.controlled.has(wakeKey(namespace, queue));
  }

  remember(namespace: string, queue: string, controlled: boolean): void {
    const key = wakeKey(namespace, queue);
    if (!controlled) this.controlled.delete(key);
    else {
      if (this.controlled.size >= MAX_HINTS && !this.controlled.has(key)) this.controlled.clear();
      this.controlled.add(key);
    }
  }
}

/** One lease attempt: leases, and when to look again though nothing is announced (see ControlledLease). */
interface Attempt {
  leases: Lease[];
  retryInMs: number | null;
}

/**
 * Up to `max` leases by the queue's path. The fast path leasing nothing may
 * mean the queue is controlled: then it is asked, and the controlled path
 * taken.
 */
async function leaseOnce(flow: FlowControl, q: Queryable, r: LeaseRequest, max: number): Promise<Attempt> {
  const { namespace, queue, workerId, leaseMs } = r;
  if (!flow.isControlled(namespace, queue)) {
    const leases = await lease(q, namespace, queue, workerId, max, leaseMs);
    if (leases.length > 0 || !(await isQueueControlled(q, namespace, queue))) return { leases, retryInMs: null };
  }
  const controlled = await leaseControlled(q, namespace, queue, workerId, max, leaseMs);
  if (controlled) {
    flow.remember(namespace, queue, true);
    return controlled;
  }
  flow.remember(namespace, queue, false);
  return { leases: await lease(q, namespace, queue, workerId, max, leaseMs), retryInMs: null };
}

/** How long to wait before looking again: the backstop, or sooner when the attempt says so. */
const nextLook = (attempt: Attempt, leftMs = BACKSTOP_MS) => Math.min(leftMs, BACKSTOP_MS, attempt.retryInMs ?? BACKSTOP_MS);

/**
 * Local news of finished leases (completed, failed, cancelled), so a
 * StreamJobs on this replica refills at once. Keyed by namespace and job
 * id: the same job id in another namespace is another job.
 */
export class FinishedLeases {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  announce(namespace: string, jobIds: string[]): void {
    for (const id of jobIds) this.emitter.emit(finishedKey(namespace, id));
  }

  watch(namespace: string, jobId: string, onFinished: () => void): void {
    this.emitter.once(finishedKey(namespace, jobId), onFinished);
  }

  unwatch(namespace: string, jobId: string, onFinished: () => void): void {
    this.emitter.removeListener(finishedKey(namespace, jobId), onFinished);
  }
}

const finishedKey = (namespace: string, jobId: string) => `${namespace}\u0000${jobId}`;

/**
 * Resolves `wait` on a notification for `queue` of `namespace` (its
 * wakeKey; the same queue name in another namespace does not wake it), a
 * poke, a timeout or an abort of any of `signals`. It listens from creation
 * on, so a notification that arrives while the caller is reading is not
 * lost: the next wait returns at once. Every way a wait ends removes its abort listeners, so a
 * long wait of many rounds leaves none behind.
 */
export function waiter(hub: Pick<NotifyHub, "listen">, namespace: string, queue: string, signals: AbortSignal[]) {
  const key = wakeKey(namespace, queue);
  let notified = false;
  let wake: () => void = () => {};
  const remove = hub.listen(CHANNELS.jobs, (payload) => {
    // No payload: the hub reconnected, and anything may have happened.
    if (payload === undefined || payload === key) {
      notified = true;
      wake();
    }
  });
  return {
    async wait(timeoutMs: number): Promise<void> {
      if (notified || signals.some((s) => s.aborted)) {
        notified = false;
        return;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          for (const s of signals) s.removeEventListener("abort", done);
          wake = () => {};
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        wake = done;
        for (const s of signals) s.addEventListener("abort", done, { once: true });
      });
      notified = false;
    },
    /** Wakes the waiter from this process (a local lease finished). */
    poke: () => {
      notified = true;
      wake();
    },
    dispose: remove,
  };
}

/**
 * LeaseJobs: up to `max` leases, waiting up to `waitMs` for the first. When
 * the replica begins to shut down, a wait ends at once with no leases, so
 * it does not hold shutdown for the grace period.
 */
export async function leaseWithWait(
  deps: Pick<LeasingDeps, "db" | "hub" | "flow"> & { stopping: AbortSignal },
  ctx: { signal: AbortSignal },
  r: LeaseRequest,
  max: number,
  waitMs: number,
): Promise<Lease[]> {
  const until = Date.now() + waitMs;
  const q = deps.db.on(ctx);
  const { stopping } = deps;
  const w = waiter(deps.hub, r.namespace, r.queue, [ctx.signal, stopping]);
  try {
    for (;;) {
      const attempt = await leaseOnce(deps.flow, q, r, max);
      const { leases } = attempt;
      if (leases.length > 0 || Date.now() >= until || ctx.signal.aborted || stopping.aborted) return leases;
      await w.wait(nextLook(attempt, until - Date.now()));
      if (stopping.aborted) return [];
    }
  } finally {
    w.dispose();
  }
}

/**
 * StreamJobs: sends leases while fewer than `maxInFlight` are held, until
 * the call ends; then gives back the leases still held. `send` resolves
 * once the client can take more (backpressure).
 */
export async function streamLeases(
  deps: LeasingDeps,
  ctx: { signal: AbortSignal },
  r: LeaseRequest,
  maxInFlight: number,
  send: (lease: Lease) => Promise<void>,
): Promise<void> {
  const { db, hub, finished, flow } = deps;
  const q = db.on(ctx);
  const held = new Map<string, string>();
  const w = waiter(hub, r.namespace, r.queue, [ctx.signal]);
  const onFinished = () => w.poke();
  const heldList = () => [...held].map(([jobId, token]) => ({ jobId, token }));
  try {
    while (!ctx.signal.aborted) {
      if (held.size > 0) {
        // Finished elsewhere (another replica, an expiry): make room.
        const still = await heldLeases(q, r.namespace, heldList());
        for (const jobId of [...held.keys()]) {
          if (!still.has(jobId)) {
            held.delete(jobId);
            finished.unwatch(r.namespace, jobId, onFinished);
          }
        }
      }
      const room = maxInFlight - held.size;
      const attempt = room > 0 ? await leaseOnce(flow, q, r, room) : { leases: [], retryInMs: null };
      const { leases } = attempt;
      // Held before any is written: if the client leaves mid-batch, the
      // whole batch is given back, not only the leases it received.
      for (const l of leases) {
        held.set(l.job.jobId, l.leaseToken);
        finished.watch(r.namespace, l.job.jobId, onFinished);
      }
      for (const l of leases) await send(l);
      if (room > 0 && leases.length === room) continue;
      await w.wait(nextLook(attempt));
    }
  } finally {
    w.dispose();
    for (const jobId of held.keys()) finished.unwatch(r.namespace, jobId, onFinished);
    // The call is over (client gone, or an error): its unfinished leases go
    // back to the queue, on a scope of their own since the call's may have fired.
    await release(db.on({}), r.namespace, heldList()).catch(() => {});
  }
}
