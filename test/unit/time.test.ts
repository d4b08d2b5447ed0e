import { expect, it } from "vitest";
import { epochMicrosToIso, isoToEpochMicros, parsePgTimestamptz } from "../../src/time.js";
import { isoFromTimestamp, timestampFromIso } from "../../src/grpc/convert.js";

it("parses PostgreSQL timestamptz text into six-digit RFC 3339", () => {
  expect(parsePgTimestamptz("2026-11-22 08:20:29.123456+00")).toBe("2026-11-22T08:20:29.123456Z");
  expect(parsePgTimestamptz("2026-11-22 08:20:29.1+00")).toBe("2026-11-22T08:20:29.100000Z");
  expect(parsePgTimestamptz("2026-11-22 08:20:29+00")).toBe("2026-11-22T08:20:29.000000Z");
  expect(() => parsePgTimestamptz("2026-11-22 08:20:29+02")).toThrow(/TimeZone/);
});

it("converts between Timestamps and time strings without losing microseconds", () => {
  const ts = { seconds: 1_795_336_158, nanos: 123_456_789 };
  const iso = isoFromTimestamp(ts, "t")!;
  expect(iso).toBe("2026-11-22T08:29:18.123456Z");
  expect(timestampFromIso(iso)).toEqual({ seconds: 1_795_336_158, nanos: 123_456_000 });
  expect(epochMicrosToIso(isoToEpochMicros(iso))).toBe(iso);
  const beforeEpoch = isoFromTimestamp({ seconds: -1, nanos: 500_000_000 }, "t")!;
  expect(beforeEpoch).toBe("1969-12-31T23:59:59.500000Z");
  expect(timestampFromIso(beforeEpoch)).toEqual({ seconds: -1, nanos: 500_000_000 });
});

it("rejects Timestamps outside RFC 3339's range, naming the field", () => {
  expect(() => isoFromTimestamp({ seconds: 253402300800, nanos: 0 }, "filter.created_after")).toThrow(/filter.created_after/);
  expect(() => isoFromTimestamp({ seconds: 0, nanos: -1 }, "x")).toThrow(/nanos/);
});
