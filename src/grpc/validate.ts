// Request validation helpers. Each check names the offending field with its
// full path so a client can tell exactly what to fix; nothing is written when
// any check fails.
import { CairnError, type FieldViolation, type InputContext, invalidArgument } from "../errors.js";
import type { Limits } from "../config.js";

const ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export class Violations {
  readonly list: FieldViolation[] = [];

  add(field: string, description: string): void {
    this.list.push({ field, description });
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
      this.list.push(...error.fieldViolations);
      return null;
    }
  }

  /** Throws INVALID_ARGUMENT with every violation collected so far. */
  throwIfAny(context?: InputContext): void {
    if (this.list.length > 0) throw invalidArgument(this.list, context);
  }
}

export function checkId(v: Violations, field: string, value: string, required: boolean): void {
  if (value === "") {
    if (required) v.add(field, "is required");
    return;
  }
  if (!ID_PATTERN.test(value)) v.add(field, "must be 1..128 characters of [A-Za-z0-9._:-]");
}

export function checkText(v: Violations, field: string, value: string, maxChars: number, required = false): void {
  if (required && value === "") v.add(field, "is required");
  else if (value.length > maxChars) v.add(field, `must be at most ${maxChars} characters`);
}

export function jsonByteLength(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value ?? null), "utf8");
}

export function checkDocument(v: Violations, field: string, value: unknown, limits: Limits): void {
  if (value === undefined || value === null) return;
  const size = jsonByteLength(value);
  if (size > limits.maxDocumentBytes) {
    v.add(field, `is ${size} bytes encoded as JSON; the limit is ${limits.maxDocumentBytes}`);
  }
}

export function checkBatchSize(v: Violations, field: string, count: number, limits: Limits, required = true): void {
  if (required && count === 0) v.add(field, "must not be empty");
  if (count > limits.maxBatchItems) v.add(field, `has ${count} items; the limit is ${limits.maxBatchItems}`);
}

export function checkLabels(v: Violations, field: string, labels: Record<string, string>): void {
  for (const [key, value] of Object.entries(labels)) {
    if (key === "" || key.length > 128) v.add(`${field}[${JSON.stringify(key)}]`, "label keys must be 1..128 characters");
    if (value.length > 1024) v.add(`${field}[${JSON.stringify(key)}]`, "label values must be at most 1024 characters");
  }
}

/** Duplicates in a list of ids, reported at their second occurrence as `field[i]suffix`. */
export function checkUnique(v: Violations, field: string, ids: string[], suffix = ""): void {
  const seen = new Set<string>();
  ids.forEach((id, i) => {
    if (id !== "" && seen.has(id)) v.add(`${field}[${i}]${suffix}`, `duplicates ${JSON.stringify(id)}`);
    seen.add(id);
  });
}
