// The plain google.protobuf.Struct codec (clients/typescript/src/struct-codec.ts,
// document-fields.ts, wired in decode.ts) against ts-proto's, on seeded
// random documents and on random, hand-written and corrupted request bytes:
// every request must decode to what the generated code gives (the same
// values, key order, prototypes and errors), and every response must decode
// to what ts-proto's encoding of it decodes to (-0 written as 0, as jsonb
// stores it).
import * as wire from "@cairn/client";
import { isDeepStrictEqual } from "node:util";
import { describe, expect, it } from "vitest";
import { requestDeserializer, responseSerializer, UndecodableRequest } from "../../src/grpc/decode.js";
import { readerWithRoom, startingDepth } from "../../src/grpc/deep-decode.js";

const DEPTH = 64;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** mulberry32: a small seeded PRNG, so a failing case can be replayed. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

interface Decoder {
  decode(input: ReturnType<typeof readerWithRoom>): unknown;
}

/** The request as the generated code alone decodes it ("error" when it throws). */
function generatedDecode(type: Decoder, bytes: Uint8Array): unknown {
  try {
    return type.decode(readerWithRoom(bytes, DEPTH, (b) => strictUtf8.decode(b)));
  } catch {
    return "error";
  }
}

function sameAsGenerated(path: string, type: Decoder, bytes: Uint8Array): boolean {
  const expected = generatedDecode(type, bytes);
  // A "__proto__" key gives the generated code's result a prototype of its own per decode: compare like with like.
  if (!isDeepStrictEqual(expected, generatedDecode(type, bytes))) return true;
  const got = requestDeserializer(path, DEPTH)(Buffer.from(bytes));
  return isDeepStrictEqual(got instanceof UndecodableRequest ? "error" : got, expected);
}

const KEYS = ["", "a", "b", "é", "日本", "😀", "1", "10", "__proto__", "constructor", "x".repeat(40)];
const STRINGS = ["", "a", "é", "日本語", "😀", "\u0000", "line\nbreak", "x".repeat(70), "é".repeat(40), "\ud800"];
const NUMBERS = [0, -0, 1, -1.5, 1e21, 2 ** 53 + 2, 5e-324, 1.7976931348623157e308, NaN, Infinity, -Infinity];

function randomValue(r: (n: number) => number, depth: number): unknown {
  switch (r(depth > 4 ? 5 : 7)) {
    case 0:
      return null;
    case 1:
      return STRINGS[r(STRINGS.length)];
    case 2:
      return NUMBERS[r(NUMBERS.length)];
    case 3:
      return r(2) === 0;
    case 4:
      return undefined;
    case 5:
      return randomObject(r, depth + 1);
    default:
      return Array.from({ length: r(4) }, () => randomValue(r, depth + 1));
  }
}

function randomObject(r: (n: number) => number, depth: number): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (let i = r(5); i > 0; i--) object[KEYS[r(KEYS.length)]!] = randomValue(r, depth);
  return object;
}

// Wire bytes by hand.
const varint = (n: number): number[] => {
  const out: number[] = [];
  for (; n > 0x7f; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return out;
};
const field = (number: number, bytes: number[]): number[] => [...varint((number << 3) | 2), ...varint(bytes.length), ...bytes];
const text = (s: string): number[] => [...Buffer.from(s, "utf8")];

function randomWireValue(r: (n: number) => number, depth: number): number[] {
  const out: number[] = [];
  for (let kinds = r(3) === 0 ? 2 : 1; kinds > 0; kinds--) {
    switch (r(depth > 3 ? 5 : 7)) {
      case 0:
        out.push(8, ...varint(r(3)));
        break;
      case 1: {
        const b = Buffer.alloc(8);
        b.writeDoubleLE(NUMBERS[r(NUMBERS.length)]!);
        out.push(17, ...b);
        break;
      }
      case 2:
        out.push(...field(3, r(10) ? text(STRINGS[r(STRINGS.length)]!) : [0xff, 0xfe]));
        break;
      case 3:
        out.push(32, ...(r(4) ? varint(r(3)) : [0x80, 0x01]));
        break;
      case 4:
        if (r(3) === 0) out.push(...varint(9 << 3), 5); // an unknown field
        break;
      case 5:
        out.push(...field(5, randomWireStruct(r, depth + 1)));
        break;
      default:
        out.push(...field(6, Array.from({ length: r(4) }, () => field(1, randomWireValue(r, depth + 1))).flat()));
    }
  }
  if (r(40) === 0) out.push(...varint(1 << 3), 0); // a known field with another wire type
  return out;
}

function randomWireStruct(r: (n: number) => number, depth: number): number[] {
  const out: number[] = [];
  for (let i = r(4); i > 0; i--) {
    const entry: number[] = [];
    if (r(8)) entry.push(...field(1, text(KEYS[r(KEYS.length)]!)));
    if (r(8)) entry.push(...field(2, randomWireValue(r, depth)));
    if (r(10) === 0) entry.push(...field(1, text("again")));
    if (r(20) === 0) entry.push(...varint((7 << 3) | 5), 1, 2, 3, 4);
    out.push(...field(1, entry));
  }
  if (r(30) === 0) out.push(...varint((3 << 3) | 1), 1, 2, 3, 4, 5, 6, 7, 8);
  if (r(100) === 0) out.push(0);
  return out;
}

function randomWireSession(r: (n: number) => number): number[] {
  const out = field(2, text("agent"));
  for (let i = r(3); i > 0; i--) out.push(...field(7, randomWireStruct(r, 0)));
  if (r(2)) out.push(...field(6, randomWireStruct(r, 0)));
  if (r(4) === 0) out.push(...field(9, [...varint(1 << 3), ...varint(r(1000))])); // create_time
  return out;
}

function corrupt(r: (n: number) => number, bytes: number[]): Uint8Array {
  const out = Uint8Array.from(bytes);
  for (let c = r(4) === 0 ? 1 + r(3) : 0; c > 0 && out.length > 0; c--) out[r(out.length)] = r(256);
  return r(20) === 0 ? out.subarray(0, r(out.length + 1)) : out;
}

const CREATE = "/cairn.v1.SessionService/CreateSession";
const BATCH = "/cairn.v1.SessionService/BatchCreateSessions";
const UPDATE = "/cairn.v1.SessionService/UpdateSession";

describe("requests decode as the generated code decodes them", () => {
  it("random documents encoded by ts-proto", () => {
    const r = prng(1);
    const bad: string[] = [];
    const plan = wire.documentsOf(CREATE, "input")!;
    let plain = 0;
    for (let i = 0; i < 3000 && bad.length < 3; i++) {
      const session = wire.Session.fromPartial({ agentId: "a" });
      const request = { sessionId: "", requestId: "", session: { ...session, state: randomObject(r, 0), metadata: randomObject(r, 0) } };
      const bytes = wire.CreateSessionRequest.encode(request).finish();
      if (!sameAsGenerated(CREATE, wire.CreateSessionRequest, bytes)) bad.push(Buffer.from(bytes).toString("hex"));
      // The plain reader itself, not the generated fallback, reads what ts-proto wrote (but for "__proto__" keys).
      if (wire.decodeWithDocuments(plan, Buffer.from(bytes), startingDepth(DEPTH), (b) => generatedDecode(wire.CreateSessionRequest, b)) !== undefined) plain++;
    }
    expect(bad).toEqual([]);
    expect(plain).toBeGreaterThan(2000);
  });

  it("random, repeated, unknown and corrupted Struct bytes, in single and batched requests", () => {
    const r = prng(2);
    const bad: string[] = [];
    for (let i = 0; i < 3000 && bad.length < 3; i++) {
      const request = corrupt(r, [...(r(2) ? field(1, randomWireSession(r)) : []), ...(r(4) === 0 ? field(1, randomWireSession(r)) : []), ...field(3, text("r"))]);
      const batch = Uint8Array.from([...field(1, [...request]), ...field(1, [...request])]);
      const update = corrupt(r, [...field(1, randomWireSession(r)), ...field(5, randomWireStruct(r, 0))]);
      if (!sameAsGenerated(CREATE, wire.CreateSessionRequest, request)) bad.push(`create ${Buffer.from(request).toString("hex")}`);
      if (!sameAsGenerated(BATCH, wire.BatchCreateSessionsRequest, batch)) bad.push(`batch ${Buffer.from(batch).toString("hex")}`);
      if (!sameAsGenerated(UPDATE, wire.UpdateSessionRequest, update)) bad.push(`update ${Buffer.from(update).toString("hex")}`);
    }
    expect(bad).toEqual([]);
  });

  it("nesting around the depth limit, in objects and in lists", () => {
    for (let levels = 58; levels < 72; levels++) {
      let objects: number[] = [];
      for (let i = 0; i < levels; i++) objects = field(1, [...field(1, text("a")), ...field(2, field(5, objects))]);
      let lists: number[] = [];
      for (let i = 0; i < levels * 1.5; i++) lists = field(1, field(6, lists));
      const listState = field(1, [...field(1, text("l")), ...field(2, field(6, lists))]);
      expect(sameAsGenerated(CREATE, wire.CreateSessionRequest, Uint8Array.from(field(1, field(7, objects)))), `objects ${levels}`).toBe(true);
      expect(sameAsGenerated(CREATE, wire.CreateSessionRequest, Uint8Array.from(field(1, field(7, listState)))), `lists ${levels}`).toBe(true);
    }
  });
});

/** `value` with every -0 made 0, as a stored document has it. */
function withoutNegativeZero(value: unknown): unknown {
  if (value === 0) return 0;
  if (Array.isArray(value)) return value.map(withoutNegativeZero);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withoutNegativeZero(v)]));
  return value;
}

describe("responses encode as ts-proto encodes them", () => {
  it("random documents, in a Session and in a batch of them", () => {
    const r = prng(3);
    const one = responseSerializer("/cairn.v1.SessionService/GetSession", () => Buffer.alloc(0));
    const many = responseSerializer(BATCH, () => Buffer.alloc(0));
    const decode = (bytes: Uint8Array) => wire.Session.decode(readerWithRoom(bytes, DEPTH));
    for (let i = 0; i < 2000; i++) {
      const session = { ...wire.Session.fromPartial({ sessionId: `s${i}`, agentId: "a", labels: { k: "v" }, version: 3 }), state: randomObject(r, 0) };
      if (r(2)) session.metadata = randomObject(r, 0);
      const expected = withoutNegativeZero(decode(wire.Session.encode(session).finish()));
      const bytes = one(session);
      expect(bytes.length).toBe(wire.Session.encode(session).finish().length);
      // node's comparison, not toStrictEqual, which reads a "constructor" key as the object's class.
      expect(isDeepStrictEqual(decode(bytes), expected), `session ${i}`).toBe(true);
      const batch = wire.BatchCreateSessionsResponse.decode(readerWithRoom(many({ sessions: [session, session] }), DEPTH));
      expect(isDeepStrictEqual(batch.sessions, [expected, expected]), `batch ${i}`).toBe(true);
    }
  });
});

describe("the TypeScript client's side (documents.ts): what ts-proto would send and read", () => {
  it("random documents, in requests it writes and responses it reads", () => {
    const r = prng(4);
    const write = wire.documentsOf(CREATE, "input")!;
    const read = wire.documentsOf("/cairn.v1.SessionService/GetSession", "output")!;
    const decodeRequest = (bytes: Uint8Array) => wire.CreateSessionRequest.decode(readerWithRoom(bytes, DEPTH));
    const decodeSession = (bytes: Uint8Array) => wire.Session.decode(readerWithRoom(bytes, DEPTH));
    let plain = 0;
    for (let i = 0; i < 1000; i++) {
      const request = wire.CreateSessionRequest.fromPartial({ requestId: `r${i}`, session: { agentId: "a", state: randomObject(r, 0), metadata: randomObject(r, 0) } });
      const expected = withoutNegativeZero(decodeRequest(wire.CreateSessionRequest.encode(request).finish()));
      expect(isDeepStrictEqual(decodeRequest(wire.encodeWithDocuments(write, request)), expected), `request ${i}`).toBe(true);
      const session = { ...wire.Session.fromPartial({ sessionId: `s${i}`, agentId: "a" }), state: randomObject(r, 0) };
      const bytes = Buffer.from(wire.Session.encode(session).finish());
      const got = wire.decodeWithDocuments(read, bytes, -900, decodeSession);
      // ts-proto's bytes read the plain way (but for "__proto__" keys, which go back to it).
      if (got !== undefined) plain++;
      expect(isDeepStrictEqual(got ?? decodeSession(bytes), decodeSession(bytes)), `response ${i}`).toBe(true);
    }
    expect(plain).toBeGreaterThan(700);
  });
});
