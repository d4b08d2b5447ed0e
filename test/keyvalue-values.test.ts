// Every kind of JSON value round-trips through the TypeScript client's
// promise wrapper: JSON null included, which ts-proto's fromPartial used to
// drop from the Entry.value oneof (clients/typescript/src/json-null.ts).
import * as cairn from "@cairn/client";
import { Entry, PutRequest } from "@cairn/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";

let h: Harness;
let n = 0;
const uid = (p: string) => `${p}/${Date.now().toString(36)}-${++n}`;
const json = (value: unknown) => ({ $case: "jsonValue" as const, value });

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const VALUES: [string, unknown][] = [
  ["null", null],
  ["true", true],
  ["false", false],
  ["zero", 0],
  ["integer", -42],
  ["fraction", 3.25],
  ["large", 2 ** 53 - 1],
  ["empty string", ""],
  ["string", "héllo ✓"],
  ["empty array", []],
  ["array", [1, null, "two", false, [[]], { a: null }]],
  ["empty object", {}],
  ["object", { a: null, b: { c: [true, 0, ""] }, "": "empty key" }],
];

describe("JSON values through the client", () => {
  it.each(VALUES)("Put then Get keeps %s", async (_name, value) => {
    const key = uid("value");
    const put = await h.client.keyValue.put({ entry: { key, value: json(value) } });
    expect(put.value).toEqual(json(value));
    expect((await h.client.keyValue.get({ key })).value).toEqual(json(value));
    const stored = await h.sql.query("SELECT json_value FROM kv_entries WHERE key = $1", [key]);
    expect(stored.rows[0].json_value).toEqual(value);
  });

  it("BatchPut, List and BatchGet keep every one of them", async () => {
    const prefix = uid("batch") + "/";
    const keys = VALUES.map(([name]) => prefix + name);
    await h.client.keyValue.batchPut({ requests: VALUES.map(([, value], i) => ({ entry: { key: keys[i], value: json(value) } })) });
    const listed = await h.client.keyValue.list({ prefix });
    expect(Object.fromEntries(listed.entries.map((e) => [e.key, e.value]))).toEqual(Object.fromEntries(VALUES.map(([, value], i) => [keys[i], json(value)])));
    const got = await h.client.keyValue.batchGet({ keys });
    expect(got.entries.map((e) => e.value)).toEqual(VALUES.map(([, value]) => json(value)));
  });

  it("Entry.fromPartial and create keep null, directly and nested in a request", () => {
    expect(Entry.fromPartial({ key: "k", value: json(null) }).value).toEqual(json(null));
    expect(Entry.create({ value: json(null) }).value).toEqual(json(null));
    const request = PutRequest.fromPartial({ entry: { key: "k", value: json(null) } });
    expect(PutRequest.decode(PutRequest.encode(request).finish()).entry?.value).toEqual(json(null));
    // An unset value stays unset.
    expect(Entry.fromPartial({ key: "k" }).value).toBeUndefined();
  });

  it("every google.protobuf.Value member of a cairn.v1 oneof keeps null through fromPartial", () => {
    const { registry } = cairn;
    const members: string[] = [];
    for (const type of registry) {
      if (type.kind !== "message" || !type.typeName.startsWith("cairn.v1.")) continue;
      for (const oneof of type.oneofs) {
        for (const field of oneof.fields) {
          if (field.fieldKind !== "message" || field.message.typeName !== "google.protobuf.Value") continue;
          const name = type.typeName.slice("cairn.v1.".length).replace(/\./g, "_");
          members.push(`${name}.${oneof.localName}.${field.localName}`);
          const message = (cairn as unknown as Record<string, { fromPartial(o: unknown): Record<string, unknown> } | undefined>)[name];
          expect(message, `${name} is exported by @cairn/client`).toBeDefined();
          const kept = message!.fromPartial({ [oneof.localName]: { $case: field.localName, value: null } });
          expect(kept[oneof.localName], `${name}.${oneof.localName}`).toEqual({ $case: field.localName, value: null });
        }
      }
    }
    expect(members).toContain("Entry.value.jsonValue");
  });
});
