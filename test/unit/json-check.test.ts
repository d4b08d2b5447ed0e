import { CreateSessionRequest, Session } from "@cairn/client";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { deepDeserializer, readerWithRoom } from "../../src/grpc/deep-decode.js";
import { inspectJson } from "../../src/grpc/json-check.js";
import { Violations, checkDocument, checkDocumentList } from "../../src/grpc/validate.js";

const limits = loadConfig([], {}).limits;

/** `levels` nested objects, the innermost holding a scalar: `{a:{a:{leaf:1}}}` has 3. */
function nestedObjects(levels: number): Record<string, unknown> {
  let v: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < levels; i++) v = { a: v };
  return v;
}

function nestedLists(levels: number): unknown[] {
  let v: unknown[] = [1];
  for (let i = 1; i < levels; i++) v = [v];
  return v;
}

const inspect = (value: unknown, maxDepth = 64) => inspectJson(value, { maxDepth });

describe("inspectJson", () => {
  it.each([
    [{}],
    [[]],
    [null],
    ["plain"],
    [{ a: 1, b: [true, false, null, -0, 1.5e300, "x"], "odd key": { "": "" } }],
    [{ q: 'quote " backslash \\ tab \t newline \n', u: "é€😀", esc: "\u001f\u2028" }],
    [["\ud800 lone surrogate", "pair 😀"]],
    [["😀".repeat(40) + "\ud800", "x".repeat(40) + "\udc00y", "\udc00\ud800", "😀\ud83d", "é".repeat(40) + '"']],
    [{ ints: [0, -1, 9, 10, -10, 99, 100, 2 ** 53 - 1, -(2 ** 53) + 1, 2 ** 60, 1e21, 0.1, -1.5e-7] }],
    [nestedObjects(10)],
    [{ emoji: "😀".repeat(100), [`k${"é".repeat(10)}`]: [[[]]] }],
  ])("measures exactly what JSON.stringify writes (%#)", (value) => {
    expect(inspect(value)).toEqual({ bytes: Buffer.byteLength(JSON.stringify(value), "utf8"), problems: [] });
  });

  it("names U+0000 in a string and in a key, with the path", () => {
    const { problems } = inspect({ a: { b: [0, 1, "x\u0000y"] }, ["k\u0000"]: 1 });
    expect(problems).toEqual([
      { path: ".a.b[2]", description: "must not contain U+0000 (NUL)" },
      { path: '["k\\u0000"]', description: "has a key containing U+0000 (NUL)" },
    ]);
  });

  it("names NaN and ±Infinity", () => {
    const { problems } = inspect({ n: NaN, list: [1, Infinity], deep: { m: -Infinity } });
    expect(problems.map((p) => p.path)).toEqual([".n", ".list[1]", ".deep.m"]);
    expect(problems[0]!.description).toMatch(/finite/);
  });

  it("names a list element without a value (an empty google.protobuf.Value)", () => {
    expect(inspect({ l: [1, undefined] }).problems).toEqual([{ path: ".l[1]", description: expect.stringMatching(/no value/) }]);
  });

  it("a top-level scalar has no path of its own", () => {
    expect(inspect("a\u0000").problems).toEqual([{ path: "", description: "must not contain U+0000 (NUL)" }]);
    expect(inspect(NaN).problems).toHaveLength(1);
  });

  it("accepts 64 levels and names the first container at level 65, once", () => {
    expect(inspect(nestedObjects(64)).problems).toEqual([]);
    expect(inspect(nestedLists(64)).problems).toEqual([]);
    const deep = inspect({ x: nestedObjects(64), y: nestedLists(70) });
    expect(deep.problems).toEqual([{ path: ".x" + ".a".repeat(63), description: expect.stringMatching(/deeper than 64 levels/) }]);
    expect(inspect(nestedLists(65)).problems[0]!.path).toBe("[0]".repeat(64));
  });

  it("a list of documents is no level itself", () => {
    const list = [nestedObjects(64), {}];
    expect(inspectJson(list, { maxDepth: 64, listOfDocuments: true }).problems).toEqual([]);
    expect(inspectJson(list, { maxDepth: 64 }).problems).toHaveLength(1);
  });

  it("stops collecting problems at maxProblems, but still measures", () => {
    const many = Array.from({ length: 100 }, () => NaN);
    const r = inspectJson(many, { maxDepth: 64, maxProblems: 5 });
    expect(r.problems).toHaveLength(5);
    expect(r.bytes).toBe(Buffer.byteLength(JSON.stringify(many)));
  });

  it("shortens a huge key in a path", () => {
    const key = "k".repeat(10_000) + "\u0000";
    const [problem] = inspect({ [key]: 1 }).problems;
    expect(problem!.path.length).toBeLessThan(100);
  });
});

describe("checkDocument", () => {
  it("prefixes the field and keeps the size check", () => {
    const v = new Violations();
    checkDocument(v, "session.state", { a: [NaN], big: "x".repeat(limits.maxDocumentBytes) }, limits);
    expect(v.list.map((x) => x.field)).toEqual(["session.state", "session.state.a[0]"]);
    expect(v.list[0]!.description).toMatch(/bytes encoded as JSON; the limit is 1048576/);
  });

  it("checkDocumentList checks each element as its own document", () => {
    const v = new Violations();
    checkDocumentList(v, "resolution.context_blocks", [{ ok: 1 }, { bad: "\u0000" }], limits);
    expect(v.list.map((x) => x.field)).toEqual(["resolution.context_blocks[1].bad"]);
  });
});

describe("deepDeserializer", () => {
  const request = (state: Record<string, unknown>) =>
    Buffer.from(CreateSessionRequest.encode(CreateSessionRequest.fromPartial({ session: { agentId: "a", state } })).finish());

  it("the generated decoder alone stops near 32 object levels (the limit this works around)", () => {
    expect(() => CreateSessionRequest.decode(request(nestedObjects(33)))).toThrow(/recursion limit/);
  });

  it("decodes 65 levels (so validation can name the 65th) and still bounds recursion", () => {
    const decode = deepDeserializer((b) => CreateSessionRequest.decode(b), 64);
    expect(decode(request(nestedObjects(65))).session!.state).toEqual(nestedObjects(65));
    expect(() => decode(request(nestedObjects(80)))).toThrow(/recursion limit/);
  });

  it("reads responses as deep too, e.g. a Session", () => {
    const bytes = Buffer.from(Session.encode(Session.fromPartial({ agentId: "a", state: nestedObjects(64) })).finish());
    expect(deepDeserializer((b) => Session.decode(b), 64)(bytes).state).toEqual(nestedObjects(64));
  });

  it("readerWithRoom keeps a strict UTF-8 decoder", () => {
    // Session.agent_id is field 2: tag 0x12, length 2, then 0xff 0xfe (not UTF-8).
    const bytes = Buffer.from([0x12, 0x02, 0xff, 0xfe]);
    const strict = new TextDecoder("utf-8", { fatal: true });
    expect(Session.decode(readerWithRoom(bytes, 64)).agentId).toBe("\ufffd\ufffd");
    expect(() => Session.decode(readerWithRoom(bytes, 64, (b) => strict.decode(b)))).toThrow(TypeError);
  });
});
