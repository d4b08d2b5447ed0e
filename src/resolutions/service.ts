// ResolutionService handlers: validate, convert, call the store.
import {
  type CreateResolutionRequest,
  Decision,
  Resolution,
  ResolutionServiceService,
} from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import type { Limits } from "../config.js";
import { idempotency } from "../db/idempotency.js";
import { isoFromTimestamp, positiveDurationMicros, timestampFromIso } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageResponse, pageSize } from "../grpc/pagination.js";
import {
  Violations,
  checkBatchSize,
  checkDocument,
  checkDocumentList,
  checkFilterList,
  checkId,
  checkReference,
  checkUnique,
} from "../grpc/validate.js";
import { isoToEpochMicros } from "../time.js";
import * as store from "./store.js";
import type { DecisionName, NewResolution, ResolutionCreate, ResolutionFilter, ResolutionImport, ResolutionRecord } from "./store.js";

const DECISIONS = enumCodec<Decision, DecisionName>(Decision, "DECISION_");

/** A resolution as the wire carries it (every method's response, and Commit's results). */
export function toWireResolution(r: ResolutionRecord): Resolution {
  return {
    resolutionId: r.resolutionId,
    requestId: r.requestId,
    agentId: r.agentId,
    sessionId: r.sessionId,
    decision: DECISIONS.toWire(r.decision),
    contextBlocks: r.contextBlocks,
    allowedActions: r.allowedActions,
    deniedActions: r.deniedActions,
    policiesApplied: r.policiesApplied,
    metadata: r.metadata ?? undefined,
    createTime: timestampFromIso(r.createTime),
    expireTime: timestampFromIso(r.expireTime),
  };
}

/**
 * What every way of saving a resolution checks alike; `at` is the path of
 * the Resolution message ("resolution.", "resolutions[3]."). `resolutionId`
 * names it when the client did not.
 */
function planNewResolution(v: Violations, r: Resolution, at: string, limits: Limits, resolutionId: () => string): NewResolution {
  checkId(v, `${at}resolution_id`, r.resolutionId, false);
  checkId(v, `${at}request_id`, r.requestId, true);
  checkReference(v, `${at}agent_id`, r.agentId, true);
  checkId(v, `${at}session_id`, r.sessionId, true);
  const decision = DECISIONS.parse(v, `${at}decision`, r.decision);
  const lists = {
    context_blocks: r.contextBlocks,
    allowed_actions: r.allowedActions,
    denied_actions: r.deniedActions,
    policies_applied: r.policiesApplied,
  };
  for (const [name, list] of Object.entries(lists)) checkDocumentList(v, `${at}${name}`, list, limits);
  checkDocument(v, `${at}metadata`, r.metadata, limits);
  return {
    resolutionId: r.resolutionId || resolutionId(),
    requestId: r.requestId,
    agentId: r.agentId,
    sessionId: r.sessionId,
    decision: decision ?? "DENY",
    contextBlocks: r.contextBlocks,
    allowedActions: r.allowedActions,
    deniedActions: r.deniedActions,
    policiesApplied: r.policiesApplied,
    metadata: r.metadata ?? null,
  };
}

/** CreateResolution's request, validated (field paths prefixed with `at`) and converted for store.createResolutions. */
export function planCreateResolution(v: Violations, request: CreateResolutionRequest, at: string, limits: Limits): ResolutionCreate {
  const r = request.resolution;
  if (!r) {
    v.add(`${at}resolution`, "is required");
    return undefined as never;
  }
  const resolution = planNewResolution(v, r, `${at}resolution.`, limits, () => uuidv7());
  checkId(v, `${at}request_id`, request.requestId, false);
  const ttlMicros = request.ttl ? v.collect(() => positiveDurationMicros(request.ttl!, `${at}ttl`)) : null;
  const expireTime = request.ttl ? null : v.collect(() => isoFromTimestamp(r.expireTime, `${at}resolution.expire_time`));
  if (expireTime && isoToEpochMicros(expireTime) <= BigInt(Date.now()) * 1000n) {
    v.add(`${at}resolution.expire_time`, "must be in the future");
  }
  return {
    resolution,
    ttlMicros,
    expireTime,
    idempotency: idempotency(request.requestId, () => ({ resolution: r, ttl: request.ttl ?? null })),
  };
}

/**
 * One resolution of an import: its times kept as given, even in the past.
 * Without create_time it is created now; without an id it gets a UUIDv7 of
 * its create_time, so imported ids sort like created ones.
 */
function planImportResolution(v: Violations, r: Resolution, at: string, limits: Limits): ResolutionImport {
  const createTime = v.collect(() => isoFromTimestamp(r.createTime, `${at}create_time`));
  const expireTime = v.collect(() => isoFromTimestamp(r.expireTime, `${at}expire_time`));
  if (createTime && expireTime && expireTime <= createTime) v.add(`${at}expire_time`, "must be after create_time");
  const idTime = createTime ? Number(isoToEpochMicros(createTime) / 1000n) : Date.now();
  const resolution = planNewResolution(v, r, at, limits, () => uuidv7({ msecs: Math.max(0, idTime) }));
  return { resolution, createTime, expireTime };
}

export function resolutionHandlers(deps: ServiceDeps): ServiceHandlers<typeof ResolutionServiceService> {
  const { db, limits } = deps;
  return {
    async createResolution(request, ctx) {
      const v = new Violations();
      const create = planCreateResolution(v, request, "", limits);
      v.throwIfAny();
      const [created] = await store.createResolutions(db.on(ctx), ctx.namespace, [create]);
      return toWireResolution(created!);
    },

    async batchCreateResolutions(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "requests", request.requests.length, limits);
      const creates = request.requests.map((r, i) => planCreateResolution(v, r, `requests[${i}].`, limits));
      checkUnique(
        v,
        "requests",
        request.requests.map((r) => r.resolution?.resolutionId ?? ""),
      );
      v.throwIfAny();
      return { resolutions: (await store.createResolutions(db.on(ctx), ctx.namespace, creates)).map(toWireResolution) };
    },

    async getResolution(request, ctx) {
      const v = new Violations();
      checkId(v, "resolution_id", request.resolutionId, true);
      v.throwIfAny();
      return toWireResolution(await store.getResolution(db.on(ctx), ctx.namespace, request.resolutionId));
    },

    async listResolutions(request, ctx) {
      const v = new Violations();
      checkReference(v, "agent_id", request.agentId, false);
      checkId(v, "session_id", request.sessionId, false);
      checkId(v, "request_id", request.requestId, false);
      checkFilterList(v, "decisions", request.decisions.length, limits);
      const decisions = request.decisions.map((d, i) => DECISIONS.parse(v, `decisions[${i}]`, d)).filter((d) => d !== undefined);
      const createdAfter = v.collect(() => isoFromTimestamp(request.createdAfter, "created_after"));
      const createdBefore = v.collect(() => isoFromTimestamp(request.createdBefore, "created_before"));
      const limit = pageSize(v, request.pageSize);
      v.throwIfAny();
      const filter: ResolutionFilter = {
        agentId: request.agentId || null,
        sessionId: request.sessionId || null,
        requestId: request.requestId || null,
        decisions: [...new Set(decisions)].sort(),
        createdAfter,
        createdBefore,
        includeExpired: request.includeExpired,
      };
      const after = decodePageToken(request.pageToken, filter, ["time", "id"]);
      const before = after && { time: after[0], resolutionId: after[1] };
      const page = await store.listResolutions(db.on(ctx), ctx.namespace, filter, { rows: limit, bytes: limits.maxPageBytes }, before);
      const { items, nextPageToken } = pageResponse(page, {
        bound: filter,
        keyOf: (r) => [r.createTime, r.resolutionId],
        toWire: toWireResolution,
        encoder: Resolution,
        maxBytes: limits.maxPageBytes,
      });
      return { resolutions: items, nextPageToken };
    },

    async deleteResolution(request, ctx) {
      const v = new Violations();
      checkId(v, "resolution_id", request.resolutionId, true);
      v.throwIfAny();
      await store.deleteResolution(db.on(ctx), ctx.namespace, request.resolutionId);
      return {};
    },

    async purgeExpiredResolutions(_request, ctx) {
      return { deletedCount: await store.purgeExpired(db.on(ctx), ctx.namespace) };
    },

    async importResolutions(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "resolutions", request.resolutions.length, limits);
      const imports = request.resolutions.map((r, i) => planImportResolution(v, r, `resolutions[${i}].`, limits));
      checkUnique(
        v,
        "resolutions",
        request.resolutions.map((r) => r.resolutionId),
        ".resolution_id",
      );
      v.throwIfAny();
      return { resolutions: (await store.importResolutions(db.on(ctx), ctx.namespace, imports)).map(toWireResolution) };
    },
  };
}

