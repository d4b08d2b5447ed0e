// JSON null in oneofs. ts-proto's fromPartial reads a oneof member set to
// null as "not set": `{ $case: "jsonValue", value: null }` came out of
// Entry.fromPartial with no value, so a Put of JSON null arrived without
// one. For a google.protobuf.Value member, null is a value (NullValue), and
// encode already writes it as one. No ts-proto option changes this (every
// oneof style generates the null check for every member type), so those
// members get their null back here, in the generated objects themselves:
// every fromPartial or create that reaches one (PutRequest, BatchPutRequest
// and any message holding an Entry) looks it up at call time.
import * as keyvalue from "./gen/cairn/v1/keyvalue.js";

interface FromPartial {
  fromPartial(object: unknown): unknown;
}

/**
 * Every oneof member of type google.protobuf.Value in cairn.v1, as
 * [message, oneof property, member]. test/keyvalue-values.test.ts checks
 * this list against the proto descriptors, so a new one cannot be missed.
 */
const VALUE_MEMBERS: readonly (readonly [FromPartial, string, string])[] = [[keyvalue.Entry, "value", "jsonValue"]];

function keepNull(message: FromPartial, oneof: string, member: string): void {
  const generated = message.fromPartial;
  message.fromPartial = (object) => {
    const result = generated(object) as Record<string, unknown>;
    const chosen = (object as Record<string, { $case?: string; value?: unknown } | undefined> | undefined)?.[oneof];
    if (chosen?.$case === member && chosen.value === null) result[oneof] = { $case: member, value: null };
    return result;
  };
}

for (const [message, oneof, member] of VALUE_MEMBERS) keepNull(message, oneof, member);
