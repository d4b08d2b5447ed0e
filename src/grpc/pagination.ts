// Page sizes and keyset page tokens. A token carries the last row's sort key
// and a fingerprint of the filter that produced it, so it stays stable while
// rows are inserted and cannot be replayed against another filter.
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import type { Page } from "../db/pages.js";
import { invalidPageToken } from "../errors.js";
import type { Violations } from "./validate.js";

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;

/** The page size to use: the default for 0, clamped to the maximum; negative is a violation. */
export function pageSize(v: Violations, requested: number): number {
  if (requested < 0) v.add("page_size", "must not be negative");
  if (requested <= 0) return DEFAULT_PAGE_SIZE;
  return Math.min(requested, MAX_PAGE_SIZE);
}

export function fingerprint(filter: unknown): string {
  return createHash("sha256")
    .update(canonicalize(filter) ?? "null")
    .digest("base64url")
    .slice(0, 16);
}

interface TokenBody {
  f: string;
  k: unknown[];
}

export function encodePageToken(filter: unknown, key: unknown[]): string {
  const body: TokenBody = { f: fingerprint(filter), k: key };
  return Buffer.from(JSON.stringify(body)).toString("base64url");
}

/**
 * What a token's key parts may be. A token is only base64 JSON and anyone
 * can forge one, so each part is checked as strictly as the SQL it feeds
 * needs: a "time" is a time string as Cairn writes them ("time?" also
 * null, for a column that may be NULL), an "id" a string PostgreSQL can
 * hold, a "number" a safe integer.
 */
type KeyPart = "time" | "time?" | "id" | "number";
type KeyOf<S extends readonly KeyPart[]> = {
  [I in keyof S]: S[I] extends "number" ? number : S[I] extends "time?" ? string | null : string;
};

function isCalendarTime(value: string): boolean {
  const ms = Date.parse(value);
  return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 19) === value.slice(0, 19);
}

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
// A real calendar time from year 1: JS rolls 2024-02-30 over to March, PostgreSQL refuses it.
const isTime = (value: unknown) => typeof value === "string" && TIME.test(value) && value >= "0001" && isCalendarTime(value);
const KEY_PART_CHECKS: Record<KeyPart, (value: unknown) => boolean> = {
  time: isTime,
  "time?": (value) => value === null || isTime(value),
  id: (value) => typeof value === "string" && value.length <= 4096 && !value.includes("\u0000"),
  number: (value) => Number.isSafeInteger(value),
};

/**
 * The keyset of a page token, typed by `shape` (e.g. ["time", "id"]), or
 * undefined for the first page.
 */
export function decodePageToken<const S extends readonly KeyPart[]>(token: string, filter: unknown, shape: S): KeyOf<S> | undefined {
  if (token === "") return undefined;
  let body: TokenBody;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as TokenBody;
  } catch {
    throw invalidPageToken("is not a token this server issued");
  }
  if (typeof body?.f !== "string" || !Array.isArray(body.k)) throw invalidPageToken("is not a token this server issued");
  if (body.f !== fingerprint(filter)) throw invalidPageToken("was issued for a different filter or order_by");
  const key = body.k;
  if (key.length !== shape.length || !shape.every((part, i) => KEY_PART_CHECKS[part](key[i]))) {
    throw invalidPageToken("is not a token this server issued");
  }
  return key as KeyOf<S>;
}

/** What measuring an item as sent takes: its generated message's encoder. */
export interface Encoder<W> {
  encode(message: W): { finish(): Uint8Array };
}

/**
 * How much larger than its JSON text a document may be once encoded as a
 * google.protobuf.Struct: a number in a list is 2 bytes as text, 11 encoded.
 */
const MAX_ENCODING_GROWTH = 6;
/** A repeated item's tag and length. */
const ITEM_FRAMING = 6;
/** next_page_token and the response's own framing. */
const TOKEN_ALLOWANCE = 512;

export interface PageResponseOptions<R, W> {
  /** The filter the token is bound to. */
  bound: unknown;
  /** The keyset of a row, for the next token. */
  keyOf: (row: R) => unknown[];
  toWire: (row: R) => W;
  encoder: Encoder<W>;
  /** limits.maxPageBytes: the most a page may take encoded. */
  maxBytes: number;
}

/**
 * A store's page (cut by rows and bytes in SQL, see db/pages.ts) as a
 * response: the wire items and, when rows follow, the next token from the
 * last item. The SQL measured JSON as text; when the page is large enough
 * that its encoding could pass `maxBytes`, its items are measured as
 * encoded and the page is cut again where they stop fitting (after the
 * first item, which always comes), so a page never exceeds the bound.
 */
export function pageResponse<R, W>(page: Page<R>, o: PageResponseOptions<R, W>): { items: W[]; nextPageToken: string } {
  let rows = page.items;
  let items = rows.map(o.toWire);
  let more = page.more;
  if (page.bytes * MAX_ENCODING_GROWTH > o.maxBytes) {
    const fit = fittingCount(items, o.encoder, o.maxBytes);
    if (fit < items.length) {
      rows = rows.slice(0, fit);
      items = items.slice(0, fit);
      more = true;
    }
  }
  const last = rows[rows.length - 1];
  return { items, nextPageToken: more && last !== undefined ? encodePageToken(o.bound, o.keyOf(last)) : "" };
}

/** How many leading items fit in maxBytes encoded (at least one). */
function fittingCount<W>(items: W[], encoder: Encoder<W>, maxBytes: number): number {
  let total = TOKEN_ALLOWANCE;
  for (let i = 0; i < items.length; i++) {
    total += encoder.encode(items[i]!).finish().length + ITEM_FRAMING;
    if (total > maxBytes && i > 0) return i;
  }
  return items.length;
}
