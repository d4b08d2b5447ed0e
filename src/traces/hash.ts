// The trace hash chain, exactly as API.md defines it, so that anyone holding
// the events can recompute it without Cairn's code:
//   event_hash = lowercase hex SHA-256(prev_hash + canonical)
// where canonical is the RFC 8785 (JCS) serialization of the event's
// identifying fields, severity as its enum name and time as RFC 3339 UTC
// with exactly six fractional digits.
import canonicalize from "canonicalize";
import { createHash } from "node:crypto";

export interface ChainedFields {
  traceId: string;
  sequence: number;
  eventId: string;
  sessionId: string;
  eventType: string;
  /** Enum name, e.g. "SEVERITY_INFO". */
  severity: string;
  /** "2026-11-22T08:20:29.123456Z". */
  time: string;
  payload: Record<string, unknown>;
}

export function canonicalEvent(e: ChainedFields): string {
  return canonicalize({
    trace_id: e.traceId,
    sequence: e.sequence,
    event_id: e.eventId,
    session_id: e.sessionId,
    event_type: e.eventType,
    severity: e.severity,
    time: e.time,
    payload: e.payload,
  })!;
}

export function eventHash(prevHash: string, e: ChainedFields): string {
  return createHash("sha256")
    .update(prevHash + canonicalEvent(e), "utf8")
    .digest("hex");
}
