// The one database-error translator: every SQLSTATE and network failure that
// Cairn gives a meaning to is read here, and nowhere else.
import {
  CairnError,
  cancelled,
  deadlineExceeded,
  internal,
  overloaded,
  transactionConflict,
  unavailable,
  uniqueViolation,
} from "../errors.js";

const CONNECTION_ERROR_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH"]);

export interface AbortReason {
  kind: "cancelled" | "deadline";
}

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

/** True when the error means "the database cannot be reached right now". */
export function isConnectionError(error: unknown): boolean {
  const code = sqlState(error);
  if (code && CONNECTION_ERROR_CODES.has(code)) return true;
  // 08: connection exception; 57P01..57P03: admin/crash shutdown, cannot connect now; 53300: too many connections.
  if (code && (code.startsWith("08") || ["57P01", "57P02", "57P03", "53300"].includes(code))) return true;
  const message = (error as Error)?.message ?? "";
  return /Connection terminated|Client has encountered a connection error|connect ECONNREFUSED/.test(message);
}

/**
 * pg-pool's error when a checkout waited its whole connectionTimeoutMillis
 * in the queue of a full pool: saturation, not an outage. (A new connection
 * that cannot be made fails with "Connection terminated…" instead.)
 */
function isPoolWaitTimeout(error: unknown): boolean {
  return (error as Error)?.message === "timeout exceeded when trying to connect";
}

/** True for the translation of a unique-constraint violation (SQLSTATE 23505). */
export function isUniqueViolation(error: unknown): boolean {
  return error instanceof CairnError && error.reason === "ALREADY_EXISTS" && sqlState(error.cause) === "23505";
}

/** True for the translation of a numeric overflow (SQLSTATE 22003), e.g. a float8 sum past ±1.8e308. */
export function isNumericOverflow(error: unknown): boolean {
  return error instanceof CairnError && error.kind === "internal" && sqlState(error.cause) === "22003";
}

export function translateDbError(error: unknown, signal?: AbortSignal): CairnError {
  if (error instanceof CairnError) return error;
  const reason = signal?.aborted ? (signal.reason as AbortReason | undefined) : undefined;
  if (reason?.kind === "cancelled") return cancelled();
  if (reason?.kind === "deadline") return deadlineExceeded();
  if (isPoolWaitTimeout(error)) return overloaded();
  if (isConnectionError(error)) return unavailable("the database is unreachable; retry later", error);
  const code = sqlState(error);
  if (code === "57014") return deadlineExceeded("a statement ran longer than the statement timeout");
  if (code === "40001" || code === "40P01") return transactionConflict("a concurrent transaction conflicted; retry", {}, error);
  if (code === "23505") return uniqueViolation(error);
  return internal("unexpected database error", error);
}
