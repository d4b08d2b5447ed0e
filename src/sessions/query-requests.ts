// The read side of ListSessions, CountSessions and GetSessionStats
// requests: the filter, order_by and the page cursor, validated and turned
// into what queries.ts takes. No SQL, no I/O.
import type { SessionFilter as WireSessionFilter, Timestamp } from "@cairn/client";
import type { Limits } from "../config.js";
import { isoFromTimestamp } from "../grpc/convert.js";
import { decodePageToken } from "../grpc/pagination.js";
import { Violations, checkDocument, checkFilterList, checkId, checkLabels, checkReference } from "../grpc/validate.js";
import type { SessionCursor, SessionFilter, SessionOrder } from "./queries.js";
import type { SessionRecord } from "./store.js";
import { STATUS } from "./wire.js";

export function toFilter(v: Violations, filter: WireSessionFilter | undefined, limits: Limits): SessionFilter {
  const f: WireSessionFilter = filter ?? { agentId: "", userId: "", statuses: [], labels: {}, parentSessionId: "" };
  const time = (value: Timestamp | undefined, field: string) => v.collect(() => isoFromTimestamp(value, `filter.${field}`));
  checkReference(v, "filter.agent_id", f.agentId, false);
  checkId(v, "filter.parent_session_id", f.parentSessionId, false);
  checkReference(v, "filter.user_id", f.userId, false);
  checkFilterList(v, "filter.statuses", f.statuses.length, limits);
  checkLabels(v, "filter.labels", f.labels, limits);
  const statuses = f.statuses.map((s, i) => STATUS.parse(v, `filter.statuses[${i}]`, s)).filter((s) => s !== undefined);
  checkDocument(v, "filter.metadata_contains", f.metadataContains, limits);
  checkDocument(v, "filter.state_contains", f.stateContains, limits);
  return {
    agentId: f.agentId || null,
    userId: f.userId || null,
    statuses: [...new Set(statuses)].sort(),
    labels: f.labels,
    metadataContains: f.metadataContains ?? null,
    stateContains: f.stateContains ?? null,
    createdAfter: time(f.createdAfter, "created_after"),
    createdBefore: time(f.createdBefore, "created_before"),
    updatedAfter: time(f.updatedAfter, "updated_after"),
    updatedBefore: time(f.updatedBefore, "updated_before"),
    endedAfter: time(f.endedAfter, "ended_after"),
    endedBefore: time(f.endedBefore, "ended_before"),
    parentSessionId: f.parentSessionId || null,
  };
}

/** Each order_by column's value in a session: the first part of its page key. */
export const ORDER_KEY: Record<SessionOrder["column"], (s: SessionRecord) => string | null> = {
  create_time: (s) => s.createTime,
  update_time: (s) => s.updateTime,
  end_time: (s) => s.endTime,
};
const ORDER_COLUMNS = Object.keys(ORDER_KEY) as SessionOrder["column"][];

/** Where a page token says the page starts; ordered by end_time, past the ended sessions its time is null. */
export function decodeSessionCursor(token: string, bound: unknown, order: SessionOrder): SessionCursor | undefined {
  const key =
    order.column === "end_time" ? decodePageToken(token, bound, ["time?", "id"]) : decodePageToken(token, bound, ["time", "id"]);
  return key && { time: key[0], sessionId: key[1] };
}

export function parseOrderBy(v: Violations, orderBy: string): SessionOrder {
  const words = orderBy.trim().split(/\s+/).filter(Boolean);
  const [column = "create_time", direction = "asc", ...rest] = words;
  const known = ORDER_COLUMNS.find((c) => c === column);
  if (!known || !["asc", "desc"].includes(direction.toLowerCase()) || rest.length) {
    v.add("order_by", 'must be "create_time", "update_time" or "end_time", optionally followed by " desc"');
    return { column: "create_time", descending: false };
  }
  return { column: known, descending: direction.toLowerCase() === "desc" };
}
