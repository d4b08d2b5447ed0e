// AIP-155 request ids, shared by every create method: the first call with a
// request_id records (scope, request_id) -> (hash of the request, created id)
// in the same transaction as the create; a retry within 24 h finds the record
// and returns the first result instead of creating twice.
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { requestIdReused } from "../errors.js";
import type { Queryable } from "./database.js";

export const REQUEST_ID_RETENTION = "24 hours";

export function requestHash(body: unknown): string {
  return createHash("sha256")
    .update(canonicalize(body) ?? "null")
    .digest("hex");
}

export type Claim = { kind: "new" } | { kind: "replay"; resourceId: string };

/**
 * Claims a request id inside the caller's transaction. A concurrent claim of
 * the same id waits on the primary key until the first transaction ends, so
 * two racing retries never both create.
 */
export async function claimRequestId(
  tx: Queryable,
  scope: string,
  requestId: string,
  hash: string,
  resourceId: string,
): Promise<Claim> {
  const inserted = await tx.query(
    `INSERT INTO request_ids (scope, request_id, request_hash, resource_id)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (scope, request_id) DO UPDATE
       SET request_hash = EXCLUDED.request_hash, resource_id = EXCLUDED.resource_id, create_time = now()
       WHERE request_ids.create_time < now() - $5::interval
     RETURNING resource_id`,
    [scope, requestId, hash, resourceId, REQUEST_ID_RETENTION],
  );
  if (inserted.rowCount === 1) return { kind: "new" };
  const existing = await tx.query<{ request_hash: string; resource_id: string }>(
    `SELECT request_hash, resource_id FROM request_ids WHERE scope = $1 AND request_id = $2`,
    [scope, requestId],
  );
  const row = existing.rows[0];
  if (!row || row.request_hash !== hash) throw requestIdReused(requestId);
  return { kind: "replay", resourceId: row.resource_id };
}
