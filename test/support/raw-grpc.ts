// A server-streaming gRPC call over Node's http2, with nothing between the
// test and HTTP/2 flow control. grpc-js's client keeps reading (and
// buffering) while its stream is paused, so it cannot play a client that
// truly stops reading; this can: while paused, it reads nothing and the
// server's writes back up.
import http2 from "node:http2";

export interface RawStream {
  /** Stop reading (the server sees flow control hold). */
  pause(): void;
  /** Read again; messages and the status arrive. */
  resume(): void;
  /** Message bodies received so far (without the 5-byte gRPC prefix). */
  messages: Buffer[];
  /** Resolves with the trailers (grpc-status, grpc-status-details-bin) or rejects on a reset. */
  status: Promise<http2.IncomingHttpHeaders>;
  close(): void;
}

export function rawServerStream(address: string, path: string, request: Uint8Array): RawStream {
  const session = http2.connect(`http://${address}`);
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
  });
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  Buffer.from(request).copy(frame, 5);
  stream.end(frame);
  const messages: Buffer[] = [];
  let pending = Buffer.alloc(0);
  stream.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const length = pending.readUInt32BE(1);
      messages.push(pending.subarray(5, 5 + length));
      pending = pending.subarray(5 + length);
    }
  });
  const status = new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
    stream.on("trailers", (trailers) => resolve(trailers));
    stream.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) resolve(headers);
    });
    stream.on("close", () => reject(new Error(`stream closed without a status (rst code ${stream.rstCode})`)));
    stream.on("error", reject);
  });
  status.catch(() => {});
  return {
    pause: () => stream.pause(),
    resume: () => stream.resume(),
    messages,
    status,
    close: () => {
      stream.close();
      session.close();
    },
  };
}
