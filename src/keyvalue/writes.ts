// Key-value write planning: Put, BatchPut and Increment lock their keys,
// read the current rows, decide every write in JS (conditions, counter
// arithmetic) and apply all that pass in one upsert statement. Concurrent
// single writes are coalesced into one transaction (WriteBatcher), each
// keeping its own condition and outcome. A coalesced batch mixes namespaces,
// so every write carries its own and every statement matches (namespace, key).
import { Coalescer } from "../db/coalescer.js";
import { selectList } from "../db/columns.js";
import type { CallScope, Database, Queryable } from "../db/database.js";
import { CHANNELS } from "../db/notify-hub.js";
import { CairnError, failedPrecondition, outOfRange, versionConflict } from "../errors.js";
import { CHANGE_CODE, type EntryRecord, type EntryRef, type FeedChange, FIELDS, type KvValue, LIVE, LOGGED_COLUMNS, refKey, type SelectedEntry, decodeEntry } from "./store.js";

export interface PutItem {
  key: string;
  value: KvValue;
  sessionId: string;
  /** Null: never expires. */
  ttlMicros: number | null;
  /** Undefined: unconditional; 0: must not exist; n: must be at version n. */
  expectedVersion: number | undefined;
}

export interface IncrementItem {
  key: string;
  delta: number;
  /** Null: the entry keeps its expiry. */
  ttlMicros: number | null;
}

export type WriteRequest = { kind: "put"; key: string; item: PutItem } | ({ kind: "increment" } & IncrementItem);

/** A write and the namespace of its key. */
type NsWrite = WriteRequest & { ns: string };

/** One row to upsert, fully decided: the statement only applies it. */
interface PlannedWrite {
  ord: number;
  namespace: string;
  key: string;
  bytes_value: string | null;
  json_text: string | null;
  session_id: string;
  ttl_micros: number | null;
  expire_time: string | null;
}

/** A key's row as the planner reads it, under the key's lock. */
interface CurrentRow {
  namespace: string;
  key: string;
  version: number;
  live: boolean;
  json_value: unknown;
  bytes_value: Buffer | null;
  session_id: string;
  expire_time: string | null;
}

function unwrap(result: EntryRecord | CairnError): EntryRecord {
  if (result instanceof CairnError) throw result;
  return result;
}

/**
 * Serializes writers of these keys, even of keys that do not exist yet (a
 * row lock cannot cover an absent row): transaction-scoped advisory locks on
 * the hashes of (namespace, key), taken in one order so that batches cannot
 * deadlock. `namespace:key` is unambiguous: a namespace never contains ':'
 * (and text cannot hold the NUL that separates them in JS).
 */
async function lockKeys(tx: Queryable, refs: readonly EntryRef[]): Promise<void> {
  await tx.query(
    `SELECT pg_advisory_xact_lock(h) FROM (
       SELECT DISTINCT hashtextextended(n || ':' || k, 0) AS h FROM unnest($1::text[], $2::text[]) AS w (n, k) ORDER BY 1) AS hashes`,
    [refs.map((r) => r.ns), refs.map((r) => r.key)],
  );
}

/** Decides one write against the key's live row (if any): the row to upsert, or why not. */
function plan(request: NsWrite, current: CurrentRow | undefined): PlannedWrite | CairnError {
  if (request.kind === "put") {
    const { item } = request;
    if (item.expectedVersion !== undefined && (current?.version ?? 0) !== item.expectedVersion) {
      return versionConflict("entry", item.key, current?.version ?? 0);
    }
    return {
      ord: 0,
      namespace: request.ns,
      key: item.key,
      bytes_value: item.value.kind === "bytes" ? item.value.bytes.toString("base64") : null,
      json_text: item.value.kind === "json" ? JSON.stringify(item.value.json) : null,
      session_id: item.sessionId,
      ttl_micros: item.ttlMicros,
      expire_time: null,
    };
  }
  if (current && (current.bytes_value !== null || typeof current.json_value !== "number" || !Number.isInteger(current.json_value))) {
    return failedPrecondition(`entry ${JSON.stringify(request.key)} does not hold an integer`, { key: request.key });
  }
  const next = ((current?.json_value as number | undefined) ?? 0) + request.delta;
  if (!Number.isSafeInteger(next)) return outOfRange("the counter would leave the safe integer range", { key: request.key });
  return {
    ord: 0,
    namespace: request.ns,
    key: request.key,
    bytes_value: null,
    json_text: JSON.stringify(next),
    // A counter keeps its scope, and its expiry unless a ttl is given.
    session_id: current?.session_id ?? "",
    ttl_micros: request.ttlMicros,
    expire_time: request.ttlMicros === null ? (current?.expire_time ?? null) : null,
  };
}

/**
 * Applies writes to distinct (namespace, key)s in the caller's transaction:
 * locks the keys, reads their rows, decides each write and upserts all that
 * pass in one statement. Returns one outcome per request; a request that
 * fails yields its error and writes nothing.
 */
async function applyWrites(tx: Queryable, requests: NsWrite[]): Promise<(EntryRecord | CairnError)[]> {
  await lockKeys(tx, requests);
  // One primary-key probe per key, whatever the planner believes of the table's size.
  const locked = await tx.query<CurrentRow>(
    `SELECT e.* FROM unnest($1::text[], $2::text[]) AS r (namespace, key)
      CROSS JOIN LATERAL (
        SELECT namespace, key, version, ${LIVE} AS live, json_value, bytes_value, session_id, expire_time
          FROM kv_entries WHERE namespace = r.namespace AND key = r.key LIMIT 1 FOR UPDATE) AS e`,
    [requests.map((r) => r.ns), requests.map((r) => r.key)],
  );
  const rows = new Map(locked.rows.filter((r) => r.live).map((r) => [refKey(r.namespace, r.key), r]));
  const outcomes = requests.map((request) => plan(request, rows.get(refKey(request.ns, request.key))));
  const planned = outcomes.filter((o): o is PlannedWrite => !(o instanceof CairnError));
  planned.forEach((p, i) => (p.ord = i + 1));
  const written = planned.length > 0 ? await upsertEntries(tx, planned) : [];
  return outcomes.map((o) => (o instanceof CairnError ? o : written[o.ord - 1]!));
}

/**
 * Upserts decided rows with consecutive revisions from one allocation and
 * logs a PUT for each, in one statement; queues one NOTIFY. An expired row
 * is replaced as if absent (version 1, new create_time).
 */
async function upsertEntries(tx: Queryable, planned: PlannedWrite[]): Promise<EntryRecord[]> {
  const result = await tx.query<SelectedEntry & { ord: number; notified: unknown }>(
    `WITH v AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS v (ord int, namespace text, key text, bytes_value text, json_text text,
                                                         session_id text, ttl_micros bigint, expire_time timestamptz)
     ), rev AS (
       UPDATE kv_revisions SET last_revision = last_revision + $2 RETURNING last_revision - $2 AS base
     ), written AS (
       INSERT INTO kv_entries AS e (namespace, key, bytes_value, json_value, version, mod_revision, session_id, expire_time)
       SELECT v.namespace, v.key, decode(v.bytes_value, 'base64'), v.json_text::jsonb, 1, rev.base + v.ord, v.session_id,
              CASE WHEN v.ttl_micros IS NOT NULL THEN clock_timestamp() + v.ttl_micros * interval '1 microsecond'
                   ELSE v.expire_time END
         FROM v, rev
       ON CONFLICT (namespace, key) DO UPDATE SET
         bytes_value = EXCLUDED.bytes_value,
         json_value = EXCLUDED.json_value,
         mod_revision = EXCLUDED.mod_revision,
         version = CASE WHEN e.expire_time IS NULL OR e.expire_time > now() THEN e.version + 1 ELSE 1 END,
         create_time = CASE WHEN e.expire_time IS NULL OR e.expire_time > now() THEN e.create_time ELSE now() END,
         update_time = now(),
         session_id = EXCLUDED.session_id,
         expire_time = EXCLUDED.expire_time
       RETURNING mod_revision, ${LOGGED_COLUMNS}
     ), logged AS (
       INSERT INTO kv_changes (revision, change_type, ${LOGGED_COLUMNS})
       SELECT mod_revision, ${CHANGE_CODE.PUT}, ${LOGGED_COLUMNS}
         FROM written
     )
     SELECT ${selectList(FIELDS, "written.")}, written.mod_revision - rev.base AS ord,
            (SELECT pg_notify('${CHANNELS.keyValueChanges}', max(mod_revision)::text) FROM written) AS notified
       FROM written, rev`,
    [JSON.stringify(planned), planned.length],
  );
  const byOrd: EntryRecord[] = [];
  for (const { ord, notified: _notified, ...entry } of result.rows) byOrd[ord - 1] = decodeEntry(entry);
  return byOrd;
}

/** Applies writes to distinct keys of `ns` all or none, in the caller's transaction or one of their own. */
export function writeAll(q: Queryable, ns: string, requests: WriteRequest[]): Promise<EntryRecord[]> {
  return q.atomic(async (tx) => (await applyWrites(tx, requests.map((r) => ({ ...r, ns })))).map(unwrap));
}

/**
 * Takes the write locks of these keys of `ns` now, in the caller's
 * transaction (they are held until it ends and taken again at no cost): a
 * transaction writing several keys one after another takes them all first,
 * as one batch does, so it cannot deadlock with another writer of them.
 */
export function lockEntryKeys(tx: Queryable, ns: string, keys: string[]): Promise<void> {
  return lockKeys(
    tx,
    keys.map((key) => ({ ns, key })),
  );
}

/** One Put in the caller's transaction or one of its own (Put itself goes through WriteBatcher). */
export async function putEntry(q: Queryable, ns: string, item: PutItem): Promise<EntryRecord> {
  const [entry] = await putAll(q, ns, [item]);
  return entry!;
}

/** One Increment in the caller's transaction or one of its own (Increment itself goes through WriteBatcher). */
export async function incrementEntry(q: Queryable, ns: string, increment: IncrementItem): Promise<EntryRecord> {
  const [entry] = await writeAll(q, ns, [{ kind: "increment", ...increment }]);
  return entry!;
}

/** Puts every item or none (BatchPut); a failed condition fails the batch naming its key. */
export function putAll(q: Queryable, ns: string, items: PutItem[]): Promise<EntryRecord[]> {
  return writeAll(
    q,
    ns,
    items.map((item) => ({ kind: "put", key: item.key, item })),
  );
}

/** The changes a batch of writes logged, in revision order: each written entry is its PUT, as the change log holds it. */
function loggedChanges(requests: NsWrite[], outcomes: (EntryRecord | CairnError)[]): FeedChange[] {
  const changes: FeedChange[] = [];
  outcomes.forEach((entry, i) => {
    if (!(entry instanceof CairnError)) changes.push({ namespace: requests[i]!.ns, revision: entry.modRevision, type: "PUT", entry });
  });
  return changes.sort((a, b) => a.revision - b.revision);
}

/**
 * Single writes (Put, Increment), coalesced: those arriving together, of any
 * namespaces, share one transaction and one commit, each keeping its own
 * condition and outcome. A (namespace, key) appears once per batch.
 * `committed` hears each batch's changes once its transaction has committed
 * (Watch's window takes them from there, without reading them back).
 */
export class WriteBatcher {
  private readonly writes = new Coalescer<NsWrite, EntryRecord | CairnError>(
    async (requests, signal) => {
      const outcomes = await this.db.transaction({ signal }, (tx) => applyWrites(tx, requests));
      this.committed?.(loggedChanges(requests, outcomes));
      return outcomes;
    },
    { keyOf: (r) => refKey(r.ns, r.key), shareEqualKeys: false },
  );

  constructor(
    private readonly db: Database,
    private readonly committed?: (changes: FeedChange[]) => void,
  ) {}

  async put(scope: CallScope, ns: string, item: PutItem): Promise<EntryRecord> {
    return unwrap(await this.writes.submit({ kind: "put", key: item.key, item, ns }, scope.signal));
  }

  /** Adds delta to a number in `ns` (creating it at 0); the entry after the change. */
  async increment(scope: CallScope, ns: string, increment: IncrementItem): Promise<EntryRecord> {
    return unwrap(await this.writes.submit({ kind: "increment", ...increment, ns }, scope.signal));
  }
}
