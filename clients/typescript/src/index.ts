// @cairn/client: the generated ts-proto messages and grpc-js service
// definitions for cairn.v1, plus a small promise-based wrapper.
import { BinaryReader } from "@bufbuild/protobuf/wire";
import * as grpc from "@grpc/grpc-js";
import * as job from "./gen/cairn/v1/job.js";
import * as keyvalue from "./gen/cairn/v1/keyvalue.js";
import * as metric from "./gen/cairn/v1/metric.js";
import * as resolution from "./gen/cairn/v1/resolution.js";
import * as session from "./gen/cairn/v1/session.js";
import * as trace from "./gen/cairn/v1/trace.js";
import * as transaction from "./gen/cairn/v1/transaction.js";
import { BadRequest, ErrorInfo } from "./gen/google/rpc/error_details.js";
import { Status } from "./gen/google/rpc/status.js";
// Keeps JSON null in google.protobuf.Value oneof members (Entry.json_value) through fromPartial.
import { decodeWithDocuments, documentsOf, encodeWithDocuments } from "./documents.js";
import "./json-null.js";

export * from "./gen/cairn/v1/job.js";
export * from "./gen/cairn/v1/keyvalue.js";
export * from "./gen/cairn/v1/metric.js";
export * from "./gen/cairn/v1/resolution.js";
export * from "./gen/cairn/v1/session.js";
export * from "./gen/cairn/v1/trace.js";
export * from "./gen/cairn/v1/transaction.js";
/** Each generated module, by proto file, e.g. `session.Session`. */
export { job, keyvalue, metric, resolution, session, trace, transaction };
export { Empty } from "./gen/google/protobuf/empty.js";
export { Duration } from "./gen/google/protobuf/duration.js";
export { Timestamp } from "./gen/google/protobuf/timestamp.js";
export { BadRequest, ErrorInfo } from "./gen/google/rpc/error_details.js";
export { Status } from "./gen/google/rpc/status.js";
export { descriptorSetBase64 } from "./gen/descriptor_set.js";
export { type DocumentPlan, decodeWithDocuments, documentsOf, encodeWithDocuments, type Generated, generatedOf, methodOf, registry } from "./documents.js";

/** The shape ts-proto gives every message namespace we rely on. */
interface MessageFns<T> {
  fromPartial(object: unknown): T;
}

/** A grpc-js service definition as ts-proto generates it. */
type ServiceDefinition = Record<
  string,
  {
    path: string;
    requestStream: boolean;
    responseStream: boolean;
    requestSerialize: (value: any) => Buffer;
    responseDeserialize: (value: Buffer) => any;
  }
>;

type RequestOf<M> = M extends { requestSerialize: (value: infer R) => Buffer } ? R : never;
type ResponseOf<M> = M extends { responseDeserialize: (value: Buffer) => infer R } ? R : never;
type DeepPartial<T> = T extends Buffer | Uint8Array | string | number | boolean | undefined
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends { $case: string; value: unknown }
      ? { $case: T["$case"]; value: DeepPartial<T["value"]> }
      : T extends object
        ? { [K in keyof T]?: DeepPartial<T[K]> }
        : T;

export interface CallOptions {
  /** Milliseconds from now, or an absolute Date. */
  deadline?: number | Date;
  metadata?: grpc.Metadata;
  signal?: AbortSignal;
}

/**
 * Unary methods become `(partialRequest, options?) => Promise<response>`;
 * server-streaming ones `(partialRequest, options?) => ClientReadableStream`;
 * bidirectional ones `(options?) => ClientDuplexStream` taking partial requests.
 */
export type PromiseClient<S extends ServiceDefinition> = {
  [K in keyof S]: S[K]["requestStream"] extends false
    ? S[K]["responseStream"] extends false
      ? (request: DeepPartial<RequestOf<S[K]>>, options?: CallOptions) => Promise<ResponseOf<S[K]>>
      : (request: DeepPartial<RequestOf<S[K]>>, options?: CallOptions) => grpc.ClientReadableStream<ResponseOf<S[K]>>
    : (options?: CallOptions) => grpc.ClientDuplexStream<DeepPartial<RequestOf<S[K]>>, ResponseOf<S[K]>>;
};

function toDeadline(deadline: number | Date | undefined): grpc.Deadline | undefined {
  if (deadline === undefined) return undefined;
  return deadline instanceof Date ? deadline : new Date(Date.now() + deadline);
}

function upperFirst(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

function promisify<S extends ServiceDefinition>(
  client: grpc.Client,
  definition: S,
  messages: Record<string, unknown>,
  base: grpc.Metadata,
): PromiseClient<S> {
  const wrapped: Record<string, unknown> = {};
  // The client's own metadata (token, namespace), then the call's, which wins.
  const metadataOf = (options: CallOptions) => {
    const merged = base.clone();
    if (options.metadata) {
      // Metadata.merge appends: a key the call sets replaces the client's.
      for (const key of Object.keys(options.metadata.getMap())) merged.remove(key);
      merged.merge(options.metadata);
    }
    return merged;
  };
  for (const [name, method] of Object.entries(definition)) {
    // Every cairn.v1 request message is named after its method.
    const requestType = messages[`${upperFirst(name)}Request`] as MessageFns<unknown> | undefined;
    if (!requestType) throw new Error(`no request message for ${method.path}`);
    const serialize = documentsWriter(method.path, method.requestSerialize, requestType);
    const deserialize = documentsReader(method.path, withRoomForDocuments(method.responseDeserialize));
    const callOptions = (options: CallOptions) => ({ deadline: toDeadline(options.deadline) });
    const cancelOnAbort = <C extends { cancel(): void; once?(event: string, listener: () => void): unknown }>(call: C, options: CallOptions) => {
      const { signal } = options;
      if (!signal) return call;
      if (signal.aborted) {
        call.cancel();
        return call;
      }
      const onAbort = () => call.cancel();
      signal.addEventListener("abort", onAbort, { once: true });
      // A signal shared by many calls must not keep a listener per finished call.
      call.once?.("status", () => signal.removeEventListener("abort", onAbort));
      return call;
    };
    if (method.requestStream) {
      wrapped[name] = (options: CallOptions = {}) =>
        cancelOnAbort(
          client.makeBidiStreamRequest(method.path, serialize, deserialize, metadataOf(options), callOptions(options)),
          options,
        );
      continue;
    }
    if (method.responseStream) {
      wrapped[name] = (request: unknown, options: CallOptions = {}) =>
        cancelOnAbort(
          client.makeServerStreamRequest(
            method.path,
            serialize,
            deserialize,
            request,
            metadataOf(options),
            callOptions(options),
          ),
          options,
        );
      continue;
    }
    wrapped[name] = (request: unknown, options: CallOptions = {}) =>
      new Promise((resolve, reject) => {
        const call = client.makeUnaryRequest(
          method.path,
          serialize,
          deserialize,
          request,
          metadataOf(options),
          callOptions(options),
          (error, response) => (error ? reject(error) : resolve(response)),
        );
        cancelOnAbort(call, options);
      });
  }
  return wrapped as PromiseClient<S>;
}

/**
 * ts-proto's decoders refuse more than 100 nested messages, and a
 * google.protobuf.Struct spends three per object level, so a document more
 * than ~32 levels deep (Cairn stores up to 64) would not decode. The
 * decoders keep their depth on the reader they are given, so a reader whose
 * count starts lower gives room for deep documents while still bounding the
 * recursion (here: 1,000 nested messages, about 330 object levels).
 */
const ROOM_FOR_DOCUMENTS = 900;

/**
 * A request serializer whose documents are written with the plain codec
 * (documents.ts): a large session state or payload costs a fraction of
 * ts-proto's wrapping and encoding of each value.
 */
function documentsWriter(path: string, generated: (value: any) => Buffer, requestType: MessageFns<unknown>): (partial: unknown) => Buffer {
  const plan = documentsOf(path, "input");
  return (partial) => {
    const message = requestType.fromPartial(partial ?? {});
    return plan ? encodeWithDocuments(plan, message as Record<string, any>) : generated(message);
  };
}

/** A response deserializer whose documents are read with the plain codec; anything unusual is the generated code's to read. */
function documentsReader<T>(path: string, generated: (bytes: Buffer) => T): (bytes: Buffer) => T {
  const plan = documentsOf(path, "output");
  if (!plan) return generated;
  return (bytes) => {
    try {
      return decodeWithDocuments(plan, bytes, -ROOM_FOR_DOCUMENTS, generated) ?? generated(bytes);
    } catch {
      return generated(bytes);
    }
  };
}

function withRoomForDocuments<T>(deserialize: (bytes: Buffer) => T): (bytes: Buffer) => T {
  return (bytes) => {
    const reader = new BinaryReader(bytes);
    (reader as unknown as { __tsProtoDecodeDepth: number }).__tsProtoDecodeDepth = -ROOM_FOR_DOCUMENTS;
    return deserialize(reader as unknown as Buffer);
  };
}

export interface CairnClientOptions {
  /** Sent as `authorization: Bearer <token>` on every call (an opaque token or a JWT). */
  token?: string;
  /** Sent as `x-cairn-namespace` on every call; the principal's default namespace when unset. */
  namespace?: string;
  /** TLS: the CA that signed the server's certificate (PEM), and for mTLS the client's own certificate and key. */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  /** Channel credentials of your own (overrides `tls`). */
  credentials?: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
}

function channelCredentials(options: CairnClientOptions): grpc.ChannelCredentials {
  if (options.credentials) return options.credentials;
  if (!options.tls) return grpc.credentials.createInsecure();
  const pem = (value: string | Buffer | undefined) => (value === undefined ? null : Buffer.from(value));
  return grpc.credentials.createSsl(pem(options.tls.ca), pem(options.tls.key), pem(options.tls.cert));
}

/** One channel shared by promise clients for the five Cairn services. */
export class CairnClient {
  readonly sessions: PromiseClient<typeof session.SessionServiceService>;
  readonly resolutions: PromiseClient<typeof resolution.ResolutionServiceService>;
  readonly traces: PromiseClient<typeof trace.TraceEventServiceService>;
  readonly transactions: PromiseClient<typeof transaction.TransactionServiceService>;
  readonly keyValue: PromiseClient<typeof keyvalue.KeyValueServiceService>;
  readonly jobs: PromiseClient<typeof job.JobServiceService>;
  readonly metrics: PromiseClient<typeof metric.MetricServiceService>;
  /** The generated grpc-js clients (they take complete messages). */
  readonly raw: {
    sessions: session.SessionServiceClient;
    resolutions: resolution.ResolutionServiceClient;
    traces: trace.TraceEventServiceClient;
    transactions: transaction.TransactionServiceClient;
    keyValue: keyvalue.KeyValueServiceClient;
    jobs: job.JobServiceClient;
    metrics: metric.MetricServiceClient;
  };

  constructor(address: string, options: CairnClientOptions = {}) {
    const credentials = channelCredentials(options);
    const base = new grpc.Metadata();
    if (options.token) base.set("authorization", `Bearer ${options.token}`);
    if (options.namespace) base.set("x-cairn-namespace", options.namespace);
    const sessions = new session.SessionServiceClient(address, credentials, options.channelOptions);
    // Every further client shares the first one's channel.
    const shared = { ...options.channelOptions, channelOverride: sessions.getChannel() };
    this.raw = {
      sessions,
      resolutions: new resolution.ResolutionServiceClient(address, credentials, shared),
      traces: new trace.TraceEventServiceClient(address, credentials, shared),
      transactions: new transaction.TransactionServiceClient(address, credentials, shared),
      keyValue: new keyvalue.KeyValueServiceClient(address, credentials, shared),
      jobs: new job.JobServiceClient(address, credentials, shared),
      metrics: new metric.MetricServiceClient(address, credentials, shared),
    };
    this.sessions = promisify(this.raw.sessions, session.SessionServiceService, session, base);
    this.resolutions = promisify(this.raw.resolutions, resolution.ResolutionServiceService, resolution, base);
    this.traces = promisify(this.raw.traces, trace.TraceEventServiceService, trace, base);
    this.transactions = promisify(this.raw.transactions, transaction.TransactionServiceService, transaction, base);
    this.keyValue = promisify(this.raw.keyValue, keyvalue.KeyValueServiceService, keyvalue, base);
    this.jobs = promisify(this.raw.jobs, job.JobServiceService, job, base);
    this.metrics = promisify(this.raw.metrics, metric.MetricServiceService, metric, base);
  }

  close(): void {
    this.raw.sessions.close();
  }
}

/** The google.rpc details Cairn attaches to every error. */
export interface ErrorDetails {
  errorInfo?: ErrorInfo;
  badRequest?: BadRequest;
}

/** Decodes ErrorInfo and BadRequest from a failed call's `grpc-status-details-bin` trailer. */
export function errorDetails(error: grpc.ServiceError): ErrorDetails {
  const [raw] = error.metadata?.get("grpc-status-details-bin") ?? [];
  if (!raw) return {};
  const status = Status.decode(typeof raw === "string" ? Buffer.from(raw, "base64") : raw);
  const details: ErrorDetails = {};
  for (const any of status.details) {
    if (any.typeUrl.endsWith("/google.rpc.ErrorInfo")) details.errorInfo = ErrorInfo.decode(any.value);
    if (any.typeUrl.endsWith("/google.rpc.BadRequest")) details.badRequest = BadRequest.decode(any.value);
  }
  return details;
}
