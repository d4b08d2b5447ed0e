// Who is calling, settled once per call before any handler runs: the
// principal (from a bearer token, a JWT or the TLS client certificate), the
// namespace the call works in (`x-cairn-namespace`, else the principal's
// default, else "default"), and whether the principal's role there allows
// the method. Handlers get the outcome as ctx.principal and ctx.namespace
// and pass the namespace to stores; nothing else reads credentials.
import type * as grpc from "@grpc/grpc-js";
import { invalidField } from "../errors.js";

export const NAMESPACE_HEADER = "x-cairn-namespace";
export const DEFAULT_NAMESPACE = "default";
const NAMESPACE_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** The settled identity of one call. */
export interface Caller {
  principal: string;
  namespace: string;
}

/** What a call offers to be identified by. */
export interface CallCredentials {
  metadata: grpc.Metadata;
  /** host:port of the peer, as grpc-js reports it (the key of its TLS certificate, if any). */
  peer: string;
}

export interface CallerSettler {
  /**
   * The caller of `method` ("cairn.v1.SessionService/GetSession"), or throws
   * UNAUTHENTICATED / PERMISSION_DENIED / INVALID_ARGUMENT. Synchronous
   * where it can be (tokens, certificates): only a JWT needs a promise, and
   * deferring grpc-js's metadata step costs every call measurable latency.
   */
  settle(method: string, call: CallCredentials): Caller | Promise<Caller>;
}

/** The namespace a call names in its header (validated), or undefined when it names none. */
export function requestedNamespace(metadata: grpc.Metadata): string | undefined {
  const values = metadata.get(NAMESPACE_HEADER);
  if (values.length === 0) return undefined;
  const value = String(values[0]);
  if (values.length > 1 || !NAMESPACE_PATTERN.test(value)) {
    throw invalidField(NAMESPACE_HEADER, "must be one namespace of [a-z0-9][a-z0-9-]{0,62}");
  }
  return value;
}

/** Without CAIRN_AUTH_FILE every caller is an admin of every namespace (loopback only, see config). */
export const openDoor: CallerSettler = {
  settle(_method, call) {
    return { principal: "anonymous", namespace: requestedNamespace(call.metadata) ?? DEFAULT_NAMESPACE };
  },
};

/** Callers settled by the call interceptor, found by the call's metadata object (the one grpc-js hands the handler). */
const settled = new WeakMap<grpc.Metadata, Caller>();

export function rememberCaller(metadata: grpc.Metadata, caller: Caller): void {
  settled.set(metadata, caller);
}

/** The caller the interceptor settled for a call with this metadata. */
export function callerOf(metadata: grpc.Metadata): Caller | undefined {
  return settled.get(metadata);
}
