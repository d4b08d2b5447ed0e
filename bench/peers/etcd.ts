// etcd 3.4 as the key-value peer: one member on loopback, a scratch data
// directory and etcd's default durability (an fsync of its WAL per commit),
// reached through the `etcd3` client, which is built on @grpc/grpc-js.
import { Etcd3 } from "etcd3";
import { freePort } from "../../src/db/embedded.js";
import { findExecutable, skipMessage, spawnPeer, waitReady } from "./process.js";

export interface EtcdPeer {
  client: Etcd3;
  version: string;
  close(): Promise<void>;
}

/** Starts an etcd member; undefined (after saying how to install it) when etcd is not installed. */
export async function startEtcd(): Promise<EtcdPeer | undefined> {
  const executable = findExecutable("etcd");
  if (!executable) {
    console.error(skipMessage("etcd", "etcd-server"));
    return undefined;
  }
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const server = spawnPeer(executable, (dir) => [
    "--name=bench",
    `--data-dir=${dir}/data`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=bench=${peerUrl}`,
    "--logger=zap",
    "--log-level=error",
  ]);
  const hosts = `127.0.0.1:${clientPort}`;
  let version = "";
  try {
    // A client of its own for the probe: the failed attempts while etcd starts
    // would open the benchmark client's circuit breaker.
    await waitReady("etcd", async () => {
      const probe = new Etcd3({ hosts });
      try {
        version = (await probe.maintenance.status()).version;
      } finally {
        probe.close();
      }
    });
  } catch (error) {
    await server.stop();
    throw error;
  }
  const client = new Etcd3({ hosts });
  return {
    client,
    version,
    async close() {
      client.close();
      await server.stop();
    },
  };
}

/**
 * Compare-and-set as etcd users write it: a Txn that puts the value only if
 * the key's mod_revision is still the one last seen; resolves to the new one.
 */
export async function compareAndSet(client: Etcd3, key: string, modRevision: string, value: string): Promise<string> {
  const response = await client.if(key, "Mod", "==", modRevision).then(client.put(key).value(value)).commit();
  if (!response.succeeded) throw new Error(`${key}: mod_revision is no longer ${modRevision}`);
  return response.header.revision;
}
