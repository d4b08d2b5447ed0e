// Request validation helpers. Each check names the offending field with its
// full path so a client can tell exactly what to fix; nothing is written when
// any check fails.
import { CairnError, type FieldViolation, type InputContext, invalidArgument, MAX_FIELD_VIOLATIONS } from "../errors.js";
import type { Limits } from "../config.js";
import { inspectJson } from "./json-check.js";

const ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
/** Unicode control characters (category Cc): C0, DEL and C1. */
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
const MAX_REFERENCE_CHARS = 256;
/** Longest label key shown in a field path, so a huge key cannot blow up an error's trailer. */
const MAX_KEY_IN_PATH = 64;
const NUL_DESCRIPTION = "must not contain U+0000 (NUL)";

export class Violations {
  /** The first MAX_FIELD_VIOLATIONS violations: all an error carries (a hostile request may hold millions). */
  readonly list: FieldViolation[] = [];
  /** How many there were in all. */
  total = 0;

  add(field: string, description: string): void {
    this.total++;
    if (this.list.length < MAX_FIELD_VIOLATIONS) this.list.push({ field, description });
  }

  /**
   * Runs a conversion that may throw INVALID_ARGUMENT (a Timestamp or
   * Duration check), collecting its violations; null when it failed.
   */
  collect<T>(convert: () => T): T | null {
    try {
      return convert();
    } catch (error) {
      if (!(error instanceof CairnError) || error.kind !== "invalid_argument") throw error;
      for (const violation of error.fieldViolations) this.add(violation.field, violation.description);
      return null;
    }
  }

  /** Throws INVALID_ARGUMENT with every violation collected so far. */
  throwIfAny(context?: InputContext): void {
    if (this.total > 0) throw invalidArgument(this.list, context, this.total);
  }
}

export function checkId(v: Violations, field: string, value: string, required: boolean): void {
  if (value === "") {
    if (required) v.add(field, "is required");
    return;
  }
  if (!ID_PATTERN.test(value)) v.add(field, "must be 1..128 characters of [A-Za-z0-9._:-]");
}

/** True when `value` has more than `max` characters (code points), counting no further than needed. */
export function longerThan(value: string, max: number): boolean {
  if (value.length <= max) return false;
  let count = 0;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    // The low half of a surrogate pair adds no character.
    if (code < 0xdc00 || code > 0xdfff || i === 0 || value.charCodeAt(i - 1) < 0xd800 || value.charCodeAt(i - 1) > 0xdbff) count++;
    if (count > max) return true;
  }
  return false;
}

/** U+0000 anywhere in free text: PostgreSQL cannot store it. */
export function checkNoNul(v: Violations, field: string, value: string): void {
  if (value.includes("\u0000")) v.add(field, NUL_DESCRIPTION);
}

export function checkText(v: Violations, field: string, value: string, maxChars: number, required = false): void {
  if (required && value === "") v.add(field, "is required");
  else if (value.length > maxChars) v.add(field, `must be at most ${maxChars} characters`);
  checkNoNul(v, field, value);
}

/**
 * A reference to something outside Cairn (user_id, agent_id, worker_id,
 * event_type, a message's role): any UTF-8 of 1..256 characters without
 * control characters, so "alice@example.com" and "team/planner" are fine.
 */
export function checkReference(v: Violations, field: string, value: string, required: boolean): void {
  if (value === "") {
    if (required) v.add(field, "is required");
    return;
  }
  if (longerThan(value, MAX_REFERENCE_CHARS)) v.add(field, `must be at most ${MAX_REFERENCE_CHARS} characters`);
  if (CONTROL_CHARACTERS.test(value)) v.add(field, "must not contain control characters (U+0000..U+001F, U+007F..U+009F)");
}

/**
 * A JSON document (Struct, Value or ListValue): its encoded size, U+0000 in
 * strings and keys, non-finite numbers, empty Values in lists and nesting,
 * all in one walk. Violations name the path inside it: `session.state.a.b[2]`.
 */
export function checkDocument(v: Violations, field: string, value: unknown, limits: Limits): void {
  if (value === undefined || value === null) return;
  checkInspected(v, field, value, limits, false);
}

/** A `repeated google.protobuf.Struct`, stored as one JSON array: each element is a document of its own. */
export function checkDocumentList(v: Violations, field: string, list: unknown[], limits: Limits): void {
  if (list.length > 0) checkInspected(v, field, list, limits, true);
}

function checkInspected(v: Violations, field: string, value: unknown, limits: Limits, listOfDocuments: boolean): void {
  const { bytes, problems } = inspectJson(value, { maxDepth: limits.maxJsonDepth, listOfDocuments });
  if (bytes > limits.maxDocumentBytes) {
    v.add(field, `is ${bytes} bytes encoded as JSON; the limit is ${limits.maxDocumentBytes}`);
  }
  for (const p of problems) v.add(field + p.path, p.description);
}

export function checkBatchSize(v: Violations, field: string, count: number, limits: Limits, required = true): void {
  if (required && count === 0) v.add(field, "must not be empty");
  if (count > limits.maxBatchItems) v.add(field, `has ${count} items; the limit is ${limits.maxBatchItems}`);
}

export function checkLabels(v: Violations, field: string, labels: Record<string, string>, limits: Limits): void {
  const entries = Object.entries(labels);
  if (entries.length > limits.maxLabels) v.add(field, `has ${entries.length} labels; the limit is ${limits.maxLabels}`);
  for (const [key, value] of entries) {
    const shown = key.length > MAX_KEY_IN_PATH ? `${key.slice(0, MAX_KEY_IN_PATH)}…` : key;
    const at = `${field}[${JSON.stringify(shown)}]`;
    if (key === "" || longerThan(key, limits.maxLabelKeyChars)) v.add(at, `label keys must be 1..${limits.maxLabelKeyChars} characters`);
    if (longerThan(value, limits.maxLabelValueChars)) v.add(at, `label values must be at most ${limits.maxLabelValueChars} characters`);
    if (key.includes("\u0000")) v.add(at, `label keys ${NUL_DESCRIPTION}`);
    checkNoNul(v, at, value);
  }
}

/** A filter list (statuses, event_types, decisions, states): at most limits.maxFilterItems. */
export function checkFilterList(v: Violations, field: string, count: number, limits: Limits): void {
  if (count > limits.maxFilterItems) v.add(field, `has ${count} items; the limit is ${limits.maxFilterItems}`);
}

/** Duplicates in a list of ids, reported at their second occurrence as `field[i]suffix`. */
export function checkUnique(v: Violations, field: string, ids: string[], suffix = ""): void {
  const seen = new Set<string>();
  ids.forEach((id, i) => {
    if (id !== "" && seen.has(id)) v.add(`${field}[${i}]${suffix}`, `duplicates ${JSON.stringify(id)}`);
    seen.add(id);
  });
}

/**
 * An optimistic-lock version, when set: 1 or more, or with `mayBeMissing`
 * (an allow_missing write) also 0, "must not exist yet".
 */
export function checkExpectedVersion(v: Violations, field: string, expected: number | undefined, mayBeMissing = false): void {
  if (expected === undefined) return;
  if (mayBeMissing) {
    if (expected < 0) v.add(field, 'must be a version, or 0 ("must not exist yet"), when set');
  } else if (expected < 1) v.add(field, "must be a version (1 or more) when set");
}
