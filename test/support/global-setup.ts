// One PostgreSQL per test run: an embedded one in a scratch directory, the
// server named by CAIRN_TEST_DATABASE_URL, or a container of the image named
// by CAIRN_TEST_POSTGRES_IMAGE (e.g. postgres:17) started with testcontainers,
// so CI elsewhere can run the suite on several PostgreSQL versions. Test
// files each create their own database on it (see harness.ts).
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
  const image = process.env.CAIRN_TEST_POSTGRES_IMAGE;
  if (image) {
    const container = await startContainer(image);
    project.provide("adminUrl", container.getConnectionUri());
    return async () => {
      await container.stop();
    };
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

/**
 * A PostgreSQL container of `image`. Without a container engine this fails
 * with a message saying so: the suite does not quietly fall back to another
 * PostgreSQL, since the point of the variable is to test that version.
 */
async function startContainer(image: string) {
  // Loaded only here: the default runs never touch testcontainers.
  const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
  try {
    // The harness's replicas and pools need more than the default 100 connections.
    return await new PostgreSqlContainer(image).withCommand(["postgres", "-c", "max_connections=200"]).start();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `CAIRN_TEST_POSTGRES_IMAGE=${image} needs a Docker engine (or another one testcontainers supports: Podman, ` +
        `Colima, a remote DOCKER_HOST), and none could start the container: ${reason}. Unset CAIRN_TEST_POSTGRES_IMAGE ` +
        `to use the embedded PostgreSQL, or set CAIRN_TEST_DATABASE_URL to use a running server.`,
      { cause: error },
    );
  }
}
