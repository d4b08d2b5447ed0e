import { expect, it } from "vitest";
import { CairnError } from "../../src/errors.js";
import { decodePageToken, encodePageToken, pageSize, paginate } from "../../src/grpc/pagination.js";

it("page sizes default to 50 and clamp to 1000", () => {
  expect(pageSize(0)).toBe(50);
  expect(pageSize(7)).toBe(7);
  expect(pageSize(10_000)).toBe(1000);
  expect(() => pageSize(-1)).toThrow(CairnError);
});

it("a token round-trips its key under the same filter only", () => {
  const filter = { agentId: "a", statuses: ["ACTIVE"] };
  const token = encodePageToken(filter, ["2026-01-01T00:00:00.000001Z", "id-1"]);
  expect(decodePageToken(token, { statuses: ["ACTIVE"], agentId: "a" })).toEqual(["2026-01-01T00:00:00.000001Z", "id-1"]);
  expect(() => decodePageToken(token, { agentId: "b", statuses: ["ACTIVE"] })).toThrow(/different filter/);
  expect(() => decodePageToken("%%%", filter)).toThrow(/not a token/);
  expect(decodePageToken("", filter)).toBeUndefined();
});

it("paginate tells whether more rows follow from limit + 1 rows", () => {
  const rows = [1, 2, 3];
  expect(paginate(rows, 3, {}, (n) => [n]).nextPageToken).toBe("");
  const { page, nextPageToken } = paginate(rows, 2, {}, (n) => [n]);
  expect(page).toEqual([1, 2]);
  expect(decodePageToken(nextPageToken, {})).toEqual([2]);
});
