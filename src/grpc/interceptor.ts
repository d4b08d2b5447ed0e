// The server's one call interceptor: it settles who calls each of Cairn's
// methods before any handler runs (auth/caller.ts: principal, namespace,
// role; health and reflection need no credentials), and it sees the status
// every call actually ends with — Cairn's handlers, health, reflection, and the statuses grpc-js
// makes itself (a passed deadline, an oversized message, an unknown method)
// — so it is where every error gets its ErrorInfo and where the per-call log
// line is written: OK only when OK was sent, CANCELLED when the client went
// away, Cairn's calls at info, health and reflection at debug. No payload,
// token or client data is logged: causes are reduced to what names the
// failure (see safeCause).
import * as grpc from "@grpc/grpc-js";
import { performance } from "node:perf_hooks";
import { type Caller, type CallerSettler, rememberCaller } from "../auth/caller.js";
import { CairnError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { GrpcServerMetrics } from "../ops/metrics.js";
import { type CallSpan, type Tracing, tracedListener } from "../ops/tracing.js";
import { asCairnError, errorBehind, toServiceError, withErrorInfo } from "./status.js";

/** The parts of grpc-js's innermost call object this needs (its class is not exported). */
interface BaseCall {
  sendStatus(status: { code: grpc.status; details: string; metadata: grpc.Metadata | null }): void;
  getPeer(): string;
  checkCancelled?: () => boolean;
}

/**
 * grpc-js hands the first interceptor its innermost call; grpc-js's own
 * statuses (deadline, message size, decoding) are sent through that
 * object's sendStatus, bypassing interceptor responders, so this wraps the
 * method on that one object. It must therefore be the first interceptor.
 */
export function callInterceptor(
  log: Logger,
  callers: CallerSettler,
  metrics?: GrpcServerMetrics,
  tracing?: Tracing,
): grpc.ServerInterceptor {
  return (method, call) => {
    const base = call as unknown as BaseCall;
    const startedAt = performance.now();
    // The method's record is looked up once per call; the rest is arithmetic on it.
    const record = metrics?.method(method.path, method.requestStream, method.responseStream);
    if (record) record.started++;
    const name = method.path.slice(1);
    const cairnMethod = name.startsWith("cairn.");
    const level = cairnMethod ? "info" : "debug";
    let caller: Caller | undefined;
    let logged = false;
    // Set once the metadata arrived, on Cairn's methods, when tracing is on.
    let span: CallSpan | undefined;
    const logOnce = (code: grpc.status, error?: CairnError) => {
      if (logged) return;
      logged = true;
      span?.end(code, error?.reason);
      const durationMs = performance.now() - startedAt;
      record?.handle(code, durationMs / 1000);
      logCall(log, level, { method: name, code, durationMs, peer: base.getPeer(), caller, error });
    };
    const send = base.sendStatus.bind(base);
    base.sendStatus = (status) => {
      // A stream the client already closed takes no status: it was cancelled.
      if (base.checkCancelled?.()) logOnce(grpc.status.CANCELLED);
      else logOnce(status.code, errorBehind(status.metadata));
      send(withErrorInfo(status));
    };
    const settle = (metadata: grpc.Metadata, next: (metadata: grpc.Metadata) => void) => {
      if (!cairnMethod) return next(metadata);
      const accept = (settled: Caller) => {
        caller = settled;
        rememberCaller(metadata, settled);
        next(metadata);
      };
      // Refused before the handler: straight to the innermost call (this
      // layer holds statuses back while metadata is being processed).
      const refuse = (error: unknown) => base.sendStatus(toServiceError(asCairnError(error)));
      let settled: Caller | Promise<Caller>;
      try {
        settled = callers.settle(name, { metadata, peer: base.getPeer() });
      } catch (error) {
        return refuse(error);
      }
      if (settled instanceof Promise) settled.then(accept, refuse);
      else accept(settled);
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        const listener: grpc.ServerListener = { onReceiveMetadata: settle, onCancel: () => logOnce(grpc.status.CANCELLED) };
        // Health and reflection (probes, tooling) are not traced; untraced calls keep the plain listener.
        next(tracing && cairnMethod ? tracedListener(tracing, name, listener, (started) => (span = started)) : listener);
      },
    });
  };
}

interface CallOutcome {
  method: string;
  code: grpc.status;
  durationMs: number;
  peer: string;
  caller: Caller | undefined;
  error: CairnError | undefined;
}

function logCall(log: Logger, level: "info" | "debug", o: CallOutcome): void {
  const entry = {
    method: o.method,
    code: grpc.status[o.code] ?? String(o.code),
    duration_ms: Math.round(o.durationMs * 1000) / 1000,
    peer: o.peer,
    ...(o.caller ? { principal: o.caller.principal, namespace: o.caller.namespace } : {}),
    ...(o.error ? { reason: o.error.reason } : {}),
  };
  if (o.error && (o.error.kind === "internal" || o.error.kind === "unavailable")) {
    log.error({ ...entry, err: safeCause(o.error.cause ?? o.error) }, "call failed");
  } else if (o.code === grpc.status.INTERNAL || o.code === grpc.status.UNKNOWN) {
    log.error(entry, "call failed");
  } else log[level](entry, "call");
}

/**
 * What may be logged of a failure: PostgreSQL's message, detail, where and
 * hint can quote the client's data (a key, a JSON fragment), so a database
 * error is reduced to its SQLSTATE and the names of what failed.
 */
export function safeCause(error: unknown): Record<string, unknown> {
  const e = error as Record<string, unknown> | undefined;
  if (typeof e?.code === "string" && typeof e?.severity === "string") {
    return { type: "DatabaseError", sqlstate: e.code, severity: e.severity, routine: e.routine, table: e.table, constraint: e.constraint };
  }
  if (error instanceof CairnError) return { type: "CairnError", reason: error.reason, cause: error.cause ? safeCause(error.cause) : undefined };
  if (error instanceof Error) return { type: error.name, message: error.message, stack: error.stack };
  return { type: typeof error };
}
