// SQL for metric points. A point is one row of metric_points; a series is a
// (name, entity, labels) combination, grouped at query time. Every index is
// led by the namespace and ends in time (see the migration), so a query's
// range is one index range scan. Results are bounded in the database: a
// query whose series would pass the byte budget sends back only that verdict.
import { inBatches } from "../db/batches.js";
import type { Queryable } from "../db/database.js";
import { isNumericOverflow } from "../db/errors.js";
import { metricQueryTooLarge, outOfRange } from "../errors.js";

export type AggregationName = "COUNT" | "SUM" | "AVG" | "MIN" | "MAX" | "P50" | "P95" | "P99";
type Labels = Record<string, string>;

export interface NewPoint {
  name: string;
  entity: string;
  labels: Labels;
  value: number;
  /** null: now (the recording transaction's time). */
  time: string | null;
  sessionId: string | null;
}

export interface MetricQuery {
  /** null: every name of the entity. */
  name: string | null;
  /** null: every entity of the name. */
  entity: string | null;
  /** Series whose labels contain these pairs. */
  labels: Labels;
  startTime: string;
  /** null: now. */
  endTime: string | null;
  /** Without an aggregation: the points themselves. */
  aggregation: AggregationName | null;
  /** With an aggregation: steps of this length from startTime; null: one step for the whole range. */
  stepMicros: number | null;
  /** The result's size limit, as estimated below. */
  budgetBytes: number;
}

export interface SeriesPoint {
  /** Microseconds since the Unix epoch: the point's time, or its step's start. */
  timeMicros: bigint;
  value: number;
}

export interface SeriesRecord {
  name: string;
  entity: string;
  labels: Labels;
  points: SeriesPoint[];
}

/**
 * What a result's parts cost on the wire: a point (a Timestamp and a double
 * in a DataPoint) at most, and a series' framing on top of its name, entity
 * and labels (measured as their JSON text, about their protobuf encoding).
 * An estimate, to stop in the database; the exact check is the response's
 * own size against the message limit (grpc/handlers.ts).
 */
const POINT_BYTES = 32;
const SERIES_BYTES = 64;

/** Fixed SQL per aggregation: the enum's name picks one, nothing of the input reaches the text. */
const AGGREGATES: Record<AggregationName, string> = {
  COUNT: "count(*)::double precision",
  SUM: "sum(value)",
  AVG: "avg(value)",
  MIN: "min(value)",
  MAX: "max(value)",
  P50: "percentile_cont(0.5) WITHIN GROUP (ORDER BY value)",
  P95: "percentile_cont(0.95) WITHIN GROUP (ORDER BY value)",
  P99: "percentile_cont(0.99) WITHIN GROUP (ORDER BY value)",
};

/** Records every point or none, in one statement. */
export async function recordPoints(q: Queryable, ns: string, points: NewPoint[]): Promise<void> {
  await q.query(
    `INSERT INTO metric_points (namespace, name, entity, labels, value, time, session_id)
     SELECT $1, p.name, p.entity, p.labels::jsonb, p.value, coalesce(p.time, now()), p.session_id
       FROM unnest($2::text[], $3::text[], $4::text[], $5::double precision[], $6::timestamptz[], $7::text[])
         AS p (name, entity, labels, value, time, session_id)`,
    [
      ns,
      points.map((p) => p.name),
      points.map((p) => p.entity),
      points.map((p) => JSON.stringify(p.labels)),
      points.map((p) => p.value),
      points.map((p) => p.time),
      points.map((p) => p.sessionId),
    ],
  );
}

/** The step a row falls in: its own time for raw points, else the start of its step ($9: the step's µs). */
function bucketSql(query: MetricQuery): string {
  if (query.aggregation === null) return "time";
  if (query.stepMicros === null) return "$5::timestamptz";
  return "date_bin($9::bigint * interval '1 microsecond', time, $5::timestamptz)";
}

/**
 * The rows of the query's range, with their step (`bucket`). Raw points are
 * capped ($7) at one more than could fit the budget, so an oversized range
 * reads no further; aggregations read the whole range (NULL: no limit).
 * `$2 IS NULL OR name = $2` folds away: unnamed statements are planned with
 * their values, so the planner picks the index of the query's shape.
 */
function matchedSql(query: MetricQuery): string {
  return `SELECT name, entity, labels, ${bucketSql(query)} AS bucket, value
            FROM metric_points
           WHERE namespace = $1
             AND ($2::text IS NULL OR name = $2)
             AND ($3::text IS NULL OR entity = $3)
             AND labels @> $4::jsonb
             AND time >= $5::timestamptz AND time < coalesce($6::timestamptz, now())
           LIMIT $7::bigint + 1`;
}

function bucketsSql(query: MetricQuery): string {
  if (query.aggregation === null) return "SELECT * FROM matched";
  return `SELECT name, entity, labels, bucket, ${AGGREGATES[query.aggregation]} AS value
            FROM matched GROUP BY name, entity, labels, bucket`;
}

interface SeriesRow {
  too_large: boolean;
  name: string | null;
  entity: string | null;
  labels: Labels | null;
  point_times: string[] | null;
  point_values: number[] | null;
}

/**
 * The query's series in name, entity, labels order, each with its points
 * in time order; throws MESSAGE_TOO_LARGE (RESOURCE_EXHAUSTED) when they
 * would pass the budget. One statement, one row at least: the verdict, with
 * the series only when they fit.
 */
export async function querySeries(q: Queryable, ns: string, query: MetricQuery): Promise<SeriesRecord[]> {
  // More raw points than this cannot fit: each costs POINT_BYTES.
  const maxRawPoints = query.aggregation === null ? Math.floor(query.budgetBytes / POINT_BYTES) : null;
  const { name, entity, labels, startTime, endTime, budgetBytes } = query;
  const values: unknown[] = [ns, name, entity, JSON.stringify(labels), startTime, endTime, maxRawPoints, budgetBytes];
  // Given only when the SQL names it: a parameter the text never uses has no type.
  if (query.aggregation !== null && query.stepMicros !== null) values.push(query.stepMicros);
  let rows: SeriesRow[];
  try {
    const result = await q.query<SeriesRow>(
      `WITH matched AS (${matchedSql(query)}),
       buckets AS (${bucketsSql(query)}),
       series AS (
         SELECT name, entity, labels,
                array_agg((extract(epoch FROM bucket) * 1000000)::bigint ORDER BY bucket) AS point_times,
                array_agg(value ORDER BY bucket) AS point_values,
                ${SERIES_BYTES} + octet_length(name) + octet_length(entity) + octet_length(labels::text) + ${POINT_BYTES} * count(*) AS bytes
           FROM buckets GROUP BY name, entity, labels
       ),
       verdict AS (SELECT coalesce(sum(bytes), 0) > $8::bigint AS too_large FROM series)
       SELECT v.too_large, s.name, s.entity, s.labels, s.point_times, s.point_values
         FROM verdict v LEFT JOIN series s ON NOT v.too_large
        ORDER BY s.name COLLATE "C", s.entity COLLATE "C", s.labels`,
      values,
    );
    rows = result.rows;
  } catch (error) {
    if (isNumericOverflow(error)) throw outOfRange("an aggregate of these points overflows a double (beyond ±1.8e308)");
    throw error;
  }
  if (rows[0]!.too_large) throw metricQueryTooLarge(query.budgetBytes);
  return rows.filter((r) => r.name !== null).map(toSeries);
}

function toSeries(row: SeriesRow): SeriesRecord {
  const values = row.point_values!;
  return {
    name: row.name!,
    entity: row.entity!,
    labels: row.labels!,
    // int8[] arrives as decimal strings: BigInt keeps every microsecond.
    points: row.point_times!.map((micros, i) => ({ timeMicros: BigInt(micros), value: values[i]! })),
  };
}

async function deleteExpiredBatch(q: Queryable, retentionMs: number, limit: number): Promise<number> {
  // By ctid: the index on time finds the oldest rows, a TID scan deletes them.
  const result = await q.query(
    `DELETE FROM metric_points WHERE ctid = ANY (ARRAY(
       SELECT ctid FROM metric_points WHERE time < now() - $1::bigint * interval '1 millisecond' LIMIT $2))`,
    [retentionMs, limit],
  );
  return result.rowCount ?? 0;
}

/** Deletes points older than the retention, in every namespace, in batches (the reaper); returns how many. */
export function deleteExpired(q: Queryable, retentionMs: number): Promise<number> {
  return inBatches((limit) => deleteExpiredBatch(q, retentionMs, limit));
}

/** Deletes the points of these sessions (of namespace `ns`), inside a session delete. */
export async function onSessionsDeleted(tx: Queryable, ns: string, sessionIds: string[]): Promise<void> {
  await tx.query(`DELETE FROM metric_points WHERE namespace = $1 AND session_id = ANY ($2::text[])`, [ns, sessionIds]);
}
