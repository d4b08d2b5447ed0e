// The README's grpcurl commands, replayed against a live daemon so that they
// cannot rot: each command's -d JSON goes, in README order, through the
// independent Python client of test/interop (reflection only, no protos),
// which parses it as grpcurl 1.8 would (a FieldMask only as {"paths": [...]})
// and calls the method. A field renamed, an enum value dropped, a mask in a
// form grpcurl refuses or a method that no longer exists fails here.
//
// Skipped: the commands of the TLS/mTLS examples (-cacert, -cert, -key): they
// need certificates and a host name the harness does not have; the TLS tests
// cover those flags' meaning. `list` and `describe` (no method) are covered by
// reflection.test.ts.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";

const PYTHON = "/usr/bin/python3";
const SCRIPT = new URL("./interop/reflection_client.py", import.meta.url).pathname;
const README = new URL("../README.md", import.meta.url).pathname;
const run = promisify(execFile);

interface Command {
  line: string;
  method?: string;
  body: string;
  maxTime?: number;
  tls: boolean;
}

/** Splits a shell command line into words: single and double quotes, backslash escapes; no expansion. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "#" && word === undefined) break; // a comment after the command
    if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      word = (word ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let text = "";
      for (i++; line[i] !== '"'; i++) text += line[i] === "\\" ? line[++i] : line[i];
      word = (word ?? "") + text;
    } else if (c === "\\") {
      word = (word ?? "") + line[++i];
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** Every grpcurl command in the README's sh blocks, continuation lines joined. */
function readmeCommands(): Command[] {
  const blocks = [...readFileSync(README, "utf8").matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const lines = blocks.flatMap((block) => block.replace(/\\\n\s*/g, " ").split("\n"));
  return lines
    .filter((line) => /^\s*grpcurl\s/.test(line))
    .map((line) => {
      const words = shellWords(line).slice(1);
      const command: Command = { line: line.trim(), body: "{}", tls: false };
      const positional: string[] = [];
      for (let i = 0; i < words.length; i++) {
        const w = words[i]!;
        if (w === "-d") command.body = words[++i]!;
        else if (w === "-max-time") command.maxTime = Number(words[++i]);
        else if (["-cacert", "-cert", "-key"].includes(w)) {
          command.tls = true;
          i++;
        } else if (["-H", "-authority", "-servername", "-connect-timeout"].includes(w)) i++;
        else if (!w.startsWith("-")) positional.push(w);
      }
      // grpcurl [flags] ADDRESS [list|describe ...|SERVICE/METHOD]
      const target = positional[1];
      if (target && target.includes("/")) command.method = target;
      return command;
    });
}

/**
 * The placeholders the README tells the reader to fill in, from the first
 * response that gives one; a lease token from the latest (a heartbeat names
 * the lease just taken).
 */
const PLACEHOLDERS: Record<string, (response: Record<string, any>) => unknown> = {
  "<id>": (r) => r.sessionId,
  "<resolution_id>": (r) => r.resolutionId,
  "<job_id>": (r) => r.jobId,
  "<lease_token>": (r) => r.leases?.[0]?.leaseToken,
};
const LATEST = new Set(["<lease_token>"]);

async function replay(address: string, method: string, body: unknown, timeout: number) {
  const { stdout } = await run(PYTHON, [SCRIPT, address, "call", method, JSON.stringify(body), String(timeout)], {
    timeout: 60_000,
  }).catch((error) => {
    throw new Error(`reflection client failed (needs Debian's python3-grpcio and python3-protobuf): ${error.stderr ?? error}`);
  });
  return JSON.parse(stdout) as { code: string; message?: string; response?: Record<string, unknown> };
}

let h: Harness;
beforeAll(async () => {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: install python3-grpcio python3-protobuf (see .ci/run)`);
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

describe("README grpcurl commands", () => {
  const commands = readmeCommands();

  it("are found, and the TLS ones recognised", () => {
    expect(commands.filter((c) => c.method && !c.tls).length).toBeGreaterThanOrEqual(15);
    expect(commands.some((c) => c.tls)).toBe(true);
  });

  it("each parse as grpcurl 1.8 would and are accepted by the daemon", async () => {
    const known: Record<string, string> = {};
    const outcomes: { line: string; code: string; message?: string }[] = [];
    for (const command of commands) {
      if (!command.method || command.tls) continue;
      let text = command.body;
      const unfilled = Object.keys(PLACEHOLDERS).filter((p) => text.includes(p) && !known[p]);
      for (const [placeholder, value] of Object.entries(known)) text = text.split(placeholder).join(value);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (error) {
        outcomes.push({ line: command.line, code: "NOT_JSON", message: String(error) });
        continue;
      }
      // A stream runs until -max-time; two seconds show it started (the Python client's deadline).
      const outcome = await replay(h.daemon.address, command.method, body, command.maxTime ? Math.min(command.maxTime, 2) : 10);
      outcomes.push({ line: command.line, code: outcome.code, message: outcome.message });
      for (const [placeholder, pick] of Object.entries(PLACEHOLDERS)) {
        const value = outcome.response && pick(outcome.response);
        if (typeof value === "string" && (!known[placeholder] || LATEST.has(placeholder))) known[placeholder] = value;
      }
      const acceptable = ["OK", ...(command.maxTime ? ["DEADLINE_EXCEEDED"] : []), ...(unfilled.length ? ["NOT_FOUND"] : [])];
      if (!acceptable.includes(outcome.code)) outcomes[outcomes.length - 1]!.code += " (unexpected)";
    }
    // All at once, so a failure names every command that went wrong.
    expect(outcomes.filter((o) => o.code.endsWith("(unexpected)") || o.code === "NOT_JSON")).toEqual([]);
    // The placeholders were filled from earlier commands' responses, not left as NOT_FOUND.
    expect(Object.keys(known).sort()).toEqual(["<id>", "<job_id>", "<lease_token>", "<resolution_id>"]);
  }, 120_000);
});
