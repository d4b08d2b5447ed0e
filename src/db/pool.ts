// The one pg pool of a daemon: UTC sessions, microsecond time strings,
// int8 as JS numbers, and a statement_timeout bound for every connection.
import pg from "pg";
import { parsePgTimestamptz } from "../time.js";

const OID_INT8 = 20;
const OID_TIMESTAMPTZ = 1184;

/** Type parsers scoped to Cairn's pools (pg's global defaults stay untouched). */
export const cairnTypes = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === OID_INT8) return (text: string) => Number(text);
    if (oid === OID_TIMESTAMPTZ) return (text: string) => (text === null ? null : parsePgTimestamptz(text));
    return pg.types.getTypeParser(oid, format as "text");
  },
};

export interface PoolOptions {
  connectionString: string;
  max: number;
  statementTimeoutMs: number;
  /** Longest wait for a connection, free or new; past it a call is OVERLOADED (or the database unreachable). */
  poolWaitMs?: number;
  applicationName?: string;
  /** How long an idle connection is kept before it is closed; 0: for ever. Default 30 s. */
  idleTimeoutMs?: number;
  /** Per-connection settings (`-c name=value`), e.g. what a trigger must know of the daemon's config; values are numbers or plain words. */
  settings?: Record<string, string | number>;
}

export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max,
    types: cairnTypes,
    // Bounds how long a checkout waits, for a new connection or a free one,
    // so callers fail instead of queueing without end.
    connectionTimeoutMillis: options.poolWaitMs ?? 5_000,
    idleTimeoutMillis: options.idleTimeoutMs ?? 30_000,
    application_name: options.applicationName ?? "cairn",
    // JIT off: Cairn runs short OLTP statements, and jsonb_to_recordset's
    // default row estimates make PostgreSQL JIT-compile them (~200 ms each
    // on builds with LLVM, such as Debian's).
    options: [
      `-c TimeZone=UTC -c DateStyle=ISO -c jit=off -c statement_timeout=${options.statementTimeoutMs}`,
      ...Object.entries(options.settings ?? {}).map(([name, value]) => `-c ${name}=${value}`),
    ].join(" "),
  });
  // An idle client losing its server emits 'error' on the pool; without a
  // listener Node would crash. The next checkout reconnects.
  pool.on("error", () => {});
  // A checked-out client whose server goes away emits 'error' too; its
  // running query already rejects with that error, so this one is noise.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}
