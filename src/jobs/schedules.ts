// SQL for schedules (recurring jobs), and their firing. No gRPC types here.
//
// Exactly one job per fire time, across replicas: a fire is one transaction
// that locks the due schedule row (FOR UPDATE SKIP LOCKED), enqueues the
// fire time's job through the same store function BatchEnqueueJobs uses, and
// moves next_fire_time past it. The job and the advance commit together or
// not at all: a replica that dies mid-fire rolls both back, and the next
// round (on any replica) fires that time again, once. The row lock also
// orders fires against UpdateSchedule, Pause and Trigger, which lock the row
// too. A transaction-level advisory lock lets one replica fire at a time;
// the row locks alone would already keep fires exactly-once.
//
// Each job carries dedupe_key "schedule:<id>:<fire time>", so even a job
// enqueued by hand with that key does not double a fire.
import { v7 as uuidv7 } from "uuid";
import { type Fields, selectList } from "../db/columns.js";
import type { Queryable } from "../db/database.js";
import { createOnce, type Idempotency } from "../db/idempotency.js";
import { jsonSize, type Page, type PageLimits, type Paged, pagedSql, rowSize, type Sizes, textSize, toPage } from "../db/pages.js";
import { alreadyExists, notFound, versionConflict } from "../errors.js";
import { LOCKS } from "../reaper.js";
import { type CronSpec, dueFireTimes, formatFireTime, nextFireTime } from "./cron.js";
import { enqueueAll } from "./enqueue.js";
import type { BackoffPolicy, JobEnqueue, JobRecord } from "./store.js";
import { find as findJob } from "./store.js";

type JsonObject = Record<string, unknown>;
export type OverlapName = "ALLOW" | "SKIP";

/** What each fire's job is made of; the fire adds job_id, queue, run_time and dedupe_key. */
export interface JobTemplateRecord {
  payload: JsonObject;
  priority: number;
  maxAttempts: number;
  backoff: BackoffPolicy;
  groupKey: string;
}

/** The fields UpdateSchedule may change. */
export interface ScheduleSettings extends CronSpec {
  queue: string;
  job: JobTemplateRecord;
  overlap: OverlapName;
  paused: boolean;
  catchUpLimit: number;
}

export interface NewSchedule extends ScheduleSettings {
  scheduleId: string;
}

export interface ScheduleRecord extends NewSchedule {
  nextFireTime: string | null;
  lastFireTime: string | null;
  version: number;
  createTime: string;
  updateTime: string;
}

export interface ScheduleCreate {
  schedule: NewSchedule;
  idempotency: Idempotency | null;
}

/** Fields to change; undefined leaves a field as it is. */
export type SchedulePatch = Partial<ScheduleSettings>;

export interface TriggerOutcome {
  schedule: ScheduleRecord;
  job: JobRecord;
  /** The previous run, unfinished, under OVERLAP_SKIP: nothing was enqueued. */
  deduplicated: boolean;
}

const CREATE_SCOPE = "cairn.v1.JobService/CreateSchedule";

const FIELDS: Fields<ScheduleRecord> = {
  scheduleId: "schedule_id",
  queue: "queue",
  cron: "cron",
  timeZone: "time_zone",
  job: (t) =>
    `json_build_object('payload', ${t}payload, 'priority', ${t}priority, 'maxAttempts', ${t}max_attempts,
       'backoff', json_build_object('initialMs', ${t}backoff_initial_ms, 'maxMs', ${t}backoff_max_ms, 'multiplier', ${t}backoff_multiplier),
       'groupKey', ${t}group_key)`,
  overlap: "overlap",
  paused: "paused",
  catchUpLimit: "catch_up_limit",
  nextFireTime: "next_fire_time",
  lastFireTime: "last_fire_time",
  version: "version",
  createTime: "create_time",
  updateTime: "update_time",
};
const COLUMNS = selectList(FIELDS);

const SIZES: Sizes<ScheduleRecord> = {
  scheduleId: textSize("schedule_id"),
  queue: textSize("queue"),
  cron: textSize("cron"),
  timeZone: textSize("time_zone"),
  job: `${jsonSize("payload")} + ${textSize("group_key")}`,
};

/** The template's columns, in the order of templateParams ($3..$9 after namespace and id). */
const TEMPLATE_COLUMNS = "payload, priority, max_attempts, backoff_initial_ms, backoff_max_ms, backoff_multiplier, group_key";

function templateParams(t: JobTemplateRecord): unknown[] {
  return [JSON.stringify(t.payload), t.priority, t.maxAttempts, t.backoff.initialMs, t.backoff.maxMs, t.backoff.multiplier, t.groupKey];
}

/** The transaction's time, as a Date: fire times are computed on the database's clock, the one every replica shares. */
async function databaseNow(tx: Queryable): Promise<Date> {
  const result = await tx.query<{ now: string }>("SELECT now() AS now");
  return new Date(result.rows[0]!.now);
}

/** When a schedule fires next from `now`: never while paused. */
function upcoming(s: ScheduleSettings, now: Date): string | null {
  return s.paused ? null : (nextFireTime(s, now)?.toISOString() ?? null);
}

export function createSchedule(q: Queryable, ns: string, c: ScheduleCreate): Promise<ScheduleRecord> {
  return q.atomic((tx) =>
    createOnce(tx, ns, {
      scope: CREATE_SCOPE,
      idempotency: c.idempotency,
      resource: "schedule",
      resourceId: c.schedule.scheduleId,
      read: (id) => findSchedule(tx, ns, id),
      create: () => insertSchedule(tx, ns, c.schedule),
    }),
  );
}

async function insertSchedule(tx: Queryable, ns: string, s: NewSchedule): Promise<ScheduleRecord> {
  const next = upcoming(s, await databaseNow(tx));
  const inserted = await tx.query<ScheduleRecord>(
    `INSERT INTO job_schedules (namespace, schedule_id, ${TEMPLATE_COLUMNS}, queue, cron, time_zone, overlap, paused,
                                catch_up_limit, next_fire_time)
     VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
     ON CONFLICT (namespace, schedule_id) DO NOTHING
     RETURNING ${COLUMNS}`,
    [ns, s.scheduleId, ...templateParams(s.job), s.queue, s.cron, s.timeZone, s.overlap, s.paused, s.catchUpLimit, next],
  );
  if (!inserted.rows[0]) throw alreadyExists("schedule", s.scheduleId);
  return inserted.rows[0];
}

export async function findSchedule(q: Queryable, ns: string, scheduleId: string): Promise<ScheduleRecord | undefined> {
  const result = await q.query<ScheduleRecord>(`SELECT ${COLUMNS} FROM job_schedules WHERE namespace = $1 AND schedule_id = $2`, [
    ns,
    scheduleId,
  ]);
  return result.rows[0];
}

export async function getSchedule(q: Queryable, ns: string, scheduleId: string): Promise<ScheduleRecord> {
  const schedule = await findSchedule(q, ns, scheduleId);
  if (!schedule) throw notFound("schedule", scheduleId);
  return schedule;
}

/** A page of schedules by (create_time, schedule_id), after the keyset `after`. */
export async function listSchedules(
  q: Queryable,
  ns: string,
  queue: string | null,
  limits: PageLimits,
  after: { time: string; scheduleId: string } | undefined,
): Promise<Page<ScheduleRecord>> {
  const sql = pagedSql({
    fields: FIELDS,
    size: rowSize(SIZES),
    from: `FROM job_schedules
      WHERE namespace = $1
        AND ($2::text IS NULL OR queue = $2)
        AND ($3::timestamptz IS NULL OR (create_time, schedule_id) > ($3, $4::text))`,
    order: [
      ["createTime", "ASC"],
      ["scheduleId", "ASC"],
    ],
    limit: "$5",
    budget: "$6",
  });
  const result = await q.query<Paged<ScheduleRecord>>(sql, [ns, queue, after?.time ?? null, after?.scheduleId ?? null, limits.rows, limits.bytes]);
  return toPage(result.rows);
}

/** The schedule, locked for this transaction; NOT_FOUND, or VERSION_CONFLICT when `expectedVersion` is given and differs. */
async function lockSchedule(tx: Queryable, ns: string, scheduleId: string, expectedVersion?: number): Promise<ScheduleRecord> {
  const result = await tx.query<ScheduleRecord>(
    `SELECT ${COLUMNS} FROM job_schedules WHERE namespace = $1 AND schedule_id = $2 FOR UPDATE`,
    [ns, scheduleId],
  );
  const current = result.rows[0];
  if (!current) throw notFound("schedule", scheduleId);
  if (expectedVersion !== undefined && current.version !== expectedVersion) throw versionConflict("schedule", scheduleId, current.version);
  return current;
}

/**
 * Writes the patched schedule, version + 1. next_fire_time is computed from
 * now when the timing changes (cron, time zone) or it is resumed; pausing
 * clears it; otherwise it stays.
 */
export function updateSchedule(
  q: Queryable,
  ns: string,
  scheduleId: string,
  patch: SchedulePatch,
  expectedVersion?: number,
): Promise<ScheduleRecord> {
  return q.atomic(async (tx) => {
    const current = await lockSchedule(tx, ns, scheduleId, expectedVersion);
    const merged: ScheduleSettings = { ...current, ...dropUndefined(patch) };
    const retimed = merged.cron !== current.cron || merged.timeZone !== current.timeZone || merged.paused !== current.paused;
    const next = retimed ? upcoming(merged, await databaseNow(tx)) : current.nextFireTime;
    return writeSchedule(tx, ns, scheduleId, merged, next);
  });
}

function dropUndefined<T extends object>(patch: T): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined)) as Partial<T>;
}

async function writeSchedule(tx: Queryable, ns: string, scheduleId: string, s: ScheduleSettings, next: string | null): Promise<ScheduleRecord> {
  const updated = await tx.query<ScheduleRecord>(
    `UPDATE job_schedules SET (${TEMPLATE_COLUMNS}) = ($3::jsonb, $4, $5, $6, $7, $8, $9),
            queue = $10, cron = $11, time_zone = $12, overlap = $13, paused = $14, catch_up_limit = $15,
            next_fire_time = $16, version = version + 1, update_time = now()
      WHERE namespace = $1 AND schedule_id = $2
      RETURNING ${COLUMNS}`,
    [ns, scheduleId, ...templateParams(s.job), s.queue, s.cron, s.timeZone, s.overlap, s.paused, s.catchUpLimit, next],
  );
  return updated.rows[0]!;
}

/** Pauses or resumes; a schedule already so is returned as it is (no new version). */
export function setSchedulePaused(q: Queryable, ns: string, scheduleId: string, paused: boolean): Promise<ScheduleRecord> {
  return q.atomic(async (tx) => {
    const current = await lockSchedule(tx, ns, scheduleId);
    if (current.paused === paused) return current;
    const merged = { ...current, paused };
    return writeSchedule(tx, ns, scheduleId, merged, upcoming(merged, await databaseNow(tx)));
  });
}

export async function deleteSchedule(q: Queryable, ns: string, scheduleId: string, expectedVersion?: number): Promise<void> {
  const deleted = await q.query<{ version: number; deleted: number }>(
    `WITH current AS (SELECT version FROM job_schedules WHERE namespace = $1 AND schedule_id = $2),
          deleted AS (
            DELETE FROM job_schedules WHERE namespace = $1 AND schedule_id = $2 AND ($3::bigint IS NULL OR version = $3)
            RETURNING 1)
     SELECT version, (SELECT count(*) FROM deleted)::int AS deleted FROM current`,
    [ns, scheduleId, expectedVersion ?? null],
  );
  const row = deleted.rows[0];
  if (!row) throw notFound("schedule", scheduleId);
  if (row.deleted === 0) throw versionConflict("schedule", scheduleId, row.version);
}

/** A schedule row as fires and triggers lock it: with the job of its latest fire. */
interface LockedSchedule extends ScheduleRecord {
  lastJobId: string | null;
}

interface DueSchedule extends LockedSchedule {
  ns: string;
}

const LOCKED_COLUMNS = `${selectList(FIELDS, "s.")}, s.last_job_id AS "lastJobId"`;

/**
 * The job of the schedule's latest fire while it is unfinished (finished
 * jobs have a finish_time; retention may have deleted it). Asked after the
 * schedule row is locked, in a statement of its own, so it sees a job that
 * the fire or trigger which held the lock before has committed.
 */
async function unfinishedPreviousRun(tx: Queryable, ns: string, s: LockedSchedule): Promise<JobRecord | undefined> {
  if (s.overlap !== "SKIP" || s.lastJobId === null) return undefined;
  const job = await findJob(tx, ns, s.lastJobId);
  return job?.finishTime === null ? job : undefined;
}

/**
 * Enqueues a job now, paused or not, and records it as the latest fire
 * (next_fire_time stays). Under OVERLAP_SKIP with the previous run
 * unfinished, that run is returned instead, deduplicated.
 */
export function triggerSchedule(q: Queryable, ns: string, scheduleId: string): Promise<TriggerOutcome> {
  return q.atomic(async (tx) => {
    const locked = await tx.query<LockedSchedule>(
      `SELECT ${LOCKED_COLUMNS} FROM job_schedules s WHERE s.namespace = $1 AND s.schedule_id = $2 FOR UPDATE`,
      [ns, scheduleId],
    );
    const row = locked.rows[0];
    if (!row) throw notFound("schedule", scheduleId);
    const { lastJobId: _, ...schedule } = row;
    const running = await unfinishedPreviousRun(tx, ns, row);
    if (running) return { schedule, job: running, deduplicated: true };
    const now = await databaseNow(tx);
    const [outcome] = await enqueueAll(tx, ns, [fireJob(scheduleId, schedule, now)]);
    const fired = await recordFires(tx, ns, scheduleId, { next: schedule.nextFireTime, lastFire: now, lastJobId: outcome!.job.jobId });
    return { schedule: fired, job: outcome!.job, deduplicated: outcome!.deduplicated };
  });
}

/** The job of one fire time: the template, in the schedule's queue, runnable from the fire time. */
function fireJob(scheduleId: string, s: ScheduleSettings, fireTime: Date): JobEnqueue {
  return {
    job: {
      ...s.job,
      jobId: uuidv7(),
      queue: s.queue,
      runTime: fireTime.toISOString(),
      dedupeKey: `schedule:${scheduleId}:${formatFireTime(fireTime)}`,
      sessionId: "",
    },
    idempotency: null,
  };
}

async function recordFires(
  tx: Queryable,
  ns: string,
  scheduleId: string,
  f: { next: string | null; lastFire: Date | null; lastJobId: string | null },
): Promise<ScheduleRecord> {
  const updated = await tx.query<ScheduleRecord>(
    `UPDATE job_schedules SET next_fire_time = $3, last_fire_time = coalesce($4, last_fire_time), last_job_id = coalesce($5, last_job_id)
      WHERE namespace = $1 AND schedule_id = $2
      RETURNING ${COLUMNS}`,
    [ns, scheduleId, f.next, f.lastFire?.toISOString() ?? null, f.lastJobId],
  );
  return updated.rows[0]!;
}

/** How long until the earliest fire time of any schedule (0 or less: one is due); null when none will fire. One index lookup. */
export async function msUntilNextFire(q: Queryable): Promise<number | null> {
  const result = await q.query<{ ms: number | null }>(
    `SELECT (extract(epoch FROM min(next_fire_time) - now()) * 1000)::float8 AS ms FROM job_schedules WHERE next_fire_time IS NOT NULL`,
  );
  return result.rows[0]?.ms ?? null;
}

export interface FireRound {
  /** False when another replica held the advisory lock: nothing was looked at. */
  locked: boolean;
  /** Schedules that were due and fired (or skipped their fire times under OVERLAP_SKIP). */
  handled: number;
  /** Jobs enqueued. */
  fired: number;
  /** Schedules whose fire failed: rolled back alone, still due, tried again next round. */
  failed: { ns: string; scheduleId: string; error: unknown }[];
}

/**
 * One round over the schedules that are due, in every namespace: up to
 * `batch` of them, in one transaction under the schedule ticker's advisory
 * lock. Each gets its due fire times (the most recent catch_up_limit of
 * them, after downtime) enqueued, one job each, and next_fire_time moved to
 * the first fire time after now. Each schedule fires inside a savepoint, so
 * one that fails cannot hold back the others.
 */
export function fireDueSchedules(q: Queryable, batch: number): Promise<FireRound> {
  return q.atomic(async (tx) => {
    const round: FireRound = { locked: false, handled: 0, fired: 0, failed: [] };
    const lock = await tx.query<{ ok: boolean }>("SELECT pg_try_advisory_xact_lock($1) AS ok", [LOCKS.schedules]);
    if (!lock.rows[0]!.ok) return round;
    round.locked = true;
    const due = await tx.query<DueSchedule>(
      `SELECT s.namespace AS ns, ${LOCKED_COLUMNS}
         FROM job_schedules s
        WHERE s.next_fire_time <= now() AND NOT s.paused
        ORDER BY s.next_fire_time
        LIMIT $1
        FOR UPDATE SKIP LOCKED`,
      [batch],
    );
    if (due.rows.length === 0) return round;
    const now = await databaseNow(tx);
    for (const schedule of due.rows) {
      await tx.query("SAVEPOINT schedule_fire");
      try {
        round.fired += await fireSchedule(tx, schedule, now);
        round.handled++;
      } catch (error) {
        await tx.query("ROLLBACK TO SAVEPOINT schedule_fire");
        round.failed.push({ ns: schedule.ns, scheduleId: schedule.scheduleId, error });
      }
    }
    return round;
  });
}

/**
 * Fires one due schedule: its due fire times, oldest first, one job each,
 * and next_fire_time moved past now. Returns how many jobs it enqueued.
 */
async function fireSchedule(tx: Queryable, s: DueSchedule, now: Date): Promise<number> {
  const firing = await timesToFire(tx, s, dueFireTimes(s, new Date(s.nextFireTime!), now, s.catchUpLimit));
  const outcomes = firing.length ? await enqueueAll(tx, s.ns, firing.map((t) => fireJob(s.scheduleId, s, t))) : [];
  const last = outcomes.length - 1;
  await recordFires(tx, s.ns, s.scheduleId, {
    next: nextFireTime(s, now)?.toISOString() ?? null,
    lastFire: last >= 0 ? firing[last]! : null,
    lastJobId: last >= 0 ? outcomes[last]!.job.jobId : null,
  });
  return outcomes.length;
}

/**
 * The due fire times that enqueue a job. Under OVERLAP_SKIP: none while the
 * previous run is unfinished, else only the oldest (its job is unfinished
 * when the next comes, so the rest are skipped).
 */
async function timesToFire(tx: Queryable, s: DueSchedule, due: Date[]): Promise<Date[]> {
  if (s.overlap !== "SKIP") return due;
  return (await unfinishedPreviousRun(tx, s.ns, s)) ? [] : due.slice(0, 1);
}
