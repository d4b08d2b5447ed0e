// The google.protobuf.Struct fields of a request or response (session
// state, metadata, payloads, ...) read and written with struct-codec.ts,
// everything else with the generated code, which is not edited: a request's
// documents are read out of its bytes and the rest, without them, goes to
// the generated decoder, then the documents are set on the message it
// returns; a response is encoded by the generated code without its
// documents, and the documents are appended as fields of their own (field
// order carries no meaning on the wire). Only fields the generated code
// keeps as plain properties take part: documents inside a oneof or a map
// are left to the generated code.
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { NotPlain, readStruct, StructReader, structField } from "./struct-codec.js";

const STRUCT = "google.protobuf.Struct";
const LENGTH_DELIMITED = 2;

/** A generated message's functions (ts-proto). */
export interface Generated {
  encode(message: any): { finish(): Uint8Array };
  fromPartial(object: object): object;
}

interface PlannedField {
  number: number;
  /** The generated message's property. */
  name: string;
  repeated: boolean;
}

interface NestedField extends PlannedField {
  plan: DocumentPlan;
}

/** Where a message type holds documents: its Struct fields, and the message fields that (transitively) hold some. */
export interface DocumentPlan {
  desc: DescMessage;
  generated: Generated;
  documents: Map<number, PlannedField>;
  nested: Map<number, NestedField>;
}

/** The plan for `desc`, or undefined when it holds no document the plain path can reach. */
export function documentPlan(desc: DescMessage, generatedOf: (desc: DescMessage) => Generated | undefined, visiting = new Set<string>()): DocumentPlan | undefined {
  const generated = generatedOf(desc);
  if (!generated || visiting.has(desc.typeName)) return undefined;
  visiting.add(desc.typeName);
  const shape = generated.fromPartial({});
  const plan: DocumentPlan = { desc, generated, documents: new Map(), nested: new Map() };
  for (const field of desc.fields) {
    const message = messageOf(field);
    // A oneof member lives under the oneof's property, not its own.
    if (!message || field.oneof || !Object.hasOwn(shape, field.localName)) continue;
    const planned = { number: field.number, name: field.localName, repeated: field.fieldKind === "list" };
    if (message.typeName === STRUCT) plan.documents.set(field.number, planned);
    else {
      const inner = documentPlan(message, generatedOf, visiting);
      if (inner) plan.nested.set(field.number, { ...planned, plan: inner });
    }
  }
  visiting.delete(desc.typeName);
  return plan.documents.size + plan.nested.size > 0 ? plan : undefined;
}

function messageOf(field: DescField): DescMessage | undefined {
  if (field.fieldKind === "message") return field.message;
  if (field.fieldKind === "list" && field.listKind === "message") return field.message;
  return undefined;
}

/** The documents read out of one message, by field number; nested ones per occurrence. */
interface Found {
  documents: Map<number, unknown>;
  nested: Map<number, Found | Found[]>;
  any: boolean;
}

/** A message's bytes without its documents, and the documents. */
interface Stripped {
  chunks: Uint8Array[];
  length: number;
  found: Found;
}

/**
 * Reads the documents out of the message in `buf[start, end)`, which the
 * generated code decodes at recursion count `depth`; throws NotPlain where
 * it must decide instead (see struct-codec.ts).
 */
function strip(plan: DocumentPlan, buf: Buffer, start: number, end: number, depth: number): Stripped {
  const found: Found = { documents: new Map(), nested: new Map(), any: false };
  const chunks: Uint8Array[] = [];
  let length = 0;
  const keep = (bytes: Uint8Array) => {
    chunks.push(bytes);
    length += bytes.length;
  };
  const reader = new StructReader(buf, start);
  let copyFrom = start;
  while (reader.pos < end) {
    const fieldStart = reader.pos;
    const tag = reader.tag();
    const number = tag >>> 3;
    const document = plan.documents.get(number);
    const nested = document ? undefined : plan.nested.get(number);
    if (!document && !nested) {
      skipChecked(plan.desc, tag, reader, end);
      continue;
    }
    if ((tag & 7) !== LENGTH_DELIMITED) throw new NotPlain();
    const fieldEnd = reader.lengthEnd(end);
    keep(buf.subarray(copyFrom, fieldStart));
    if (document) {
      const value = readStruct(buf, reader.pos, fieldEnd, depth + 1);
      record(found.documents, document, value);
      found.any = true;
    } else {
      const inner = strip(nested!.plan, buf, reader.pos, fieldEnd, depth + 1);
      keep(lengthPrefix(tag, inner.length));
      for (const chunk of inner.chunks) keep(chunk);
      record(found.nested, nested!, inner.found);
      found.any ||= inner.found.any;
    }
    reader.pos = copyFrom = fieldEnd;
  }
  if (reader.pos !== end) throw new NotPlain();
  keep(buf.subarray(copyFrom, end));
  return { chunks, length, found };
}

/**
 * Skips a field the generated code decodes, making sure it ends where its
 * length says, nested messages and packed numbers included: the generated
 * code does not check that, and a field overrunning its message would read
 * the bytes after it, which differ once the documents are taken out.
 */
function skipChecked(desc: DescMessage, tag: number, reader: StructReader, end: number): void {
  const field = fieldOf(desc, tag >>> 3);
  if ((tag & 7) !== LENGTH_DELIMITED || !field) return reader.skip(tag & 7, end);
  const stop = reader.lengthEnd(end);
  if (field.fieldKind === "map") checkMapEntry(field, reader, stop);
  else if (field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message")) checkMessage(field.message!, reader, stop);
  else if (field.fieldKind === "list" && field.listKind === "scalar") checkPacked(field.scalar, reader, stop);
  reader.pos = stop;
}

function checkMessage(desc: DescMessage, reader: StructReader, end: number): void {
  while (reader.pos < end) skipChecked(desc, reader.tag(), reader, end);
  if (reader.pos !== end) throw new NotPlain();
}

function checkMapEntry(field: DescField & { fieldKind: "map" }, reader: StructReader, end: number): void {
  while (reader.pos < end) {
    const tag = reader.tag();
    if (tag === 18 && field.mapKind === "message") {
      const stop = reader.lengthEnd(end);
      checkMessage(field.message, reader, stop);
    } else reader.skip(tag & 7, end);
  }
  if (reader.pos !== end) throw new NotPlain();
}

const FIXED_SIZE: Partial<Record<ScalarType, number>> = {
  [ScalarType.FIXED32]: 4,
  [ScalarType.SFIXED32]: 4,
  [ScalarType.FLOAT]: 4,
  [ScalarType.FIXED64]: 8,
  [ScalarType.SFIXED64]: 8,
  [ScalarType.DOUBLE]: 8,
};

/** Packed numbers: whole fixed-size values, or varints that end where the field does. */
function checkPacked(scalar: ScalarType, reader: StructReader, end: number): void {
  if (scalar === ScalarType.STRING || scalar === ScalarType.BYTES) return;
  const size = FIXED_SIZE[scalar];
  if (size !== undefined) {
    if ((end - reader.pos) % size !== 0) throw new NotPlain();
    return;
  }
  while (reader.pos < end) reader.varintNotZero();
  if (reader.pos !== end) throw new NotPlain();
}

const fieldsByNumber = new WeakMap<DescMessage, Map<number, DescField>>();

function fieldOf(desc: DescMessage, number: number): DescField | undefined {
  let fields = fieldsByNumber.get(desc);
  if (!fields) fieldsByNumber.set(desc, (fields = new Map(desc.fields.map((f) => [f.number, f]))));
  return fields.get(number);
}

/** A singular field keeps its last occurrence (the generated code replaces, too); a repeated one each. */
function record<T>(into: Map<number, T | T[]>, field: PlannedField, value: T): void {
  if (!field.repeated) into.set(field.number, value);
  else {
    const list = (into.get(field.number) as T[] | undefined) ?? [];
    list.push(value);
    into.set(field.number, list);
  }
}

function lengthPrefix(tag: number, length: number): Buffer {
  const bytes: number[] = [];
  for (const n of [tag, length]) {
    let rest = n;
    while (rest > 0x7f) {
      bytes.push((rest & 0x7f) | 0x80);
      rest >>>= 7;
    }
    bytes.push(rest);
  }
  return Buffer.from(bytes);
}

/** Sets the documents read out of a message's bytes on the message the generated code decoded from the rest. */
function graft(plan: DocumentPlan, message: Record<string, any>, found: Found): void {
  for (const [number, value] of found.documents) message[plan.documents.get(number)!.name] = value;
  for (const [number, inner] of found.nested) {
    const field = plan.nested.get(number)!;
    if (!field.repeated) graft(field.plan, message[field.name], inner as Found);
    else (inner as Found[]).forEach((f, i) => graft(field.plan, message[field.name][i], f));
  }
}

/**
 * Decodes `bytes` with `decode` (the generated decoder, given the bytes
 * to read), its documents read the plain way; undefined when they are not
 * plain (decode them all with the generated code then).
 */
export function decodeWithDocuments<T>(plan: DocumentPlan, bytes: Buffer, depth: number, decode: (bytes: Buffer) => T): T | undefined {
  let stripped: Stripped;
  try {
    stripped = strip(plan, bytes, 0, bytes.length, depth);
  } catch (error) {
    if (error instanceof NotPlain) return undefined;
    throw error;
  }
  if (!stripped.found.any) return decode(bytes);
  const message = decode(Buffer.concat(stripped.chunks, stripped.length));
  graft(plan, message as Record<string, any>, stripped.found);
  return message;
}

/** `message` encoded as the generated code would, its documents written the plain way. */
export function encodeWithDocuments(plan: DocumentPlan, message: Record<string, any>): Buffer {
  const rest: Record<string, any> = { ...message };
  const appended: Buffer[] = [];
  for (const field of plan.documents.values()) {
    const value = message[field.name];
    rest[field.name] = field.repeated ? [] : undefined;
    // ts-proto wraps a missing element as an empty Struct.
    if (field.repeated) for (const item of value) appended.push(structField(field.number, item === undefined ? {} : item));
    else if (value !== undefined) appended.push(structField(field.number, value));
  }
  for (const field of plan.nested.values()) {
    const value = message[field.name];
    rest[field.name] = field.repeated ? [] : undefined;
    for (const item of field.repeated ? value : value === undefined ? [] : [value]) {
      const inner = encodeWithDocuments(field.plan, item);
      appended.push(lengthPrefix((field.number << 3) | LENGTH_DELIMITED, inner.length), inner);
    }
  }
  const head = plan.generated.encode(rest).finish();
  return Buffer.concat([head, ...appended]);
}
