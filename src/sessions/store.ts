// SQL for sessions and their message history. No gRPC types here: records
// use plain JSON objects and microsecond RFC 3339 time strings.
import type { CallScope, Database, Queryable } from "../db/database.js";
import { Coalescer } from "../db/coalescer.js";
import { claimRequestId } from "../db/idempotency.js";
import { alreadyExists, notFound, versionConflict } from "../errors.js";
import { cancelSessionJobs } from "../jobs/store.js";
import { deleteSessionEntries } from "../keyvalue/store.js";
import { deleteSessionResolutions } from "../resolutions/store.js";
import { deleteSessionEvents } from "../traces/store.js";

export type SessionStatusName = "ACTIVE" | "ENDED" | "ERROR";
export type JsonObject = Record<string, unknown>;

export interface NewSession {
  sessionId: string;
  agentId: string;
  userId: string;
  status: SessionStatusName;
  labels: Record<string, string>;
  metadata: JsonObject | null;
  state: JsonObject | null;
}

export interface SessionRecord extends NewSession {
  version: number;
  createTime: string;
  updateTime: string;
  endTime: string | null;
}

export interface SessionCreate {
  session: NewSession;
  /** With requestHash: replay the first result of this request id. */
  requestId: string;
  requestHash: string;
}

/** Fields to change; undefined leaves a field as it is. */
export interface SessionPatch {
  status?: SessionStatusName;
  userId?: string;
  labels?: Record<string, string>;
  metadata?: JsonObject | null;
  state?: JsonObject | null;
}

export interface SessionFilter {
  agentId: string | null;
  userId: string | null;
  statuses: SessionStatusName[];
  labels: Record<string, string>;
  metadataContains: JsonObject | null;
  stateContains: JsonObject | null;
  createdAfter: string | null;
  createdBefore: string | null;
}

export type SessionOrderColumn = "create_time" | "update_time";

export interface SessionOrder {
  column: SessionOrderColumn;
  descending: boolean;
}

export interface SessionStats {
  total: number;
  byStatus: Record<SessionStatusName, number>;
  avgDurationMicros: number | null;
  oldestActiveCreateTime: string | null;
}

export interface MessageRecord {
  sessionId: string;
  sequence: number;
  role: string;
  content: string;
  metadata: JsonObject | null;
  createTime: string;
}

export interface NewMessage {
  role: string;
  content: string;
  metadata: JsonObject | null;
}

export const CREATE_SCOPE = "cairn.v1.SessionService/CreateSession";

const SESSION_COLUMNS = `session_id, agent_id, user_id, status, labels, metadata, state, version,
  create_time, update_time, end_time`;

/** The same columns, qualified, for statements that join sessions to other rows. */
const SESSION_COLUMNS_OF_S = SESSION_COLUMNS.split(",")
  .map((column) => `s.${column.trim()}`)
  .join(", ");

const MESSAGE_COLUMNS = `session_id, sequence, role, content, metadata, create_time`;

/** Parameters $1..$8 of every filtered query, in this order (see filterParams). */
const FILTER_SQL = `($1::text IS NULL OR agent_id = $1)
  AND ($2::text IS NULL OR user_id = $2)
  AND (cardinality($3::text[]) = 0 OR status = ANY ($3::text[]))
  AND labels @> $4::jsonb
  AND ($5::jsonb IS NULL OR metadata @> $5::jsonb)
  AND ($6::jsonb IS NULL OR state @> $6::jsonb)
  AND ($7::timestamptz IS NULL OR create_time > $7)
  AND ($8::timestamptz IS NULL OR create_time < $8)`;

function filterParams(f: SessionFilter): unknown[] {
  return [
    f.agentId,
    f.userId,
    f.statuses,
    JSON.stringify(f.labels),
    f.metadataContains === null ? null : JSON.stringify(f.metadataContains),
    f.stateContains === null ? null : JSON.stringify(f.stateContains),
    f.createdAfter,
    f.createdBefore,
  ];
}

/**
 * One list query per ordering, built from constants only: keyset pagination
 * on (column, session_id) with the cursor in $9, $10 and the limit in $11.
 */
function listSql(column: SessionOrderColumn, descending: boolean): string {
  const direction = descending ? "DESC" : "ASC";
  const after = descending ? "<" : ">";
  return `SELECT ${SESSION_COLUMNS} FROM sessions
    WHERE ${FILTER_SQL}
      AND ($9::timestamptz IS NULL OR (${column}, session_id) ${after} ($9, $10::text))
    ORDER BY ${column} ${direction}, session_id ${direction}
    LIMIT $11`;
}

const LIST_SQL: Record<string, string> = {
  "create_time ASC": listSql("create_time", false),
  "create_time DESC": listSql("create_time", true),
  "update_time ASC": listSql("update_time", false),
  "update_time DESC": listSql("update_time", true),
};

interface SessionRow {
  session_id: string;
  agent_id: string;
  user_id: string;
  status: SessionStatusName;
  labels: Record<string, string>;
  metadata: JsonObject | null;
  state: JsonObject | null;
  version: number;
  create_time: string;
  update_time: string;
  end_time: string | null;
}

function toSession(row: SessionRow): SessionRecord {
  return {
    sessionId: row.session_id,
    agentId: row.agent_id,
    userId: row.user_id,
    status: row.status,
    labels: row.labels,
    metadata: row.metadata,
    state: row.state,
    version: row.version,
    createTime: row.create_time,
    updateTime: row.update_time,
    endTime: row.end_time,
  };
}

interface MessageRow {
  session_id: string;
  sequence: number;
  role: string;
  content: string;
  metadata: JsonObject | null;
  create_time: string;
}

function toMessage(row: MessageRow): MessageRecord {
  return {
    sessionId: row.session_id,
    sequence: row.sequence,
    role: row.role,
    content: row.content,
    metadata: row.metadata,
    createTime: row.create_time,
  };
}

function jsonOrNull(value: JsonObject | null | undefined): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

export interface SessionUpdate {
  sessionId: string;
  patch: SessionPatch;
  expectedVersion: number | undefined;
}

export class SessionStore {
  /** GetSession and UpdateSession calls arriving together share one statement. */
  private readonly reads = new Coalescer<string, SessionRecord | undefined>(
    async (ids, signal) => {
      const byId = await this.readSessions({ signal }, ids);
      return ids.map((id) => byId.get(id));
    },
    { keyOf: (id) => id, shareEqualKeys: true },
  );
  private readonly updates = new Coalescer<SessionUpdate, SessionRecord | undefined>(
    (updates, signal) => this.applyUpdates({ signal }, updates),
    { keyOf: (u) => u.sessionId, shareEqualKeys: false },
  );

  constructor(private readonly db: Database) {}

  /** One query for many ids; absent ids are missing from the map. */
  async readSessions(scope: CallScope, sessionIds: string[]): Promise<Map<string, SessionRecord>> {
    const result = await this.db.runPrepared<SessionRow>(
      scope,
      "sessions_read",
      `SELECT ${SESSION_COLUMNS} FROM sessions WHERE session_id = ANY ($1::text[])`,
      [sessionIds],
    );
    return new Map(result.rows.map((row) => [row.session_id, toSession(row)]));
  }

  /**
   * One UPDATE for many sessions (each at most once), each with its own
   * patch and version condition; undefined where a session is missing or at
   * another version. Rows are locked in session_id order so that concurrent
   * batches cannot deadlock each other.
   */
  async applyUpdates(scope: CallScope, updates: SessionUpdate[]): Promise<(SessionRecord | undefined)[]> {
    const rows = updates.map((u, ord) => ({
      ord,
      session_id: u.sessionId,
      status: u.patch.status ?? null,
      user_id: u.patch.userId ?? null,
      labels: u.patch.labels ?? null,
      set_metadata: u.patch.metadata !== undefined,
      metadata: u.patch.metadata ?? null,
      set_state: u.patch.state !== undefined,
      state: u.patch.state ?? null,
      expected_version: u.expectedVersion ?? null,
    }));
    // SET expressions see the old row, so end_time compares old and new status.
    const result = await this.db.runPrepared<SessionRow & { ord: number }>(
      scope,
      "sessions_update",
      `WITH p AS (
         SELECT * FROM jsonb_to_recordset($1::jsonb) AS p (
           ord int, session_id text, status text, user_id text, labels jsonb,
           set_metadata boolean, metadata jsonb, set_state boolean, state jsonb, expected_version bigint)
       ), locked AS (
         SELECT s.session_id FROM sessions s JOIN p USING (session_id)
          WHERE s.session_id = ANY ($2::text[])
            AND (p.expected_version IS NULL OR s.version = p.expected_version)
          ORDER BY s.session_id
          FOR UPDATE OF s
       )
       UPDATE sessions s SET
         status = COALESCE(p.status, s.status),
         user_id = COALESCE(p.user_id, s.user_id),
         labels = COALESCE(p.labels, s.labels),
         metadata = CASE WHEN p.set_metadata THEN p.metadata ELSE s.metadata END,
         state = CASE WHEN p.set_state THEN p.state ELSE s.state END,
         end_time = CASE
           WHEN COALESCE(p.status, s.status) = 'ACTIVE' THEN NULL
           WHEN s.status = 'ACTIVE' THEN now()
           ELSE s.end_time END,
         version = s.version + 1,
         update_time = now()
       FROM p JOIN locked USING (session_id)
       WHERE s.session_id = p.session_id AND s.session_id = ANY ($2::text[])
         AND (p.expected_version IS NULL OR s.version = p.expected_version)
       RETURNING p.ord, ${SESSION_COLUMNS_OF_S}`,
      // The id array lets the planner see how few rows the recordset holds
      // and use the primary key instead of scanning.
      [JSON.stringify(rows), updates.map((u) => u.sessionId)],
    );
    const updated: (SessionRecord | undefined)[] = updates.map(() => undefined);
    for (const row of result.rows) updated[row.ord] = toSession(row);
    return updated;
  }

  /** Creates every session or none (one transaction); replays known request ids. */
  async createSessions(scope: CallScope, creates: SessionCreate[]): Promise<SessionRecord[]> {
    // One plain INSERT needs no transaction: it is atomic on its own.
    if (creates.length === 1 && creates[0]!.requestId === "") return [await this.createOne(this.db.scoped(scope), creates[0]!)];
    return this.db.transaction(scope, async (tx) => {
      const created: SessionRecord[] = [];
      for (const create of creates) created.push(await this.createOne(tx, create));
      return created;
    });
  }

  private async createOne(tx: Queryable, { session, requestId, requestHash }: SessionCreate): Promise<SessionRecord> {
    if (requestId !== "") {
      const claim = await claimRequestId(tx, CREATE_SCOPE, requestId, requestHash, session.sessionId);
      if (claim.kind === "replay") {
        const existing = await tx.query<SessionRow>(`SELECT ${SESSION_COLUMNS} FROM sessions WHERE session_id = $1`, [
          claim.resourceId,
        ]);
        if (!existing.rows[0]) throw notFound("session", claim.resourceId, "created by this request_id, since deleted");
        return toSession(existing.rows[0]);
      }
    }
    const inserted = await tx.query<SessionRow>(
      `INSERT INTO sessions (session_id, agent_id, user_id, status, labels, metadata, state, end_time)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, CASE WHEN $4 <> 'ACTIVE' THEN now() END)
       ON CONFLICT (session_id) DO NOTHING
       RETURNING ${SESSION_COLUMNS}`,
      [
        session.sessionId,
        session.agentId,
        session.userId,
        session.status,
        JSON.stringify(session.labels),
        jsonOrNull(session.metadata),
        jsonOrNull(session.state),
      ],
    );
    if (!inserted.rows[0]) throw alreadyExists("session", session.sessionId);
    return toSession(inserted.rows[0]);
  }

  async getSession(scope: CallScope, sessionId: string): Promise<SessionRecord> {
    const session = await this.reads.submit(sessionId, scope.signal);
    if (!session) throw notFound("session", sessionId);
    return session;
  }

  /** In request order; NOT_FOUND naming the first missing id. */
  async batchGetSessions(scope: CallScope, sessionIds: string[]): Promise<SessionRecord[]> {
    const byId = await this.readSessions(scope, sessionIds);
    return sessionIds.map((id) => {
      const session = byId.get(id);
      if (!session) throw notFound("session", id);
      return session;
    });
  }

  async updateSession(
    scope: CallScope,
    sessionId: string,
    patch: SessionPatch,
    expectedVersion: number | undefined,
  ): Promise<SessionRecord> {
    const updated = await this.updates.submit({ sessionId, patch, expectedVersion }, scope.signal);
    if (updated) return updated;
    throw await this.missOrConflict(scope, sessionId);
  }

  /** Why a versioned write matched no row: the session is gone, or at another version. */
  private async missOrConflict(scope: CallScope, sessionId: string) {
    const current = await this.db.run<{ version: number }>(scope, `SELECT version FROM sessions WHERE session_id = $1`, [
      sessionId,
    ]);
    const row = current.rows[0];
    return row ? versionConflict("session", sessionId, row.version) : notFound("session", sessionId);
  }

  async deleteSession(scope: CallScope, sessionId: string, expectedVersion: number | undefined): Promise<void> {
    const deleted = await this.db.transaction(scope, (tx) => deleteSessionRows(tx, [sessionId], expectedVersion));
    if (deleted.length === 0) throw await this.missOrConflict(scope, sessionId);
  }

  /** Atomic: NOT_FOUND (and nothing deleted) when any id is missing. */
  async batchDeleteSessions(scope: CallScope, sessionIds: string[]): Promise<void> {
    await this.db.transaction(scope, async (tx) => {
      const deleted = new Set(await deleteSessionRows(tx, sessionIds, undefined));
      const missing = sessionIds.find((id) => !deleted.has(id));
      if (missing !== undefined) throw notFound("session", missing);
    });
  }

  async listSessions(
    scope: CallScope,
    filter: SessionFilter,
    order: SessionOrder,
    limit: number,
    after: { time: string; sessionId: string } | undefined,
  ): Promise<SessionRecord[]> {
    const sql = LIST_SQL[`${order.column} ${order.descending ? "DESC" : "ASC"}`]!;
    const result = await this.db.run<SessionRow>(scope, sql, [
      ...filterParams(filter),
      after?.time ?? null,
      after?.sessionId ?? null,
      limit,
    ]);
    return result.rows.map(toSession);
  }

  async countSessions(scope: CallScope, filter: SessionFilter): Promise<number> {
    const result = await this.db.run<{ count: number }>(
      scope,
      `SELECT count(*)::bigint AS count FROM sessions WHERE ${FILTER_SQL}`,
      filterParams(filter),
    );
    return result.rows[0]!.count;
  }

  async sessionStats(scope: CallScope, filter: SessionFilter): Promise<SessionStats> {
    const result = await this.db.run<{
      total: number;
      active: number;
      ended: number;
      error: number;
      avg_duration_micros: number | null;
      oldest_active: string | null;
    }>(
      scope,
      `SELECT count(*)::bigint AS total,
              count(*) FILTER (WHERE status = 'ACTIVE')::bigint AS active,
              count(*) FILTER (WHERE status = 'ENDED')::bigint AS ended,
              count(*) FILTER (WHERE status = 'ERROR')::bigint AS error,
              (avg(extract(epoch FROM end_time - create_time)) FILTER (WHERE end_time IS NOT NULL)
                 * 1000000)::float8 AS avg_duration_micros,
              min(create_time) FILTER (WHERE status = 'ACTIVE') AS oldest_active
         FROM sessions WHERE ${FILTER_SQL}`,
      filterParams(filter),
    );
    const row = result.rows[0]!;
    return {
      total: row.total,
      byStatus: { ACTIVE: row.active, ENDED: row.ended, ERROR: row.error },
      avgDurationMicros: row.avg_duration_micros,
      oldestActiveCreateTime: row.oldest_active,
    };
  }

  /** Locks the session row to hand out the next sequences, then inserts in order. */
  appendMessages(scope: CallScope, sessionId: string, messages: NewMessage[]): Promise<MessageRecord[]> {
    return this.db.transaction(scope, async (tx) => {
      const allocated = await tx.query<{ last: number }>(
        `UPDATE sessions SET last_message_sequence = last_message_sequence + $2
         WHERE session_id = $1 RETURNING last_message_sequence AS last`,
        [sessionId, messages.length],
      );
      if (!allocated.rows[0]) throw notFound("session", sessionId);
      const firstSequence = allocated.rows[0].last - messages.length + 1;
      const inserted = await tx.query<MessageRow>(
        `INSERT INTO session_messages (session_id, sequence, role, content, metadata)
         SELECT $1, $2::bigint + m.ord - 1, m.role, m.content, m.metadata
           FROM ROWS FROM (jsonb_to_recordset($3::jsonb) AS (role text, content text, metadata jsonb))
                WITH ORDINALITY AS m (role, content, metadata, ord)
         RETURNING ${MESSAGE_COLUMNS}`,
        [sessionId, firstSequence, JSON.stringify(messages)],
      );
      return inserted.rows.map(toMessage).sort((a, b) => a.sequence - b.sequence);
    });
  }

  async listMessages(scope: CallScope, sessionId: string, afterSequence: number, limit: number): Promise<MessageRecord[]> {
    const result = await this.db.run<MessageRow>(
      scope,
      `SELECT ${MESSAGE_COLUMNS} FROM session_messages
        WHERE session_id = $1 AND sequence > $2
        ORDER BY sequence LIMIT $3`,
      [sessionId, afterSequence, limit],
    );
    if (result.rows.length === 0) await this.getSession(scope, sessionId);
    return result.rows.map(toMessage);
  }
}

/**
 * Deletes sessions and everything scoped to them, inside the caller's
 * transaction; returns the ids actually deleted. Messages go by ON DELETE
 * CASCADE, trace events explicitly (events may name sessions Cairn does not
 * hold, so there is no foreign key), resolutions likewise, and
 * session-scoped key-value entries with a DELETE in the change log; the
 * session's jobs are cancelled, not deleted.
 */
async function deleteSessionRows(tx: Queryable, sessionIds: string[], expectedVersion: number | undefined): Promise<string[]> {
  const deleted = await tx.query<{ session_id: string }>(
    `DELETE FROM sessions
      WHERE session_id = ANY ($1::text[]) AND ($2::bigint IS NULL OR version = $2)
      RETURNING session_id`,
    [sessionIds, expectedVersion ?? null],
  );
  const ids = deleted.rows.map((row) => row.session_id);
  if (ids.length > 0) {
    await deleteSessionResolutions(tx, ids);
    await deleteSessionEvents(tx, ids);
    await deleteSessionEntries(tx, ids);
    await cancelSessionJobs(tx, ids);
  }
  return ids;
}
