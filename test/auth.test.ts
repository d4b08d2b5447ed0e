// Authentication and authorization (API.md "Namespaces and security"):
// bearer tokens from CAIRN_AUTH_FILE, JWTs against a JWKS file, mTLS client
// certificates by subject; the role table for every method; TLS, and
// rotation of principals and certificates on reload (SIGHUP).
import * as c from "@cairn/client";
import { CairnClient } from "@cairn/client";
import { HealthCheckResponse_ServingStatus as Serving, HealthClient } from "@cairn/client/gen/grpc/health/v1/health";
import * as grpc from "@grpc/grpc-js";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { METHOD_ROLES } from "../src/auth/roles.js";
import { failure, type Harness, startHarness } from "./support/harness.js";
import { TestCa } from "./support/certs.js";

const sha256 = (token: string) => createHash("sha256").update(token).digest("hex");
const TOKENS = { reader: "reader-token-1", writer: "writer-token-1", admin: "admin-token-1", later: "later-token-1" };

const certs = new TestCa();
const server = certs.issue("server", "/CN=cairn-server", "server");
const ops = certs.issue("ops", "/O=acme/CN=ops", "client");
const stranger = certs.issue("stranger", "/CN=stranger", "client");
const authFile = join(certs.dir, "auth.yaml");
const jwksFile = join(certs.dir, "jwks.json");
let signingKey: CryptoKey;

function writeAuthFile(extra = ""): void {
  writeFileSync(
    authFile,
    `principals:
  - name: reader-svc
    token_sha256: ${sha256(TOKENS.reader)}
    namespaces: {team-red: reader}
    default_namespace: team-red
  - name: writer-svc
    token_sha256: ${sha256(TOKENS.writer)}
    namespaces: {team-red: writer, shared: reader}
    default_namespace: team-red
  - name: admin-svc
    token_sha256: ${sha256(TOKENS.admin)}
    namespaces: {"*": admin}
  - name: ops
    cert_subject: "CN=ops"
    namespaces: {team-red: admin}
    default_namespace: team-red
${extra}jwt:
  jwks_file: jwks.json
  issuer: https://idp.example
  audience: cairn
`,
  );
}

let h: Harness;
const clients: CairnClient[] = [];
const client = (options: c.CairnClientOptions) => {
  const made = new CairnClient(h.daemon.address, { tls: { ca: certs.ca.cert }, ...options });
  clients.push(made);
  return made;
};

beforeAll(async () => {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  signingKey = privateKey;
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256" }] }));
  writeAuthFile();
  h = await startHarness({ authFile, tls: { certFile: server.certFile, keyFile: server.keyFile, clientCaFile: undefined } });
});
afterAll(async () => {
  for (const made of clients) made.close();
  await h?.stop();
});

it("every method of Cairn's services has a role, and the table names no other method", () => {
  const services = [c.SessionServiceService, c.ResolutionServiceService, c.TraceEventServiceService, c.KeyValueServiceService, c.JobServiceService, c.MetricServiceService, c.TransactionServiceService];
  const methods = services.flatMap((s) => Object.values(s).map((m) => m.path.slice(1)));
  expect(methods.filter((m) => !(m in METHOD_ROLES))).toEqual([]);
  expect(Object.keys(METHOD_ROLES).filter((m) => !methods.includes(m))).toEqual([]);
});

describe("bearer tokens", () => {
  it("no credentials, or an unknown token, is UNAUTHENTICATED", async () => {
    expect(await failure(client({}).sessions.getSession({ sessionId: "x" }))).toMatchObject({ code: grpc.status.UNAUTHENTICATED, reason: "UNAUTHENTICATED" });
    expect(await failure(client({ token: "nope" }).sessions.getSession({ sessionId: "x" }))).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
  });

  it("a reader reads; writing is PERMISSION_DENIED naming the namespace and the role it needs", async () => {
    const writer = client({ token: TOKENS.writer });
    const created = await writer.sessions.createSession({ session: { agentId: "a" } });
    const reader = client({ token: TOKENS.reader });
    expect((await reader.sessions.getSession({ sessionId: created.sessionId })).sessionId).toBe(created.sessionId);
    const denied = await failure(reader.sessions.createSession({ session: { agentId: "a" } }));
    expect(denied).toMatchObject({ code: grpc.status.PERMISSION_DENIED, reason: "PERMISSION_DENIED", metadata: { namespace: "team-red", required_role: "writer" } });
  });

  it("a writer cannot do an admin's work; an admin can, in every namespace", async () => {
    const writer = client({ token: TOKENS.writer });
    expect(await failure(writer.jobs.pauseQueue({ queue: "q" }))).toMatchObject({ metadata: { required_role: "admin" } });
    expect(await failure(writer.keyValue.purgeExpired({}))).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    const admin = client({ token: TOKENS.admin, namespace: "anything-goes" });
    await admin.jobs.pauseQueue({ queue: "q" });
    await admin.keyValue.purgeExpired({});
  });

  it("a role holds only in its namespace: none elsewhere is PERMISSION_DENIED", async () => {
    const writer = client({ token: TOKENS.writer, namespace: "shared" });
    await writer.keyValue.list({});
    expect(await failure(writer.keyValue.put({ entry: { key: "k", value: { $case: "jsonValue", value: 1 } } }))).toMatchObject({
      metadata: { namespace: "shared", required_role: "writer" },
    });
    const elsewhere = client({ token: TOKENS.writer, namespace: "team-blue" });
    expect(await failure(elsewhere.keyValue.list({}))).toMatchObject({ metadata: { namespace: "team-blue", required_role: "reader" } });
  });

  it("an authorization header that is not one Bearer token is UNAUTHENTICATED; the scheme's case does not matter", async () => {
    for (const header of ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b"]) {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", header);
      expect(await failure(client({}).keyValue.list({}, { metadata }))).toMatchObject({ code: grpc.status.UNAUTHENTICATED, reason: "UNAUTHENTICATED" });
    }
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `bearer ${TOKENS.admin}`);
    await client({}).keyValue.list({}, { metadata });
  });

  it("a configured token that looks like a JWT still names its principal", async () => {
    writeAuthFile(`  - name: dotted
    token_sha256: ${sha256("a.b.c")}
    namespaces: {"*": reader}
`);
    h.daemon.reload();
    await client({ token: "a.b.c" }).keyValue.list({});
    writeAuthFile();
    h.daemon.reload();
  });

  it("a namespace header that is not a namespace is INVALID_ARGUMENT naming it", async () => {
    const bad = client({ token: TOKENS.admin, namespace: "Team Red!" });
    expect(await failure(bad.keyValue.list({}))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, fields: ["x-cairn-namespace"] });
  });

  it("streams are authorized too", async () => {
    const reader = client({ token: TOKENS.reader });
    const stream = reader.jobs.streamJobs({ queue: "q", workerId: "w", maxInFlight: 1 });
    const error = await new Promise<grpc.ServiceError>((resolve) => stream.on("error", resolve));
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
  });
});

describe("JWTs", () => {
  const sign = (claims: Record<string, unknown>, options: { exp?: string | number; aud?: string; key?: CryptoKey } = {}) => {
    let jwt = new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: "k1" }).setIssuer("https://idp.example").setSubject("jwt-user").setIssuedAt();
    jwt = jwt.setAudience(options.aud ?? "cairn");
    if (options.exp !== undefined) jwt = jwt.setExpirationTime(options.exp);
    return jwt.sign(options.key ?? signingKey);
  };
  const claims = { cairn_namespaces: { "team-red": "writer" }, cairn_default_namespace: "team-red" };

  it("a valid JWT names its principal and roles", async () => {
    const token = await sign(claims, { exp: "5m" });
    await client({ token }).keyValue.put({ entry: { key: "jwt", value: { $case: "jsonValue", value: 1 } } });
  });

  it("expired (past the 60 s skew), for another audience, without exp, or badly signed: UNAUTHENTICATED", async () => {
    const other = (await generateKeyPair("ES256")).privateKey;
    const tokens = [
      await sign(claims, { exp: Math.floor(Date.now() / 1000) - 120 }),
      await sign(claims, { exp: "5m", aud: "someone-else" }),
      await sign(claims),
      await sign(claims, { exp: "5m", key: other }),
    ];
    for (const token of tokens) {
      expect(await failure(client({ token }).keyValue.list({}))).toMatchObject({ code: grpc.status.UNAUTHENTICATED, reason: "UNAUTHENTICATED" });
    }
    // Within the skew it still counts.
    await client({ token: await sign(claims, { exp: Math.floor(Date.now() / 1000) - 30 }) }).keyValue.list({});
  });
});

describe("reload (SIGHUP)", () => {
  it("a new principal works after reload; a file that fails to parse keeps the previous principals", async () => {
    const later = client({ token: TOKENS.later });
    expect(await failure(later.keyValue.list({}))).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    writeAuthFile(`  - name: later
    token_sha256: ${sha256(TOKENS.later)}
    namespaces: {team-red: reader}
    default_namespace: team-red
`);
    h.daemon.reload();
    await later.keyValue.list({});
    writeFileSync(authFile, "principals: [ {name: broken");
    h.daemon.reload();
    await later.keyValue.list({});
    await client({ token: TOKENS.admin }).keyValue.list({});
    writeAuthFile();
  });

  it("new TLS certificates are served to new connections without dropping open ones", async () => {
    const open = client({ token: TOKENS.admin });
    await open.keyValue.list({});
    const fingerprint = () =>
      new Promise<string>((resolve, reject) => {
        const socket = tls.connect({ host: "127.0.0.1", port: Number(h.daemon.address.split(":").pop()), ca: certs.ca.cert, ALPNProtocols: ["h2"] }, () => {
          resolve(socket.getPeerCertificate().fingerprint256);
          socket.end();
        });
        socket.on("error", reject);
      });
    const before = await fingerprint();
    const next = certs.issue("server-2", "/CN=cairn-server-2", "server");
    writeFileSync(server.certFile, next.cert);
    writeFileSync(server.keyFile, next.key);
    h.daemon.reload();
    expect(await fingerprint()).not.toBe(before);
    await open.keyValue.list({});
  });
});

describe("mTLS", () => {
  let m: Harness;
  beforeAll(async () => {
    m = await startHarness({ authFile, tls: { certFile: server.certFile, keyFile: server.keyFile, clientCaFile: certs.ca.certFile } });
  });
  afterAll(async () => {
    await m?.stop();
  });
  const mtls = (pem: { cert: string; key: string } | undefined, options: c.CairnClientOptions = {}) => {
    const made = new CairnClient(m.daemon.address, { tls: { ca: certs.ca.cert, ...(pem ?? {}) }, ...options });
    clients.push(made);
    return made;
  };

  it("a client certificate names its principal by subject; a bearer token may still name another", async () => {
    await mtls(ops).jobs.pauseQueue({ queue: "q" });
    expect(await failure(mtls(ops, { token: TOKENS.reader }).jobs.pauseQueue({ queue: "q" }))).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
  });

  it("a trusted certificate whose subject names no principal, with no token, is UNAUTHENTICATED", async () => {
    expect(await failure(mtls(stranger).keyValue.list({}))).toMatchObject({ code: grpc.status.UNAUTHENTICATED, reason: "UNAUTHENTICATED" });
  });

  it("without a client certificate the handshake fails, health included", async () => {
    expect((await failure(mtls(undefined, { token: TOKENS.admin }).keyValue.list({}))).code).toBe(grpc.status.UNAVAILABLE);
    const health = new HealthClient(m.daemon.address, grpc.credentials.createSsl(Buffer.from(certs.ca.cert)));
    const error = await new Promise<grpc.ServiceError | null>((resolve) => health.check({ service: "" }, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (e) => resolve(e)));
    health.close();
    expect(error?.code).toBe(grpc.status.UNAVAILABLE);
    const withCert = new HealthClient(m.daemon.address, grpc.credentials.createSsl(Buffer.from(certs.ca.cert), Buffer.from(ops.key), Buffer.from(ops.cert)));
    const status = await new Promise<Serving | undefined>((resolve) => withCert.check({ service: "" }, (_e, r) => resolve(r?.status)));
    withCert.close();
    expect(status).toBe(Serving.SERVING);
  });
});
