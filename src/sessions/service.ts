// SessionService handlers: validate, convert between wire and store types,
// call the store. No SQL here.
import {
  type AppendMessagesRequest,
  type CreateSessionRequest,
  Message,
  Session,
  type SessionFilter as WireSessionFilter,
  SessionServiceService,
  SessionStatus,
} from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import type { Limits } from "../config.js";
import { idempotency } from "../db/idempotency.js";
import { durationFromMicros, isoFromTimestamp, timestampFromIso } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageResponse, pageSize } from "../grpc/pagination.js";
import { maskedResource, parseReadMask } from "../grpc/read-mask.js";
import {
  Violations,
  checkBatchSize,
  checkDocument,
  checkFilterList,
  checkId,
  checkLabels,
  checkNoNul,
  checkReference,
  checkUnique,
} from "../grpc/validate.js";
import { appendMessages, listMessages, type MessageRecord, type NewMessage } from "./messages.js";
import {
  batchDeleteSessions,
  batchGetSessions,
  countSessions,
  createSessions,
  deleteSession,
  listSessions,
  SessionCalls,
  sessionStats,
  type SessionCreate,
  type SessionDocument,
  type SessionFilter,
  type SessionOrder,
  type SessionPatch,
  type SessionRecord,
  type SessionStatusName,
} from "./store.js";

const STATUS = enumCodec<SessionStatus, SessionStatusName>(SessionStatus, "SESSION_STATUS_");

const SESSION_FIELDS = maskedResource(Session);
/** The documents a read mask may leave out of the SELECT, by field name. */
const SESSION_DOCUMENTS: Record<string, SessionDocument> = { labels: "labels", metadata: "metadata", state: "state" };

const UPDATE_MASK_PATHS = ["status", "labels", "metadata", "state", "user_id"] as const;
type MaskPath = (typeof UPDATE_MASK_PATHS)[number];
/** AIP-134: the one path that replaces every updatable field. */
const WILDCARD = "*";

function toWireSession(record: SessionRecord): Session {
  return {
    sessionId: record.sessionId,
    agentId: record.agentId,
    userId: record.userId,
    status: STATUS.toWire(record.status),
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

function checkExpectedVersion(v: Violations, field: string, expected: number | undefined): void {
  if (expected !== undefined && expected < 1) v.add(field, "must be a version (1 or more) when set");
}

/** Validates one CreateSessionRequest; `at` prefixes field paths inside batches. */
function toSessionCreate(v: Violations, request: CreateSessionRequest, at: string, limits: Limits): SessionCreate {
  const session = request.session;
  if (!session) {
    v.add(`${at}session`, "is required");
    return { session: undefined as never, idempotency: null };
  }
  if (request.sessionId !== "" && session.sessionId !== "" && request.sessionId !== session.sessionId) {
    v.add(`${at}session_id`, "differs from session.session_id; set one of them");
  }
  const idField = request.sessionId !== "" ? `${at}session_id` : `${at}session.session_id`;
  const givenId = request.sessionId || session.sessionId;
  checkId(v, idField, givenId, false);
  checkReference(v, `${at}session.agent_id`, session.agentId, true);
  checkReference(v, `${at}session.user_id`, session.userId, false);
  checkId(v, `${at}request_id`, request.requestId, false);
  checkLabels(v, `${at}session.labels`, session.labels, limits);
  checkDocument(v, `${at}session.metadata`, session.metadata, limits);
  checkDocument(v, `${at}session.state`, session.state, limits);
  const status = STATUS.parse(v, `${at}session.status`, session.status, "ACTIVE") ?? "ACTIVE";
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
    // The request as sent, minus its request_id: a retry must match it exactly.
    idempotency: idempotency(request.requestId, () => ({ sessionId: request.sessionId, session })),
  };
}

function toFilter(v: Violations, filter: WireSessionFilter | undefined, limits: Limits): SessionFilter {
  const f = filter ?? { agentId: "", userId: "", statuses: [], labels: {} };
  checkReference(v, "filter.agent_id", f.agentId, false);
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

/** The mask's paths, each known, or "*" alone; violations name `update_mask.paths[i]`. */
function maskPaths(v: Violations, paths: string[]): Set<MaskPath | typeof WILDCARD> {
  const fields = new Set<MaskPath | typeof WILDCARD>();
  paths.forEach((path, i) => {
    const field = `update_mask.paths[${i}]`;
    if (path === WILDCARD) {
      if (paths.length > 1) v.add(field, `"*" must be the only path`);
      fields.add(WILDCARD);
    } else if ((UPDATE_MASK_PATHS as readonly string[]).includes(path)) fields.add(path as MaskPath);
    else {
      const shown = path.length > 64 ? `${path.slice(0, 64)}…` : path;
      v.add(field, `unknown path ${JSON.stringify(shown)}; allowed: ${UPDATE_MASK_PATHS.join(", ")} or "*"`);
    }
  });
  return fields;
}

/**
 * The fields an update writes, following AIP-134: an empty mask writes the
 * fields set in the request (status not UNSPECIFIED, labels and user_id not
 * empty, metadata and state present); "*" replaces every updatable field,
 * clearing those not given (status then defaults to ACTIVE, as on create);
 * otherwise exactly the named paths.
 */
function toPatch(v: Violations, session: Session, paths: string[], limits: Limits): SessionPatch {
  const fields = maskPaths(v, paths);
  const all = fields.has(WILDCARD);
  const writes = (path: MaskPath, isSet: boolean) => all || fields.has(path) || (paths.length === 0 && isSet);
  const patch: SessionPatch = {};
  if (writes("status", session.status !== SessionStatus.SESSION_STATUS_UNSPECIFIED)) {
    patch.status = STATUS.parse(v, "session.status", session.status, all ? "ACTIVE" : undefined);
  }
  if (writes("user_id", session.userId !== "")) {
    checkReference(v, "session.user_id", session.userId, false);
    patch.userId = session.userId;
  }
  if (writes("labels", Object.keys(session.labels).length > 0)) {
    checkLabels(v, "session.labels", session.labels, limits);
    patch.labels = session.labels;
  }
  if (writes("metadata", session.metadata !== undefined)) patch.metadata = session.metadata ?? null;
  if (writes("state", session.state !== undefined)) patch.state = session.state ?? null;
  return patch;
}

function toNewMessages(v: Violations, request: AppendMessagesRequest, limits: Limits): NewMessage[] {
  checkBatchSize(v, "messages", request.messages.length, limits);
  return request.messages.map((m, i) => {
    checkReference(v, `messages[${i}].role`, m.role, true);
    if (Buffer.byteLength(m.content, "utf8") > limits.maxDocumentBytes) {
      v.add(`messages[${i}].content`, `is larger than ${limits.maxDocumentBytes} bytes`);
    }
    checkNoNul(v, `messages[${i}].content`, m.content);
    checkDocument(v, `messages[${i}].metadata`, m.metadata, limits);
    return { role: m.role, content: m.content, metadata: m.metadata ?? null };
  });
}

export function sessionHandlers(deps: ServiceDeps): ServiceHandlers<typeof SessionServiceService> {
  const { db, limits, sessionCascade } = deps;
  const calls = new SessionCalls(db);
  return {
    async createSession(request, ctx) {
      const v = new Violations();
      const create = toSessionCreate(v, request, "", limits);
      v.throwIfAny();
      const [created] = await createSessions(db.on(ctx), ctx.namespace, [create]);
      return toWireSession(created!);
    },

    async getSession(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      const mask = parseReadMask(v, request.readMask, SESSION_FIELDS);
      v.throwIfAny();
      return mask.apply(toWireSession(await calls.get(ctx, ctx.namespace, request.sessionId)));
    },

    async updateSession(request, ctx) {
      const v = new Violations();
      if (!request.session) v.add("session", "is required");
      v.throwIfAny();
      const session = request.session!;
      checkId(v, "session.session_id", session.sessionId, true);
      checkExpectedVersion(v, "expected_version", request.expectedVersion);
      const patch = toPatch(v, session, request.updateMask ?? [], limits);
      checkDocument(v, "session.metadata", patch.metadata, limits);
      checkDocument(v, "session.state", patch.state, limits);
      v.throwIfAny();
      return toWireSession(await calls.update(ctx, ctx.namespace, { sessionId: session.sessionId, patch, expectedVersion: request.expectedVersion }));
    },

    async deleteSession(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      checkExpectedVersion(v, "expected_version", request.expectedVersion);
      v.throwIfAny();
      await deleteSession(db.on(ctx), ctx.namespace, request.sessionId, request.expectedVersion, sessionCascade);
      return {};
    },

    async listSessions(request, ctx) {
      const v = new Violations();
      const filter = toFilter(v, request.filter, limits);
      const order = parseOrderBy(v, request.orderBy);
      const limit = pageSize(v, request.pageSize);
      const mask = parseReadMask(v, request.readMask, SESSION_FIELDS);
      v.throwIfAny();
      const bound = { filter, order };
      const key = decodePageToken(request.pageToken, bound, ["time", "id"]);
      const after = key && { time: key[0], sessionId: key[1] };
      const pageLimits = { rows: limit, bytes: limits.maxPageBytes };
      const page = await listSessions(db.on(ctx), ctx.namespace, filter, order, pageLimits, after, mask.omitted(SESSION_DOCUMENTS));
      const { items, nextPageToken } = pageResponse(page, {
        bound,
        keyOf: (s) => [order.column === "create_time" ? s.createTime : s.updateTime, s.sessionId],
        toWire: (s) => mask.apply(toWireSession(s)),
        encoder: Session,
        maxBytes: limits.maxPageBytes,
      });
      return { sessions: items, nextPageToken };
    },

    async countSessions(request, ctx) {
      const v = new Violations();
      const filter = toFilter(v, request.filter, limits);
      v.throwIfAny();
      return { count: await countSessions(db.on(ctx), ctx.namespace, filter) };
    },

    async batchGetSessions(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "session_ids", request.sessionIds.length, limits);
      request.sessionIds.forEach((id, i) => checkId(v, `session_ids[${i}]`, id, true));
      const mask = parseReadMask(v, request.readMask, SESSION_FIELDS);
      v.throwIfAny();
      const sessions = await batchGetSessions(db.on(ctx), ctx.namespace, request.sessionIds, mask.omitted(SESSION_DOCUMENTS));
      return { sessions: sessions.map((s) => mask.apply(toWireSession(s))) };
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
      return { sessions: (await createSessions(db.on(ctx), ctx.namespace, creates)).map(toWireSession) };
    },

    async batchDeleteSessions(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "session_ids", request.sessionIds.length, limits);
      request.sessionIds.forEach((id, i) => checkId(v, `session_ids[${i}]`, id, true));
      checkUnique(v, "session_ids", request.sessionIds);
      v.throwIfAny();
      await batchDeleteSessions(db.on(ctx), ctx.namespace, request.sessionIds, sessionCascade);
      return {};
    },

    async getSessionStats(request, ctx) {
      const v = new Violations();
      const filter = toFilter(v, request.filter, limits);
      v.throwIfAny();
      const stats = await sessionStats(db.on(ctx), ctx.namespace, filter);
      return {
        total: stats.total,
        byStatus: Object.fromEntries(Object.entries(stats.byStatus).map(([name, count]) => [STATUS.fullName(name as SessionStatusName), count])),
        avgDuration: stats.avgDurationMicros === null ? undefined : durationFromMicros(stats.avgDurationMicros),
        oldestActiveCreateTime: timestampFromIso(stats.oldestActiveCreateTime),
      };
    },

    async appendMessages(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      const messages = toNewMessages(v, request, limits);
      v.throwIfAny();
      return { messages: (await appendMessages(db.on(ctx), ctx.namespace, request.sessionId, messages)).map(toWireMessage) };
    },

    async listMessages(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      if (request.afterSequence < 0) v.add("after_sequence", "must not be negative");
      const limit = pageSize(v, request.pageSize);
      v.throwIfAny();
      const bound = { sessionId: request.sessionId, afterSequence: request.afterSequence };
      const [lastSequence] = decodePageToken(request.pageToken, bound, ["number"]) ?? [request.afterSequence];
      const page = await listMessages(db.on(ctx), ctx.namespace, request.sessionId, lastSequence, { rows: limit, bytes: limits.maxPageBytes });
      const { items, nextPageToken } = pageResponse(page, {
        bound,
        keyOf: (m) => [m.sequence],
        toWire: toWireMessage,
        encoder: Message,
        maxBytes: limits.maxPageBytes,
      });
      return { messages: items, nextPageToken };
    },
  };
}
