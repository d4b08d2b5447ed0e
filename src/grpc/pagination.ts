// Page sizes and keyset page tokens. A token carries the last row's sort key
// and a fingerprint of the filter that produced it, so it stays stable while
// rows are inserted and cannot be replayed against another filter.
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
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

type KeyPart = "string" | "number";
type KeyOf<S extends readonly KeyPart[]> = { [I in keyof S]: S[I] extends "string" ? string : number };

/**
 * The keyset of a page token, typed by `shape` (e.g. ["string", "string"]
 * for a time and an id), or undefined for the first page.
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
  if (key.length !== shape.length || !shape.every((type, i) => typeof key[i] === type)) {
    throw invalidPageToken("is not a token this server issued");
  }
  return key as KeyOf<S>;
}

/**
 * Splits `limit + 1` fetched rows into a page and the next token (from the
 * page's last row), so one query tells whether more rows follow.
 */
export function paginate<R>(rows: R[], limit: number, filter: unknown, keyOf: (row: R) => unknown[]) {
  const hasMore = rows.length > limit;
  const page = hasMore ? rows.slice(0, limit) : rows;
  const last = page[page.length - 1];
  const nextPageToken = hasMore && last !== undefined ? encodePageToken(filter, keyOf(last)) : "";
  return { page, nextPageToken };
}
