// Domain errors: what went wrong, in Cairn's terms. Every CairnError is built
// by a constructor in this file (stores and services throw them; db/errors.ts
// translates database failures into them); src/grpc/status.ts is the one
// place that turns them into gRPC statuses with ErrorInfo and BadRequest.

export type ErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "aborted"
  | "failed_precondition"
  | "out_of_range"
  | "resource_exhausted"
  | "unavailable"
  | "deadline_exceeded"
  | "cancelled"
  | "unimplemented"
  | "unauthenticated"
  | "permission_denied"
  | "internal";

export interface FieldViolation {
  /** Dotted path of the offending field, e.g. "session.agent_id". */
  field: string;
  description: string;
}

export class CairnError extends Error {
  constructor(
    readonly kind: ErrorKind,
    /** UPPER_SNAKE_CASE reason for ErrorInfo. */
    readonly reason: string,
    message: string,
    readonly metadata: Record<string, string> = {},
    readonly fieldViolations: FieldViolation[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "CairnError";
  }
}

/** Where the bad input sits when the field path alone does not say (e.g. which batch of a stream). */
export interface InputContext {
  label: string;
  metadata: Record<string, string>;
}

/** At most this many violations travel in one error, so its status always fits in the trailers. */
export const MAX_FIELD_VIOLATIONS = 20;

/** One violation's field and description as an error shows them: bounded, so twenty always fit in a trailer. */
const MAX_VIOLATION_CHARS = 256;
const bounded = (text: string) => (text.length > MAX_VIOLATION_CHARS ? `${text.slice(0, MAX_VIOLATION_CHARS - 1)}…` : text);

/** `total`: how many violations there were, when more than the ones given (see Violations). */
export function invalidArgument(violations: FieldViolation[], context?: InputContext, total = violations.length): CairnError {
  const shown = violations.slice(0, MAX_FIELD_VIOLATIONS).map((v) => ({ field: bounded(v.field), description: bounded(v.description) }));
  const more = Math.max(total, violations.length) - shown.length;
  const summary = shown.map((v) => `${v.field}: ${v.description}`).join("; ") + (more > 0 ? `; and ${more} more` : "");
  const message = context ? `${context.label}: ${summary}` : summary;
  const metadata = { ...(context?.metadata ?? {}), ...(more > 0 ? { violation_count: String(shown.length + more) } : {}) };
  return new CairnError("invalid_argument", "INVALID_ARGUMENT", message, metadata, shown);
}

export function invalidField(field: string, description: string): CairnError {
  return invalidArgument([{ field, description }]);
}

export function invalidPageToken(description: string): CairnError {
  return new CairnError("invalid_argument", "INVALID_PAGE_TOKEN", `page_token: ${description}`, {}, [
    { field: "page_token", description },
  ]);
}

export function notFound(resource: string, id: string, detail = ""): CairnError {
  const message = `${resource} ${JSON.stringify(id)} not found${detail ? `: ${detail}` : ""}`;
  return new CairnError("not_found", "NOT_FOUND", message, { resource, id });
}

export function alreadyExists(resource: string, id: string): CairnError {
  return new CairnError("already_exists", "ALREADY_EXISTS", `${resource} ${JSON.stringify(id)} already exists`, {
    resource,
    id,
  });
}

export function requestIdReused(requestId: string): CairnError {
  return new CairnError(
    "already_exists",
    "REQUEST_ID_REUSED",
    `request_id ${JSON.stringify(requestId)} was already used with a different request`,
    { request_id: requestId },
  );
}

export function versionConflict(resource: string, id: string, currentVersion: number): CairnError {
  return new CairnError(
    "aborted",
    "VERSION_CONFLICT",
    `${resource} ${JSON.stringify(id)} is at version ${currentVersion}, not the expected one`,
    { resource, id, current_version: String(currentVersion) },
  );
}

/** A session version older than the history keeps (CAIRN_SESSION_HISTORY_VERSIONS). */
export function versionPruned(sessionId: string, version: number, oldestKept: number): CairnError {
  return new CairnError(
    "not_found",
    "VERSION_PRUNED",
    `session ${JSON.stringify(sessionId)} no longer holds version ${version} in its history; the oldest kept is ${oldestKept}`,
    { resource: "session", id: sessionId, version: String(version), oldest_version: String(oldestKept) },
  );
}

export function unavailable(message: string, cause?: unknown): CairnError {
  return new CairnError("unavailable", "DATABASE_UNAVAILABLE", message, {}, [], { cause });
}

export function cancelled(message = "the call was cancelled"): CairnError {
  return new CairnError("cancelled", "CANCELLED", message);
}

export function deadlineExceeded(message = "the call's deadline passed before its SQL finished"): CairnError {
  return new CairnError("deadline_exceeded", "DEADLINE_EXCEEDED", message);
}

export function internal(message: string, cause?: unknown): CairnError {
  return new CairnError("internal", "INTERNAL", message, {}, [], { cause });
}

export function failedPrecondition(message: string, metadata: Record<string, string> = {}): CairnError {
  return new CairnError("failed_precondition", "FAILED_PRECONDITION", message, metadata);
}

export function outOfRange(message: string, metadata: Record<string, string> = {}): CairnError {
  return new CairnError("out_of_range", "OUT_OF_RANGE", message, metadata);
}

/** A concurrent transaction won (serialization failure, deadlock) or a row kept changing: retry. */
export function transactionConflict(message: string, metadata: Record<string, string> = {}, cause?: unknown): CairnError {
  return new CairnError("aborted", "TRANSACTION_CONFLICT", message, metadata, [], { cause });
}

/** A unique constraint refused a row; db/errors.ts raises it, stores may say what it means for them. */
export function uniqueViolation(cause: unknown): CairnError {
  return new CairnError("already_exists", "ALREADY_EXISTS", "a row with the same key already exists", {}, [], { cause });
}

/** A fenced job write whose lease_token is no longer the job's. */
export function leaseLost(jobId: string): CairnError {
  return new CairnError("aborted", "LEASE_LOST", `the lease on job ${JSON.stringify(jobId)} is no longer held`, { job_id: jobId });
}

/** A heartbeat on a job that was cancelled while this lease ran it: the worker should stop. */
export function jobCancelled(jobId: string): CairnError {
  return new CairnError("aborted", "JOB_CANCELLED", `job ${JSON.stringify(jobId)} was cancelled; stop working on it`, { job_id: jobId });
}

/** A Commit's condition that does not hold; `current` is current_version or current_state. */
export function conditionFailed(index: number, what: string, current: Record<string, string>): CairnError {
  return new CairnError("aborted", "CONDITION_FAILED", `conditions[${index}]: ${what}`, { condition_index: String(index), ...current });
}

/**
 * The same error with its message prefixed by where it happened and more
 * metadata (a Commit's failing operation: its operation_index).
 */
export function locatedError(error: CairnError, where: string, metadata: Record<string, string>): CairnError {
  return new CairnError(error.kind, error.reason, `${where}: ${error.message}`, { ...error.metadata, ...metadata }, error.fieldViolations, {
    cause: error.cause,
  });
}

/** A Watch that starts before the retained change log. */
export function revisionCompacted(compactRevision: number): CairnError {
  return new CairnError(
    "out_of_range",
    "REVISION_COMPACTED",
    `revisions up to ${compactRevision} were compacted; watch from ${compactRevision + 1} or later`,
    { compact_revision: String(compactRevision) },
  );
}

/** Every connection of the pool stayed busy for the call's whole wait: retry with backoff. */
export function overloaded(): CairnError {
  return new CairnError("resource_exhausted", "OVERLOADED", "no database connection came free in time; retry with backoff");
}

/** A new stream past the replica's or the principal's bound. */
export function tooManyStreams(scope: "replica" | "principal", limit: number): CairnError {
  return new CairnError("resource_exhausted", "TOO_MANY_STREAMS", `this ${scope} already holds ${limit} open streams`, {
    scope,
    limit: String(limit),
  });
}

/** A stream whose client has not drained its unsent data in time; `resume` says where to pick up. */
export function slowConsumer(timeoutMs: number, resume: Record<string, string>): CairnError {
  return new CairnError(
    "resource_exhausted",
    "SLOW_CONSUMER",
    `the client read nothing for ${timeoutMs} ms while the stream's buffer was full`,
    resume,
  );
}

/** A response larger than the message limit. */
export function messageTooLarge(bytes: number, limit: number): CairnError {
  return new CairnError("resource_exhausted", "MESSAGE_TOO_LARGE", `the response is ${bytes} bytes; the limit is ${limit}`, {
    limit: String(limit),
  });
}

/** A QueryMetrics result that would pass the message limit: the caller narrows it or aggregates. */
export function metricQueryTooLarge(limit: number): CairnError {
  return new CairnError(
    "resource_exhausted",
    "MESSAGE_TOO_LARGE",
    `the query's result would pass the message limit of ${limit} bytes; narrow start_time..end_time or the labels, or aggregate with a step`,
    { limit: String(limit) },
  );
}

/** No credentials, or credentials that name no principal. */
export function unauthenticated(message = "missing or invalid credentials"): CairnError {
  return new CairnError("unauthenticated", "UNAUTHENTICATED", message);
}

/** The principal's role in the namespace is lower than the method needs (or it has none there). */
export function permissionDenied(namespace: string, requiredRole: string): CairnError {
  return new CairnError("permission_denied", "PERMISSION_DENIED", `this method needs the ${requiredRole} role in namespace ${JSON.stringify(namespace)}`, {
    namespace,
    required_role: requiredRole,
  });
}
