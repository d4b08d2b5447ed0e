// Catch-up-then-live streaming over a table ordered by a global cursor
// (trace event offsets for SubscribeEvents, key-value revisions for Watch).
// The loop reads a bounded page from the cursor, delivers it, and when caught
// up waits for a wake-up (NOTIFY through the hub) or the progress interval,
// whichever comes first; the interval doubles as a polling backstop for
// missed notifications. It holds no pool connection between reads, and
// delivery waits for the consumer (backpressure), so a slow subscriber holds
// at most the page it is being sent.

/** How many positions one page read may scan, so a selective filter stays cheap. */
export const SCAN_WINDOW = 2000;

export interface TailPage<T> {
  items: T[];
  /** Every position up to here was scanned (delivered or filtered out). */
  scannedThrough: number;
  /** The highest committed position when the page was read. */
  head: number;
}

/**
 * The page of a read that scanned the window [cursor, cursor + SCAN_WINDOW)
 * up to the committed head: everything up to the window's end (or the head,
 * if lower) was seen, whether or not it matched.
 */
export function windowPage<T>(cursor: number, head: number, items: T[]): TailPage<T> {
  return { items, head, scannedThrough: Math.max(cursor - 1, Math.min(head, cursor + SCAN_WINDOW - 1)) };
}

export interface TailOptions<T> {
  /** First position to deliver (inclusive), or "now" for only what comes next. */
  from: number | "now";
  readHead(): Promise<number>;
  readPage(cursor: number): Promise<TailPage<T>>;
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
      const page = await options.readPage(cursor);
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
