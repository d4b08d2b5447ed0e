import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { Violations, checkFilterList, checkLabels, checkReference, checkText, longerThan } from "../../src/grpc/validate.js";

const limits = loadConfig([], {}).limits;

function violations(check: (v: Violations) => void) {
  const v = new Violations();
  check(v);
  return v.list;
}

describe("checkReference", () => {
  it.each(["alice@example.com", "team/planner", "user:42", "Zoë 😀", "x".repeat(256), "😀".repeat(256)])("accepts %j", (value) => {
    expect(violations((v) => checkReference(v, "agent_id", value, true))).toEqual([]);
  });

  it.each([
    ["x".repeat(257), /at most 256/],
    ["😀".repeat(257), /at most 256/],
    ["a\u0000b", /control characters/],
    ["tab\there", /control characters/],
    ["del\u007f", /control characters/],
    ["c1\u0085", /control characters/],
  ])("refuses %j, naming the field", (value, description) => {
    expect(violations((v) => checkReference(v, "worker_id", value, false))).toEqual([{ field: "worker_id", description: expect.stringMatching(description) }]);
  });

  it("empty is a violation only when required", () => {
    expect(violations((v) => checkReference(v, "user_id", "", false))).toEqual([]);
    expect(violations((v) => checkReference(v, "role", "", true))).toEqual([{ field: "role", description: "is required" }]);
  });
});

it("longerThan counts characters (code points), not UTF-16 units", () => {
  expect(longerThan("😀".repeat(3), 3)).toBe(false);
  expect(longerThan("😀".repeat(4), 3)).toBe(true);
  expect(longerThan("abcd", 3)).toBe(true);
  expect(longerThan("\udc00\udc00\udc00", 3)).toBe(false);
});

it("checkText refuses U+0000", () => {
  expect(violations((v) => checkText(v, "error.message", "boom\u0000", 100))).toEqual([{ field: "error.message", description: expect.stringMatching(/U\+0000/) }]);
  expect(violations((v) => checkText(v, "error.message", "boom", 100))).toEqual([]);
});

describe("checkLabels", () => {
  it("accepts keys of 63 and values of 256 characters", () => {
    expect(violations((v) => checkLabels(v, "session.labels", { ["k".repeat(63)]: "v".repeat(256) }, limits))).toEqual([]);
  });

  it("refuses longer keys and values, empty keys and U+0000, naming the label", () => {
    const list = violations((v) =>
      checkLabels(v, "session.labels", { ["k".repeat(64)]: "v", long: "v".repeat(257), "": "x", "n\u0000": "v", nul: "\u0000" }, limits),
    );
    expect(list.map((x) => x.field)).toEqual([
      `session.labels["${"k".repeat(64)}"]`,
      'session.labels["long"]',
      'session.labels[""]',
      'session.labels["n\\u0000"]',
      'session.labels["nul"]',
    ]);
  });

  it("refuses more than limits.maxLabels labels, naming the field and the limit", () => {
    const labels = Object.fromEntries(Array.from({ length: limits.maxLabels + 1 }, (_, i) => [`k${i}`, "v"]));
    expect(violations((v) => checkLabels(v, "session.labels", labels, limits))).toEqual([
      { field: "session.labels", description: `has ${limits.maxLabels + 1} labels; the limit is ${limits.maxLabels}` },
    ]);
  });

  it("shortens a huge key in the field path", () => {
    const [violation] = violations((v) => checkLabels(v, "session.labels", { ["k".repeat(100_000)]: "v" }, limits));
    expect(violation!.field.length).toBeLessThan(100);
  });
});

it("checkFilterList allows limits.maxFilterItems items and names the field and the limit past it", () => {
  expect(violations((v) => checkFilterList(v, "filter.statuses", limits.maxFilterItems, limits))).toEqual([]);
  expect(violations((v) => checkFilterList(v, "filter.statuses", limits.maxFilterItems + 1, limits))).toEqual([
    { field: "filter.statuses", description: `has ${limits.maxFilterItems + 1} items; the limit is ${limits.maxFilterItems}` },
  ]);
});
