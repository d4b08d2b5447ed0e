// Probes the database on an interval (and at once when a call could not
// reach it) and reports reachability changes, so health can say NOT_SERVING
// during an outage and SERVING once it is over. A probe opens a connection
// of its own rather than borrowing one from the pool: a saturated pool is
// overload, not an outage, and must not make health flap.
import pg from "pg";
import type { Logger } from "../logger.js";

export class DatabaseMonitor {
  private timer: NodeJS.Timeout | undefined;
  private reachable: boolean | undefined;
  private probing = false;

  constructor(
    private readonly databaseUrl: string,
    private readonly intervalMs: number,
    private readonly log: Logger,
    private readonly onChange: (reachable: boolean) => void,
  ) {}

  start(): void {
    void this.probe();
    this.timer = setInterval(() => void this.probe(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One probe; overlapping ticks are skipped while one is in flight. */
  async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    const client = new pg.Client({ connectionString: this.databaseUrl, connectionTimeoutMillis: Math.max(this.intervalMs, 5_000) });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.query("SELECT 1");
      this.report(true);
    } catch (error) {
      this.report(false, error);
    } finally {
      this.probing = false;
      await client.end().catch(() => {});
    }
  }

  private report(reachable: boolean, error?: unknown): void {
    if (reachable === this.reachable) return;
    this.reachable = reachable;
    if (reachable) this.log.info("database reachable");
    else this.log.error({ err: error }, "database unreachable");
    this.onChange(reachable);
  }
}
