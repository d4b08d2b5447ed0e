// SQL for key-value entries and their change log. Every change (put,
// delete, expiry) takes the next revision from the one counter row, whose
// lock is held until commit, and writes a kv_changes row in the same
// statement, so revisions become visible in commit order and Watch can read
// the log by revision. An expired entry is invisible at once; the reaper
// removes it later and logs the EXPIRE. Puts and increments are planned in
// writes.ts.
//
// An entry is (namespace, key): every function takes the namespace right
// after the queryable and every statement names it, and each change-log row
// carries its entry's namespace, so Watch follows one namespace. Revisions
// stay one global order: a namespace sees gaps in them.
import { inBatches } from "../db/batches.js";
import { Coalescer } from "../db/coalescer.js";
import { type Fields, selectList } from "../db/columns.js";
import type { CallScope, Database, Queryable } from "../db/database.js";
import { CHANNELS } from "../db/notify-hub.js";
import { jsonSize, type Page, type PageLimits, type Paged, pagedSql, rowSize, type Sizes, textSize, toPage } from "../db/pages.js";
import { SCAN_WINDOW, TAIL_PAGE_BYTES, type TailPage, windowPage } from "../db/tail.js";
import { notFound, revisionCompacted, versionConflict } from "../errors.js";

export type KvValue = { kind: "bytes"; bytes: Buffer } | { kind: "json"; json: unknown };
export type ChangeType = "PUT" | "DELETE" | "EXPIRE";

export interface EntryRecord {
  key: string;
  /** Undefined for keys_only listings. */
  value: KvValue | undefined;
  version: number;
  modRevision: number;
  sessionId: string;
  createTime: string;
  updateTime: string;
  expireTime: string | null;
}

export interface ChangeRecord {
  revision: number;
  type: ChangeType;
  entry: EntryRecord;
}

/** A change and its entry's namespace (the replica's window of changes holds every namespace's). */
export type FeedChange = ChangeRecord & { namespace: string };

/** kv_changes.change_type, as the migration numbers it. */
export const CHANGE_CODE = { PUT: 1, DELETE: 2, EXPIRE: 3 } as const satisfies Record<ChangeType, number>;

/**
 * The value as SQL can carry it: JSON cannot hold a bytea, so bytes travel
 * base64-encoded and decodeEntry turns them into a Buffer.
 */
const VALUE = (t: string) =>
  `CASE WHEN ${t}bytes_value IS NOT NULL THEN json_build_object('kind', 'bytes', 'bytes', encode(${t}bytes_value, 'base64'))
        ELSE json_build_object('kind', 'json', 'json', ${t}json_value) END`;

export const FIELDS: Fields<EntryRecord> = {
  key: "key",
  value: VALUE,
  version: "version",
  modRevision: "mod_revision",
  sessionId: "session_id",
  createTime: "create_time",
  updateTime: "update_time",
  expireTime: "expire_time",
};

/** keys_only listings (and read masks without the value) select no value at all. */
const KEY_FIELDS: Fields<EntryRecord> = { ...FIELDS, value: () => "NULL" };

/** Sizes of an entry's varying fields, for byte-bounded pages; the change log has the same columns. */
const SIZES: Sizes<EntryRecord> = {
  key: textSize("key"),
  value: `${textSize("bytes_value")} + ${jsonSize("json_value")}`,
  sessionId: textSize("session_id"),
};
const KEY_SIZES: Sizes<EntryRecord> = { ...SIZES, value: "0" };

/** A change-log row has no mod_revision of its own: the change's revision is it. */
const CHANGE_FIELDS: Fields<EntryRecord> = { ...FIELDS, modRevision: "revision" };

/** An entry as selected through FIELDS, before its value is decoded. */
export type SelectedEntry = Omit<EntryRecord, "value"> & {
  value: { kind: "bytes"; bytes: string } | { kind: "json"; json: unknown } | null;
};

/** The one decoding step FIELDS needs: base64 bytes into a Buffer, no value into undefined. */
export function decodeEntry(row: SelectedEntry): EntryRecord {
  const v = row.value;
  return { ...row, value: v === null ? undefined : v.kind === "bytes" ? { kind: "bytes", bytes: Buffer.from(v.bytes, "base64") } : v };
}

/** The columns a change-log row copies from its entry (its namespace included: Watch filters on it). */
export const LOGGED_COLUMNS = `namespace, key, bytes_value, json_value, version, session_id, create_time, update_time, expire_time`;

/** Visible entries: not expired as of this statement. */
export const LIVE = `(expire_time IS NULL OR expire_time > now())`;

/** A LIKE pattern matching every key that starts with `prefix`. */
export function prefixPattern(prefix: string): string {
  return prefix.replace(/[\\%_]/g, (c) => `\\${c}`) + "%";
}

/** Which live entries of a namespace List and Count see. */
export interface EntryFilter {
  prefix: string;
  /** Only entries whose json_value contains `json` (JSON null is a value like any other); null: no such filter. */
  valueContains: { json: unknown } | null;
}

/**
 * An entry's json_value nested under its namespace, {"<namespace>": value}:
 * the expression of kv_entries_value_idx (migration 1763801000000), which a
 * containment filter must repeat exactly for the index to serve it.
 */
const VALUE_IN_NAMESPACE = `jsonb_set('{}', ARRAY[namespace], json_value)`;

/**
 * value_contains as documents to match VALUE_IN_NAMESPACE against, any of
 * them: `{ns: value}`, and for a scalar also `{ns: [value]}`, because
 * json_value @> scalar also holds for a top-level array holding the scalar,
 * and that exception of @> applies only at the top level. So this matches
 * exactly the entries `json_value @> value` does.
 */
function containmentNeedles(ns: string, value: unknown): string[] {
  const needles = [{ [ns]: value }];
  if (value === null || typeof value !== "object") needles.push({ [ns]: [value] });
  return needles.map((needle) => JSON.stringify(needle));
}

/**
 * The entries an EntryFilter selects: namespace $1, prefix pattern $2,
 * containment needles $3 (NULL: no value filter; each call is planned for
 * its values, so the index serves the filter when it is set).
 */
const FILTERED = `namespace = $1 AND key LIKE $2 ESCAPE '\\' AND ${LIVE}
  AND ($3::jsonb[] IS NULL OR ${VALUE_IN_NAMESPACE} @> ANY ($3::jsonb[]))`;

function filterValues(ns: string, f: EntryFilter): unknown[] {
  return [ns, prefixPattern(f.prefix), f.valueContains ? containmentNeedles(ns, f.valueContains.json) : null];
}

/**
 * Logs `deleted` (rows just removed, as RETURNING gave them) as changes of
 * one type, numbering them from one revision allocation; queues one NOTIFY.
 * Shared by Delete, BatchDelete, session deletes and expiry.
 */
function logRemovalsSql(deleteSql: string, changeType: "DELETE" | "EXPIRE"): string {
  return `WITH removed AS (${deleteSql} RETURNING ${LOGGED_COLUMNS}),
     counted AS (SELECT count(*) AS n FROM removed),
     rev AS (
       UPDATE kv_revisions SET last_revision = last_revision + (SELECT n FROM counted)
        WHERE (SELECT n FROM counted) > 0
        RETURNING last_revision - (SELECT n FROM counted) AS base
     ),
     numbered AS (SELECT removed.*, row_number() OVER (ORDER BY namespace, key) AS rn FROM removed),
     logged AS (
       INSERT INTO kv_changes (revision, change_type, ${LOGGED_COLUMNS})
       SELECT rev.base + rn, ${CHANGE_CODE[changeType]}, ${LOGGED_COLUMNS}
         FROM numbered, rev
       RETURNING revision
     )
     SELECT (SELECT n FROM counted)::bigint AS n,
            (SELECT pg_notify('${CHANNELS.keyValueChanges}', max(revision)::text) FROM logged) AS notified`;
}

/** Live entries of `ns` for these keys, in one statement; without their values when `keysOnly`. */
export async function readEntries(q: Queryable, ns: string, keys: string[], keysOnly = false): Promise<Map<string, EntryRecord>> {
  const result = await q.prepared<SelectedEntry>(
    keysOnly ? "kv_read_keys" : "kv_read",
    `SELECT ${selectList(keysOnly ? KEY_FIELDS : FIELDS)} FROM kv_entries WHERE namespace = $1 AND key = ANY ($2::text[]) AND ${LIVE}`,
    [ns, keys],
  );
  return new Map(result.rows.map((r) => [r.key, decodeEntry(r)]));
}

/** An entry's address: a key in a namespace. */
export interface EntryRef {
  ns: string;
  key: string;
}

/** A namespace never contains NUL (nor does a key), so this names one (namespace, key). */
export const refKey = (ns: string, key: string) => `${ns}\u0000${key}`;

/**
 * Live entries at (namespace, key) pairs of any namespaces, in one
 * statement: the coalesced Gets of a moment come from several namespaces.
 * One primary-key probe per pair, whatever the planner believes of the
 * table's size (a join could hash a table it thinks small; see
 * traces/store.ts findStored). Keyed by refKey.
 */
async function readRefs(q: Queryable, refs: EntryRef[]): Promise<Map<string, EntryRecord>> {
  const result = await q.prepared<SelectedEntry & { ns: string }>(
    "kv_read_refs",
    `SELECT e.* FROM unnest($1::text[], $2::text[]) AS r (namespace, key)
      CROSS JOIN LATERAL (
        SELECT namespace AS ns, ${selectList(FIELDS)} FROM kv_entries
         WHERE namespace = r.namespace AND key = r.key AND ${LIVE} LIMIT 1) AS e`,
    [refs.map((r) => r.ns), refs.map((r) => r.key)],
  );
  return new Map(result.rows.map(({ ns, ...r }) => [refKey(ns, r.key), decodeEntry(r)]));
}

/**
 * Coalesced single-key reads (Get): reads arriving together, of any
 * namespaces, share one statement and one pool checkout.
 */
export class EntryReads {
  private readonly reads = new Coalescer<EntryRef, EntryRecord | undefined>(
    async (refs, signal) => {
      const found = await readRefs(this.db.on({ signal }), refs);
      return refs.map((r) => found.get(refKey(r.ns, r.key)));
    },
    { keyOf: (r) => refKey(r.ns, r.key), shareEqualKeys: true },
  );

  constructor(private readonly db: Database) {}

  /** The live entry at `key` in `ns`; NOT_FOUND when there is none. */
  async get(scope: CallScope, ns: string, key: string): Promise<EntryRecord> {
    const entry = await this.reads.submit({ ns, key }, scope.signal);
    if (!entry) throw notFound("entry", key);
    return entry;
  }
}

async function currentVersion(q: Queryable, ns: string, key: string): Promise<number | undefined> {
  const result = await q.query<{ version: number }>(`SELECT version FROM kv_entries WHERE namespace = $1 AND key = $2 AND ${LIVE}`, [ns, key]);
  return result.rows[0]?.version;
}

/** Deletes a live key of `ns` (if at expectedVersion); false when there was none. */
export function deleteEntry(q: Queryable, ns: string, key: string, expectedVersion: number | undefined): Promise<boolean> {
  return q.atomic(async (tx) => {
    const result = await tx.query<{ n: number }>(
      logRemovalsSql(
        `DELETE FROM kv_entries WHERE namespace = $1 AND key = $2 AND ${LIVE} AND ($3::bigint IS NULL OR version = $3)`,
        "DELETE",
      ),
      [ns, key, expectedVersion ?? null],
    );
    if (result.rows[0]!.n > 0) return true;
    if (expectedVersion !== undefined) {
      const current = await currentVersion(tx, ns, key);
      if (current !== undefined) throw versionConflict("entry", key, current);
    }
    return false;
  });
}

/** Deletes the live entries of `ns` among `keys` (BatchDelete); how many there were. */
export async function deleteEntries(q: Queryable, ns: string, keys: string[]): Promise<number> {
  const result = await q.query<{ n: number }>(
    logRemovalsSql(`DELETE FROM kv_entries WHERE namespace = $1 AND key = ANY ($2::text[]) AND ${LIVE}`, "DELETE"),
    [ns, keys],
  );
  return result.rows[0]!.n;
}

/** One page of the entries of `ns` a filter selects, in key order after `afterKey`; values omitted when keysOnly. */
export async function list(
  q: Queryable,
  ns: string,
  filter: EntryFilter,
  afterKey: string | null,
  limits: PageLimits,
  keysOnly: boolean,
): Promise<Page<EntryRecord>> {
  const sql = pagedSql({
    fields: keysOnly ? KEY_FIELDS : FIELDS,
    size: rowSize(keysOnly ? KEY_SIZES : SIZES),
    from: `FROM kv_entries WHERE ${FILTERED} AND ($4::text IS NULL OR key > $4)`,
    order: [["key", "ASC"]],
    limit: "$5",
    budget: "$6",
  });
  const result = await q.query<Paged<SelectedEntry>>(sql, [...filterValues(ns, filter), afterKey, limits.rows, limits.bytes]);
  const page = toPage(result.rows);
  return { ...page, items: page.items.map(decodeEntry) };
}

/** How many entries of `ns` a filter selects (live ones only). */
export async function count(q: Queryable, ns: string, filter: EntryFilter): Promise<number> {
  const result = await q.query<{ n: number }>(`SELECT count(*)::bigint AS n FROM kv_entries WHERE ${FILTERED}`, filterValues(ns, filter));
  return result.rows[0]!.n;
}

/** One batch of expired entries (of `ns`, or of every namespace when null) removed, each logged as an EXPIRE. */
async function purgeExpiredBatch(q: Queryable, ns: string | null, limit: number): Promise<number> {
  const result = await q.query<{ n: number }>(
    logRemovalsSql(
      `DELETE FROM kv_entries WHERE (namespace, key) IN (
         SELECT namespace, key FROM kv_entries
          WHERE ($1::text IS NULL OR namespace = $1) AND expire_time <= now()
          ORDER BY namespace, key LIMIT $2 FOR UPDATE SKIP LOCKED)
         AND expire_time <= now()`,
      "EXPIRE",
    ),
    [ns, limit],
  );
  return result.rows[0]!.n;
}

/**
 * Removes expired entries in batches, logging an EXPIRE for each (in the
 * entry's own namespace); returns how many. `ns`: the PurgeExpired call's
 * namespace; null for the reaper, which purges every namespace.
 */
export function purgeExpired(q: Queryable, ns: string | null): Promise<number> {
  return inBatches((limit) => purgeExpiredBatch(q, ns, limit));
}

/** One batch of changes older than the retention dropped; moves the compact revision past them. */
async function compactChangesBatch(q: Queryable, retentionMs: number, limit: number): Promise<number> {
  const result = await q.query<{ n: number }>(
    `WITH gone AS (
       DELETE FROM kv_changes WHERE revision IN (
         SELECT revision FROM kv_changes
          WHERE change_time < now() - $1::bigint * interval '1 millisecond'
          ORDER BY revision LIMIT $2)
       RETURNING revision
     ), moved AS (
       UPDATE kv_revisions SET compact_revision = greatest(compact_revision, (SELECT max(revision) FROM gone))
        WHERE EXISTS (SELECT 1 FROM gone)
     )
     SELECT count(*)::bigint AS n FROM gone`,
    [retentionMs, limit],
  );
  return result.rows[0]!.n;
}

/** Drops changes older than the retention, in batches; records the compact revision. */
export function compactChanges(q: Queryable, retentionMs: number): Promise<number> {
  return inBatches((limit) => compactChangesBatch(q, retentionMs, limit));
}

/** Fails with REVISION_COMPACTED when `revision` is no longer in the retained change log. */
export async function checkRetained(q: Queryable, revision: number): Promise<void> {
  const { compact } = await revisions(q);
  if (revision <= compact) throw revisionCompacted(compact);
}

export async function revisions(q: Queryable): Promise<{ last: number; compact: number }> {
  const result = await q.query<{ last: number; compact: number }>(
    `SELECT last_revision AS last, compact_revision AS compact FROM kv_revisions`,
  );
  return result.rows[0]!;
}

/** change_type's name, from its code. */
const CHANGE_TYPE = (t: string) =>
  `CASE ${t}change_type ${Object.entries(CHANGE_CODE)
    .map(([name, code]) => `WHEN ${code} THEN '${name}'`)
    .join(" ")} END`;

type ChangeRow = SelectedEntry & { revision: number; type: ChangeType; namespace: string };

const CHANGE_ROW_FIELDS: Fields<ChangeRow> = { ...CHANGE_FIELDS, revision: "revision", type: CHANGE_TYPE, namespace: "namespace" };

/**
 * Watch's read: changes under a prefix in a window of revisions, at most
 * $4 bytes of them; of namespace $5, or of every namespace when $5 is null
 * (the replica's window of changes). The outer row always exists (LEFT JOIN ... ON true), so
 * the head and compact revisions arrive even when the window holds no change.
 */
const CHANGES_SQL = `SELECT r.last_revision AS head, r.compact_revision AS compact, c.*
  FROM kv_revisions r
  LEFT JOIN LATERAL (${pagedSql({
    fields: CHANGE_ROW_FIELDS,
    size: rowSize(SIZES),
    from: `FROM kv_changes
      WHERE revision >= $1 AND revision <= least(r.last_revision, $1 + $2 - 1)
        AND ($5::text IS NULL OR namespace = $5) AND key LIKE $3 ESCAPE '\\'`,
    order: [["revision", "ASC"]],
    limit: "$2",
    budget: "$4",
  })}) c ON true`;

/**
 * Changes of `ns` (null: of every namespace) under `prefix` from `cursor`,
 * scanning at most SCAN_WINDOW revisions and never past the committed head,
 * in one snapshot, and no more than about `maxBytes` of them (at least
 * one); fails with REVISION_COMPACTED when the cursor fell behind the
 * retained log. Other namespaces' revisions are scanned past like keys
 * outside the prefix.
 */
export async function readChanges(
  q: Queryable,
  ns: string | null,
  cursor: number,
  prefix: string,
  maxBytes = TAIL_PAGE_BYTES,
): Promise<TailPage<FeedChange>> {
  const values = [cursor, SCAN_WINDOW, prefixPattern(prefix), maxBytes, ns];
  // The window's read, after every commit, is always of one shape: parsed and planned once.
  const result =
    ns === null
      ? await q.prepared<Paged<ChangeRow> & { head: number; compact: number }>("kv_changes_feed", CHANGES_SQL, values)
      : await q.query<Paged<ChangeRow> & { head: number; compact: number }>(CHANGES_SQL, values);
  const { head, compact } = result.rows[0]!;
  if (cursor <= compact) throw revisionCompacted(compact);
  const page = toPage(result.rows.filter((r) => r.revision !== null).map(({ head: _head, compact: _compact, ...row }) => row));
  const items = page.items.map(({ revision, type, namespace, ...entry }) => ({ revision, type, namespace, entry: decodeEntry(entry) }));
  // Cut by bytes: the window was seen only up to the last change read.
  return windowPage(cursor, head, items, page.more ? items[items.length - 1]!.revision : undefined);
}

/** Deletes the entries of `ns` scoped to these sessions (inside a session delete), logging DELETEs. */
export async function onSessionsDeleted(tx: Queryable, ns: string, sessionIds: string[]): Promise<void> {
  await tx.query(logRemovalsSql(`DELETE FROM kv_entries WHERE namespace = $1 AND session_id = ANY ($2::text[])`, "DELETE"), [
    ns,
    sessionIds,
  ]);
}
