// SQL for policy resolutions. Every read filters on expire_time, so an
// expired resolution is invisible the moment it expires; purging only
// reclaims space, in small batches so a backlog never holds long locks.
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

/** Newest first, keyset-paged on (create_time, resolution_id) with the cursor in $8, $9. */
const LIST_SQL = pagedSql({
  fields: FIELDS,
  size: rowSize(SIZES),
  from: `FROM resolutions
    WHERE ($1::text IS NULL OR agent_id = $1)
      AND ($2::text IS NULL OR session_id = $2)
      AND ($3::text IS NULL OR request_id = $3)
      AND (cardinality($4::text[]) = 0 OR decision = ANY ($4::text[]))
      AND ($5::timestamptz IS NULL OR create_time > $5)
      AND ($6::timestamptz IS NULL OR create_time < $6)
      AND ($7 OR ${LIVE})
      AND ($8::timestamptz IS NULL OR (create_time, resolution_id) < ($8, $9::text))`,
  order: [
    ["createTime", "DESC"],
    ["resolutionId", "DESC"],
  ],
  limit: "$10",
  budget: "$11",
});

/** Creates every resolution or none; replays known request ids. */
export function createResolutions(q: Queryable, creates: ResolutionCreate[]): Promise<ResolutionRecord[]> {
  return q.atomic(async (tx) => {
    const created: ResolutionRecord[] = [];
    for (const create of creates) created.push(await createOne(tx, create));
    return created;
  });
}

function createOne(tx: Queryable, c: ResolutionCreate): Promise<ResolutionRecord> {
  return createOnce(tx, {
    scope: CREATE_SCOPE,
    idempotency: c.idempotency,
    resource: "resolution",
    resourceId: c.resolution.resolutionId,
    // A replay returns what the first call created, even if it has expired since.
    read: async (resolutionId) => {
      const existing = await tx.query<ResolutionRecord>(`SELECT ${COLUMNS} FROM resolutions WHERE resolution_id = $1`, [resolutionId]);
      return existing.rows[0];
    },
    create: () => insert(tx, c),
  });
}

async function insert(tx: Queryable, c: ResolutionCreate): Promise<ResolutionRecord> {
  const r = c.resolution;
  const inserted = await tx.query<ResolutionRecord>(
    `INSERT INTO resolutions (resolution_id, request_id, agent_id, session_id, decision, context_blocks,
                              allowed_actions, denied_actions, policies_applied, metadata, expire_time)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9::jsonb, $10::jsonb,
             -- The ttl counts from the write, not from the start of a batch's transaction.
             CASE WHEN $11::bigint IS NOT NULL THEN clock_timestamp() + $11::bigint * interval '1 microsecond'
                  ELSE $12::timestamptz END)
     ON CONFLICT (resolution_id) DO NOTHING
     RETURNING ${COLUMNS}`,
    [
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

/** A live resolution; NOT_FOUND when there is none. */
export async function getResolution(q: Queryable, resolutionId: string): Promise<ResolutionRecord> {
  const result = await q.query<ResolutionRecord>(`SELECT ${COLUMNS} FROM resolutions WHERE resolution_id = $1 AND ${LIVE}`, [resolutionId]);
  if (!result.rows[0]) throw notFound("resolution", resolutionId);
  return result.rows[0];
}

/** One page, newest first: `before` is the last row of the previous page. */
export async function listResolutions(
  q: Queryable,
  f: ResolutionFilter,
  limits: PageLimits,
  before: { time: string; resolutionId: string } | undefined,
): Promise<Page<ResolutionRecord>> {
  const result = await q.query<Paged<ResolutionRecord>>(LIST_SQL, [
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
export async function deleteResolution(q: Queryable, resolutionId: string): Promise<void> {
  const result = await q.query(`DELETE FROM resolutions WHERE resolution_id = $1 AND ${LIVE}`, [resolutionId]);
  if (result.rowCount === 0) throw notFound("resolution", resolutionId);
}

async function purgeExpiredBatch(q: Queryable, limit: number): Promise<number> {
  const result = await q.query(
    `DELETE FROM resolutions WHERE resolution_id IN (
       SELECT resolution_id FROM resolutions WHERE expire_time <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
    [limit],
  );
  return result.rowCount ?? 0;
}

/** Deletes expired resolutions in batches; returns how many. */
export function purgeExpired(q: Queryable): Promise<number> {
  return inBatches((limit) => purgeExpiredBatch(q, limit));
}

/** Deletes the resolutions of these sessions, inside a session delete. */
export async function onSessionsDeleted(tx: Queryable, sessionIds: string[]): Promise<void> {
  await tx.query(`DELETE FROM resolutions WHERE session_id = ANY ($1::text[])`, [sessionIds]);
}
