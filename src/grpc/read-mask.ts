// Read masks (AIP-157): a read names the top-level fields of the resource
// it wants by their proto names (`session_id`, `state`); an empty mask, or
// "*", means every field. A handler validates the mask once, tells the
// store which documents it may leave out of its SELECT (ReadMask.omitted),
// and trims each wire object to the named fields (ReadMask.apply).
import type { Violations } from "./validate.js";

/** Where a proto field sits on the ts-proto object: a property, or one case of a oneof property. */
type Slot = { property: string } | { oneof: string; case: string };

/** A resource as read masks see it: its proto field names, and how to build a message with every field at its default. */
export interface MaskedResource<W> {
  readonly fields: ReadonlyMap<string, Slot>;
  create(): W;
}

/** A proto field's name from its generated property (appendEvents: append_events). */
export const snakeCase = (property: string) => property.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const camelCase = (field: string) => field.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * The fields of a generated message, from the properties ts-proto gives a
 * new one, so a field added to the proto is maskable at once. A oneof is one
 * property there; `oneofs` names its members (e.g. value: ["bytes_value",
 * "json_value"]), each a field of its own in a mask.
 */
export function maskedResource<W extends object>(message: { create(): W }, oneofs: Record<string, readonly string[]> = {}): MaskedResource<W> {
  const fields = new Map<string, Slot>();
  for (const property of Object.keys(message.create())) {
    const members = oneofs[property];
    if (members) for (const member of members) fields.set(member, { oneof: property, case: camelCase(member) });
    else fields.set(snakeCase(property), { property });
  }
  return { fields, create: () => message.create() };
}

const WILDCARD = "*";
/** How much of an unknown path an error quotes. */
const SHOWN_CHARS = 64;

export class ReadMask<W> {
  constructor(
    private readonly resource: MaskedResource<W>,
    /** The fields to keep; null for every field. */
    private readonly paths: ReadonlySet<string> | null,
  ) {}

  includes(field: string): boolean {
    return this.paths === null || this.paths.has(field);
  }

  /**
   * What the store may leave out: of `documents` (proto field name -> the
   * store's name for it), those the mask does not include.
   */
  omitted<K>(documents: Readonly<Record<string, K>>): K[] {
    return Object.entries(documents)
      .filter(([field]) => !this.includes(field))
      .map(([, name]) => name);
  }

  /** The wire object with only the mask's fields; the others at their defaults (so they are not sent). */
  apply(wire: W): W {
    if (this.paths === null) return wire;
    const source = wire as Record<string, unknown>;
    const trimmed = this.resource.create() as Record<string, unknown>;
    for (const path of this.paths) {
      const slot = this.resource.fields.get(path)!;
      if ("property" in slot) trimmed[slot.property] = source[slot.property];
      else if ((source[slot.oneof] as { $case?: string } | undefined)?.$case === slot.case) trimmed[slot.oneof] = source[slot.oneof];
    }
    return trimmed as W;
  }
}

/**
 * Validates a read mask against the resource's fields: each path a
 * top-level field name or "*"; an unknown one is a violation naming
 * `read_mask.paths[i]`.
 */
const MAX_MASK_PATHS = 100;

export function parseReadMask<W>(v: Violations, paths: readonly string[] | undefined, resource: MaskedResource<W>, field = "read_mask"): ReadMask<W> {
  const list = paths ?? [];
  // A resource has a few dozen fields at most; a longer mask is refused whole
  // rather than checked path by path.
  if (list.length > MAX_MASK_PATHS) {
    v.add(`${field}.paths`, `has ${list.length} paths; the limit is ${MAX_MASK_PATHS}`);
    return new ReadMask(resource, null);
  }
  list.forEach((path, i) => {
    if (path === WILDCARD || resource.fields.has(path)) return;
    const shown = path.length > SHOWN_CHARS ? `${path.slice(0, SHOWN_CHARS)}…` : path;
    v.add(`${field}.paths[${i}]`, `unknown field ${JSON.stringify(shown)}; fields: ${[...resource.fields.keys()].join(", ")}`);
  });
  const all = list.length === 0 || list.includes(WILDCARD);
  return new ReadMask(resource, all ? null : new Set(list.filter((path) => resource.fields.has(path))));
}
