// Applies the forward-only migrations in migrations/ with node-pg-migrate,
// waiting on its advisory lock so that replicas starting together take turns.
import { runner } from "node-pg-migrate";
import pg from "pg";
import type { Logger } from "../logger.js";
import { MIGRATIONS_DIR } from "../paths.js";

/** Applies every pending migration (or only the first `count`, for tests of one migration's effect). */
export async function migrate(databaseUrl: string, log: Logger, count = Infinity): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const applied = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      direction: "up",
      migrationsTable: "pgmigrations",
      count,
      advisoryLockMode: "wait",
      checkOrder: true,
      logger: {
        debug: () => {},
        info: (message: string) => log.debug({ component: "migrate" }, message),
        warn: (message: string) => log.warn({ component: "migrate" }, message),
        error: (message: string) => log.error({ component: "migrate" }, message),
      },
    });
    const names = applied.map((m) => m.name);
    if (names.length > 0) log.info({ migrations: names }, "applied migrations");
    return names;
  } finally {
    await client.end();
  }
}
