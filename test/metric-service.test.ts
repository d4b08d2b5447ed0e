// MetricService end to end: RecordMetrics and QueryMetrics over gRPC on a
// real PostgreSQL. Aggregates are checked against values computed here
// (percentiles as percentile_cont computes them), steps against their
// alignment to start_time, and the bounds (batch size, steps, message size).
import { Aggregation, CairnClient, type MetricPoint, type QueryMetricsRequest, type Timestamp } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

const RETENTION_MS = 60 * 60 * 1000;
const MAX_MESSAGE_BYTES = 128 * 1024;

let h: Harness;
let n = 0;
const uid = (p: string) => `${p}-${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  h = await startHarness({
    reaperIntervalMs: 200,
    metricRetentionMs: RETENTION_MS,
    limits: { maxMessageBytes: MAX_MESSAGE_BYTES } as never,
  });
});
afterAll(async () => {
  await h?.stop();
});

/** A whole minute well inside the retention, so the reaper leaves the tests' points alone. */
const BASE_SECONDS = Math.floor((Date.now() - 20 * 60 * 1000) / 60_000) * 60;
const at = (seconds: number, nanos = 0): Timestamp => ({ seconds: BASE_SECONDS + seconds, nanos });
const seconds = (s: number) => ({ seconds: s, nanos: 0 });

const point = (p: Partial<MetricPoint>): Partial<MetricPoint> => ({ labels: {}, ...p });

async function record(points: Partial<MetricPoint>[], client: CairnClient = h.client, batch = 1000) {
  for (let i = 0; i < points.length; i += batch) await client.metrics.recordMetrics({ points: points.slice(i, i + batch) });
}

async function query(request: Partial<QueryMetricsRequest>, client: CairnClient = h.client) {
  return (await client.metrics.queryMetrics({ startTime: at(-3600), ...request })).series;
}

/** PostgreSQL's percentile_cont: linear interpolation between the two nearest ranks. */
function percentile(values: readonly number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const position = fraction * (sorted.length - 1);
  const lo = Math.floor(position);
  const hi = Math.ceil(position);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (position - lo);
}

const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

describe("RecordMetrics / QueryMetrics, raw points", () => {
  it("returns the recorded points of a series in time order, within [start_time, end_time)", async () => {
    const name = uid("tokens");
    await record([
      point({ name, entity: "planner", value: 3, time: at(20) }),
      point({ name, entity: "planner", value: 1, time: at(10, 123_456_000) }),
      point({ name, entity: "planner", value: 2, time: at(15) }),
      point({ name, entity: "planner", value: 9, time: at(30) }),
      point({ name, entity: "planner", value: 8, time: at(9) }),
    ]);
    const series = await query({ name, entity: "planner", startTime: at(10), endTime: at(30) });
    expect(series).toEqual([
      {
        name,
        entity: "planner",
        labels: {},
        points: [
          { time: at(10, 123_456_000), value: 1 },
          { time: at(15), value: 2 },
          { time: at(20), value: 3 },
        ],
      },
    ]);
  });

  it("stamps a point without a time with the time it was recorded, and end_time defaults to now", async () => {
    const name = uid("latency");
    const before = Date.now();
    await record([point({ name, entity: "e", value: 42.5 })]);
    const after = Date.now();
    const [series] = await query({ name, entity: "e", startTime: { seconds: Math.floor(before / 1000) - 1, nanos: 0 } });
    expect(series!.points).toHaveLength(1);
    const stamped = series!.points[0]!.time!.seconds * 1000 + series!.points[0]!.time!.nanos / 1e6;
    expect(stamped).toBeGreaterThanOrEqual(before - 1000);
    expect(stamped).toBeLessThanOrEqual(after + 1000);
    expect(series!.points[0]!.value).toBe(42.5);
  });

  it("keeps a series per (name, entity, labels), ordered by name, entity, labels", async () => {
    const name = uid("cost");
    await record([
      point({ name, entity: "b", value: 1, time: at(1) }),
      point({ name, entity: "a", labels: { model: "m2" }, value: 2, time: at(2) }),
      point({ name, entity: "a", labels: { model: "m1" }, value: 3, time: at(3) }),
      point({ name, entity: "a", labels: { model: "m1" }, value: 4, time: at(4) }),
    ]);
    const series = await query({ name });
    expect(series.map((s) => [s.entity, s.labels, s.points.map((p) => p.value)])).toEqual([
      ["a", { model: "m1" }, [3, 4]],
      ["a", { model: "m2" }, [2]],
      ["b", {}, [1]],
    ]);
  });

  it("selects series whose labels include every given pair", async () => {
    const name = uid("calls");
    await record([
      point({ name, entity: "x", labels: { model: "m1", region: "eu" }, value: 1, time: at(1) }),
      point({ name, entity: "x", labels: { model: "m2", region: "eu" }, value: 2, time: at(2) }),
      point({ name, entity: "x", labels: { model: "m1", region: "us" }, value: 3, time: at(3) }),
      point({ name, entity: "x", labels: { model: "m1" }, value: 4, time: at(4) }),
    ]);
    const labelsOf = async (labels: Record<string, string>) => (await query({ name, entity: "x", labels })).map((s) => s.labels);
    expect(await labelsOf({ model: "m1" })).toEqual([{ model: "m1" }, { model: "m1", region: "eu" }, { model: "m1", region: "us" }]);
    expect(await labelsOf({ model: "m1", region: "eu" })).toEqual([{ model: "m1", region: "eu" }]);
    expect(await labelsOf({ region: "ap" })).toEqual([]);
    expect(await labelsOf({})).toHaveLength(4);
  });

  it("name alone gives every entity of the name; entity alone every name of the entity", async () => {
    const entity = uid("agent");
    const other = uid("agent");
    const tokens = uid("tokens");
    const latency = uid("latency");
    await record([
      point({ name: tokens, entity, value: 10, time: at(1) }),
      point({ name: tokens, entity: other, value: 20, time: at(2) }),
      point({ name: latency, entity, value: 0.5, time: at(3) }),
    ]);
    const byName = await query({ name: tokens });
    expect(byName.map((s) => [s.name, s.entity])).toEqual(
      [
        [tokens, entity],
        [tokens, other],
      ].sort((a, b) => (a[1]! < b[1]! ? -1 : 1)),
    );
    const byEntity = await query({ entity });
    expect(byEntity.map((s) => [s.name, s.entity, s.points.map((p) => p.value)])).toEqual(
      [
        [latency, entity, [0.5]],
        [tokens, entity, [10]],
      ].sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1)),
    );
  });

  it("stores extreme finite values and times exactly", async () => {
    const name = uid("extreme");
    const values = [Number.MAX_VALUE, -Number.MIN_VALUE, 0.1 + 0.2, -1e-300];
    await record(values.map((value, i) => point({ name, entity: "e", value, time: at(i, 999_999_000) })));
    const [series] = await query({ name, entity: "e" });
    expect(series!.points.map((p) => p.value)).toEqual(values);
    expect(series!.points.map((p) => p.time)).toEqual(values.map((_, i) => at(i, 999_999_000)));
  });
});

describe("aggregations", () => {
  const name = uid("agg");
  const startTime = at(7); // steps start at start_time, not at a round time
  /** [seconds after start_time, value] of series "a": steps of 10 s at +0, +10 and +30; none at +20. */
  const samples: [number, number][] = [
    [0, 5], [1, 1], [3.5, 9], [9.999, 3],
    [10, 7], [12, 2], [15, 8], [19, 6], [19.5, 6],
    [30, 4], [31, 10], [32, 11], [33, 0.5], [34, 13], [35, 2.5], [36, 17], [37, 19], [38, 23], [39, 29], [39.9, 31],
  ];
  const time = (offset: number) => at(7 + Math.floor(offset), Math.round((offset % 1) * 1e9));
  beforeAll(async () => {
    await record([
      ...samples.map(([offset, value]) => point({ name, entity: "a", value, time: time(offset) })),
      point({ name, entity: "b", value: 100, time: time(5) }),
      point({ name, entity: "a", value: 1000, time: time(-1) }), // before start_time
      point({ name, entity: "a", value: 1000, time: time(40) }), // at end_time: excluded
    ]);
  });
  const steps = [0, 10, 30].map((step) => [step, samples.filter(([o]) => o >= step && o < step + 10).map(([, v]) => v)] as const);
  const all = samples.map(([, v]) => v);
  const expected = (
    [
      [Aggregation.AGGREGATION_COUNT, (v) => v.length],
      [Aggregation.AGGREGATION_SUM, sum],
      [Aggregation.AGGREGATION_AVG, (v) => sum(v) / v.length],
      [Aggregation.AGGREGATION_MIN, (v) => Math.min(...v)],
      [Aggregation.AGGREGATION_MAX, (v) => Math.max(...v)],
      [Aggregation.AGGREGATION_P50, (v) => percentile(v, 0.5)],
      [Aggregation.AGGREGATION_P95, (v) => percentile(v, 0.95)],
      [Aggregation.AGGREGATION_P99, (v) => percentile(v, 0.99)],
    ] as [Aggregation, (v: readonly number[]) => number][]
  ).map(([aggregation, compute]) => [Aggregation[aggregation]!, aggregation, compute] as const);

  it.each(expected)("%s per step: aligned to start_time, each at its step's start, empty steps left out", async (_, aggregation, compute) => {
    const series = await query({ name, entity: "a", startTime, endTime: time(40), step: seconds(10), aggregation });
    expect(series).toHaveLength(1);
    expect(series[0]!.points.map((p) => p.time)).toEqual(steps.map(([step]) => time(step)));
    series[0]!.points.forEach((p, i) => expect(p.value).toBeCloseTo(compute(steps[i]![1]), 9));
  });

  it.each(expected)("%s without a step: one value for the whole range, at start_time", async (_, aggregation, compute) => {
    const series = await query({ name, startTime, endTime: time(40), aggregation });
    expect(series.map((s) => s.entity)).toEqual(["a", "b"]);
    expect(series[0]!.points).toHaveLength(1);
    expect(series[0]!.points[0]!.time).toEqual(startTime);
    expect(series[0]!.points[0]!.value).toBeCloseTo(compute(all), 9);
    expect(series[1]!.points).toEqual([{ time: startTime, value: compute([100]) }]);
  });

  it("a step that does not divide the range still starts at start_time; end_time cuts the last one", async () => {
    const series = await query({ name, entity: "a", startTime, endTime: time(32), step: seconds(25), aggregation: Aggregation.AGGREGATION_COUNT });
    expect(series[0]!.points).toEqual([
      { time: startTime, value: samples.filter(([o]) => o < 25).length },
      { time: time(25), value: samples.filter(([o]) => o >= 25 && o < 32).length },
    ]);
  });

  it("a sum beyond the range of a double is OUT_OF_RANGE, not INTERNAL", async () => {
    const huge = uid("huge");
    await record([point({ name: huge, entity: "e", value: Number.MAX_VALUE, time: at(1) }), point({ name: huge, entity: "e", value: Number.MAX_VALUE, time: at(2) })]);
    const f = await failure(query({ name: huge, entity: "e", aggregation: Aggregation.AGGREGATION_SUM }));
    expect(f).toMatchObject({ code: status.OUT_OF_RANGE, reason: "OUT_OF_RANGE" });
    const [max] = await query({ name: huge, entity: "e", aggregation: Aggregation.AGGREGATION_MAX });
    expect(max!.points[0]!.value).toBe(Number.MAX_VALUE);
  });
});

describe("bounds", () => {
  it("a raw result past the message limit is RESOURCE_EXHAUSTED MESSAGE_TOO_LARGE; a step brings it under", async () => {
    const name = uid("dense");
    const count = Math.ceil(MAX_MESSAGE_BYTES / 20);
    await record(Array.from({ length: count }, (_, i) => point({ name, entity: "e", value: i, time: at(0, i * 1000) })));
    const f = await failure(query({ name, entity: "e" }));
    expect(f).toMatchObject({ code: status.RESOURCE_EXHAUSTED, reason: "MESSAGE_TOO_LARGE", metadata: { limit: String(MAX_MESSAGE_BYTES) } });
    // Refused in the database, before any of it was read out: the error asks for a narrower query.
    expect(f.message).toMatch(/aggregate with a step/);
    const [series] = await query({ name, entity: "e", startTime: at(0), endTime: at(10), step: { seconds: 0, nanos: 1_000_000 }, aggregation: Aggregation.AGGREGATION_SUM });
    expect(series!.points).toHaveLength(Math.ceil(count / 1000));
    expect(sum(series!.points.map((p) => p.value))).toBe(((count - 1) * count) / 2);
  });

  it("many series whose labels pass the limit together are refused the same way", async () => {
    const name = uid("wide");
    const value = "v".repeat(250);
    const labels = (i: number) => Object.fromEntries(Array.from({ length: 10 }, (_, k) => [`k${k}`, `${i}-${value}`]));
    const points = Array.from({ length: Math.ceil(MAX_MESSAGE_BYTES / 2500) }, (_, i) => point({ name, entity: "e", labels: labels(i), value: i, time: at(1) }));
    await record(points, h.client, 20);
    const f = await failure(query({ name, aggregation: Aggregation.AGGREGATION_COUNT }));
    expect(f).toMatchObject({ code: status.RESOURCE_EXHAUSTED, reason: "MESSAGE_TOO_LARGE" });
    expect(f.message).toMatch(/aggregate with a step/);
  });
});

describe("validation", () => {
  async function rejected(call: Promise<unknown>, field: string) {
    const f = await failure(call);
    expect(f.code, f.message).toBe(status.INVALID_ARGUMENT);
    expect(f.fields).toContain(field);
  }
  const good = () => point({ name: uid("v"), entity: "e", value: 1, time: at(1) });

  it("RecordMetrics names the offending field and writes nothing of the batch", async () => {
    const name = uid("atomic");
    const batch = (bad: Partial<MetricPoint>) => [point({ name, entity: "e", value: 1, time: at(1) }), { ...good(), ...bad }];
    await rejected(h.client.metrics.recordMetrics({ points: batch({ value: Number.NaN }) }), "points[1].value");
    await rejected(h.client.metrics.recordMetrics({ points: batch({ value: Number.POSITIVE_INFINITY }) }), "points[1].value");
    await rejected(h.client.metrics.recordMetrics({ points: batch({ name: "" }) }), "points[1].name");
    await rejected(h.client.metrics.recordMetrics({ points: batch({ entity: "x".repeat(257) }) }), "points[1].entity");
    await rejected(h.client.metrics.recordMetrics({ points: batch({ name: "tab\there" }) }), "points[1].name");
    await rejected(h.client.metrics.recordMetrics({ points: batch({ labels: { "": "v" } }) }), 'points[1].labels[""]');
    await rejected(h.client.metrics.recordMetrics({ points: batch({ labels: { k: "x".repeat(257) } }) }), 'points[1].labels["k"]');
    await rejected(h.client.metrics.recordMetrics({ points: batch({ sessionId: "not an id" }) }), "points[1].session_id");
    await rejected(h.client.metrics.recordMetrics({ points: batch({ time: { seconds: 0, nanos: -1 } }) }), "points[1].time");
    expect(await query({ name, entity: "e" })).toEqual([]);
    await h.client.metrics.recordMetrics({ points: batch({}) });
    expect(await query({ name, entity: "e" })).toHaveLength(1);
  });

  it("a batch is 1..1000 points", async () => {
    await rejected(h.client.metrics.recordMetrics({ points: [] }), "points");
    const name = uid("big");
    await rejected(h.client.metrics.recordMetrics({ points: Array.from({ length: 1001 }, () => point({ name, entity: "e", value: 1, time: at(1) })) }), "points");
    expect(await query({ name, entity: "e" })).toEqual([]);
  });

  it("QueryMetrics names the offending field", async () => {
    await rejected(h.client.metrics.queryMetrics({ startTime: at(0) }), "name");
    await rejected(h.client.metrics.queryMetrics({ name: "n" }), "start_time");
    await rejected(h.client.metrics.queryMetrics({ name: "n", startTime: at(10), endTime: at(10) }), "end_time");
    await rejected(h.client.metrics.queryMetrics({ name: "n", startTime: at(0), step: seconds(1) }), "aggregation");
    await rejected(h.client.metrics.queryMetrics({ name: "n", startTime: at(0), aggregation: 99 as Aggregation }), "aggregation");
    const step = (s: { seconds: number; nanos: number }) => ({ name: "n", startTime: at(0), endTime: at(60), step: s, aggregation: Aggregation.AGGREGATION_AVG });
    await rejected(h.client.metrics.queryMetrics(step({ seconds: 0, nanos: 999_999 })), "step");
    await rejected(h.client.metrics.queryMetrics(step({ seconds: 0, nanos: 0 })), "step");
    await rejected(h.client.metrics.queryMetrics(step({ seconds: -5, nanos: 0 })), "step");
    // 60 s in steps of 5 ms is 12,000 steps.
    await rejected(h.client.metrics.queryMetrics(step({ seconds: 0, nanos: 5_000_000 })), "step");
    await h.client.metrics.queryMetrics(step({ seconds: 0, nanos: 6_000_000 }));
    await rejected(h.client.metrics.queryMetrics({ name: "n", startTime: at(0), labels: { "": "x" } }), 'labels[""]');
    await rejected(h.client.metrics.queryMetrics({ entity: "bell\u0007", startTime: at(0) }), "entity");
  });
});

describe("namespaces, session cascade and retention", () => {
  it("a namespace sees only its own points", async () => {
    const blue = new CairnClient(h.daemon.address, { namespace: "team-blue" });
    try {
      const name = uid("ns");
      await record([point({ name, entity: "e", value: 1, time: at(1) })]);
      await record([point({ name, entity: "e", value: 2, time: at(2) })], blue);
      expect((await query({ name }))[0]!.points.map((p) => p.value)).toEqual([1]);
      expect((await query({ name }, blue))[0]!.points.map((p) => p.value)).toEqual([2]);
      expect(await query({ entity: "e", name, aggregation: Aggregation.AGGREGATION_COUNT }, blue)).toEqual([
        { name, entity: "e", labels: {}, points: [{ time: at(-3600), value: 1 }] },
      ]);
    } finally {
      blue.close();
    }
  });

  it("deleting a session deletes its points, and only its own", async () => {
    const name = uid("cascade");
    const kept = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const doomed = await h.client.sessions.createSession({ session: { agentId: "a" } });
    const blue = new CairnClient(h.daemon.address, { namespace: "team-blue" });
    try {
      await record([
        point({ name, entity: "e", value: 1, time: at(1), sessionId: doomed.sessionId }),
        point({ name, entity: "e", value: 2, time: at(2), sessionId: kept.sessionId }),
        point({ name, entity: "e", value: 3, time: at(3) }),
      ]);
      // The same session id in another namespace is another session's.
      await record([point({ name, entity: "e", value: 4, time: at(4), sessionId: doomed.sessionId })], blue);
      await h.client.sessions.deleteSession({ sessionId: doomed.sessionId });
      expect((await query({ name, entity: "e" }))[0]!.points.map((p) => p.value)).toEqual([2, 3]);
      expect((await query({ name, entity: "e" }, blue))[0]!.points.map((p) => p.value)).toEqual([4]);
    } finally {
      blue.close();
    }
  });

  it("the reaper deletes points older than CAIRN_METRIC_RETENTION_MS", async () => {
    const name = uid("retention");
    const now = Math.floor(Date.now() / 1000);
    const old = { seconds: now - RETENTION_MS / 1000 - 60, nanos: 0 };
    const recent = { seconds: now - RETENTION_MS / 1000 + 600, nanos: 0 };
    await record([point({ name, entity: "e", value: 1, time: old }), point({ name, entity: "e", value: 2, time: recent })]);
    const stored = async () => (await h.sql.query("SELECT value FROM metric_points WHERE name = $1 ORDER BY time", [name])).rows.map((r) => r.value);
    await waitFor("the reaper to delete the old point", async () => (await stored()).length === 1);
    expect(await stored()).toEqual([2]);
    expect((await query({ name, startTime: old }))[0]!.points.map((p) => p.value)).toEqual([2]);
  });
});
