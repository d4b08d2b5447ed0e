// SQL for policy resolutions. Every read filters on expire_time, so an
// expired resolution is invisible the moment it expires; purging only
// reclaims space, in small batches so a backlog never holds long locks.
// Every function works in one namespace (`ns`, right after the queryable);
// only the reaper's purge crosses them.
import { inBatches } from "../db/batches.js";
import { type Fields, selectList } from "../db/columns.js";
import type { Queryable } from "../db/database.js";
import { createOnce, type Idempotency } from "../db/idempotency.js";
import { jsonSize, type Page, type PageLimits, type Paged, pagedSql, rowSize, type Sizes, textSize, toPage } from "../db/pages.js";
import { alreadyExists, notFound } from "../errors.js";

export type DecisionName = "ALLOW" | "DENY" | "PARTIAL";
type JsonObject = Record<string, unknown>;

export interface NewResolution {
  resolutionId: string;
  requestId: string;
  agentId: string;
  sessionId: string;
  decision: DecisionName;
  contextBlocks: JsonObject[];
  allowedActions: JsonObject[];
  deniedActions: JsonObject[];
  policiesApplied: JsonObject[];
  metadata: JsonObject | null;
}

export interface ResolutionRecord extends NewResolution {
  createTime: string;
  expireTime: string | null;
}

export interface ResolutionCreate {
  resolution: NewResolution;
  /** Exactly one of these, or neither (never expires). */
  ttlMicros: number | null;
  expireTime: string | null;
  idempotency: Idempotency | null;
}

/** A resolution migrated in: its times as given (even past); a null create_time is now. */
export interface ResolutionImport {
  resolution: NewResolution;
  createTime: string | null;
  expireTime: string | null;
}

export interface ResolutionFilter {
  agentId: string | null;
  sessionId: string | null;
  requestId: string | null;
  decisions: DecisionName[];
  createdAfter: string | null;
  createdBefore: string | null;
  includeExpired: boolean;
}

export const CREATE_SCOPE = "cairn.v1.ResolutionService/CreateResolution";

const FIELDS: Fields<ResolutionRecord> = {
  resolutionId: "resolution_id",
  requestId: "request_id",
  agentId: "agent_id",
  sessionId: "session_id",
  decision: "decision",
  contextBlocks: "context_blocks",
  allowedActions: "allowed_actions",
  deniedActions: "denied_actions",
  policiesApplied: "policies_applied",
  metadata: "metadata",
  createTime: "create_time",
  expireTime: "expire_time",
};
const COLUMNS = selectList(FIELDS);

const SIZES: Sizes<ResolutionRecord> = {
  resolutionId: textSize("resolution_id"),
  requestId: textSize("request_id"),
  agentId: textSize("agent_id"),
  sessionId: textSize("session_id"),
  contextBlocks: jsonSize("context_blocks"),
  allowedActions: jsonSize("allowed_actions"),
  deniedActions: jsonSize("denied_actions"),
  policiesApplied: jsonSize("policies_applied"),
  metadata: jsonSize("metadata"),
};

/** Rows a read may see: unexpired, as of this statement. */
const LIVE = `(expire_time IS NULL OR expire_time > now())`;

/**
 * Newest first, keyset-paged on (create_time, resolution_id) with the
 * cursor in $9, $10; the namespace ($1) leads, as it leads every index.
 */
const LIST_SQL = pagedSql({
  fields: FIELDS,
  size: rowSize(SIZES),
  from: `FROM resolutions
    WHERE namespace = $1
      AND ($2::text IS NULL OR agent_id = $2)
      AND ($3::text IS NULL OR session_id = $3)
      AND ($4::text IS NULL OR request_id = $4)
      AND (cardinality($5::text[]) = 0 OR decision = ANY ($5::text[]))
      AND ($6::timestamptz IS NULL OR create_time > $6)
      AND ($7::timestamptz IS NULL OR create_time < $7)
      AND ($8 OR ${LIVE})
      AND ($9::timestamptz IS NULL OR (create_time, resolution_id) < ($9, $10::text))`,
  order: [
    ["createTime", "DESC"],
    ["resolutionId", "DESC"],
  ],
  limit: "$11",
  budget: "$12",
});

/** Creates every resolution or none; replays known request ids. */
export function createResolutions(q: Queryable, ns: string, creates: ResolutionCreate[]): Promise<ResolutionRecord[]> {
  return q.atomic(async (tx) => {
    const created: ResolutionRecord[] = [];
    for (const create of creates) created.push(await createOne(tx, ns, create));
    return created;
  });
}

function createOne(tx: Queryable, ns: string, c: ResolutionCreate): Promise<ResolutionRecord> {
  return createOnce(tx, ns, {
    scope: CREATE_SCOPE,
    idempotency: c.idempotency,
    resource: "resolution",
    resourceId: c.resolution.resolutionId,
    // A replay returns what the first call created, even if it has expired since.
    read: async (resolutionId) => {
      const existing = await tx.query<ResolutionRecord>(`SELECT ${COLUMNS} FROM resolutions WHERE namespace = $1 AND resolution_id = $2`, [
        ns,
        resolutionId,
      ]);
      return existing.rows[0];
    },
    create: () => insert(tx, ns, c),
  });
}

async function insert(tx: Queryable, ns: string, c: ResolutionCreate): Promise<ResolutionRecord> {
  const r = c.resolution;
  const inserted = await tx.query<ResolutionRecord>(
    `INSERT INTO resolutions (namespace, resolution_id, request_id, agent_id, session_id, decision, context_blocks,
                              allowed_actions, denied_actions, policies_applied, metadata, expire_time)
     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb, $10::jsonb, $11::jsonb,
             -- The ttl counts from the write, not from the start of a batch's transaction.
             CASE WHEN $12::bigint IS NOT NULL THEN clock_timestamp() + $12::bigint * interval '1 microsecond'
                  ELSE $13::timestamptz END)
     ON CONFLICT (namespace, resolution_id) DO NOTHING
     RETURNING ${COLUMNS}`,
    [
      ns,
      r.resolutionId,
      r.requestId,
      r.agentId,
      r.sessionId,
      r.decision,
      JSON.stringify(r.contextBlocks),
      JSON.stringify(r.allowedActions),
      JSON.stringify(r.deniedActions),
      JSON.stringify(r.policiesApplied),
      r.metadata === null ? null : JSON.stringify(r.metadata),
      c.ttlMicros,
      c.expireTime,
    ],
  );
  if (!inserted.rows[0]) throw alreadyExists("resolution", r.resolutionId);
  return inserted.rows[0];
}

/**
 * Inserts every import or none, in one statement, keeping the given times;
 * ALREADY_EXISTS naming the first id (in the given order) already taken in
 * `ns`, expired or not. Returned in the given order.
 */
export function importResolutions(q: Queryable, ns: string, imports: ResolutionImport[]): Promise<ResolutionRecord[]> {
  return q.atomic(async (tx) => {
    const rows = imports.map(({ resolution: r, createTime, expireTime }) => ({
      resolution_id: r.resolutionId,
      request_id: r.requestId,
      agent_id: r.agentId,
      session_id: r.sessionId,
      decision: r.decision,
      context_blocks: r.contextBlocks,
      allowed_actions: r.allowedActions,
      denied_actions: r.deniedActions,
      policies_applied: r.policiesApplied,
      metadata: r.metadata,
      create_time: createTime,
      expire_time: expireTime,
    }));
    const inserted = await tx.query<ResolutionRecord>(
      `INSERT INTO resolutions (namespace, resolution_id, request_id, agent_id, session_id, decision, context_blocks,
                                allowed_actions, denied_actions, policies_applied, metadata, create_time, expire_time)
       SELECT $1, r.resolution_id, r.request_id, r.agent_id, r.session_id, r.decision, r.context_blocks,
              r.allowed_actions, r.denied_actions, r.policies_applied, r.metadata, coalesce(r.create_time, now()), r.expire_time
         FROM jsonb_to_recordset($2::jsonb) AS r (resolution_id text, request_id text, agent_id text, session_id text, decision text,
                                                  context_blocks jsonb, allowed_actions jsonb, denied_actions jsonb,
                                                  policies_applied jsonb, metadata jsonb, create_time timestamptz, expire_time timestamptz)
       ON CONFLICT (namespace, resolution_id) DO NOTHING
       RETURNING ${COLUMNS}`,
      [ns, JSON.stringify(rows)],
    );
    const byId = new Map(inserted.rows.map((r) => [r.resolutionId, r]));
    const taken = imports.find((i) => !byId.has(i.resolution.resolutionId));
    // Thrown inside the transaction: the rows inserted before it roll back.
    if (taken) throw alreadyExists("resolution", taken.resolution.resolutionId);
    return imports.map((i) => byId.get(i.resolution.resolutionId)!);
  });
}

/** A live resolution; NOT_FOUND when there is none. */
export async function getResolution(q: Queryable, ns: string, resolutionId: string): Promise<ResolutionRecord> {
  const result = await q.query<ResolutionRecord>(`SELECT ${COLUMNS} FROM resolutions WHERE namespace = $1 AND resolution_id = $2 AND ${LIVE}`, [
    ns,
    resolutionId,
  ]);
  if (!result.rows[0]) throw notFound("resolution", resolutionId);
  return result.rows[0];
}

/** One page, newest first: `before` is the last row of the previous page. */
export async function listResolutions(
  q: Queryable,
  ns: string,
  f: ResolutionFilter,
  limits: PageLimits,
  before: { time: string; resolutionId: string } | undefined,
): Promise<Page<ResolutionRecord>> {
  const result = await q.query<Paged<ResolutionRecord>>(LIST_SQL, [
    ns,
    f.agentId,
    f.sessionId,
    f.requestId,
    f.decisions,
    f.createdAfter,
    f.createdBefore,
    f.includeExpired,
    before?.time ?? null,
    before?.resolutionId ?? null,
    limits.rows,
    limits.bytes,
  ]);
  return toPage(result.rows);
}

/** Deletes a live resolution; NOT_FOUND when there is none. */
export async function deleteResolution(q: Queryable, ns: string, resolutionId: string): Promise<void> {
  const result = await q.query(`DELETE FROM resolutions WHERE namespace = $1 AND resolution_id = $2 AND ${LIVE}`, [ns, resolutionId]);
  if (result.rowCount === 0) throw notFound("resolution", resolutionId);
}

/**
 * One batch of expired resolutions, of namespace `ns`, or of every
 * namespace when null (the reaper). Both find them through the global
 * expire_time index: a namespace's purge filters after it.
 */
async function purgeExpiredBatch(q: Queryable, ns: string | null, limit: number): Promise<number> {
  const result = await q.query(
    `DELETE FROM resolutions WHERE (namespace, resolution_id) IN (
       SELECT namespace, resolution_id FROM resolutions
        WHERE expire_time <= now() AND ($1::text IS NULL OR namespace = $1)
        LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    [ns, limit],
  );
  return result.rowCount ?? 0;
}

/**
 * Deletes expired resolutions in batches; returns how many. `ns`: the
 * caller's namespace (PurgeExpiredResolutions), or null for all of them
 * (the background reaper, which serves every namespace).
 */
export function purgeExpired(q: Queryable, ns: string | null): Promise<number> {
  return inBatches((limit) => purgeExpiredBatch(q, ns, limit));
}

/** Deletes the resolutions of these sessions (of namespace `ns`), inside a session delete. */
export async function onSessionsDeleted(tx: Queryable, ns: string, sessionIds: string[]): Promise<void> {
  await tx.query(`DELETE FROM resolutions WHERE namespace = $1 AND session_id = ANY ($2::text[])`, [ns, sessionIds]);
}
