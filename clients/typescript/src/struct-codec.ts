// google.protobuf.Struct on the wire, read straight into plain JSON values
// and written straight from them. ts-proto's own codec builds a wrapper
// object per Value ({ kind: { $case, value } }), copies every object once
// more to unwrap it, and encodes through a fork and join per nested message:
// for a state of thousands of small values that is several milliseconds and
// much garbage per call. These functions give exactly what ts-proto gives
// (the same values, the same key order, the same dropped entries), and hand
// anything unusual back to it: when reading meets bytes it would not read
// the plain way (a tag 0, a group, a known field with another wire type, a
// length past its message, invalid UTF-8, nesting past its recursion
// count), it throws NotPlain and the caller decodes with ts-proto, whose
// answer (value or error) stands. Writing differs in one way: -0 is written
// as 0, as jsonb stores it (see StructWriter.value).

/** Thrown when the bytes are not plain enough to read here; decode them with the generated code. */
export class NotPlain extends Error {}

const notPlain = new NotPlain("not a plain google.protobuf.Struct");
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** ts-proto's recursion count: a decode that starts at this depth throws. */
const RECURSION_LIMIT = 100;
/**
 * ts-proto assigns struct keys to a plain object, so "__proto__" sets the
 * prototype instead of a key. Writing, unwrapping (own keys only) then
 * leaves it out; reading, what comes out depends on the order of its
 * entries and values, so such a Struct is left to ts-proto.
 */
const PROTO_KEY = "__proto__";
/** Longest string read on the ASCII path in JS. */
const SHORT_ASCII = 32;

/** Reads protobuf wire format the plain way: google.protobuf.Struct, Value and ListValue, and tags and lengths around them. */
export class StructReader {
  pos: number;

  constructor(
    private readonly buf: Buffer,
    start: number,
  ) {
    this.pos = start;
  }

  /** A varint of at most 32 bits (tags, lengths). */
  uint32(): number {
    const buf = this.buf;
    let result = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const b = buf[this.pos++]!;
      result |= (b & 0x7f) << shift;
      if (b < 0x80) return result >>> 0;
    }
    const last = buf[this.pos++]!;
    if (last > 0x0f) throw notPlain;
    return (result | (last << 28)) >>> 0;
  }

  /** The end of a length-delimited field that starts here, within `end`. */
  lengthEnd(end: number): number {
    const length = this.uint32();
    const stop = this.pos + length;
    if (stop > end) throw notPlain;
    return stop;
  }

  /** A varint of up to 64 bits: whether it is not zero (bool, and the ignored null_value). */
  varintNotZero(): boolean {
    let notZero = false;
    for (let i = 0; i < 10; i++) {
      const b = this.buf[this.pos++]!;
      if ((b & 0x7f) !== 0) notZero = true;
      if (b < 0x80) return notZero;
    }
    throw notPlain;
  }

  string(end: number): string {
    const stop = this.lengthEnd(end);
    const start = this.pos;
    this.pos = stop;
    if (stop - start <= SHORT_ASCII) {
      // Short ASCII strings (most keys) are cheaper built here than decoded natively.
      const codes = new Array<number>(stop - start);
      let i = start;
      for (; i < stop && this.buf[i]! < 0x80; i++) codes[i - start] = this.buf[i]!;
      if (i === stop) return String.fromCharCode.apply(String, codes);
    }
    try {
      return strictUtf8.decode(this.buf.subarray(start, stop));
    } catch {
      throw notPlain;
    }
  }

  /** Skips an unknown field (as ts-proto does); groups are left to ts-proto. */
  skip(wireType: number, end: number): void {
    switch (wireType) {
      case 0:
        this.varintNotZero();
        break;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.pos = this.lengthEnd(end);
        break;
      case 5:
        this.pos += 4;
        break;
      default:
        throw notPlain;
    }
    if (this.pos > end) throw notPlain;
  }

  /** The next tag of a message ending at `end`; tag 0 and end-group tags stop ts-proto mid-message, so not plain. */
  tag(): number {
    const tag = this.uint32();
    if (tag === 0 || (tag & 7) === 4) throw notPlain;
    return tag;
  }

  /** A Struct of `depth` enclosing messages (ts-proto's count), as ts-proto unwraps it. */
  struct(end: number, depth: number): Record<string, unknown> {
    if (depth >= RECURSION_LIMIT) throw notPlain;
    const object: Record<string, unknown> = {};
    while (this.pos < end) {
      const tag = this.tag();
      if (tag === 10) {
        this.entry(this.lengthEnd(end), depth + 1, object);
      } else if (tag >>> 3 === 1) throw notPlain;
      else this.skip(tag & 7, end);
    }
    if (this.pos !== end) throw notPlain;
    return object;
  }

  /** One map entry; an entry without a value is dropped, a repeated key keeps its place and takes the last value. */
  private entry(end: number, depth: number, into: Record<string, unknown>): void {
    if (depth >= RECURSION_LIMIT) throw notPlain;
    let key = "";
    let value: unknown;
    while (this.pos < end) {
      const tag = this.tag();
      if (tag === 10) key = this.string(end);
      else if (tag === 18) value = this.value(this.lengthEnd(end), depth + 1);
      else if (tag >>> 3 === 1 || tag >>> 3 === 2) throw notPlain;
      else this.skip(tag & 7, end);
    }
    if (this.pos !== end) throw notPlain;
    if (key === PROTO_KEY) throw notPlain;
    if (value !== undefined) into[key] = value;
  }

  /** A Value as ts-proto unwraps it: null, a number, string, boolean, object or array; undefined when no kind is set (the last one set wins). */
  value(end: number, depth: number): unknown {
    if (depth >= RECURSION_LIMIT) throw notPlain;
    let value: unknown;
    while (this.pos < end) {
      const tag = this.tag();
      switch (tag) {
        case 8:
          this.varintNotZero();
          value = null;
          break;
        case 17:
          if (this.pos + 8 > end) throw notPlain;
          value = this.buf.readDoubleLE(this.pos);
          this.pos += 8;
          break;
        case 26:
          value = this.string(end);
          break;
        case 32:
          value = this.varintNotZero();
          break;
        case 42:
          value = this.struct(this.lengthEnd(end), depth + 1);
          break;
        case 50:
          value = this.list(this.lengthEnd(end), depth + 1);
          break;
        default:
          if (tag >>> 3 <= 6) throw notPlain;
          this.skip(tag & 7, end);
      }
    }
    if (this.pos !== end) throw notPlain;
    return value;
  }

  /** A ListValue's values; an element with no kind set stays as undefined (validation names it). */
  private list(end: number, depth: number): unknown[] {
    if (depth >= RECURSION_LIMIT) throw notPlain;
    const values: unknown[] = [];
    while (this.pos < end) {
      const tag = this.tag();
      if (tag === 10) values.push(this.value(this.lengthEnd(end), depth + 1));
      else if (tag >>> 3 === 1) throw notPlain;
      else this.skip(tag & 7, end);
    }
    if (this.pos !== end) throw notPlain;
    return values;
  }
}

/**
 * The Struct in `buf[start, end)` as ts-proto's `Struct.unwrap(Struct.decode(...))`
 * gives it, when ts-proto's count of enclosing messages is `depth`; throws
 * NotPlain where ts-proto must decide.
 */
export function readStruct(buf: Buffer, start: number, end: number, depth: number): Record<string, unknown> {
  return new StructReader(buf, start).struct(end, depth);
}

// Writing: one pass measures every nested message (lengths come before
// contents on the wire), a second writes into one buffer of the exact size.

/** Strings up to this length are measured and copied in JS; longer ones natively. */
const SHORT_STRING = 64;

const utf8Length = (s: string): number => {
  if (s.length > SHORT_STRING) return Buffer.byteLength(s, "utf8");
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, "utf8");
  return s.length;
};

const varintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

/** Measures a document's nested messages, in the order the writer meets them. */
class StructSizer {
  /** Lengths of messages and strings, pushed when measured, read in the same order when written. */
  readonly sizes: number[] = [];
  /** Each object's entries (keys and values) and their count, in the same order: the writer looks nothing up again. */
  readonly keys: string[] = [];
  readonly items: unknown[] = [];
  readonly counts: number[] = [];

  /** Bytes of Struct.encode(Struct.wrap(object)). */
  struct(object: Record<string, unknown>): number {
    let bytes = 0;
    const countSlot = this.counts.push(0) - 1;
    for (const key of Object.keys(object)) {
      const item = object[key];
      if (item === undefined || key === PROTO_KEY) continue;
      this.keys.push(key);
      this.items.push(item);
      this.counts[countSlot]++;
      const slot = this.sizes.push(0) - 1;
      const keyBytes = key === "" ? 0 : 1 + this.lengthDelimited(utf8Length(key));
      const valueBytes = this.value(item);
      const entry = keyBytes + 1 + varintSize(valueBytes) + valueBytes;
      this.sizes[slot] = entry;
      bytes += 1 + varintSize(entry) + entry;
    }
    return bytes;
  }

  /** Bytes of Value.encode(Value.wrap(item)). */
  value(item: unknown): number {
    switch (typeof item) {
      case "number":
        return 9;
      case "string":
        return 1 + this.lengthDelimited(utf8Length(item));
      case "boolean":
        return 2;
      case "undefined":
        return 0;
      case "object": {
        if (item === null) return 2;
        const slot = this.sizes.push(0) - 1;
        const inner = Array.isArray(item) ? this.list(item) : this.struct(item as Record<string, unknown>);
        this.sizes[slot] = inner;
        return 1 + varintSize(inner) + inner;
      }
      default:
        throw new Error(`Unsupported any value type: ${typeof item}`);
    }
  }

  private list(items: unknown[]): number {
    let bytes = 0;
    for (const item of items) {
      const slot = this.sizes.push(0) - 1;
      const inner = this.value(item);
      this.sizes[slot] = inner;
      bytes += 1 + varintSize(inner) + inner;
    }
    return bytes;
  }

  /** Records a string's byte length; its bytes with their length prefix. */
  private lengthDelimited(length: number): number {
    this.sizes.push(length);
    return varintSize(length) + length;
  }
}

/** Writes what a StructSizer measured, in the same order. */
class StructWriter {
  private next = 0;
  private nextEntry = 0;
  private nextCount = 0;
  private readonly sizes: number[];

  constructor(
    readonly buf: Buffer,
    public pos: number,
    private readonly measured: StructSizer,
  ) {
    this.sizes = measured.sizes;
  }

  varint(n: number): void {
    while (n > 0x7f) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
  }

  /** A tag and the next measured length. */
  private open(tag: number): void {
    this.buf[this.pos++] = tag;
    this.varint(this.sizes[this.next++]!);
  }

  private string(tag: number, s: string): void {
    const length = this.sizes[this.next]!;
    this.open(tag);
    // Byte length equal to the string's length: ASCII only, short ones copied here.
    if (length === s.length && length <= SHORT_STRING) {
      for (let i = 0; i < length; i++) this.buf[this.pos + i] = s.charCodeAt(i);
    } else this.buf.write(s, this.pos, length, "utf8");
    this.pos += length;
  }

  /** The next object the sizer measured. */
  struct(): void {
    const { keys, items, counts } = this.measured;
    for (let n = counts[this.nextCount++]!; n > 0; n--) {
      const key = keys[this.nextEntry]!;
      const item = items[this.nextEntry++];
      this.open(10);
      if (key !== "") this.string(10, key);
      this.buf[this.pos++] = 18;
      this.varint(this.valueSize(item));
      this.value(item);
    }
  }

  /** A Value's length: fixed for scalars, measured for the rest (without consuming it). */
  private valueSize(item: unknown): number {
    switch (typeof item) {
      case "number":
        return 9;
      case "boolean":
        return 2;
      case "undefined":
        return 0;
      case "string": {
        const length = this.sizes[this.next]!;
        return 1 + varintSize(length) + length;
      }
      default: {
        if (item === null) return 2;
        const inner = this.sizes[this.next]!;
        return 1 + varintSize(inner) + inner;
      }
    }
  }

  value(item: unknown): void {
    switch (typeof item) {
      case "number":
        this.buf[this.pos++] = 17;
        // A stored document has no -0 (jsonb's numeric has none); a document
        // echoed from the request it was written with must read the same.
        this.buf.writeDoubleLE(item === 0 ? 0 : item, this.pos);
        this.pos += 8;
        return;
      case "string":
        this.string(26, item);
        return;
      case "boolean":
        this.buf[this.pos++] = 32;
        this.buf[this.pos++] = item ? 1 : 0;
        return;
      case "undefined":
        return;
      default:
        if (item === null) {
          this.buf[this.pos++] = 8;
          this.buf[this.pos++] = 0;
        } else if (Array.isArray(item)) {
          this.open(50);
          for (const element of item) {
            this.open(10);
            this.value(element);
          }
        } else {
          this.open(42);
          this.struct();
        }
    }
  }
}

/**
 * `object` as ts-proto's `Struct.encode(Struct.wrap(object))` writes it, as
 * field `fieldNumber` of an enclosing message (tag and length included).
 */
export function structField(fieldNumber: number, object: Record<string, unknown>): Buffer {
  const sizer = new StructSizer();
  const inner = sizer.struct(object);
  const tag = (fieldNumber << 3) | 2;
  const buf = Buffer.allocUnsafe(varintSize(tag) + varintSize(inner) + inner);
  const writer = new StructWriter(buf, 0, sizer);
  writer.varint(tag);
  writer.varint(inner);
  writer.struct();
  if (writer.pos !== buf.length) throw new Error(`struct writer wrote ${writer.pos} of ${buf.length} bytes`);
  return buf;
}
