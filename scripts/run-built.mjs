#!/usr/bin/env node
// `npm start` / `npm run migrate`: runs the compiled daemon at once, and
// compiles first only when a source changed since the last build. `tsc -b`
// with nothing to do still costs over half a second (it reads and hashes the
// whole program), which is most of a restart; comparing mtimes here costs a
// few milliseconds.
//
//   node scripts/run-built.mjs --build-only   build (always; `tsc -b` is incremental), as `prepare` does during `npm ci`
//   node scripts/run-built.mjs serve [flags]  build if stale, then run dist/src/main.js with these arguments
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, statSync, utimesSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stamp = join(root, "dist", ".build-stamp");
const main = join(root, "dist", "src", "main.js");

// What `tsc -b` reads (tsconfig.json and clients/typescript's), and what
// `npm install` rewrites when dependencies (their types included) change.
const inputs = [
  "src",
  "test",
  "bench",
  "clients/typescript/src",
  "tsconfig.json",
  "tsconfig.base.json",
  "clients/typescript/tsconfig.json",
  "node_modules/.package-lock.json",
];

/** The newest mtime under `path` (directories count: a deleted file changes its directory's). */
function newest(path) {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    return 0;
  }
  let latest = stat.mtimeMs;
  if (stat.isDirectory()) {
    for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)));
  }
  return latest;
}

function isStale() {
  if (!existsSync(main) || !existsSync(stamp)) return true;
  const built = statSync(stamp).mtimeMs;
  return inputs.some((input) => newest(join(root, input)) > built);
}

function build(reason) {
  process.stderr.write(`cairn: compiling the TypeScript sources (${reason}) ...\n`);
  // The stamp gets the time the build started: a file saved during the build is seen as newer next time.
  const started = new Date();
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  const result = spawnSync(process.execPath, [tsc, "-b"], { cwd: root, stdio: "inherit" });
  if (result.status !== 0) {
    process.stderr.write("cairn: the TypeScript build failed (see above)\n");
    process.exit(result.status ?? 1);
  }
  closeSync(openSync(stamp, "a"));
  utimesSync(stamp, started, started);
}

const args = process.argv.slice(2);
if (args[0] === "--build-only") {
  build("npm install / prepare");
} else {
  if (isStale()) build(existsSync(main) ? "sources changed since the last build" : "first build");
  // Run it in this process (one Node start less), with the arguments it expects.
  process.argv = [process.argv[0], main, ...args];
  await import(pathToFileURL(main).href);
}
