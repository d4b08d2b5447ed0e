// SessionService handlers: validate and convert the request
// (requests.ts, query-requests.ts), call the store, convert the answer
// (wire.ts). No SQL here.
import { Message, Session, SessionServiceService } from "@cairn/client";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageResponse, pageSize } from "../grpc/pagination.js";
import { maskedResource, parseReadMask } from "../grpc/read-mask.js";
import { Violations, checkBatchSize, checkFilterList, checkId, checkReference, checkUnique } from "../grpc/validate.js";
import { SessionCalls } from "./coalesced.js";
import { forkSession, getSessionVersion, listSessionVersions } from "./history.js";
import { importSessions } from "./import.js";
import { appendMessages, deleteMessages, listMessages } from "./messages.js";
import { countSessions, listSessions, sessionStats } from "./queries.js";
import { decodeSessionCursor, ORDER_KEY, parseOrderBy, toFilter } from "./query-requests.js";
import {
  checkVersionField,
  planMessageAppend,
  planSessionDelete,
  planSessionImport,
  planSessionUpdate,
  toSessionCreate,
  toSessionFork,
} from "./requests.js";
import { batchDeleteSessions, batchGetSessions, createSessions, deleteSession, type SessionDocument } from "./store.js";
import { updateSessions } from "./updates.js";
import { toWireAppended, toWireMessage, toWireSession, toWireSessionStats } from "./wire.js";

const SESSION_FIELDS = maskedResource(Session);
/** The documents a read mask may leave out of the SELECT, by field name. */
const SESSION_DOCUMENTS: Record<string, SessionDocument> = { labels: "labels", metadata: "metadata", state: "state" };

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
      return toWireSessionStats(await sessionStats(db.on(ctx), ctx.namespace, filter));
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
