import { expect, it } from "vitest";
import { decodePageToken, encodePageToken, pageResponse, pageSize } from "../../src/grpc/pagination.js";
import { Violations } from "../../src/grpc/validate.js";

it("page sizes default to 50 and clamp to 1000; a negative one is a violation", () => {
  const v = new Violations();
  expect(pageSize(v, 0)).toBe(50);
  expect(pageSize(v, 7)).toBe(7);
  expect(pageSize(v, 10_000)).toBe(1000);
  expect(v.list).toEqual([]);
  pageSize(v, -1);
  expect(v.list).toEqual([{ field: "page_size", description: "must not be negative" }]);
});

it("a token round-trips its key under the same filter only", () => {
  const filter = { agentId: "a", statuses: ["ACTIVE"] };
  const token = encodePageToken(filter, ["2026-01-01T00:00:00.000001Z", "id-1"]);
  expect(decodePageToken(token, { statuses: ["ACTIVE"], agentId: "a" }, ["time", "id"])).toEqual(["2026-01-01T00:00:00.000001Z", "id-1"]);
  expect(() => decodePageToken(token, { agentId: "b", statuses: ["ACTIVE"] }, ["time", "id"])).toThrow(/different filter/);
  expect(() => decodePageToken("%%%", filter, ["id"])).toThrow(/not a token/);
  expect(decodePageToken("", filter, ["id"])).toBeUndefined();
});

it("a token whose key has another shape is not one this server issued", () => {
  const token = encodePageToken({}, ["a", 1]);
  expect(decodePageToken(token, {}, ["id", "number"])).toEqual(["a", 1]);
  expect(() => decodePageToken(token, {}, ["id", "id"])).toThrow(/not a token/);
  expect(() => decodePageToken(token, {}, ["id"])).toThrow(/not a token/);
});

it("a forged token's key parts are checked as strictly as the SQL they feed needs", () => {
  const forged = (key: unknown[]) => encodePageToken({}, key);
  expect(() => decodePageToken(forged(["not a time", "x"]), {}, ["time", "id"])).toThrow(/not a token/);
  expect(() => decodePageToken(forged(["2026-13-45T99:00:00.000000Z", "x"]), {}, ["time", "id"])).toThrow(/not a token/);
  expect(() => decodePageToken(forged(["2024-02-30T00:00:00.000000Z", "x"]), {}, ["time", "id"])).toThrow(/not a token/);
  expect(() => decodePageToken(forged(["0000-01-01T00:00:00.000000Z", "x"]), {}, ["time", "id"])).toThrow(/not a token/);
  expect(() => decodePageToken(forged(["2026-01-01T00:00:00.000001Z", "a\u0000b"]), {}, ["time", "id"])).toThrow(/not a token/);
  expect(() => decodePageToken(forged([1e308]), {}, ["number"])).toThrow(/not a token/);
  expect(() => decodePageToken(forged([1.5]), {}, ["number"])).toThrow(/not a token/);
});

/** Items whose encoding is as long as the string. */
const strings = { encode: (w: string) => ({ finish: () => new Uint8Array(w.length) }) };
const options = (maxBytes: number) => ({ bound: {}, keyOf: (n: number) => [n], toWire: (n: number) => "x".repeat(n), encoder: strings, maxBytes });

it("a page has a next token, from its last item, exactly when more rows follow", () => {
  expect(pageResponse({ items: [1, 2], more: false, bytes: 10 }, options(1 << 20)).nextPageToken).toBe("");
  const { items, nextPageToken } = pageResponse({ items: [1, 2], more: true, bytes: 10 }, options(1 << 20));
  expect(items).toEqual(["x", "xx"]);
  expect(decodePageToken(nextPageToken, {}, ["number"])).toEqual([2]);
});

it("a page whose encoding would pass the byte bound is cut again where items stop fitting", () => {
  // SQL measured little (JSON text), but each item encodes to 40 KB.
  const page = { items: [40_000, 40_000, 40_000, 40_000], more: false, bytes: 30_000 };
  const { items, nextPageToken } = pageResponse(page, options(100_000));
  expect(items.map((w) => w.length)).toEqual([40_000, 40_000]);
  expect(decodePageToken(nextPageToken, {}, ["number"])).toEqual([40_000]);
});

it("the first item comes alone even when it alone passes the byte bound", () => {
  const { items, nextPageToken } = pageResponse({ items: [5_000, 5], more: false, bytes: 5_005 }, options(2_000));
  expect(items.map((w) => w.length)).toEqual([5_000]);
  expect(decodePageToken(nextPageToken, {}, ["number"])).toEqual([5_000]);
});
