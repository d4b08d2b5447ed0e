// The one place where errors become gRPC statuses: a code, a message, and a
// google.rpc.Status in the grpc-status-details-bin trailer carrying ErrorInfo
// (always) and BadRequest (for field violations).
import * as grpc from "@grpc/grpc-js";
import { BadRequest, ErrorInfo, Status } from "@cairn/client";
import { CairnError, type ErrorKind, internal } from "../errors.js";

export const ERROR_DOMAIN = "cairn.v1";

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
  internal: grpc.status.INTERNAL,
};

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

export function toServiceError(error: CairnError): grpc.StatusObject & { message: string } {
  const code = statusCode(error);
  const details = [
    packAny(
      "google.rpc.ErrorInfo",
      ErrorInfo.encode({ reason: error.reason, domain: ERROR_DOMAIN, metadata: error.metadata }).finish(),
    ),
  ];
  if (error.fieldViolations.length > 0) {
    details.push(
      packAny(
        "google.rpc.BadRequest",
        BadRequest.encode(
          BadRequest.fromPartial({
            fieldViolations: error.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
          }),
        ).finish(),
      ),
    );
  }
  // INTERNAL hides its cause from clients; the log keeps it.
  const message = error.kind === "internal" ? "internal error" : error.message;
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(Status.encode({ code, message, details }).finish()));
  return { code, details: message, message, metadata };
}
