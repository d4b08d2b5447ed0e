// SessionService handlers: validate, convert between wire and store types,
// call the store. No SQL here.
import {
  type AppendMessagesRequest,
  type CreateSessionRequest,
  type DeleteSessionRequest,
  type ImportSessionsRequest,
  type ForkSessionRequest,
  Message,
  Session,
  type SessionFilter as WireSessionFilter,
  SessionServiceService,
  SessionStatus,
  type Timestamp,
  type UpdateSessionRequest,
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
import { forkSession, getSessionVersion, listSessionVersions, type SessionFork } from "./history.js";
import { importSessions } from "./import.js";
import {
  type Appended,
  appendMessages,
  deleteMessages,
  type ImportedMessage,
  listMessages,
  type MessageAppend,
  type MessageRecord,
  type NewMessage,
} from "./messages.js";
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
  type NewSession,
  type SessionCursor,
  type SessionFilter,
  type SessionOrder,
  type SessionPatch,
  type SessionRecord,
  type SessionRow,
  type SessionStatusName,
  type SessionUpdate,
  type StateMerge,
  updateSessions,
} from "./store.js";

const STATUS = enumCodec<SessionStatus, SessionStatusName>(SessionStatus, "SESSION_STATUS_");

const SESSION_FIELDS = maskedResource(Session);
/** The documents a read mask may leave out of the SELECT, by field name. */
const SESSION_DOCUMENTS: Record<string, SessionDocument> = { labels: "labels", metadata: "metadata", state: "state" };

const UPDATE_MASK_PATHS = ["status", "labels", "metadata", "state", "user_id"] as const;
type MaskPath = (typeof UPDATE_MASK_PATHS)[number];
/** AIP-134: the one path that replaces every updatable field. */
const WILDCARD = "*";

export function toWireSession(record: SessionRecord): Session {
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
    parentSessionId: record.parentSessionId ?? "",
    parentVersion: record.parentVersion ?? 0,
  };
}

export function toWireMessage(record: MessageRecord): Message {
  return {
    sessionId: record.sessionId,
    sequence: record.sequence,
    role: record.role,
    content: record.content,
    metadata: record.metadata ?? undefined,
    createTime: timestampFromIso(record.createTime),
  };
}

/** The AppendMessages response for what appendMessages returned. */
export function toWireAppended(appended: Appended): { messages: Message[]; session: Session | undefined } {
  return { messages: appended.messages.map(toWireMessage), session: appended.session ? toWireSession(appended.session) : undefined };
}

/** `mayBeMissing`: an allow_missing update, where 0 means "must not exist yet". */
function checkExpectedVersion(v: Violations, field: string, expected: number | undefined, mayBeMissing = false): void {
  if (expected === undefined) return;
  if (mayBeMissing) {
    if (expected < 0) v.add(field, 'must be a version, or 0 ("must not exist yet"), when set');
  } else if (expected < 1) v.add(field, "must be a version (1 or more) when set");
}

/** Validates one CreateSessionRequest; `at` prefixes field paths inside batches (and Commit operations). */
export function toSessionCreate(v: Violations, request: CreateSessionRequest, at: string, limits: Limits): SessionCreate {
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

function checkVersionField(v: Violations, field: string, version: number): void {
  if (version < 0) v.add(field, "must not be negative (0: the current version)");
}

function toSessionFork(v: Violations, request: ForkSessionRequest): SessionFork {
  checkId(v, "session_id", request.sessionId, true);
  checkVersionField(v, "version", request.version);
  checkId(v, "new_session_id", request.newSessionId, false);
  checkId(v, "request_id", request.requestId, false);
  if (request.upToSequence < 0) v.add("up_to_sequence", "must not be negative (0: every message)");
  return {
    sourceId: request.sessionId,
    version: request.version,
    newSessionId: request.newSessionId || uuidv7(),
    upToSequence: request.upToSequence,
    // The request as sent, minus its request_id: a retry must match it exactly.
    idempotency: idempotency(request.requestId, () => ({ ...request, requestId: "" })),
  };
}

function toFilter(v: Violations, filter: WireSessionFilter | undefined, limits: Limits): SessionFilter {
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
const ORDER_KEY: Record<SessionOrder["column"], (s: SessionRecord) => string | null> = {
  create_time: (s) => s.createTime,
  update_time: (s) => s.updateTime,
  end_time: (s) => s.endTime,
};
const ORDER_COLUMNS = Object.keys(ORDER_KEY) as SessionOrder["column"][];

/** Where a page token says the page starts; ordered by end_time, past the ended sessions its time is null. */
function decodeSessionCursor(token: string, bound: unknown, order: SessionOrder): SessionCursor | undefined {
  const key =
    order.column === "end_time" ? decodePageToken(token, bound, ["time?", "id"]) : decodePageToken(token, bound, ["time", "id"]);
  return key && { time: key[0], sessionId: key[1] };
}

function parseOrderBy(v: Violations, orderBy: string): SessionOrder {
  const words = orderBy.trim().split(/\s+/).filter(Boolean);
  const [column = "create_time", direction = "asc", ...rest] = words;
  const known = ORDER_COLUMNS.find((c) => c === column);
  if (!known || !["asc", "desc"].includes(direction.toLowerCase()) || rest.length) {
    v.add("order_by", 'must be "create_time", "update_time" or "end_time", optionally followed by " desc"');
    return { column: "create_time", descending: false };
  }
  return { column: known, descending: direction.toLowerCase() === "desc" };
}

/** The mask's paths, each known, or "*" alone; violations name `update_mask.paths[i]`. */
function maskPaths(v: Violations, paths: string[], at: string): Set<MaskPath | typeof WILDCARD> {
  const fields = new Set<MaskPath | typeof WILDCARD>();
  paths.forEach((path, i) => {
    const field = `${at}update_mask.paths[${i}]`;
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
function toPatch(v: Violations, session: Session, paths: string[], at: string, limits: Limits): SessionPatch {
  const fields = maskPaths(v, paths, at);
  const all = fields.has(WILDCARD);
  const writes = (path: MaskPath, isSet: boolean) => all || fields.has(path) || (paths.length === 0 && isSet);
  const patch: SessionPatch = {};
  if (writes("status", session.status !== SessionStatus.SESSION_STATUS_UNSPECIFIED)) {
    patch.status = STATUS.parse(v, `${at}session.status`, session.status, all ? "ACTIVE" : undefined);
  }
  if (writes("user_id", session.userId !== "")) {
    checkReference(v, `${at}session.user_id`, session.userId, false);
    patch.userId = session.userId;
  }
  if (writes("labels", Object.keys(session.labels).length > 0)) {
    checkLabels(v, `${at}session.labels`, session.labels, limits);
    patch.labels = session.labels;
  }
  if (writes("metadata", session.metadata !== undefined)) {
    checkDocument(v, `${at}session.metadata`, session.metadata, limits);
    patch.metadata = session.metadata ?? null;
  }
  if (writes("state", session.state !== undefined)) {
    checkDocument(v, `${at}session.state`, session.state, limits);
    patch.state = session.state ?? null;
  }
  return patch;
}

/** A state_patch as the store merges it, checked as a document; null when not given. */
function toStateMerge(v: Violations, statePatch: Record<string, unknown> | undefined, field: string, limits: Limits): StateMerge | null {
  if (statePatch === undefined) return null;
  checkDocument(v, field, statePatch, limits);
  return { patch: statePatch, field, maxBytes: limits.maxDocumentBytes };
}

/**
 * The session an allow_missing update creates when there is none: the
 * whole request session, as CreateSession takes it. The fields the patch
 * writes were checked there; the others are checked here, so no field is
 * reported twice.
 */
function toMissingSession(v: Violations, session: Session, patch: SessionPatch, at: string, limits: Limits): NewSession {
  checkReference(v, `${at}session.agent_id`, session.agentId, true);
  if (!("userId" in patch)) checkReference(v, `${at}session.user_id`, session.userId, false);
  if (!("labels" in patch)) checkLabels(v, `${at}session.labels`, session.labels, limits);
  if (!("metadata" in patch)) checkDocument(v, `${at}session.metadata`, session.metadata, limits);
  if (!("state" in patch)) checkDocument(v, `${at}session.state`, session.state, limits);
  const status = "status" in patch ? patch.status : STATUS.parse(v, `${at}session.status`, session.status, "ACTIVE");
  return {
    sessionId: session.sessionId,
    agentId: session.agentId,
    userId: session.userId,
    status: status ?? "ACTIVE",
    labels: session.labels,
    metadata: session.metadata ?? null,
    state: session.state ?? null,
  };
}

/**
 * Validates one UpdateSessionRequest into a store update (run it with
 * SessionCalls.update, or updateSessions, which also creates); `at`
 * prefixes field paths inside batches and Commit operations.
 */
export function planSessionUpdate(v: Violations, request: UpdateSessionRequest, at: string, limits: Limits): SessionUpdate {
  const session = request.session;
  checkExpectedVersion(v, `${at}expected_version`, request.expectedVersion, request.allowMissing);
  const stateMerge = toStateMerge(v, request.statePatch, `${at}state_patch`, limits);
  if (!session) {
    v.add(`${at}session`, "is required");
    return { sessionId: "", patch: {}, expectedVersion: undefined };
  }
  checkId(v, `${at}session.session_id`, session.sessionId, true);
  const patch = toPatch(v, session, request.updateMask ?? [], at, limits);
  if (stateMerge) {
    // A created session takes the request's state whatever the mask says.
    if (patch.state !== undefined || (request.allowMissing && session.state !== undefined)) {
      v.add(`${at}state_patch`, "cannot be combined with state (in the update mask or the session); send one of them");
    }
    patch.stateMerge = stateMerge;
  }
  const update: SessionUpdate = { sessionId: session.sessionId, patch, expectedVersion: request.expectedVersion };
  if (request.allowMissing) {
    update.createIfMissing = { session: toMissingSession(v, session, patch, at, limits), agentField: `${at}session.agent_id` };
  }
  return update;
}

function toNewMessage(v: Violations, m: Message, at: string, limits: Limits): NewMessage {
  checkReference(v, `${at}role`, m.role, true);
  if (Buffer.byteLength(m.content, "utf8") > limits.maxDocumentBytes) {
    v.add(`${at}content`, `is larger than ${limits.maxDocumentBytes} bytes`);
  }
  checkNoNul(v, `${at}content`, m.content);
  checkDocument(v, `${at}metadata`, m.metadata, limits);
  return { role: m.role, content: m.content, metadata: m.metadata ?? null };
}

/** Validates one AppendMessagesRequest (run it with appendMessages); `at` prefixes field paths in Commit operations. */
export function planMessageAppend(v: Violations, request: AppendMessagesRequest, at: string, limits: Limits): MessageAppend {
  checkId(v, `${at}session_id`, request.sessionId, true);
  checkExpectedVersion(v, `${at}expected_version`, request.expectedVersion);
  checkBatchSize(v, `${at}messages`, request.messages.length, limits);
  return {
    sessionId: request.sessionId,
    messages: request.messages.map((m, i) => toNewMessage(v, m, `${at}messages[${i}].`, limits)),
    expectedVersion: request.expectedVersion,
    stateMerge: toStateMerge(v, request.statePatch, `${at}state_patch`, limits),
  };
}

/** Validates one DeleteSessionRequest (run it with deleteSession); `at` prefixes field paths in Commit operations. */
export function planSessionDelete(v: Violations, request: DeleteSessionRequest, at: string): { sessionId: string; expectedVersion: number | undefined } {
  checkId(v, `${at}session_id`, request.sessionId, true);
  checkExpectedVersion(v, `${at}expected_version`, request.expectedVersion);
  return { sessionId: request.sessionId, expectedVersion: request.expectedVersion };
}

/**
 * One imported session, kept as given. Missing times: create_time is now
 * (only when no other time is given), update_time its end_time or else its
 * create_time, and the end_time of a session that has left ACTIVE its
 * update_time.
 */
function toSessionRow(v: Violations, session: Session, at: string, limits: Limits): SessionRow {
  checkId(v, `${at}session_id`, session.sessionId, true);
  checkReference(v, `${at}agent_id`, session.agentId, true);
  checkReference(v, `${at}user_id`, session.userId, false);
  checkLabels(v, `${at}labels`, session.labels, limits);
  checkDocument(v, `${at}metadata`, session.metadata, limits);
  checkDocument(v, `${at}state`, session.state, limits);
  const status = STATUS.parse(v, `${at}status`, session.status, "ACTIVE") ?? "ACTIVE";
  if (session.version < 0) v.add(`${at}version`, "must not be negative (0: version 1)");
  checkId(v, `${at}parent_session_id`, session.parentSessionId, false);
  if (session.parentVersion < 0) v.add(`${at}parent_version`, "must not be negative");
  if ((session.parentSessionId === "") !== (session.parentVersion === 0)) {
    v.add(`${at}parent_version`, "must be set together with parent_session_id (both or neither)");
  }
  const time = (value: Timestamp | undefined, field: string) => v.collect(() => isoFromTimestamp(value, `${at}${field}`));
  const createTime = time(session.createTime, "create_time");
  const updateTime = time(session.updateTime, "update_time");
  const endTime = time(session.endTime, "end_time");
  if (!session.createTime && (session.updateTime || session.endTime)) {
    v.add(`${at}create_time`, "is required when update_time or end_time is given");
  }
  // Times in Cairn's one fixed-width format compare as strings.
  if (createTime && updateTime && updateTime < createTime) v.add(`${at}update_time`, "must not be before create_time");
  if (createTime && endTime && endTime < createTime) v.add(`${at}end_time`, "must not be before create_time");
  if (status === "ACTIVE" && session.endTime) v.add(`${at}end_time`, "must be unset for an ACTIVE session");
  return {
    sessionId: session.sessionId,
    agentId: session.agentId,
    userId: session.userId,
    status,
    labels: session.labels,
    metadata: session.metadata ?? null,
    state: session.state ?? null,
    statePatch: null,
    version: session.version || null,
    createTime,
    updateTime,
    endTime,
    lastMessageSequence: 0,
    parentSessionId: session.parentSessionId || null,
    parentVersion: session.parentVersion || null,
  };
}

/**
 * An ImportSessionsRequest as store rows: each message names an imported
 * session, with a sequence of 1 or more not repeated in that session, and
 * each session's counter continues after its highest sequence.
 */
function planSessionImport(v: Violations, request: ImportSessionsRequest, limits: Limits): { rows: SessionRow[]; messages: ImportedMessage[] } {
  checkBatchSize(v, "sessions", request.sessions.length, limits);
  checkBatchSize(v, "messages", request.messages.length, limits, false);
  checkUnique(
    v,
    "sessions",
    request.sessions.map((s) => s.sessionId),
    ".session_id",
  );
  const rows = request.sessions.map((s, i) => toSessionRow(v, s, `sessions[${i}].`, limits));
  const lastSequence = new Map(rows.map((r) => [r.sessionId, 0]));
  const taken = new Set<string>();
  const messages = request.messages.map((m, i): ImportedMessage => {
    const at = `messages[${i}].`;
    const last = lastSequence.get(m.sessionId);
    if (last === undefined) v.add(`${at}session_id`, "must name one of the sessions imported with it");
    if (!Number.isSafeInteger(m.sequence) || m.sequence < 1) v.add(`${at}sequence`, "must be 1 or more");
    else if (last !== undefined) {
      // A session id never contains NUL, so the pair is one unambiguous key.
      const key = `${m.sessionId}\u0000${m.sequence}`;
      if (taken.has(key)) v.add(`${at}sequence`, `repeats sequence ${m.sequence} of session ${JSON.stringify(m.sessionId)}`);
      taken.add(key);
      lastSequence.set(m.sessionId, Math.max(last, m.sequence));
    }
    return {
      ...toNewMessage(v, m, at, limits),
      sessionId: m.sessionId,
      sequence: m.sequence,
      createTime: v.collect(() => isoFromTimestamp(m.createTime, `${at}create_time`)),
    };
  });
  for (const row of rows) row.lastMessageSequence = lastSequence.get(row.sessionId) ?? 0;
  return { rows, messages };
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
      checkVersionField(v, "version", request.version);
      const mask = parseReadMask(v, request.readMask, SESSION_FIELDS);
      v.throwIfAny();
      const session =
        request.version === 0
          ? await calls.get(ctx, ctx.namespace, request.sessionId)
          : await getSessionVersion(
              db.on(ctx),
              ctx.namespace,
              request.sessionId,
              request.version,
              deps.sessionHistoryVersions,
              mask.omitted(SESSION_DOCUMENTS),
            );
      return mask.apply(toWireSession(session));
    },

    async listSessionVersions(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      const limit = pageSize(v, request.pageSize);
      const mask = parseReadMask(v, request.readMask, SESSION_FIELDS);
      v.throwIfAny();
      const bound = { sessionId: request.sessionId };
      const [beforeVersion] = decodePageToken(request.pageToken, bound, ["number"]) ?? [undefined];
      const pageLimits = { rows: limit, bytes: limits.maxPageBytes };
      const omit = mask.omitted(SESSION_DOCUMENTS);
      const page = await listSessionVersions(db.on(ctx), ctx.namespace, request.sessionId, deps.sessionHistoryVersions, pageLimits, beforeVersion, omit);
      const { items, nextPageToken } = pageResponse(page, {
        bound,
        keyOf: (s) => [s.version],
        toWire: (s) => mask.apply(toWireSession(s)),
        encoder: Session,
        maxBytes: limits.maxPageBytes,
      });
      return { sessions: items, nextPageToken };
    },

    async forkSession(request, ctx) {
      const v = new Violations();
      const fork = toSessionFork(v, request);
      v.throwIfAny();
      return toWireSession(await forkSession(db.on(ctx), ctx.namespace, fork, deps.sessionHistoryVersions));
    },

    async updateSession(request, ctx) {
      const v = new Violations();
      const update = planSessionUpdate(v, request, "", limits);
      v.throwIfAny();
      // Plain updates are coalesced; an upsert needs its own transaction.
      const [updated] = update.createIfMissing
        ? await updateSessions(db.on(ctx), ctx.namespace, [update])
        : [await calls.update(ctx, ctx.namespace, update)];
      return toWireSession(updated!);
    },

    async batchUpdateSessions(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "requests", request.requests.length, limits);
      const updates = request.requests.map((r, i) => planSessionUpdate(v, r, `requests[${i}].`, limits));
      checkUnique(
        v,
        "requests",
        updates.map((u) => u.sessionId),
        ".session.session_id",
      );
      v.throwIfAny();
      return { sessions: (await updateSessions(db.on(ctx), ctx.namespace, updates)).map(toWireSession) };
    },

    async deleteSession(request, ctx) {
      const v = new Violations();
      const { sessionId, expectedVersion } = planSessionDelete(v, request, "");
      v.throwIfAny();
      await deleteSession(db.on(ctx), ctx.namespace, sessionId, expectedVersion, sessionCascade);
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
      const after = decodeSessionCursor(request.pageToken, bound, order);
      const pageLimits = { rows: limit, bytes: limits.maxPageBytes };
      const page = await listSessions(db.on(ctx), ctx.namespace, filter, order, pageLimits, after, mask.omitted(SESSION_DOCUMENTS));
      const { items, nextPageToken } = pageResponse(page, {
        bound,
        keyOf: (s) => [ORDER_KEY[order.column](s), s.sessionId],
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
      const append = planMessageAppend(v, request, "", limits);
      v.throwIfAny();
      return toWireAppended(await appendMessages(db.on(ctx), ctx.namespace, append));
    },

    async deleteMessages(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      if (request.beforeSequence < 0) v.add("before_sequence", "must not be negative (0: every message)");
      v.throwIfAny();
      return { deletedCount: await deleteMessages(db.on(ctx), ctx.namespace, request.sessionId, request.beforeSequence) };
    },

    async importSessions(request, ctx) {
      const v = new Violations();
      const { rows, messages } = planSessionImport(v, request, limits);
      v.throwIfAny();
      return { sessions: (await importSessions(db.on(ctx), ctx.namespace, rows, messages)).map(toWireSession) };
    },

    async listMessages(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      if (request.afterSequence < 0) v.add("after_sequence", "must not be negative");
      checkFilterList(v, "roles", request.roles.length, limits);
      request.roles.forEach((role, i) => checkReference(v, `roles[${i}]`, role, true));
      const limit = pageSize(v, request.pageSize);
      v.throwIfAny();
      const roles = [...new Set(request.roles)].sort();
      const bound = { sessionId: request.sessionId, afterSequence: request.afterSequence, roles };
      const [lastSequence] = decodePageToken(request.pageToken, bound, ["number"]) ?? [request.afterSequence];
      const pageLimits = { rows: limit, bytes: limits.maxPageBytes };
      const page = await listMessages(db.on(ctx), ctx.namespace, request.sessionId, lastSequence, pageLimits, roles);
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
