// Adapts async service functions to grpc-js handlers: requests decoded so
// that bad bytes are INVALID_ARGUMENT (decode.ts), an AbortSignal that fires
// on cancellation or deadline (stores hand it to the database layer),
// responses serialized here so their size is known, streams registered and
// bounded (streams.ts), and errors mapped through status.ts. The per-call
// log line is written by the call interceptor (interceptor.ts), which sees
// every status that actually leaves the server.
import * as grpc from "@grpc/grpc-js";
import type { Limits, StreamLimits } from "../config.js";
import type { CallScope, Database, SessionsDeletedStep } from "../db/database.js";
import type { AbortReason } from "../db/errors.js";
import { callerOf } from "../auth/caller.js";
import type { NotifyHub } from "../db/notify-hub.js";
import { internal, invalidArgument, messageTooLarge } from "../errors.js";
import { requestDeserializer, responseSerializer, UndecodableRequest } from "./decode.js";
import { asCairnError, toServiceError } from "./status.js";
import { attachOutbox, Outbox, type StreamCall, type StreamRegistry } from "./streams.js";

/** What every service's handler factory is given: `xxxHandlers(deps)`. */
export interface ServiceDeps {
  db: Database;
  /** Connections of their own for the live feeds' reads after each commit (Watch, SubscribeEvents). */
  liveDb: Database;
  limits: Limits;
  hub: NotifyHub;
  /** How often an idle stream sends progress. */
  progressIntervalMs: number;
  /** Every other service's step when sessions are deleted (wired in server.ts). */
  sessionCascade: SessionsDeletedStep[];
  /** Versions of each session its history keeps, the current one included (CAIRN_SESSION_HISTORY_VERSIONS). */
  sessionHistoryVersions: number;
  /** Aborts when the daemon begins to stop: waits (LeaseJobs' wait) end at once. */
  stopping: AbortSignal;
}

export interface CallContext extends CallScope {
  signal: AbortSignal;
  method: string;
  peer: string;
  /** Who is calling (settled before the handler runs, see auth/caller.ts). */
  principal: string;
  /** The namespace every store call of this call works in. */
  namespace: string;
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

/** What every kind of server call has (grpc-js's common base, ServerSurfaceCall, is not exported). */
type AnyCall = NodeJS.EventEmitter & { getDeadline(): grpc.Deadline; getPeer(): string; metadata: grpc.Metadata };

export interface HandlerDeps {
  streams: StreamRegistry;
  streamLimits: StreamLimits;
  maxMessageBytes: number;
  /** How deep a request's JSON documents may nest (the decoder must make room for it). */
  maxJsonDepth: number;
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

/** The call's context, with the caller the interceptor settled (who, which namespace, allowed). */
async function contextOf(call: AnyCall, path: string, signal: AbortSignal): Promise<CallContext> {
  const caller = callerOf(call.metadata);
  if (!caller) throw internal(`no caller settled for ${path}: is the call interceptor installed?`);
  return { signal, method: path.slice(1), peer: call.getPeer(), ...caller };
}

/** The request, or INVALID_ARGUMENT for bytes that did not decode. */
function decoded<T>(request: T | UndecodableRequest): T {
  if (request instanceof UndecodableRequest) throw invalidArgument(request.violations);
  return request;
}

/**
 * The requests of a client stream (IngestEvents), one at a time: the next
 * is read only when the caller asks, so flow control reaches the client. The
 * iterator must not destroy the call when the loop ends: that would cancel
 * it instead of ending it with OK.
 */
export async function* readRequests<T>(call: grpc.ServerDuplexStream<T, unknown>): AsyncGenerator<T> {
  for await (const request of call.iterator({ destroyOnReturn: false }) as AsyncIterable<T | UndecodableRequest>) {
    yield decoded(request);
  }
}

function bindUnary(
  path: string,
  serialize: (v: unknown) => Buffer,
  fn: (req: any, ctx: CallContext) => Promise<any>,
  deps: HandlerDeps,
): grpc.handleUnaryCall<any, any> {
  return (call, callback) => {
    const { signal, dispose } = callSignal(call);
    contextOf(call, path, signal)
      .then((ctx) => fn(decoded(call.request), ctx))
      .then((response) => {
        // Serialized here, once, so an oversized response is an error of ours
        // (with details, and logged as such), not a send that silently fails.
        const bytes = serialize(response);
        if (bytes.length > deps.maxMessageBytes) throw messageTooLarge(bytes.length, deps.maxMessageBytes);
        return bytes;
      })
      .then(
        (bytes) => {
          dispose();
          callback(null, bytes);
        },
        (thrown) => {
          dispose();
          callback(toServiceError(asCairnError(thrown)));
        },
      );
  };
}

function bindStream(
  path: string,
  serialize: (v: unknown) => Buffer,
  run: (call: any, ctx: CallContext) => Promise<void>,
  deps: HandlerDeps,
): (call: StreamCall) => void {
  return (call) => {
    const { signal, dispose, abort } = callSignal(call);
    let unregister = () => {};
    contextOf(call, path, signal)
      .then((ctx) => {
        unregister = deps.streams.add(call, { principal: ctx.principal, kind: path.split("/")[2]!, stopWork: abort });
        const outbox = new Outbox(call, serialize, deps.streamLimits, deps.streams.memory, deps.maxMessageBytes);
        attachOutbox(call, outbox);
        // However the stream ends, its unflushed bytes stop counting.
        call.once("close", () => outbox.close());
        call.once("cancelled", () => outbox.close());
        return run(call, ctx);
      })
      .then(
        () => {
          dispose();
          unregister();
          if (!signal.aborted) call.end();
        },
        (thrown) => {
          dispose();
          unregister();
          const error = asCairnError(thrown);
          // A call the client cancelled has no one to tell; shutdown ends streams itself.
          if (!signal.aborted || error.kind !== "cancelled") call.emit("error", toServiceError(error));
        },
      );
  };
}

/** Response bytes pass through: handlers serialize once, to know the size. */
function passThrough(serialize: (v: any) => Buffer): (v: any) => Buffer {
  return (value) => (Buffer.isBuffer(value) ? value : serialize(value));
}

/**
 * A grpc-js service for `definition`: the definition to register (with
 * Cairn's request decoding and pass-through responses) and its
 * implementation; every method must have its handler.
 */
export function bindService<S extends AnyDefinition>(
  definition: S,
  handlers: ServiceHandlers<S>,
  deps: HandlerDeps,
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const wrapped: Record<string, unknown> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = (handlers as Record<string, (...args: any[]) => Promise<any>>)[name]!;
    const serialize = responseSerializer(method.path, method.responseSerialize);
    wrapped[name] = { ...method, requestDeserialize: requestDeserializer(method.path, deps.maxJsonDepth), responseSerialize: passThrough(serialize) };
    if (!method.requestStream && !method.responseStream) implementation[name] = bindUnary(method.path, serialize, handler, deps);
    else if (!method.requestStream) {
      implementation[name] = bindStream(method.path, serialize, (call, ctx) => handler(decoded(call.request), call, ctx), deps);
    } else implementation[name] = bindStream(method.path, serialize, handler, deps);
  }
  return { definition: wrapped as grpc.ServiceDefinition, implementation };
}
