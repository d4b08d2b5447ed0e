// Fan-out of live trace events to this replica's subscribers: the
// replica's window of recent events (db/live-feed.ts), each encoded once as
// the SubscribeEventsResponse every subscriber sends as it is. Subscribers
// whose cursor is inside the window take their pages from it, filtered in
// memory; one further behind reads from the table as before.
//
// The window holds exactly what readFeed returns for an empty filter and no
// namespace, up to the settled offset (nothing below it can still commit,
// see traces/store.ts), so a page from the window is the page the table
// would give. A
// subscriber's namespace is one more filter, applied in memory here as
// readFeed applies it in SQL: one window serves every namespace, and no
// subscriber sees another namespace's events.
import type { Database } from "../db/database.js";
import { LiveFeed } from "../db/live-feed.js";
import type { TailPage } from "../db/tail.js";
import { type EventFilter, type FeedEvent, headOffset, readFeed, SEVERITIES, type TraceEventRecord } from "./store.js";

/** A subscriber's item: the event's offset and its encoded SubscribeEventsResponse. */
export interface EncodedEvent {
  offset: number;
  bytes: Buffer;
}

/** How much of the recent past one replica keeps encoded for its subscribers. */
const WINDOW_BYTES = 64 * 1024 * 1024;
/** How much one read of the window takes, so a burst of ingestion is followed in steps. */
const READ_BYTES = 8 * 1024 * 1024;
/** The window's read: every event, of every namespace. */
const EVERY_EVENT: EventFilter = { sessionId: null, traceId: null, eventTypes: [], minSeverity: null };

export class TraceFanout {
  private readonly feed: LiveFeed<FeedEvent>;

  /**
   * `db`: the pool for subscribers' reads from the table; `live`: the
   * window's own reader; `backstopMs`: longest time the window goes unread
   * while anyone subscribes.
   */
  constructor(
    private readonly db: Database,
    private readonly encode: (event: TraceEventRecord) => Buffer,
    windowBytes = WINDOW_BYTES,
    backstopMs = 4_000,
    live: Database = db,
  ) {
    this.feed = new LiveFeed<FeedEvent>(
      live.on({}),
      {
        readHead: headOffset,
        read: (q, from, maxBytes) => readFeed(q, null, from, EVERY_EVENT, maxBytes),
        position: (event) => event.offset,
        encode,
      },
      { windowBytes, readBytes: READ_BYTES, backstopMs },
    );
  }

  /** A NOTIFY of new events (payload: the last offset its commit wrote; none after a reconnect). */
  notified(payload?: string): void {
    this.feed.notified(payload);
  }

  /** Calls `listener` whenever the window takes events of `ns` that `filter` selects (a subscriber's wake-up); returns its remover. */
  onGrow(listener: () => void, ns: string, filter: EventFilter): () => void {
    return this.feed.onGrow(listener, (event) => event.namespace === ns && matches(event, filter));
  }

  /**
   * Trace events were deleted (a session cascade, on any replica): the
   * window may hold some of them, so it starts afresh at its end and
   * readers behind it go to the table, which no longer has them.
   */
  forget(): void {
    this.feed.forget();
  }

  /**
   * The page of namespace `ns` for `cursor`: from the window when the cursor
   * is inside it, else from the table; about `maxBytes`.
   */
  async page(ns: string, cursor: number, filter: EventFilter, maxBytes: number, signal: AbortSignal): Promise<TailPage<EncodedEvent>> {
    const page = await this.feed.page(cursor, (event) => event.namespace === ns && matches(event, filter), maxBytes);
    if (!page) return this.fromTable(ns, cursor, filter, maxBytes, signal);
    return { ...page, items: page.items.map((entry) => ({ offset: entry.position, bytes: entry.bytes })) };
  }

  private async fromTable(ns: string, cursor: number, filter: EventFilter, maxBytes: number, signal: AbortSignal): Promise<TailPage<EncodedEvent>> {
    const page = await readFeed(this.db.on({ signal }), ns, cursor, filter, maxBytes);
    return { ...page, items: page.items.map((event) => ({ offset: event.offset, bytes: this.encode(event) })) };
  }
}

/** The filter of readFeed's SQL, in memory. */
function matches(e: TraceEventRecord, f: EventFilter): boolean {
  if (f.sessionId !== null && e.sessionId !== f.sessionId) return false;
  if (f.traceId !== null && e.traceId !== f.traceId) return false;
  if (f.eventTypes.length > 0 && !f.eventTypes.includes(e.eventType)) return false;
  return f.minSeverity === null || SEVERITIES.indexOf(e.severity) >= SEVERITIES.indexOf(f.minSeverity);
}
