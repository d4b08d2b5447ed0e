#!/usr/bin/env node
// CLI entry: `cairn serve | migrate | token | version | help`.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isWorker, type Running, startPrimary, startWorker, workerLogger } from "./cluster.js";
import { type Config, ConfigError, describeSettings, loadConfig } from "./config.js";
import { resolveDatabase, startDaemon } from "./daemon.js";
import { migrate } from "./db/migrate.js";
import { createLogger, type Logger } from "./logger.js";
import { PROJECT_ROOT } from "./paths.js";

function version(): string {
  return JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")).version as string;
}

const USAGE = `usage: cairn <command> [flags]

commands:
  serve     serve gRPC (starts an embedded PostgreSQL when DATABASE_URL is unset)
  migrate   apply database migrations and exit
  token     print a new random bearer token, and its token_sha256 line for CAIRN_AUTH_FILE
  version   print the version
  help      print this help

flags and environment variables (flags win):
${describeSettings()}
`;

/**
 * SIGTERM/SIGINT, from the first moment: a signal during start-up is kept
 * until the daemon is up (stopping the embedded PostgreSQL then, rather than
 * leaving it running), then `stop` runs. The same signal twice within a
 * second is one request (Ctrl-C at a terminal reaches both npm and the
 * daemon, and npm passes it on); a later second signal exits at once.
 */
function onStopSignals(log: Logger): (stop: () => Promise<void>) => void {
  let stop: (() => Promise<void>) | undefined;
  let firstSignalAt: number | undefined;
  const run = () =>
    stop!().then(
      () => process.exit(0),
      (error) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt !== undefined) {
      if (Date.now() - firstSignalAt < 1_000) return;
      log.warn({ signal }, "second signal: exiting at once");
      process.exit(1);
    }
    firstSignalAt = Date.now();
    log.info({ signal }, stop ? "signal received" : "signal received while starting; stopping once started");
    if (stop) void run();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return (ready) => {
    stop = ready;
    if (firstSignalAt !== undefined) void run();
  };
}

/** This process alone, the primary of several (CAIRN_PROCESSES), or one of its workers (cluster.ts). */
function startServing(config: Config, log: Logger): Promise<Running> {
  if (isWorker()) return startWorker(config, log);
  return config.processes > 1 ? startPrimary(config, log) : startDaemon(config, log);
}

async function serve(argv: string[]): Promise<void> {
  const config = loadConfig(argv);
  const log = isWorker() ? workerLogger(createLogger(config.logLevel)) : createLogger(config.logLevel);
  const started = onStopSignals(log);
  // SIGHUP's default action ends the process: take it from the start, and
  // reload once there is a daemon (the files are read at start anyway).
  let reload = () => {};
  process.on("SIGHUP", () => reload());
  const daemon = await startServing(config, log);
  reload = () => daemon.reload();
  started(() => daemon.stop());
}

async function migrateCommand(argv: string[]): Promise<void> {
  const config = loadConfig(argv);
  const log = createLogger(config.logLevel);
  // A signal waits for the migrations to finish and the embedded PostgreSQL to stop.
  const started = onStopSignals(log);
  const database = await resolveDatabase(config, log);
  try {
    const applied = await migrate(database.url, log);
    console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");
  } finally {
    await database.embedded?.stop();
  }
  started(async () => {});
}

/** A new token (256 random bits) and what the auth file stores of it: only its SHA-256. */
function tokenCommand(): void {
  const token = randomBytes(32).toString("base64url");
  console.log(`token: ${token}`);
  console.log(`    token_sha256: ${createHash("sha256").update(token).digest("hex")}`);
}

async function main(): Promise<void> {
  const [command = "help", ...argv] = process.argv.slice(2);
  switch (command) {
    case "serve":
      return serve(argv);
    case "migrate":
      return migrateCommand(argv);
    case "token":
      return tokenCommand();
    case "version":
      console.log(version());
      return;
    case "help":
    case "--help":
      console.log(USAGE);
      return;
    default:
      console.error(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      process.exit(2);
  }
}

main().catch((error) => {
  if (error instanceof ConfigError) console.error(error.message);
  else console.error("cairn failed:", error);
  process.exit(1);
});
