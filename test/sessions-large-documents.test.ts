// Large and awkward session states through the real daemon: thousands of
// small values, 256 KiB of strings, 64 levels, unicode, numbers JSON and
// jsonb treat specially, empty containers, nulls, and Struct bytes written
// by hand (repeated keys, entries without values, unknown fields, a Value
// with two kinds). The daemon reads and writes documents with its own
// codec (clients/typescript/src/struct-codec.ts) and echoes the state a write was given;
// each check compares the returned and the stored state with what
// ts-proto's own path gives: its decode of the same request bytes, stored
// as JSON.stringify writes it, read back from jsonb.
import * as grpc from "@grpc/grpc-js";
import * as wire from "@cairn/client";
import { Session, SessionServiceService } from "@cairn/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deepDeserializer, readerWithRoom } from "../src/grpc/deep-decode.js";
import { failure, type Harness, startHarness } from "./support/harness.js";

let h: Harness;
let raw: grpc.Client;
let seq = 0;
const uid = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;
/** @cairn/client's decoder stops near 33 levels; responses are read with room for 64. */
const readSession = deepDeserializer((b) => Session.decode(b), 64);

beforeAll(async () => {
  h = await startHarness();
  raw = new grpc.Client(h.daemon.address, grpc.credentials.createInsecure());
});
afterAll(async () => {
  raw?.close();
  await h?.stop();
});

function rawUnary(path: string, bytes: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    raw.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.from(bytes),
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (error, response) => (error ? reject(error) : resolve(response!)),
    );
  });
}

const objects = (levels: number): unknown => {
  let value: unknown = { end: true };
  for (let i = 1; i < levels; i++) value = { a: value };
  return value;
};
const lists = (levels: number): unknown => {
  let value: unknown = ["end"];
  for (let i = 1; i < levels; i++) value = [value];
  return value;
};

function manySmallValues(version: number): Record<string, unknown> {
  const items = Array.from({ length: 2500 }, (_, i) => ({
    id: i,
    name: `item-${i}`,
    score: i * 1.25 + version,
    done: i % 2 === 0,
    tags: ["a", "bc", "ü"],
    note: null,
  }));
  const counters = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`k${i}`, i * 7 - version]));
  return { version, items, counters };
}

function awkward(version: number): Record<string, unknown> {
  return {
    version,
    numbers: [1e21, -0, 0, 2 ** 53 + 2, -(2 ** 60), 1.7976931348623157e308, 5e-324, 0.1, -1.5e-7, 123456789.125, 1e-7, 100],
    negativeZero: -0,
    unicode: {
      日本語: "テキスト",
      "😀": "emoji 😀, combining é, supplementary 𝄞",
      "": "the empty key",
      'quote"back\\slash': "tab\tnewline\n\u001f U+2028\u2028 U+FFFF\uffff",
      "1": "integer-like key",
      "10": 10,
      "2": 2,
    },
    empty: { object: {}, list: [], string: "", nested: [{}, [], [[]], { e: {} }] },
    nulls: [null, { n: null }, [null]],
    booleans: [true, false],
    // The root is level 1, so these reach the limit of 64.
    deepObjects: objects(63),
    deepLists: lists(63),
  };
}

function bigStrings(version: number): Record<string, unknown> {
  const each = 64 * 1024 - 16;
  return { a: `${version}`.padEnd(each, "a"), b: "é".repeat(each / 2), c: "😀".repeat(each / 4), d: `${version}`.padEnd(each, "d") };
}

/** What ts-proto's path stores and returns for a document it decoded: JSON.stringify, then jsonb. */
async function throughJsonb(decoded: unknown): Promise<{ value: unknown; text: string }> {
  const { rows } = await h.sql.query("SELECT $1::jsonb AS value, $1::jsonb::text AS text", [JSON.stringify(decoded)]);
  return rows[0];
}

async function storedState(sessionId: string): Promise<{ value: unknown; text: string }> {
  const { rows } = await h.sql.query("SELECT state AS value, state::text AS text FROM sessions WHERE session_id = $1", [sessionId]);
  return rows[0];
}

const createPath = SessionServiceService.createSession.path;
const updatePath = SessionServiceService.updateSession.path;
const getPath = SessionServiceService.getSession.path;

/** Creates a session from raw request bytes; checks the echo, the stored state and a read against ts-proto's path. */
async function createAndCheck(requestBytes: Uint8Array): Promise<string> {
  const decoded = wire.CreateSessionRequest.decode(readerWithRoom(requestBytes, 64)).session!.state;
  const expected = await throughJsonb(decoded);
  const created = readSession(await rawUnary(createPath, requestBytes));
  expect(created.state).toStrictEqual(expected.value);
  expect(await storedState(created.sessionId)).toStrictEqual(expected);
  const read = readSession(await rawUnary(getPath, wire.GetSessionRequest.encode(wire.GetSessionRequest.fromPartial({ sessionId: created.sessionId })).finish()));
  expect(read.state).toStrictEqual(expected.value);
  return created.sessionId;
}

/** Replaces a session's state; checks the echo, the stored state and a read against ts-proto's path. */
async function updateAndCheck(sessionId: string, state: Record<string, unknown>): Promise<void> {
  const request = wire.UpdateSessionRequest.fromPartial({ session: { sessionId, state }, updateMask: ["state"] });
  const bytes = wire.UpdateSessionRequest.encode(request).finish();
  const expected = await throughJsonb(wire.UpdateSessionRequest.decode(readerWithRoom(bytes, 64)).session!.state);
  const updated = readSession(await rawUnary(updatePath, bytes));
  expect(updated.state).toStrictEqual(expected.value);
  expect(await storedState(sessionId)).toStrictEqual(expected);
  const read = readSession(await rawUnary(getPath, wire.GetSessionRequest.encode(wire.GetSessionRequest.fromPartial({ sessionId })).finish()));
  expect(read.state).toStrictEqual(expected.value);
}

const createRequest = (state: Record<string, unknown>) =>
  wire.CreateSessionRequest.encode(wire.CreateSessionRequest.fromPartial({ sessionId: uid("large"), session: { agentId: "large", state } })).finish();

describe("large and awkward states round-trip as ts-proto's path stores and returns them", () => {
  const documents: [string, (version: number) => Record<string, unknown>][] = [
    ["many small values", manySmallValues],
    ["awkward values at the depth limit", awkward],
    ["256 KiB of strings", bigStrings],
  ];
  for (const [name, make] of documents) {
    it(`${name}: create, get, update, get`, async () => {
      const sessionId = await createAndCheck(createRequest(make(0)));
      await updateAndCheck(sessionId, make(1));
    });
  }

  it("a state_patch on a large state returns the merged state as stored", async () => {
    const sessionId = await createAndCheck(createRequest(manySmallValues(0)));
    const updated = await h.client.sessions.updateSession({ session: { sessionId }, statePatch: { version: 5, counters: { k1: null, extra: -0 } } });
    const stored = await storedState(sessionId);
    expect(updated.state).toStrictEqual(stored.value);
    expect((stored.value as { counters: Record<string, number> }).counters.extra).toBe(0);
  });

  it("a NaN deep inside many small values is named by its path, and nothing is written", async () => {
    const state = manySmallValues(0);
    (state.items as { score: number }[])[7]!.score = NaN;
    const sessionId = uid("nan");
    const f = await failure(h.client.sessions.createSession({ sessionId, session: { agentId: "large", state } }));
    expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(f.fields).toEqual(["session.state.items[7].score"]);
    expect(f.message).toContain("must be a finite number, not NaN");
    expect((await h.sql.query("SELECT 1 FROM sessions WHERE session_id = $1", [sessionId])).rowCount).toBe(0);
  });
});

// Struct bytes written by hand, for what ts-proto's encoder never produces.
const varint = (n: number): number[] => {
  const out: number[] = [];
  for (; n > 0x7f; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return out;
};
const field = (number: number, bytes: number[]): number[] => [...varint((number << 3) | 2), ...varint(bytes.length), ...bytes];
const text = (s: string): number[] => [...Buffer.from(s, "utf8")];
const double = (n: number): number[] => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(n);
  return [17, ...b];
};
const entry = (key: string, value: number[]): number[] => field(1, [...field(1, text(key)), ...field(2, value)]);
const stringValue = (s: string) => field(3, text(s));
const structValue = (...entries: number[][]) => field(5, entries.flat());
const listValue = (...values: number[][]) => field(6, values.flatMap((v) => field(1, v)));
const unknownVarint = (number: number, n: number) => [...varint(number << 3), ...varint(n)];

describe("Struct bytes ts-proto's encoder never writes are read as ts-proto reads them", () => {
  const cases: [string, number[]][] = [
    ["a repeated key keeps its first place and takes the last value", [...entry("a", stringValue("first")), ...entry("b", double(2)), ...entry("a", stringValue("last"))]],
    ["an entry without a value is dropped, without a key is the empty key", [...field(1, field(1, text("novalue"))), ...field(1, field(2, double(1))), ...entry("kept", double(3))]],
    ["unknown fields in Struct, entries and Values are skipped", [...unknownVarint(9, 7), ...field(1, [...field(1, text("u")), ...unknownVarint(5, 1), ...field(2, [...double(4), ...unknownVarint(12, 300)])])]],
    ["a Value with two kinds keeps the last", [...entry("two", [...stringValue("dropped"), ...double(5)]), ...entry("three", [...double(1), ...[32, 1], ...[8, 0]])]],
    ["a null_value other than 0 is null, a bool varint other than 1 is true", [...entry("n", [8, 5]), ...entry("b", [32, 2]), ...entry("f", [32, 0])]],
    ["nested structs and lists with empty Values", [...entry("s", structValue(entry("x", listValue(double(1), stringValue("y"), [8, 0], structValue())))), ...entry("l", listValue(listValue()))]],
    ["a __proto__ key is left out, as ts-proto leaves it", [...entry("__proto__", structValue(entry("p", double(1)))), ...entry("a", double(1))]],
  ];
  for (const [name, struct] of cases) {
    it(name, async () => {
      const session = [...field(2, text("wire")), ...field(7, struct)];
      await createAndCheck(Uint8Array.from([...field(1, session), ...field(2, text(uid("wire")))]));
    });
  }

  it("a state given twice in the session, and the session twice in the request, keep the last ones", async () => {
    const first = [...field(2, text("wire")), ...field(7, entry("which", stringValue("first")))];
    const second = [...field(2, text("wire")), ...field(7, entry("which", stringValue("second"))), ...field(7, entry("which", stringValue("third")))];
    const sessionId = await createAndCheck(Uint8Array.from([...field(1, first), ...field(2, text(uid("twice"))), ...field(1, second)]));
    expect((await storedState(sessionId)).value).toEqual({ which: "third" });
  });
});
