// SQL for the filtered queries over a namespace's sessions: ListSessions
// (keyset pages by create, update or end time), CountSessions and
// GetSessionStats, all sharing one WHERE clause (FILTER_SQL). Reads the
// sessions table only.
import type { Fields } from "../db/columns.js";
import type { Queryable } from "../db/database.js";
import { omitting, type Page, type PageLimits, type Paged, pagedSql, rowSize, toPage } from "../db/pages.js";
import { FIELDS, jsonOrNull, type JsonObject, SIZES, type SessionDocument, type SessionRecord, type SessionStatusName } from "./store.js";

export interface SessionFilter {
  agentId: string | null;
  userId: string | null;
  statuses: SessionStatusName[];
  labels: Record<string, string>;
  metadataContains: JsonObject | null;
  stateContains: JsonObject | null;
  createdAfter: string | null;
  createdBefore: string | null;
  updatedAfter: string | null;
  updatedBefore: string | null;
  endedAfter: string | null;
  endedBefore: string | null;
  parentSessionId: string | null;
}

export type SessionOrderColumn = "create_time" | "update_time" | "end_time";

export interface SessionOrder {
  column: SessionOrderColumn;
  descending: boolean;
}

export interface SessionStats {
  total: number;
  byStatus: Record<SessionStatusName, number>;
  avgDurationMicros: number | null;
  oldestActiveCreateTime: string | null;
}

/**
 * Parameters $1..$14 of every filtered query, in this order (see
 * filterParams): the namespace first, so every index that serves a filter
 * (all namespace-led but the GIN containment ones) can lead with it.
 */
const FILTER_SQL = `namespace = $1
  AND ($2::text IS NULL OR agent_id = $2)
  AND ($3::text IS NULL OR user_id = $3)
  AND (cardinality($4::text[]) = 0 OR status = ANY ($4::text[]))
  AND labels @> $5::jsonb
  AND ($6::jsonb IS NULL OR metadata @> $6::jsonb)
  AND ($7::jsonb IS NULL OR state @> $7::jsonb)
  AND ($8::timestamptz IS NULL OR create_time > $8)
  AND ($9::timestamptz IS NULL OR create_time < $9)
  AND ($10::timestamptz IS NULL OR update_time > $10)
  AND ($11::timestamptz IS NULL OR update_time < $11)
  AND ($12::timestamptz IS NULL OR end_time > $12)
  AND ($13::timestamptz IS NULL OR end_time < $13)
  AND ($14::text IS NULL OR parent_session_id = $14)`;

function filterParams(ns: string, f: SessionFilter): unknown[] {
  return [
    ns,
    f.agentId,
    f.userId,
    f.statuses,
    JSON.stringify(f.labels),
    jsonOrNull(f.metadataContains),
    jsonOrNull(f.stateContains),
    f.createdAfter,
    f.createdBefore,
    f.updatedAfter,
    f.updatedBefore,
    f.endedAfter,
    f.endedBefore,
    f.parentSessionId,
  ];
}

/** A list page's cursor (its time NULL past the sessions with an end time), row limit and byte budget, after the filter's parameters. */
const PAGE_PARAMS = { time: "$15", id: "$16", limit: "$17", budget: "$18" } as const;

/** Where a page starts: after this row of the order. */
export interface SessionCursor {
  /** The row's order column; null for a session without an end time (order_by end_time). */
  time: string | null;
  sessionId: string;
}

/**
 * A list page, built from constants only: keyset pagination on (column,
 * session_id) with the cursor, row limit and byte budget in PAGE_PARAMS
 * (see db/pages.ts). Run unnamed (q.query, not q.prepared): the
 * `$n IS NULL OR …` filters need a plan for each call's values, and a
 * generic plan would use the labels index for every filter
 * (`npx tsx bench/explain-filters.ts` prints both).
 */
function listSql(order: SessionOrder, omit: readonly SessionDocument[]): string {
  if (order.column === "end_time") return endTimeListSql(order.descending, omit);
  const { time, id, limit, budget } = PAGE_PARAMS;
  const direction = order.descending ? "DESC" : "ASC";
  const after = order.descending ? "<" : ">";
  const key = order.column === "create_time" ? "createTime" : "updateTime";
  return pagedSql({
    fields: omitting(FIELDS, omit),
    size: rowSize(SIZES, omit),
    from: `FROM sessions
      WHERE ${FILTER_SQL}
        AND (${time}::timestamptz IS NULL OR (${order.column}, session_id) ${after} (${time}, ${id}::text))`,
    order: [
      [key, direction],
      ["sessionId", direction],
    ],
    limit,
    budget,
  });
}

/**
 * order_by end_time: the sessions that ended, in (end_time, session_id)
 * order, then those without an end time, in session_id order, in both
 * directions. No one index order puts NULLs last both ways, so each group
 * is a branch of its own, read in order from sessions_end_time_idx (which
 * holds the NULLs too) and stopped at the row limit; `unended` orders the
 * branches. A cursor with a NULL time is past every ended session.
 */
function endTimeListSql(descending: boolean, omit: readonly SessionDocument[]): string {
  const { time, id, limit, budget } = PAGE_PARAMS;
  const direction = descending ? "DESC" : "ASC";
  const after = descending ? "<" : ">";
  const branch = (unended: boolean, where: string, order: string) =>
    `(SELECT *, ${unended} AS unended FROM sessions WHERE ${FILTER_SQL} AND ${where} ORDER BY ${order} LIMIT ${limit}::int + 1)`;
  const ended = branch(
    false,
    `end_time IS NOT NULL AND (${id}::text IS NULL OR (end_time, session_id) ${after} (${time}::timestamptz, ${id}::text))`,
    `end_time ${direction}, session_id ${direction}`,
  );
  const unended = branch(
    true,
    `end_time IS NULL AND (${id}::text IS NULL OR ${time}::timestamptz IS NOT NULL OR session_id ${after} ${id}::text)`,
    `session_id ${direction}`,
  );
  const fields: Fields<SessionRecord & { unended: boolean }> = { ...omitting(FIELDS, omit), unended: "unended" };
  return pagedSql({
    fields,
    size: rowSize(SIZES, omit),
    from: `FROM (${ended} UNION ALL ${unended}) AS ordered`,
    order: [
      ["unended", "ASC"],
      ["endTime", direction],
      ["sessionId", direction],
    ],
    limit,
    budget,
  });
}

/** A page in `order` after the keyset `after`; `omit`: documents left out (NULL). */
export async function listSessions(
  q: Queryable,
  ns: string,
  filter: SessionFilter,
  order: SessionOrder,
  limits: PageLimits,
  after: SessionCursor | undefined,
  omit: readonly SessionDocument[] = [],
): Promise<Page<SessionRecord>> {
  const result = await q.query<Paged<SessionRecord>>(listSql(order, omit), [
    ...filterParams(ns, filter),
    after?.time ?? null,
    after?.sessionId ?? null,
    limits.rows,
    limits.bytes,
  ]);
  return toPage(result.rows);
}

export async function countSessions(q: Queryable, ns: string, filter: SessionFilter): Promise<number> {
  const result = await q.query<{ count: number }>(
    `SELECT count(*)::bigint AS count FROM sessions WHERE ${FILTER_SQL}`,
    filterParams(ns, filter),
  );
  return result.rows[0]!.count;
}

export async function sessionStats(q: Queryable, ns: string, filter: SessionFilter): Promise<SessionStats> {
  const result = await q.query<{
    total: number;
    active: number;
    ended: number;
    error: number;
    avg_duration_micros: number | null;
    oldest_active: string | null;
  }>(
    `SELECT count(*)::bigint AS total,
            count(*) FILTER (WHERE status = 'ACTIVE')::bigint AS active,
            count(*) FILTER (WHERE status = 'ENDED')::bigint AS ended,
            count(*) FILTER (WHERE status = 'ERROR')::bigint AS error,
            (avg(extract(epoch FROM end_time - create_time)) FILTER (WHERE end_time IS NOT NULL)
               * 1000000)::float8 AS avg_duration_micros,
            min(create_time) FILTER (WHERE status = 'ACTIVE') AS oldest_active
       FROM sessions WHERE ${FILTER_SQL}`,
    filterParams(ns, filter),
  );
  const row = result.rows[0]!;
  return {
    total: row.total,
    byStatus: { ACTIVE: row.active, ENDED: row.ended, ERROR: row.error },
    avgDurationMicros: row.avg_duration_micros,
    oldestActiveCreateTime: row.oldest_active,
  };
}
