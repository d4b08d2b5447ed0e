// Tracing (API.md, "Operations endpoint"): OpenTelemetry spans, one per call
// of Cairn's methods continuing the caller's W3C `traceparent`, and one child
// per SQL statement the call runs, exported over OTLP/HTTP (protobuf) when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
// Unset, startTracing returns undefined and the interceptor and Database
// keep their untraced paths: no span, context or closure is built per call.
//
// The settings come from the OTEL_* variables captured in Config.otel (not
// read from process.env here), so several daemons in one process — the
// tests — can differ. Nothing is registered globally either (no global
// tracer provider, context manager or propagator): the call's context lives
// in this module's own AsyncLocalStorage, and spans are started with an
// explicit parent, so a traced and an untraced daemon can share a process.
//
// Spans carry no client data: method names, status codes, Cairn's error
// reason, SQLSTATEs, row counts and the statement text (parameters are $n
// placeholders; their values are never recorded), truncated.
import { AsyncLocalStorage } from "node:async_hooks";
import * as grpc from "@grpc/grpc-js";
import { type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, type TextMapGetter, type Tracer, trace } from "@opentelemetry/api";
import type { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { Sampler, SpanExporter } from "@opentelemetry/sdk-trace";
import {
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_QUERY_SUMMARY,
  ATTR_DB_QUERY_TEXT,
  ATTR_DB_RESPONSE_STATUS_CODE,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVICE_NAME,
  DB_SYSTEM_NAME_VALUE_POSTGRESQL,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from "@opentelemetry/semantic-conventions";
import type { Logger } from "../logger.js";

/** Longest statement text kept on a span: enough to recognise it, bounded for the exporter. */
export const MAX_STATEMENT_CHARS = 1024;

/** The OTel context of the call being served, for the statements it runs. */
const callContext = new AsyncLocalStorage<Context>();

const metadataGetter: TextMapGetter<grpc.Metadata> = {
  keys: (metadata) => Object.keys(metadata.getMap()),
  get: (metadata, key) => {
    const values = metadata.get(key);
    return values.length === 0 ? undefined : values.map(String);
  },
};

/**
 * gRPC codes a server span reports as an error (OpenTelemetry's gRPC
 * conventions): the server's own failures, not the caller's mistakes.
 */
const SERVER_ERRORS = new Set([
  grpc.status.UNKNOWN,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.UNIMPLEMENTED,
  grpc.status.INTERNAL,
  grpc.status.UNAVAILABLE,
  grpc.status.DATA_LOSS,
]);

export interface CallSpan {
  /** Runs fn with this call's span as the active context (statements started inside become its children). */
  run<T>(fn: () => T): T;
  /** Ends the span with the status the call ended with; later calls do nothing. */
  end(code: grpc.status, reason?: string): void;
}

export interface Tracing {
  /** The endpoint spans are posted to. */
  readonly url: string;
  /** A server span for one call, continuing the `traceparent` (and `tracestate`) in its metadata. */
  startCall(method: string, metadata: grpc.Metadata): CallSpan;
  /** Runs one SQL statement as a child of the active call's span (untraced outside a call). */
  statement<T>(text: string, name: string | undefined, run: () => Promise<T>): Promise<T>;
  /** Exports what is buffered and stops. */
  stop(): Promise<void>;
}

/** Tracing as the OTEL_* variables in `env` ask, or undefined when no OTLP endpoint is set (or it is switched off). */
/**
 * The SDK, the exporter and the resource detection are loaded only here,
 * when tracing is on: together they add about 100 ms to every start.
 */
export async function startTracing(env: Readonly<Record<string, string | undefined>>, log: Logger): Promise<Tracing | undefined> {
  const url = tracesUrl(env);
  if (!url) return undefined;
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return undefined;
  const exporters = env.OTEL_TRACES_EXPORTER?.split(",").map((e) => e.trim().toLowerCase());
  if (exporters && !exporters.includes("otlp")) return undefined;
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL;
  if (protocol && protocol !== "http/protobuf") {
    log.warn({ protocol }, "only OTLP over http/protobuf is supported; exporting spans with it");
  }
  const [core, { OTLPTraceExporter }, { defaultResource, resourceFromAttributes }, sdk] = await Promise.all([
    import("@opentelemetry/core"),
    import("@opentelemetry/exporter-trace-otlp-proto"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/sdk-trace"),
  ]);
  const propagator = new core.W3CTraceContextPropagator();
  const otlp = new OTLPTraceExporter({
    url,
    headers: { ...keyValues(env.OTEL_EXPORTER_OTLP_HEADERS), ...keyValues(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS) },
    ...positive("timeoutMillis", env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT ?? env.OTEL_EXPORTER_OTLP_TIMEOUT),
  });
  const exporter = reportingFailures(otlp, url, log, core.ExportResultCode.SUCCESS);
  const provider = new sdk.TracerProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({ ...keyValues(env.OTEL_RESOURCE_ATTRIBUTES), [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME || "cairn" }),
    ),
    sampler: samplerFrom(env, log, sdk),
    spanProcessors: [
      new sdk.BatchSpanProcessor({
        exporter,
        ...positive("maxQueueSize", env.OTEL_BSP_MAX_QUEUE_SIZE),
        ...positive("maxExportBatchSize", env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE),
        ...positive("scheduledDelayMillis", env.OTEL_BSP_SCHEDULE_DELAY),
        ...positive("exportTimeoutMillis", env.OTEL_BSP_EXPORT_TIMEOUT),
      }),
    ],
  });
  const tracer = provider.getTracer("cairn");
  log.info({ url }, "tracing: exporting spans over OTLP/HTTP");
  return {
    url,
    startCall: (method, metadata) => startCall(tracer, propagator, method, metadata),
    statement: (text, name, run) => statement(tracer, text, name, run),
    stop: () => provider.shutdown(),
  };
}

/**
 * The exporter, with failed exports logged: the SDK reports them only to
 * its global diag logger, which nothing here registers. One line when
 * exports start failing and one when they recover, not one per batch.
 */
function reportingFailures(exporter: SpanExporter, url: string, log: Logger, success: number): SpanExporter {
  let failing = false;
  return {
    export: (spans, done) =>
      exporter.export(spans, (result) => {
        if (result.code !== success && !failing) {
          failing = true;
          log.warn({ url, err: result.error?.message }, "tracing: spans not exported; retrying with the next batch");
        } else if (result.code === success && failing) {
          failing = false;
          log.info({ url }, "tracing: exporting spans again");
        }
        done(result);
      }),
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}

/** The spec's rule: the signal endpoint as given; the base endpoint plus /v1/traces. */
function tracesUrl(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (traces) return traces;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!base) return undefined;
  return `${base.replace(/\/+$/, "")}/v1/traces`;
}

/** `{ [key]: n }` when raw is a positive number, else nothing (the SDK's default applies). */
function positive<K extends string>(key: K, raw: string | undefined): { [P in K]?: number } {
  const n = Number(raw);
  return raw !== undefined && Number.isFinite(n) && n > 0 ? ({ [key]: n } as { [P in K]?: number }) : {};
}

/** `k=v,k2=v2` with percent-encoded values (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS). */
function keyValues(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of raw?.split(",") ?? []) {
    const at = pair.indexOf("=");
    if (at <= 0) continue;
    try {
      out[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
    } catch {
      // A malformed escape: the pair is skipped, as the SDK itself does.
    }
  }
  return out;
}

function samplerFrom(env: Readonly<Record<string, string | undefined>>, log: Logger, sdk: typeof import("@opentelemetry/sdk-trace")): Sampler {
  const { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler } = sdk;
  const name = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase() || "parentbased_always_on";
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG);
  const ratio = () => new TraceIdRatioBasedSampler(Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1);
  switch (name) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return ratio();
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: ratio() });
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    default:
      log.warn({ sampler: name }, "unknown OTEL_TRACES_SAMPLER; using parentbased_always_on");
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

function startCall(tracer: Tracer, propagator: W3CTraceContextPropagator, method: string, metadata: grpc.Metadata): CallSpan {
  const parent = propagator.extract(ROOT_CONTEXT, metadata, metadataGetter);
  const span = tracer.startSpan(
    method,
    { kind: SpanKind.SERVER, attributes: { [ATTR_RPC_SYSTEM_NAME]: RPC_SYSTEM_NAME_VALUE_GRPC, [ATTR_RPC_METHOD]: method } },
    parent,
  );
  const context = trace.setSpan(parent, span);
  let ended = false;
  return {
    run: (fn) => callContext.run(context, fn),
    end: (code, reason) => {
      if (ended) return;
      ended = true;
      const name = grpc.status[code] ?? String(code);
      span.setAttribute(ATTR_RPC_STATUS_CODE, name);
      if (reason) span.setAttribute("cairn.error.reason", reason);
      if (SERVER_ERRORS.has(code)) {
        span.setAttribute(ATTR_ERROR_TYPE, name);
        span.setStatus({ code: SpanStatusCode.ERROR, message: name });
      }
      span.end();
    },
  };
}

function statement<T>(tracer: Tracer, text: string, name: string | undefined, run: () => Promise<T>): Promise<T> {
  const parent = callContext.getStore();
  // Background work (reaper, lease rescue) runs outside any call: not traced.
  if (!parent) return run();
  const operation = /^\s*([A-Za-z]+)/.exec(text)?.[1]?.toUpperCase();
  const span: Span = tracer.startSpan(
    name ?? operation ?? "postgresql",
    {
      kind: SpanKind.CLIENT,
      attributes: {
        [ATTR_DB_SYSTEM_NAME]: DB_SYSTEM_NAME_VALUE_POSTGRESQL,
        [ATTR_DB_QUERY_TEXT]: text.length > MAX_STATEMENT_CHARS ? `${text.slice(0, MAX_STATEMENT_CHARS)}…` : text,
        ...(operation ? { [ATTR_DB_OPERATION_NAME]: operation } : {}),
        ...(name ? { [ATTR_DB_QUERY_SUMMARY]: name } : {}),
      },
    },
    parent,
  );
  return run().then(
    (result) => {
      const rows = (result as { rowCount?: unknown } | undefined)?.rowCount;
      if (typeof rows === "number") span.setAttribute("db.response.returned_rows", rows);
      span.end();
      return result;
    },
    (error: unknown) => {
      // PostgreSQL's message can quote the client's data: only the SQLSTATE (or the error's class) is kept.
      const e = error as { code?: unknown; sqlstate?: unknown; name?: unknown; cause?: { code?: unknown } } | undefined;
      const sqlstate = [e?.code, e?.cause?.code].find((c): c is string => typeof c === "string" && /^[0-9A-Z]{5}$/.test(c));
      if (sqlstate) span.setAttribute(ATTR_DB_RESPONSE_STATUS_CODE, sqlstate);
      span.setAttribute(ATTR_ERROR_TYPE, sqlstate ?? (typeof e?.name === "string" ? e.name : "Error"));
      span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
      throw error;
    },
  );
}

/**
 * The interceptor's listener with every step that can reach the handler
 * (metadata for streaming-request handlers, message and half-close for
 * unary and server-streaming ones, which grpc-js starts on half-close) run
 * inside the call's context, so the handler and everything it awaits see
 * the call span. `onStart` receives the span once the metadata has arrived.
 */
export function tracedListener(
  tracing: Tracing,
  method: string,
  listener: grpc.ServerListener,
  onStart: (span: CallSpan) => void,
): grpc.ServerListener {
  let span: CallSpan | undefined;
  const inCall = <T>(fn: () => T): T => (span ? span.run(fn) : fn());
  return {
    ...listener,
    onReceiveMetadata: (metadata, next) => {
      span = tracing.startCall(method, metadata);
      onStart(span);
      span.run(() => (listener.onReceiveMetadata ? listener.onReceiveMetadata(metadata, next) : next(metadata)));
    },
    onReceiveMessage: (message, next) =>
      inCall(() => (listener.onReceiveMessage ? listener.onReceiveMessage(message, next) : next(message))),
    onReceiveHalfClose: (next) => inCall(() => (listener.onReceiveHalfClose ? listener.onReceiveHalfClose(next) : next())),
  };
}
