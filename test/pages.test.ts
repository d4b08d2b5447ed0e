// Byte-bounded pages (API.md "Limits and overload": a page ends at
// page_size items or CAIRN_MAX_PAGE_BYTES encoded, whichever comes first)
// and read masks (AIP-157) on the reads that return documents.
import {
  Decision,
  ListJobsResponse,
  ListMessagesResponse,
  ListResolutionsResponse,
  ListResponse,
  ListSessionEventsResponse,
  ListSessionsResponse,
  ListTraceEventsResponse,
} from "@cairn/client";
import { status } from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { collect } from "./support/streams.js";

const uid = (prefix: string) => `${prefix}-${randomUUID()}`;
/** A JSON string of about `bytes` bytes. */
const text = (bytes: number) => "x".repeat(bytes);

interface PageOf<T> {
  items: T[];
  nextPageToken: string;
  encodedBytes: number;
}

/** Every page of a listing, from the first until next_page_token is empty. */
async function allPages<T>(fetch: (pageToken: string) => Promise<PageOf<T>>): Promise<PageOf<T>[]> {
  const pages: PageOf<T>[] = [];
  let token = "";
  do {
    const page = await fetch(token);
    pages.push(page);
    token = page.nextPageToken;
  } while (token !== "" && pages.length < 100);
  return pages;
}

describe("with a small page byte bound", () => {
  const MAX_PAGE_BYTES = 20_000;
  /** Each row's document: about a fifth of a page. */
  const DOC = 3_000;
  const ROWS = 12;
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ limits: { maxPageBytes: MAX_PAGE_BYTES } as never });
  });
  afterAll(() => h?.stop());

  /**
   * Lists with page_size 1000 (far above ROWS), so only bytes can end a
   * page: every page fits the bound and holds more than one row, there is
   * more than one page, and the pages hold every row exactly once, in order.
   */
  async function expectCutByBytes<T>(expected: string[], idOf: (item: T) => string, fetch: (pageToken: string) => Promise<PageOf<T>>) {
    const pages = await allPages(fetch);
    expect(pages.length).toBeGreaterThan(1);
    for (const page of pages) expect(page.encodedBytes).toBeLessThanOrEqual(MAX_PAGE_BYTES);
    expect(pages.slice(0, -1).every((p) => p.items.length > 1)).toBe(true);
    expect(pages.flatMap((p) => p.items.map(idOf))).toEqual(expected);
  }

  it("ListSessions", async () => {
    const agentId = uid("agent");
    const ids: string[] = [];
    for (let i = 0; i < ROWS; i++) {
      ids.push((await h.client.sessions.createSession({ session: { agentId, state: { blob: text(DOC) } } })).sessionId);
    }
    await expectCutByBytes(ids, (s: { sessionId: string }) => s.sessionId, async (pageToken) => {
      const r = await h.client.sessions.listSessions({ filter: { agentId }, pageSize: 1000, pageToken });
      return { items: r.sessions, nextPageToken: r.nextPageToken, encodedBytes: ListSessionsResponse.encode(r).finish().length };
    });
  });

  it("ListMessages", async () => {
    const { sessionId } = await h.client.sessions.createSession({ session: { agentId: "a" } });
    for (let i = 0; i < ROWS; i++) await h.client.sessions.appendMessages({ sessionId, messages: [{ role: "user", content: text(DOC) }] });
    const sequences = Array.from({ length: ROWS }, (_, i) => String(i + 1));
    await expectCutByBytes(sequences, (m: { sequence: number }) => String(m.sequence), async (pageToken) => {
      const r = await h.client.sessions.listMessages({ sessionId, pageSize: 1000, pageToken });
      return { items: r.messages, nextPageToken: r.nextPageToken, encodedBytes: ListMessagesResponse.encode(r).finish().length };
    });
  });

  it("ListTraceEvents and ListSessionEvents", async () => {
    const traceId = uid("trace");
    const sessionId = uid("session");
    const events = Array.from({ length: ROWS }, (_, i) => ({ traceId, sessionId, eventId: `e${i}`, eventType: "step", payload: { blob: text(DOC) } }));
    await h.client.traces.appendEvents({ events });
    const ids = events.map((e) => e.eventId);
    await expectCutByBytes(ids, (e: { eventId: string }) => e.eventId, async (pageToken) => {
      const r = await h.client.traces.listTraceEvents({ traceId, pageSize: 1000, pageToken });
      return { items: r.events, nextPageToken: r.nextPageToken, encodedBytes: ListTraceEventsResponse.encode(r).finish().length };
    });
    await expectCutByBytes(ids, (e: { eventId: string }) => e.eventId, async (pageToken) => {
      const r = await h.client.traces.listSessionEvents({ sessionId, pageSize: 1000, pageToken });
      return { items: r.events, nextPageToken: r.nextPageToken, encodedBytes: ListSessionEventsResponse.encode(r).finish().length };
    });
  });

  it("ListResolutions", async () => {
    const agentId = uid("agent");
    const ids: string[] = [];
    for (let i = 0; i < ROWS; i++) {
      const r = await h.client.resolutions.createResolution({
        resolution: { requestId: `r${i}`, agentId, sessionId: "s", decision: Decision.DECISION_ALLOW, metadata: { blob: text(DOC) } },
      });
      ids.push(r.resolutionId);
    }
    // Newest first.
    await expectCutByBytes(ids.reverse(), (r: { resolutionId: string }) => r.resolutionId, async (pageToken) => {
      const r = await h.client.resolutions.listResolutions({ agentId, pageSize: 1000, pageToken });
      return { items: r.resolutions, nextPageToken: r.nextPageToken, encodedBytes: ListResolutionsResponse.encode(r).finish().length };
    });
  });

  it("KeyValue List", async () => {
    const prefix = `${uid("kv")}/`;
    const keys = Array.from({ length: ROWS }, (_, i) => `${prefix}${String(i).padStart(2, "0")}`);
    for (const key of keys) await h.client.keyValue.put({ entry: { key, value: { $case: "jsonValue", value: text(DOC) } } });
    await expectCutByBytes(keys, (e: { key: string }) => e.key, async (pageToken) => {
      const r = await h.client.keyValue.list({ prefix, pageSize: 1000, pageToken });
      return { items: r.entries, nextPageToken: r.nextPageToken, encodedBytes: ListResponse.encode(r).finish().length };
    });
  });

  it("ListJobs", async () => {
    const queue = uid("queue");
    const ids: string[] = [];
    for (let i = 0; i < ROWS; i++) ids.push((await h.client.jobs.enqueueJob({ job: { queue, payload: { blob: text(DOC) } } })).job!.jobId);
    await expectCutByBytes(ids, (j: { jobId: string }) => j.jobId, async (pageToken) => {
      const r = await h.client.jobs.listJobs({ queue, pageSize: 1000, pageToken });
      return { items: r.jobs, nextPageToken: r.nextPageToken, encodedBytes: ListJobsResponse.encode(r).finish().length };
    });
  });

  it("a row larger than the bound comes alone, and paging goes on past it", async () => {
    const agentId = uid("agent");
    const sizes = [100, 100, 3 * MAX_PAGE_BYTES, 100, 100];
    for (const size of sizes) await h.client.sessions.createSession({ session: { agentId, state: { blob: text(size) } } });
    const pages = await allPages(async (pageToken) => {
      const r = await h.client.sessions.listSessions({ filter: { agentId }, pageSize: 1000, pageToken });
      return { items: r.sessions, nextPageToken: r.nextPageToken, encodedBytes: 0 };
    });
    expect(pages.map((p) => p.items.map((s) => (s.state!.blob as string).length))).toEqual([[100, 100], [3 * MAX_PAGE_BYTES], [100, 100]]);
  });

  it("a page is measured as encoded: JSON numbers take more room on the wire than as text", async () => {
    const agentId = uid("agent");
    // About 2.4 KB as JSON text and about 13 KB encoded as a Struct.
    const numbers = Array.from({ length: 1200 }, () => 0);
    for (let i = 0; i < 6; i++) await h.client.sessions.createSession({ session: { agentId, state: { numbers } } });
    const pages = await allPages(async (pageToken) => {
      const r = await h.client.sessions.listSessions({ filter: { agentId }, pageSize: 1000, pageToken });
      return { items: r.sessions, nextPageToken: r.nextPageToken, encodedBytes: ListSessionsResponse.encode(r).finish().length };
    });
    for (const page of pages) expect(page.encodedBytes).toBeLessThanOrEqual(MAX_PAGE_BYTES);
    expect(pages.flatMap((p) => p.items)).toHaveLength(6);
  });

  it("page_size still ends a page first when it is smaller", async () => {
    const agentId = uid("agent");
    for (let i = 0; i < 3; i++) await h.client.sessions.createSession({ session: { agentId } });
    const first = await h.client.sessions.listSessions({ filter: { agentId }, pageSize: 2 });
    expect(first.sessions).toHaveLength(2);
    const second = await h.client.sessions.listSessions({ filter: { agentId }, pageSize: 2, pageToken: first.nextPageToken });
    expect(second.sessions).toHaveLength(1);
    expect(second.nextPageToken).toBe("");
  });

  it("a read mask that leaves the documents out also leaves them out of the page's bytes", async () => {
    const agentId = uid("agent");
    for (let i = 0; i < ROWS; i++) await h.client.sessions.createSession({ session: { agentId, state: { blob: text(DOC) } } });
    const full = await h.client.sessions.listSessions({ filter: { agentId }, pageSize: 1000 });
    expect(full.sessions.length).toBeLessThan(ROWS);
    const masked = await h.client.sessions.listSessions({ filter: { agentId }, pageSize: 1000, readMask: ["session_id", "status"] });
    expect(masked.sessions).toHaveLength(ROWS);
    expect(masked.nextPageToken).toBe("");
  });
});

describe("with the default page byte bound", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h?.stop());

  it("30 sessions of 400 KB state list in pages that fit the message limit", async () => {
    const agentId = uid("agent");
    const blob = text(400_000);
    for (let i = 0; i < 30; i++) await h.client.sessions.createSession({ session: { agentId, state: { blob } } });
    const pages = await allPages(async (pageToken) => {
      const r = await h.client.sessions.listSessions({ filter: { agentId }, pageToken });
      return { items: r.sessions, nextPageToken: r.nextPageToken, encodedBytes: ListSessionsResponse.encode(r).finish().length };
    });
    // CAIRN_MAX_PAGE_BYTES' default.
    for (const page of pages) expect(page.encodedBytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(pages.length).toBeGreaterThan(1);
    expect(pages.flatMap((p) => p.items)).toHaveLength(30);
  });

  it("SubscribeEvents delivers every large event once, in order, though one read holds only some of them", async () => {
    const traceId = uid("trace");
    // 8 × 300 KB: more than one tail read may hold.
    const events = Array.from({ length: 8 }, (_, i) => ({ traceId, eventId: `e${i}`, eventType: "step", payload: { i, blob: text(300_000) } }));
    for (const event of events) await h.client.traces.appendEvents({ events: [event] });
    const sub = collect(h.client.traces.subscribeEvents({ traceId }));
    const eventIds = () => sub.messages.flatMap((m) => (m.message?.$case === "event" ? [m.message.value.eventId] : []));
    await sub.until("every event", () => eventIds().length >= events.length);
    // A later event proves nothing more was coming for the first eight.
    await h.client.traces.appendEvents({ events: [{ traceId, eventId: "last", eventType: "step" }] });
    await sub.until("the last event", () => eventIds().includes("last"));
    sub.cancel();
    expect(eventIds()).toEqual([...events.map((e) => e.eventId), "last"]);
  });

  it("Watch delivers every large change once, in order, though one read holds only some of them", async () => {
    const prefix = `${uid("watch")}/`;
    const keys = Array.from({ length: 8 }, (_, i) => `${prefix}${i}`);
    let first = 0;
    for (const key of keys) {
      const entry = await h.client.keyValue.put({ entry: { key, value: { $case: "bytesValue", value: Buffer.alloc(300_000, 1) } } });
      first ||= entry.modRevision;
    }
    const watch = collect(h.client.keyValue.watch({ prefix, startRevision: first }));
    const changed = () => watch.messages.flatMap((m) => (m.message?.$case === "event" ? [m.message.value.entry!.key] : []));
    await watch.until("every change", () => changed().length >= keys.length);
    await h.client.keyValue.put({ entry: { key: `${prefix}last`, value: { $case: "jsonValue", value: 1 } } });
    await watch.until("the last change", () => changed().includes(`${prefix}last`));
    watch.cancel();
    expect(changed()).toEqual([...keys, `${prefix}last`]);
  });
});

describe("read masks", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h?.stop());

  it("ListSessions, GetSession and BatchGetSessions return only the masked fields", async () => {
    const agentId = uid("agent");
    const created = await h.client.sessions.createSession({ session: { agentId, labels: { a: "b" }, metadata: { m: 1 }, state: { s: 1 } } });
    const readMask = ["session_id", "status"];
    const listed = await h.client.sessions.listSessions({ filter: { agentId }, readMask });
    expect(listed.sessions).toHaveLength(1);
    const [session] = listed.sessions;
    expect(session).toMatchObject({ sessionId: created.sessionId, status: created.status, agentId: "", labels: {}, version: 0 });
    expect(session!.state).toBeUndefined();
    expect(session!.metadata).toBeUndefined();
    expect(session!.createTime).toBeUndefined();

    const got = await h.client.sessions.getSession({ sessionId: created.sessionId, readMask: ["state"] });
    expect(got).toMatchObject({ sessionId: "", state: { s: 1 } });
    expect(got.metadata).toBeUndefined();

    const batch = await h.client.sessions.batchGetSessions({ sessionIds: [created.sessionId], readMask: ["session_id", "labels"] });
    expect(batch.sessions[0]).toMatchObject({ sessionId: created.sessionId, labels: { a: "b" } });
    expect(batch.sessions[0]!.state).toBeUndefined();

    const all = await h.client.sessions.getSession({ sessionId: created.sessionId, readMask: ["*"] });
    expect(all).toEqual(created);
  });

  it("an unknown path is INVALID_ARGUMENT naming read_mask.paths[i]", async () => {
    const calls = [
      h.client.sessions.listSessions({ readMask: ["session_id", "nope"] }),
      h.client.sessions.getSession({ sessionId: "s", readMask: ["session_id", "nope"] }),
      h.client.traces.listTraceEvents({ traceId: "t", readMask: ["event_id", "payload.x"] }),
      h.client.keyValue.get({ key: "k", readMask: ["key", "value"] }),
      h.client.jobs.getJob({ jobId: "j", readMask: ["job_id", "nope"] }),
    ];
    for (const call of calls) {
      const f = await failure(call);
      expect(f.code).toBe(status.INVALID_ARGUMENT);
      expect(f.fields).toEqual(["read_mask.paths[1]"]);
    }
  });

  it("trace event listings leave the payload out unless it is masked in", async () => {
    const traceId = uid("trace");
    const sessionId = uid("session");
    await h.client.traces.appendEvents({ events: [{ traceId, sessionId, eventType: "step", payload: { big: true } }] });
    const listed = await h.client.traces.listTraceEvents({ traceId, readMask: ["event_id", "sequence"] });
    expect(listed.events[0]).toMatchObject({ sequence: 1, traceId: "" });
    expect(listed.events[0]!.payload).toBeUndefined();
    const bySession = await h.client.traces.listSessionEvents({ sessionId, readMask: ["payload"] });
    expect(bySession.events[0]).toMatchObject({ payload: { big: true }, sequence: 0, eventId: "" });
  });

  it("KeyValue Get, List and BatchGet: the value's oneof fields are paths of their own", async () => {
    const prefix = `${uid("kv")}/`;
    await h.client.keyValue.put({ entry: { key: `${prefix}json`, value: { $case: "jsonValue", value: { j: 1 } } } });
    await h.client.keyValue.put({ entry: { key: `${prefix}bytes`, value: { $case: "bytesValue", value: Buffer.from("b") } } });
    const listed = await h.client.keyValue.list({ prefix, readMask: ["key", "version"] });
    expect(listed.entries.map((e) => [e.key, e.version, e.value])).toEqual([
      [`${prefix}bytes`, 1, undefined],
      [`${prefix}json`, 1, undefined],
    ]);
    const jsonOnly = await h.client.keyValue.batchGet({ keys: [`${prefix}json`, `${prefix}bytes`], readMask: ["key", "json_value"] });
    expect(jsonOnly.entries.map((e) => [e.key, e.value])).toEqual([
      [`${prefix}json`, { $case: "jsonValue", value: { j: 1 } }],
      [`${prefix}bytes`, undefined],
    ]);
    const got = await h.client.keyValue.get({ key: `${prefix}bytes`, readMask: ["bytes_value"] });
    expect(got).toMatchObject({ key: "", value: { $case: "bytesValue", value: Buffer.from("b") } });
  });

  it("BatchEnqueueJobs with read_mask job_id,state echoes only those; GetJob and ListJobs take masks too", async () => {
    const queue = uid("queue");
    const out = await h.client.jobs.batchEnqueueJobs({
      requests: [{ job: { queue, payload: { p: 1 } } }, { job: { queue, payload: { p: 2 } } }],
      readMask: ["job_id", "state"],
    });
    expect(out.jobs).toHaveLength(2);
    for (const job of out.jobs) {
      expect(job.jobId).not.toBe("");
      expect(job.state).not.toBe(0);
      expect(job).toMatchObject({ queue: "", priority: 0, attempt: 0 });
      expect(job.payload).toBeUndefined();
      expect(job.createTime).toBeUndefined();
    }
    const got = await h.client.jobs.getJob({ jobId: out.jobs[0]!.jobId, readMask: ["payload"] });
    expect(got).toMatchObject({ jobId: "", payload: { p: 1 } });
    const listed = await h.client.jobs.listJobs({ queue, readMask: ["job_id"] });
    expect(listed.jobs.map((j) => j.jobId)).toEqual(out.jobs.map((j) => j.jobId));
    expect(listed.jobs.every((j) => j.payload === undefined && j.queue === "")).toBe(true);
  });
});
