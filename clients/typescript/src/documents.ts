// Where the documents (google.protobuf.Struct fields) of each method's
// request and response are, for reading and writing them with the plain
// codec (document-fields.ts, struct-codec.ts) instead of ts-proto's, which
// builds a wrapper object per value: the client and the daemon share this.
import { createFileRegistry, type DescMessage, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { type DocumentPlan, documentPlan, type Generated } from "./document-fields.js";
import * as job from "./gen/cairn/v1/job.js";
import * as keyvalue from "./gen/cairn/v1/keyvalue.js";
import * as metric from "./gen/cairn/v1/metric.js";
import * as resolution from "./gen/cairn/v1/resolution.js";
import * as session from "./gen/cairn/v1/session.js";
import * as trace from "./gen/cairn/v1/trace.js";
import * as transaction from "./gen/cairn/v1/transaction.js";
import { descriptorSetBase64 } from "./gen/descriptor_set.js";

export { type DocumentPlan, decodeWithDocuments, encodeWithDocuments, type Generated } from "./document-fields.js";

/** The descriptors of Cairn's protos, as generated into the package. */
export const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(descriptorSetBase64, "base64")));

const GENERATED: Record<string, unknown> = { ...job, ...keyvalue, ...metric, ...resolution, ...session, ...trace, ...transaction };

/** The generated code (ts-proto) of a cairn.v1 message, if it has any. */
export function generatedOf(desc: DescMessage): (Generated & { decode(input: unknown): unknown }) | undefined {
  const generated = GENERATED[desc.name] as (Generated & { decode(input: unknown): unknown }) | undefined;
  return generated?.decode && desc.typeName === `cairn.v1.${desc.name}` ? generated : undefined;
}

/** The method of a path ("/cairn.v1.SessionService/GetSession"). */
export function methodOf(path: string) {
  const [, service, method] = path.split("/");
  const found = registry.getService(service!)?.methods.find((m) => m.name === method);
  if (!found) throw new Error(`no descriptor for ${path}`);
  return found;
}

/** Where the documents of `path`'s request or response are; undefined when it holds none the plain codec reaches. */
export function documentsOf(path: string, side: "input" | "output"): DocumentPlan | undefined {
  const desc = methodOf(path)[side];
  return generatedOf(desc) && documentPlan(desc, generatedOf);
}
