// KeyValueService List value_contains and Count: JSON containment on
// json_value (as PostgreSQL's @> has it), served by the namespace-scoped GIN
// index, with page tokens bound to the filter.
import { CairnClient } from "@cairn/client";
import { status } from "@grpc/grpc-js";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Queryable } from "../src/db/database.js";
import { createPool } from "../src/db/pool.js";
import * as store from "../src/keyvalue/store.js";
import { failure, type Harness, startHarness } from "./support/harness.js";

let h: Harness;
let n = 0;
const uid = (p: string) => `${p}/${Date.now().toString(36)}-${++n}/`;
const json = (value: unknown) => ({ $case: "jsonValue" as const, value });
const kv = () => h.client.keyValue;

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

/** Stores `values` under `prefix` (key = prefix + name); returns the prefix. */
async function seed(values: Record<string, unknown>, prefix = uid("seed")): Promise<string> {
  await kv().batchPut({ requests: Object.entries(values).map(([name, value]) => ({ entry: { key: prefix + name, value: json(value) } })) });
  return prefix;
}

const keysOf = async (prefix: string, valueContains: unknown) =>
  (await kv().list({ prefix, valueContains, keysOnly: true })).entries.map((e) => e.key.slice(prefix.length));

describe("List value_contains", () => {
  const values = {
    ann: { user: { name: "ann", roles: ["admin", "dev"] }, n: 1 },
    bob: { user: { name: "bob", roles: ["dev"] }, n: 2, extra: null },
    arr: ["a", "b", { deep: [1, 2] }],
    nested: [["x"]],
    str: "a",
    num: 5,
    float: 5.5,
    yes: true,
    no: false,
    nul: null,
    nuls: [null],
    empty: {},
  };
  let prefix: string;
  beforeAll(async () => {
    prefix = await seed(values);
    await kv().put({ entry: { key: `${prefix}bytes`, value: { $case: "bytesValue", value: Buffer.from('{"n":1}') } } });
  });

  it("matches objects by their members, recursively, arrays by their elements", async () => {
    expect(await keysOf(prefix, { user: { roles: ["dev"] } })).toEqual(["ann", "bob"]);
    expect(await keysOf(prefix, { user: { name: "ann" } })).toEqual(["ann"]);
    expect(await keysOf(prefix, { user: { roles: ["admin", "dev"] }, n: 1 })).toEqual(["ann"]);
    expect(await keysOf(prefix, { extra: null })).toEqual(["bob"]);
    expect(await keysOf(prefix, { n: 3 })).toEqual([]);
    expect(await keysOf(prefix, {})).toEqual(["ann", "bob", "empty"]);
    expect(await keysOf(prefix, [{ deep: [2] }])).toEqual(["arr"]);
    expect(await keysOf(prefix, ["b", "a"])).toEqual(["arr"]);
    expect(await keysOf(prefix, [["x"]])).toEqual(["nested"]);
    expect(await keysOf(prefix, [])).toEqual(["arr", "nested", "nuls"]);
  });

  it("matches scalars, and a scalar inside a top-level array, as @> does", async () => {
    expect(await keysOf(prefix, "a")).toEqual(["arr", "str"]);
    expect(await keysOf(prefix, 5)).toEqual(["num"]);
    expect(await keysOf(prefix, 5.5)).toEqual(["float"]);
    expect(await keysOf(prefix, true)).toEqual(["yes"]);
    expect(await keysOf(prefix, false)).toEqual(["no"]);
    expect(await keysOf(prefix, null)).toEqual(["nul", "nuls"]);
    // Only at the top level: {user: {name: ["ann"]}} is not contained in {user: {name: "ann"}}.
    expect(await keysOf(prefix, "x")).toEqual([]);
    expect(await keysOf(prefix, { user: { name: ["ann"] } })).toEqual([]);
  });

  it("never matches entries holding bytes; unset value_contains lists them all", async () => {
    expect(await keysOf(prefix, { n: 1 })).toEqual(["ann"]);
    expect((await keysOf(prefix, undefined)).length).toBe(Object.keys(values).length + 1);
  });

  it("returns values unless keys_only or the read mask leaves them out", async () => {
    const { entries } = await kv().list({ prefix, valueContains: { user: { name: "bob" } } });
    expect(entries.map((e) => e.value)).toEqual([json(values.bob)]);
  });

  it("pages with a token bound to the filter, value_contains included", async () => {
    const p = await seed(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`k${i}`, { tag: "t", i }])));
    await seed({ other: { tag: "u" } }, p);
    const first = await kv().list({ prefix: p, valueContains: { tag: "t" }, pageSize: 2 });
    expect(first.entries.map((e) => e.key.slice(p.length))).toEqual(["k0", "k1"]);
    const rest = await kv().list({ prefix: p, valueContains: { tag: "t" }, pageSize: 10, pageToken: first.nextPageToken });
    expect(rest.entries.map((e) => e.key.slice(p.length))).toEqual(["k2", "k3", "k4"]);
    expect(rest.nextPageToken).toBe("");
    for (const other of [{ tag: "u" }, undefined, null, { tag: "t", i: 1 }]) {
      const f = await failure(kv().list({ prefix: p, valueContains: other, pageSize: 2, pageToken: first.nextPageToken }));
      expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_PAGE_TOKEN" });
    }
    const unfiltered = await kv().list({ prefix: p, pageSize: 2 });
    expect((await failure(kv().list({ prefix: p, valueContains: { tag: "t" }, pageToken: unfiltered.nextPageToken }))).reason).toBe("INVALID_PAGE_TOKEN");
    // The same filter with its members in another order is the same filter.
    await seed({ k9: { i: 9, tag: "t", grp: "g" }, k8: { i: 8, tag: "t", grp: "g" } }, p);
    const one = await kv().list({ prefix: p, valueContains: { tag: "t", grp: "g" }, pageSize: 1 });
    const two = await kv().list({ prefix: p, valueContains: { grp: "g", tag: "t" }, pageSize: 1, pageToken: one.nextPageToken });
    expect([...one.entries, ...two.entries].map((e) => e.key.slice(p.length))).toEqual(["k8", "k9"]);
  });

  it("INVALID_ARGUMENT for a document Cairn could not store, naming the path", async () => {
    const f = await failure(kv().list({ valueContains: { a: ["ok", "nul\u0000"] } }));
    expect(f).toMatchObject({ code: status.INVALID_ARGUMENT, fields: ["value_contains.a[1]"] });
    expect((await failure(kv().count({ valueContains: { n: Number.NaN } }))).fields).toEqual(["value_contains.n"]);
  });
});

describe("Count", () => {
  it("counts live entries under a prefix whose value contains value_contains", async () => {
    const p = await seed({ a: { kind: "job", state: "done" }, b: { kind: "job", state: "open" }, c: { kind: "note" }, d: 7 });
    await seed({ a: { kind: "job", state: "done" } }, `${p}sub/`);
    await kv().put({ entry: { key: `${p}bin`, value: { $case: "bytesValue", value: Buffer.from([1]) } } });
    expect((await kv().count({ prefix: p })).count).toBe(6);
    expect((await kv().count({ prefix: p, valueContains: { kind: "job" } })).count).toBe(3);
    expect((await kv().count({ prefix: `${p}sub/`, valueContains: { kind: "job" } })).count).toBe(1);
    expect((await kv().count({ prefix: p, valueContains: { kind: "job", state: "done" } })).count).toBe(2);
    expect((await kv().count({ prefix: p, valueContains: 7 })).count).toBe(1);
    expect((await kv().count({ prefix: p, valueContains: { kind: "none" } })).count).toBe(0);
  });

  it("never counts (or lists) expired entries", async () => {
    const p = await seed({ live: { x: 1 }, gone: { x: 1 } });
    await kv().put({ entry: { key: `${p}soon`, value: json({ x: 1 }) }, ttl: { seconds: 3600, nanos: 0 } });
    expect((await kv().count({ prefix: p, valueContains: { x: 1 } })).count).toBe(3);
    await h.sql.query(`UPDATE kv_entries SET expire_time = now() - interval '1 second' WHERE key = $1`, [`${p}gone`]);
    expect((await kv().count({ prefix: p, valueContains: { x: 1 } })).count).toBe(2);
    expect((await kv().count({ prefix: p })).count).toBe(2);
    expect(await keysOf(p, { x: 1 })).toEqual(["live", "soon"]);
  });

  it("sees only the call's namespace", async () => {
    const marker = { marker: uid("m") };
    const other = new CairnClient(h.daemon.address, { namespace: "kv-filters-other" });
    try {
      await other.keyValue.put({ entry: { key: "x", value: json(marker) } });
      expect((await other.keyValue.count({ valueContains: marker })).count).toBe(1);
      expect((await kv().count({ valueContains: marker })).count).toBe(0);
      expect((await kv().list({ valueContains: marker })).entries).toEqual([]);
    } finally {
      other.close();
    }
  });
});

describe("the containment index", () => {
  // A pool as the daemon's (its type parsers and session settings), so the store functions run as they do there.
  let pool: pg.Pool;
  beforeAll(() => {
    pool = createPool({ connectionString: h.databaseUrl, max: 2, statementTimeoutMs: 30_000 });
  });
  afterAll(async () => {
    await pool?.end();
  });

  /** Runs a store function on the test database, EXPLAINing each statement (with its values) before running it. */
  function explaining(plans: string[]): Queryable {
    const q: Queryable = {
      query: async (text, values) => {
        const plan = await pool.query(`EXPLAIN ${text}`, values);
        plans.push(plan.rows.map((r) => r["QUERY PLAN"]).join("\n"));
        return pool.query(text, values);
      },
      prepared: (_name, text, values) => q.query(text, values),
      atomic: (fn) => fn(q),
    };
    return q;
  }

  it("serves List and Count value_contains on a table of thousands of entries, in the namespace only", async () => {
    const ns = "kv-explain";
    // 6,000 entries in the namespace and 3,000 in another with the same values; each filter selects a few
    // (a filter that selects a large share is read faster by a sequential scan, and PostgreSQL 18 does).
    await h.sql.query(
      `INSERT INTO kv_entries (namespace, key, json_value, version, mod_revision)
       SELECT n, 'p-' || (i % 50) || '/k-' || i, jsonb_build_object('user', jsonb_build_object('id', i), 'tags', jsonb_build_array('t' || (i % 400))), 1, i
         FROM generate_series(1, 6000) AS i, unnest(ARRAY[$1, $1 || '-b']) AS n
        WHERE n = $1 OR i <= 3000`,
      [ns],
    );
    await h.sql.query("ANALYZE kv_entries");
    const plans: string[] = [];
    const q = explaining(plans);
    const page = await store.list(q, ns, { prefix: "", valueContains: { json: { user: { id: 77 } } } }, null, { rows: 50, bytes: 1 << 20 }, false);
    expect(page.items.map((e) => e.key)).toEqual(["p-27/k-77"]);
    expect(await store.count(q, ns, { prefix: "", valueContains: { json: { tags: ["t7"] } } })).toBe(15);
    expect(await store.count(q, ns, { prefix: "", valueContains: { json: "t7" } })).toBe(0);
    for (const plan of plans) expect(plan).toContain("kv_entries_value_idx");
    // Without value_contains the filter costs nothing: the primary key serves the prefix.
    plans.length = 0;
    await store.count(q, ns, { prefix: "p-7/", valueContains: null });
    expect(plans[0]).not.toContain("kv_entries_value_idx");
    expect(plans[0]).toContain("kv_entries_pkey");
  });
});
