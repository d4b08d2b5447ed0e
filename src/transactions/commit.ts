// TransactionService.Commit: conditions and operations of several services
// in one PostgreSQL transaction. Everything is validated before anything
// runs; then, in one transaction: the request id is claimed (a retry
// replays the first response and writes nothing), the lock plan is taken
// (locks.ts: the order that keeps concurrent commits from deadlocking),
// the conditions are checked and the operations run in order, each seeing
// the earlier ones' effects. Wake-ups are NOTIFYs queued by the stores'
// own statements, which PostgreSQL delivers only at commit, so subscribers,
// watchers and waiting workers see a commit whole or not at all.
import { type CommitRequest, CommitResponse, type OperationResult } from "@cairn/client";
import type { Limits } from "../config.js";
import type { Queryable } from "../db/database.js";
import { type Idempotency, idempotency, rememberResponse, replayOrClaim } from "../db/idempotency.js";
import { CairnError, locatedError, messageTooLarge } from "../errors.js";
import { checkBatchSize, checkId, type Violations } from "../grpc/validate.js";
import { type PlannedCondition, planCondition } from "./conditions.js";
import { LockPlan } from "./locks.js";
import { type OperationDeps, type PlannedOperation, planOperation } from "./operations.js";

export const COMMIT_SCOPE = "cairn.v1.TransactionService/Commit";

/** A validated commit, ready to run. */
export interface PlannedCommit {
  locks: LockPlan;
  conditions: PlannedCondition[];
  operations: PlannedOperation[];
  idempotency: Idempotency | null;
}

/** Validates every condition and operation (violations name `conditions[i]…`, `operations[i]…`) into a plan. */
export function planCommit(v: Violations, request: CommitRequest, deps: OperationDeps): PlannedCommit {
  const { limits } = deps;
  checkBatchSize(v, "conditions", request.conditions.length, limits, false);
  checkBatchSize(v, "operations", request.operations.length, limits, false);
  checkId(v, "request_id", request.requestId, false);
  const locks = new LockPlan();
  // Past the limit nothing more is looked at: the request is refused anyway.
  const within = <T>(list: T[]) => (list.length > limits.maxBatchItems ? [] : list);
  const conditions = within(request.conditions).map((c, i) => planCondition(v, c, i, limits, locks));
  const operations = within(request.operations).map((o, i) => planOperation(v, o, i, locks, deps));
  return {
    locks,
    conditions,
    // Undefined only where a violation was added: such a plan never runs.
    operations: operations.filter((o) => o !== undefined),
    // The request as sent, minus its request_id: a retry must match it exactly.
    idempotency: idempotency(request.requestId, () => ({ conditions: request.conditions, operations: request.operations })),
  };
}

/** What a request id records: the first response, encoded (entries' bytes values survive JSON this way). */
interface RecordedResponse {
  response: string;
}

/** Runs a planned commit in one transaction; the response, or the first one for a request id already used. */
export function runCommit(q: Queryable, ns: string, plan: PlannedCommit, limits: Limits): Promise<CommitResponse> {
  return q.atomic(async (tx) => {
    const key = plan.idempotency;
    if (key) {
      const first = await replayOrClaim<RecordedResponse>(tx, ns, {
        scope: COMMIT_SCOPE,
        idempotency: key,
        resource: "commit",
        resourceId: key.requestId,
        // The first response is recorded with the claim, in its transaction: there is no resource to read back.
        read: async () => ({ response: "" }),
      });
      if (first) return CommitResponse.decode(Buffer.from(first.response, "base64"));
    }
    const lockLate = await plan.locks.acquire(tx, ns);
    if (plan.conditions.some((c) => c.late)) await lockLate();
    for (const condition of plan.conditions) await condition.check(tx, ns);
    const results: OperationResult[] = [];
    for (const [i, operation] of plan.operations.entries()) {
      if (operation.late) await lockLate();
      results.push({ result: await runOperation(tx, ns, operation, i) });
    }
    const response = { results };
    // Checked before commit: a response too large to send must not leave its writes behind.
    const encoded = CommitResponse.encode(response).finish();
    if (encoded.length > limits.maxMessageBytes) throw messageTooLarge(encoded.length, limits.maxMessageBytes);
    if (key) await rememberResponse(tx, ns, COMMIT_SCOPE, key, key.requestId, { response: Buffer.from(encoded).toString("base64") });
    return response;
  });
}

/** operations[index] in the commit's transaction; its failure fails the commit, naming operation_index. */
async function runOperation(tx: Queryable, ns: string, operation: PlannedOperation, index: number) {
  try {
    return await operation.run(tx, ns);
  } catch (error) {
    if (!(error instanceof CairnError)) throw error;
    throw locatedError(error, `operations[${index}]`, { operation_index: String(index) });
  }
}
