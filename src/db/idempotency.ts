// AIP-155 request ids, shared by every create method: the first call with a
// request_id records (namespace, scope, request_id) -> (hash of the request, created id,
// the response it gave) in the same transaction as the create; a retry within
// 24 h finds the record and returns that first response, whatever has
// happened to the resource since (updated, leased, completed). The reaper
// drops records older than the window. The namespace is part of the key: the
// same request_id sent in two namespaces is two independent claims.
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { notFound, requestIdReused } from "../errors.js";
import type { Queryable } from "./database.js";

export const REQUEST_ID_RETENTION = "24 hours";

/** A create's AIP-155 key and the hash of its body; null when the call gave no request_id. */
export interface Idempotency {
  requestId: string;
  requestHash: string;
}

/** The idempotency of a request: hashes `body` (the request minus its request_id) only when there is an id. */
export function idempotency(requestId: string, body: () => unknown): Idempotency | null {
  if (requestId === "") return null;
  return { requestId, requestHash: createHash("sha256").update(canonicalize(body()) ?? "null").digest("hex") };
}

type Claim = { kind: "new" } | { kind: "replay"; resourceId: string; response: unknown };

/**
 * Claims a request id inside the caller's transaction. A concurrent claim of
 * the same id waits on the primary key until the first transaction ends, so
 * two racing retries never both create.
 */
async function claimRequestId(tx: Queryable, ns: string, scope: string, key: Idempotency, resourceId: string): Promise<Claim> {
  const inserted = await tx.query(
    `INSERT INTO request_ids (namespace, scope, request_id, request_hash, resource_id)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (namespace, scope, request_id) DO UPDATE
       SET request_hash = EXCLUDED.request_hash, resource_id = EXCLUDED.resource_id, response = NULL, create_time = now()
       WHERE request_ids.create_time < now() - $6::interval
     RETURNING resource_id`,
    [ns, scope, key.requestId, key.requestHash, resourceId, REQUEST_ID_RETENTION],
  );
  if (inserted.rowCount === 1) return { kind: "new" };
  const existing = await tx.query<{ request_hash: string; resource_id: string; response: unknown }>(
    `SELECT request_hash, resource_id, response FROM request_ids WHERE namespace = $1 AND scope = $2 AND request_id = $3`,
    [ns, scope, key.requestId],
  );
  const row = existing.rows[0];
  if (!row || row.request_hash !== key.requestHash) throw requestIdReused(key.requestId);
  return { kind: "replay", resourceId: row.resource_id, response: row.response };
}

export interface CreateOnce<T> {
  /** The create method, e.g. "cairn.v1.SessionService/CreateSession": request ids are unique per method. */
  scope: string;
  idempotency: Idempotency | null;
  /** What the resource is called in errors ("session") and the id this create would give it. */
  resource: string;
  resourceId: string;
  /** Reads the resource a first call created (undefined when it is gone). */
  read(resourceId: string): Promise<T | undefined>;
  create(): Promise<T>;
}

/**
 * Creates once per request id, inside the caller's transaction: a retry
 * returns the first call's response; NOT_FOUND when what it created was
 * since deleted.
 */
export async function createOnce<T>(tx: Queryable, ns: string, c: CreateOnce<T>): Promise<T> {
  const key = c.idempotency;
  if (!key) return c.create();
  const first = await replayOrClaim(tx, ns, { ...c, idempotency: key });
  if (first !== undefined) return first;
  const created = await c.create();
  await rememberResponse(tx, ns, c.scope, key, c.resourceId, created);
  return created;
}

/**
 * For a create that settles its outcome later (EnqueueJob's batched INSERT):
 * the first call's response when the request id is known; undefined when
 * this call has just claimed it, and must then rememberResponse (or
 * releaseClaim if it fails alone) in the same transaction.
 */
export async function replayOrClaim<T>(
  tx: Queryable,
  ns: string,
  c: Omit<CreateOnce<T>, "create"> & { idempotency: Idempotency },
): Promise<T | undefined> {
  const claim = await claimRequestId(tx, ns, c.scope, c.idempotency, c.resourceId);
  if (claim.kind === "new") return undefined;
  const current = await c.read(claim.resourceId);
  if (current === undefined) throw notFound(c.resource, claim.resourceId, "created by this request_id, since deleted");
  // Claims recorded before responses were kept have none; the resource as it is now is the best answer left.
  return (claim.response ?? current) as T;
}

/** Records the response a claimed request id gave, and the resource it names (the created one, or a dedupe holder). */
export async function rememberResponse(
  tx: Queryable,
  ns: string,
  scope: string,
  key: Idempotency,
  resourceId: string,
  response: unknown,
): Promise<void> {
  await tx.query(
    `UPDATE request_ids SET resource_id = $4, response = $5::json WHERE namespace = $1 AND scope = $2 AND request_id = $3`,
    [ns, scope, key.requestId, resourceId, JSON.stringify(response)],
  );
}

/** Gives up a claim whose create failed on its own (the transaction commits others): a retry may try again. */
export async function releaseClaim(tx: Queryable, ns: string, scope: string, key: Idempotency): Promise<void> {
  await tx.query(`DELETE FROM request_ids WHERE namespace = $1 AND scope = $2 AND request_id = $3`, [ns, scope, key.requestId]);
}

/** Forgets request ids older than the idempotency window, one batch, across every namespace (the reaper's job). */
export async function purgeRequestIdsBatch(q: Queryable, limit: number): Promise<number> {
  const result = await q.query(
    `DELETE FROM request_ids WHERE (namespace, scope, request_id) IN (
       SELECT namespace, scope, request_id FROM request_ids WHERE create_time < now() - $1::interval LIMIT $2)`,
    [REQUEST_ID_RETENTION, limit],
  );
  return result.rowCount ?? 0;
}
