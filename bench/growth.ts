// How per-request cost grows with the data: the same reads at 10k / 100k /
// 1M sessions and key-value entries and 100k / 1M / 10M trace events, and
// the jobs table's size while 1M jobs go through it under retention.
//
// Tables are filled in SQL (INSERT ... SELECT generate_series, values shaped
// like the ones the daemon writes; trace hashes are well-formed but do not
// verify), grown in place (each size keeps the rows of the one before), then
// VACUUM ANALYZEd as a table at rest would be by autovacuum. The namespace
// measured shares its tables with others (two holding a tenth as many
// sessions or entries each, interleaved in time; every tenth event offset),
// so every read really filters on its namespace. The reads go through the daemon over gRPC, one
// call at a time (latency, not throughput), BENCH_SECONDS each.
//
// Jobs: rounds of enqueue -> lease -> complete done in SQL (the same row
// versions the daemon's statements leave), with the daemon's own reaper
// deleting finished jobs (CAIRN_JOB_RETENTION_MS=1000); the table's size
// after each round, once the reaper has drained it, and after a VACUUM.
//
// BENCH_GROWTH_MAX (default 1,000,000) caps the sessions, entries and jobs,
// and events at ten times it; BENCH_GROWTH_ONLY=sessions,kv,jobs,events
// picks parts (run in this order: the events' fill takes longest).
import { CairnClient, type SubscribeEventsResponse } from "@cairn/client";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { startBenchEnvironment } from "./environment.js";
import { formatTable, measure, type Op, type Result } from "./measure.js";

const MAX = Number(process.env.BENCH_GROWTH_MAX ?? 1_000_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const PARTS = new Set((process.env.BENCH_GROWTH_ONLY ?? "sessions,kv,jobs,events").split(","));
const SESSION_SIZES = [10_000, 100_000, 1_000_000].filter((n) => n <= MAX);
const EVENT_SIZES = [100_000, 1_000_000, 10_000_000].filter((n) => n <= MAX * 10);
const JOB_ROUNDS = 10;

const NS = "growth";
const OTHER_NAMESPACES = ["growth-other-a", "growth-other-b"];
/** Each other namespace holds 1/OTHER_SHARE as many rows as NS. */
const OTHER_SHARE = 10;
/** Rows per INSERT statement while filling. */
const FILL_CHUNK = 250_000;
/** Sessions per agent, entries per key prefix: a filter on either matches this many rows at every size. */
const GROUP = 100;
/** Offsets per trace; every tenth belongs to another namespace. */
const TRACE_SPAN = 100;
/** Offsets per session of the trace events (900 of them in NS). */
const SESSION_SPAN = 1000;
const CATCH_UP = 1000;
const SAMPLE = 2000;
/** Rows are dated from here on, in steps, so every size's rows are in the past. */
const EPOCH_MS = Date.now() - 3 * 24 * 3600 * 1000;

type Client = pg.Client;

/** A time-ordered UUIDv7-shaped id, as the server generates, from a millisecond time and a unique seed (SQL). */
function uuid7Sql(ms: string, seed: string): string {
  const t = `lpad(to_hex(${ms}), 12, '0')`;
  const r = `md5(${seed})`;
  return `substr(${t}, 1, 8) || '-' || substr(${t}, 9, 4) || '-7' || substr(${r}, 1, 3) || '-8' || substr(${r}, 4, 3) || '-' || substr(${r}, 7, 12)`;
}

/** Splits (from, to] into FILL_CHUNK-sized ranges. */
function* chunks(from: number, to: number, size = FILL_CHUNK): Generator<[number, number]> {
  for (let lo = from; lo < to; lo += size) yield [lo + 1, Math.min(to, lo + size)];
}

/** Each namespace of a table and the share of NS's rows it holds (1/divisor). */
const NAMESPACE_SHARES: [ns: string, divisor: number][] = [[NS, 1], ...OTHER_NAMESPACES.map((ns): [string, number] => [ns, OTHER_SHARE])];

async function timed<T>(label: string, work: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await work();
  console.error(`${label}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return result;
}

async function tableMegabytes(sql: Client, table: string): Promise<string> {
  const { rows } = await sql.query<{ bytes: string }>(`SELECT pg_total_relation_size($1::regclass)::bigint AS bytes`, [table]);
  return (Number(rows[0]!.bytes) / 2 ** 20).toFixed(0);
}

// ---- sessions ----

/** Sessions $2 .. $3 of namespace $1, the i-th created at $4 + i * $5 ms. */
const SESSIONS_SQL = `
  INSERT INTO sessions (namespace, session_id, agent_id, user_id, status, labels, metadata, state, version,
                        create_time, update_time, end_time)
  SELECT $1, ${uuid7Sql("t.ms", "$1 || i")}, 'agent-' || lpad((i / ${GROUP})::text, 6, '0'), 'user-' || (i % 5000), s.status,
         jsonb_build_object('team', 'team-' || (i % 20), 'env', CASE WHEN i % 3 = 0 THEN 'staging' ELSE 'prod' END),
         jsonb_build_object('source', 'growth-bench', 'client', 'sdk-py/1.4'),
         jsonb_build_object('step', i % 50, 'tokens', i % 4000,
           'memory', jsonb_build_object('goal', 'answer ticket ' || i, 'notes', jsonb_build_array('read the logs', 'asked for the version', 'found the cause'))),
         1 + i % 7, to_timestamp(t.ms / 1000.0), to_timestamp(t.ms / 1000.0) + (i % 600) * interval '1 second',
         CASE WHEN s.status <> 'ACTIVE' THEN to_timestamp(t.ms / 1000.0) + (i % 600) * interval '1 second' END
    FROM generate_series($2::bigint, $3::bigint) AS i
   CROSS JOIN LATERAL (SELECT $4::bigint + i * $5::bigint AS ms) t
   CROSS JOIN LATERAL (SELECT CASE WHEN i % 20 = 0 THEN 'ERROR' WHEN i % 7 = 0 THEN 'ENDED' ELSE 'ACTIVE' END AS status) s`;

async function growSessions(sql: Client, from: number, to: number): Promise<void> {
  for (const [ns, divisor] of NAMESPACE_SHARES) {
    // A namespace with fewer rows spaces them wider: every namespace's span the same days.
    for (const [lo, hi] of chunks(Math.floor(from / divisor), Math.floor(to / divisor))) {
      await sql.query(SESSIONS_SQL, [ns, lo, hi, EPOCH_MS, divisor * 100]);
    }
  }
  await sql.query("VACUUM ANALYZE sessions");
}

async function sample(sql: Client, query: string, values: unknown[]): Promise<string[]> {
  const { rows } = await sql.query<{ v: string }>(query, values);
  return rows.map((r) => r.v);
}

function pickFrom<T>(items: T[]): (w: number, i: number) => T {
  return (_w, i) => items[(i * 7919) % items.length]!;
}

function sessionOps(client: CairnClient, ids: string[], n: number): [string, Op][] {
  const id = pickFrom(ids);
  const agent = (i: number) => `agent-${String((i * 7919) % (n / GROUP)).padStart(6, "0")}`;
  return [
    ["GetSession", (w, i) => client.sessions.getSession({ sessionId: id(w, i) })],
    ["ListSessions page (create_time)", () => client.sessions.listSessions({})],
    ["ListSessions page (create_time desc)", () => client.sessions.listSessions({ orderBy: "create_time desc" })],
    ["ListSessions page, agent_id", (_w, i) => client.sessions.listSessions({ filter: { agentId: agent(i) } })],
    ["ListSessions page, labels team (5 %)", (_w, i) => client.sessions.listSessions({ filter: { labels: { team: `team-${i % 20}` } } })],
    ["CountSessions, agent_id (100 rows)", (_w, i) => client.sessions.countSessions({ filter: { agentId: agent(i) } })],
    ["CountSessions, whole namespace", () => client.sessions.countSessions({})],
  ];
}

// ---- key-value ----

/** Entries $2 .. $3 of namespace $1: keys user/<i / GROUP>/item-<i % GROUP>, mod_revisions from $4 + 1. */
const ENTRIES_SQL = `
  INSERT INTO kv_entries (namespace, key, json_value, version, mod_revision, create_time, update_time)
  SELECT $1, 'user/' || lpad((i / ${GROUP})::text, 6, '0') || '/item-' || lpad((i % ${GROUP})::text, 2, '0'),
         jsonb_build_object('config', jsonb_build_object('model', 'm', 'temperature', 0.2), 'step', i),
         1, $4::bigint + i - $2::bigint + 1, now(), now()
    FROM generate_series($2::bigint, $3::bigint) AS i`;

async function growEntries(sql: Client, from: number, to: number): Promise<void> {
  for (const [ns, divisor] of NAMESPACE_SHARES) {
    for (const [lo, hi] of chunks(Math.floor(from / divisor), Math.floor(to / divisor))) {
      // Revisions are one global order: each chunk takes the next ones from the counter row.
      const { rows: counter } = await sql.query<{ base: string }>(
        `UPDATE kv_revisions SET last_revision = last_revision + $1 RETURNING last_revision - $1 AS base`,
        [hi - lo + 1],
      );
      await sql.query(ENTRIES_SQL, [ns, lo, hi, counter[0]!.base]);
    }
  }
  await sql.query("VACUUM ANALYZE kv_entries");
}

function entryOps(client: CairnClient, keys: string[], n: number): [string, Op][] {
  const key = pickFrom(keys);
  const prefix = (i: number) => `user/${String((i * 7919) % (n / GROUP)).padStart(6, "0")}/`;
  return [
    ["Get", (w, i) => client.keyValue.get({ key: key(w, i) })],
    ["List page, no prefix", () => client.keyValue.list({})],
    ["List page, prefix (100 keys)", (_w, i) => client.keyValue.list({ prefix: prefix(i) })],
    ["Count, prefix (100 keys)", (_w, i) => client.keyValue.count({ prefix: prefix(i) })],
    ["Count, whole namespace", () => client.keyValue.count({})],
  ];
}

// ---- trace events ----

/**
 * Offsets $1 .. $2: every tenth ($3) in the first other namespace, the
 * rest in NS ($4); a trace per TRACE_SPAN offsets and namespace (sequences
 * 1..90 in NS, 1..10 in the other), a session per SESSION_SPAN offsets. The
 * trace heads follow in the same statement.
 */
const EVENTS_SQL = `
  WITH inserted AS (
    INSERT INTO trace_events (namespace, event_offset, trace_id, sequence, event_id, session_id, event_type, severity,
                              event_time, payload, ingest_time, prev_hash, event_hash)
    SELECT CASE WHEN o % 10 = 0 THEN $3 ELSE $4 END, o,
           'trace-' || lpad((o / ${TRACE_SPAN})::text, 7, '0'),
           CASE WHEN o % 10 = 0 THEN (o % ${TRACE_SPAN}) / 10 + 1 ELSE o % ${TRACE_SPAN} - (o % ${TRACE_SPAN}) / 10 END,
           ${uuid7Sql("t.ms", "'e' || o")},
           'session-' || lpad((o / ${SESSION_SPAN})::text, 5, '0'),
           (ARRAY['llm.request', 'llm.response', 'tool.call', 'tool.result', 'agent.step'])[o % 5 + 1],
           CASE WHEN o % 50 = 0 THEN 4 ELSE 2 END,
           to_timestamp(t.ms / 1000.0),
           jsonb_build_object('model', 'gpt-4o', 'tokens', o % 4000, 'latency_ms', o % 900,
                              'input', 'summarize the last tool result of step ' || o % 50),
           to_timestamp(t.ms / 1000.0) + interval '5 milliseconds',
           md5('p' || o) || md5('q' || o), md5('h' || o) || md5('k' || o)
      FROM generate_series($1::bigint, $2::bigint) AS o
     CROSS JOIN LATERAL (SELECT $5::bigint + o * 10 AS ms) t
    RETURNING namespace, trace_id, sequence, event_hash
  )
  INSERT INTO trace_heads (namespace, trace_id, last_sequence, last_hash)
  SELECT namespace, trace_id, max(sequence), (array_agg(event_hash ORDER BY sequence DESC))[1]
    FROM inserted GROUP BY namespace, trace_id
  ON CONFLICT (namespace, trace_id) DO UPDATE
    SET last_sequence = EXCLUDED.last_sequence, last_hash = EXCLUDED.last_hash
    WHERE trace_heads.last_sequence < EXCLUDED.last_sequence`;

async function growEvents(sql: Client, from: number, to: number): Promise<void> {
  for (const [lo, hi] of chunks(from, to)) await sql.query(EVENTS_SQL, [lo, hi, OTHER_NAMESPACES[0], NS, EPOCH_MS]);
  // Offsets come from this sequence; subscribers read up to its last value.
  await sql.query("SELECT setval('trace_event_offsets', $1, true)", [to]);
  await sql.query("VACUUM ANALYZE trace_events");
  await sql.query("VACUUM ANALYZE trace_heads");
}

/** Opens a subscription at `startOffset` and resolves once CATCH_UP events have arrived. */
function catchUp(client: CairnClient, startOffset: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let received = 0;
    let done = false;
    const stream = client.traces.subscribeEvents({ startOffset });
    stream.on("data", (m: SubscribeEventsResponse) => {
      if (m.message?.$case !== "event" || done) return;
      if (++received === CATCH_UP) {
        done = true;
        stream.cancel();
        resolve();
      }
    });
    stream.on("error", (error) => {
      if (!done) reject(error);
    });
    stream.on("end", () => {
      if (!done) reject(new Error(`the subscription at ${startOffset} ended after ${received} events`));
    });
  });
}

function eventOps(client: CairnClient, n: number): [string, Op][] {
  // Offsets well inside the table (its middle half), a different one each call.
  const middle = (i: number) => Math.floor(n / 4 + ((i * 7919) % (n / 2)));
  const session = (i: number) => `session-${String((i * 7919) % (n / SESSION_SPAN)).padStart(5, "0")}`;
  return [
    [`SubscribeEvents, first ${CATCH_UP} from offset 1`, () => catchUp(client, 1)],
    [`SubscribeEvents, first ${CATCH_UP} from the middle`, (_w, i) => catchUp(client, middle(i))],
    ["ListSessionEvents page", (_w, i) => client.traces.listSessionEvents({ sessionId: session(i) })],
  ];
}

// ---- measuring and printing ----

interface Grown {
  size: number;
  results: Map<string, Result>;
}

async function measureOps(ops: [string, Op][]): Promise<Map<string, Result>> {
  const results = new Map<string, Result>();
  for (const [name, op] of ops) {
    await measure(1, Math.min(0.3, SECONDS), op);
    const result = await measure(1, SECONDS, op);
    if (result.errors) console.error(`${name}: ${result.errors} errors`);
    results.set(name, result);
  }
  return results;
}

function label(n: number): string {
  return n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`;
}

/** One row per read: p50 and p99 at each size, then largest over smallest. */
function growthTable(resource: string, grown: Grown[]): string {
  const first = grown[0]!;
  const last = grown[grown.length - 1]!;
  const header = [resource, ...grown.flatMap((g) => [`${label(g.size)} p50`, "p99"]), `p50 ${label(last.size)}/${label(first.size)}`, "p99"];
  const rows = [...first.results.keys()].map((name) => {
    const at = (g: Grown) => g.results.get(name)!;
    const ratio = (key: "p50Ms" | "p99Ms") => `${(at(last)[key] / at(first)[key]).toFixed(1)}×`;
    return [name, ...grown.flatMap((g) => [at(g).p50Ms.toFixed(2), at(g).p99Ms.toFixed(2)]), ratio("p50Ms"), ratio("p99Ms")];
  });
  return formatTable([header, ...rows]);
}

async function growAndMeasure(
  what: string,
  sizes: number[],
  grow: (from: number, to: number) => Promise<void>,
  table: string,
  sql: Client,
  opsAt: (n: number) => Promise<[string, Op][]>,
): Promise<Grown[]> {
  const grown: Grown[] = [];
  let previous = 0;
  for (const size of sizes) {
    await timed(`${what}: filled to ${label(size)} (${table} ${await tableMegabytes(sql, table).catch(() => "?")} MB before)`, () =>
      grow(previous, size),
    );
    console.error(`${what}: ${table} is ${await tableMegabytes(sql, table)} MB with its indexes`);
    previous = size;
    grown.push({ size, results: await measureOps(await opsAt(size)) });
  }
  return grown;
}

// ---- jobs ----

const JOB_INSERT_SQL = `
  INSERT INTO jobs (namespace, job_id, queue, payload, state, priority, run_time, max_attempts,
                    backoff_initial_ms, backoff_max_ms, backoff_multiplier, create_time, update_time)
  SELECT $1, ${uuid7Sql("(extract(epoch FROM clock_timestamp()) * 1000)::bigint", "'j' || i")}, 'emails',
         jsonb_build_object('to', 'user-' || i || '@example.com', 'template', 'welcome', 'locale', 'en'),
         'AVAILABLE', 0, now(), 25, 1000, 3600000, 2, now(), now()
    FROM generate_series($2::bigint, $3::bigint) AS i`;
const JOB_LEASE_SQL = `
  UPDATE jobs SET state = 'RUNNING', attempt = attempt + 1, worker_id = 'worker-1', lease_token = gen_random_uuid(),
         lease_expire_time = now() + interval '5 minutes', update_time = now()
   WHERE namespace = $1 AND queue = 'emails' AND state = 'AVAILABLE'`;
const JOB_COMPLETE_SQL = `
  UPDATE jobs SET state = 'SUCCEEDED', result = '{"sent": true}', finish_time = now(), update_time = now(),
         lease_token = NULL, lease_expire_time = NULL
   WHERE namespace = $1 AND queue = 'emails' AND state = 'RUNNING'`;
/** Jobs per enqueue -> lease -> complete step, each its own transaction. */
const JOB_STEP = 10_000;

interface JobsSize {
  rows: number;
  heapMb: number;
  indexMb: number;
  autovacuums: number;
}

async function jobsSize(sql: Client): Promise<JobsSize> {
  const { rows } = await sql.query<{ rows: string; heap: string; indexes: string; autovacuums: string }>(
    `SELECT (SELECT count(*) FROM jobs) AS rows, pg_table_size('jobs') AS heap, pg_indexes_size('jobs') AS indexes,
            (SELECT autovacuum_count FROM pg_stat_user_tables WHERE relname = 'jobs') AS autovacuums`,
  );
  const r = rows[0]!;
  return { rows: Number(r.rows), heapMb: Number(r.heap) / 2 ** 20, indexMb: Number(r.indexes) / 2 ** 20, autovacuums: Number(r.autovacuums) };
}

/** Waits for the daemon's reaper to delete every finished job (all of them are, past the retention); the size then. */
async function drained(sql: Client, timeoutMs: number): Promise<JobsSize> {
  const endAt = Date.now() + timeoutMs;
  while (Date.now() < endAt) {
    const size = await jobsSize(sql);
    if (size.rows === 0) return size;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the reaper did not delete the finished jobs within ${timeoutMs / 1000} s`);
}

/** Jobs `from`+1 .. `from`+`count` enqueued, leased and completed; the table's size then. */
async function processJobs(sql: Client, from: number, count: number): Promise<JobsSize> {
  for (const [lo, hi] of chunks(from, from + count, JOB_STEP)) {
    await sql.query(JOB_INSERT_SQL, [NS, lo, hi]);
    await sql.query(JOB_LEASE_SQL, [NS]);
    await sql.query(JOB_COMPLETE_SQL, [NS]);
  }
  return jobsSize(sql);
}

/**
 * Rounds of processJobs, each drained by the reaper and then VACUUMed. The
 * VACUUM stands in for autovacuum, which marks the deleted rows' space
 * reusable once a minute at most (autovacuum_naptime): a round here takes
 * seconds, a million jobs in production take many minutes, so autovacuum
 * would have run between rounds as often as this does.
 */
async function benchJobRetention(sql: Client, total: number): Promise<string> {
  const perRound = Math.ceil(total / JOB_ROUNDS);
  const mb = (s: JobsSize) => (s.heapMb + s.indexMb).toFixed(1);
  const rows = [["jobs processed", "rows", "total MB", "reaped: rows", "total MB", "vacuumed: heap MB", "index MB", "total MB", "autovacuums"]];
  const totals: number[] = [];
  for (let round = 0; round < JOB_ROUNDS; round++) {
    const t0 = performance.now();
    const processed = await processJobs(sql, round * perRound, perRound);
    const reaped = await drained(sql, 120_000 + perRound);
    await sql.query("VACUUM jobs");
    const vacuumed = await jobsSize(sql);
    totals.push(vacuumed.heapMb + vacuumed.indexMb);
    rows.push([
      String((round + 1) * perRound),
      String(processed.rows),
      mb(processed),
      String(reaped.rows),
      mb(reaped),
      vacuumed.heapMb.toFixed(1),
      vacuumed.indexMb.toFixed(1),
      mb(vacuumed),
      String(vacuumed.autovacuums),
    ]);
    console.error(`jobs round ${round + 1}: ${((performance.now() - t0) / 1000).toFixed(1)} s; ${rows[rows.length - 1]!.join(" ")}`);
  }
  // Index pages a VACUUM frees are reused only after a later one, so the
  // table takes a few rounds to settle: flat means the second half adds nothing.
  const half = Math.floor(JOB_ROUNDS / 2);
  const growth = totals[JOB_ROUNDS - 1]! / totals[half - 1]!;
  return `${formatTable(rows)}\nvacuumed size after the last round / after round ${half}: ${growth.toFixed(2)}×`;
}

// ---- the run ----

const NOTES = `Grows by design:
- Count of a whole namespace is count(*) over its rows (no counter is kept,
  as none can be exact under concurrent writes without serializing them):
  O(rows). Count with a narrow filter (an agent, a key prefix) reads only
  the matching rows through an index and stays flat.
- The jobs table's size follows the jobs processed between two vacuums
  (the space of deleted rows is reused once a VACUUM has passed), not the
  total ever processed.`;

export async function benchGrowth(): Promise<void> {
  const env = await startBenchEnvironment(20, { CAIRN_JOB_RETENTION_MS: "1000", CAIRN_REAPER_INTERVAL_MS: "1000" });
  const client = new CairnClient(env.cairnAddress, { namespace: NS });
  const sql = new pg.Client({ connectionString: env.databaseUrl });
  await sql.connect();
  // Fill rows are reproducible: a crash loses nothing worth an fsync per statement.
  await sql.query("SET synchronous_commit = off");
  // Each table is printed as its part ends, so a long run shows its results as it goes.
  const print = (text: string) => console.log(`${text}\n`);
  print(`\nBENCH_GROWTH_MAX=${MAX}, BENCH_SECONDS=${SECONDS}, one call at a time; sizes are rows of namespace "${NS}"
(plus ${OTHER_NAMESPACES.length} other namespaces of a tenth each; events: every tenth offset is another namespace's)`);
  try {
    if (PARTS.has("sessions") && SESSION_SIZES.length > 0) {
      const grown = await growAndMeasure("sessions", SESSION_SIZES, (a, b) => growSessions(sql, a, b), "sessions", sql, async (n) =>
        sessionOps(client, await sample(sql, `SELECT session_id AS v FROM sessions WHERE namespace = $1 ORDER BY random() LIMIT ${SAMPLE}`, [NS]), n),
      );
      print(growthTable("sessions (ms)", grown));
    }
    if (PARTS.has("kv") && SESSION_SIZES.length > 0) {
      const grown = await growAndMeasure("kv", SESSION_SIZES, (a, b) => growEntries(sql, a, b), "kv_entries", sql, async (n) =>
        entryOps(client, await sample(sql, `SELECT key AS v FROM kv_entries WHERE namespace = $1 ORDER BY random() LIMIT ${SAMPLE}`, [NS]), n),
      );
      print(growthTable("key-value entries (ms)", grown));
    }
    if (PARTS.has("jobs")) {
      print(`jobs table, ${MAX.toLocaleString("en")} jobs enqueued, leased and completed in ${JOB_ROUNDS} rounds, retention 1 s:
${await benchJobRetention(sql, MAX)}`);
    }
    if (PARTS.has("events") && EVENT_SIZES.length > 0) {
      const grown = await growAndMeasure("events", EVENT_SIZES, (a, b) => growEvents(sql, a, b), "trace_events", sql, async (n) => eventOps(client, n));
      print(growthTable("trace events (ms)", grown));
    }
    print(NOTES);
  } finally {
    await sql.end();
    client.close();
    await env.close();
  }
}
