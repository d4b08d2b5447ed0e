// One LISTEN connection per replica, outside the pool, shared by every
// subscriber of that replica. A notification is only a wake-up hint: the
// data is always re-read from the tables. When the connection drops, the hub
// reconnects with backoff and wakes every listener, so that each re-reads
// from its cursor and nothing committed meanwhile is missed.
import pg from "pg";
import type { Logger } from "../logger.js";

type Listener = (payload?: string) => void;

export const CHANNELS = {
  traceEvents: "cairn_trace_events",
  /** Trace events were deleted (a session cascade): replicas forget what they cached. */
  traceDeletes: "cairn_trace_deletes",
  keyValueChanges: "cairn_kv_changes",
  jobs: "cairn_jobs",
} as const;

export class NotifyHub {
  private client: pg.Client | undefined;
  private readonly listeners = new Map<string, Set<Listener>>();
  private stopped = false;
  private retryDelayMs = 100;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connectionString: string,
    private readonly channels: string[],
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  /** Calls `listener` on every notification of `channel` (and after reconnects). */
  listen(channel: string, listener: Listener): () => void {
    if (!this.channels.includes(channel)) throw new Error(`channel ${channel} is not one the hub listens on`);
    let set = this.listeners.get(channel);
    if (!set) this.listeners.set(channel, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    await this.client?.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectionString, application_name: "cairn-listen" });
    client.on("notification", (message) => this.wake(message.channel, message.payload));
    client.on("error", (error) => this.onLost(client, error));
    client.on("end", () => this.onLost(client));
    try {
      await client.connect();
      // Channel names are constants of ours; LISTEN takes no parameters.
      for (const channel of this.channels) await client.query(`LISTEN ${channel}`);
    } catch (error) {
      this.onLost(client, error);
      return;
    }
    this.client = client;
    this.retryDelayMs = 100;
    // Whatever was committed while we were not listening must be read now.
    for (const channel of this.channels) this.wake(channel);
  }

  private wake(channel: string, payload?: string): void {
    for (const listener of this.listeners.get(channel) ?? []) listener(payload);
  }

  private onLost(client: pg.Client, error?: unknown): void {
    if (this.stopped || (this.client !== client && this.client !== undefined)) return;
    this.client = undefined;
    client.removeAllListeners();
    client.on("error", () => {});
    client.end().catch(() => {});
    if (this.reconnectTimer) return;
    this.log.warn({ err: error, retry_in_ms: this.retryDelayMs }, "LISTEN connection lost; reconnecting");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect();
    }, this.retryDelayMs);
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, 5_000);
  }
}
