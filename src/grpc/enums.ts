// One codec for every enum on the wire: stores speak in names without the
// enum's prefix ("ACTIVE", "ALLOW", "RUNNING"), the wire in ts-proto's numeric
// enums (SESSION_STATUS_ACTIVE = 1). Built from the generated enum itself, so
// a value added to the proto needs no second list here.
import type { Violations } from "./validate.js";

export interface EnumCodec<W extends number, N extends string> {
  /** Every name, in the proto's order (without UNSPECIFIED). */
  readonly names: readonly N[];
  /** The wire value of a name. */
  toWire(name: N): W;
  /** The name of a wire value; undefined for UNSPECIFIED or an unknown number. */
  nameOf(wire: W): N | undefined;
  /** The wire enum's full name of a name, e.g. "SESSION_STATUS_ACTIVE" (map keys in responses). */
  fullName(name: N): string;
  /**
   * The name of a value given in a request, with a violation naming `field`
   * when it is unknown. UNSPECIFIED means `unspecified` when one is given.
   */
  parse(v: Violations, field: string, wire: W, unspecified?: N): N | undefined;
}

/** `wireEnum` is ts-proto's enum object; `prefix` its values' common prefix ("SESSION_STATUS_"). */
export function enumCodec<W extends number, N extends string>(wireEnum: Record<string, string | number>, prefix: string): EnumCodec<W, N> {
  const toName = new Map<number, N>();
  const toWire = new Map<string, W>();
  for (const [key, value] of Object.entries(wireEnum)) {
    if (typeof value !== "number" || value <= 0 || !key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length) as N;
    toName.set(value, name);
    toWire.set(name, value as W);
  }
  const names = [...toWire.keys()] as N[];
  return {
    names,
    toWire: (name) => toWire.get(name)!,
    nameOf: (wire) => toName.get(wire),
    fullName: (name) => `${prefix}${name}`,
    parse(v, field, wire, unspecified) {
      if (wire === 0 && unspecified !== undefined) return unspecified;
      const name = toName.get(wire);
      if (name === undefined) v.add(field, `must be one of ${names.map((n) => prefix + n).join(", ")}`);
      return name;
    },
  };
}
