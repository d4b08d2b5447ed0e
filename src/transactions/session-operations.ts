// A Commit's session operations (see operations.ts): the SessionService's
// own plan functions, store functions and toWire conversions, so
// state_patch, allow_missing, expected_version and request ids behave in a
// commit as they do in the single methods.
import { appendMessages } from "../sessions/messages.js";
import { planMessageAppend, planSessionDelete, planSessionUpdate, toSessionCreate } from "../sessions/requests.js";
import { createSessions, deleteSession } from "../sessions/store.js";
import { updateSessions } from "../sessions/updates.js";
import { toWireAppended, toWireSession } from "../sessions/wire.js";
import type { Planner } from "./operations.js";

const createSession: Planner<"createSession"> = (v, request, at, locks, { limits }) => {
  const create = toSessionCreate(v, request, at, limits);
  locks.creation("session", request.sessionId || request.session?.sessionId || "");
  locks.creation("session request", request.requestId);
  return {
    late: false,
    run: async (tx, ns) => {
      const [created] = await createSessions(tx, ns, [create]);
      return { $case: "createSession", value: toWireSession(created!) };
    },
  };
};

const updateSession: Planner<"updateSession"> = (v, request, at, locks, { limits }) => {
  const update = planSessionUpdate(v, request, at, limits);
  locks.session(update.sessionId);
  if (update.createIfMissing) locks.creation("session", update.sessionId);
  return {
    late: false,
    run: async (tx, ns) => {
      const [updated] = await updateSessions(tx, ns, [update]);
      return { $case: "updateSession", value: toWireSession(updated!) };
    },
  };
};

const deleteSessionOperation: Planner<"deleteSession"> = (v, request, at, locks, { sessionCascade }) => {
  const { sessionId, expectedVersion } = planSessionDelete(v, request, at);
  locks.deletedSession(sessionId);
  // Its cascade deletes entries (under kv_revisions) and cancels jobs.
  return {
    late: true,
    run: async (tx, ns) => {
      await deleteSession(tx, ns, sessionId, expectedVersion, sessionCascade);
      return { $case: "deleteSession", value: {} };
    },
  };
};

const appendMessagesOperation: Planner<"appendMessages"> = (v, request, at, locks, { limits }) => {
  const append = planMessageAppend(v, request, at, limits);
  locks.session(append.sessionId);
  return { late: false, run: async (tx, ns) => ({ $case: "appendMessages", value: toWireAppended(await appendMessages(tx, ns, append)) }) };
};

export const sessionOperations = {
  createSession,
  updateSession,
  deleteSession: deleteSessionOperation,
  appendMessages: appendMessagesOperation,
};
