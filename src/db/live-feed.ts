// A replica's window of the recent past of a log ordered by one global
// position (trace event offsets for SubscribeEvents, key-value revisions for
// Watch), each item encoded once as the message every subscriber sends as it
// is. Without it, every subscriber reads, parses and encodes every new item
// on its own, after a read of its own that starts only once the commit's
// notification has reached it.
//
// One reader per replica follows the committed head while anyone listens:
// it reads when a NOTIFY names a position the window lacks (a read started
// after the notification arrived sees its commit), after a notification
// without a position (the LISTEN connection came back: anything may have
// been missed), and once every backstop interval. Each read that brings
// items wakes only the listeners that want one of them (a subscriber's
// filter), and those take their pages from memory.
//
// Items this replica has just committed are appended without a read when
// they continue the window, for a source whose positions are allocated
// under a lock held until commit (key-value revisions): when such a commit
// returns, every lower position is committed too, and the window already
// holds those up to its end. Items that do not continue it (a gap) make the
// reader read instead.
//
// The window holds exactly what the source's read returns with no filter
// and no namespace: items of every namespace up to the source's head, a
// position below which nothing can still commit (for revisions the last
// allocated; for trace offsets the settled offset), so a page from the
// window is the page the table would give. Each item keeps what its
// subscribers filter on (their namespace included), applied in memory as
// the table's read applies it in SQL.
import type { Queryable } from "./database.js";
import type { TailPage } from "./tail.js";

export interface FeedSource<T> {
  /** The highest position below which nothing can still commit (the head a read may go up to). */
  readHead(q: Queryable): Promise<number>;
  /** Items of every namespace from `from`, as the table gives them to a subscriber with no filter; about `maxBytes`. */
  read(q: Queryable, from: number, maxBytes: number): Promise<TailPage<T>>;
  position(item: T): number;
  /** The message a subscriber sends for the item. */
  encode(item: T): Buffer;
}

export interface FeedEntry<T> {
  position: number;
  bytes: Buffer;
  item: T;
}

export interface FeedOptions {
  /** How much of the recent past the window keeps encoded. */
  windowBytes: number;
  /** How much one read takes, so a burst is followed in steps. */
  readBytes: number;
  /** Longest time without a read while anyone listens (notifications can be lost). */
  backstopMs: number;
}

export class LiveFeed<T> {
  private entries: FeedEntry<T>[] = [];
  /** The window covers positions [start, through]; undefined until first used. */
  private start: number | undefined;
  private through = 0;
  private bytes = 0;
  /** The committed head as the last read saw it: past `through` when one read could not take it all. */
  private dbHead = 0;
  /** Bumped when the window is dropped, so a read that began before discards what it read. */
  private epoch = 0;
  /** The highest position a notification named or this replica committed. */
  private wanted = 0;
  /** A notification without a position came since the last read began. */
  private forced = false;
  private following: Promise<void> | undefined;
  private lastReadAt = 0;
  /** Each listener, and which items concern it (a subscriber's filter). */
  private readonly listeners = new Map<() => void, (item: T) => boolean>();
  private backstop: NodeJS.Timeout | undefined;

  constructor(
    private readonly reader: Queryable,
    private readonly source: FeedSource<T>,
    private readonly options: FeedOptions,
  ) {}

  /**
   * Calls `listener` whenever the window takes items that `wants` (a
   * subscriber's filter); while any listener is registered the window
   * follows the head by itself. When the last one goes, the window is
   * dropped rather than left to go stale in memory.
   */
  onGrow(listener: () => void, wants: (item: T) => boolean): () => void {
    this.listeners.set(listener, wants);
    if (this.listeners.size === 1) this.startBackstop();
    return () => {
      if (!this.listeners.delete(listener) || this.listeners.size > 0) return;
      clearInterval(this.backstop);
      this.drop();
    };
  }

  /** A notification on the source's channel: `payload` is the highest position its commit wrote, if it says. */
  notified(payload?: string): void {
    if (this.listeners.size === 0) return;
    const position = payload ? Number(payload) : NaN;
    if (Number.isSafeInteger(position)) this.wanted = Math.max(this.wanted, position);
    else this.forced = true;
    if (this.behind()) this.followInBackground();
  }

  /**
   * Items this replica has just committed, in one transaction (positions
   * ascending and contiguous): appended at once when they continue the
   * window, otherwise read with whatever precedes them.
   */
  committed(items: T[]): void {
    if (this.listeners.size === 0 || this.start === undefined || items.length === 0) return;
    const first = this.source.position(items[0]!);
    const last = this.source.position(items[items.length - 1]!);
    if (last <= this.through) return;
    if (first > this.through + 1) {
      this.wanted = Math.max(this.wanted, last);
      this.followInBackground();
      return;
    }
    const fresh = this.append(items.filter((item) => this.source.position(item) > this.through));
    this.through = last;
    this.evict();
    this.wake(fresh);
  }

  /**
   * Items deleted (on any replica): the window may hold some of them, so it
   * starts afresh at its end, and readers behind that go to the table, which
   * no longer has them.
   */
  forget(): void {
    this.epoch++;
    this.entries = [];
    this.bytes = 0;
    if (this.start !== undefined) this.start = this.through + 1;
  }

  /**
   * The page for `cursor` of the items `accept` takes, about `maxBytes`, or
   * undefined when the cursor is behind the window (the caller reads the
   * table). Its head is the window's end: a listener caught up with it waits
   * to be woken. Without listeners (no one keeps the window current) a
   * cursor past the window's end reads first.
   */
  async page(cursor: number, accept: (item: T) => boolean, maxBytes: number): Promise<TailPage<FeedEntry<T>> | undefined> {
    if (this.start === undefined || (this.listeners.size === 0 && cursor > this.through)) await this.follow();
    if (this.start === undefined || cursor < this.start) return undefined;
    const items: FeedEntry<T>[] = [];
    let size = 0;
    let cutAt: number | undefined;
    for (let i = this.firstAtOrAfter(cursor); i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      if (!accept(entry.item)) continue;
      if (items.length > 0 && size + entry.bytes.length > maxBytes) {
        cutAt = items[items.length - 1]!.position;
        break;
      }
      items.push(entry);
      size += entry.bytes.length;
    }
    return { items, head: this.through, scannedThrough: cutAt ?? Math.max(cursor - 1, this.through) };
  }

  /** The index of the first entry at or after `position` (entries are in position order). */
  private firstAtOrAfter(position: number): number {
    let low = 0;
    let high = this.entries.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.entries[middle]!.position < position) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  private behind(): boolean {
    return this.through < this.dbHead || (this.listeners.size > 0 && (this.forced || this.through < this.wanted));
  }

  private followInBackground(): void {
    // A failed read has dropped the window and woken the listeners, whose own reads report the error.
    this.follow().catch(() => {});
  }

  /** Reads until the window holds everything known to be committed; one reader at a time. */
  private follow(): Promise<void> {
    this.following ??= this.readWhileBehind();
    return this.following;
  }

  private async readWhileBehind(): Promise<void> {
    try {
      do await this.read();
      while (this.behind());
    } catch (error) {
      // A window that cannot be read forward is dropped: its listeners go to the table, which says why.
      this.drop();
      this.wakeAll();
      throw error;
    } finally {
      this.following = undefined;
    }
  }

  private async read(): Promise<void> {
    const epoch = this.epoch;
    // This read's snapshot will include every commit notified so far.
    this.forced = false;
    this.lastReadAt = Date.now();
    if (this.start === undefined) {
      // The window begins at the head: the past is read from the table.
      const head = await this.source.readHead(this.reader);
      if (epoch !== this.epoch) return;
      this.through = this.dbHead = head;
      this.start = head + 1;
      return;
    }
    const page = await this.source.read(this.reader, this.through + 1, this.options.readBytes);
    // Deleted items may be in what was read before the window was dropped: read again next time.
    if (epoch !== this.epoch) return;
    this.dbHead = Math.max(this.dbHead, page.head);
    // Never twice, whatever this replica appended meanwhile.
    const fresh = this.append(page.items.filter((item) => this.source.position(item) > this.through));
    this.through = Math.max(this.through, page.scannedThrough);
    this.evict();
    this.wake(fresh);
  }

  /** Encodes and appends items past the window's end (all encoded first: one that fails leaves the window as it was). */
  private append(items: T[]): FeedEntry<T>[] {
    const fresh = items.map((item) => ({ position: this.source.position(item), bytes: this.source.encode(item), item }));
    for (const entry of fresh) {
      this.entries.push(entry);
      this.bytes += entry.bytes.length;
    }
    return fresh;
  }

  /** Drops the oldest items past the window's bound; their readers go to the table. */
  private evict(): void {
    let drop = 0;
    while (this.bytes > this.options.windowBytes && drop < this.entries.length - 1) {
      this.bytes -= this.entries[drop]!.bytes.length;
      drop++;
    }
    if (drop === 0) return;
    this.start = this.entries[drop - 1]!.position + 1;
    this.entries = this.entries.slice(drop);
  }

  private drop(): void {
    this.epoch++;
    this.entries = [];
    this.bytes = 0;
    this.start = undefined;
    this.through = this.dbHead = this.wanted = 0;
    this.forced = false;
  }

  /** Wakes the listeners that want any of `fresh`. */
  private wake(fresh: FeedEntry<T>[]): void {
    if (fresh.length === 0) return;
    for (const [listener, wants] of [...this.listeners]) if (fresh.some((entry) => wants(entry.item))) listener();
  }

  private wakeAll(): void {
    for (const listener of [...this.listeners.keys()]) listener();
  }

  private startBackstop(): void {
    this.backstop = setInterval(() => {
      if (Date.now() - this.lastReadAt < this.options.backstopMs) return;
      this.forced = true;
      this.followInBackground();
    }, this.options.backstopMs);
    this.backstop.unref();
  }
}
