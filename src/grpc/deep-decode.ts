// Decoding room for JSON documents nested as deep as the contract allows.
//
// ts-proto's generated decoders refuse more than 100 nested messages
// ("protobuf decode recursion limit exceeded", hard-coded in ts-proto 2.x),
// and a google.protobuf.Struct spends three of them per object level
// (Struct, its map entry, Value) and a ListValue two per array level. So a
// request carrying a document stops decoding at about 32 object levels
// (48 array levels), short of the 64 that API.md allows: that is the "~45
// level" limit, not PostgreSQL (jsonb takes 1,000 levels and more) nor
// JSON.stringify nor grpc-js. The generated code is not edited: the
// decoders keep their depth count on the reader they are given, so a reader
// whose count starts below zero gives them the room a document needs, and
// the count still bounds the recursion.
import { BinaryReader } from "@bufbuild/protobuf/wire";

/** ts-proto's fixed recursion limit, in nested messages. */
const TS_PROTO_RECURSION_LIMIT = 100;
/** Messages around the deepest document: BatchCreateSessionsRequest > CreateSessionRequest > Session > Struct. */
const ENVELOPE_MESSAGES = 4;
/** Room for one level past the limit, so validation (not the decoder) names a document one level too deep. */
const SLACK_LEVELS = 2;
/** Nested messages per object level of a Struct: Struct, its map entry, Value. */
const MESSAGES_PER_LEVEL = 3;

/** Nested messages a request may hold when its documents nest `maxJsonDepth` levels. */
export function decodeBudget(maxJsonDepth: number): number {
  return ENVELOPE_MESSAGES + MESSAGES_PER_LEVEL * (maxJsonDepth + SLACK_LEVELS);
}

/** The depth count a reader for `maxJsonDepth` levels starts at (see readerWithRoom). */
export function startingDepth(maxJsonDepth: number): number {
  return TS_PROTO_RECURSION_LIMIT - decodeBudget(maxJsonDepth);
}

/**
 * A reader for `X.decode(reader)` whose depth count leaves room for
 * `maxJsonDepth` levels of JSON; `decodeUtf8` as BinaryReader takes it
 * (e.g. a fatal TextDecoder, so invalid UTF-8 throws instead of becoming U+FFFD).
 */
export function readerWithRoom(bytes: Uint8Array, maxJsonDepth: number, decodeUtf8?: (bytes: Uint8Array) => string): BinaryReader {
  const reader = new BinaryReader(bytes, decodeUtf8);
  (reader as unknown as { __tsProtoDecodeDepth: number }).__tsProtoDecodeDepth = startingDepth(maxJsonDepth);
  return reader;
}

/**
 * `deserialize` (a generated `requestDeserialize` or `responseDeserialize`,
 * i.e. `(b) => X.decode(b)`) with room for `maxJsonDepth` levels of JSON:
 * X.decode(input) uses `input` itself when it is a BinaryReader.
 */
export function deepDeserializer<T>(deserialize: (bytes: Buffer) => T, maxJsonDepth: number): (bytes: Buffer) => T {
  return (bytes) => deserialize(readerWithRoom(bytes, maxJsonDepth) as unknown as Buffer);
}
