// Queue flow control's config: QueueConfig per (namespace, queue), read and
// updated here, with the stats it adds to GetQueueStats. Leasing under it
// is flow-lease.ts, which also argues why the limits hold.
//
// A config row is `controlled` when it sets any limit or `fair`; only then
// do leases of the queue leave store.ts's one-statement fast path. Turning
// flow control on takes ACCESS EXCLUSIVE on queue_configs for a moment, so
// that no fast-path lease that missed the new config commits after it (see
// flow-lease.ts); every change takes the queue's lease lock exclusive, so it
// waits for the controlled leases in flight.
import type { Queryable } from "../db/database.js";
import { CHANNELS } from "../db/notify-hub.js";
import { CairnError, unavailable, versionConflict } from "../errors.js";
import { wakeKey } from "./store.js";

export type RateScope = "QUEUE" | "GROUP";

export interface RateLimitRecord {
  count: number;
  periodMs: number;
  scope: RateScope;
}

/** The settings an update may change. */
export interface QueueConfigSettings {
  maxRunning: number;
  maxRunningPerGroup: number;
  /** Null: no rate limit. */
  rateLimit: RateLimitRecord | null;
  fair: boolean;
}

export interface QueueConfigRecord extends QueueConfigSettings {
  queue: string;
  /** 0 for a queue never configured. */
  version: number;
  updateTime: string | null;
}

const WAITING = `state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING')`;
const UNCONFIGURED: QueueConfigSettings = { maxRunning: 0, maxRunningPerGroup: 0, rateLimit: null, fair: false };
/** How long an update that turns flow control on waits for leases in flight (it holds up every lease meanwhile). */
const TURN_ON_LOCK_TIMEOUT = "5s";

/** A config row as its record; `t` qualifies the columns ("c."). */
export const configColumns = (t = "") => `${t}queue, ${t}max_running AS "maxRunning", ${t}max_running_per_group AS "maxRunningPerGroup",
  CASE WHEN ${t}rate_count > 0
       THEN json_build_object('count', ${t}rate_count, 'periodMs', ${t}rate_period_ms, 'scope', ${t}rate_scope) END AS "rateLimit",
  ${t}fair, ${t}version, ${t}update_time AS "updateTime"`;
const CONFIG_COLUMNS = configColumns();

const isControlled = (s: QueueConfigSettings) => s.maxRunning > 0 || s.maxRunningPerGroup > 0 || s.rateLimit !== null || s.fair;

/** The queue's config; the defaults (version 0) when it was never configured. */
export async function getQueueConfig(q: Queryable, ns: string, queue: string): Promise<QueueConfigRecord> {
  const result = await q.query<QueueConfigRecord>(`SELECT ${CONFIG_COLUMNS} FROM queue_configs WHERE namespace = $1 AND queue = $2`, [ns, queue]);
  return result.rows[0] ?? { queue, ...UNCONFIGURED, version: 0, updateTime: null };
}

/**
 * Writes the fields of `patch` (the others keep their values; a queue never
 * configured starts from the defaults). Turning flow control on takes the
 * table lock the header explains; if the row turned out differently than
 * read first, the update runs again with the lock.
 */
export async function updateQueueConfig(
  q: Queryable,
  ns: string,
  queue: string,
  patch: Partial<QueueConfigSettings>,
  expectedVersion: number | undefined,
): Promise<QueueConfigRecord> {
  const first = await getQueueConfig(q, ns, queue);
  let withTableLock = !isControlled(first) && isControlled({ ...first, ...patch });
  for (;;) {
    const written = await writeConfig(q, ns, queue, patch, expectedVersion, withTableLock);
    if (written) return written;
    withTableLock = true;
  }
}

/** The update; undefined when it turns flow control on without the table lock (then nothing is written). */
async function writeConfig(
  q: Queryable,
  ns: string,
  queue: string,
  patch: Partial<QueueConfigSettings>,
  expectedVersion: number | undefined,
  withTableLock: boolean,
): Promise<QueueConfigRecord | undefined> {
  return q.atomic(async (tx) => {
    if (withTableLock) await lockAllQueueConfigs(tx);
    const current = await tx.query<QueueConfigRecord>(`SELECT ${CONFIG_COLUMNS} FROM queue_configs WHERE namespace = $1 AND queue = $2 FOR UPDATE`, [
      ns,
      queue,
    ]);
    const was = current.rows[0] ?? { queue, ...UNCONFIGURED, version: 0, updateTime: null };
    if (expectedVersion !== undefined && expectedVersion !== was.version) throw versionConflict("queue config", queue, was.version);
    const next = { ...was, ...patch };
    if (!withTableLock && !isControlled(was) && isControlled(next)) return undefined;
    // After the row lock (updaters take turns there first): leases hold this
    // lock and no row, so waiting here for them cannot close a cycle.
    await tx.query(`SELECT cairn_flow_lock_queue($1, $2, true)`, [ns, queue]);
    const rate = next.rateLimit;
    if (next.fair) {
      await tx.query(`INSERT INTO queue_fair_cursors (namespace, queue) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [ns, queue]);
    }
    const saved = await tx.query<QueueConfigRecord>(
      `INSERT INTO queue_configs AS c (namespace, queue, max_running, max_running_per_group, rate_count, rate_period_ms, rate_scope, fair)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (namespace, queue) DO UPDATE SET
         max_running = EXCLUDED.max_running, max_running_per_group = EXCLUDED.max_running_per_group,
         rate_count = EXCLUDED.rate_count, rate_period_ms = EXCLUDED.rate_period_ms, rate_scope = EXCLUDED.rate_scope,
         fair = EXCLUDED.fair, version = c.version + 1, update_time = now()
       RETURNING ${CONFIG_COLUMNS}`,
      [ns, queue, next.maxRunning, next.maxRunningPerGroup, rate?.count ?? 0, rate?.periodMs ?? 0, rate?.scope ?? "QUEUE", next.fair],
    );
    // Leasers held back by the old settings may have room now.
    await tx.query(`SELECT pg_notify('${CHANNELS.jobs}', $1)`, [wakeKey(ns, queue)]);
    return saved.rows[0]!;
  });
}

/**
 * ACCESS EXCLUSIVE on queue_configs: waits for every lease in flight (they
 * hold ACCESS SHARE), and holds new ones until commit. Bounded, since every
 * lease of every queue waits behind it.
 */
async function lockAllQueueConfigs(tx: Queryable): Promise<void> {
  await tx.query(`SET LOCAL lock_timeout = '${TURN_ON_LOCK_TIMEOUT}'`);
  try {
    await tx.query(`LOCK TABLE queue_configs IN ACCESS EXCLUSIVE MODE`);
  } catch (error) {
    // 55P03 lock_not_available: leases kept the table busy past the timeout.
    if (error instanceof CairnError && (error.cause as { code?: string } | undefined)?.code === "55P03") {
      throw unavailable("leases in flight kept the queue configs busy; retry");
    }
    throw error;
  }
}

/** Whether the queue's leases take the controlled path (a hint's check: the lease itself decides under the lock). */
export async function isQueueControlled(q: Queryable, ns: string, queue: string): Promise<boolean> {
  const result = await q.query(`SELECT 1 FROM queue_configs WHERE namespace = $1 AND queue = $2 AND controlled`, [ns, queue]);
  return (result.rowCount ?? 0) > 0;
}

export interface FlowStats {
  /** RUNNING jobs per group_key, the 100 largest. */
  runningByGroup: Record<string, number>;
  /** Runnable jobs the limits hold back right now. */
  heldBack: number;
}

/**
 * Per-group RUNNING counts, and how many runnable jobs no lease could take
 * now: all runnable jobs less what the rooms (the queue's, each group's)
 * would let a lease take.
 */
export async function flowStats(q: Queryable, ns: string, queue: string): Promise<FlowStats> {
  const result = await q.query<FlowStats>(
    `WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS t),
     cfg AS (SELECT * FROM queue_configs WHERE namespace = $1 AND queue = $2 AND controlled),
     per_group AS (
       SELECT group_key, sum(runnable)::int AS runnable, sum(running)::int AS running FROM (
         SELECT group_key, 1 AS runnable, 0 AS running FROM jobs WHERE namespace = $1 AND queue = $2 AND ${WAITING} AND run_time <= now()
         UNION ALL
         SELECT group_key, 0, 1 FROM jobs WHERE namespace = $1 AND queue = $2 AND state = 'RUNNING') x
       GROUP BY group_key
     ),
     spends AS (
       SELECT s.scope, s.group_key, sum(s.spent)::int AS spent FROM queue_rate_spends s, clock, cfg
        WHERE s.namespace = $1 AND s.queue = $2 AND s.spend_time > clock.t - cfg.rate_period_ms * interval '1 millisecond'
        GROUP BY s.scope, s.group_key
     ),
     takeable AS (
       SELECT least(g.runnable,
                CASE WHEN cfg.max_running_per_group > 0 THEN greatest(0, cfg.max_running_per_group - g.running) END,
                CASE WHEN cfg.rate_count > 0 AND cfg.rate_scope = 'GROUP' THEN greatest(0, cfg.rate_count - coalesce(s.spent, 0)) END) AS n
         FROM per_group g CROSS JOIN cfg LEFT JOIN spends s ON s.scope = 'GROUP' AND s.group_key = g.group_key
     ),
     queue_room AS (
       SELECT least(
                CASE WHEN cfg.max_running > 0 THEN greatest(0, cfg.max_running - (SELECT coalesce(sum(running), 0) FROM per_group)) END,
                CASE WHEN cfg.rate_count > 0 AND cfg.rate_scope = 'QUEUE'
                     THEN greatest(0, cfg.rate_count - coalesce((SELECT spent FROM spends WHERE scope = 'QUEUE'), 0)) END) AS n
         FROM cfg
     )
     SELECT coalesce((SELECT jsonb_object_agg(group_key, running) FROM (
              SELECT group_key, running FROM per_group WHERE running > 0 ORDER BY running DESC, group_key LIMIT 100) top), '{}') AS "runningByGroup",
            coalesce((SELECT (SELECT sum(runnable) FROM per_group) - least((SELECT sum(n) FROM takeable), (SELECT n FROM queue_room))
                        FROM cfg), 0)::int AS "heldBack"`,
    [ns, queue],
  );
  return result.rows[0]!;
}
