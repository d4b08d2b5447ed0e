// Fan-out of live trace events to this replica's subscribers. Without it,
// every subscriber reads, parses and encodes every new event on its own: a
// 256 KB event and 2,000 subscribers are 2,000 reads and half a gigabyte of
// JSON parsing and protobuf encoding, in a burst that stalls every other
// call. Here one reader per replica follows the committed head into a
// window of recent events (bounded in bytes), each encoded once as the
// SubscribeEventsResponse that every subscriber sends as it is; subscribers
// whose cursor is inside the window take their pages from it, filtered in
// memory, and one further behind reads from the table as before.
//
// The window holds exactly what readFeed returns for an empty filter and no
// namespace: rows of every namespace up to the head read in one snapshot,
// and offsets become visible in offset order (see traces/store.ts), so a
// page from the window is the page the table would give. Each entry keeps
// its namespace, and a subscriber's namespace is one more filter, applied
// in memory here as readFeed applies it in SQL: one window serves every
// namespace, and no subscriber sees another namespace's events.
import type { Database } from "../db/database.js";
import type { TailPage } from "../db/tail.js";
import { type EventFilter, type FeedEvent, headOffset, readFeed, SEVERITIES, type TraceEventRecord } from "./store.js";

/** A subscriber's item: the event's offset and its encoded SubscribeEventsResponse. */
export interface EncodedEvent {
  offset: number;
  bytes: Buffer;
}

/** How much of the recent past one replica keeps encoded for its subscribers. */
const WINDOW_BYTES = 64 * 1024 * 1024;
/** How much one refresh reads, so a burst of ingestion is followed in steps. */
const REFRESH_BYTES = 8 * 1024 * 1024;

interface Entry extends EncodedEvent {
  event: FeedEvent;
}

export class TraceFanout {
  private entries: Entry[] = [];
  /** The window covers offsets [start, through]; undefined until first used. */
  private start: number | undefined;
  private through = 0;
  private bytes = 0;
  /** The committed head as the last refresh saw it: past `through` when one refresh could not read it all. */
  private dbHead = 0;
  /** Bumped when the window is forgotten, so a refresh that read before it discards what it read. */
  private epoch = 0;
  private current: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  constructor(
    private readonly db: Database,
    private readonly encode: (event: TraceEventRecord) => Buffer,
    private readonly windowBytes = WINDOW_BYTES,
  ) {}

  /**
   * Trace events were deleted (a session cascade, on any replica): the
   * window may hold some of them, so it starts afresh at its head and
   * readers behind it go to the table, which no longer has them.
   */
  forget(): void {
    this.epoch++;
    this.entries = [];
    this.bytes = 0;
    if (this.start !== undefined) this.start = this.through + 1;
  }

  /**
   * The page of namespace `ns` for `cursor`: from the window when the cursor
   * is inside it (after following the head), else from the table; about
   * `maxBytes`.
   */
  async page(ns: string, cursor: number, filter: EventFilter, maxBytes: number, signal: AbortSignal): Promise<TailPage<EncodedEvent>> {
    await this.follow();
    if (this.start === undefined || cursor < this.start) return this.fromTable(ns, cursor, filter, maxBytes, signal);
    const items: EncodedEvent[] = [];
    let size = 0;
    let cutAt: number | undefined;
    for (const entry of this.entries) {
      if (entry.offset < cursor || entry.event.namespace !== ns || !matches(entry.event, filter)) continue;
      if (items.length > 0 && size + entry.bytes.length > maxBytes) {
        cutAt = items[items.length - 1]!.offset;
        break;
      }
      items.push(entry);
      size += entry.bytes.length;
    }
    // The database's head, when the window is behind it, keeps the reader reading (each read refreshes).
    return { items, head: Math.max(this.through, this.dbHead), scannedThrough: cutAt ?? Math.max(cursor - 1, this.through) };
  }

  private async fromTable(ns: string, cursor: number, filter: EventFilter, maxBytes: number, signal: AbortSignal): Promise<TailPage<EncodedEvent>> {
    const page = await readFeed(this.db.on({ signal }), ns, cursor, filter, maxBytes);
    return { ...page, items: page.items.map((event) => ({ offset: event.offset, bytes: this.encode(event) })) };
  }

  /**
   * Brings the window up to the head as of now: one refresh at a time for
   * the whole replica. A refresh already running may have taken its
   * snapshot before the commit that woke the caller, so the caller waits
   * for the next one (one queued refresh serves every caller that came
   * meanwhile).
   */
  private follow(): Promise<void> {
    if (!this.current) return this.run();
    this.queued ??= this.current
      .catch(() => {})
      .then(() => {
        this.queued = undefined;
        return this.run();
      });
    return this.queued;
  }

  private run(): Promise<void> {
    this.current = this.refresh().finally(() => (this.current = undefined));
    return this.current;
  }

  private async refresh(): Promise<void> {
    const q = this.db.on({});
    if (this.start === undefined) {
      // The window begins at the head: the past is read from the table.
      this.through = await headOffset(q);
      this.dbHead = this.through;
      this.start = this.through + 1;
      return;
    }
    const epoch = this.epoch;
    // Every namespace: the window is the replica's, and page() filters by namespace.
    const page = await readFeed(q, null, this.through + 1, { sessionId: null, traceId: null, eventTypes: [], minSeverity: null }, REFRESH_BYTES);
    this.dbHead = Math.max(this.dbHead, page.head);
    // Deleted events may be in what was read before a forget(): read again next time.
    if (epoch !== this.epoch) return;
    for (const event of page.items) {
      // Never twice, whatever the order of overlapping refreshes.
      if (event.offset <= this.through) continue;
      const bytes = this.encode(event);
      this.entries.push({ offset: event.offset, bytes, event });
      this.bytes += bytes.length;
    }
    this.through = Math.max(this.through, page.scannedThrough);
    this.evict();
  }

  /** Drops the oldest events past the window's bound; their readers go to the table. */
  private evict(): void {
    let drop = 0;
    while (this.bytes > this.windowBytes && drop < this.entries.length - 1) {
      this.bytes -= this.entries[drop]!.bytes.length;
      drop++;
    }
    if (drop === 0) return;
    this.start = this.entries[drop - 1]!.offset + 1;
    this.entries = this.entries.slice(drop);
  }
}

/** The filter of readFeed's SQL, in memory. */
function matches(e: TraceEventRecord, f: EventFilter): boolean {
  if (f.sessionId !== null && e.sessionId !== f.sessionId) return false;
  if (f.traceId !== null && e.traceId !== f.traceId) return false;
  if (f.eventTypes.length > 0 && !f.eventTypes.includes(e.eventType)) return false;
  return f.minSeverity === null || SEVERITIES.indexOf(e.severity) >= SEVERITIES.indexOf(f.minSeverity);
}
