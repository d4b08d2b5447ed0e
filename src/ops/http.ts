// The operations endpoint (API.md "Operations endpoint"): plain HTTP on
// CAIRN_METRICS_LISTEN, apart from the gRPC port so that Prometheus and
// orchestrator probes need neither TLS client setup nor a token.
//   /metrics  Prometheus text format
//   /healthz  200 while the process is up (liveness)
//   /readyz   200 when the database is reachable and migrated, else 503
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../logger.js";

/** What /metrics reads: a daemon's own registry, or (several processes) the sum of its workers' (cluster.ts). */
export interface MetricsText {
  registry: { metrics(): Promise<string>; contentType: string };
}

export interface OpsServer {
  /** host:port actually bound (the setting may ask for port 0). */
  address: string;
  close(): Promise<void>;
}

export async function startOpsServer(listen: string, metrics: MetricsText, ready: () => boolean, log: Logger): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    const text = (status: number, body: string) => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (path === "/healthz") return text(200, "ok\n");
    if (path === "/readyz") return ready() ? text(200, "ready\n") : text(503, "database unreachable or not migrated\n");
    if (path === "/metrics") {
      metrics.registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": metrics.registry.contentType });
          res.end(req.method === "HEAD" ? undefined : body);
        },
        (error) => {
          log.warn({ err: error }, "metrics scrape failed");
          text(500, "metrics unavailable\n");
        },
      );
      return;
    }
    text(404, "not found: /metrics, /healthz and /readyz are served\n");
  });
  // Probes and scrapes are short; an idle keep-alive socket must not hold the stop.
  server.keepAliveTimeout = 5_000;
  const separator = listen.lastIndexOf(":");
  const host = listen.slice(0, separator).replace(/^\[(.*)\]$/, "$1");
  await new Promise<void>((resolve, reject) => {
    // A busy port stops the start, naming the setting: most often a second replica on the same host.
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(new Error(`CAIRN_METRICS_LISTEN ${listen}: ${error.code ?? error.message} (give each replica on a host its own, or set it empty to turn the endpoint off)`)),
    );
    server.listen(Number(listen.slice(separator + 1)), host, () => {
      server.removeAllListeners("error");
      server.on("error", (error) => log.error({ err: error }, "operations endpoint failed"));
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const address = `${listen.slice(0, separator)}:${port}`;
  log.info({ address }, "operations endpoint serving /metrics, /healthz, /readyz");
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
