// The one place where errors become gRPC statuses: a code, a message, and a
// google.rpc.Status in the grpc-status-details-bin trailer carrying ErrorInfo
// (always) and BadRequest (for field violations, at most 20 of them).
// Statuses that grpc-js or a library makes (health's NOT_FOUND, an oversized
// message, a deadline) get their ErrorInfo here too, in the call interceptor.
import * as grpc from "@grpc/grpc-js";
import { BadRequest, ErrorInfo, Status } from "@cairn/client";
import { CairnError, type ErrorKind, internal, MAX_FIELD_VIOLATIONS } from "../errors.js";

export const ERROR_DOMAIN = "cairn.v1";
const DETAILS_KEY = "grpc-status-details-bin";

const CODES: Record<ErrorKind, grpc.status> = {
  invalid_argument: grpc.status.INVALID_ARGUMENT,
  not_found: grpc.status.NOT_FOUND,
  already_exists: grpc.status.ALREADY_EXISTS,
  aborted: grpc.status.ABORTED,
  failed_precondition: grpc.status.FAILED_PRECONDITION,
  out_of_range: grpc.status.OUT_OF_RANGE,
  resource_exhausted: grpc.status.RESOURCE_EXHAUSTED,
  unavailable: grpc.status.UNAVAILABLE,
  deadline_exceeded: grpc.status.DEADLINE_EXCEEDED,
  cancelled: grpc.status.CANCELLED,
  unimplemented: grpc.status.UNIMPLEMENTED,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  permission_denied: grpc.status.PERMISSION_DENIED,
  internal: grpc.status.INTERNAL,
};

/** The CairnError behind a status's metadata, for the per-call log line (reason, cause). */
const errorOfStatus = new WeakMap<grpc.Metadata, CairnError>();

export function errorBehind(metadata: grpc.Metadata | null | undefined): CairnError | undefined {
  return metadata ? errorOfStatus.get(metadata) : undefined;
}

function packAny(typeName: string, value: Uint8Array) {
  return { typeUrl: `type.googleapis.com/${typeName}`, value: Buffer.from(value) };
}

/** Anything thrown becomes a CairnError; unknown throws are bugs: INTERNAL. */
export function asCairnError(error: unknown): CairnError {
  return error instanceof CairnError ? error : internal("internal error", error);
}

export function statusCode(error: CairnError): grpc.status {
  return CODES[error.kind];
}

function encodeDetails(code: grpc.status, message: string, reason: string, metadata: Record<string, string>, violations: CairnError["fieldViolations"]): Buffer {
  const details = [packAny("google.rpc.ErrorInfo", ErrorInfo.encode({ reason, domain: ERROR_DOMAIN, metadata }).finish())];
  if (violations.length > 0) {
    const fieldViolations = violations.slice(0, MAX_FIELD_VIOLATIONS).map((v) => ({ field: v.field, description: v.description }));
    details.push(packAny("google.rpc.BadRequest", BadRequest.encode(BadRequest.fromPartial({ fieldViolations })).finish()));
  }
  return Buffer.from(Status.encode({ code, message, details }).finish());
}

export function toServiceError(error: CairnError): grpc.StatusObject & { message: string } {
  const code = statusCode(error);
  // INTERNAL hides its cause from clients; the log keeps it.
  const message = error.kind === "internal" ? "internal error" : error.message;
  const info = { ...error.metadata };
  if (error.fieldViolations.length > MAX_FIELD_VIOLATIONS) info.violation_count ??= String(error.fieldViolations.length);
  const metadata = new grpc.Metadata();
  metadata.set(DETAILS_KEY, encodeDetails(code, message, error.reason, info, error.fieldViolations));
  errorOfStatus.set(metadata, error);
  return { code, details: message, message, metadata };
}

/** Reasons for statuses Cairn's handlers did not make, by what grpc-js says. */
function foreignReason(status: grpc.StatusObject): string {
  if (status.code === grpc.status.RESOURCE_EXHAUSTED && /larger than/.test(status.details)) return "MESSAGE_TOO_LARGE";
  return grpc.status[status.code] ?? "UNKNOWN";
}

/** A status as it leaves the server: any non-OK status without details gets an ErrorInfo. */
export function withErrorInfo<S extends { code: grpc.status; details?: string; metadata?: grpc.Metadata | null }>(status: S): S {
  if (status.code === grpc.status.OK) return status;
  const metadata = status.metadata ?? new grpc.Metadata();
  if (metadata.get(DETAILS_KEY).length > 0) return status;
  const withDetails = metadata.clone();
  const details = status.details ?? "";
  withDetails.set(DETAILS_KEY, encodeDetails(status.code, details, foreignReason({ ...status, details } as grpc.StatusObject), {}, []));
  return { ...status, metadata: withDetails };
}
