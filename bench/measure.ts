// Closed-loop load: `concurrency` workers call `op` back to back for a fixed
// time; latencies of every call are kept for percentiles.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

export interface Result {
  calls: number;
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function ofSorted(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The p-th percentile (0..100) of `values` (NaN ones left out); NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  return ofSorted(Float64Array.from(values.filter((x) => !Number.isNaN(x))).sort(), p);
}

/** Clock ticks a second, the unit of /proc's CPU times. */
export const TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());

/** CPU seconds a process has used so far (Linux /proc); 0 for one that has ended (or is not on this machine). */
export function cpuSeconds(pid: number): number {
  try {
    // utime and stime are fields 14 and 15; the name (field 2) may hold spaces, so count after its ")".
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

export async function measure(
  concurrency: number,
  seconds: number,
  op: (worker: number, iteration: number) => Promise<unknown>,
): Promise<Result> {
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const endAt = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (let i = 0; performance.now() < endAt; i++) {
        const t0 = performance.now();
        try {
          await op(worker, i);
          latencies.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    calls: latencies.length,
    callsPerSecond: latencies.length / elapsed,
    p50Ms: ofSorted(sorted, 50),
    p99Ms: ofSorted(sorted, 99),
    errors,
  };
}

export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ")).join("\n");
}

export type Op = (worker: number, iteration: number) => Promise<unknown>;

/**
 * Measures each method at each concurrency, Cairn then raw, with a short
 * warm-up before each; returns the table rows (header first) with the ratio.
 */
export async function compare(methods: [name: string, cairn: Op, raw: Op][], concurrencies: number[], seconds: number): Promise<string[][]> {
  const rows: string[][] = [["method", "conc", "cairn calls/s", "p50 ms", "p99 ms", "raw pg calls/s", "p50 ms", "p99 ms", "cairn/raw"]];
  const fmt = (r: Result) => [r.callsPerSecond.toFixed(0), r.p50Ms.toFixed(2), r.p99Ms.toFixed(2)];
  for (const [name, cairnOp, rawOp] of methods) {
    for (const concurrency of concurrencies) {
      await measure(concurrency, 0.5, cairnOp);
      const c = await measure(concurrency, seconds, cairnOp);
      await measure(concurrency, 0.5, rawOp);
      const r = await measure(concurrency, seconds, rawOp);
      if (c.errors || r.errors) console.error(`${name}@${concurrency}: ${c.errors} cairn errors, ${r.errors} raw errors`);
      rows.push([name, String(concurrency), ...fmt(c), ...fmt(r), `${((100 * c.callsPerSecond) / r.callsPerSecond).toFixed(0)}%`]);
      console.error(rows[rows.length - 1]!.join(" "));
    }
  }
  return rows;
}
