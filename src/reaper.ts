// Background loops that reclaim or repair: TTL purges, change-log
// compaction, job retention, request ids past their window (one Reaper), and
// the rescue of expired job leases (another, on its own lock and interval).
// Each runs in every replica, but a round takes a PostgreSQL advisory lock
// first, so one replica does the work at a time. Reads never depend on the
// purges: expired rows are invisible the moment they expire.
import type pg from "pg";
import type { Logger } from "./logger.js";

/** Arbitrary constants naming Cairn's background loops among advisory locks. */
export const LOCKS = {
  reaper: 0x43414952, // "CAIR"
  leaseRescue: 0x43414953,
  schedules: 0x43414954,
} as const;

/** A loop the daemon starts after the server listens and stops before the pool closes. */
export interface BackgroundLoop {
  start(): void;
  stop(): Promise<void>;
  /** Told of every task's removals (cairn_reaper_deleted_total); the daemon sets it on every loop, and loops that remove no rows never call it. */
  onReaped?: ((task: string, removed: number) => void) | undefined;
}

export interface ReaperTask {
  name: string;
  /** Does one bounded round of work; returns how many rows it removed. */
  run(): Promise<number>;
}

export class Reaper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Told of every task's removals (cairn_reaper_deleted_total); set by the daemon. */
  onReaped: ((task: string, removed: number) => void) | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly tasks: ReaperTask[],
    private readonly intervalMs: number,
    private readonly log: Logger,
    private readonly lock: number = LOCKS.reaper,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.round(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One round, unless another replica (or this one) is in the middle of one. */
  round(): Promise<void> {
    this.running ??= this.lockedRound().finally(() => (this.running = undefined));
    return this.running;
  }

  private async lockedRound(): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch {
      return; // the database is down; the health monitor reports it
    }
    let locked = false;
    try {
      locked = (await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [this.lock])).rows[0]!.ok;
      if (!locked) return;
      for (const task of this.tasks) {
        try {
          const removed = await task.run();
          if (removed > 0) {
            this.log.info({ task: task.name, removed }, "reaped");
            this.onReaped?.(task.name, removed);
          }
        } catch (error) {
          this.log.warn({ task: task.name, err: error }, "reaper task failed; retrying next round");
        }
      }
    } catch (error) {
      this.log.warn({ err: error }, "reaper round failed");
    } finally {
      if (locked) await client.query("SELECT pg_advisory_unlock($1)", [this.lock]).catch(() => {});
      client.release();
    }
  }
}
