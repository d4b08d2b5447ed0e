// Schedules: CRUD and validation, firing (a 6-field cron every second),
// exactly one job per fire time across two replicas while fires die midway
// and a replica stops, OVERLAP_SKIP, pause/resume/trigger, catch-up after
// downtime, time zones and namespaces. Replica A is the harness's daemon,
// replica B a second daemon on the same database; both tick every 100 ms.
import { CairnClient, JobState, Overlap, type Schedule } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { createLogger } from "../src/logger.js";
import { LOCKS } from "../src/reaper.js";
import { failure, type Harness, startHarness, testConfig } from "./support/harness.js";
import { waitFor } from "./support/wait.js";

let h: Harness;
let replicaB: Daemon | undefined;
let b: CairnClient;
let n = 0;
const unique = (what: string) => `${what}-${Date.now().toString(36)}-${++n}`;
const seconds = (s: number) => ({ seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const toMs = (t: { seconds: number; nanos: number } | undefined) => (t ? t.seconds * 1000 + Math.floor(t.nanos / 1e6) : undefined);

beforeAll(async () => {
  const overrides = { scheduleTickMs: 100 };
  h = await startHarness(overrides);
  replicaB = await startDaemon(testConfig(h.databaseUrl, overrides), createLogger("silent"));
  b = new CairnClient(replicaB.address);
});
afterAll(async () => {
  b?.close();
  await replicaB?.stop();
  await h?.stop();
});

const jobs = () => h.client.jobs;
const create = (schedule: Partial<Schedule>, extra: object = {}) =>
  jobs().createSchedule({ schedule: { queue: unique("q"), cron: "* * * * * *", ...schedule }, ...extra });

/** The jobs a schedule enqueued, by fire time (read from the dedupe key). */
async function firedJobs(scheduleId: string, ns = "default") {
  const rows = await h.sql.query<{ dedupe_key: string; job_id: string; state: string; run_time: Date; create_time: Date }>(
    `SELECT dedupe_key, job_id, state, run_time, create_time FROM jobs WHERE namespace = $1 AND dedupe_key LIKE $2 ORDER BY dedupe_key`,
    [ns, `schedule:${scheduleId}:%`],
  );
  return rows.rows.map((r) => ({ ...r, fireTime: r.dedupe_key.slice(`schedule:${scheduleId}:`.length) }));
}

describe("create, read, update, delete", () => {
  it("creates with defaults, reads back, lists by queue with paging, and replays a request_id", async () => {
    const queue = unique("q");
    const scheduleId = unique("s");
    const created = await jobs().createSchedule({ scheduleId, schedule: { queue, cron: "0 9 * * *", job: { payload: { report: "daily" } } }, requestId: unique("r") });
    expect(created).toMatchObject({
      scheduleId,
      queue,
      cron: "0 9 * * *",
      timeZone: "UTC",
      overlap: Overlap.OVERLAP_ALLOW,
      paused: false,
      catchUpLimit: 1,
      version: 1,
      job: { payload: { report: "daily" }, priority: 0, maxAttempts: 5, groupKey: "" },
    });
    expect(created.job!.backoff).toEqual({ initialDelay: seconds(1), maxDelay: seconds(3600), multiplier: 2 });
    const next = new Date(toMs(created.nextFireTime)!);
    expect(next.getTime()).toBeGreaterThan(Date.now() - 5_000);
    expect(next.toISOString()).toMatch(/T09:00:00\.000Z$/);
    expect(created.lastFireTime).toBeUndefined();
    expect(await jobs().getSchedule({ scheduleId })).toEqual(created);

    const again = await failure(jobs().createSchedule({ scheduleId, schedule: { queue, cron: "0 9 * * *" } }));
    expect(again).toMatchObject({ code: status.ALREADY_EXISTS, reason: "ALREADY_EXISTS" });

    const requestId = unique("r");
    const first = await create({ queue, cron: "0 10 * * *" }, { requestId });
    expect(await create({ queue, cron: "0 10 * * *" }, { requestId })).toEqual(first);
    expect(await failure(create({ queue, cron: "0 11 * * *" }, { requestId }))).toMatchObject({ reason: "REQUEST_ID_REUSED" });

    await create({ cron: "0 12 * * *" }); // another queue
    const page1 = await jobs().listSchedules({ queue, pageSize: 1 });
    expect(page1.schedules.map((s) => s.scheduleId)).toEqual([scheduleId]);
    const page2 = await jobs().listSchedules({ queue, pageSize: 1, pageToken: page1.nextPageToken });
    expect(page2).toEqual({ schedules: [first], nextPageToken: "" });
    expect(await failure(jobs().listSchedules({ queue: unique("q"), pageToken: page1.nextPageToken }))).toMatchObject({ reason: "INVALID_PAGE_TOKEN" });
    expect((await jobs().listSchedules({})).schedules.length).toBeGreaterThanOrEqual(3);
    for (const s of [scheduleId, first.scheduleId]) await jobs().deleteSchedule({ scheduleId: s });
  });

  it("updates by mask (a new cron or zone recomputes next_fire_time), checks versions, deletes", async () => {
    const s = await create({ cron: "0 9 * * *" });
    const moved = await jobs().updateSchedule({ schedule: { scheduleId: s.scheduleId, cron: "30 9 * * *", timeZone: "Asia/Tokyo" }, updateMask: ["cron", "time_zone"] });
    expect(moved).toMatchObject({ cron: "30 9 * * *", timeZone: "Asia/Tokyo", version: 2, queue: s.queue });
    // 09:30 in Tokyo is 00:30 UTC.
    expect(new Date(toMs(moved.nextFireTime)!).toISOString()).toMatch(/T00:30:00\.000Z$/);
    expect(toMs(moved.updateTime)!).toBeGreaterThanOrEqual(toMs(s.updateTime)!);

    // An empty mask writes what is set; next_fire_time stays when the timing does.
    const templated = await jobs().updateSchedule({ schedule: { scheduleId: s.scheduleId, job: { payload: { v: 2 }, priority: 7 }, catchUpLimit: 5 }, expectedVersion: 2 });
    expect(templated).toMatchObject({ version: 3, catchUpLimit: 5, job: { payload: { v: 2 }, priority: 7 }, cron: "30 9 * * *" });
    expect(templated.nextFireTime).toEqual(moved.nextFireTime);

    const conflict = await failure(jobs().updateSchedule({ schedule: { scheduleId: s.scheduleId, catchUpLimit: 2 }, expectedVersion: 2 }));
    expect(conflict).toMatchObject({ code: status.ABORTED, reason: "VERSION_CONFLICT", metadata: { current_version: "3" } });

    // "*" replaces everything: what is not given goes back to its default.
    const replaced = await jobs().updateSchedule({ schedule: { scheduleId: s.scheduleId, queue: s.queue, cron: "0 8 * * *" }, updateMask: ["*"] });
    expect(replaced).toMatchObject({ timeZone: "UTC", catchUpLimit: 1, overlap: Overlap.OVERLAP_ALLOW, job: { payload: {}, priority: 0 }, version: 4 });

    const unknown = await failure(jobs().updateSchedule({ schedule: { scheduleId: s.scheduleId }, updateMask: ["next_fire_time"] }));
    expect(unknown).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["update_mask.paths[0]"] });
    expect(await failure(jobs().updateSchedule({ schedule: { scheduleId: unique("s"), cron: "* * * * *" } }))).toMatchObject({ code: status.NOT_FOUND });

    expect(await failure(jobs().deleteSchedule({ scheduleId: s.scheduleId, expectedVersion: 1 }))).toMatchObject({ reason: "VERSION_CONFLICT" });
    await jobs().deleteSchedule({ scheduleId: s.scheduleId, expectedVersion: 4 });
    expect(await failure(jobs().getSchedule({ scheduleId: s.scheduleId }))).toMatchObject({ code: status.NOT_FOUND, metadata: { resource: "schedule" } });
    expect(await failure(jobs().deleteSchedule({ scheduleId: s.scheduleId }))).toMatchObject({ code: status.NOT_FOUND });
  });

  it("refuses bad input naming the field, and writes nothing", async () => {
    const before = (await h.sql.query("SELECT count(*)::int AS n FROM job_schedules")).rows[0].n;
    const bad = async (schedule: Partial<Schedule>, fields: string[]) => {
      const f = await failure(jobs().createSchedule({ schedule: { queue: "q", cron: "* * * * *", ...schedule } }));
      expect(f.code, JSON.stringify(schedule)).toBe(status.INVALID_ARGUMENT);
      expect(f.fields, JSON.stringify(schedule)).toEqual(fields);
    };
    await bad({ cron: "* * * *" }, ["schedule.cron"]);
    await bad({ cron: "0 0 * * * * 2030" }, ["schedule.cron"]);
    await bad({ cron: "61 * * * *" }, ["schedule.cron"]);
    await bad({ cron: "@hourly" }, ["schedule.cron"]);
    await bad({ cron: "0 0 30 2 *" }, ["schedule.cron"]);
    await bad({ cron: "" }, ["schedule.cron"]);
    await bad({ timeZone: "Mars/Olympus" }, ["schedule.time_zone"]);
    await bad({ queue: "" }, ["schedule.queue"]);
    await bad({ queue: "no spaces" }, ["schedule.queue"]);
    await bad({ overlap: 9 as Overlap }, ["schedule.overlap"]);
    await bad({ catchUpLimit: 1001 }, ["schedule.catch_up_limit"]);
    await bad({ catchUpLimit: -1 }, ["schedule.catch_up_limit"]);
    await bad({ job: { payload: { a: "x\u0000" }, priority: 0, maxAttempts: 0, groupKey: "" } }, ["schedule.job.payload.a"]);
    await bad({ job: { maxAttempts: 5000, priority: 0, groupKey: "" } }, ["schedule.job.max_attempts"]);
    await bad({ job: { priority: 0, maxAttempts: 0, groupKey: "tab\there" } }, ["schedule.job.group_key"]);
    await bad({ job: { priority: 0, maxAttempts: 0, groupKey: "", backoff: { multiplier: 0.5 } } }, ["schedule.job.backoff.multiplier"]);
    expect(await failure(jobs().createSchedule({ scheduleId: "a b", schedule: { queue: "q", cron: "* * * * *" } }))).toMatchObject({ fields: ["schedule_id"] });
    expect(await failure(jobs().getSchedule({ scheduleId: "" }))).toMatchObject({ fields: ["schedule_id"] });
    const s = await create({ cron: "0 9 * * *" });
    const badZone = await failure(jobs().updateSchedule({ schedule: { scheduleId: s.scheduleId, timeZone: "Nowhere/Else" } }));
    expect(badZone.fields).toEqual(["schedule.time_zone"]);
    const badCron = await failure(jobs().updateSchedule({ schedule: { scheduleId: s.scheduleId, cron: "1 2 3" } }));
    expect(badCron.fields).toEqual(["schedule.cron"]);
    await jobs().deleteSchedule({ scheduleId: s.scheduleId });
    expect((await h.sql.query("SELECT count(*)::int AS n FROM job_schedules")).rows[0].n).toBe(before);
  });
});

describe("firing", () => {
  it("a 6-field cron fires once a second, one job per fire time, carrying the template", async () => {
    // catch_up_limit 10: a ticker stalled past a second (a busy machine) still fires every missed second.
    const s = await create({
      catchUpLimit: 10,
      job: { payload: { tick: true }, priority: 3, maxAttempts: 2, groupKey: "tenant-1", backoff: { initialDelay: seconds(2), maxDelay: seconds(20), multiplier: 3 } },
    });
    await sleep(3_300);
    await jobs().pauseSchedule({ scheduleId: s.scheduleId });
    const fired = await firedJobs(s.scheduleId);
    expect(fired.length).toBeGreaterThanOrEqual(2);
    expect(fired.length).toBeLessThanOrEqual(5);
    const times = fired.map((f) => Date.parse(f.fireTime));
    times.forEach((t, i) => {
      expect(fired[i]!.fireTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      expect(fired[i]!.run_time.getTime()).toBe(t);
      if (i > 0) expect(t - times[i - 1]!).toBe(1000);
    });
    const job = await jobs().getJob({ jobId: fired[0]!.job_id });
    expect(job).toMatchObject({ queue: s.queue, payload: { tick: true }, priority: 3, maxAttempts: 2, groupKey: "tenant-1", state: JobState.JOB_STATE_AVAILABLE });
    expect(job.backoff).toEqual({ initialDelay: seconds(2), maxDelay: seconds(20), multiplier: 3 });
    const paused = await jobs().getSchedule({ scheduleId: s.scheduleId });
    expect(toMs(paused.lastFireTime)).toBe(times[times.length - 1]);
    await jobs().deleteSchedule({ scheduleId: s.scheduleId });
    // Deleting a schedule keeps the jobs it enqueued.
    expect((await firedJobs(s.scheduleId)).length).toBe(fired.length);
  });

  it("enqueues exactly one job per fire time across two replicas while fires die midway and a replica stops", { timeout: 30_000 }, async () => {
    const queue = unique("q");
    const s = await create({ queue, catchUpLimit: 100 });
    const completed: string[] = [];
    let working = true;
    // A worker finishes each job at once, so a fire time enqueued twice would show as two jobs (the dedupe key holds only while unfinished).
    const worker = (async () => {
      while (working) {
        const { leases } = await jobs().leaseJobs({ queue, workerId: "w", maxJobs: 10, leaseDuration: seconds(30), wait: seconds(0.2) });
        for (const l of leases) {
          await jobs().completeJob({ jobId: l.job!.jobId, leaseToken: l.leaseToken });
          completed.push(l.job!.jobId);
        }
      }
    })();
    await sleep(1_500);

    // Fires get stuck on a lock of the jobs table; each stuck fire's backend is then killed (its replica "dies mid-fire").
    const blocker = await h.sql.connect();
    let killed = 0;
    try {
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE jobs IN SHARE MODE");
      const killUntil = Date.now() + 1_800;
      while (Date.now() < killUntil) {
        const stuck = await h.sql.query(
          `SELECT pg_terminate_backend(l.pid) AS killed FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND a.wait_event_type = 'Lock'`,
          [LOCKS.schedules],
        );
        killed += stuck.rowCount ?? 0;
        await sleep(20);
      }
    } finally {
      await blocker.query("COMMIT");
      blocker.release();
    }
    expect(killed).toBeGreaterThanOrEqual(1);
    await sleep(1_000);
    await replicaB!.stop();
    replicaB = undefined;
    await sleep(1_500);
    await jobs().pauseSchedule({ scheduleId: s.scheduleId });
    await waitFor("the worker to finish every fired job", async () => (await firedJobs(s.scheduleId)).every((f) => f.state === "SUCCEEDED"));
    working = false;
    await worker;

    const fired = await firedJobs(s.scheduleId);
    const perKey = new Map<string, number>();
    for (const f of fired) perKey.set(f.dedupe_key, (perKey.get(f.dedupe_key) ?? 0) + 1);
    expect([...perKey.values()].every((count) => count === 1)).toBe(true);
    expect(new Set(completed).size).toBe(completed.length);
    // No fire time missing between the first and the last: the ones due while fires died were caught up.
    const times = fired.map((f) => Date.parse(f.fireTime)).sort((x, y) => x - y);
    expect(times.length).toBeGreaterThanOrEqual(5);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBe(1000);
    await jobs().deleteSchedule({ scheduleId: s.scheduleId });
  });

  it("a schedule that cannot fire holds back no other", async () => {
    const broken = await create({ paused: true });
    const healthy = await create({ paused: true });
    // A cron no release of Cairn accepts, as if written by hand: the fire fails in its savepoint.
    await h.sql.query(
      `UPDATE job_schedules SET cron = 'not a cron', paused = false, next_fire_time = now() WHERE namespace = 'default' AND schedule_id = $1`,
      [broken.scheduleId],
    );
    await jobs().resumeSchedule({ scheduleId: healthy.scheduleId });
    await waitFor("the healthy schedule to fire twice", async () => (await firedJobs(healthy.scheduleId)).length >= 2, 4_000);
    expect(await firedJobs(broken.scheduleId)).toEqual([]);
    expect((await jobs().getSchedule({ scheduleId: broken.scheduleId })).nextFireTime).toBeDefined();
    for (const x of [broken, healthy]) await jobs().deleteSchedule({ scheduleId: x.scheduleId });
  });

  it("OVERLAP_SKIP enqueues nothing while the previous run is unfinished", async () => {
    const queue = unique("q");
    const s = await create({ queue, overlap: Overlap.OVERLAP_SKIP });
    await waitFor("the first fire", async () => (await firedJobs(s.scheduleId)).length === 1);
    await sleep(2_200);
    const first = await firedJobs(s.scheduleId);
    expect(first.length).toBe(1);
    const { leases } = await jobs().leaseJobs({ queue, workerId: "w", maxJobs: 5, leaseDuration: seconds(30) });
    expect(leases.length).toBe(1);
    await sleep(1_200); // still running: still skipped
    expect((await firedJobs(s.scheduleId)).length).toBe(1);
    await jobs().completeJob({ jobId: leases[0]!.job!.jobId, leaseToken: leases[0]!.leaseToken });
    await waitFor("a fire after the run finished", async () => (await firedJobs(s.scheduleId)).length === 2, 3_000);
    const second = (await firedJobs(s.scheduleId))[1]!;
    expect(Date.parse(second.fireTime)).toBeGreaterThan(Date.parse(first[0]!.fireTime) + 2_000);
    await jobs().deleteSchedule({ scheduleId: s.scheduleId });
  });
});

describe("pause, resume, trigger", () => {
  it("a paused schedule does not fire; resume computes next_fire_time from now without catching up", async () => {
    const s = await create({ paused: true });
    expect(s.paused).toBe(true);
    expect(s.nextFireTime).toBeUndefined();
    await sleep(1_300);
    expect(await firedJobs(s.scheduleId)).toEqual([]);
    // Pausing a paused schedule changes nothing.
    expect(await jobs().pauseSchedule({ scheduleId: s.scheduleId })).toEqual(s);

    const resumedAt = Date.now();
    const resumed = await jobs().resumeSchedule({ scheduleId: s.scheduleId });
    expect(resumed).toMatchObject({ paused: false, version: s.version + 1 });
    expect(toMs(resumed.nextFireTime)!).toBeGreaterThan(resumedAt - 1_000);
    expect(toMs(resumed.nextFireTime)!).toBeLessThanOrEqual(resumedAt + 1_500);
    await waitFor("a fire after resuming", async () => (await firedJobs(s.scheduleId)).length >= 1, 3_000);
    const fired = await firedJobs(s.scheduleId);
    expect(Date.parse(fired[0]!.fireTime)).toBeGreaterThanOrEqual(resumedAt - 1_000);

    const paused = await jobs().pauseSchedule({ scheduleId: s.scheduleId });
    expect(paused).toMatchObject({ paused: true, nextFireTime: undefined });
    const count = (await firedJobs(s.scheduleId)).length;
    await sleep(1_300);
    expect((await firedJobs(s.scheduleId)).length).toBe(count);
    await jobs().deleteSchedule({ scheduleId: s.scheduleId });
  });

  it("trigger enqueues one job now, paused or not; under OVERLAP_SKIP it returns the unfinished run", async () => {
    const s = await create({ cron: "0 0 1 1 *", paused: true, overlap: Overlap.OVERLAP_SKIP, job: { payload: { manual: 1 }, priority: 2, maxAttempts: 0, groupKey: "" } });
    const before = Date.now();
    const first = await jobs().triggerSchedule({ scheduleId: s.scheduleId });
    expect(first.deduplicated).toBe(false);
    expect(first.job).toMatchObject({ queue: s.queue, payload: { manual: 1 }, priority: 2, state: JobState.JOB_STATE_AVAILABLE });
    expect(first.job!.dedupeKey.startsWith(`schedule:${s.scheduleId}:`)).toBe(true);
    const fireTime = Date.parse(first.job!.dedupeKey.slice(`schedule:${s.scheduleId}:`.length));
    expect(Math.abs(fireTime - before)).toBeLessThan(5_000);
    expect(first.schedule).toMatchObject({ paused: true, nextFireTime: undefined, version: s.version });
    expect(toMs(first.schedule!.lastFireTime)).toBe(fireTime);

    const second = await jobs().triggerSchedule({ scheduleId: s.scheduleId });
    expect(second).toMatchObject({ deduplicated: true, job: { jobId: first.job!.jobId } });

    await jobs().cancelJob({ jobId: first.job!.jobId });
    const third = await jobs().triggerSchedule({ scheduleId: s.scheduleId });
    expect(third.deduplicated).toBe(false);
    expect(third.job!.jobId).not.toBe(first.job!.jobId);
    expect(await failure(jobs().triggerSchedule({ scheduleId: unique("s") }))).toMatchObject({ code: status.NOT_FOUND });
    await jobs().deleteSchedule({ scheduleId: s.scheduleId });
  });
});

describe("catch-up after downtime", () => {
  /** A paused schedule made due ten minutes ago, as if no replica had run since. */
  async function missedTenMinutes(catchUpLimit: number) {
    const s = await create({ cron: "* * * * *", paused: true, catchUpLimit });
    await h.sql.query(
      `UPDATE job_schedules SET paused = false, next_fire_time = date_trunc('minute', now()) - interval '10 minutes'
        WHERE namespace = 'default' AND schedule_id = $1`,
      [s.scheduleId],
    );
    await waitFor("the catch-up", async () => (await jobs().getSchedule({ scheduleId: s.scheduleId })).lastFireTime !== undefined, 3_000);
    return s;
  }

  it("enqueues the most recent catch_up_limit missed fire times once each, then waits for the next one", async () => {
    const s = await missedTenMinutes(3);
    const fired = await firedJobs(s.scheduleId);
    expect(fired.length).toBe(3);
    const times = fired.map((f) => Date.parse(f.fireTime));
    expect(times[1]! - times[0]!).toBe(60_000);
    expect(times[2]! - times[1]!).toBe(60_000);
    // The newest is the minute the catch-up ran in.
    expect(times[2]).toBe(Math.floor(fired[2]!.create_time.getTime() / 60_000) * 60_000);
    const after = await jobs().getSchedule({ scheduleId: s.scheduleId });
    expect(toMs(after.lastFireTime)).toBe(times[2]);
    expect(toMs(after.nextFireTime)).toBe(times[2]! + 60_000);
    await jobs().deleteSchedule({ scheduleId: s.scheduleId });
  });

  it("enqueues only the latest one by default", async () => {
    const s = await missedTenMinutes(0);
    const fired = await firedJobs(s.scheduleId);
    expect(fired.length).toBe(1);
    expect(Date.parse(fired[0]!.fireTime)).toBe(Math.floor(fired[0]!.create_time.getTime() / 60_000) * 60_000);
    await jobs().deleteSchedule({ scheduleId: s.scheduleId });
  });
});

describe("time zones and namespaces", () => {
  it("computes next_fire_time in the schedule's zone", async () => {
    const tokyo = await create({ cron: "0 9 * * *", timeZone: "Asia/Tokyo" });
    expect(new Date(toMs(tokyo.nextFireTime)!).toISOString()).toMatch(/T00:00:00\.000Z$/);
    const kolkata = await create({ cron: "0 0 9 * * *", timeZone: "Asia/Kolkata" });
    expect(new Date(toMs(kolkata.nextFireTime)!).toISOString()).toMatch(/T03:30:00\.000Z$/);
    for (const s of [tokyo, kolkata]) await jobs().deleteSchedule({ scheduleId: s.scheduleId });
  });

  it("keeps schedules and their jobs inside their namespace", async () => {
    const red = new CairnClient(h.daemon.address, { namespace: "team-red" });
    const blue = new CairnClient(h.daemon.address, { namespace: "team-blue" });
    try {
      const scheduleId = unique("s");
      const queue = unique("q");
      await red.jobs.createSchedule({ scheduleId, schedule: { queue, cron: "* * * * * *", job: { payload: { ns: "red" }, priority: 0, maxAttempts: 0, groupKey: "" } } });
      await blue.jobs.createSchedule({ scheduleId, schedule: { queue, cron: "0 9 * * *", paused: true } });
      expect((await red.jobs.getSchedule({ scheduleId })).cron).toBe("* * * * * *");
      expect((await blue.jobs.getSchedule({ scheduleId })).cron).toBe("0 9 * * *");
      expect(await failure(jobs().getSchedule({ scheduleId }))).toMatchObject({ code: status.NOT_FOUND });
      expect((await blue.jobs.listSchedules({ queue })).schedules.map((s) => s.cron)).toEqual(["0 9 * * *"]);
      await waitFor("red's schedule to fire", async () => (await firedJobs(scheduleId, "team-red")).length >= 1, 3_000);
      expect(await firedJobs(scheduleId, "team-blue")).toEqual([]);
      expect(await firedJobs(scheduleId, "default")).toEqual([]);
      const blueTrigger = await blue.jobs.triggerSchedule({ scheduleId });
      const rows = await h.sql.query("SELECT namespace FROM jobs WHERE job_id = $1", [blueTrigger.job!.jobId]);
      expect(rows.rows).toEqual([{ namespace: "team-blue" }]);
      await red.jobs.deleteSchedule({ scheduleId });
      expect((await blue.jobs.getSchedule({ scheduleId })).scheduleId).toBe(scheduleId);
      await blue.jobs.deleteSchedule({ scheduleId });
    } finally {
      red.close();
      blue.close();
    }
  });
});
