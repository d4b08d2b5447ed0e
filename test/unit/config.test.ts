import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

it("has sensible defaults", () => {
  const config = loadConfig([], {});
  expect(config).toMatchObject({
    listen: "127.0.0.1:50051",
    databaseUrl: undefined,
    dataDir: resolve(".cairn/data"),
    dbPoolMax: 20,
    logLevel: "info",
    limits: { maxDocumentBytes: 1048576, maxKeyBytes: 512, maxBatchItems: 1000, maxMessageBytes: 8388608 },
  });
});

it("flags override environment variables", () => {
  const config = loadConfig(["--listen", "127.0.0.2:6000", "--db-pool-max", "3"], { CAIRN_LISTEN: "127.0.0.1:1", CAIRN_DB_POOL_MAX: "9", CAIRN_LOG_LEVEL: "warn" });
  expect(config).toMatchObject({ listen: "127.0.0.2:6000", dbPoolMax: 3, logLevel: "warn" });
});

it("names every bad setting at once", () => {
  try {
    loadConfig(["--log-level", "loud"], { CAIRN_MAX_BATCH_ITEMS: "0", DATABASE_URL: "http://x" });
    expect.unreachable();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toContain("--log-level");
    expect(message).toContain("CAIRN_MAX_BATCH_ITEMS");
    expect(message).toContain("DATABASE_URL");
  }
});

it("an empty DATABASE_URL means embedded", () => {
  expect(loadConfig([], { DATABASE_URL: "" }).databaseUrl).toBeUndefined();
});

it("refuses a non-loopback address without auth, or tokens over plaintext, unless CAIRN_INSECURE=true; the message names the fix", () => {
  expect(() => loadConfig([], { CAIRN_LISTEN: "0.0.0.0:50051" })).toThrow(/CAIRN_AUTH_FILE.*CAIRN_INSECURE=true/s);
  expect(() => loadConfig([], { CAIRN_LISTEN: "0.0.0.0:50051", CAIRN_AUTH_FILE: "/x/auth.yaml" })).toThrow(/CAIRN_TLS_CERT_FILE.*CAIRN_INSECURE=true/s);
  expect(loadConfig([], { CAIRN_LISTEN: "0.0.0.0:50051", CAIRN_INSECURE: "true" }).insecure).toBe(true);
  const secure = loadConfig([], {
    CAIRN_LISTEN: "[::]:50051",
    CAIRN_AUTH_FILE: "/x/auth.yaml",
    CAIRN_TLS_CERT_FILE: "/x/cert.pem",
    CAIRN_TLS_KEY_FILE: "/x/key.pem",
  });
  expect(secure.tls).toEqual({ certFile: "/x/cert.pem", keyFile: "/x/key.pem", clientCaFile: undefined });
  // Loopback needs neither.
  for (const listen of ["127.0.0.1:1", "[::1]:1", "localhost:1"]) expect(loadConfig([], { CAIRN_LISTEN: listen }).listen).toBe(listen);
  expect(() => loadConfig([], { CAIRN_TLS_CERT_FILE: "/x/cert.pem" })).toThrow(/CAIRN_TLS_KEY_FILE/);
});

it("CAIRN_PROCESSES: a count, or auto for one per core; never more processes than pool connections", () => {
  expect(loadConfig([], { CAIRN_PROCESSES: "3" }).processes).toBe(3);
  expect(loadConfig([], { CAIRN_PROCESSES: "auto", CAIRN_DB_POOL_MAX: "1000" }).processes).toBe(availableParallelism());
  expect(() => loadConfig([], { CAIRN_PROCESSES: "lots" })).toThrow('CAIRN_PROCESSES: expected 1..1024 or auto, got "lots"');
  expect(() => loadConfig([], { CAIRN_PROCESSES: "9", CAIRN_DB_POOL_MAX: "8" })).toThrow("CAIRN_PROCESSES (9) exceeds CAIRN_DB_POOL_MAX (8)");
});
