// The daemon's listener: Cairn accepts connections on a TCP (or TLS) server
// of its own and hands each socket to grpc-js (its connection injector).
// That gives what grpc-js alone cannot: a cap on connections per replica
// (past it Node closes a new socket at accept), certificates swapped on
// SIGHUP without dropping a connection (tls.Server.setSecureContext), and the
// subject of each verified client certificate, by peer address, for the
// authenticator. grpc-js then speaks plain HTTP/2 over the decrypted socket.
// Sockets are accepted with Nagle's algorithm off, as grpc-js does for its
// own: a response's HEADERS, DATA and trailers are separate small writes,
// and Nagle holding them for the peer's delayed ACK costs tens of ms a call.
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import { parseSubject, type Subject } from "./auth/subject.js";
import type { TlsFiles } from "./config.js";

export interface Listener {
  port: number;
  /** Stops accepting; open connections are ended by the gRPC server's shutdown. */
  stopAccepting(): void;
  /** Reads the TLS files again (new connections use them; open ones keep theirs); throws if they do not load. */
  reloadTls(): void;
  /** The subject of the verified client certificate of a peer ("host:port"), if it presented one. */
  peerSubject(peer: string): Subject | undefined;
}

function secureContext(files: TlsFiles): tls.SecureContextOptions {
  return {
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
    ca: files.clientCaFile ? readFileSync(files.clientCaFile) : undefined,
  };
}

/**
 * The certificate's subject as attributes, most specific first (RFC 4514
 * order). Node prints one attribute a line, in DER order, escaping special
 * characters within values; each line is split at its first "=".
 */
function peerCertificateSubject(socket: tls.TLSSocket): Subject | undefined {
  const raw = socket.getPeerCertificate(false)?.raw;
  if (!raw) return undefined;
  return new X509Certificate(raw).subject
    .split("\n")
    .filter(Boolean)
    .reverse()
    .map((line) => parseSubject(line)[0]!)
    .filter((attribute) => attribute !== undefined);
}

export async function listen(server: grpc.Server, address: string, maxConnections: number, files: TlsFiles | undefined): Promise<Listener> {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const subjects = new Map<string, Subject>();
  let tcp: net.Server;
  if (files) {
    const secure = tls.createServer({
      ...secureContext(files),
      noDelay: true,
      ALPNProtocols: ["h2"],
      // mTLS: every connection must present a certificate the CA signed, at the handshake.
      requestCert: files.clientCaFile !== undefined,
      rejectUnauthorized: files.clientCaFile !== undefined,
    });
    secure.on("secureConnection", (socket) => {
      const subject = socket.authorized ? peerCertificateSubject(socket) : undefined;
      const peer = `${socket.remoteAddress}:${socket.remotePort}`;
      if (subject) {
        subjects.set(peer, subject);
        socket.once("close", () => subjects.delete(peer));
      }
      injector.injectConnection(socket);
    });
    // A failed handshake (no or untrusted certificate) is the client's problem, not the daemon's.
    secure.on("tlsClientError", () => {});
    tcp = secure;
  } else {
    tcp = net.createServer({ noDelay: true }, (socket) => injector.injectConnection(socket));
  }
  tcp.maxConnections = maxConnections;
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen({ host, port: Number(address.slice(colon + 1)) }, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  return {
    port: (tcp.address() as net.AddressInfo).port,
    stopAccepting: () => void tcp.close(),
    reloadTls: () => {
      if (files) (tcp as tls.Server).setSecureContext(secureContext(files));
    },
    peerSubject: (peer) => subjects.get(peer),
  };
}
