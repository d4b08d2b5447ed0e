// Watch's live changes, for every watcher of this replica: the replica's
// window of recent changes (db/live-feed.ts), each encoded once as the
// WatchResponse every watcher sends as it is. Watchers whose cursor is
// inside the window take their pages from it, filtered in memory by
// namespace and prefix as readChanges filters in SQL; one further behind
// reads from the change log. Puts and Increments of this replica enter the
// window as they commit (see WriteBatcher), before the NOTIFY comes back.
import type { Database } from "../db/database.js";
import { LiveFeed } from "../db/live-feed.js";
import type { TailPage } from "../db/tail.js";
import { type FeedChange, readChanges, revisions } from "./store.js";

/** A watcher's item: the change's revision and its encoded WatchResponse. */
export interface EncodedChange {
  revision: number;
  bytes: Buffer;
}

/** How much of the recent past one replica keeps encoded for its watchers. */
const WINDOW_BYTES = 32 * 1024 * 1024;
/** How much one read of the window takes, so a burst of writes is followed in steps. */
const READ_BYTES = 8 * 1024 * 1024;

export class ChangeFeed {
  private readonly feed: LiveFeed<FeedChange>;

  /**
   * `db`: the pool for watchers' reads from the log; `live`: the window's own
   * reader; `backstopMs`: longest time the window goes unread while anyone watches.
   */
  constructor(
    private readonly db: Database,
    live: Database,
    private readonly encode: (change: FeedChange) => Buffer,
    backstopMs: number,
  ) {
    this.feed = new LiveFeed<FeedChange>(
      live.on({}),
      {
        readHead: async (q) => (await revisions(q)).last,
        read: (q, from, maxBytes) => readChanges(q, null, from, "", maxBytes),
        position: (change) => change.revision,
        encode,
      },
      { windowBytes: WINDOW_BYTES, readBytes: READ_BYTES, backstopMs },
    );
  }

  /** A NOTIFY of new changes (payload: the last revision its commit wrote; none after a reconnect). */
  notified(payload?: string): void {
    this.feed.notified(payload);
  }

  /** Changes this replica has just committed in one transaction, in revision order. */
  committed(changes: FeedChange[]): void {
    this.feed.committed(changes);
  }

  /** Calls `listener` whenever the window takes changes of `ns` under `prefix` (a watcher's wake-up); returns its remover. */
  onGrow(listener: () => void, ns: string, prefix: string): () => void {
    return this.feed.onGrow(listener, under(ns, prefix));
  }

  /** The page of namespace `ns` under `prefix` for `cursor`: from the window when the cursor is inside it, else from the log. */
  async page(ns: string, cursor: number, prefix: string, maxBytes: number, signal: AbortSignal): Promise<TailPage<EncodedChange>> {
    const page = await this.feed.page(cursor, under(ns, prefix), maxBytes);
    if (!page) return this.fromLog(ns, cursor, prefix, maxBytes, signal);
    return { ...page, items: page.items.map((entry) => ({ revision: entry.position, bytes: entry.bytes })) };
  }

  private async fromLog(ns: string, cursor: number, prefix: string, maxBytes: number, signal: AbortSignal): Promise<TailPage<EncodedChange>> {
    const page = await readChanges(this.db.on({ signal }), ns, cursor, prefix, maxBytes);
    return { ...page, items: page.items.map((change) => ({ revision: change.revision, bytes: this.encode(change) })) };
  }
}

/** readChanges' filter, in memory: a key under the prefix in the namespace. */
function under(ns: string, prefix: string): (change: FeedChange) => boolean {
  return (change) => change.namespace === ns && change.entry.key.startsWith(prefix);
}
