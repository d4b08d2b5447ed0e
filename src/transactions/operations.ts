// The twelve kinds of a Commit's operations. Each is validated by its single
// method's own plan function (field paths prefixed with
// `operations[i].<kind>.`), names what it will lock in the commit's lock
// plan, and runs the single method's own store function in the commit's
// transaction, its result converted by that method's own toWire. So an
// operation behaves exactly as its method does (conditions, request ids,
// revisions, offsets, NOTIFYs), only inside one transaction.
import type { Operation, OperationResult } from "@cairn/client";
import type { Limits } from "../config.js";
import type { Queryable, SessionsDeletedStep } from "../db/database.js";
import { snakeCase } from "../grpc/read-mask.js";
import type { Violations } from "../grpc/validate.js";
import { enqueueAll } from "../jobs/enqueue.js";
import { planCompleteJob, planFailJob, toEnqueue, toWire as toWireJob } from "../jobs/service.js";
import * as jobs from "../jobs/store.js";
import { planDelete, planIncrement, planPut, toWireEntry } from "../keyvalue/service.js";
import { deleteEntry } from "../keyvalue/store.js";
import { incrementEntry, putEntry } from "../keyvalue/writes.js";
import { planCreateResolution, toWireResolution } from "../resolutions/service.js";
import { createResolutions } from "../resolutions/store.js";
import { toNewEvents } from "../traces/service.js";
import { append } from "../traces/store.js";
import { nowIso } from "../time.js";
import type { LockPlan } from "./locks.js";
import { sessionOperations } from "./session-operations.js";

export type Kind = NonNullable<Operation["op"]>["$case"];
type RequestOf<K extends Kind> = Extract<NonNullable<Operation["op"]>, { $case: K }>["value"];
export type Result = NonNullable<OperationResult["result"]>;

export interface OperationDeps {
  limits: Limits;
  /** What deleting sessions does to the other stores (server.ts). */
  sessionCascade: SessionsDeletedStep[];
}

/** A validated operation: runs in the commit's transaction, after the lock plan and the conditions. */
export interface PlannedOperation {
  run(tx: Queryable, ns: string): Promise<Result>;
  /** It may take a counter or a job row: the plan's late classes must be held first (locks.ts). */
  late: boolean;
  /** Trace events it appended (not duplicates), once it has run: for cairn_trace_events_appended_total. */
  appended?: () => number;
}

/** Validates one kind's request (field paths start with `at`) and adds its locks to the plan. */
export type Planner<K extends Kind> = (v: Violations, request: RequestOf<K>, at: string, locks: LockPlan, deps: OperationDeps) => PlannedOperation;

const createResolution: Planner<"createResolution"> = (v, request, at, locks, { limits }) => {
  const create = planCreateResolution(v, request, at, limits);
  locks.creation("resolution", request.resolution?.resolutionId ?? "");
  locks.creation("resolution request", request.requestId);
  return {
    late: false,
    run: async (tx, ns) => {
      const [created] = await createResolutions(tx, ns, [create]);
      return { $case: "createResolution", value: toWireResolution(created!) };
    },
  };
};

const appendEvents: Planner<"appendEvents"> = (v, request, at, locks, { limits }) => {
  const ingestTime = nowIso();
  const events = toNewEvents(v, request.events, limits, ingestTime, at);
  for (const e of events) locks.trace(e.traceId);
  let appended = 0;
  return {
    late: true,
    run: async (tx, ns) => {
      const results = await append(tx, ns, events, ingestTime);
      appended = results.filter((r) => !r.duplicate).length;
      return { $case: "appendEvents", value: { results } };
    },
    appended: () => appended,
  };
};

const put: Planner<"put"> = (v, request, at, locks, { limits }) => {
  const item = planPut(v, request, at, limits);
  locks.entry(item?.key ?? "", true);
  return { late: true, run: async (tx, ns) => ({ $case: "put", value: toWireEntry(await putEntry(tx, ns, item)) }) };
};

const deleteKey: Planner<"delete"> = (v, request, at, locks, { limits }) => {
  const d = planDelete(v, request, at, limits);
  locks.entry(d.key, true);
  return {
    late: true,
    run: async (tx, ns) => ({ $case: "delete", value: { deleted: await deleteEntry(tx, ns, d.key, d.expectedVersion) } }),
  };
};

const increment: Planner<"increment"> = (v, request, at, locks, { limits }) => {
  const item = planIncrement(v, request, at, limits);
  locks.entry(item.key, true);
  return { late: true, run: async (tx, ns) => ({ $case: "increment", value: toWireEntry(await incrementEntry(tx, ns, item)) }) };
};

const enqueueJob: Planner<"enqueueJob"> = (v, request, at, locks, { limits }) => {
  const e = toEnqueue(v, request, at, limits);
  locks.creation("job", request.job?.jobId ?? "");
  if (e?.job.dedupeKey) locks.creation(`dedupe:${e.job.queue}`, e.job.dedupeKey);
  locks.creation("job request", request.requestId);
  // Its parents' rows are marked and share-locked (jobs/dependencies.ts).
  const parents = e?.job.dependsOn ?? [];
  for (const parent of parents) locks.job(parent);
  return {
    late: parents.length > 0,
    run: async (tx, ns) => {
      const [out] = await enqueueAll(tx, ns, [e]);
      return { $case: "enqueueJob", value: { job: toWireJob(out!.job), deduplicated: out!.deduplicated } };
    },
  };
};

const completeJob: Planner<"completeJob"> = (v, request, at, locks, { limits }) => {
  const c = planCompleteJob(v, request, at, limits);
  locks.job(c.jobId);
  return {
    late: true,
    run: async (tx, ns) => ({ $case: "completeJob", value: toWireJob(await jobs.complete(tx, ns, c.jobId, c.token, c.result)) }),
  };
};

const failJob: Planner<"failJob"> = (v, request, at, locks, { limits }) => {
  const f = planFailJob(v, request, at, limits);
  locks.job(f.jobId);
  return {
    late: true,
    run: async (tx, ns) => ({
      $case: "failJob",
      value: toWireJob(await jobs.fail(tx, ns, f.jobId, f.token, f.error, f.retry, f.retryAfterMs)),
    }),
  };
};

const PLANNERS: { [K in Kind]: Planner<K> } = {
  ...sessionOperations,
  createResolution,
  appendEvents,
  put,
  delete: deleteKey,
  increment,
  enqueueJob,
  completeJob,
  failJob,
};

/** Validates operations[index] and adds its locks to the plan; undefined (with a violation) when no kind is set. */
export function planOperation(
  v: Violations,
  operation: Operation,
  index: number,
  locks: LockPlan,
  deps: OperationDeps,
): PlannedOperation | undefined {
  const op = operation.op;
  if (!op) {
    v.add(`operations[${index}].op`, "is required: set one of the twelve operations");
    return undefined;
  }
  const planner = PLANNERS[op.$case] as Planner<typeof op.$case>;
  return planner(v, op.value as never, `operations[${index}].${snakeCase(op.$case)}.`, locks, deps);
}
