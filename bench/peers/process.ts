// A peer server (etcd, nats-server) as a child process of the benchmark, on
// loopback, with its data in a scratch directory removed when it stops.
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

export interface PeerProcess {
  /** The scratch directory for the peer's data. */
  dir: string;
  stop(): Promise<void>;
}

/** Debian puts nats-server in /usr/sbin, which a non-root PATH often lacks. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin"];
  for (const dir of dirs.filter(Boolean)) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

export function skipMessage(peer: string, debianPackage: string): string {
  return `${peer} skipped: its server is not installed (Debian/Ubuntu: apt-get install ${debianPackage})`;
}

/** Spawns `executable` with the arguments `args(dir)` builds; its stderr goes to ours only if it dies early. */
export function spawnPeer(executable: string, args: (dir: string) => string[]): PeerProcess {
  const dir = mkdtempSync(join(tmpdir(), "cairn-bench-peer-"));
  const child: ChildProcess = spawn(executable, args(dir), { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  let stopping = false;
  child.once("exit", (code) => {
    if (!stopping) console.error(`${executable} exited (${code}):\n${stderr}`);
  });
  return {
    dir,
    async stop() {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Retries `probe` until it resolves, for a peer that is still starting. */
export async function waitReady(name: string, probe: () => Promise<unknown>): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    try {
      await probe();
      return;
    } catch (error) {
      last = error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${name} never became ready: ${String(last)}`);
}
