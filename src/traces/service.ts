// TraceEventService handlers: validate, convert, call the store; streaming
// ingestion (one committed batch per ack) and live subscriptions.
import {
  Severity,
  TraceEvent,
  TraceEventServiceService,
  SubscribeEventsResponse,
} from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import type { Limits } from "../config.js";
import { CHANNELS } from "../db/notify-hub.js";
import { tail } from "../db/tail.js";
import { streamRoom, writeMessage } from "../grpc/streams.js";
import { isoFromTimestamp, timestampFromIso } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import { readRequests, type ServiceDeps, type ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageResponse, pageSize } from "../grpc/pagination.js";
import { maskedResource, parseReadMask } from "../grpc/read-mask.js";
import { Violations, checkBatchSize, checkDocument, checkFilterList, checkId, checkReference, checkText } from "../grpc/validate.js";
import { nowIso } from "../time.js";
import { TraceFanout } from "./fanout.js";
import { AppendBatcher, SMALL_CALL_EVENTS } from "./batcher.js";
import { TraceQueue, traceTurn } from "./queue.js";
import * as store from "./store.js";
import type { EventFilter, NewTraceEvent, SeverityName, TraceEventRecord } from "./store.js";

const MAX_BATCH_ID_CHARS = 128;

const SEVERITY = enumCodec<Severity, SeverityName>(Severity, "SEVERITY_");

const EVENT_FIELDS = maskedResource(TraceEvent);
/** The document a read mask may leave out of the SELECT. */
const EVENT_DOCUMENTS = { payload: "payload" } as const;

function toWire(e: TraceEventRecord): TraceEvent {
  return {
    eventId: e.eventId,
    traceId: e.traceId,
    sessionId: e.sessionId,
    eventType: e.eventType,
    severity: SEVERITY.toWire(e.severity),
    time: timestampFromIso(e.time),
    payload: e.payload,
    sequence: e.sequence,
    offset: e.offset,
    ingestTime: timestampFromIso(e.ingestTime),
    prevHash: e.prevHash,
    eventHash: e.eventHash,
  };
}

/** A filter's event types: references, at most limits.maxFilterItems of them. */
function checkEventTypes(v: Violations, eventTypes: string[], limits: Limits): void {
  checkFilterList(v, "event_types", eventTypes.length, limits);
  eventTypes.forEach((t, i) => checkReference(v, `event_types[${i}]`, t, true));
}

/** A filter's minimum severity: UNSPECIFIED means none. */
function minSeverity(v: Violations, field: string, wire: Severity): SeverityName | null {
  return wire === Severity.SEVERITY_UNSPECIFIED ? null : (SEVERITY.parse(v, field, wire) ?? null);
}

/** Validates a batch; field paths are `events[i].field`, prefixed with `prefix` (a Commit's operation). */
export function toNewEvents(v: Violations, events: TraceEvent[], limits: Limits, ingestTime: string, prefix = ""): NewTraceEvent[] {
  checkBatchSize(v, `${prefix}events`, events.length, limits);
  if (events.length > limits.maxBatchItems) return [];
  return events.map((e, i) => {
    const at = `${prefix}events[${i}]`;
    checkId(v, `${at}.trace_id`, e.traceId, true);
    checkId(v, `${at}.event_id`, e.eventId, false);
    checkId(v, `${at}.session_id`, e.sessionId, false);
    checkReference(v, `${at}.event_type`, e.eventType, true);
    checkDocument(v, `${at}.payload`, e.payload, limits);
    const time = v.collect(() => isoFromTimestamp(e.time, `${at}.time`)) ?? ingestTime;
    return {
      eventId: e.eventId || uuidv7(),
      ...(e.eventId ? {} : { generatedId: true as const }),
      traceId: e.traceId,
      sessionId: e.sessionId,
      eventType: e.eventType,
      severity: SEVERITY.parse(v, `${at}.severity`, e.severity, "INFO") ?? "INFO",
      time,
      payload: e.payload ?? {},
    };
  });
}

/** `appended`: counts events actually appended (cairn_trace_events_appended_total); duplicates are not. */
export function traceHandlers(deps: ServiceDeps, appended?: { inc(n: number): void }): ServiceHandlers<typeof TraceEventServiceService> {
  const { db, limits } = deps;
  // Live events are read and encoded once for every subscriber of this replica.
  const fanout = new TraceFanout(
    db,
    (event) => Buffer.from(SubscribeEventsResponse.encode({ message: { $case: "event", value: toWire(event) } }).finish()),
    undefined,
    deps.progressIntervalMs,
    deps.liveDb,
  );
  // The window follows the committed head on every replica's commits, and wakes the subscribers that want what it takes.
  deps.hub.listen(CHANNELS.traceEvents, (lastOffset) => fanout.notified(lastOffset));
  // Deletions on any replica (and a reconnect of the LISTEN connection, which may have missed some) empty the window.
  deps.hub.listen(CHANNELS.traceDeletes, () => fanout.forget());
  // Small appends commit in groups (batcher.ts); a large one waits for its traces' turns here, holding no pool connection.
  const batcher = new AppendBatcher(db);
  const queue = new TraceQueue();
  const appendAlone = (ctx: { signal: AbortSignal; namespace: string }, events: NewTraceEvent[], ingestTime: string) =>
    queue.run(
      events.map((e) => traceTurn(ctx.namespace, e.traceId)),
      ctx.signal,
      () => store.append(db.on(ctx), ctx.namespace, events, ingestTime),
    );
  const append = async (ctx: { signal: AbortSignal; namespace: string }, events: NewTraceEvent[], ingestTime: string) => {
    const outcomes =
      events.length > SMALL_CALL_EVENTS ? await appendAlone(ctx, events, ingestTime) : await batcher.append(ctx, { ns: ctx.namespace, events, ingestTime });
    if (appended) {
      let added = 0;
      for (const o of outcomes) if (!o.duplicate) added++;
      if (added > 0) appended.inc(added);
    }
    return outcomes;
  };

  return {
    async appendEvents(request, ctx) {
      const v = new Violations();
      const ingestTime = nowIso();
      const events = toNewEvents(v, request.events, limits, ingestTime);
      v.throwIfAny();
      return { results: await append(ctx, events, ingestTime) };
    },

    async ingestEvents(call, ctx) {
      // One request at a time: the next batch is read only after this one
      // is committed and acked, so flow control reaches the client.
      for await (const request of readRequests(call)) {
        const v = new Violations();
        // Checked first: the error that follows quotes it.
        checkText(v, "batch_id", request.batchId, MAX_BATCH_ID_CHARS);
        v.throwIfAny();
        const ingestTime = nowIso();
        const events = toNewEvents(v, request.events, limits, ingestTime);
        v.throwIfAny({ label: `batch ${JSON.stringify(request.batchId)}`, metadata: { batch_id: request.batchId } });
        const outcomes = await append(ctx, events, ingestTime);
        const duplicates = outcomes.filter((o) => o.duplicate).length;
        await writeMessage(
          call,
          {
            batchId: request.batchId,
            accepted: outcomes.length - duplicates,
            duplicates,
            lastOffset: Math.max(0, ...outcomes.map((o) => o.offset)),
          },
          ctx.signal,
        );
      }
    },

    async listTraceEvents(request, ctx) {
      const v = new Violations();
      checkId(v, "trace_id", request.traceId, true);
      if (request.afterSequence < 0) v.add("after_sequence", "must not be negative");
      const limit = pageSize(v, request.pageSize);
      const mask = parseReadMask(v, request.readMask, EVENT_FIELDS);
      v.throwIfAny();
      const bound = { traceId: request.traceId, afterSequence: request.afterSequence };
      const [after] = decodePageToken(request.pageToken, bound, ["number"]) ?? [request.afterSequence];
      const pageLimits = { rows: limit, bytes: limits.maxPageBytes };
      const page = await store.listTraceEvents(db.on(ctx), ctx.namespace, request.traceId, after, pageLimits, mask.omitted(EVENT_DOCUMENTS));
      const { items, nextPageToken } = pageResponse(page, {
        bound,
        keyOf: (e) => [e.sequence],
        toWire: (e) => mask.apply(toWire(e)),
        encoder: TraceEvent,
        maxBytes: limits.maxPageBytes,
      });
      return { events: items, nextPageToken };
    },

    async listSessionEvents(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      checkEventTypes(v, request.eventTypes, limits);
      const severity = minSeverity(v, "min_severity", request.minSeverity);
      const afterTime = v.collect(() => isoFromTimestamp(request.afterTime, "after_time"));
      const beforeTime = v.collect(() => isoFromTimestamp(request.beforeTime, "before_time"));
      const limit = pageSize(v, request.pageSize);
      const mask = parseReadMask(v, request.readMask, EVENT_FIELDS);
      v.throwIfAny();
      const eventTypes = [...request.eventTypes].sort();
      // Bound to the wire severity (0 for none), so tokens issued before stay valid.
      const bound = { sessionId: request.sessionId, eventTypes, minSeverity: request.minSeverity, afterTime, beforeTime };
      const [after] = decodePageToken(request.pageToken, bound, ["number"]) ?? [0];
      const query = { sessionId: request.sessionId, eventTypes, minSeverity: severity, afterTime, beforeTime };
      const pageLimits = { rows: limit, bytes: limits.maxPageBytes };
      const page = await store.listSessionEvents(db.on(ctx), ctx.namespace, query, after, pageLimits, mask.omitted(EVENT_DOCUMENTS));
      const { items, nextPageToken } = pageResponse(page, {
        bound,
        keyOf: (e) => [e.offset],
        toWire: (e) => mask.apply(toWire(e)),
        encoder: TraceEvent,
        maxBytes: limits.maxPageBytes,
      });
      return { events: items, nextPageToken };
    },

    async subscribeEvents(request, call, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, false);
      checkId(v, "trace_id", request.traceId, false);
      checkEventTypes(v, request.eventTypes, limits);
      const severity = minSeverity(v, "min_severity", request.minSeverity);
      if (request.startOffset < 0) v.add("start_offset", "must not be negative");
      v.throwIfAny();
      const filter: EventFilter = {
        sessionId: request.sessionId || null,
        traceId: request.traceId || null,
        eventTypes: request.eventTypes,
        minSeverity: severity,
      };
      const q = db.on(ctx);
      // If a message never reaches the client, it resumes at that message's offset.
      const send = (message: SubscribeEventsResponse | Buffer, resumeOffset: number) =>
        writeMessage(call, message, ctx.signal, { resume_offset: String(resumeOffset) });
      await tail({
        from: request.fromNow ? "now" : Math.max(1, request.startOffset),
        readHead: () => store.headOffset(q),
        // Offsets are one order across namespaces: the other namespaces' are gaps, scanned past.
        readPage: (cursor, maxBytes) => fanout.page(ctx.namespace, cursor, filter, maxBytes, ctx.signal),
        room: () => streamRoom(call, ctx.signal),
        deliver: (event) => send(event.bytes, event.offset),
        progress: (offset) => send({ message: { $case: "progress", value: { offset } } }, offset + 1),
        onWake: (listener) => fanout.onGrow(listener, ctx.namespace, filter),
        progressIntervalMs: deps.progressIntervalMs,
        signal: ctx.signal,
      });
    },

    async verifyTrace(request, ctx) {
      const v = new Violations();
      checkId(v, "trace_id", request.traceId, true);
      v.throwIfAny();
      return store.verify(db.on(ctx), ctx.namespace, request.traceId);
    },
  };
}
