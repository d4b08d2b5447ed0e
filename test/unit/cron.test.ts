// Fire times of schedules: croner's reading of 5- and 6-field crons in IANA
// time zones, across daylight saving changes, and the catch-up window.
import { describe, expect, it } from "vitest";
import { checkCron, checkTimeZone, dueFireTimes, formatFireTime, nextFireTime } from "../../src/jobs/cron.js";
import { Violations } from "../../src/grpc/validate.js";

const iso = (d: Date | null) => d?.toISOString() ?? null;
const next = (cron: string, timeZone: string, after: string) => iso(nextFireTime({ cron, timeZone }, new Date(after)));

describe("nextFireTime", () => {
  it("reads 5 fields at minute precision and 6 with seconds first, strictly after the given time", () => {
    expect(next("*/15 * * * *", "UTC", "2026-05-01T10:07:00Z")).toBe("2026-05-01T10:15:00.000Z");
    expect(next("*/15 * * * *", "UTC", "2026-05-01T10:15:00Z")).toBe("2026-05-01T10:30:00.000Z");
    expect(next("*/10 * * * * *", "UTC", "2026-05-01T10:07:03.500Z")).toBe("2026-05-01T10:07:10.000Z");
  });

  it("follows America/New_York across both daylight saving changes of 2026", () => {
    // Before the spring change 09:00 EST is 14:00Z; after it 09:00 EDT is 13:00Z.
    expect(next("0 9 * * *", "America/New_York", "2026-03-07T15:00:00Z")).toBe("2026-03-08T13:00:00.000Z");
    // 02:30 does not exist on 2026-03-08 (02:00 EST -> 03:00 EDT): it fires right after the change.
    expect(next("30 2 * * *", "America/New_York", "2026-03-08T05:00:00Z")).toBe("2026-03-08T07:00:00.000Z");
    expect(next("30 2 * * *", "America/New_York", "2026-03-08T07:00:00Z")).toBe("2026-03-09T06:30:00.000Z");
    // 01:30 happens twice on 2026-11-01 (EDT, then EST): a fixed time fires once.
    expect(next("30 1 * * *", "America/New_York", "2026-11-01T04:00:00Z")).toBe("2026-11-01T05:30:00.000Z");
    expect(next("30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z")).toBe("2026-11-02T06:30:00.000Z");
    // A step keeps its pace in real time through the repeated hour.
    const steps = nextAll("*/30 * * * *", "America/New_York", "2026-11-01T04:45:00Z", 5);
    expect(steps).toEqual(["05:00", "05:30", "06:00", "06:30", "07:00"].map((t) => `2026-11-01T${t}:00.000Z`));
  });

  it("reads the same cron in another zone at that zone's wall-clock time", () => {
    expect(next("0 9 * * *", "Asia/Tokyo", "2026-05-01T12:00:00Z")).toBe("2026-05-02T00:00:00.000Z");
    expect(next("0 9 * * *", "UTC", "2026-05-01T12:00:00Z")).toBe("2026-05-02T09:00:00.000Z");
  });
});

function nextAll(cron: string, timeZone: string, after: string, count: number): string[] {
  const out: string[] = [];
  let t = new Date(after);
  for (let i = 0; i < count; i++) {
    t = nextFireTime({ cron, timeZone }, t)!;
    out.push(t.toISOString());
  }
  return out;
}

describe("dueFireTimes", () => {
  const spec = { cron: "* * * * *", timeZone: "UTC" };

  it("gives the most recent `limit` fire times in [from, to], oldest first, the one at `to` included", () => {
    const due = dueFireTimes(spec, new Date("2026-05-01T10:00:00Z"), new Date("2026-05-01T10:10:00Z"), 3);
    expect(due.map(iso)).toEqual(["2026-05-01T10:08:00.000Z", "2026-05-01T10:09:00.000Z", "2026-05-01T10:10:00.000Z"]);
  });

  it("gives all when exactly `limit` are due", () => {
    const due = dueFireTimes(spec, new Date("2026-05-01T10:08:00Z"), new Date("2026-05-01T10:10:00Z"), 3);
    expect(due.map(iso)).toEqual(["2026-05-01T10:08:00.000Z", "2026-05-01T10:09:00.000Z", "2026-05-01T10:10:00.000Z"]);
  });

  it("costs a step or two in the usual round, even for a yearly cron with a large limit", () => {
    const started = performance.now();
    const yearly = { cron: "0 0 1 1 *", timeZone: "America/New_York" };
    const due = dueFireTimes(yearly, new Date("2026-01-01T05:00:00Z"), new Date("2026-01-01T05:00:00.300Z"), 1000);
    expect(due.map(iso)).toEqual(["2026-01-01T05:00:00.000Z"]);
    expect(performance.now() - started).toBeLessThan(50);
  });

  it("gives fewer when fewer are due, and none before `from`", () => {
    const due = dueFireTimes(spec, new Date("2026-05-01T10:09:00Z"), new Date("2026-05-01T10:10:30Z"), 5);
    expect(due.map(iso)).toEqual(["2026-05-01T10:09:00.000Z", "2026-05-01T10:10:00.000Z"]);
    expect(dueFireTimes(spec, new Date("2026-05-01T10:10:01Z"), new Date("2026-05-01T10:10:59Z"), 5)).toEqual([]);
  });

  it("costs `limit` steps however long the outage (a year of seconds)", () => {
    const started = performance.now();
    const due = dueFireTimes({ cron: "* * * * * *", timeZone: "UTC" }, new Date("2025-05-01T00:00:00Z"), new Date("2026-05-01T00:00:00Z"), 2);
    expect(due.map(iso)).toEqual(["2026-04-30T23:59:59.000Z", "2026-05-01T00:00:00.000Z"]);
    expect(performance.now() - started).toBeLessThan(500);
  });
});

describe("checks", () => {
  const cronViolations = (cron: string, timeZone = "UTC") => {
    const v = new Violations();
    checkCron(v, "schedule.cron", cron, timeZone);
    return v.list;
  };

  it("accepts 5 and 6 fields, names and steps", () => {
    for (const cron of ["0 9 * * MON-FRI", "*/5 * * * * *", "0 0 1 JAN *", "0 12 * * 1,3,5", "15 10 L * *"]) expect(cronViolations(cron)).toEqual([]);
  });

  it("refuses other field counts, nicknames, bad values and crons that never fire, naming the field", () => {
    for (const cron of ["", "* * * *", "* * * * * * *", "@daily", "61 * * * *", "* * * * * x", "0 0 30 2 *", "a".repeat(300)]) {
      const found = cronViolations(cron);
      expect(found.map((f) => f.field), cron).toEqual(["schedule.cron"]);
    }
  });

  it("knows IANA zones", () => {
    const v = new Violations();
    expect(checkTimeZone(v, "schedule.time_zone", "Europe/Berlin")).toBe(true);
    expect(checkTimeZone(v, "schedule.time_zone", "Mars/Olympus")).toBe(false);
    expect(checkTimeZone(v, "schedule.time_zone", "UTC\u0000")).toBe(false);
    expect(v.list.map((f) => f.field)).toEqual(["schedule.time_zone", "schedule.time_zone"]);
  });

  it("formats fire times as RFC 3339 UTC, with milliseconds only when there are any", () => {
    expect(formatFireTime(new Date("2026-05-01T10:00:00Z"))).toBe("2026-05-01T10:00:00Z");
    expect(formatFireTime(new Date("2026-05-01T10:00:00.250Z"))).toBe("2026-05-01T10:00:00.250Z");
  });
});
