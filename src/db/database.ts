// Runs a call's SQL on the pool: one checkout per query or transaction, with
// the call's AbortSignal wired to pg_cancel_backend so that a cancelled call
// or a passed deadline stops its query instead of letting it run on.
import type pg from "pg";
import { cancelled } from "../errors.js";
import { isConnectionError, translateDbError } from "./errors.js";

/** What a store needs of the call it serves: nothing gRPC-specific. */
export interface CallScope {
  signal?: AbortSignal;
}

export interface Queryable {
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

export class Database {
  constructor(readonly pool: pg.Pool) {}

  /** A single statement, cancelled with the call. */
  run<R extends pg.QueryResultRow = any>(scope: CallScope, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.withClient(scope, (client) => client.query<R>(text, values));
  }

  /**
   * A hot statement, prepared once per connection under `name` so that
   * PostgreSQL parses and plans it once rather than on every call.
   */
  runPrepared<R extends pg.QueryResultRow = any>(
    scope: CallScope,
    name: string,
    text: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    return this.withClient(scope, (client) => client.query<R>({ name, text, values }));
  }

  /** Runs each statement on its own (autocommit), cancelled with the call. */
  scoped(scope: CallScope): Queryable {
    return { query: (text, values) => this.run(scope, text, values) };
  }

  /** fn runs inside BEGIN..COMMIT; any throw rolls back. */
  transaction<T>(scope: CallScope, fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.withClient(scope, async (client) => {
      await client.query("BEGIN");
      try {
        const result = await fn(client);
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {});
        throw error;
      }
    });
  }

  private async withClient<T>(scope: CallScope, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const { signal } = scope;
    if (signal?.aborted) throw translateDbError(cancelled(), signal);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw translateDbError(error, signal);
    }
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
      discard ||= isConnectionError(error);
      throw translateDbError(error, signal);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      // A cancel may still be in flight, or the connection is broken: never
      // hand this backend to another call.
      client.release(discard ? true : undefined);
    }
  }
}
