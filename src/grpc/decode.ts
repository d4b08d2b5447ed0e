// Decoding requests so that validation, not the decoder, decides. grpc-js
// answers INTERNAL when a deserializer throws; Cairn's deserializers never
// throw: a request that does not decode becomes an UndecodableRequest, which
// the handler adapter turns into INVALID_ARGUMENT naming the field. Strings
// are decoded strictly (invalid UTF-8 is refused, not replaced), and an
// int64 beyond ±(2^53−1), which ts-proto cannot hold in a JS number, is
// named with its path instead of failing the decoder. The documents
// (google.protobuf.Struct fields) of requests and responses are read and
// written by the client package's plain codec (documents.ts, shared with
// the TypeScript client), the rest by the generated code.
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import * as wire from "@cairn/client";
import type { FieldViolation } from "../errors.js";
import { readerWithRoom, startingDepth } from "./deep-decode.js";

/** A request whose bytes did not decode; carries what was wrong with them. */
export class UndecodableRequest {
  constructor(readonly violations: FieldViolation[]) {}
}

const { decodeWithDocuments, documentsOf, encodeWithDocuments, generatedOf, methodOf } = wire;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const decodeStrictly = (bytes: Uint8Array) => strictUtf8.decode(bytes);

/**
 * A deserializer for `path` that decodes with the generated code (strict
 * UTF-8, room for documents `maxJsonDepth` deep) and, when that fails,
 * returns an UndecodableRequest naming why.
 */
export function requestDeserializer(path: string, maxJsonDepth: number): (bytes: Buffer) => unknown {
  const desc = methodOf(path).input;
  const generated = generatedOf(desc);
  if (!generated) throw new Error(`no generated decoder for ${desc.typeName}`);
  const plan = documentsOf(path, "input");
  const depth = startingDepth(maxJsonDepth);
  const decode = (bytes: Buffer) => generated.decode(readerWithRoom(bytes, maxJsonDepth, decodeStrictly));
  return (bytes) => {
    try {
      // Documents the plain path cannot read (undefined) go through the generated code, which decides.
      return (plan && decodeWithDocuments(plan, bytes, depth, decode)) ?? decode(bytes);
    } catch {
      // The whole request again through the generated code, so its error is explained as before.
      try {
        return decode(bytes);
      } catch (error) {
        return new UndecodableRequest(explain(desc, bytes, error));
      }
    }
  };
}

/** The serializer of `path`'s responses: `generated` (the service definition's), with documents written the plain way. */
export function responseSerializer(path: string, generated: (value: any) => Buffer): (value: any) => Buffer {
  const plan = documentsOf(path, "output");
  return plan ? (value) => encodeWithDocuments(plan, value) : generated;
}

const INT64_SCALARS = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** What made `bytes` undecodable, by field path where the wire format lets us tell. */
function explain(desc: DescMessage, bytes: Uint8Array, error: unknown): FieldViolation[] {
  const found: FieldViolation[] = [];
  try {
    walk(desc, bytes, "", found);
  } catch {
    // The bytes are not protobuf at all; the summary below says so.
  }
  if (found.length > 0) return found;
  const why = error instanceof Error ? error.message : String(error);
  return [{ field: "", description: `the request is not a valid ${desc.typeName}: ${why}` }];
}

/** Walks the wire format with the message's descriptor, collecting bad strings and unsafe int64s. */
function walk(desc: DescMessage, bytes: Uint8Array, path: string, found: FieldViolation[]): void {
  const reader = new BinaryReader(bytes);
  const seen = new Map<number, number>();
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = desc.fields.find((f) => f.number === number);
    if (!field) {
      reader.skip(wireType);
      continue;
    }
    const index = seen.get(number) ?? 0;
    seen.set(number, index + 1);
    const at = `${path}${path ? "." : ""}${field.name}${field.fieldKind === "list" ? `[${index}]` : ""}`;
    checkField(field, reader, wireType, at, found);
  }
}

function checkField(field: DescField, reader: BinaryReader, wireType: WireType, at: string, found: FieldViolation[]): void {
  const message = field.fieldKind === "message" ? field.message : field.fieldKind === "list" || field.fieldKind === "map" ? field.message : undefined;
  const scalar = field.fieldKind === "scalar" || field.fieldKind === "list" ? field.scalar : undefined;
  if (field.fieldKind === "map") {
    // A map entry is a message of key (1) and value (2); check both as strings/int64s.
    checkMapEntry(field, reader.bytes(), at, found);
  } else if (message) {
    walk(message, reader.bytes(), at, found);
  } else if (scalar === ScalarType.STRING) {
    checkUtf8(reader.bytes(), at, found);
  } else if (scalar !== undefined && INT64_SCALARS.has(scalar)) {
    checkInt64(scalar, reader, wireType, at, found);
  } else {
    reader.skip(wireType);
  }
}

function checkMapEntry(field: DescField & { fieldKind: "map" }, bytes: Uint8Array, at: string, found: FieldViolation[]): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 1 && field.mapKey === ScalarType.STRING) checkUtf8(reader.bytes(), `${at} (key)`, found);
    else if (number === 2 && field.mapKind === "message") walk(field.message, reader.bytes(), at, found);
    else if (number === 2 && field.mapKind === "scalar" && field.scalar === ScalarType.STRING) checkUtf8(reader.bytes(), at, found);
    else reader.skip(wireType);
  }
}

function checkUtf8(bytes: Uint8Array, at: string, found: FieldViolation[]): void {
  try {
    strictUtf8.decode(bytes);
  } catch {
    found.push({ field: at, description: "is not valid UTF-8" });
  }
}

function checkInt64(scalar: ScalarType, reader: BinaryReader, wireType: WireType, at: string, found: FieldViolation[]): void {
  const read = (r: BinaryReader): bigint => {
    switch (scalar) {
      case ScalarType.UINT64:
        return BigInt(r.uint64());
      case ScalarType.SINT64:
        return BigInt(r.sint64());
      case ScalarType.FIXED64:
        return BigInt(r.fixed64());
      case ScalarType.SFIXED64:
        return BigInt(r.sfixed64());
      default:
        return BigInt(r.int64());
    }
  };
  const values: bigint[] = [];
  if (wireType === WireType.LengthDelimited) {
    const packed = new BinaryReader(reader.bytes());
    while (packed.pos < packed.len) values.push(read(packed));
  } else {
    values.push(read(reader));
  }
  if (values.some((v) => v > MAX_SAFE || v < -MAX_SAFE)) {
    found.push({ field: at, description: "must be between -(2^53-1) and 2^53-1" });
  }
}
