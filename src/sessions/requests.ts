// SessionService write requests, validated and turned into store inputs:
// create, update (update masks, state_patch, allow_missing), delete,
// AppendMessages, fork and import. Each adds what is wrong to `v` (field
// paths prefixed with `at` inside batches and Commit operations) and
// returns what the store runs; no SQL, no I/O.
import {
  type AppendMessagesRequest,
  type CreateSessionRequest,
  type DeleteSessionRequest,
  type ForkSessionRequest,
  type ImportSessionsRequest,
  type Message,
  type Session,
  SessionStatus,
  type Timestamp,
  type UpdateSessionRequest,
} from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import type { Limits } from "../config.js";
import { idempotency } from "../db/idempotency.js";
import { isoFromTimestamp } from "../grpc/convert.js";
import { updateMask } from "../grpc/update-mask.js";
import {
  Violations,
  checkBatchSize,
  checkDocument,
  checkExpectedVersion,
  checkId,
  checkLabels,
  checkNoNul,
  checkReference,
  checkUnique,
} from "../grpc/validate.js";
import type { SessionFork } from "./history.js";
import type { ImportedMessage, MessageAppend, NewMessage } from "./messages.js";
import type { NewSession, SessionCreate, SessionRow, SessionStatusName } from "./store.js";
import type { SessionPatch, SessionUpdate, StateMerge } from "./updates.js";
import { STATUS } from "./wire.js";

const UPDATE_MASK_PATHS = ["status", "labels", "metadata", "state", "user_id"] as const;

/** A wire session's creatable fields as the store takes them, under the id and status decided for it. */
function newSession(session: Session, sessionId: string, status: SessionStatusName): NewSession {
  return {
    sessionId,
    agentId: session.agentId,
    userId: session.userId,
    status,
    labels: session.labels,
    metadata: session.metadata ?? null,
    state: session.state ?? null,
  };
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
    session: newSession(session, givenId || uuidv7(), status),
    // The request as sent, minus its request_id: a retry must match it exactly.
    idempotency: idempotency(request.requestId, () => ({ sessionId: request.sessionId, session })),
  };
}

export function checkVersionField(v: Violations, field: string, version: number): void {
  if (version < 0) v.add(field, "must not be negative (0: the current version)");
}

export function toSessionFork(v: Violations, request: ForkSessionRequest): SessionFork {
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

/**
 * The fields an update writes, following AIP-134: an empty mask writes the
 * fields set in the request (status not UNSPECIFIED, labels and user_id not
 * empty, metadata and state present); "*" replaces every updatable field,
 * clearing those not given (status then defaults to ACTIVE, as on create);
 * otherwise exactly the named paths.
 */
function toPatch(v: Violations, session: Session, paths: string[], at: string, limits: Limits): SessionPatch {
  const { all, writes } = updateMask(v, paths, UPDATE_MASK_PATHS, at);
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
  return newSession(session, session.sessionId, status ?? "ACTIVE");
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
    ...newSession(session, session.sessionId, status),
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
export function planSessionImport(v: Violations, request: ImportSessionsRequest, limits: Limits): { rows: SessionRow[]; messages: ImportedMessage[] } {
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
