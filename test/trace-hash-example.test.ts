// The README's worked hash example is right: recomputed here from its own
// text with nothing but SHA-256, matched by Cairn's canonicalization, and
// produced by a running daemon for the same two events.
import { Severity } from "@cairn/client";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { canonicalEvent } from "../src/traces/hash.js";
import { type Harness, startHarness } from "./support/harness.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const block = readme.slice(readme.indexOf("<!-- hash-example:start -->"), readme.indexOf("<!-- hash-example:end -->"));
const line = (label: string) => block.split("\n").find((l) => l.startsWith(`${label}: `))!.slice(label.length + 2);
const example = {
  canonical1: line("canonical 1"),
  hash1: line("event_hash 1"),
  canonical2: line("canonical 2"),
  hash2: line("event_hash 2"),
};
const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

const first = {
  traceId: "trace-42",
  eventId: "evt-0001",
  sessionId: "session-7",
  eventType: "tool.call",
  time: "2026-11-22T08:20:29.123456Z",
  payload: { tool: "search", args: { q: "cairn", limit: 5 }, ok: true },
};
const second = { ...first, eventId: "evt-0002", eventType: "tool.result", payload: { hits: 3 } };

it("the README's hashes follow from its canonical JSON", () => {
  expect(sha256("" + example.canonical1)).toBe(example.hash1);
  expect(sha256(example.hash1 + example.canonical2)).toBe(example.hash2);
});

it("Cairn canonicalizes the example events to exactly those bytes", () => {
  expect(canonicalEvent({ ...first, sequence: 1, severity: "SEVERITY_INFO" })).toBe(example.canonical1);
  expect(canonicalEvent({ ...second, sequence: 2, severity: "SEVERITY_INFO" })).toBe(example.canonical2);
});

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

it("a daemon stores the example events with those hashes", async () => {
  const time = { seconds: Date.parse("2026-11-22T08:20:29Z") / 1000, nanos: 123_456_000 };
  await h.client.traces.appendEvents({
    events: [first, second].map((e) => ({ ...e, severity: Severity.SEVERITY_INFO, time })),
  });
  const { events } = await h.client.traces.listTraceEvents({ traceId: "trace-42" });
  expect(events.map((e) => [e.prevHash, e.eventHash])).toEqual([
    ["", example.hash1],
    [example.hash1, example.hash2],
  ]);
});
