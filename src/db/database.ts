// Runs a call's SQL on the pool: one checkout per query or transaction, with
// the call's AbortSignal wired to pg_cancel_backend so that a cancelled call
// or a passed deadline stops its query instead of letting it run on.
//
// Stores take a Queryable: the pool (each statement on its own) or an open
// transaction. A store function that needs several statements to be atomic
// asks `q.atomic(...)`: on the pool that opens a transaction, inside one it
// simply runs there, so writes of several stores compose into one commit.
import type pg from "pg";
import { cancelled } from "../errors.js";
import type { Tracing } from "../ops/tracing.js";
import { isConnectionError, translateDbError } from "./errors.js";

/** What a store needs of the call it serves: nothing gRPC-specific. */
export interface CallScope {
  signal?: AbortSignal;
}

export interface Queryable {
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  /** A hot statement, prepared once per connection under `name` (parsed and planned once). */
  prepared<R extends pg.QueryResultRow = any>(name: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>>;
  /** Runs fn atomically: in a new transaction, or inside the one this queryable already is. */
  atomic<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

/**
 * What deleting sessions (of one namespace) does to one store's rows,
 * inside the deleting transaction; each store exports its own, server.ts
 * wires the list.
 */
export type SessionsDeletedStep = (tx: Queryable, namespace: string, sessionIds: string[]) => Promise<void>;

export class Database {
  /** Told when a call could not reach the database, so health looks at once. */
  onConnectionError: (() => void) | undefined;

  /** tracing: set only when spans are exported; unset, statements run with nothing added. */
  constructor(
    readonly pool: pg.Pool,
    readonly tracing?: Tracing,
  ) {}

  /** The pool, for one call: each statement autocommits and is cancelled with the call. */
  on(scope: CallScope): Queryable {
    const q: Queryable = {
      query: (text, values) => this.withClient(scope, (client) => client.query(text, values)),
      prepared: (name, text, values) => this.withClient(scope, (client) => client.query({ name, text, values })),
      atomic: (fn) => this.transaction(scope, fn),
    };
    return this.tracing ? traced(this.tracing, q, false) : q;
  }

  /** fn runs inside BEGIN..COMMIT; any throw rolls back. */
  transaction<T>(scope: CallScope, fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const t = this.tracing;
    const control = (client: pg.PoolClient, text: string) => (t ? t.statement(text, undefined, () => client.query(text)) : client.query(text));
    return this.withClient(scope, async (client) => {
      await control(client, "BEGIN");
      try {
        const tx = inTransaction(client, scope.signal);
        const result = await fn(t ? traced(t, tx, true) : tx);
        await control(client, "COMMIT");
        return result;
      } catch (error) {
        await control(client, "ROLLBACK").catch(() => {});
        throw error;
      }
    });
  }

  private async withClient<T>(scope: CallScope, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const { signal } = scope;
    const client = await this.checkout(signal);
    let discard = false;
    const onAbort = () => {
      discard = true;
      const pid = (client as unknown as { processID?: number }).processID;
      if (pid) this.pool.query("SELECT pg_cancel_backend($1)", [pid]).catch(() => {});
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      return await fn(client);
    } catch (error) {
      const lost = isConnectionError(error) || isConnectionError((error as { cause?: unknown }).cause);
      if (lost) this.onConnectionError?.();
      discard ||= lost;
      throw translateDbError(error, signal);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      // A cancel may still be in flight, or the connection is broken: never
      // hand this backend to another call.
      client.release(discard ? true : undefined);
    }
  }

  /**
   * A connection for the call: waits at most the pool's wait bound
   * (OVERLOADED past it) or until the call is cancelled or its deadline
   * passes; a connection that arrives after the caller left goes back.
   */
  private async checkout(signal: AbortSignal | undefined): Promise<pg.PoolClient> {
    if (signal?.aborted) throw translateDbError(cancelled(), signal);
    const pending = this.pool.connect();
    const left = signal
      ? new Promise<never>((_, reject) => {
          const onAbort = () => reject(translateDbError(cancelled(), signal));
          signal.addEventListener("abort", onAbort, { once: true });
          void pending.finally(() => signal.removeEventListener("abort", onAbort)).catch(() => {});
        })
      : undefined;
    try {
      return await (left ? Promise.race([pending, left]) : pending);
    } catch (error) {
      void pending.then((late) => late.release(), () => {});
      if (isConnectionError(error)) this.onConnectionError?.();
      throw translateDbError(error, signal);
    }
  }
}

/**
 * An open transaction as a Queryable. Errors are translated at once, so a
 * store that catches one inside the transaction sees Cairn's meaning of it.
 */
function inTransaction(client: pg.PoolClient, signal: AbortSignal | undefined): Queryable {
  const translated = (error: unknown) => {
    throw translateDbError(error, signal);
  };
  const tx: Queryable = {
    query: (text, values) => client.query(text, values).catch(translated),
    prepared: (name, text, values) => client.query({ name, text, values }).catch(translated),
    atomic: (fn) => fn(tx),
  };
  return tx;
}

/**
 * q with each statement a span under the active call's (ops/tracing.ts).
 * Inside a transaction, nested atomic work must get this traced queryable,
 * not the plain one q's own atomic would hand out; on the pool, q.atomic
 * opens a transaction that traces itself.
 */
function traced(tracing: Tracing, q: Queryable, inTransaction: boolean): Queryable {
  const t: Queryable = {
    query: (text, values) => tracing.statement(text, undefined, () => q.query(text, values)),
    prepared: (name, text, values) => tracing.statement(text, name, () => q.prepared(name, text, values)),
    atomic: inTransaction ? (fn) => fn(t) : q.atomic,
  };
  return t;
}
