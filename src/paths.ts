// The project root (where package.json and migrations/ live), found from
// this file whether it runs from src/ (tsx, vitest) or dist/src/ (built).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findProjectRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "migrations"))) return dir;
  }
  throw new Error("cannot find the Cairn project root (package.json beside migrations/)");
}

export const PROJECT_ROOT = findProjectRoot();
export const MIGRATIONS_DIR = join(PROJECT_ROOT, "migrations");
