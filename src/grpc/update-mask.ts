// AIP-134 update masks: which fields an Update method writes.
import type { Violations } from "./validate.js";

/** The one path that replaces every updatable field. */
const WILDCARD = "*";
/** Longest unknown path shown in a violation. */
const MAX_PATH_SHOWN = 64;

/**
 * Reads a mask over `allowed` paths. `writes(path, isSet)` then says whether
 * an update writes a field: an empty mask writes the fields set in the
 * request (`isSet`), "*" every field (those not given are cleared), else
 * exactly the named paths. Unknown paths, or "*" beside others, are
 * violations naming `update_mask.paths[i]`, after `at` (a Commit's operation).
 */
export function updateMask<P extends string>(
  v: Violations,
  paths: string[],
  allowed: readonly P[],
  at = "",
): { all: boolean; writes(path: P, isSet: boolean): boolean } {
  const named = new Set<string>();
  paths.forEach((path, i) => {
    const field = `${at}update_mask.paths[${i}]`;
    if (path === WILDCARD) {
      if (paths.length > 1) v.add(field, `"*" must be the only path`);
    } else if (!(allowed as readonly string[]).includes(path)) {
      const shown = path.length > MAX_PATH_SHOWN ? `${path.slice(0, MAX_PATH_SHOWN)}…` : path;
      v.add(field, `unknown path ${JSON.stringify(shown)}; allowed: ${allowed.join(", ")} or "*"`);
    }
    named.add(path);
  });
  const all = named.has(WILDCARD);
  return { all, writes: (path, isSet) => all || named.has(path) || (paths.length === 0 && isSet) };
}
