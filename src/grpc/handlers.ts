// Adapts async service functions to grpc-js handlers: one log line per call,
// an AbortSignal that fires on cancellation or deadline (stores hand it to
// the database layer), and errors mapped through status.ts.
import * as grpc from "@grpc/grpc-js";
import { performance } from "node:perf_hooks";
import type { Limits } from "../config.js";
import type { CallScope, Database, Queryable } from "../db/database.js";
import type { AbortReason } from "../db/errors.js";
import type { NotifyHub } from "../db/notify-hub.js";
import { CairnError } from "../errors.js";
import type { Logger } from "../logger.js";
import { asCairnError, statusCode, toServiceError } from "./status.js";

/** What deleting sessions does to one service's rows, inside the deleting transaction. */
export type SessionsDeletedStep = (tx: Queryable, sessionIds: string[]) => Promise<void>;

/** What every service's handler factory is given: `xxxHandlers(deps)`. */
export interface ServiceDeps {
  db: Database;
  limits: Limits;
  hub: NotifyHub;
  /** How often an idle stream sends progress. */
  progressIntervalMs: number;
  /** Every other service's step when sessions are deleted (wired in server.ts). */
  sessionCascade: SessionsDeletedStep[];
}

export interface CallContext extends CallScope {
  signal: AbortSignal;
  method: string;
  peer: string;
}

type AnyDefinition = Record<
  string,
  { path: string; requestStream: boolean; responseStream: boolean; requestDeserialize: (b: Buffer) => any; responseSerialize: (v: any) => Buffer }
>;

type RequestOf<M> = M extends { requestDeserialize: (b: Buffer) => infer R } ? R : never;
type ResponseOf<M> = M extends { responseSerialize: (v: infer R) => Buffer } ? R : never;

/** What a service implements, per method kind. */
export type ServiceHandlers<S extends AnyDefinition> = {
  [K in keyof S]: S[K]["requestStream"] extends false
    ? S[K]["responseStream"] extends false
      ? (request: RequestOf<S[K]>, ctx: CallContext) => Promise<ResponseOf<S[K]>>
      : (request: RequestOf<S[K]>, stream: grpc.ServerWritableStream<RequestOf<S[K]>, ResponseOf<S[K]>>, ctx: CallContext) => Promise<void>
    : (stream: grpc.ServerDuplexStream<RequestOf<S[K]>, ResponseOf<S[K]>>, ctx: CallContext) => Promise<void>;
};

type StreamCall = grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>;
/** What every kind of server call has (grpc-js's common base, ServerSurfaceCall, is not exported). */
type AnyCall = NodeJS.EventEmitter & { getDeadline(): grpc.Deadline };

/** Live streaming calls, so shutdown can stop their work and end them with UNAVAILABLE. */
export class StreamRegistry {
  private readonly streams = new Map<StreamCall, () => void>();

  add(call: StreamCall, stopWork: () => void): () => void {
    this.streams.set(call, stopWork);
    return () => this.streams.delete(call);
  }

  endAll(message: string): void {
    for (const [call, stopWork] of this.streams) {
      stopWork();
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: message, metadata: new grpc.Metadata() });
    }
    this.streams.clear();
  }
}

export interface HandlerDeps {
  log: Logger;
  streams: StreamRegistry;
}

function methodName(path: string): string {
  return path.slice(1);
}

/** Aborts on client cancellation, when the call's deadline passes, or on `abort` (shutdown). */
function callSignal(call: AnyCall): { signal: AbortSignal; dispose: () => void; abort: () => void } {
  const controller = new AbortController();
  const onCancelled = () => controller.abort({ kind: "cancelled" } satisfies AbortReason);
  call.once("cancelled", onCancelled);
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  let timer: NodeJS.Timeout | undefined;
  if (Number.isFinite(deadlineMs)) {
    timer = setTimeout(() => controller.abort({ kind: "deadline" } satisfies AbortReason), Math.max(0, deadlineMs - Date.now()));
  }
  return {
    signal: controller.signal,
    abort: () => controller.abort({ kind: "cancelled" } satisfies AbortReason),
    dispose: () => {
      if (timer) clearTimeout(timer);
      call.removeListener("cancelled", onCancelled);
    },
  };
}

function logCall(log: Logger, ctx: CallContext, startedAt: number, error?: CairnError): void {
  const entry = {
    method: ctx.method,
    code: error ? grpc.status[statusCode(error)] : "OK",
    duration_ms: Math.round((performance.now() - startedAt) * 1000) / 1000,
    peer: ctx.peer,
  };
  if (!error) log.info(entry, "call");
  else if (error.kind === "internal" || error.kind === "unavailable") {
    log.error({ ...entry, reason: error.reason, err: error.cause ?? error }, "call failed");
  } else log.info({ ...entry, reason: error.reason }, "call");
}

function bindUnary(path: string, fn: (req: any, ctx: CallContext) => Promise<any>, deps: HandlerDeps): grpc.handleUnaryCall<any, any> {
  return (call, callback) => {
    const startedAt = performance.now();
    const { signal, dispose } = callSignal(call);
    const ctx: CallContext = { signal, method: methodName(path), peer: call.getPeer() };
    fn(call.request, ctx).then(
      (response) => {
        dispose();
        logCall(deps.log, ctx, startedAt);
        callback(null, response);
      },
      (thrown) => {
        dispose();
        const error = asCairnError(thrown);
        logCall(deps.log, ctx, startedAt, error);
        callback(toServiceError(error));
      },
    );
  };
}

function bindStream(
  path: string,
  run: (call: any, ctx: CallContext) => Promise<void>,
  deps: HandlerDeps,
): (call: StreamCall) => void {
  return (call) => {
    const startedAt = performance.now();
    const { signal, dispose, abort } = callSignal(call);
    const ctx: CallContext = { signal, method: methodName(path), peer: call.getPeer() };
    const unregister = deps.streams.add(call, abort);
    run(call, ctx).then(
      () => {
        dispose();
        unregister();
        logCall(deps.log, ctx, startedAt);
        if (!signal.aborted) call.end();
      },
      (thrown) => {
        dispose();
        unregister();
        const error = asCairnError(thrown);
        logCall(deps.log, ctx, startedAt, error);
        if (!signal.aborted || error.kind !== "cancelled") call.emit("error", toServiceError(error));
      },
    );
  };
}

/** A grpc-js implementation of `definition`: every method must have its handler. */
export function bindService<S extends AnyDefinition>(
  definition: S,
  handlers: ServiceHandlers<S>,
  deps: HandlerDeps,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = (handlers as Record<string, (...args: any[]) => Promise<any>>)[name]!;
    if (!method.requestStream && !method.responseStream) impl[name] = bindUnary(method.path, handler, deps);
    else if (!method.requestStream) impl[name] = bindStream(method.path, (call, ctx) => handler(call.request, call, ctx), deps);
    else impl[name] = bindStream(method.path, handler, deps);
  }
  return impl;
}
