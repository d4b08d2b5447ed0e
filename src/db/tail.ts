// Catch-up-then-live streaming over a table ordered by a global cursor
// (trace event offsets for SubscribeEvents, key-value revisions for Watch).
// The loop reads a bounded page from the cursor, delivers it, and when caught
// up waits for a wake-up (the replica's live feed took items it wants, see
// live-feed.ts) or the progress interval, whichever comes first. It holds
// no pool connection between reads, and it asks its stream how many bytes
// it may take before each read (waiting while the client drains), so a slow
// subscriber holds at most one page of about its stream's free buffer, and
// no rows at all while it is full.

/** How many positions one page read may scan, so a selective filter stays cheap. */
export const SCAN_WINDOW = 2000;

/** The bytes one page read may hold when its caller names no bound (a stream's buffer bound). */
export const TAIL_PAGE_BYTES = 1024 * 1024;

/**
 * The bytes a stream's first page may hold; each full page doubles it, up
 * to what the stream has room for. A catch-up's first item goes out after
 * a small read (about 2 ms) rather than after a whole buffer's worth (20
 * to 35 ms for 1 MiB), and a long one soon reads in big pages.
 */
const FIRST_PAGE_BYTES = 64 * 1024;

export interface TailPage<T> {
  items: T[];
  /** Every position up to here was scanned (delivered or filtered out). */
  scannedThrough: number;
  /** The head when the page was read: the highest position below which nothing can still commit. */
  head: number;
}

/**
 * The page of a read that scanned the window [cursor, cursor + SCAN_WINDOW)
 * up to the committed head: everything up to the window's end (or the head,
 * if lower) was seen, whether or not it matched. A read cut short by its
 * byte bound (`cutAt`: the position of the last item it returned) saw only
 * up to that item; the next read resumes right after it.
 */
export function windowPage<T>(cursor: number, head: number, items: T[], cutAt?: number): TailPage<T> {
  const scannedThrough = cutAt ?? Math.max(cursor - 1, Math.min(head, cursor + SCAN_WINDOW - 1));
  return { items, head, scannedThrough };
}

export interface TailOptions<T> {
  /** First position to deliver (inclusive), or "now" for only what comes next. */
  from: number | "now";
  readHead(): Promise<number>;
  /** A page from `cursor` of about `maxBytes` (at least one item when there is one). */
  readPage(cursor: number, maxBytes: number): Promise<TailPage<T>>;
  /** Waits until the stream may take more; then how many bytes the next page may hold. */
  room(): Promise<number>;
  deliver(item: T): Promise<void>;
  progress(scannedThrough: number): Promise<void>;
  /** Registers a wake-up callback; returns its remover. */
  onWake(listener: () => void): () => void;
  progressIntervalMs: number;
  signal: AbortSignal;
}

export async function tail<T>(options: TailOptions<T>): Promise<void> {
  const { signal } = options;
  let dirty = true;
  let wakeUp: (() => void) | undefined;
  const removeWake = options.onWake(() => {
    dirty = true;
    wakeUp?.();
  });
  const onAbort = () => wakeUp?.();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    let cursor = options.from === "now" ? (await options.readHead()) + 1 : options.from;
    let lastSentAt = Date.now();
    let pageBytes = FIRST_PAGE_BYTES;
    while (!signal.aborted) {
      if (!dirty) {
        const waitMs = Math.max(0, options.progressIntervalMs - (Date.now() - lastSentAt));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          wakeUp = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wakeUp = undefined;
        if (signal.aborted) break;
      }
      dirty = false;
      const page = await options.readPage(cursor, Math.max(1, Math.min(pageBytes, await options.room())));
      if (page.scannedThrough < page.head) pageBytes *= 2;
      for (const item of page.items) {
        if (signal.aborted) return;
        await options.deliver(item);
        lastSentAt = Date.now();
      }
      cursor = page.scannedThrough + 1;
      if (page.scannedThrough < page.head) dirty = true;
      if (Date.now() - lastSentAt >= options.progressIntervalMs) {
        await options.progress(page.scannedThrough);
        lastSentAt = Date.now();
      }
    }
  } finally {
    removeWake();
    signal.removeEventListener("abort", onAbort);
  }
}
