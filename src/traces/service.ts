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
import { CHANNELS } from "../db/notify-hub.js";
import { tail } from "../db/tail.js";
import { writeMessage } from "../grpc/backpressure.js";
import { isoFromTimestamp, timestampFromIso } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import type { ServiceDeps, ServiceHandlers } from "../grpc/handlers.js";
import { decodePageToken, pageSize, paginate } from "../grpc/pagination.js";
import { Violations, checkBatchSize, checkDocument, checkId, checkText } from "../grpc/validate.js";
import { nowIso } from "../time.js";
import * as store from "./store.js";
import type { EventFilter, NewTraceEvent, SeverityName, TraceEventRecord } from "./store.js";

const MAX_EVENT_TYPE_CHARS = 128;

const SEVERITY = enumCodec<Severity, SeverityName>(Severity, "SEVERITY_");

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

/** A filter's minimum severity: UNSPECIFIED means none. */
function minSeverity(v: Violations, field: string, wire: Severity): SeverityName | null {
  return wire === Severity.SEVERITY_UNSPECIFIED ? null : (SEVERITY.parse(v, field, wire) ?? null);
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
      severity: SEVERITY.parse(v, `${at}.severity`, e.severity, "INFO") ?? "INFO",
      time,
      payload: e.payload ?? {},
    };
  });
}

export function traceHandlers(deps: ServiceDeps): ServiceHandlers<typeof TraceEventServiceService> {
  const { db, limits } = deps;

  return {
    async appendEvents(request, ctx) {
      const v = new Violations();
      const ingestTime = nowIso();
      const events = toNewEvents(v, request.events, limits, ingestTime);
      v.throwIfAny();
      return { results: await store.append(db.on(ctx), events, ingestTime) };
    },

    async ingestEvents(call, ctx) {
      // One request at a time: the next batch is read only after this one
      // is committed and acked, so flow control reaches the client. The
      // iterator must not destroy the call when the loop ends: that would
      // cancel it instead of ending it with OK.
      const q = db.on(ctx);
      const requests = call.iterator({ destroyOnReturn: false }) as AsyncIterable<{ batchId: string; events: TraceEvent[] }>;
      for await (const request of requests) {
        const v = new Violations();
        const ingestTime = nowIso();
        const events = toNewEvents(v, request.events, limits, ingestTime);
        v.throwIfAny({ label: `batch ${JSON.stringify(request.batchId)}`, metadata: { batch_id: request.batchId } });
        const outcomes = await store.append(q, events, ingestTime);
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
      v.throwIfAny();
      const bound = { traceId: request.traceId, afterSequence: request.afterSequence };
      const [after] = decodePageToken(request.pageToken, bound, ["number"]) ?? [request.afterSequence];
      const rows = await store.listTraceEvents(db.on(ctx), request.traceId, after, limit + 1);
      const { page, nextPageToken } = paginate(rows, limit, bound, (e) => [e.sequence]);
      return { events: page.map(toWire), nextPageToken };
    },

    async listSessionEvents(request, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, true);
      request.eventTypes.forEach((t, i) => checkText(v, `event_types[${i}]`, t, MAX_EVENT_TYPE_CHARS, true));
      const severity = minSeverity(v, "min_severity", request.minSeverity);
      const afterTime = v.collect(() => isoFromTimestamp(request.afterTime, "after_time"));
      const beforeTime = v.collect(() => isoFromTimestamp(request.beforeTime, "before_time"));
      const limit = pageSize(v, request.pageSize);
      v.throwIfAny();
      const eventTypes = [...request.eventTypes].sort();
      // Bound to the wire severity (0 for none), so tokens issued before stay valid.
      const bound = { sessionId: request.sessionId, eventTypes, minSeverity: request.minSeverity, afterTime, beforeTime };
      const [after] = decodePageToken(request.pageToken, bound, ["number"]) ?? [0];
      const query = { sessionId: request.sessionId, eventTypes, minSeverity: severity, afterTime, beforeTime };
      const rows = await store.listSessionEvents(db.on(ctx), query, after, limit + 1);
      const { page, nextPageToken } = paginate(rows, limit, bound, (e) => [e.offset]);
      return { events: page.map(toWire), nextPageToken };
    },

    async subscribeEvents(request, call, ctx) {
      const v = new Violations();
      checkId(v, "session_id", request.sessionId, false);
      checkId(v, "trace_id", request.traceId, false);
      request.eventTypes.forEach((t, i) => checkText(v, `event_types[${i}]`, t, MAX_EVENT_TYPE_CHARS, true));
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
      const send = (message: SubscribeEventsResponse) => writeMessage(call, message, ctx.signal);
      await tail({
        from: request.fromNow ? "now" : Math.max(1, request.startOffset),
        readHead: () => store.headOffset(q),
        readPage: (cursor) => store.readFeed(q, cursor, filter),
        deliver: (event) => send({ message: { $case: "event", value: toWire(event) } }),
        progress: (offset) => send({ message: { $case: "progress", value: { offset } } }),
        onWake: (listener) => deps.hub.listen(CHANNELS.traceEvents, listener),
        progressIntervalMs: deps.progressIntervalMs,
        signal: ctx.signal,
      });
    },

    async verifyTrace(request, ctx) {
      const v = new Violations();
      checkId(v, "trace_id", request.traceId, true);
      v.throwIfAny();
      return store.verify(db.on(ctx), request.traceId);
    },
  };
}
