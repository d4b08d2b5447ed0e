import { readdirSync, readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, expect, it } from "vitest";
import { migrate } from "../src/db/migrate.js";
import { createLogger } from "../src/logger.js";
import { MIGRATIONS_DIR } from "../src/paths.js";
import { FIND_STORED_SQL } from "../src/traces/store.js";
import { createTestDatabase } from "./support/harness.js";

const log = createLogger("silent");
const files = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith(".sql")).sort();
const drops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const drop of drops) await drop();
});

it("applies every migration once to a fresh database, then nothing", async () => {
  const db = await createTestDatabase();
  drops.push(db.drop);
  const applied = await migrate(db.url, log);
  expect(applied).toEqual(files.map((f) => f.replace(/\.sql$/, "")));
  expect(await migrate(db.url, log)).toEqual([]);
});

it("replicas migrating at once take turns on the advisory lock", async () => {
  const db = await createTestDatabase();
  drops.push(db.drop);
  const results = await Promise.all([migrate(db.url, log), migrate(db.url, log), migrate(db.url, log)]);
  expect(results.flat()).toHaveLength(files.length);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const rows = await client.query("SELECT name FROM pgmigrations ORDER BY id");
  await client.end();
  expect(rows.rows.map((r) => r.name)).toEqual(files.map((f) => f.replace(/\.sql$/, "")));
});

it("migrations are forward-only SQL", () => {
  expect(files.length).toBeGreaterThan(0);
  for (const file of files) {
    const text = readFileSync(`${MIGRATIONS_DIR}/${file}`, "utf8");
    expect(text, file).toMatch(/^-- Up Migration/m);
    expect(text, file).not.toMatch(/^\s*--[\s-]*down\s+migration/im);
  }
});

it("containment on sessions.state and ListJobs' unfiltered order are served by indexes", async () => {
  const db = await createTestDatabase();
  drops.push(db.drop);
  await migrate(db.url, log);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    // With sequential scans and sorts priced out, a plan names the index if one can serve the query at all.
    await client.query("SET enable_seqscan = off");
    await client.query("SET enable_sort = off");
    const plan = async (sql: string, values: unknown[] = []) =>
      (await client.query(`EXPLAIN ${sql}`, values)).rows.map((r) => r["QUERY PLAN"]).join("\n");
    expect(await plan(`SELECT session_id FROM sessions WHERE state @> $1::jsonb`, ['{"step": 7}'])).toContain("sessions_state_idx");
    expect(await plan(`SELECT job_id FROM jobs WHERE namespace = 'default' ORDER BY create_time, job_id LIMIT 10`)).toContain("jobs_create_time_idx");
  } finally {
    await client.end();
  }
});

it("the namespace migration moves existing rows into 'default' and lets ids repeat across namespaces", async () => {
  const db = await createTestDatabase();
  drops.push(db.drop);
  const before = files.indexOf("1763800700000_namespaces.sql");
  await migrate(db.url, log, before);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query(`INSERT INTO sessions (session_id, agent_id, status) VALUES ('s1', 'a', 'ACTIVE')`);
    await client.query(`INSERT INTO session_messages (session_id, sequence, role) VALUES ('s1', 1, 'user')`);
    await client.query(`INSERT INTO kv_entries (key, json_value, version, mod_revision) VALUES ('k', '1', 1, 1)`);
    await migrate(db.url, log);
    const moved = await client.query(`SELECT namespace FROM sessions UNION ALL SELECT namespace FROM session_messages UNION ALL SELECT namespace FROM kv_entries`);
    expect(moved.rows.map((r) => r.namespace)).toEqual(["default", "default", "default"]);
    // The same ids in another namespace are other rows.
    await client.query(`INSERT INTO sessions (namespace, session_id, agent_id, status) VALUES ('team-red', 's1', 'a', 'ACTIVE')`);
    await client.query(`INSERT INTO kv_entries (namespace, key, json_value, version, mod_revision) VALUES ('team-red', 'k', '2', 1, 2)`);
    // A write that names no namespace fails instead of landing in 'default'.
    await expect(client.query(`INSERT INTO sessions (session_id, agent_id, status) VALUES ('s2', 'a', 'ACTIVE')`)).rejects.toThrow(/namespace/);
  } finally {
    await client.end();
  }
});

it("the offset migration continues offsets after the last one handed out", async () => {
  const db = await createTestDatabase();
  drops.push(db.drop);
  await migrate(db.url, log, files.indexOf("1763801600000_trace_offset_horizon.sql"));
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query(`UPDATE trace_offsets SET last_offset = 41`);
    await migrate(db.url, log);
    expect((await client.query(`SELECT cairn_settled_trace_offset() AS n`)).rows[0].n).toBe("41");
    expect((await client.query(`SELECT nextval('trace_event_offsets') AS n`)).rows[0].n).toBe("42");
  } finally {
    await client.end();
  }
});

it("a fresh database's first offset is 1 and nothing is settled before it", async () => {
  const db = await createTestDatabase();
  drops.push(db.drop);
  await migrate(db.url, log);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    expect((await client.query(`SELECT cairn_settled_trace_offset() AS n`)).rows[0].n).toBe("0");
    expect((await client.query(`SELECT nextval('trace_event_offsets') AS n`)).rows[0].n).toBe("1");
  } finally {
    await client.end();
  }
});

it("an append's duplicate check probes the index even when statistics say the table is empty", async () => {
  const db = await createTestDatabase();
  drops.push(db.drop);
  await migrate(db.url, log);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    // Statistics taken while the table was empty, then 100k events the planner has not heard of.
    await client.query("ALTER TABLE trace_events SET (autovacuum_enabled = false)");
    await client.query("ANALYZE trace_events");
    await client.query(
      `INSERT INTO trace_events (namespace, event_offset, trace_id, sequence, event_id, event_type, severity, event_time, ingest_time, prev_hash, event_hash)
       SELECT 'default', i, 't-' || (i % 50), i, 'e-' || i, 'step', 2, now(), now(), '', '' FROM generate_series(1, 100000) AS i`,
    );
    const keys = Array.from({ length: 500 }, (_, i) => i);
    const values = [keys.map(() => "default"), keys.map((i) => `t-${i % 50}`), keys.map((i) => `new-${i}`)];
    const plan = (await client.query(`EXPLAIN ${FIND_STORED_SQL}`, values)).rows.map((r) => r["QUERY PLAN"]).join("\n");
    expect(plan).toContain("Index Scan using trace_events_trace_event_key");
    expect(plan).not.toMatch(/Hash|Seq Scan on trace_events|Bitmap Heap Scan on trace_events/);
  } finally {
    await client.end();
  }
});
