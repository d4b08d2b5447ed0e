// SQL for key-value entries and their change log. Every change (put,
// delete, expiry) takes the next revision from the one counter row, whose
// lock is held until commit, and writes a kv_changes row in the same
// statement, so revisions become visible in commit order and Watch can read
// the log by revision. An expired entry is invisible at once; the reaper
// removes it later and logs the EXPIRE.
import type { CallScope, Database, Queryable } from "../db/database.js";
import { Coalescer } from "../db/coalescer.js";
import { CHANNELS } from "../db/notify-hub.js";
import type { TailPage } from "../db/tail.js";
import { CairnError, failedPrecondition, versionConflict } from "../errors.js";

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

export interface PutItem {
  key: string;
  value: KvValue;
  sessionId: string;
  /** Null: never expires. */
  ttlMicros: number | null;
  /** Undefined: unconditional; 0: must not exist; n: must be at version n. */
  expectedVersion: number | undefined;
}

export interface ChangeRecord {
  revision: number;
  type: ChangeType;
  entry: EntryRecord;
}

const CHANGE_TYPES: ChangeType[] = ["PUT", "DELETE", "EXPIRE"];
const PURGE_BATCH = 1000;
const SCAN_WINDOW = 2000;

const ENTRY_COLUMNS = `key, bytes_value, json_value, version, mod_revision, session_id, create_time, update_time, expire_time`;
/** Visible entries: not expired as of this statement. */
const LIVE = `(expire_time IS NULL OR expire_time > now())`;

interface EntryRow {
  key: string;
  bytes_value: Buffer | null;
  json_value: unknown;
  version: number;
  mod_revision: number;
  session_id: string;
  create_time: string;
  update_time: string;
  expire_time: string | null;
}

function toEntry(row: EntryRow, withValue = true): EntryRecord {
  return {
    key: row.key,
    value: !withValue ? undefined : row.bytes_value !== null ? { kind: "bytes", bytes: row.bytes_value } : { kind: "json", json: row.json_value },
    version: row.version,
    modRevision: row.mod_revision,
    sessionId: row.session_id,
    createTime: row.create_time,
    updateTime: row.update_time,
    expireTime: row.expire_time,
  };
}

/** A LIKE pattern matching every key that starts with `prefix`. */
export function prefixPattern(prefix: string): string {
  return prefix.replace(/[\\%_]/g, (c) => `\\${c}`) + "%";
}

/**
 * Logs `deleted` (rows just removed, as RETURNING gave them) as changes of
 * one type, numbering them from one revision allocation; queues one NOTIFY.
 * Shared by Delete, BatchDelete, session deletes and expiry.
 */
function logRemovalsSql(deleteSql: string, changeType: 2 | 3): string {
  return `WITH removed AS (${deleteSql} RETURNING ${ENTRY_COLUMNS}),
     counted AS (SELECT count(*) AS n FROM removed),
     rev AS (
       UPDATE kv_revisions SET last_revision = last_revision + (SELECT n FROM counted)
        WHERE (SELECT n FROM counted) > 0
        RETURNING last_revision - (SELECT n FROM counted) AS base
     ),
     numbered AS (SELECT removed.*, row_number() OVER (ORDER BY key) AS rn FROM removed),
     logged AS (
       INSERT INTO kv_changes (revision, change_type, key, bytes_value, json_value, version, session_id,
                               create_time, update_time, expire_time)
       SELECT rev.base + rn, ${changeType}, key, bytes_value, json_value, version, session_id,
              create_time, update_time, expire_time
         FROM numbered, rev
       RETURNING revision
     )
     SELECT (SELECT n FROM counted)::bigint AS n,
            (SELECT pg_notify('${CHANNELS.keyValueChanges}', max(revision)::text) FROM logged) AS notified`;
}

export class KeyValueStore {
  private readonly reads = new Coalescer<string, EntryRecord | undefined>(
    async (keys, signal) => {
      const byKey = await this.readEntries({ signal }, keys);
      return keys.map((k) => byKey.get(k));
    },
    { keyOf: (k) => k, shareEqualKeys: true },
  );

  private readonly writes = new Coalescer<WriteRequest, EntryRecord | CairnError>(
    (requests, signal) => this.db.transaction({ signal }, (tx) => applyWrites(tx, requests)),
    { keyOf: (r) => r.key, shareEqualKeys: false },
  );

  constructor(private readonly db: Database) {}

  async get(scope: CallScope, key: string): Promise<EntryRecord | undefined> {
    return this.reads.submit(key, scope.signal);
  }

  /** Live entries for these keys, in one statement. */
  async readEntries(scope: CallScope, keys: string[]): Promise<Map<string, EntryRecord>> {
    const result = await this.db.runPrepared<EntryRow>(
      scope,
      "kv_read",
      `SELECT ${ENTRY_COLUMNS} FROM kv_entries WHERE key = ANY ($1::text[]) AND ${LIVE}`,
      [keys],
    );
    return new Map(result.rows.map((r) => [r.key, toEntry(r)]));
  }

  /**
   * Puts one entry. Concurrent single writes (Put, Increment) are coalesced:
   * those arriving together share one transaction and one commit, each
   * keeping its own condition and outcome.
   */
  async putOne(scope: CallScope, item: PutItem): Promise<EntryRecord> {
    return unwrap(await this.writes.submit({ kind: "put", key: item.key, item }, scope.signal));
  }

  /** Puts every item or none (BatchPut); a failed condition fails the batch naming its key. */
  putAll(scope: CallScope, items: PutItem[]): Promise<EntryRecord[]> {
    return this.writeAll(
      scope,
      items.map((item) => ({ kind: "put", key: item.key, item })),
    );
  }

  /** Applies writes to distinct keys in one transaction of their own: all or none. */
  writeAll(scope: CallScope, requests: WriteRequest[]): Promise<EntryRecord[]> {
    return this.db.transaction(scope, async (tx) => (await applyWrites(tx, requests)).map(unwrap));
  }

  /** Deletes a live key (if at expectedVersion); false when there was none. */
  delete(scope: CallScope, key: string, expectedVersion: number | undefined): Promise<boolean> {
    return this.db.transaction(scope, async (tx) => {
      const result = await tx.query<{ n: number }>(
        logRemovalsSql(`DELETE FROM kv_entries WHERE key = $1 AND ${LIVE} AND ($2::bigint IS NULL OR version = $2)`, 2),
        [key, expectedVersion ?? null],
      );
      if (result.rows[0]!.n > 0) return true;
      if (expectedVersion !== undefined) {
        const current = await currentVersion(tx, key);
        if (current !== undefined) throw versionConflict("entry", key, current);
      }
      return false;
    });
  }

  async batchDelete(scope: CallScope, keys: string[]): Promise<number> {
    const result = await this.db.run<{ n: number }>(
      scope,
      logRemovalsSql(`DELETE FROM kv_entries WHERE key = ANY ($1::text[]) AND ${LIVE}`, 2),
      [keys],
    );
    return result.rows[0]!.n;
  }

  /** Adds delta to a number (creating it at 0); the entry after the change. */
  async increment(scope: CallScope, key: string, delta: number, ttlMicros: number | null): Promise<EntryRecord> {
    return unwrap(await this.writes.submit({ kind: "increment", key, delta, ttlMicros }, scope.signal));
  }

  /** Keys in order from `afterKey`, live only; values omitted when keysOnly. */
  async list(scope: CallScope, prefix: string, afterKey: string | null, limit: number, keysOnly: boolean): Promise<EntryRecord[]> {
    const result = await this.db.run<EntryRow>(
      scope,
      `SELECT key, ${keysOnly ? "NULL::bytea AS bytes_value, NULL::jsonb AS json_value" : "bytes_value, json_value"},
              version, mod_revision, session_id, create_time, update_time, expire_time
         FROM kv_entries
        WHERE key LIKE $1 ESCAPE '\\' AND ($2::text IS NULL OR key > $2) AND ${LIVE}
        ORDER BY key LIMIT $3`,
      [prefixPattern(prefix), afterKey, limit],
    );
    return result.rows.map((r) => toEntry(r, !keysOnly));
  }

  /** Removes expired entries in batches, logging an EXPIRE for each; returns how many. */
  async purgeExpired(scope: CallScope): Promise<number> {
    let total = 0;
    for (;;) {
      const result = await this.db.run<{ n: number }>(
        scope,
        logRemovalsSql(
          `DELETE FROM kv_entries WHERE key IN (
             SELECT key FROM kv_entries WHERE expire_time <= now() ORDER BY key LIMIT ${PURGE_BATCH} FOR UPDATE SKIP LOCKED)
             AND expire_time <= now()`,
          3,
        ),
        [],
      );
      total += result.rows[0]!.n;
      if (result.rows[0]!.n < PURGE_BATCH) return total;
    }
  }

  /** Drops changes older than the retention, in batches; records the compact revision. */
  async compactChanges(scope: CallScope, retentionMs: number): Promise<number> {
    let total = 0;
    for (;;) {
      const result = await this.db.run<{ n: number }>(
        scope,
        `WITH gone AS (
           DELETE FROM kv_changes WHERE revision IN (
             SELECT revision FROM kv_changes
              WHERE change_time < now() - $1::bigint * interval '1 millisecond'
              ORDER BY revision LIMIT ${PURGE_BATCH})
           RETURNING revision
         ), moved AS (
           UPDATE kv_revisions SET compact_revision = greatest(compact_revision, (SELECT max(revision) FROM gone))
            WHERE EXISTS (SELECT 1 FROM gone)
         )
         SELECT count(*)::bigint AS n FROM gone`,
        [retentionMs],
      );
      total += result.rows[0]!.n;
      if (result.rows[0]!.n < PURGE_BATCH) return total;
    }
  }

  async revisions(scope: CallScope): Promise<{ last: number; compact: number }> {
    const result = await this.db.run<{ last_revision: number; compact_revision: number }>(
      scope,
      `SELECT last_revision, compact_revision FROM kv_revisions`,
    );
    return { last: result.rows[0]!.last_revision, compact: result.rows[0]!.compact_revision };
  }

  /**
   * Changes under `prefix` from `cursor`, scanning at most SCAN_WINDOW
   * revisions and never past the committed head, in one snapshot; fails
   * with REVISION_COMPACTED when the cursor fell behind the retained log.
   */
  async readChanges(scope: CallScope, cursor: number, prefix: string): Promise<TailPage<ChangeRecord>> {
    const result = await this.db.run<EntryRow & { head: number; compact: number; revision: number | null; change_type: number }>(
      scope,
      `SELECT r.last_revision AS head, r.compact_revision AS compact, c.*
         FROM kv_revisions r
         LEFT JOIN LATERAL (
           SELECT revision, change_type, key, bytes_value, json_value, version, revision AS mod_revision,
                  session_id, create_time, update_time, expire_time
             FROM kv_changes
            WHERE revision >= $1 AND revision <= least(r.last_revision, $1 + $2 - 1) AND key LIKE $3 ESCAPE '\\'
            ORDER BY revision
         ) c ON true`,
      [cursor, SCAN_WINDOW, prefixPattern(prefix)],
    );
    const { head, compact } = result.rows[0]!;
    if (cursor <= compact) throw revisionCompacted(compact);
    const items = result.rows
      .filter((r) => r.revision !== null)
      .map((r) => ({ revision: r.revision!, type: CHANGE_TYPES[r.change_type - 1]!, entry: toEntry(r) }));
    return { items, head, scannedThrough: Math.max(cursor - 1, Math.min(head, cursor + SCAN_WINDOW - 1)) };
  }
}

export function revisionCompacted(compactRevision: number): CairnError {
  return new CairnError(
    "out_of_range",
    "REVISION_COMPACTED",
    `revisions up to ${compactRevision} were compacted; watch from ${compactRevision + 1} or later`,
    { compact_revision: String(compactRevision) },
  );
}

/**
 * Serializes writers of these keys, even of keys that do not exist yet (a
 * row lock cannot cover an absent row): transaction-scoped advisory locks on
 * the keys' hashes, taken in one order so that batches cannot deadlock.
 */
async function lockKeys(tx: Queryable, keys: string[]): Promise<void> {
  await tx.query(
    `SELECT pg_advisory_xact_lock(h) FROM (
       SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS hashes`,
    [keys],
  );
}

async function currentVersion(tx: Queryable, key: string): Promise<number | undefined> {
  const result = await tx.query<{ version: number }>(`SELECT version FROM kv_entries WHERE key = $1 AND ${LIVE}`, [key]);
  return result.rows[0]?.version;
}

export type WriteRequest =
  | { kind: "put"; key: string; item: PutItem }
  | { kind: "increment"; key: string; delta: number; ttlMicros: number | null };

/** One row to upsert, fully decided: the statement only applies it. */
interface PlannedWrite {
  ord: number;
  key: string;
  bytes_value: string | null;
  json_text: string | null;
  session_id: string;
  ttl_micros: number | null;
  expire_time: string | null;
}

function unwrap(result: EntryRecord | CairnError): EntryRecord {
  if (result instanceof CairnError) throw result;
  return result;
}

/**
 * Applies writes to distinct keys in the caller's transaction: locks the
 * keys, reads their rows, decides each write (condition, counter arithmetic)
 * and upserts all that pass in one statement. Returns one outcome per
 * request; a request that fails yields its error and writes nothing.
 */
async function applyWrites(tx: Queryable, requests: WriteRequest[]): Promise<(EntryRecord | CairnError)[]> {
  const keys = requests.map((r) => r.key);
  await lockKeys(tx, keys);
  const locked = await tx.query<{ key: string; version: number; live: boolean; json_value: unknown; bytes_value: Buffer | null; session_id: string; expire_time: string | null }>(
    `SELECT key, version, ${LIVE} AS live, json_value, bytes_value, session_id, expire_time
       FROM kv_entries WHERE key = ANY ($1::text[]) FOR UPDATE`,
    [keys],
  );
  const rows = new Map(locked.rows.filter((r) => r.live).map((r) => [r.key, r]));
  const outcomes: (EntryRecord | CairnError | PlannedWrite)[] = requests.map((request) => {
    const current = rows.get(request.key);
    if (request.kind === "put") {
      const { item } = request;
      if (item.expectedVersion !== undefined && (current?.version ?? 0) !== item.expectedVersion) {
        return versionConflict("entry", item.key, current?.version ?? 0);
      }
      return {
        ord: 0,
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
    if (!Number.isSafeInteger(next)) {
      return new CairnError("out_of_range", "OUT_OF_RANGE", "the counter would leave the safe integer range", { key: request.key });
    }
    return {
      ord: 0,
      key: request.key,
      bytes_value: null,
      json_text: JSON.stringify(next),
      // A counter keeps its scope, and its expiry unless a ttl is given.
      session_id: current?.session_id ?? "",
      ttl_micros: request.ttlMicros,
      expire_time: request.ttlMicros === null ? (current?.expire_time ?? null) : null,
    };
  });
  const planned = outcomes.filter((o): o is PlannedWrite => !(o instanceof CairnError) && "json_text" in o);
  planned.forEach((p, i) => (p.ord = i + 1));
  const written = planned.length > 0 ? await upsertEntries(tx, planned) : [];
  return outcomes.map((o) => (o instanceof CairnError ? o : written[(o as PlannedWrite).ord - 1]!));
}

/**
 * Upserts decided rows with consecutive revisions from one allocation and
 * logs a PUT for each, in one statement; queues one NOTIFY. An expired row
 * is replaced as if absent (version 1, new create_time).
 */
async function upsertEntries(tx: Queryable, planned: PlannedWrite[]): Promise<EntryRecord[]> {
  const result = await tx.query<EntryRow & { ord: number }>(
    `WITH v AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS v (ord int, key text, bytes_value text, json_text text,
                                                         session_id text, ttl_micros bigint, expire_time timestamptz)
     ), rev AS (
       UPDATE kv_revisions SET last_revision = last_revision + $2 RETURNING last_revision - $2 AS base
     ), written AS (
       INSERT INTO kv_entries AS e (key, bytes_value, json_value, version, mod_revision, session_id, expire_time)
       SELECT v.key, decode(v.bytes_value, 'base64'), v.json_text::jsonb, 1, rev.base + v.ord, v.session_id,
              CASE WHEN v.ttl_micros IS NOT NULL THEN clock_timestamp() + v.ttl_micros * interval '1 microsecond'
                   ELSE v.expire_time END
         FROM v, rev
       ON CONFLICT (key) DO UPDATE SET
         bytes_value = EXCLUDED.bytes_value,
         json_value = EXCLUDED.json_value,
         mod_revision = EXCLUDED.mod_revision,
         version = CASE WHEN e.expire_time IS NULL OR e.expire_time > now() THEN e.version + 1 ELSE 1 END,
         create_time = CASE WHEN e.expire_time IS NULL OR e.expire_time > now() THEN e.create_time ELSE now() END,
         update_time = now(),
         session_id = EXCLUDED.session_id,
         expire_time = EXCLUDED.expire_time
       RETURNING ${ENTRY_COLUMNS}
     ), logged AS (
       INSERT INTO kv_changes (revision, change_type, key, bytes_value, json_value, version, session_id,
                               create_time, update_time, expire_time)
       SELECT mod_revision, 1, key, bytes_value, json_value, version, session_id, create_time, update_time, expire_time
         FROM written
     )
     SELECT written.*, written.mod_revision - rev.base AS ord,
            (SELECT pg_notify('${CHANNELS.keyValueChanges}', max(mod_revision)::text) FROM written) AS notified
       FROM written, rev`,
    [JSON.stringify(planned), planned.length],
  );
  const byOrd: EntryRecord[] = [];
  for (const row of result.rows) byOrd[row.ord - 1] = toEntry(row);
  return byOrd;
}

/** Deletes the entries scoped to these sessions (inside a session delete), logging DELETEs. */
export async function deleteSessionEntries(tx: Queryable, sessionIds: string[]): Promise<void> {
  await tx.query(logRemovalsSql(`DELETE FROM kv_entries WHERE session_id = ANY ($1::text[])`, 2), [sessionIds]);
}
