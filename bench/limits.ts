// Limits under hostile clients (issue "limits, overload and hostile input"):
//  1. N subscribers that never read (N = 200, 2,000), each a SubscribeEvents
//     from now over raw HTTP/2 (grpc-js's own client keeps reading while
//     paused, so it cannot play one), while 256 KB events are appended; the
//     daemon's peak RSS and an unrelated KV Get's p50/p99 during the run.
//  2. Pool saturation: a daemon with a pool of 2 and 300 concurrent
//     AppendEvents on one trace; how many calls end with each status.
// Goals: RSS under 1 GB with 2,000 slow subscribers, the unrelated p99 under
// 100 ms, no DATABASE_UNAVAILABLE while the database is up.
import { CairnClient, errorDetails, SubscribeEventsRequest } from "@cairn/client";
import type { ServiceError } from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { rawServerStream } from "../test/support/raw-grpc.js";
import { startBenchEnvironment } from "./environment.js";
import { formatTable, percentile } from "./measure.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SUBSCRIBERS = (process.env.BENCH_SUBSCRIBERS ?? "200,2000").split(",").map(Number);
const EVENT_BYTES = 256 * 1024;
const EVENTS_PER_SECOND = 20;

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function slowSubscribers(count: number): Promise<string[]> {
  const env = await startBenchEnvironment();
  const client = new CairnClient(env.cairnAddress);
  try {
    await client.keyValue.put({ entry: { key: "unrelated", value: { $case: "jsonValue", value: { ok: true } } } });
    const request = SubscribeEventsRequest.encode(SubscribeEventsRequest.fromPartial({ fromNow: true })).finish();
    const streams = Array.from({ length: count }, () => rawServerStream(env.cairnAddress, "/cairn.v1.TraceEventService/SubscribeEvents", request));
    for (const s of streams) s.pause();
    // Measured once the subscribers are connected and registered (each
    // subscription's set-up reads the head once): the steady state, not the
    // burst of 2,000 connections arriving.
    await new Promise((r) => setTimeout(r, 3_000));
    const rssBefore = rssMb(env.pid);
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb(env.pid))), 250);
    const endAt = performance.now() + SECONDS * 1000;
    const latencies: number[] = [];
    let appended = 0;
    const blob = "x".repeat(EVENT_BYTES);
    const ingest = (async () => {
      for (let i = 0; performance.now() < endAt; i++) {
        const t0 = performance.now();
        await client.traces.appendEvents({ events: [{ traceId: `big-${i % 10}`, eventType: "big", payload: { blob } }] });
        appended++;
        await new Promise((r) => setTimeout(r, Math.max(0, 1000 / EVENTS_PER_SECOND - (performance.now() - t0))));
      }
    })();
    const unrelated = (async () => {
      while (performance.now() < endAt) {
        const t0 = performance.now();
        await client.keyValue.get({ key: "unrelated" });
        latencies.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await Promise.all([ingest, unrelated]);
    clearInterval(sampler);
    for (const s of streams) s.close();
    return [String(count), String(appended), rssBefore.toFixed(0), peak.toFixed(0), percentile(latencies, 50).toFixed(1), percentile(latencies, 99).toFixed(1)];
  } finally {
    client.close();
    await env.close();
  }
}

async function poolSaturation(): Promise<string[][]> {
  const env = await startBenchEnvironment(2);
  const client = new CairnClient(env.cairnAddress);
  try {
    const outcomes = new Map<string, number>();
    await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        let outcome = "OK";
        try {
          await client.traces.appendEvents({ events: [{ traceId: "hot", eventType: "e", payload: { i } }] }, { deadline: 30_000 });
        } catch (error) {
          const e = error as ServiceError;
          outcome = `${e.code} ${errorDetails(e).errorInfo?.reason ?? "?"}`;
        }
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }),
    );
    return [...outcomes].map(([outcome, n]) => [outcome, String(n)]);
  } finally {
    client.close();
    await env.close();
  }
}

export async function benchLimits(): Promise<void> {
  const rows = [["subscribers", "events", "rss before MB", "rss peak MB", "Get p50 ms", "Get p99 ms"]];
  for (const count of SUBSCRIBERS) rows.push(await slowSubscribers(count));
  console.log(`\nnon-reading subscribers while ${EVENT_BYTES / 1024} KB events are appended (${SECONDS} s, ${EVENTS_PER_SECOND} events/s)\n`);
  console.log(formatTable(rows));
  console.log("\npool of 2, 300 concurrent AppendEvents on one trace: calls by status\n");
  console.log(formatTable([["status", "calls"], ...(await poolSaturation())]));
}
