// CAIRN_AUTH_FILE: the principals a daemon knows (YAML; JSON is YAML too),
// read at start and again on SIGHUP. Tokens are stored as their SHA-256, never
// themselves. A file that does not parse or validate throws with a message
// naming the entry and what is wrong, and the caller keeps what it had.
//
//   principals:
//     - name: planner-svc
//       token_sha256: 9f86d0…                       # SHA-256 hex of the bearer token
//       namespaces: {team-red: writer, shared: reader}
//       default_namespace: team-red
//     - name: ops
//       cert_subject: "CN=ops"                      # an mTLS client certificate's subject
//       namespaces: {"*": admin}
//   jwt:                                            # optional: JWTs from an identity provider
//     jwks_file: /etc/cairn/jwks.json
//     issuer: https://idp.example
//     audience: cairn
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { createLocalJWKSet, type JSONWebKeySet } from "jose";
import { parse } from "yaml";
import { isRole, type Role } from "./roles.js";

export interface Principal {
  name: string;
  /** Role per namespace; "*" is every namespace. */
  namespaces: Record<string, Role>;
  defaultNamespace: string | undefined;
}

export interface JwtVerifier {
  keys: ReturnType<typeof createLocalJWKSet>;
  issuer: string;
  audience: string;
}

export interface AuthConfig {
  /** SHA-256 of each token, with its principal. */
  tokens: { sha256: Buffer; principal: Principal }[];
  certSubjects: { subject: string; principal: Principal }[];
  jwt: JwtVerifier | undefined;
}

export class AuthFileError extends Error {}

const NAMESPACE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

type Raw = Record<string, unknown>;

function isObject(value: unknown): value is Raw {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The role map of a principal (or a JWT's cairn_namespaces claim), validated. */
export function parseNamespaces(value: unknown, where: string): Record<string, Role> {
  if (!isObject(value)) throw new AuthFileError(`${where}: namespaces must be a map of namespace to role`);
  const roles: Record<string, Role> = {};
  for (const [namespace, role] of Object.entries(value)) {
    if (namespace !== "*" && !NAMESPACE.test(namespace)) throw new AuthFileError(`${where}: ${JSON.stringify(namespace)} is not a namespace`);
    if (!isRole(role)) throw new AuthFileError(`${where}: the role of ${namespace} must be reader, writer or admin`);
    roles[namespace] = role;
  }
  return roles;
}

export function parseDefaultNamespace(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || !NAMESPACE.test(value)) throw new AuthFileError(`${where}: default_namespace must be a namespace`);
  return value;
}

function parsePrincipal(raw: unknown, index: number, config: AuthConfig, names: Set<string>): void {
  const where = `principals[${index}]`;
  if (!isObject(raw)) throw new AuthFileError(`${where}: must be a map`);
  if (typeof raw.name !== "string" || raw.name === "") throw new AuthFileError(`${where}: name is required`);
  if (names.has(raw.name)) throw new AuthFileError(`${where}: the name ${JSON.stringify(raw.name)} is used twice`);
  names.add(raw.name);
  const principal: Principal = {
    name: raw.name,
    namespaces: parseNamespaces(raw.namespaces, where),
    defaultNamespace: parseDefaultNamespace(raw.default_namespace, where),
  };
  if (raw.token_sha256 === undefined && raw.cert_subject === undefined) {
    throw new AuthFileError(`${where}: give token_sha256 or cert_subject (or both)`);
  }
  if (raw.token_sha256 !== undefined) {
    if (typeof raw.token_sha256 !== "string" || !SHA256_HEX.test(raw.token_sha256)) {
      throw new AuthFileError(`${where}: token_sha256 must be 64 lowercase hex digits (sha256sum of the token)`);
    }
    config.tokens.push({ sha256: Buffer.from(raw.token_sha256, "hex"), principal });
  }
  if (raw.cert_subject !== undefined) {
    if (typeof raw.cert_subject !== "string" || !/^[A-Za-z]+=/.test(raw.cert_subject)) {
      throw new AuthFileError(`${where}: cert_subject must be an RFC 4514 subject such as "CN=ops,O=acme"`);
    }
    config.certSubjects.push({ subject: raw.cert_subject, principal });
  }
}

function parseJwt(raw: unknown, baseDir: string): JwtVerifier | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) throw new AuthFileError("jwt: must be a map");
  for (const field of ["jwks_file", "issuer", "audience"]) {
    if (typeof raw[field] !== "string" || raw[field] === "") throw new AuthFileError(`jwt: ${field} is required`);
  }
  const jwksPath = resolve(baseDir, raw.jwks_file as string);
  let jwks: JSONWebKeySet;
  try {
    jwks = JSON.parse(readFileSync(jwksPath, "utf8")) as JSONWebKeySet;
    if (!Array.isArray(jwks?.keys)) throw new Error("no keys array");
  } catch (error) {
    throw new AuthFileError(`jwt: cannot read the JWKS file ${jwksPath}: ${(error as Error).message}`);
  }
  return { keys: createLocalJWKSet(jwks), issuer: raw.issuer as string, audience: raw.audience as string };
}

/** Reads and validates the auth file (and the JWKS file it names). */
export function loadAuthFile(path: string): AuthConfig {
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new AuthFileError(`cannot read ${path}: ${(error as Error).message}`);
  }
  if (!isObject(raw) || !Array.isArray(raw.principals)) throw new AuthFileError(`${path}: expected a map with a principals list`);
  const config: AuthConfig = { tokens: [], certSubjects: [], jwt: undefined };
  const names = new Set<string>();
  raw.principals.forEach((p, i) => parsePrincipal(p, i, config, names));
  config.jwt = parseJwt(raw.jwt, dirname(path));
  return config;
}
