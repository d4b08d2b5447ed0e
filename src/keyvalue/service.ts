// KeyValueService handlers: validate, convert, call the store; Watch tails
// the change log with the same catch-up-then-live machinery as traces.
import {
  type CountRequest,
  type DeleteRequest,
  Entry,
  type IncrementRequest,
  KeyValueServiceService,
  type ListRequest,
  type PutRequest,
  WatchEventType,
  WatchResponse,
} from "@cairn/client";
import type { Limits } from "../config.js";
import { CHANNELS } from "../db/notify-hub.js";
import { tail } from "../db/tail.js";
import { streamRoom, writeMessage } from "../grpc/streams.js";
import { positiveDurationMicros, timestampFromIso } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageResponse, pageSize } from "../grpc/pagination.js";
import { maskedResource, parseReadMask, type ReadMask } from "../grpc/read-mask.js";
import { Violations, checkBatchSize, checkDocument, checkId, checkUnique } from "../grpc/validate.js";
import { ChangeFeed } from "./feed.js";
import * as store from "./store.js";
import type { ChangeType, EntryFilter, EntryRecord, FeedChange, KvValue } from "./store.js";
import { type IncrementItem, type PutItem, WriteBatcher, putAll } from "./writes.js";

const WATCH_EVENT_TYPES = enumCodec<WatchEventType, ChangeType>(WatchEventType, "WATCH_EVENT_TYPE_");

const ENTRY_FIELDS = maskedResource(Entry, { value: ["bytes_value", "json_value"] });

/** A read mask without either value field: the store need not read values at all. */
const valueMasked = (mask: ReadMask<Entry>) => !mask.includes("bytes_value") && !mask.includes("json_value");

/** An entry as the wire carries it (Put, Get, List, Watch, and Commit's results). */
export function toWireEntry(e: EntryRecord): Entry {
  return {
    key: e.key,
    value:
      e.value === undefined
        ? undefined
        : e.value.kind === "bytes"
          ? { $case: "bytesValue", value: e.value.bytes }
          : { $case: "jsonValue", value: e.value.json },
    version: e.version,
    modRevision: e.modRevision,
    sessionId: e.sessionId,
    createTime: timestampFromIso(e.createTime),
    updateTime: timestampFromIso(e.updateTime),
    expireTime: timestampFromIso(e.expireTime),
  };
}

/** A change as Watch sends it, encoded once for every watcher. */
function encodeChange(change: FeedChange): Buffer {
  const event = { type: WATCH_EVENT_TYPES.toWire(change.type), entry: toWireEntry(change.entry), revision: change.revision };
  return Buffer.from(WatchResponse.encode({ message: { $case: "event", value: event } }).finish());
}

/** A key (or, with allowEmpty, a prefix): required, at most limits.maxKeyBytes, without NUL. */
export function checkKey(v: Violations, field: string, key: string, limits: Limits, allowEmpty = false): void {
  if (key === "") {
    if (!allowEmpty) v.add(field, "is required");
    return;
  }
  const bytes = Buffer.byteLength(key, "utf8");
  if (bytes > limits.maxKeyBytes) v.add(field, `is ${bytes} bytes; the limit is ${limits.maxKeyBytes}`);
  if (key.includes("\u0000")) v.add(field, "must not contain NUL characters");
}

function ttlMicros(v: Violations, field: string, ttl: { seconds: number; nanos: number } | undefined): number | null {
  return ttl ? v.collect(() => positiveDurationMicros(ttl, field)) : null;
}

function checkExpectedVersion(v: Violations, field: string, expected: number | undefined): void {
  if (expected !== undefined && expected < 0) v.add(field, "must not be negative (0 means: must not exist)");
}

/** Put's request, validated (field paths prefixed with `at`) and converted for putEntry / putAll. */
export function planPut(v: Violations, request: PutRequest, at: string, limits: Limits): PutItem {
  const entry = request.entry;
  if (!entry) {
    v.add(`${at}entry`, "is required");
    return undefined as never;
  }
  checkKey(v, `${at}entry.key`, entry.key, limits);
  checkId(v, `${at}entry.session_id`, entry.sessionId, false);
  checkExpectedVersion(v, `${at}expected_version`, request.expectedVersion);
  let value: KvValue | undefined;
  if (entry.value?.$case === "bytesValue") {
    value = { kind: "bytes", bytes: entry.value.value };
    if (value.bytes.length > limits.maxDocumentBytes) v.add(`${at}entry.bytes_value`, `is larger than ${limits.maxDocumentBytes} bytes`);
  } else if (entry.value?.$case === "jsonValue") {
    value = { kind: "json", json: entry.value.value ?? null };
    checkDocument(v, `${at}entry.json_value`, value.json, limits);
  } else {
    v.add(`${at}entry.value`, "is required: set bytes_value or json_value");
  }
  return {
    key: entry.key,
    value: value!,
    sessionId: entry.sessionId,
    ttlMicros: ttlMicros(v, `${at}ttl`, request.ttl),
    expectedVersion: request.expectedVersion,
  };
}

/** What Delete needs: the key and its condition. */
export interface EntryDelete {
  key: string;
  expectedVersion: number | undefined;
}

/** Delete's request, validated (field paths prefixed with `at`) and converted for store.deleteEntry. */
export function planDelete(v: Violations, request: DeleteRequest, at: string, limits: Limits): EntryDelete {
  checkKey(v, `${at}key`, request.key, limits);
  checkExpectedVersion(v, `${at}expected_version`, request.expectedVersion);
  return { key: request.key, expectedVersion: request.expectedVersion };
}

/** Increment's request, validated (field paths prefixed with `at`) and converted for incrementEntry. */
export function planIncrement(v: Violations, request: IncrementRequest, at: string, limits: Limits): IncrementItem {
  checkKey(v, `${at}key`, request.key, limits);
  if (!Number.isSafeInteger(request.delta)) v.add(`${at}delta`, "must be an integer within ±2^53");
  return { key: request.key, delta: request.delta, ttlMicros: ttlMicros(v, `${at}ttl`, request.ttl) };
}

/** List's and Count's filter: a key prefix and value_contains (any JSON, null included; unset: none). */
function planFilter(v: Violations, request: ListRequest | CountRequest, limits: Limits): EntryFilter {
  checkKey(v, "prefix", request.prefix, limits, true);
  checkDocument(v, "value_contains", request.valueContains, limits);
  return { prefix: request.prefix, valueContains: request.valueContains === undefined ? null : { json: request.valueContains } };
}

function checkKeys(v: Violations, keys: string[], limits: Limits): void {
  checkBatchSize(v, "keys", keys.length, limits);
  keys.forEach((k, i) => checkKey(v, `keys[${i}]`, k, limits));
}

export function keyValueHandlers(deps: ServiceDeps): ServiceHandlers<typeof KeyValueServiceService> {
  const { db, limits } = deps;
  const reads = new store.EntryReads(db);
  // Live changes are encoded once for every watcher of this replica.
  const feed = new ChangeFeed(db, deps.liveDb, encodeChange, deps.progressIntervalMs);
  // The window follows every replica's commits; this replica's Puts and Increments enter it as they commit.
  deps.hub.listen(CHANNELS.keyValueChanges, (lastRevision) => feed.notified(lastRevision));
  const writes = new WriteBatcher(db, (changes) => feed.committed(changes));
  return {
    async get(request, ctx) {
      const v = new Violations();
      checkKey(v, "key", request.key, limits);
      const mask = parseReadMask(v, request.readMask, ENTRY_FIELDS);
      v.throwIfAny();
      return mask.apply(toWireEntry(await reads.get(ctx, ctx.namespace, request.key)));
    },

    async put(request, ctx) {
      const v = new Violations();
      const item = planPut(v, request, "", limits);
      v.throwIfAny();
      return toWireEntry(await writes.put(ctx, ctx.namespace, item));
    },

    async delete(request, ctx) {
      const v = new Violations();
      const { key, expectedVersion } = planDelete(v, request, "", limits);
      v.throwIfAny();
      return { deleted: await store.deleteEntry(db.on(ctx), ctx.namespace, key, expectedVersion) };
    },

    async list(request, ctx) {
      const v = new Violations();
      const filter = planFilter(v, request, limits);
      const limit = pageSize(v, request.pageSize);
      const mask = parseReadMask(v, request.readMask, ENTRY_FIELDS);
      v.throwIfAny();
      // Without value_contains the token is bound as before it existed, so older tokens stay good.
      const bound = { prefix: request.prefix, keysOnly: request.keysOnly, ...(filter.valueContains && { valueContains: filter.valueContains }) };
      const [afterKey] = decodePageToken(request.pageToken, bound, ["id"]) ?? [null];
      const pageLimits = { rows: limit, bytes: limits.maxPageBytes };
      const page = await store.list(db.on(ctx), ctx.namespace, filter, afterKey, pageLimits, request.keysOnly || valueMasked(mask));
      const { items, nextPageToken } = pageResponse(page, {
        bound,
        keyOf: (e) => [e.key],
        toWire: (e) => mask.apply(toWireEntry(e)),
        encoder: Entry,
        maxBytes: limits.maxPageBytes,
      });
      return { entries: items, nextPageToken };
    },

    async count(request, ctx) {
      const v = new Violations();
      const filter = planFilter(v, request, limits);
      v.throwIfAny();
      return { count: await store.count(db.on(ctx), ctx.namespace, filter) };
    },

    async batchGet(request, ctx) {
      const v = new Violations();
      checkKeys(v, request.keys, limits);
      const mask = parseReadMask(v, request.readMask, ENTRY_FIELDS);
      v.throwIfAny();
      const found = await store.readEntries(db.on(ctx), ctx.namespace, [...new Set(request.keys)], valueMasked(mask));
      const keys = request.keys.filter((k, i) => found.has(k) && request.keys.indexOf(k) === i);
      return { entries: keys.map((k) => mask.apply(toWireEntry(found.get(k)!))) };
    },

    async batchPut(request, ctx) {
      const v = new Violations();
      checkBatchSize(v, "requests", request.requests.length, limits);
      const items = request.requests.map((r, i) => planPut(v, r, `requests[${i}].`, limits));
      checkUnique(
        v,
        "requests",
        request.requests.map((r) => r.entry?.key ?? ""),
        ".entry.key",
      );
      v.throwIfAny();
      return { entries: (await putAll(db.on(ctx), ctx.namespace, items)).map(toWireEntry) };
    },

    async batchDelete(request, ctx) {
      const v = new Violations();
      checkKeys(v, request.keys, limits);
      v.throwIfAny();
      return { deletedCount: await store.deleteEntries(db.on(ctx), ctx.namespace, [...new Set(request.keys)]) };
    },

    async increment(request, ctx) {
      const v = new Violations();
      const increment = planIncrement(v, request, "", limits);
      v.throwIfAny();
      return toWireEntry(await writes.increment(ctx, ctx.namespace, increment));
    },

    async purgeExpired(_request, ctx) {
      // The caller's namespace only (the reaper purges every namespace).
      return { deletedCount: await store.purgeExpired(db.on(ctx), ctx.namespace) };
    },

    async watch(request, call, ctx) {
      const v = new Violations();
      checkKey(v, "prefix", request.prefix, limits, true);
      if (request.startRevision < 0) v.add("start_revision", "must not be negative (0 means: from now on)");
      v.throwIfAny();
      const q = db.on(ctx);
      // The window of live changes may still hold compacted ones: the log decides.
      if (request.startRevision > 0) await store.checkRetained(q, request.startRevision);
      // If a message never reaches the client, it resumes at that message's revision.
      const send = (message: WatchResponse | Buffer, resumeRevision: number) =>
        writeMessage(call, message, ctx.signal, { resume_revision: String(resumeRevision) });
      await tail({
        from: request.startRevision === 0 ? "now" : request.startRevision,
        readHead: async () => (await store.revisions(q)).last,
        // Revisions are one order across namespaces: the other namespaces' are gaps, scanned past.
        readPage: (cursor, maxBytes) => feed.page(ctx.namespace, cursor, request.prefix, maxBytes, ctx.signal),
        room: () => streamRoom(call, ctx.signal),
        deliver: (change) => send(change.bytes, change.revision),
        progress: (revision) => send({ message: { $case: "progress", value: { revision } } }, revision + 1),
        onWake: (listener) => feed.onGrow(listener, ctx.namespace, request.prefix),
        progressIntervalMs: deps.progressIntervalMs,
        signal: ctx.signal,
      });
    },
  };
}
