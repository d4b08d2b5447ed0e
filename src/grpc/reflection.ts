// gRPC server reflection (grpc.reflection.v1 and v1alpha) over the real file
// descriptors: the FileDescriptorSet that `npm run generate` embeds in
// @cairn/client, imports included. Every file is served with its transitive
// dependencies, so reflection-only clients (grpcurl, grpcio) can resolve
// well-known types such as Struct and Timestamp. (@grpc/reflection 1.0.x
// drops the dependencies, which breaks exactly those clients.)
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { descriptorSetBase64 } from "@cairn/client";
import {
  ServerReflectionService as ReflectionV1,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "@cairn/client/gen/grpc/reflection/v1/reflection";
import { ServerReflectionService as ReflectionV1Alpha } from "@cairn/client/gen/grpc/reflection/v1alpha/reflection";

export class DescriptorIndex {
  private readonly files = new Map<string, FileDescriptorProto>();
  private readonly encoded = new Map<string, Uint8Array>();
  private readonly symbols = new Map<string, string>();
  private readonly messages = new Set<string>();

  constructor(descriptorSet: Uint8Array) {
    for (const file of fromBinary(FileDescriptorSetSchema, descriptorSet).file) {
      this.files.set(file.name, file);
      this.encoded.set(file.name, toBinary(FileDescriptorProtoSchema, file));
      const prefix = file.package ? `${file.package}.` : "";
      this.indexMessages(file.name, prefix, file.messageType);
      for (const e of file.enumType) this.symbols.set(prefix + e.name, file.name);
      for (const x of file.extension) this.symbols.set(prefix + x.name, file.name);
      for (const service of file.service) {
        this.symbols.set(prefix + service.name, file.name);
        for (const method of service.method) this.symbols.set(`${prefix}${service.name}.${method.name}`, file.name);
      }
    }
  }

  private indexMessages(fileName: string, prefix: string, messages: DescriptorProto[]): void {
    for (const message of messages) {
      const name = prefix + message.name;
      this.symbols.set(name, fileName);
      this.messages.add(name);
      for (const e of message.enumType) this.symbols.set(`${name}.${e.name}`, fileName);
      for (const x of message.extension) this.symbols.set(`${name}.${x.name}`, fileName);
      this.indexMessages(fileName, `${name}.`, message.nestedType);
    }
  }

  hasMessage(name: string): boolean {
    return this.messages.has(name);
  }

  fileOfSymbol(symbol: string): string | undefined {
    return this.symbols.get(symbol);
  }

  /** The named file first, then every file it depends on, transitively. */
  fileWithDependencies(name: string): Uint8Array[] | undefined {
    if (!this.files.has(name)) return undefined;
    const order: string[] = [];
    const visit = (fileName: string) => {
      if (order.includes(fileName)) return;
      order.push(fileName);
      for (const dependency of this.files.get(fileName)?.dependency ?? []) visit(dependency);
    };
    visit(name);
    return order.filter((f) => this.encoded.has(f)).map((f) => this.encoded.get(f)!);
  }
}

function answer(index: DescriptorIndex, services: string[], request: ServerReflectionRequest): ServerReflectionResponse["messageResponse"] {
  const error = (errorCode: number, errorMessage: string) =>
    ({ $case: "errorResponse", value: { errorCode, errorMessage } }) as const;
  const files = (fileName: string | undefined, what: string) => {
    const found = fileName ? index.fileWithDependencies(fileName) : undefined;
    if (!found) return error(grpc.status.NOT_FOUND, `${what} not found`);
    return { $case: "fileDescriptorResponse", value: { fileDescriptorProto: found.map((b) => Buffer.from(b)) } } as const;
  };
  const req = request.messageRequest;
  switch (req?.$case) {
    case "listServices":
      return { $case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } };
    case "fileByFilename":
      return files(req.value, `file ${req.value}`);
    case "fileContainingSymbol":
      return files(index.fileOfSymbol(req.value), `symbol ${req.value}`);
    case "fileContainingExtension":
      // Cairn's protos declare no extensions.
      return error(grpc.status.NOT_FOUND, `extension ${req.value.extensionNumber} of ${req.value.containingType} not found`);
    case "allExtensionNumbersOfType":
      if (!index.hasMessage(req.value)) return error(grpc.status.NOT_FOUND, `type ${req.value} not found`);
      return { $case: "allExtensionNumbersResponse", value: { baseTypeName: req.value, extensionNumber: [] } };
    default:
      return error(grpc.status.INVALID_ARGUMENT, "empty reflection request");
  }
}

function handler(index: DescriptorIndex, services: () => string[]) {
  return (call: grpc.ServerDuplexStream<ServerReflectionRequest, ServerReflectionResponse>) => {
    call.on("data", (request: ServerReflectionRequest) => {
      call.write({
        validHost: request.host,
        originalRequest: request,
        messageResponse: answer(index, services(), request),
      });
    });
    call.on("end", () => call.end());
    call.on("error", () => {});
  };
}

/** Adds reflection v1 and v1alpha; `services` lists what the server serves, read at call time. */
export function addReflection(server: grpc.Server, services: () => string[]): void {
  const index = new DescriptorIndex(Buffer.from(descriptorSetBase64, "base64"));
  server.addService(ReflectionV1, { serverReflectionInfo: handler(index, services) });
  server.addService(ReflectionV1Alpha, { serverReflectionInfo: handler(index, services) });
}
