// Conversions between wire types (Timestamp, Duration) and the store's
// representations (microsecond RFC 3339 strings, milliseconds).
import type { Duration, Timestamp } from "@cairn/client";
import { epochMicrosToIso } from "../time.js";
import { invalidField } from "../errors.js";

// RFC 3339 range that proto Timestamps allow: 0001-01-01 .. 9999-12-31.
const MIN_SECONDS = -62135596800;
const MAX_SECONDS = 253402300799;

export function timestampFromIso(iso: string): Timestamp;
export function timestampFromIso(iso: string | null | undefined): Timestamp | undefined;
export function timestampFromIso(iso: string | null | undefined): Timestamp | undefined {
  if (!iso) return undefined;
  // "YYYY-MM-DDTHH:MM:SS.ffffffZ": whole seconds from the date, nanos from the fraction.
  return { seconds: Date.parse(iso.slice(0, 19) + "Z") / 1000, nanos: Number(iso.slice(20, 26)) * 1000 };
}

/** A Timestamp as the store's time string; nanoseconds below 1 µs are truncated (PostgreSQL keeps µs). */
export function isoFromTimestamp(ts: Timestamp | undefined, field: string): string | null {
  if (!ts) return null;
  if (!Number.isInteger(ts.seconds) || ts.seconds < MIN_SECONDS || ts.seconds > MAX_SECONDS) {
    throw invalidField(field, "seconds must be between 0001-01-01 and 9999-12-31");
  }
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999) {
    throw invalidField(field, "nanos must be 0..999999999");
  }
  return epochMicrosToIso(BigInt(ts.seconds) * 1_000_000n + BigInt(Math.floor(ts.nanos / 1000)));
}

export function durationFromMicros(micros: number): Duration {
  const seconds = Math.trunc(micros / 1_000_000);
  return { seconds, nanos: Math.round((micros - seconds * 1_000_000) * 1000) };
}

/** A positive Duration in microseconds, or INVALID_ARGUMENT naming `field`. */
export function positiveDurationMicros(d: Duration, field: string, maxSeconds = 10 * 365 * 24 * 3600): number {
  if (!Number.isInteger(d.seconds) || !Number.isInteger(d.nanos) || d.nanos < -999_999_999 || d.nanos > 999_999_999) {
    throw invalidField(field, "is not a valid Duration");
  }
  const micros = d.seconds * 1_000_000 + Math.trunc(d.nanos / 1000);
  if (micros <= 0) throw invalidField(field, "must be positive");
  if (d.seconds > maxSeconds) throw invalidField(field, `must be at most ${maxSeconds} s`);
  return micros;
}
