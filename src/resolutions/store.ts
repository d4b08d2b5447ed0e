// SQL for policy resolutions. Every read filters on expire_time, so an
// expired resolution is invisible the moment it expires; purging only
// reclaims space, in small batches so a backlog never holds long locks.
import type { CallScope, Database, Queryable } from "../db/database.js";
import { claimRequestId } from "../db/idempotency.js";
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
  /** AIP-155 idempotency key of the create call ("" for none). */
  idempotencyKey: string;
  requestHash: string;
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
const PURGE_BATCH = 1000;

const COLUMNS = `resolution_id, request_id, agent_id, session_id, decision, context_blocks, allowed_actions,
  denied_actions, policies_applied, metadata, create_time, expire_time`;

/** Rows a read may see: unexpired, as of this statement. */
const LIVE = `(expire_time IS NULL OR expire_time > now())`;

interface Row {
  resolution_id: string;
  request_id: string;
  agent_id: string;
  session_id: string;
  decision: DecisionName;
  context_blocks: JsonObject[];
  allowed_actions: JsonObject[];
  denied_actions: JsonObject[];
  policies_applied: JsonObject[];
  metadata: JsonObject | null;
  create_time: string;
  expire_time: string | null;
}

function toRecord(r: Row): ResolutionRecord {
  return {
    resolutionId: r.resolution_id,
    requestId: r.request_id,
    agentId: r.agent_id,
    sessionId: r.session_id,
    decision: r.decision,
    contextBlocks: r.context_blocks,
    allowedActions: r.allowed_actions,
    deniedActions: r.denied_actions,
    policiesApplied: r.policies_applied,
    metadata: r.metadata,
    createTime: r.create_time,
    expireTime: r.expire_time,
  };
}

export class ResolutionStore {
  constructor(private readonly db: Database) {}

  /** Creates every resolution or none; replays known idempotency keys. */
  createResolutions(scope: CallScope, creates: ResolutionCreate[]): Promise<ResolutionRecord[]> {
    return this.db.transaction(scope, async (tx) => {
      const created: ResolutionRecord[] = [];
      for (const create of creates) created.push(await this.createOne(tx, create));
      return created;
    });
  }

  private async createOne(tx: Queryable, c: ResolutionCreate): Promise<ResolutionRecord> {
    if (c.idempotencyKey !== "") {
      const claim = await claimRequestId(tx, CREATE_SCOPE, c.idempotencyKey, c.requestHash, c.resolution.resolutionId);
      if (claim.kind === "replay") {
        const existing = await tx.query<Row>(`SELECT ${COLUMNS} FROM resolutions WHERE resolution_id = $1`, [claim.resourceId]);
        if (!existing.rows[0]) throw notFound("resolution", claim.resourceId, "created by this request_id, since deleted");
        return toRecord(existing.rows[0]);
      }
    }
    const r = c.resolution;
    const inserted = await tx.query<Row>(
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
    return toRecord(inserted.rows[0]);
  }

  async getResolution(scope: CallScope, resolutionId: string): Promise<ResolutionRecord> {
    const result = await this.db.run<Row>(scope, `SELECT ${COLUMNS} FROM resolutions WHERE resolution_id = $1 AND ${LIVE}`, [
      resolutionId,
    ]);
    if (!result.rows[0]) throw notFound("resolution", resolutionId);
    return toRecord(result.rows[0]);
  }

  /** Newest first, keyset-paged on (create_time, resolution_id). */
  async listResolutions(
    scope: CallScope,
    f: ResolutionFilter,
    limit: number,
    before: { time: string; resolutionId: string } | undefined,
  ): Promise<ResolutionRecord[]> {
    const result = await this.db.run<Row>(
      scope,
      `SELECT ${COLUMNS} FROM resolutions
        WHERE ($1::text IS NULL OR agent_id = $1)
          AND ($2::text IS NULL OR session_id = $2)
          AND ($3::text IS NULL OR request_id = $3)
          AND (cardinality($4::text[]) = 0 OR decision = ANY ($4::text[]))
          AND ($5::timestamptz IS NULL OR create_time > $5)
          AND ($6::timestamptz IS NULL OR create_time < $6)
          AND ($7 OR ${LIVE})
          AND ($8::timestamptz IS NULL OR (create_time, resolution_id) < ($8, $9::text))
        ORDER BY create_time DESC, resolution_id DESC
        LIMIT $10`,
      [f.agentId, f.sessionId, f.requestId, f.decisions, f.createdAfter, f.createdBefore, f.includeExpired, before?.time ?? null, before?.resolutionId ?? null, limit],
    );
    return result.rows.map(toRecord);
  }

  async deleteResolution(scope: CallScope, resolutionId: string): Promise<void> {
    const result = await this.db.run(scope, `DELETE FROM resolutions WHERE resolution_id = $1 AND ${LIVE}`, [resolutionId]);
    if (result.rowCount === 0) throw notFound("resolution", resolutionId);
  }

  /** Deletes expired resolutions in batches of PURGE_BATCH; returns how many. */
  async purgeExpired(scope: CallScope): Promise<number> {
    let total = 0;
    for (;;) {
      const result = await this.db.run(
        scope,
        `DELETE FROM resolutions WHERE resolution_id IN (
           SELECT resolution_id FROM resolutions WHERE expire_time <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [PURGE_BATCH],
      );
      total += result.rowCount ?? 0;
      if ((result.rowCount ?? 0) < PURGE_BATCH) return total;
    }
  }
}

/** Deletes the resolutions of these sessions, inside a session delete. */
export async function deleteSessionResolutions(tx: Queryable, sessionIds: string[]): Promise<void> {
  await tx.query(`DELETE FROM resolutions WHERE session_id = ANY ($1::text[])`, [sessionIds]);
}
