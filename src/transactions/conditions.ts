// A Commit's conditions: validated with the others' field paths
// (`conditions[i].session.expected_version`), locked by the lock plan like
// the operations' resources, and checked under those locks before the first
// operation, so what they saw still holds when the commit's writes are made.
import { type Condition, JobState } from "@cairn/client";
import type { Limits } from "../config.js";
import type { Queryable } from "../db/database.js";
import { conditionFailed } from "../errors.js";
import { enumCodec } from "../grpc/enums.js";
import { checkFilterList, checkId, type Violations } from "../grpc/validate.js";
import * as jobs from "../jobs/store.js";
import type { JobStateName } from "../jobs/store.js";
import { checkKey } from "../keyvalue/service.js";
import { readEntries } from "../keyvalue/store.js";
import { readSessions } from "../sessions/store.js";
import type { LockPlan } from "./locks.js";

const JOB_STATES = enumCodec<JobState, JobStateName>(JobState, "JOB_STATE_");

/** A validated condition: checks itself in the commit's transaction, throwing CONDITION_FAILED. */
export interface PlannedCondition {
  check(tx: Queryable, ns: string): Promise<void>;
  /** It reads a job row: the plan's late classes must be held first (locks.ts). */
  late: boolean;
}

/** Validates conditions[index] (violations name its fields) and adds what it reads to the lock plan. */
export function planCondition(v: Violations, condition: Condition, index: number, limits: Limits, locks: LockPlan): PlannedCondition {
  const check = checkOf(v, condition, index, limits, locks);
  return { check, late: condition.kind?.$case === "job" };
}

function checkOf(v: Violations, condition: Condition, index: number, limits: Limits, locks: LockPlan): PlannedCondition["check"] {
  const at = `conditions[${index}].`;
  const kind = condition.kind;
  switch (kind?.$case) {
    case "session": {
      const { sessionId, expectedVersion, exists } = kind.value;
      checkId(v, `${at}session.session_id`, sessionId, true);
      if ((expectedVersion === undefined) === (exists === undefined)) {
        v.add(`${at}session`, "set exactly one of expected_version and exists");
      }
      if (expectedVersion !== undefined && expectedVersion < 0) {
        v.add(`${at}session.expected_version`, "must not be negative (0 means: must not exist)");
      }
      locks.session(sessionId);
      return async (tx, ns) => {
        // Only the version is compared: the documents stay unread.
        const version = (await readSessions(tx, ns, [sessionId], ["labels", "metadata", "state"])).get(sessionId)?.version ?? 0;
        const holds = exists === undefined ? version === expectedVersion : exists === version > 0;
        if (!holds) {
          const expected = exists === undefined ? `to be at version ${expectedVersion}` : exists ? "to exist" : "not to exist";
          throw conditionFailed(index, `session ${JSON.stringify(sessionId)} was expected ${expected}`, { current_version: String(version) });
        }
      };
    }
    case "entry": {
      const { key, expectedVersion } = kind.value;
      checkKey(v, `${at}entry.key`, key, limits);
      if (expectedVersion < 0) v.add(`${at}entry.expected_version`, "must not be negative (0 means: must be absent)");
      locks.entry(key, false);
      return async (tx, ns) => {
        const version = (await readEntries(tx, ns, [key], true)).get(key)?.version ?? 0;
        if (version !== expectedVersion) {
          const expected = expectedVersion === 0 ? "to be absent" : `to be at version ${expectedVersion}`;
          throw conditionFailed(index, `entry ${JSON.stringify(key)} was expected ${expected}`, { current_version: String(version) });
        }
      };
    }
    case "job": {
      const { jobId, states } = kind.value;
      checkId(v, `${at}job.job_id`, jobId, true);
      checkFilterList(v, `${at}job.states`, states.length, limits);
      const allowed = new Set(states.map((s, i) => JOB_STATES.parse(v, `${at}job.states[${i}]`, s)));
      locks.job(jobId);
      return async (tx, ns) => {
        const state = (await jobs.find(tx, ns, jobId))?.state;
        // No states: the job must exist, in any state.
        if (state === undefined || (allowed.size > 0 && !allowed.has(state))) {
          const expected = allowed.size === 0 ? "to exist" : `to be ${[...allowed].map((s) => JOB_STATES.fullName(s!)).join(" or ")}`;
          throw conditionFailed(index, `job ${JSON.stringify(jobId)} was expected ${expected}`, {
            current_state: state === undefined ? "" : JOB_STATES.fullName(state),
          });
        }
      };
    }
    default:
      v.add(`${at}kind`, "is required: set session, entry or job");
      return async () => {};
  }
}
