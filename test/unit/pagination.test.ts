import { expect, it } from "vitest";
import { decodePageToken, encodePageToken, pageSize, paginate } from "../../src/grpc/pagination.js";
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
  expect(decodePageToken(token, { statuses: ["ACTIVE"], agentId: "a" }, ["string", "string"])).toEqual(["2026-01-01T00:00:00.000001Z", "id-1"]);
  expect(() => decodePageToken(token, { agentId: "b", statuses: ["ACTIVE"] }, ["string", "string"])).toThrow(/different filter/);
  expect(() => decodePageToken("%%%", filter, ["string"])).toThrow(/not a token/);
  expect(decodePageToken("", filter, ["string"])).toBeUndefined();
});

it("a token whose key has another shape is not one this server issued", () => {
  const token = encodePageToken({}, ["a", 1]);
  expect(decodePageToken(token, {}, ["string", "number"])).toEqual(["a", 1]);
  expect(() => decodePageToken(token, {}, ["string", "string"])).toThrow(/not a token/);
  expect(() => decodePageToken(token, {}, ["string"])).toThrow(/not a token/);
});

it("paginate tells whether more rows follow from limit + 1 rows", () => {
  const rows = [1, 2, 3];
  expect(paginate(rows, 3, {}, (n) => [n]).nextPageToken).toBe("");
  const { page, nextPageToken } = paginate(rows, 2, {}, (n) => [n]);
  expect(page).toEqual([1, 2]);
  expect(decodePageToken(nextPageToken, {}, ["number"])).toEqual([2]);
});
