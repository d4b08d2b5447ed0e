// One walk over a decoded JSON document (a google.protobuf.Struct, Value or
// ListValue as ts-proto hands it over) that finds what PostgreSQL cannot store
// or what JSON encoding would silently alter, and measures the document's
// encoded size on the way, so a write pays for a single pass:
//   - U+0000 in a string or an object key (jsonb refuses it: INTERNAL before);
//   - NaN and ±Infinity (the Struct decoder yields them as JS numbers, and
//     JSON.stringify would store them as null);
//   - a list element with no value (an empty google.protobuf.Value: stored as
//     null otherwise);
//   - nesting deeper than the limit (the root object or array is level 1).
// The size is exactly Buffer.byteLength(JSON.stringify(value)), computed
// without building the string.

export interface JsonProblem {
  /** Where, below the document: "", ".a.b[2]", '["odd key"]'. */
  path: string;
  description: string;
}

export interface JsonInspection {
  /** UTF-8 bytes of the document encoded as JSON (nesting past the limit not counted). */
  bytes: number;
  problems: JsonProblem[];
}

export interface JsonInspectOptions {
  maxDepth: number;
  /** Stop collecting after this many problems (the walk still measures the size). */
  maxProblems?: number;
  /**
   * The value is a list of documents (a `repeated google.protobuf.Struct`):
   * the list itself is no level, each element's root is level 1.
   */
  listOfDocuments?: boolean;
}

/** What JSON.stringify escapes (lone surrogates included), so its encoded length differs from its UTF-8 length. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Longest key shown in a path, so a huge key cannot blow up an error's trailer. */
const MAX_KEY_IN_PATH = 64;
const DEFAULT_MAX_PROBLEMS = 20;

/** Below this length a string is measured in JS; above, native calls win. */
const SHORT_STRING = 32;

/** UTF-8 bytes of a short string with nothing to escape, or -1 when it has something (or a surrogate). */
function plainShortStringBytes(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c) return -1;
    if (c >= 0xd800 && c <= 0xdfff) {
      // A pair is 4 bytes as it stands; a lone half is escaped.
      const next = s.charCodeAt(i + 1);
      if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) return -1;
      bytes += 4;
      i++;
    } else bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
  }
  return bytes;
}

/** Characters of String(n), as JSON.stringify writes a finite number; integers without building the string. */
function numberLength(n: number): number {
  if (!Number.isSafeInteger(n)) return String(n).length;
  let digits = n < 0 ? 2 : 1;
  for (let rest = Math.abs(n); rest >= 10; rest = Math.floor(rest / 10)) digits++;
  return digits;
}

/** A path segment as a client would write it: `.name`, `["odd key"]` or `[3]`. */
function segment(part: string | number): string {
  if (typeof part === "number") return `[${part}]`;
  if (IDENTIFIER.test(part) && part.length <= MAX_KEY_IN_PATH) return `.${part}`;
  const shown = part.length > MAX_KEY_IN_PATH ? `${part.slice(0, MAX_KEY_IN_PATH)}…` : part;
  return `[${JSON.stringify(shown)}]`;
}

export function inspectJson(value: unknown, options: JsonInspectOptions): JsonInspection {
  const maxProblems = options.maxProblems ?? DEFAULT_MAX_PROBLEMS;
  const problems: JsonProblem[] = [];
  // The path is kept as a stack and rendered only when something is reported.
  const parts: (string | number)[] = [];
  let depthReported = false;

  const report = (description: string, extra?: string | number) => {
    if (problems.length >= maxProblems) return;
    const path = parts.map(segment).join("") + (extra === undefined ? "" : segment(extra));
    problems.push({ path, description });
  };

  /** Encoded size of a string; reports U+0000 (in a key when `key` is given). */
  const stringBytes = (s: string, key?: string): number => {
    // Common case: nothing to escape, so no U+0000 either.
    if (s.length <= SHORT_STRING) {
      const bytes = plainShortStringBytes(s);
      if (bytes >= 0) return bytes + 2;
    } else if (!NEEDS_ESCAPE.test(s)) return Buffer.byteLength(s, "utf8") + 2;
    if (s.includes("\u0000")) {
      if (key === undefined) report("must not contain U+0000 (NUL)");
      else report("has a key containing U+0000 (NUL)", key);
    }
    return Buffer.byteLength(JSON.stringify(s), "utf8");
  };

  /** `level`: the level `node` has if it is an object or array. */
  const walk = (node: unknown, level: number): number => {
    switch (typeof node) {
      case "string":
        return stringBytes(node);
      case "number":
        if (Number.isFinite(node)) return numberLength(node);
        report(`must be a finite number, not ${node}`);
        return 4; // "null", as JSON.stringify writes it
      case "boolean":
        return node ? 4 : 5;
      case "object":
        if (node === null) return 4;
        if (level > options.maxDepth) {
          if (!depthReported) report(`nests deeper than ${options.maxDepth} levels (the root object or array is level 1)`);
          depthReported = true;
          return 0;
        }
        return Array.isArray(node) ? arrayBytes(node, level) : objectBytes(node as Record<string, unknown>, level);
      default:
        return 0;
    }
  };

  const arrayBytes = (list: unknown[], level: number): number => {
    let bytes = 2 + Math.max(0, list.length - 1);
    for (let i = 0; i < list.length; i++) {
      const item = list[i];
      parts.push(i);
      if (item === undefined) {
        report("has no value (a google.protobuf.Value with no kind set)");
        bytes += 4;
      } else bytes += walk(item, level + 1);
      parts.pop();
    }
    return bytes;
  };

  const objectBytes = (object: Record<string, unknown>, level: number): number => {
    let bytes = 2;
    let count = 0;
    for (const key of Object.keys(object)) {
      const item = object[key];
      if (item === undefined) continue; // JSON.stringify leaves it out; the decoder never produces it
      bytes += stringBytes(key, key) + 1;
      parts.push(key);
      bytes += walk(item, level + 1);
      parts.pop();
      count++;
    }
    return bytes + Math.max(0, count - 1);
  };

  const bytes = walk(value, options.listOfDocuments ? 0 : 1);
  return { bytes, problems };
}
