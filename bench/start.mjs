// How long `npm start` takes to serve: spawns it, waits for the "cairn
// serving" log line, stops it with SIGTERM; N runs with a fresh data
// directory each, then N on one existing data directory; prints each time
// and the medians. Run after `npm ci` (which compiles):
//
//   node bench/start.mjs [runs=7]
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const RUNS = Number(process.argv[2] ?? 7);

const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

/** Milliseconds from spawning `npm start` to its "cairn serving" line. */
async function startOnce(dataDir) {
  const port = await freePort();
  const started = performance.now();
  const child = spawn("npm", ["start"], {
    cwd: ROOT,
    env: { ...process.env, CAIRN_DATA_DIR: dataDir, CAIRN_LISTEN: `127.0.0.1:${port}`, CAIRN_METRICS_LISTEN: "" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  const serving = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not serving after 60 s:\n${output}`)), 60_000);
    child.stdout.on("data", (chunk) => {
      output += chunk;
      if (output.includes("cairn serving")) {
        clearTimeout(timer);
        resolve(performance.now() - started);
      }
    });
    child.stderr.on("data", (chunk) => (output += chunk));
  });
  process.kill(-child.pid, "SIGTERM");
  await new Promise((resolve) => child.on("exit", resolve));
  return serving;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const scratch = mkdtempSync(join(tmpdir(), "cairn-start-"));
// As root, the embedded cluster runs as the postgres user, which must reach it.
chmodSync(scratch, 0o755);
try {
  const fresh = [];
  for (let i = 0; i < RUNS; i++) fresh.push(await startOnce(join(scratch, `fresh-${i}`)));
  const existing = join(scratch, "existing");
  await startOnce(existing);
  const again = [];
  for (let i = 0; i < RUNS; i++) again.push(await startOnce(existing));
  const ms = (values) => values.map((v) => v.toFixed(0)).join(", ");
  console.log(`fresh data directory:    median ${median(fresh).toFixed(0)} ms (${ms(fresh)})`);
  console.log(`existing data directory: median ${median(again).toFixed(0)} ms (${ms(again)})`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
