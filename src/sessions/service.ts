// SessionService handlers: validate, convert between wire and store types,
// call the store. No SQL here.
import {
  type AppendMessagesRequest,
  type CreateSessionRequest,
  type Message,
  type Session,
  type SessionFilter as WireSessionFilter,
  SessionServiceService,
  SessionStatus,
} from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import type { Limits } from "../config.js";
import { requestHash } from "../db/idempotency.js";
import { invalidPageToken } from "../errors.js";
import { durationFromMicros, isoFromTimestamp, timestampFromIso } from "../grpc/convert.js";
import type { ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageSize, paginate } from "../grpc/pagination.js";
import {
  Violations,
  checkBatchSize,
  checkDocument,
  checkId,
  checkLabels,
  checkText,
  checkUnique,
} from "../grpc/validate.js";
import type {
  MessageRecord,
  NewMessage,
  SessionCreate,
  SessionFilter,
  SessionOrder,
  SessionPatch,
  SessionRecord,
  SessionStatusName,
  SessionStore,
} from "./store.js";

const STATUS_NAMES = new Map<SessionStatus, SessionStatusName>([
  [SessionStatus.SESSION_STATUS_ACTIVE, "ACTIVE"],
  [SessionStatus.SESSION_STATUS_ENDED, "ENDED"],
  [SessionStatus.SESSION_STATUS_ERROR, "ERROR"],
]);
const STATUS_ENUMS = new Map([...STATUS_NAMES].map(([wire, name]) => [name, wire]));

export const UPDATE_MASK_PATHS = ["status", "labels", "metadata", "state", "user_id"] as const;
type MaskPath = (typeof UPDATE_MASK_PATHS)[number];

const MAX_ROLE_CHARS = 64;

export function toWireSession(record: SessionRecord): Session {
  return {
    sessionId: record.sessionId,
    agentId: record.agentId,
    userId: record.userId,
    status: STATUS_ENUMS.get(record.status)!,
    labels: record.labels,
    metadata: record.metadata ?? undefined,
    state: record.state ?? undefined,
    version: record.version,
    createTime: timestampFromIso(record.createTime),
    updateTime: timestampFromIso(record.updateTime),
    endTime: timestampFromIso(record.endTime),
  };
}

function toWireMessage(record: MessageRecord): Message {
  return {
    sessionId: record.sessionId,
    sequence: record.sequence,
    role: record.role,
    content: record.content,
    metadata: record.metadata ?? undefined,
    createTime: timestampFromIso(record.createTime),
  };
}

function statusName(v: Violations, field: string, status: SessionStatus, unspecifiedMeans?: SessionStatusName) {
  if (status === SessionStatus.SESSION_STATUS_UNSPECIFIED && unspecifiedMeans) return unspecifiedMeans;
  const name = STATUS_NAMES.get(status);
  if (!name) v.add(field, `must be one of ${[...STATUS_ENUMS.keys()].map((s) => `SESSION_STATUS_${s}`).join(", ")}`);
  return name;
}

function checkExpectedVersion(v: Violations, field: string, expected: number | undefined): void {
  if (expected !== undefined && expected < 1) v.add(field, "must be a version (1 or more) when set");
}

/** Validates one CreateSessionRequest; `at` prefixes field paths inside batches. */
function toSessionCreate(v: Violations, request: CreateSessionRequest, at: string, limits: Limits): SessionCreate {
  const session = request.session;
  if (!session) {
    v.add(`${at}session`, "is required");
    return { session: undefined as never, requestId: "", requestHash: "" };
  }
  if (request.sessionId !== "" && session.sessionId !== "" && request.sessionId !== session.sessionId) {
    v.add(`${at}session_id`, "differs from session.session_id; set one of them");
  }
  const idField = request.sessionId !== "" ? `${at}session_id` : `${at}session.session_id`;
  const givenId = request.sessionId || session.sessionId;
  checkId(v, idField, givenId, false);
  checkId(v, `${at}session.agent_id`, session.agentId, true);
  checkId(v, `${at}session.user_id`, session.userId, false);
  checkId(v, `${at}request_id`, request.requestId, false);
  checkLabels(v, `${at}session.labels`, session.labels);
  checkDocument(v, `${at}session.metadata`, session.metadata, limits);
  checkDocument(v, `${at}session.state`, session.state, limits);
  const status = statusName(v, `${at}session.status`, session.status, "ACTIVE") ?? "ACTIVE";
  return {
    session: {
      sessionId: givenId || uuidv7(),
      agentId: session.agentId,
      userId: session.userId,
      status,
      labels: session.labels,
      metadata: session.metadata ?? null,
      state: session.state ?? null,
    },
    requestId: request.requestId,
    // The request as sent, minus its request_id: a retry must match it exactly.
    requestHash: request.requestId ? requestHash({ sessionId: request.sessionId, session }) : "",
  };
}

function toFilter(v: Violations, filter: WireSessionFilter | undefined, limits: Limits): SessionFilter {
  const f = filter ?? { agentId: "", userId: "", statuses: [], labels: {} };
  const statuses = f.statuses.map((s, i) => statusName(v, `filter.statuses[${i}]`, s)).filter((s) => s !== undefined);
  checkDocument(v, "filter.metadata_contains", f.metadataContains, limits);
  checkDocument(v, "filter.state_contains", f.stateContains, limits);
  return {
    agentId: f.agentId || null,
    userId: f.userId || null,
    statuses: [...new Set(statuses)].sort(),
    labels: f.labels,
    metadataContains: f.metadataContains ?? null,
    stateContains: f.stateContains ?? null,
    createdAfter: v.collect(() => isoFromTimestamp(f.createdAfter, "filter.created_after")),
    createdBefore: v.collect(() => isoFromTimestamp(f.createdBefore, "filter.created_before")),
  };
}

function parseOrderBy(v: Violations, orderBy: string): SessionOrder {
  const words = orderBy.trim().split(/\s+/).filter(Boolean);
  const [column = "create_time", direction = "asc", ...rest] = words;
  if ((column !== "create_time" && column !== "update_time") || !["asc", "desc"].includes(direction.toLowerCase()) || rest.length) {
    v.add("order_by", 'must be "create_time" or "update_time", optionally followed by " desc"');
    return { column: "create_time", descending: false };
  }
  return { column, descending: direction.toLowerCase() === "desc" };
}

function sessionCursor(key: unknown[] | undefined): { time: string; sessionId: string } | undefined {
  if (!key) return undefined;
  const [time, sessionId] = key;
  if (typeof time !== "string" || typeof sessionId !== "string") throw invalidPageToken("is not a token this server issued");
  return { time, sessionId };
}

function toPatch(v: Violations, session: Session, paths: string[]): SessionPatch {
  const fields = new Set<MaskPath>();
  paths.forEach((path, i) => {
    if ((UPDATE_MASK_PATHS as readonly string[]).includes(path)) fields.add(path as MaskPath);
    else v.add(`update_mask.paths[${i}]`, `unknown path ${JSON.stringify(path)}; allowed: ${UPDATE_MASK_PATHS.join(", ")}`);
  });
  const all = paths.length === 0;
  const patch: SessionPatch = {};
  if (all || fields.has("status")) {
    // With an empty mask an unset status keeps the current one.
    patch.status = all && session.status === SessionStatus.SESSION_STATUS_UNSPECIFIED ? undefined : statusName(v, "session.status", session.status);
  }
  if (all || fields.has("user_id")) {
    checkId(v, "session.user_id", session.userId, false);
    patch.userId = session.userId;
  }
  if (all || fields.has("labels")) {
    checkLabels(v, "session.labels", session.labels);
    patch.labels = session.labels;
  }
  if (all || fields.has("metadata")) patch.metadata = session.metadata ?? null;
  if (all || fields.has("state")) patch.state = session.state ?? null;
  return patch;
}

function toNewMessages(v: Violations, request: AppendMessagesRequest, limits: Limits): NewMessage[] {
  checkBatchSize(v, "messages", request.messages.length, limits);
  return request.messages.map((m, i) => {
    checkText(v, `messages[${i}].role`, m.role, MAX_ROLE_CHARS, true);
    if (Buffer.byteLength(m.content, "utf8") > limits.maxDocumentBytes) {
      v.add(`messages[${i}].content`, `is larger than ${limits.maxDocumentBytes} bytes`);
    }
    checkDocument(v, `messages[${i}].metadata`, m.metadata, limits);
    return { role: m.role, content: m.content, metadata: m.metadata ?? null };
  });
}

export function sessionHandlers(store: SessionStore, limits: Limits): ServiceHandlers<typeof SessionServiceService> {
  return {
    async createSession(request, ctx) {
      const v = new Violations();
      const create = toSessionCreate(v, request, "", limits);
      v.throwIfAny();
      const [created] = await store.createSessions(ctx, [create]);
      return toWireSession(created!);
    },

    async getSession(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      v.throwIfAny();
      return toWireSession(await store.getSession(ctx, request.sessionId));
    },

    async updateSession(request, ctx) {
      const v = new Violations();
      if (!request.session) v.add("session", "is required");
      v.throwIfAny();
      const session = request.session!;
      checkId(v, "session.session_id", session.sessionId, true);
      checkExpectedVersion(v, "expected_version", request.expectedVersion);
      const patch = toPatch(v, session, request.updateMask ?? []);
      checkDocument(v, "session.metadata", patch.metadata, limits);
      checkDocument(v, "session.state", patch.state, limits);
      v.throwIfAny();
      return toWireSession(await store.updateSession(ctx, session.sessionId, patch, request.expectedVersion));
    },

    async deleteSession(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      checkExpectedVersion(v, "expected_version", request.expectedVersion);
      v.throwIfAny();
      await store.deleteSession(ctx, request.sessionId, request.expectedVersion);
      return {};
    },

    async listSessions(request, ctx) {
      const v = new Violations();
      const filter = toFilter(v, request.filter, limits);
      const order = parseOrderBy(v, request.orderBy);
      const limit = pageSize(request.pageSize);
      v.throwIfAny();
      const bound = { filter, order };
      const after = sessionCursor(decodePageToken(request.pageToken, bound));
      const rows = await store.listSessions(ctx, filter, order, limit + 1, after);
      const { page, nextPageToken } = paginate(rows, limit, bound, (s) => [
        order.column === "create_time" ? s.createTime : s.updateTime,
        s.sessionId,
      ]);
      return { sessions: page.map(toWireSession), nextPageToken };
    },

    async countSessions(request, ctx) {
      const v = new Violations();
      const filter = toFilter(v, request.filter, limits);
      v.throwIfAny();
      return { count: await store.countSessions(ctx, filter) };
    },

    async batchGetSessions(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "session_ids", request.sessionIds.length, limits);
      request.sessionIds.forEach((id, i) => checkId(v, `session_ids[${i}]`, id, true));
      v.throwIfAny();
      return { sessions: (await store.batchGetSessions(ctx, request.sessionIds)).map(toWireSession) };
    },

    async batchCreateSessions(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "requests", request.requests.length, limits);
      const creates = request.requests.map((r, i) => toSessionCreate(v, r, `requests[${i}].`, limits));
      checkUnique(
        v,
        "requests",
        request.requests.map((r) => r.sessionId || r.session?.sessionId || ""),
      );
      v.throwIfAny();
      return { sessions: (await store.createSessions(ctx, creates)).map(toWireSession) };
    },

    async batchDeleteSessions(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "session_ids", request.sessionIds.length, limits);
      request.sessionIds.forEach((id, i) => checkId(v, `session_ids[${i}]`, id, true));
      checkUnique(v, "session_ids", request.sessionIds);
      v.throwIfAny();
      await store.batchDeleteSessions(ctx, request.sessionIds);
      return {};
    },

    async getSessionStats(request, ctx) {
      const v = new Violations();
      const filter = toFilter(v, request.filter, limits);
      v.throwIfAny();
      const stats = await store.sessionStats(ctx, filter);
      return {
        total: stats.total,
        byStatus: Object.fromEntries(
          Object.entries(stats.byStatus).map(([name, count]) => [`SESSION_STATUS_${name}`, count]),
        ),
        avgDuration: stats.avgDurationMicros === null ? undefined : durationFromMicros(stats.avgDurationMicros),
        oldestActiveCreateTime: timestampFromIso(stats.oldestActiveCreateTime),
      };
    },

    async appendMessages(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      const messages = toNewMessages(v, request, limits);
      v.throwIfAny();
      return { messages: (await store.appendMessages(ctx, request.sessionId, messages)).map(toWireMessage) };
    },

    async listMessages(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      if (request.afterSequence < 0) v.add("after_sequence", "must not be negative");
      const limit = pageSize(request.pageSize);
      v.throwIfAny();
      const bound = { sessionId: request.sessionId, afterSequence: request.afterSequence };
      const [lastSequence] = decodePageToken(request.pageToken, bound) ?? [request.afterSequence];
      if (typeof lastSequence !== "number") throw invalidPageToken("is not a token this server issued");
      const rows = await store.listMessages(ctx, request.sessionId, lastSequence, limit + 1);
      const { page, nextPageToken } = paginate(rows, limit, bound, (m) => [m.sequence]);
      return { messages: page.map(toWireMessage), nextPageToken };
    },
  };
}
