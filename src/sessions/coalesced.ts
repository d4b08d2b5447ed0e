// Single GetSession and UpdateSession calls arriving together share one
// statement (see db/coalescer.ts), whatever their namespaces; each item
// carries its own. These reads and updates.ts applyUpdates are the only
// statements that mix namespaces. Reads the sessions table here; updates
// go through updates.ts.
import { Coalescer } from "../db/coalescer.js";
import { selectList } from "../db/columns.js";
import type { CallScope, Database, Queryable } from "../db/database.js";
import { notFound } from "../errors.js";
import { FIELDS, type SessionRecord } from "./store.js";
import { applyUpdates, type NamespacedUpdate, type SessionUpdate, type UpdateOutcome, updatedOrThrow } from "./updates.js";

/** A session of any namespace, as the coalescer asks for it. */
export interface SessionKey {
  ns: string;
  sessionId: string;
}

/**
 * One query for sessions of several namespaces (GetSession calls coalesced
 * across callers), in the order of `keys`; undefined where one is absent.
 */
export async function readSessionKeys(q: Queryable, keys: SessionKey[]): Promise<(SessionRecord | undefined)[]> {
  // The hot read, prepared once per connection. The pairs decide what
  // matches; the two arrays also let the primary key (namespace,
  // session_id) be searched directly instead of joined against a set of
  // unknown size.
  const result = await q.prepared<SessionRecord & { ord: number }>(
    "sessions_read",
    `SELECT k.ord::int AS ord, ${selectList(FIELDS, "s.")}
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k (namespace, session_id, ord)
       JOIN sessions s ON s.namespace = k.namespace AND s.session_id = k.session_id
      WHERE s.namespace = ANY ($1::text[]) AND s.session_id = ANY ($2::text[])`,
    [keys.map((k) => k.ns), keys.map((k) => k.sessionId)],
  );
  const found: (SessionRecord | undefined)[] = keys.map(() => undefined);
  for (const { ord, ...session } of result.rows) found[ord - 1] = session;
  return found;
}

/** A coalescer key: a session id is unique only within its namespace (which never contains NUL). */
const keyOf = (ns: string, sessionId: string) => `${ns}\u0000${sessionId}`;

/**
 * GetSession and UpdateSession calls arriving together share one statement
 * (see db/coalescer.ts): a pool-level batching of single calls, whatever
 * their namespaces; each item carries its own.
 */
export class SessionCalls {
  private readonly reads: Coalescer<SessionKey, SessionRecord | undefined>;
  private readonly updates: Coalescer<NamespacedUpdate, UpdateOutcome>;

  constructor(private readonly db: Database) {
    this.reads = new Coalescer((keys, signal) => readSessionKeys(db.on({ signal }), keys), {
      keyOf: (k) => keyOf(k.ns, k.sessionId),
      shareEqualKeys: true,
    });
    this.updates = new Coalescer((updates, signal) => applyUpdates(db.on({ signal }), updates), {
      keyOf: (u) => keyOf(u.ns, u.sessionId),
      shareEqualKeys: false,
    });
  }

  async get(scope: CallScope, ns: string, sessionId: string): Promise<SessionRecord> {
    const session = await this.reads.submit({ ns, sessionId }, scope.signal);
    if (!session) throw notFound("session", sessionId);
    return session;
  }

  /** One update without createIfMissing (that one needs updateSessions). */
  async update(scope: CallScope, ns: string, update: SessionUpdate): Promise<SessionRecord> {
    const outcome = await this.updates.submit({ ...update, ns }, scope.signal);
    return updatedOrThrow(this.db.on(scope), ns, update.sessionId, outcome);
  }
}
