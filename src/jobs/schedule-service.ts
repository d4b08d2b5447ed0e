// JobService's schedule methods: validate, convert wire <-> record, call the
// store (schedules.ts). A schedule's job template is checked by the same
// code EnqueueJob checks a job with (service.ts toEnqueue), so its rules and
// defaults are the queue's own.
import { type CreateScheduleRequest, Job, type JobServiceService, JobTemplate, Overlap, Schedule } from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import type { Limits } from "../config.js";
import { idempotency } from "../db/idempotency.js";
import { timestampFromIso } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageResponse, pageSize } from "../grpc/pagination.js";
import { updateMask } from "../grpc/update-mask.js";
import { checkExpectedVersion, checkId, Violations } from "../grpc/validate.js";
import { checkCron, checkTimeZone } from "./cron.js";
import {
  createSchedule,
  deleteSchedule,
  getSchedule,
  type JobTemplateRecord,
  listSchedules,
  type OverlapName,
  type ScheduleCreate,
  type SchedulePatch,
  type ScheduleRecord,
  type ScheduleSettings,
  setSchedulePaused,
  triggerSchedule,
  updateSchedule,
} from "./schedules.js";
import { toEnqueue, toWireBackoff, toWire as toWireJob } from "./service.js";

const OVERLAP = enumCodec<Overlap, OverlapName>(Overlap, "OVERLAP_");
const DEFAULT_TIME_ZONE = "UTC";
const DEFAULT_CATCH_UP_LIMIT = 1;
const MAX_CATCH_UP_LIMIT = 1000;
const UPDATE_MASK_PATHS = ["queue", "cron", "time_zone", "job", "overlap", "paused", "catch_up_limit"] as const;
/** A valid queue for checking a template with toEnqueue: the schedule's own queue is checked as schedule.queue. */
const TEMPLATE_QUEUE = "schedule";

export type ScheduleMethod =
  | "createSchedule"
  | "getSchedule"
  | "listSchedules"
  | "updateSchedule"
  | "deleteSchedule"
  | "pauseSchedule"
  | "resumeSchedule"
  | "triggerSchedule";

type ScheduleHandlers = Pick<ServiceHandlers<typeof JobServiceService>, ScheduleMethod>;

function toWireTemplate(t: JobTemplateRecord): JobTemplate {
  return {
    payload: t.payload,
    priority: t.priority,
    maxAttempts: t.maxAttempts,
    backoff: toWireBackoff(t.backoff),
    groupKey: t.groupKey,
  };
}

function toWireSchedule(s: ScheduleRecord): Schedule {
  return {
    scheduleId: s.scheduleId,
    queue: s.queue,
    cron: s.cron,
    timeZone: s.timeZone,
    job: toWireTemplate(s.job),
    overlap: OVERLAP.toWire(s.overlap),
    paused: s.paused,
    nextFireTime: timestampFromIso(s.nextFireTime),
    lastFireTime: timestampFromIso(s.lastFireTime),
    catchUpLimit: s.catchUpLimit,
    version: s.version,
    createTime: timestampFromIso(s.createTime),
    updateTime: timestampFromIso(s.updateTime),
  };
}

/** The template as EnqueueJob would take it (violations name schedule.job.*), less what each fire sets. */
function toTemplate(v: Violations, template: JobTemplate | undefined, limits: Limits): JobTemplateRecord {
  const { payload, priority, maxAttempts, backoff, groupKey } = template ?? JobTemplate.fromPartial({});
  const job = Job.fromPartial({ queue: TEMPLATE_QUEUE, payload, priority, maxAttempts, backoff, groupKey });
  const { job: checked } = toEnqueue(v, { job, requestId: "" }, "schedule.", limits);
  return {
    payload: checked.payload,
    priority: checked.priority,
    maxAttempts: checked.maxAttempts,
    backoff: checked.backoff,
    groupKey: checked.groupKey ?? "",
  };
}

function toCatchUpLimit(v: Violations, limit: number): number {
  if (limit < 0 || limit > MAX_CATCH_UP_LIMIT) v.add("schedule.catch_up_limit", `must be 1..${MAX_CATCH_UP_LIMIT} (0: the default, ${DEFAULT_CATCH_UP_LIMIT})`);
  return limit || DEFAULT_CATCH_UP_LIMIT;
}

/** The cron read in the schedule's time zone when that is valid (else only the cron's own syntax is judged, in UTC). */
function checkTiming(v: Violations, cron: string, timeZone: string): void {
  const zoneOk = checkTimeZone(v, "schedule.time_zone", timeZone);
  checkCron(v, "schedule.cron", cron, zoneOk ? timeZone : DEFAULT_TIME_ZONE);
}

function toSettings(v: Violations, s: Schedule, limits: Limits): ScheduleSettings {
  checkId(v, "schedule.queue", s.queue, true);
  const timeZone = s.timeZone || DEFAULT_TIME_ZONE;
  checkTiming(v, s.cron, timeZone);
  return {
    queue: s.queue,
    cron: s.cron,
    timeZone,
    job: toTemplate(v, s.job, limits),
    overlap: OVERLAP.parse(v, "schedule.overlap", s.overlap, "ALLOW") ?? "ALLOW",
    paused: s.paused,
    catchUpLimit: toCatchUpLimit(v, s.catchUpLimit),
  };
}

function toScheduleCreate(v: Violations, request: CreateScheduleRequest, limits: Limits): ScheduleCreate {
  const schedule = request.schedule;
  if (!schedule) {
    v.add("schedule", "is required");
    return undefined as never;
  }
  if (request.scheduleId !== "" && schedule.scheduleId !== "" && request.scheduleId !== schedule.scheduleId) {
    v.add("schedule_id", "differs from schedule.schedule_id; set one of them");
  }
  const idField = request.scheduleId !== "" ? "schedule_id" : "schedule.schedule_id";
  const givenId = request.scheduleId || schedule.scheduleId;
  checkId(v, idField, givenId, false);
  checkId(v, "request_id", request.requestId, false);
  return {
    schedule: { scheduleId: givenId || uuidv7(), ...toSettings(v, schedule, limits) },
    // The request as sent, minus its request_id: a retry must match it exactly.
    idempotency: idempotency(request.requestId, () => ({ scheduleId: request.scheduleId, schedule })),
  };
}

/**
 * The fields an update writes (AIP-134): an empty mask writes those set in
 * the request (non-empty strings, a job, an overlap, paused = true, a
 * catch_up_limit); "*" replaces every field, defaults for those not given.
 * A new cron is judged in the new time zone when both are written, else in
 * UTC (its syntax; the stored zone is not known here).
 */
function toPatch(v: Violations, s: Schedule, paths: string[], limits: Limits): SchedulePatch {
  const mask = updateMask(v, paths, UPDATE_MASK_PATHS);
  const patch: SchedulePatch = {};
  if (mask.writes("queue", s.queue !== "")) {
    checkId(v, "schedule.queue", s.queue, true);
    patch.queue = s.queue;
  }
  const writesZone = mask.writes("time_zone", s.timeZone !== "");
  if (writesZone) patch.timeZone = s.timeZone || DEFAULT_TIME_ZONE;
  if (mask.writes("cron", s.cron !== "")) {
    patch.cron = s.cron;
    checkTiming(v, s.cron, patch.timeZone ?? DEFAULT_TIME_ZONE);
  } else if (writesZone) checkTimeZone(v, "schedule.time_zone", patch.timeZone!);
  if (mask.writes("job", s.job !== undefined)) patch.job = toTemplate(v, s.job, limits);
  if (mask.writes("overlap", s.overlap !== Overlap.OVERLAP_UNSPECIFIED)) patch.overlap = OVERLAP.parse(v, "schedule.overlap", s.overlap, "ALLOW");
  if (mask.writes("paused", s.paused)) patch.paused = s.paused;
  if (mask.writes("catch_up_limit", s.catchUpLimit !== 0)) patch.catchUpLimit = toCatchUpLimit(v, s.catchUpLimit);
  return patch;
}

function checkScheduleId(scheduleId: string): void {
  const v = new Violations();
  checkId(v, "schedule_id", scheduleId, true);
  v.throwIfAny();
}

export function scheduleHandlers({ db, limits }: ServiceDeps): ScheduleHandlers {
  return {
    async createSchedule(request, ctx) {
      const v = new Violations();
      const create = toScheduleCreate(v, request, limits);
      v.throwIfAny();
      return toWireSchedule(await createSchedule(db.on(ctx), ctx.namespace, create));
    },

    async getSchedule(request, ctx) {
      checkScheduleId(request.scheduleId);
      return toWireSchedule(await getSchedule(db.on(ctx), ctx.namespace, request.scheduleId));
    },

    async listSchedules(request, ctx) {
      const v = new Violations();
      checkId(v, "queue", request.queue, false);
      const limit = pageSize(v, request.pageSize);
      v.throwIfAny();
      const bound = { queue: request.queue };
      const key = decodePageToken(request.pageToken, bound, ["time", "id"]);
      const after = key ? { time: key[0], scheduleId: key[1] } : undefined;
      const page = await listSchedules(db.on(ctx), ctx.namespace, request.queue || null, { rows: limit, bytes: limits.maxPageBytes }, after);
      const { items, nextPageToken } = pageResponse(page, {
        bound,
        keyOf: (s) => [s.createTime, s.scheduleId],
        toWire: toWireSchedule,
        encoder: Schedule,
        maxBytes: limits.maxPageBytes,
      });
      return { schedules: items, nextPageToken };
    },

    async updateSchedule(request, ctx) {
      const v = new Violations();
      if (!request.schedule) v.add("schedule", "is required");
      v.throwIfAny();
      const schedule = request.schedule!;
      checkId(v, "schedule.schedule_id", schedule.scheduleId, true);
      checkExpectedVersion(v, "expected_version", request.expectedVersion);
      const patch = toPatch(v, schedule, request.updateMask ?? [], limits);
      v.throwIfAny();
      return toWireSchedule(await updateSchedule(db.on(ctx), ctx.namespace, schedule.scheduleId, patch, request.expectedVersion));
    },

    async deleteSchedule(request, ctx) {
      const v = new Violations();
      checkId(v, "schedule_id", request.scheduleId, true);
      checkExpectedVersion(v, "expected_version", request.expectedVersion);
      v.throwIfAny();
      await deleteSchedule(db.on(ctx), ctx.namespace, request.scheduleId, request.expectedVersion);
      return {};
    },

    async pauseSchedule(request, ctx) {
      checkScheduleId(request.scheduleId);
      return toWireSchedule(await setSchedulePaused(db.on(ctx), ctx.namespace, request.scheduleId, true));
    },

    async resumeSchedule(request, ctx) {
      checkScheduleId(request.scheduleId);
      return toWireSchedule(await setSchedulePaused(db.on(ctx), ctx.namespace, request.scheduleId, false));
    },

    async triggerSchedule(request, ctx) {
      checkScheduleId(request.scheduleId);
      const outcome = await triggerSchedule(db.on(ctx), ctx.namespace, request.scheduleId);
      return { schedule: toWireSchedule(outcome.schedule), job: toWireJob(outcome.job), deduplicated: outcome.deduplicated };
    },
  };
}
