// The loop that fires schedules, in every replica. Between rounds it sleeps
// until the earliest next_fire_time of any schedule (asked of the database,
// whose clock every replica shares), or at most the tick interval, so a
// schedule created on another replica is seen within one tick. An idle look
// is one index lookup; fires happen in schedules.ts fireDueSchedules, one
// replica at a time.
import type { Queryable } from "../db/database.js";
import { CairnError } from "../errors.js";
import type { Logger } from "../logger.js";
import { fireDueSchedules, msUntilNextFire } from "./schedules.js";

/** Schedules fired per transaction; a full batch is followed by another round at once. */
const BATCH = 100;
/** How soon to look again when due schedules could not be had (another replica firing, a row locked). */
const BUSY_RETRY_MS = 100;

export class ScheduleTicker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly q: Queryable,
    private readonly tickMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.stopped = false;
    this.sleep(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private sleep(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.round().then((next) => {
        this.running = undefined;
        this.sleep(next);
      });
    }, ms);
    this.timer.unref();
  }

  /** Fires what is due; returns how long to sleep before the next round. */
  private async round(): Promise<number> {
    try {
      const untilNext = await msUntilNextFire(this.q);
      if (untilNext === null) return this.tickMs;
      if (untilNext > 0) return Math.min(this.tickMs, Math.ceil(untilNext));
      const round = await fireDueSchedules(this.q, BATCH);
      for (const f of round.failed) this.log.warn({ namespace: f.ns, schedule_id: f.scheduleId, err: f.error }, "schedule fire failed; retrying next round");
      if (round.failed.length > 0 && round.handled === 0) return this.tickMs;
      // Another replica is firing, or the due rows are locked by calls changing them.
      if (!round.locked || round.handled === 0) return Math.min(this.tickMs, BUSY_RETRY_MS);
      this.log.debug({ schedules: round.handled, jobs: round.fired }, "schedules fired");
      // Look again at once: a full batch left more due, and otherwise the next fire time may be near.
      return 0;
    } catch (error) {
      // The database is down: the health monitor reports that; the next round retries.
      if (!(error instanceof CairnError && error.kind === "unavailable")) this.log.warn({ err: error }, "schedule round failed; retrying");
      return this.tickMs;
    }
  }
}
