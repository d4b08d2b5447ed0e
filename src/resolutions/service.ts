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
import type { DecisionName, ResolutionCreate, ResolutionFilter, ResolutionRecord } from "./store.js";

const DECISIONS = enumCodec<Decision, DecisionName>(Decision, "DECISION_");

function toWire(r: ResolutionRecord): Resolution {
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

function toCreate(v: Violations, request: CreateResolutionRequest, at: string, limits: Limits): ResolutionCreate {
  const r = request.resolution;
  if (!r) {
    v.add(`${at}resolution`, "is required");
    return undefined as never;
  }
  checkId(v, `${at}resolution.resolution_id`, r.resolutionId, false);
  checkId(v, `${at}resolution.request_id`, r.requestId, true);
  checkReference(v, `${at}resolution.agent_id`, r.agentId, true);
  checkId(v, `${at}resolution.session_id`, r.sessionId, true);
  checkId(v, `${at}request_id`, request.requestId, false);
  const decision = DECISIONS.parse(v, `${at}resolution.decision`, r.decision);
  const lists = {
    context_blocks: r.contextBlocks,
    allowed_actions: r.allowedActions,
    denied_actions: r.deniedActions,
    policies_applied: r.policiesApplied,
  };
  for (const [name, list] of Object.entries(lists)) checkDocumentList(v, `${at}resolution.${name}`, list, limits);
  checkDocument(v, `${at}resolution.metadata`, r.metadata, limits);
  const ttlMicros = request.ttl ? v.collect(() => positiveDurationMicros(request.ttl!, `${at}ttl`)) : null;
  const expireTime = request.ttl ? null : v.collect(() => isoFromTimestamp(r.expireTime, `${at}resolution.expire_time`));
  if (expireTime && isoToEpochMicros(expireTime) <= BigInt(Date.now()) * 1000n) {
    v.add(`${at}resolution.expire_time`, "must be in the future");
  }
  return {
    resolution: {
      resolutionId: r.resolutionId || uuidv7(),
      requestId: r.requestId,
      agentId: r.agentId,
      sessionId: r.sessionId,
      decision: decision ?? "DENY",
      contextBlocks: r.contextBlocks,
      allowedActions: r.allowedActions,
      deniedActions: r.deniedActions,
      policiesApplied: r.policiesApplied,
      metadata: r.metadata ?? null,
    },
    ttlMicros,
    expireTime,
    idempotency: idempotency(request.requestId, () => ({ resolution: r, ttl: request.ttl ?? null })),
  };
}

export function resolutionHandlers(deps: ServiceDeps): ServiceHandlers<typeof ResolutionServiceService> {
  const { db, limits } = deps;
  return {
    async createResolution(request, ctx) {
      const v = new Violations();
      const create = toCreate(v, request, "", limits);
      v.throwIfAny();
      const [created] = await store.createResolutions(db.on(ctx), ctx.namespace, [create]);
      return toWire(created!);
    },

    async batchCreateResolutions(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "requests", request.requests.length, limits);
      const creates = request.requests.map((r, i) => toCreate(v, r, `requests[${i}].`, limits));
      checkUnique(
        v,
        "requests",
        request.requests.map((r) => r.resolution?.resolutionId ?? ""),
      );
      v.throwIfAny();
      return { resolutions: (await store.createResolutions(db.on(ctx), ctx.namespace, creates)).map(toWire) };
    },

    async getResolution(request, ctx) {
      const v = new Violations();
      checkId(v, "resolution_id", request.resolutionId, true);
      v.throwIfAny();
      return toWire(await store.getResolution(db.on(ctx), ctx.namespace, request.resolutionId));
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
        toWire,
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
  };
}

