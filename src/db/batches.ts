// Bulk deletions in bounded batches (River's maintenance services do the
// same): each batch is one short statement, so a backlog never holds locks
// for long, and a short pause between batches lets other work through.
export const PURGE_BATCH = 1000;
const PAUSE_MS = 10;

/**
 * Runs `batch(limit)` until it removes fewer than `limit` rows; returns the
 * total. Stops early (with what it did) when `signal` aborts.
 */
export async function inBatches(batch: (limit: number) => Promise<number>, signal?: AbortSignal, limit = PURGE_BATCH): Promise<number> {
  let total = 0;
  for (;;) {
    const removed = await batch(limit);
    total += removed;
    if (removed < limit || signal?.aborted) return total;
    await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
  }
}
