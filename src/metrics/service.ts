// MetricService handlers: validate, convert between wire and store types,
// call the store. No SQL here.
import { Aggregation, type MetricPoint, MetricServiceService, type QueryMetricsRequest, type Timestamp } from "@cairn/client";
import type { Limits } from "../config.js";
import { isoFromTimestamp, positiveDurationMicros } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { Violations, checkBatchSize, checkId, checkLabels, checkReference } from "../grpc/validate.js";
import { isoToEpochMicros, nowMicros } from "../time.js";
import * as store from "./store.js";
import type { AggregationName, MetricQuery, NewPoint, SeriesRecord } from "./store.js";

const AGGREGATIONS = enumCodec<Aggregation, AggregationName>(Aggregation, "AGGREGATION_");

/** Steps in one query's range, at most (Prometheus' bound on a range query's resolution). */
const MAX_STEPS = 11_000;
const MIN_STEP_MICROS = 1_000;

function toNewPoint(v: Violations, p: MetricPoint, at: string, limits: Limits): NewPoint {
  checkReference(v, `${at}name`, p.name, true);
  checkReference(v, `${at}entity`, p.entity, true);
  checkLabels(v, `${at}labels`, p.labels, limits);
  if (!Number.isFinite(p.value)) v.add(`${at}value`, "must be a finite number (not NaN or Infinity)");
  const time = v.collect(() => isoFromTimestamp(p.time, `${at}time`));
  checkId(v, `${at}session_id`, p.sessionId, false);
  return { name: p.name, entity: p.entity, labels: p.labels, value: p.value, time, sessionId: p.sessionId || null };
}

/**
 * The step in microseconds, or null without one. A step needs an
 * aggregation (there is no default way to combine a step's points), and its
 * number over the range is bounded; the range's end defaults to now.
 */
function toStepMicros(v: Violations, request: QueryMetricsRequest, startTime: string | null, endTime: string | null): number | null {
  if (!request.step) return null;
  const step = v.collect(() => positiveDurationMicros(request.step!, "step"));
  if (request.aggregation === Aggregation.AGGREGATION_UNSPECIFIED) {
    v.add("aggregation", `is required with a step: one of ${AGGREGATIONS.names.map((n) => AGGREGATIONS.fullName(n)).join(", ")}`);
  }
  if (step === null) return null;
  if (step < MIN_STEP_MICROS) {
    v.add("step", "must be at least 1 ms");
    return null;
  }
  if (startTime !== null) {
    const range = (endTime === null ? nowMicros() : isoToEpochMicros(endTime)) - isoToEpochMicros(startTime);
    const steps = (range + BigInt(step) - 1n) / BigInt(step);
    if (steps > BigInt(MAX_STEPS)) v.add("step", `makes ${steps} steps of start_time..end_time; the limit is ${MAX_STEPS}`);
  }
  return step;
}

function toQuery(v: Violations, request: QueryMetricsRequest, limits: Limits): MetricQuery {
  checkReference(v, "name", request.name, false);
  checkReference(v, "entity", request.entity, false);
  if (request.name === "" && request.entity === "") v.add("name", "is required when entity is empty (give a name, an entity or both)");
  checkLabels(v, "labels", request.labels, limits);
  if (!request.startTime) v.add("start_time", "is required");
  const startTime = v.collect(() => isoFromTimestamp(request.startTime, "start_time"));
  const endTime = v.collect(() => isoFromTimestamp(request.endTime, "end_time"));
  if (startTime !== null && endTime !== null && isoToEpochMicros(endTime) <= isoToEpochMicros(startTime)) {
    v.add("end_time", "must be after start_time");
  }
  const aggregation =
    request.aggregation === Aggregation.AGGREGATION_UNSPECIFIED ? null : AGGREGATIONS.parse(v, "aggregation", request.aggregation);
  return {
    name: request.name || null,
    entity: request.entity || null,
    labels: request.labels,
    startTime: startTime ?? "",
    endTime,
    aggregation: aggregation ?? null,
    stepMicros: toStepMicros(v, request, startTime, endTime),
    budgetBytes: limits.maxMessageBytes,
  };
}

/** Microseconds since the epoch as a Timestamp (the store keeps every microsecond). */
function timestampFromMicros(micros: bigint): Timestamp {
  let seconds = micros / 1_000_000n;
  let fraction = micros % 1_000_000n;
  // BigInt division truncates toward zero; a Timestamp's nanos are never negative.
  if (fraction < 0n) {
    seconds -= 1n;
    fraction += 1_000_000n;
  }
  return { seconds: Number(seconds), nanos: Number(fraction) * 1000 };
}

function toWireSeries(s: SeriesRecord) {
  return {
    name: s.name,
    entity: s.entity,
    labels: s.labels,
    points: s.points.map((p) => ({ time: timestampFromMicros(p.timeMicros), value: p.value })),
  };
}

export function metricHandlers(deps: ServiceDeps): ServiceHandlers<typeof MetricServiceService> {
  const { db, limits } = deps;
  return {
    async recordMetrics(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "points", request.points.length, limits);
      // An oversized batch is refused before its points are looked at.
      v.throwIfAny();
      const points = request.points.map((p, i) => toNewPoint(v, p, `points[${i}].`, limits));
      v.throwIfAny();
      await store.recordPoints(db.on(ctx), ctx.namespace, points);
      return {};
    },

    async queryMetrics(request, ctx) {
      const v = new Violations();
      const query = toQuery(v, request, limits);
      v.throwIfAny();
      return { series: (await store.querySeries(db.on(ctx), ctx.namespace, query)).map(toWireSeries) };
    },
  };
}
