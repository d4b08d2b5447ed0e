// Cron expressions of schedules, read by croner: 5 fields (minute hour
// day-of-month month day-of-week) or 6 with seconds first, in an IANA time
// zone. Daylight saving is croner's: a fixed time of day that a clock change
// skips fires right after it and one it repeats fires once; steps keep their
// pace in real time. Day-of-month and day-of-week combine with OR, as in
// Vixie cron.
import { Cron } from "croner";
import type { Violations } from "../grpc/validate.js";

/** A schedule's timing: what its fire times are computed from. */
export interface CronSpec {
  cron: string;
  timeZone: string;
}

const MAX_CRON_CHARS = 256;

function compile(spec: CronSpec): Cron {
  return new Cron(spec.cron, { mode: "5-or-6-parts", timezone: spec.timeZone });
}

/** Checks an IANA time zone name; true when it is one. */
export function checkTimeZone(v: Violations, field: string, name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    v.add(field, `must be an IANA time zone name such as "UTC" or "Europe/Berlin"`);
    return false;
  }
}

/**
 * Checks a cron expression, read in `timeZone` (a valid one). It must match
 * some time from now on: one that never fires (February 30th) is refused
 * rather than stored dead.
 */
export function checkCron(v: Violations, field: string, cron: string, timeZone: string): void {
  const fields = cron.trim().split(/\s+/).filter(Boolean).length;
  if (cron === "") v.add(field, "is required");
  else if (cron.length > MAX_CRON_CHARS) v.add(field, `must be at most ${MAX_CRON_CHARS} characters`);
  else if (fields !== 5 && fields !== 6) v.add(field, "must have 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first)");
  else {
    try {
      if (compile({ cron, timeZone }).nextRun(new Date()) === null) v.add(field, "matches no time from now on");
    } catch (error) {
      v.add(field, `is not a valid cron expression: ${(error as Error).message.replace(/^CronPattern: /, "")}`);
    }
  }
}

/** The first fire time strictly after `after`; null when the cron matches no later time. */
export function nextFireTime(spec: CronSpec, after: Date): Date | null {
  return compile(spec).nextRun(after);
}

/**
 * The fire times in [from, to], the most recent `limit` of them, oldest
 * first. The usual round has one or two: they are walked forward from
 * `from`. When more than `limit` are due (after an outage), the walk stops
 * and counts back from `to` instead, so however long the outage, a round
 * costs at most about 2 × `limit` steps.
 */
export function dueFireTimes(spec: CronSpec, from: Date, to: Date, limit: number): Date[] {
  const cron = compile(spec);
  const due: Date[] = [];
  // nextRun is strictly after its argument: start just before `from` to include it.
  for (let t = cron.nextRun(new Date(from.getTime() - 1)); t !== null && t <= to; t = cron.nextRun(t)) {
    if (due.length === limit) return mostRecent(cron, from, to, limit);
    due.push(t);
  }
  return due;
}

function mostRecent(cron: Cron, from: Date, to: Date, limit: number): Date[] {
  // previousRuns counts back from just past `to`, so a fire time at `to` itself is found.
  return cron
    .previousRuns(limit + 1, new Date(to.getTime() + 1000))
    .filter((t) => t <= to && t >= from)
    .slice(0, limit)
    .reverse();
}

/** A fire time as dedupe keys carry it: RFC 3339 in UTC, milliseconds only when there are any. */
export function formatFireTime(t: Date): string {
  return t.toISOString().replace(".000Z", "Z");
}
