// TraceEventService handlers: validate, convert, call the store; streaming
// ingestion (one committed batch per ack) and live subscriptions.
import {
  Severity,
  type TraceEvent,
  TraceEventServiceService,
  type SubscribeEventsResponse,
} from "@cairn/client";
import { v7 as uuidv7 } from "uuid";
import type { Limits } from "../config.js";
import type { NotifyHub } from "../db/notify-hub.js";
import { CHANNELS } from "../db/notify-hub.js";
import { tail } from "../db/tail.js";
import { epochMicrosToIso } from "../db/time.js";
import { invalidPageToken } from "../errors.js";
import { writeMessage } from "../grpc/backpressure.js";
import { isoFromTimestamp, timestampFromIso } from "../grpc/convert.js";
import type { ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageSize, paginate } from "../grpc/pagination.js";
import { Violations, checkBatchSize, checkDocument, checkId, checkText } from "../grpc/validate.js";
import type { EventFilter, NewTraceEvent, SeverityLevel, TraceEventRecord, TraceStore } from "./store.js";

const MAX_EVENT_TYPE_CHARS = 128;

export interface TraceServiceOptions {
  limits: Limits;
  hub: NotifyHub;
  progressIntervalMs: number;
}

function toWireEvent(e: TraceEventRecord): TraceEvent {
  return {
    eventId: e.eventId,
    traceId: e.traceId,
    sessionId: e.sessionId,
    eventType: e.eventType,
    severity: e.severity as number as Severity,
    time: timestampFromIso(e.time),
    payload: e.payload,
    sequence: e.sequence,
    offset: e.offset,
    ingestTime: timestampFromIso(e.ingestTime),
    prevHash: e.prevHash,
    eventHash: e.eventHash,
  };
}

function severityLevel(v: Violations, field: string, severity: Severity, unspecified: SeverityLevel | 0): SeverityLevel | 0 {
  if (severity === Severity.SEVERITY_UNSPECIFIED) return unspecified;
  if (Number.isInteger(severity) && severity >= 1 && severity <= 5) return severity as number as SeverityLevel;
  v.add(field, "must be one of SEVERITY_DEBUG, SEVERITY_INFO, SEVERITY_WARNING, SEVERITY_ERROR, SEVERITY_CRITICAL");
  return 0;
}

/** Now, as the store's microsecond time string. */
function nowIso(): string {
  return epochMicrosToIso(BigInt(Date.now()) * 1000n);
}

/** Validates a batch; field paths are `events[i].field`. */
function toNewEvents(v: Violations, events: TraceEvent[], limits: Limits, ingestTime: string): NewTraceEvent[] {
  checkBatchSize(v, "events", events.length, limits);
  if (events.length > limits.maxBatchItems) return [];
  return events.map((e, i) => {
    const at = `events[${i}]`;
    checkId(v, `${at}.trace_id`, e.traceId, true);
    checkId(v, `${at}.event_id`, e.eventId, false);
    checkId(v, `${at}.session_id`, e.sessionId, false);
    checkText(v, `${at}.event_type`, e.eventType, MAX_EVENT_TYPE_CHARS, true);
    checkDocument(v, `${at}.payload`, e.payload, limits);
    const time = v.collect(() => isoFromTimestamp(e.time, `${at}.time`)) ?? ingestTime;
    return {
      eventId: e.eventId || uuidv7(),
      traceId: e.traceId,
      sessionId: e.sessionId,
      eventType: e.eventType,
      severity: (severityLevel(v, `${at}.severity`, e.severity, 2) || 2) as SeverityLevel,
      time,
      payload: e.payload ?? {},
    };
  });
}

function eventCursor(key: unknown[] | undefined, fallback: number): number {
  if (!key) return fallback;
  if (typeof key[0] !== "number") throw invalidPageToken("is not a token this server issued");
  return key[0];
}

export function traceHandlers(store: TraceStore, options: TraceServiceOptions): ServiceHandlers<typeof TraceEventServiceService> {
  const { limits } = options;

  return {
    async appendEvents(request, ctx) {
      const v = new Violations();
      const ingestTime = nowIso();
      const events = toNewEvents(v, request.events, limits, ingestTime);
      v.throwIfAny();
      return { results: await store.append(ctx, events, ingestTime) };
    },

    async ingestEvents(call, ctx) {
      // One request at a time: the next batch is read only after this one
      // is committed and acked, so flow control reaches the client. The
      // iterator must not destroy the call when the loop ends: that would
      // cancel it instead of ending it with OK.
      const requests = call.iterator({ destroyOnReturn: false }) as AsyncIterable<{ batchId: string; events: TraceEvent[] }>;
      for await (const request of requests) {
        const v = new Violations();
        const ingestTime = nowIso();
        const events = toNewEvents(v, request.events, limits, ingestTime);
        v.throwIfAny({ label: `batch ${JSON.stringify(request.batchId)}`, metadata: { batch_id: request.batchId } });
        const outcomes = await store.append(ctx, events, ingestTime);
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
      const limit = pageSize(request.pageSize);
      v.throwIfAny();
      const bound = { traceId: request.traceId, afterSequence: request.afterSequence };
      const after = eventCursor(decodePageToken(request.pageToken, bound), request.afterSequence);
      const rows = await store.listTraceEvents(ctx, request.traceId, after, limit + 1);
      const { page, nextPageToken } = paginate(rows, limit, bound, (e) => [e.sequence]);
      return { events: page.map(toWireEvent), nextPageToken };
    },

    async listSessionEvents(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      request.eventTypes.forEach((t, i) => checkText(v, `event_types[${i}]`, t, MAX_EVENT_TYPE_CHARS, true));
      const minSeverity = severityLevel(v, "min_severity", request.minSeverity, 0);
      const afterTime = v.collect(() => isoFromTimestamp(request.afterTime, "after_time"));
      const beforeTime = v.collect(() => isoFromTimestamp(request.beforeTime, "before_time"));
      const limit = pageSize(request.pageSize);
      v.throwIfAny();
      const query = { sessionId: request.sessionId, eventTypes: [...request.eventTypes].sort(), minSeverity, afterTime, beforeTime };
      const after = eventCursor(decodePageToken(request.pageToken, query), 0);
      const rows = await store.listSessionEvents(ctx, query, after, limit + 1);
      const { page, nextPageToken } = paginate(rows, limit, query, (e) => [e.offset]);
      return { events: page.map(toWireEvent), nextPageToken };
    },

    async subscribeEvents(request, call, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, false);
      checkId(v, "trace_id", request.traceId, false);
      request.eventTypes.forEach((t, i) => checkText(v, `event_types[${i}]`, t, MAX_EVENT_TYPE_CHARS, true));
      const minSeverity = severityLevel(v, "min_severity", request.minSeverity, 0);
      if (request.startOffset < 0) v.add("start_offset", "must not be negative");
      v.throwIfAny();
      const filter: EventFilter = {
        sessionId: request.sessionId || null,
        traceId: request.traceId || null,
        eventTypes: request.eventTypes,
        minSeverity,
      };
      const send = (message: SubscribeEventsResponse) => writeMessage(call, message, ctx.signal);
      await tail({
        from: request.fromNow ? "now" : Math.max(1, request.startOffset),
        readHead: () => store.head(ctx),
        readPage: (cursor) => store.readFeed(ctx, cursor, filter),
        deliver: (event) => send({ message: { $case: "event", value: toWireEvent(event) } }),
        progress: (offset) => send({ message: { $case: "progress", value: { offset } } }),
        onWake: (listener) => options.hub.listen(CHANNELS.traceEvents, listener),
        progressIntervalMs: options.progressIntervalMs,
        signal: ctx.signal,
      });
    },

    async verifyTrace(request, ctx) {
      const v = new Violations();
      checkId(v, "trace_id", request.traceId, true);
      v.throwIfAny();
      return store.verify(ctx, request.traceId);
    },
  };
}
