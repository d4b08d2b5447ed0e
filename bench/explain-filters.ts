// Which list and count filters an index serves, and which still scan: every
// filter clients can send, run through the stores' own functions (their SQL,
// their parameters, the daemon's unnamed statements, so custom plans) over
// 300k rows per table, with EXPLAIN (ANALYZE, BUFFERS) printed per filter,
// and PostgreSQL's generic plan beside it (what a statement prepared by name
// would fall back to after five executions).
//
//   npx tsx bench/explain-filters.ts            # an embedded PostgreSQL in a temp dir
//   DATABASE_URL=postgres://… npx tsx bench/explain-filters.ts   # an empty database you own
//   ROWS=100000 VERBOSE=1 npx tsx bench/explain-filters.ts        # fewer rows; whole plans
//
// Not a test: plans depend on the data and the server; this prints them for
// a person to read.
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { Queryable } from "../src/db/database.js";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { migrate } from "../src/db/migrate.js";
import { cairnTypes } from "../src/db/pool.js";
import * as jobs from "../src/jobs/store.js";
import * as keyValue from "../src/keyvalue/store.js";
import { createLogger } from "../src/logger.js";
import * as resolutions from "../src/resolutions/store.js";
import { listMessages } from "../src/sessions/messages.js";
import * as sessions from "../src/sessions/queries.js";
import * as traces from "../src/traces/store.js";

const ROWS = Number(process.env.ROWS ?? 300_000);
const VERBOSE = Boolean(process.env.VERBOSE);
const PAGE = { rows: 51, bytes: 4 * 1024 * 1024 };
const log = createLogger("warn");

async function database(): Promise<{ url: string; done: () => Promise<void> }> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, done: async () => {} };
  const scratch = mkdtempSync(join(tmpdir(), "cairn-explain-"));
  chmodSync(scratch, 0o755);
  const embedded = await startEmbeddedPostgres(join(scratch, "data"), 0, log);
  const admin = new pg.Client({ connectionString: embedded.adminUrl });
  await admin.connect();
  await admin.query("CREATE DATABASE explain");
  await admin.end();
  return {
    url: embedded.urlFor("explain"),
    done: async () => {
      await embedded.stop();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}

/** Rows shaped like real use: many agents and users, a few statuses, labels, metadata and state documents. */
async function populate(pool: pg.Pool): Promise<void> {
  const n = ROWS;
  const statements = [
    `INSERT INTO sessions (namespace, session_id, agent_id, user_id, status, labels, metadata, state, create_time, update_time, end_time)
     SELECT 'default', 's-' || i, 'agent-' || (i % 1000), CASE WHEN i % 5 = 0 THEN '' ELSE 'user-' || (i % 20000) END,
            CASE WHEN i % 10 < 7 THEN 'ENDED' WHEN i % 10 < 9 THEN 'ACTIVE' ELSE 'ERROR' END,
            jsonb_build_object('env', (ARRAY['prod', 'staging', 'dev'])[1 + i % 3], 'team', 'team-' || (i % 50)),
            CASE WHEN i % 4 = 0 THEN NULL ELSE jsonb_build_object('tier', (ARRAY['gold', 'silver', 'bronze'])[1 + i % 3], 'region', 'r' || (i % 20)) END,
            CASE WHEN i % 3 = 0 THEN NULL ELSE jsonb_build_object('step', i % 100, 'flag', i % 2 = 0, 'notes', repeat('x', 200)) END,
            now() - ($1 - i) * interval '10 seconds', now() - ($1 - i) * interval '10 seconds' + (i % 1000) * interval '1 second',
            CASE WHEN i % 10 < 7 OR i % 10 = 9 THEN now() - ($1 - i) * interval '10 seconds' + (i % 1000) * interval '1 second' END
       FROM generate_series(1, $1) AS i`,
    `INSERT INTO session_messages (namespace, session_id, sequence, role, content)
     SELECT 'default', 's-' || (1 + i / 100), 1 + i % 100, (ARRAY['user', 'assistant', 'assistant', 'tool'])[1 + i % 4], repeat('m', 100)
       FROM generate_series(0, $1 - 1) AS i`,
    `INSERT INTO resolutions (namespace, resolution_id, request_id, agent_id, session_id, decision, create_time, expire_time)
     SELECT 'default', 'r-' || i, 'req-' || i, 'agent-' || (i % 1000), 's-' || (i % 100000), (ARRAY['ALLOW', 'DENY', 'PARTIAL'])[1 + i % 3],
            now() - ($1 - i) * interval '10 seconds',
            CASE i % 4 WHEN 0 THEN now() - interval '1 hour' WHEN 1 THEN NULL ELSE now() + interval '1 day' END
       FROM generate_series(1, $1) AS i`,
    `INSERT INTO trace_events (namespace, event_offset, trace_id, sequence, event_id, session_id, event_type, severity, event_time,
                               payload, ingest_time, prev_hash, event_hash)
     SELECT 'default', i, 't-' || (i % 3000), 1 + i / 3000, 'e-' || i, CASE WHEN i % 5 = 0 THEN '' ELSE 's-' || (i % 30000) END,
            'type-' || (i % 20), 1 + i % 5, now() - ($1 - i) * interval '1 second', jsonb_build_object('n', i),
            now() - ($1 - i) * interval '1 second', '', ''
       FROM generate_series(1, $1) AS i`,
    `SELECT setval('trace_event_offsets', $1)`,
    `INSERT INTO jobs (namespace, job_id, queue, state, run_time, max_attempts, backoff_initial_ms, backoff_max_ms, backoff_multiplier, create_time, finish_time)
     SELECT 'default', 'j-' || i, 'queue-' || (i % 100),
            CASE WHEN i % 20 < 16 THEN 'SUCCEEDED' WHEN i % 20 < 18 THEN 'AVAILABLE' WHEN i % 20 = 18 THEN 'RUNNING' ELSE 'DEAD' END,
            now() - ($1 - i) * interval '10 seconds', 5, 1000, 60000, 2, now() - ($1 - i) * interval '10 seconds',
            CASE WHEN i % 20 < 16 OR i % 20 = 19 THEN now() END
       FROM generate_series(1, $1) AS i`,
    `INSERT INTO kv_entries (namespace, key, json_value, version, mod_revision, expire_time)
     SELECT 'default', 'p-' || (i % 100) || '/k-' || i, jsonb_build_object('v', i), 1, i, CASE WHEN i % 10 = 0 THEN now() - interval '1 minute' END
       FROM generate_series(1, $1) AS i`,
  ];
  for (const sql of statements) await pool.query(sql, sql.includes("$1") ? [n] : []);
  await pool.query("ANALYZE");
}

interface Probe {
  table: string;
  filter: string;
  run: (q: Queryable) => Promise<unknown>;
}

const none: sessions.SessionFilter = {
  agentId: null,
  userId: null,
  statuses: [],
  labels: {},
  metadataContains: null,
  stateContains: null,
  createdAfter: null,
  createdBefore: null,
  updatedAfter: null,
  updatedBefore: null,
  endedAfter: null,
  endedBefore: null,
  parentSessionId: null,
};
const hourAgo = () => new Date(Date.now() - 3_600_000).toISOString();
const byCreate = { column: "create_time", descending: false } as const;
const byUpdateDesc = { column: "update_time", descending: true } as const;
const byEnd = { column: "end_time", descending: false } as const;
const byEndDesc = { column: "end_time", descending: true } as const;

function sessionProbes(): Probe[] {
  const filters: [string, Partial<sessions.SessionFilter>][] = [
    ["none", {}],
    ["agent_id", { agentId: "agent-7" }],
    ["user_id", { userId: "user-7" }],
    ["statuses [ERROR]", { statuses: ["ERROR"] }],
    ["statuses [ACTIVE]", { statuses: ["ACTIVE"] }],
    ["labels {team}", { labels: { team: "team-7" } }],
    ["metadata_contains {region}", { metadataContains: { region: "r7" } }],
    ["state_contains {step} (1%)", { stateContains: { step: 7 } }],
    ["state_contains {flag} (33%)", { stateContains: { flag: true } }],
    ["state_contains, no match", { stateContains: { step: 1000 } }],
    ["labels, no match", { labels: { team: "no-such-team" } }],
    ["metadata_contains, no match", { metadataContains: { region: "nowhere" } }],
    ["agent_id, no match", { agentId: "no-such-agent" }],
    ["statuses [ERROR] + state_contains {step} (correlated: none)", { statuses: ["ERROR"], stateContains: { step: 7 } }],
    ["created_after (last hour)", { createdAfter: hourAgo() }],
    ["updated_after (last hour)", { updatedAfter: hourAgo() }],
    ["ended_after (last hour)", { endedAfter: hourAgo() }],
    ["parent_session_id", { parentSessionId: "s-7" }],
    ["agent_id + statuses", { agentId: "agent-7", statuses: ["ACTIVE"] }],
    ["user_id + state_contains", { userId: "user-7", stateContains: { step: 7 } }],
  ];
  return filters.flatMap(([name, f]): Probe[] => {
    const filter = { ...none, ...f };
    return [
      { table: "sessions", filter: `List ${name}`, run: (q: Queryable) => sessions.listSessions(q, "default", filter, byCreate, PAGE, undefined) },
      { table: "sessions", filter: `Count ${name}`, run: (q: Queryable) => sessions.countSessions(q, "default", filter) },
    ];
  }).concat([
    { table: "sessions", filter: "List by update_time desc, agent_id", run: (q) => sessions.listSessions(q, "default", { ...none, agentId: "agent-7" }, byUpdateDesc, PAGE, undefined) },
    { table: "sessions", filter: "List by end_time", run: (q) => sessions.listSessions(q, "default", none, byEnd, PAGE, undefined) },
    { table: "sessions", filter: "List by end_time desc", run: (q) => sessions.listSessions(q, "default", none, byEndDesc, PAGE, undefined) },
    { table: "sessions", filter: "List by end_time, past the ended ones", run: (q) => sessions.listSessions(q, "default", none, byEnd, PAGE, { time: null, sessionId: "s-7" }) },
    { table: "sessions", filter: "Stats agent_id", run: (q) => sessions.sessionStats(q, "default", { ...none, agentId: "agent-7" }) },
    { table: "sessions", filter: "Stats none", run: (q) => sessions.sessionStats(q, "default", none) },
  ]);
}

function otherProbes(): Probe[] {
  const rf: resolutions.ResolutionFilter = {
    agentId: null,
    sessionId: null,
    requestId: null,
    decisions: [],
    createdAfter: null,
    createdBefore: null,
    includeExpired: false,
  };
  const ev = { sessionId: "s-7", eventTypes: [] as string[], minSeverity: null, afterTime: null, beforeTime: null };
  return [
    { table: "session_messages", filter: "List session_id", run: (q) => listMessages(q, "default", "s-7", 0, PAGE) },
    { table: "session_messages", filter: "List session_id + roles", run: (q) => listMessages(q, "default", "s-7", 0, PAGE, ["tool"]) },
    { table: "resolutions", filter: "none", run: (q) => resolutions.listResolutions(q, "default", rf, PAGE, undefined) },
    { table: "resolutions", filter: "agent_id", run: (q) => resolutions.listResolutions(q, "default", { ...rf, agentId: "agent-7" }, PAGE, undefined) },
    { table: "resolutions", filter: "session_id", run: (q) => resolutions.listResolutions(q, "default", { ...rf, sessionId: "s-7" }, PAGE, undefined) },
    { table: "resolutions", filter: "request_id", run: (q) => resolutions.listResolutions(q, "default", { ...rf, requestId: "req-7" }, PAGE, undefined) },
    { table: "resolutions", filter: "decisions [DENY]", run: (q) => resolutions.listResolutions(q, "default", { ...rf, decisions: ["DENY"] }, PAGE, undefined) },
    { table: "resolutions", filter: "created_before (old)", run: (q) => resolutions.listResolutions(q, "default", { ...rf, createdBefore: new Date(Date.now() - 30 * 86_400_000).toISOString() }, PAGE, undefined) },
    { table: "resolutions", filter: "include_expired", run: (q) => resolutions.listResolutions(q, "default", { ...rf, includeExpired: true }, PAGE, undefined) },
    { table: "trace_events", filter: "ListTraceEvents trace_id", run: (q) => traces.listTraceEvents(q, "default", "t-7", 0, PAGE) },
    { table: "trace_events", filter: "ListSessionEvents session_id", run: (q) => traces.listSessionEvents(q, "default", ev, 0, PAGE) },
    { table: "trace_events", filter: "ListSessionEvents + event_types + min_severity", run: (q) => traces.listSessionEvents(q, "default", { ...ev, eventTypes: ["type-7"], minSeverity: "ERROR" }, 0, PAGE) },
    { table: "trace_events", filter: "ListSessionEvents + after_time (future: none match)", run: (q) => traces.listSessionEvents(q, "default", { ...ev, afterTime: new Date(Date.now() + 86_400_000).toISOString() }, 0, PAGE) },
    { table: "trace_events", filter: "SubscribeEvents trace_id (one window)", run: (q) => traces.readFeed(q, "default", 1, { sessionId: null, traceId: "t-7", eventTypes: [], minSeverity: null }) },
    { table: "jobs", filter: "none", run: (q) => jobs.list(q, "default", null, [], PAGE, undefined) },
    { table: "jobs", filter: "queue", run: (q) => jobs.list(q, "default", "queue-7", [], PAGE, undefined) },
    { table: "jobs", filter: "states [DEAD]", run: (q) => jobs.list(q, "default", null, ["DEAD"], PAGE, undefined) },
    { table: "jobs", filter: "queue + states [RUNNING]", run: (q) => jobs.list(q, "default", "queue-7", ["RUNNING"], PAGE, undefined) },
    { table: "jobs", filter: "GetQueueStats", run: (q) => jobs.stats(q, "default", "queue-7") },
    { table: "kv_entries", filter: "List prefix p-7/", run: (q) => keyValue.list(q, "default", { prefix: "p-7/", valueContains: null }, null, PAGE, false) },
    { table: "kv_entries", filter: "List no prefix", run: (q) => keyValue.list(q, "default", { prefix: "", valueContains: null }, null, PAGE, true) },
    { table: "kv_entries", filter: "List value_contains", run: (q) => keyValue.list(q, "default", { prefix: "", valueContains: { json: { v: 7 } } }, null, PAGE, false) },
    { table: "kv_entries", filter: "Count value_contains", run: (q) => keyValue.count(q, "default", { prefix: "", valueContains: { json: { v: 7 } } }) },
  ];
}

interface Explained {
  custom: string[];
  generic: string[];
}

/** A Queryable that explains each statement (custom plan, then generic plan) before running it. */
function explaining(pool: pg.Pool, out: Explained[]): Queryable {
  const q: Queryable = {
    query: async (text, values) => {
      const custom = await pool.query(`EXPLAIN (ANALYZE, BUFFERS) ${text}`, values);
      const generic = await pool.query(`EXPLAIN (GENERIC_PLAN) ${text}`);
      out.push({ custom: custom.rows.map((r) => r["QUERY PLAN"]), generic: generic.rows.map((r) => r["QUERY PLAN"]) });
      return pool.query(text, values);
    },
    prepared: (_name, text, values) => q.query(text, values),
    atomic: (fn) => fn(q),
  };
  return q;
}

/** The scan nodes of a plan, e.g. "Index Scan using sessions_agent_create_time_idx on sessions". */
function scans(plan: string[]): string[] {
  const nodes = plan
    .map((line) => line.trim().replace(/^->\s*/, ""))
    .filter((line) => /(Seq Scan|Index Scan|Index Only Scan|Bitmap Index Scan|Bitmap Heap Scan) /.test(line))
    .map((line) => line.replace(/\s+\(cost=.*$/, "").replace(/\s+\(actual.*$/, ""));
  return [...new Set(nodes)];
}

const executionMs = (plan: string[]) => plan.find((l) => l.startsWith("Execution Time"))?.replace(/[^\d.]/g, "") ?? "?";
const buffers = (plan: string[]) => plan.find((l) => l.trim().startsWith("Buffers:"))?.trim().replace("Buffers: ", "") ?? "";

async function main(): Promise<void> {
  const db = await database();
  const pool = new pg.Pool({ connectionString: db.url, max: 2, types: cairnTypes, options: "-c TimeZone=UTC -c jit=off" });
  try {
    await migrate(db.url, log);
    const count = await pool.query("SELECT count(*)::int AS n FROM sessions");
    if (count.rows[0].n === 0) await populate(pool);
    console.log(`| table | filter | custom plan (what the daemon runs) | ms | generic plan |`);
    console.log(`|---|---|---|---|---|`);
    for (const probe of [...sessionProbes(), ...otherProbes()]) {
      const explained: Explained[] = [];
      await probe.run(explaining(pool, explained));
      for (const e of explained) {
        const genericScans = scans(e.generic).join("; ");
        const customScans = scans(e.custom).join("; ");
        console.log(`| ${probe.table} | ${probe.filter} | ${customScans} | ${executionMs(e.custom)} | ${genericScans === customScans ? "same" : genericScans} |`);
        if (VERBOSE) console.log(["```", ...e.custom, `(buffers: ${buffers(e.custom)})`, "```"].join("\n"));
      }
    }
    await namedStatementCheck(pool);
  } finally {
    await pool.end();
    await db.done();
  }
}

/**
 * The catch-all filters (`$7::jsonb IS NULL OR state @> $7`) need a custom
 * plan, made for the values; pg's unnamed statements get one every time. A
 * statement prepared by name (q.prepared) would switch to the generic plan
 * after five executions if PostgreSQL judges it no worse, and the generic
 * plan cannot know which filters are absent. This runs ListSessions'
 * state_contains statement seven times by name and reports which plans
 * PostgreSQL made.
 */
async function namedStatementCheck(pool: pg.Pool): Promise<void> {
  const statements: { text: string; values: unknown[] }[] = [];
  const capture: Queryable = {
    query: async (text, values) => {
      statements.push({ text, values: values ?? [] });
      return pool.query(text, values);
    },
    prepared: (_name, text, values) => capture.query(text, values),
    atomic: (fn) => fn(capture),
  };
  await sessions.listSessions(capture, "default", { ...none, stateContains: { step: 7 } }, byCreate, PAGE, undefined);
  const { text, values } = statements[0]!;
  const client = await pool.connect();
  try {
    for (let i = 0; i < 7; i++) await client.query({ name: "probe_state_contains", text, values });
    const plans = await client.query(`SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'probe_state_contains'`);
    console.log(`\nListSessions state_contains as a named statement, 7 runs: ${JSON.stringify(plans.rows[0])}`);
  } finally {
    client.release(true);
  }
}

await main();
