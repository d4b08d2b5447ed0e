// `cairn serve` as a real process on the embedded PostgreSQL (as root too,
// as CI runs it): data survives a restart, SIGTERM lets an in-flight call
// finish and exits 0, one JSON log line per call without payloads, and bad
// configuration is refused with a clear message.
import { CairnClient } from "@cairn/client";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../src/db/embedded.js";
import { waitFor } from "./support/wait.js";

const ROOT = new URL("..", import.meta.url).pathname;

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function cairn(args: string[], env: Record<string, string>): Running {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", ...args], {
    cwd: ROOT,
    // Port 0 for the metrics endpoint: test files run in parallel, and 9464 is one port.
    env: { ...process.env, DATABASE_URL: "", CAIRN_METRICS_LISTEN: "127.0.0.1:0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

function logLines(output: string): Record<string, any>[] {
  return output
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));
}

describe("cairn serve on the embedded PostgreSQL", () => {
  const scratch = mkdtempSync(join(tmpdir(), "cairn-cli-"));
  chmodSync(scratch, 0o755);
  const dataDir = join(scratch, "data");
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("keeps data across a restart and shuts down gracefully on SIGTERM", { timeout: 120_000 }, async () => {
    const grpcPort = await freePort();
    const pgPort = await freePort();
    const env = {
      CAIRN_DATA_DIR: dataDir,
      CAIRN_LISTEN: `127.0.0.1:${grpcPort}`,
      CAIRN_EMBEDDED_PG_PORT: String(pgPort),
      CAIRN_LOG_LEVEL: "info",
    };

    const first = cairn(["serve"], env);
    await waitFor("cairn serving", () => first.output().includes('"msg":"cairn serving"'), 60_000);
    const client = new CairnClient(`127.0.0.1:${grpcPort}`);
    const created = await client.sessions.createSession({ session: { agentId: "restart", state: { secret: "payload-marker-7f3a" } } });

    // Hold a row lock so the next update is still running when SIGTERM arrives.
    const password = readFileSync(join(scratch, "embedded-pg.password"), "utf8").trim();
    const db = new pg.Client({ connectionString: `postgres://cairn:${encodeURIComponent(password)}@127.0.0.1:${pgPort}/cairn` });
    await db.connect();
    await db.query("BEGIN");
    await db.query("SELECT 1 FROM sessions WHERE session_id = $1 FOR UPDATE", [created.sessionId]);
    const inFlight = client.sessions.updateSession({ session: { sessionId: created.sessionId, state: { step: 2 } }, updateMask: ["state"] });
    await new Promise((r) => setTimeout(r, 200));
    first.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    await db.query("COMMIT");
    await db.end();
    expect((await inFlight).version).toBe(2); // finished within the grace period
    expect(await first.exited).toBe(0);
    client.close();

    const lines = logLines(first.output());
    const call = lines.find((l) => l.method === "cairn.v1.SessionService/CreateSession");
    expect(call).toMatchObject({ code: "OK", msg: "call" });
    expect(typeof call!.duration_ms).toBe("number");
    expect(call!.peer).toMatch(/127\.0\.0\.1/);
    expect(first.output()).not.toContain("payload-marker-7f3a");
    expect(lines.some((l) => l.msg === "stopped")).toBe(true);

    const second = cairn(["serve"], env);
    await waitFor("cairn serving again", () => second.output().includes('"msg":"cairn serving"'), 60_000);
    const again = new CairnClient(`127.0.0.1:${grpcPort}`);
    const read = await again.sessions.getSession({ sessionId: created.sessionId });
    expect(read).toMatchObject({ version: 2, state: { step: 2 } });
    again.close();
    second.child.kill("SIGINT");
    expect(await second.exited).toBe(0);
  });
});

describe("configuration", () => {
  it("refuses bad settings, naming each one", async () => {
    const bad = cairn(["serve", "--listen", "nowhere"], { CAIRN_DB_POOL_MAX: "lots", DATABASE_URL: "mysql://x" });
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toContain("--listen: expected host:port");
    expect(bad.output()).toContain("CAIRN_DB_POOL_MAX: expected an integer");
    expect(bad.output()).toContain("DATABASE_URL: expected a postgres:// or postgresql:// URL");
  });

  it("token prints a new random token and the sha256 line the auth file takes", async () => {
    const run = cairn(["token"], {});
    expect(await run.exited).toBe(0);
    const token = /^token: (\S+)$/m.exec(run.output())![1]!;
    const line = /^\s+token_sha256: ([0-9a-f]{64})$/m.exec(run.output())![1]!;
    expect(line).toBe(createHash("sha256").update(token).digest("hex"));
    expect(token.length).toBeGreaterThanOrEqual(43);
  });

  it("refuses to serve a non-loopback address without authentication, naming the fix", async () => {
    const open = cairn(["serve", "--listen", "0.0.0.0:0"], {});
    expect(await open.exited).toBe(1);
    expect(open.output()).toContain("CAIRN_AUTH_FILE");
    expect(open.output()).toContain("CAIRN_INSECURE=true");
  });

  it("rejects unknown flags and commands", async () => {
    const flag = cairn(["serve", "--nope"], {});
    expect(await flag.exited).toBe(1);
    expect(flag.output()).toContain("--nope");
    const command = cairn(["dance"], {});
    expect(await command.exited).toBe(2);
    expect(command.output()).toContain("usage: cairn");
  });
});
