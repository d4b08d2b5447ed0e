// Settles a call's caller from CAIRN_AUTH_FILE's principals: a bearer token
// (compared by SHA-256 in constant time), a JWT verified against the JWKS
// (issuer, audience, exp required, nbf honoured, 60 s of skew), or the TLS
// client certificate's subject; then the namespace and the role the method
// needs there. No token, JWT or certificate is ever logged or echoed.
import { createHash, timingSafeEqual } from "node:crypto";
import { errors as joseErrors, jwtVerify } from "jose";
import { permissionDenied, unauthenticated } from "../errors.js";
import { type CallCredentials, type Caller, type CallerSettler, DEFAULT_NAMESPACE, requestedNamespace } from "./caller.js";
import { AuthFileError, type AuthConfig, parseDefaultNamespace, parseNamespaces, type Principal } from "./file.js";
import { allows, METHOD_ROLES } from "./roles.js";
import { parseSubject, type Subject } from "./subject.js";

const CLOCK_SKEW_SECONDS = 60;

export class Authenticator implements CallerSettler {
  constructor(
    /** The current configuration (replaced on SIGHUP). */
    private readonly config: () => AuthConfig,
    /** The subject of the verified client certificate a peer presented, if any. */
    private readonly peerSubject: (peer: string) => Subject | undefined,
  ) {}

  settle(method: string, call: CallCredentials): Caller | Promise<Caller> {
    const principal = this.principalOf(call);
    return principal instanceof Promise ? principal.then((p) => this.authorize(method, call, p)) : this.authorize(method, call, principal);
  }

  private authorize(method: string, call: CallCredentials, principal: Principal): Caller {
    const namespace = requestedNamespace(call.metadata) ?? principal.defaultNamespace ?? DEFAULT_NAMESPACE;
    const required = METHOD_ROLES[method];
    // A method without a role is refused to everyone (and a test says which).
    if (!required || !allows(roleIn(principal, namespace), required)) {
      throw permissionDenied(namespace, required ?? "admin");
    }
    return { principal: principal.name, namespace };
  }

  private principalOf(call: CallCredentials): Principal | Promise<Principal> {
    const token = bearerToken(call);
    if (token !== undefined) {
      // A configured token wins even if it happens to look like a JWT.
      const known = this.fromToken(token);
      if (known) return known;
      if (token.split(".").length === 3 && this.config().jwt) return this.fromJwt(token);
      throw unauthenticated("unknown token");
    }
    const subject = this.peerSubject(call.peer);
    if (subject !== undefined) {
      const found = this.config().certSubjects.find((c) => subjectMatches(c.subject, subject));
      if (found) return found.principal;
      throw unauthenticated("the client certificate names no principal");
    }
    throw unauthenticated("no credentials: send authorization: Bearer <token> or a client certificate");
  }

  /** The principal of a configured token, if it is one. */
  private fromToken(token: string): Principal | undefined {
    const digest = createHash("sha256").update(token, "utf8").digest();
    let found: Principal | undefined;
    // Every entry is compared, so the time taken does not say which matched.
    for (const entry of this.config().tokens) if (timingSafeEqual(entry.sha256, digest)) found ??= entry.principal;
    return found;
  }

  private async fromJwt(token: string): Promise<Principal> {
    const jwt = this.config().jwt!;
    try {
      const { payload } = await jwtVerify(token, jwt.keys, {
        issuer: jwt.issuer,
        audience: jwt.audience,
        clockTolerance: CLOCK_SKEW_SECONDS,
        requiredClaims: ["exp", "sub"],
      });
      return {
        name: payload.sub!,
        namespaces: parseNamespaces(payload.cairn_namespaces ?? {}, "the JWT's cairn_namespaces"),
        defaultNamespace: parseDefaultNamespace(payload.cairn_default_namespace, "the JWT's cairn_default_namespace"),
      };
    } catch (error) {
      if (error instanceof AuthFileError) throw unauthenticated(`invalid JWT claims: ${error.message}`);
      if (error instanceof joseErrors.JOSEError) throw unauthenticated(`invalid JWT: ${error.code}`);
      throw error;
    }
  }
}

/** A principal's role in a namespace (own properties only: "constructor" is a namespace, not a key of Object). */
function roleIn(principal: Principal, namespace: string) {
  const roles = principal.namespaces;
  return Object.hasOwn(roles, namespace) ? roles[namespace] : Object.hasOwn(roles, "*") ? roles["*"] : undefined;
}

/** The bearer token of a call; any other authorization header is bad credentials. */
function bearerToken(call: CallCredentials): string | undefined {
  const values = call.metadata.get("authorization");
  if (values.length === 0) return undefined;
  // The scheme is case-insensitive (RFC 7235).
  const match = /^bearer +(\S+)$/i.exec(String(values[0]));
  if (values.length > 1 || !match) throw unauthenticated("authorization must be one header: Bearer <token>");
  return match[1]!;
}

/**
 * Whether a configured cert_subject names the certificate's subject,
 * attribute by attribute (never as text, so an escaped comma inside a value
 * cannot forge an attribute): the same attributes in the same order, or, for
 * a value of only `CN=…`, a certificate with exactly that one common name.
 */
export function subjectMatches(configured: string, actual: Subject): boolean {
  const wanted = parseSubject(configured);
  if (wanted.length === 1 && wanted[0]![0] === "CN") {
    const names = actual.filter(([type]) => type === "CN");
    return names.length === 1 && names[0]![1] === wanted[0]![1];
  }
  return wanted.length === actual.length && wanted.every(([type, value], i) => actual[i]![0] === type && actual[i]![1] === value);
}
