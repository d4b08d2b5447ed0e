// NATS JetStream 2.9 as the event-log peer: one nats-server with JetStream
// on loopback, file storage in a scratch directory, reached through the
// official `nats` client; one stream holds every `traces.<trace id>` subject.
import { connect, type JetStreamClient, type NatsConnection, StorageType } from "nats";
import { freePort } from "../../src/db/embedded.js";
import { findExecutable, skipMessage, spawnPeer, waitReady } from "./process.js";

export const TRACE_STREAM = "TRACES";
export const traceSubject = (traceId: string) => `traces.${traceId}`;

export interface JetStreamPeer {
  connection: NatsConnection;
  js: JetStreamClient;
  version: string;
  close(): Promise<void>;
}

/** Starts nats-server -js with the trace stream; undefined (after saying how to install it) when it is not installed. */
export async function startJetStream(): Promise<JetStreamPeer | undefined> {
  const executable = findExecutable("nats-server");
  if (!executable) {
    console.error(skipMessage("NATS JetStream", "nats-server"));
    return undefined;
  }
  const port = await freePort();
  const server = spawnPeer(executable, (dir) => ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir]);
  try {
    let connection: NatsConnection | undefined;
    await waitReady("nats-server", async () => {
      connection = await connect({ servers: `127.0.0.1:${port}`, timeout: 1000 });
    });
    const jsm = await connection!.jetstreamManager();
    await jsm.streams.add({ name: TRACE_STREAM, subjects: [traceSubject(">")], storage: StorageType.File });
    return {
      connection: connection!,
      js: connection!.jetstream(),
      version: connection!.info?.version ?? "",
      async close() {
        await connection!.close();
        await server.stop();
      },
    };
  } catch (error) {
    await server.stop();
    throw error;
  }
}
