// One PostgreSQL per test run: an embedded one in a scratch directory, or
// the server named by CAIRN_TEST_DATABASE_URL. Test files each create their
// own database on it (see harness.ts).
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";
import { createLogger } from "../../src/logger.js";

declare module "vitest" {
  export interface ProvidedContext {
    adminUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const external = process.env.CAIRN_TEST_DATABASE_URL;
  if (external) {
    project.provide("adminUrl", external);
    return;
  }
  const scratch = mkdtempSync(join(tmpdir(), "cairn-test-pg-"));
  // As root the cluster runs as the postgres user, which must reach its data.
  chmodSync(scratch, 0o755);
  const embedded = await startEmbeddedPostgres(join(scratch, "data"), 0, createLogger("warn"));
  project.provide("adminUrl", embedded.adminUrl);
  return async () => {
    await embedded.stop();
    rmSync(scratch, { recursive: true, force: true });
  };
}
