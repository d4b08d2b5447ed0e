// ImportSessions: existing sessions and their messages, moved into Cairn
// as they were (times, status, version, sequences), in one transaction.
import type { Queryable } from "../db/database.js";
import { alreadyExists } from "../errors.js";
import { type ImportedMessage, insertImportedMessages } from "./messages.js";
import { insertSessions, type SessionRecord, type SessionRow } from "./store.js";

/**
 * Inserts every session and message or none: ALREADY_EXISTS naming the
 * first session id already taken. Each row's lastMessageSequence must be
 * the highest sequence among its messages, so appends continue after them.
 * Sessions come back in `rows` order.
 */
export function importSessions(q: Queryable, ns: string, rows: SessionRow[], messages: ImportedMessage[]): Promise<SessionRecord[]> {
  return q.atomic(async (tx) => {
    const inserted = await insertSessions(tx, ns, rows);
    const taken = rows.find((r) => !inserted.has(r.sessionId));
    if (taken) throw alreadyExists("session", taken.sessionId);
    if (messages.length > 0) await insertImportedMessages(tx, ns, messages);
    return rows.map((r) => inserted.get(r.sessionId)!);
  });
}
