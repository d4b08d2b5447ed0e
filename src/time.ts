// Cairn's one time representation inside the daemon: RFC 3339 UTC strings
// with exactly six fractional digits ("2026-11-22T08:20:29.123456Z").
// PostgreSQL keeps microseconds, and a JS Date would drop three of them; the
// pool parses timestamptz into this form and the gRPC layer converts it to
// and from Timestamp.

const PG_TIMESTAMPTZ = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?\+00$/;

/** Parses timestamptz text as PostgreSQL prints it with TimeZone=UTC and DateStyle=ISO. */
export function parsePgTimestamptz(text: string): string {
  const match = PG_TIMESTAMPTZ.exec(text);
  if (!match) throw new Error(`unexpected timestamptz text ${JSON.stringify(text)} (is TimeZone UTC?)`);
  const [, date, time, fraction = ""] = match;
  return `${date}T${time}.${fraction.padEnd(6, "0")}Z`;
}

/** Microseconds since the Unix epoch of a time string made by parsePgTimestamptz or toMicroIso. */
export function isoToEpochMicros(iso: string): bigint {
  const seconds = Date.parse(iso.slice(0, 19) + "Z") / 1000;
  return BigInt(seconds) * 1_000_000n + BigInt(iso.slice(20, 26));
}

export function epochMicrosToIso(micros: bigint): string {
  const seconds = micros / 1_000_000n;
  let fraction = micros % 1_000_000n;
  let wholeSeconds = seconds;
  if (fraction < 0n) {
    fraction += 1_000_000n;
    wholeSeconds -= 1n;
  }
  const date = new Date(Number(wholeSeconds) * 1000).toISOString().slice(0, 19);
  return `${date}.${fraction.toString().padStart(6, "0")}Z`;
}

/** Now, in microseconds since the epoch (millisecond precision, as the clock gives). */
export function nowMicros(): bigint {
  return BigInt(Date.now()) * 1000n;
}

/** Now, as a time string (millisecond precision, as the clock gives). */
export function nowIso(): string {
  return epochMicrosToIso(nowMicros());
}
