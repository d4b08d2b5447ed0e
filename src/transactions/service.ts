// TransactionService handler: validates the whole commit, runs it in one
// transaction (commit.ts), and counts the trace events it appended once
// they are committed.
import type { TransactionServiceService } from "@cairn/client";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { Violations } from "../grpc/validate.js";
import { planCommit, runCommit } from "./commit.js";

/** `appended`: counts trace events appended (cairn_trace_events_appended_total), as AppendEvents does. */
export function transactionHandlers(deps: ServiceDeps, appended?: { inc(n: number): void }): ServiceHandlers<typeof TransactionServiceService> {
  const { db, limits, sessionCascade } = deps;
  return {
    async commit(request, ctx) {
      const v = new Violations();
      const plan = planCommit(v, request, { limits, sessionCascade });
      v.throwIfAny();
      const response = await runCommit(db.on(ctx), ctx.namespace, plan, limits);
      const added = plan.operations.reduce((n, o) => n + (o.appended?.() ?? 0), 0);
      if (appended && added > 0) appended.inc(added);
      return response;
    },
  };
}
