// GetQueueConfig / UpdateQueueConfig: validate, convert wire <-> record,
// call queue-config.ts. Updates follow AIP-134 over max_running,
// max_running_per_group, rate_limit (as a whole) and fair.
import { JobServiceService, type QueueConfig, RateLimitScope, type UpdateQueueConfigRequest } from "@cairn/client";
import { durationFromMicros, positiveDurationMicros, timestampFromIso } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import { updateMask } from "../grpc/update-mask.js";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { checkId, Violations } from "../grpc/validate.js";
import { getQueueConfig, type QueueConfigRecord, type QueueConfigSettings, type RateScope, updateQueueConfig } from "./queue-config.js";

const SCOPES = enumCodec<RateLimitScope, RateScope>(RateLimitScope, "RATE_LIMIT_SCOPE_");
const MASK_PATHS = ["max_running", "max_running_per_group", "rate_limit", "fair"] as const;
/** A rate limit's period: long enough for daily quotas, short enough that its spends log stays small. */
const MAX_PERIOD_SECONDS = 24 * 3600;
const MAX_LIMIT = 1_000_000;

type QueueConfigHandlers = Pick<ServiceHandlers<typeof JobServiceService>, "getQueueConfig" | "updateQueueConfig">;

export function queueConfigHandlers({ db }: ServiceDeps): QueueConfigHandlers {
  return {
    async getQueueConfig(request, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, true);
      v.throwIfAny();
      return toWireQueueConfig(await getQueueConfig(db.on(ctx), ctx.namespace, request.queue));
    },

    async updateQueueConfig(request, ctx) {
      const v = new Violations();
      const patch = toPatch(v, request);
      if (request.expectedVersion !== undefined && request.expectedVersion < 0) v.add("expected_version", "must not be negative");
      v.throwIfAny();
      const config = request.config!;
      return toWireQueueConfig(await updateQueueConfig(db.on(ctx), ctx.namespace, config.queue, patch, request.expectedVersion));
    },
  };
}

export function toWireQueueConfig(c: QueueConfigRecord): QueueConfig {
  return {
    queue: c.queue,
    maxRunning: c.maxRunning,
    maxRunningPerGroup: c.maxRunningPerGroup,
    rateLimit: c.rateLimit
      ? { count: c.rateLimit.count, period: durationFromMicros(c.rateLimit.periodMs * 1000), scope: SCOPES.toWire(c.rateLimit.scope) }
      : undefined,
    fair: c.fair,
    version: c.version,
    updateTime: timestampFromIso(c.updateTime),
  };
}

/**
 * The settings the update writes (AIP-134): an empty mask writes those set
 * in the request (a limit not 0, rate_limit present, fair true); "*" writes
 * every one, clearing those not given; otherwise exactly the named paths.
 */
function toPatch(v: Violations, request: UpdateQueueConfigRequest): Partial<QueueConfigSettings> {
  const config = request.config;
  if (!config) {
    v.add("config", "is required");
    return {};
  }
  checkId(v, "config.queue", config.queue, true);
  const { writes } = updateMask(v, request.updateMask ?? [], MASK_PATHS);
  const patch: Partial<QueueConfigSettings> = {};
  if (writes("max_running", config.maxRunning !== 0)) patch.maxRunning = limit(v, "config.max_running", config.maxRunning);
  if (writes("max_running_per_group", config.maxRunningPerGroup !== 0)) {
    patch.maxRunningPerGroup = limit(v, "config.max_running_per_group", config.maxRunningPerGroup);
  }
  if (writes("rate_limit", config.rateLimit !== undefined)) patch.rateLimit = rateLimit(v, config.rateLimit);
  if (writes("fair", config.fair)) patch.fair = config.fair;
  return patch;
}

function limit(v: Violations, field: string, value: number): number {
  if (value < 0 || value > MAX_LIMIT) v.add(field, `must be 0..${MAX_LIMIT} (0: no limit)`);
  return value;
}

/** Null (no rate limit) when unset or its count is 0; a count needs a positive period of at most 24 h. */
function rateLimit(v: Violations, r: QueueConfig["rateLimit"]): QueueConfigSettings["rateLimit"] {
  if (!r) return null;
  const count = limit(v, "config.rate_limit.count", r.count);
  const scope = SCOPES.parse(v, "config.rate_limit.scope", r.scope, "QUEUE");
  if (count === 0) return null;
  if (!r.period) {
    v.add("config.rate_limit.period", "is required with a count");
    return null;
  }
  const micros = v.collect(() => positiveDurationMicros(r.period!, "config.rate_limit.period", MAX_PERIOD_SECONDS));
  if (micros !== null && micros < 1000) v.add("config.rate_limit.period", "must be at least 1 ms");
  return { count, periodMs: Math.round((micros ?? 0) / 1000), scope: scope ?? "QUEUE" };
}
