// Settles a call's caller from CAIRN_AUTH_FILE's principals: a bearer token
// (compared by SHA-256 in constant time), a JWT verified against the JWKS
// (issuer, audience, exp required, nbf honoured, 60 s of skew), or the TLS
// client certificate's subject; then the namespace and the role the method
// needs there. No token, JWT or certificate is ever logged or echoed.
import { createHash, timingSafeEqual } from "node:crypto";
import { errors as joseErrors, jwtVerify } from "jose";
import { invalidField, permissionDenied, unauthenticated } from "../errors.js";
import { type CallCredentials, type Caller, type CallerSettler, DEFAULT_NAMESPACE, requestedNamespace } from "./caller.js";
import { AuthFileError, type AuthConfig, parseDefaultNamespace, parseNamespaces, type Principal } from "./file.js";
import { allows, METHOD_ROLES } from "./roles.js";

const CLOCK_SKEW_SECONDS = 60;

export class Authenticator implements CallerSettler {
  constructor(
    /** The current configuration (replaced on SIGHUP). */
    private readonly config: () => AuthConfig,
    /** The RFC 4514 subject of the verified client certificate a peer presented, if any. */
    private readonly peerSubject: (peer: string) => string | undefined,
  ) {}

  settle(method: string, call: CallCredentials): Caller | Promise<Caller> {
    const principal = this.principalOf(call);
    return principal instanceof Promise ? principal.then((p) => this.authorize(method, call, p)) : this.authorize(method, call, principal);
  }

  private authorize(method: string, call: CallCredentials, principal: Principal): Caller {
    const namespace = requestedNamespace(call.metadata) ?? principal.defaultNamespace ?? DEFAULT_NAMESPACE;
    const required = METHOD_ROLES[method];
    // A method without a role is refused to everyone (and a test says which).
    if (!required || !allows(principal.namespaces[namespace] ?? principal.namespaces["*"], required)) {
      throw permissionDenied(namespace, required ?? "admin");
    }
    return { principal: principal.name, namespace };
  }

  private principalOf(call: CallCredentials): Principal | Promise<Principal> {
    const token = bearerToken(call);
    if (token !== undefined) return token.split(".").length === 3 && this.config().jwt ? this.fromJwt(token) : this.fromToken(token);
    const subject = this.peerSubject(call.peer);
    if (subject !== undefined) {
      const found = this.config().certSubjects.find((c) => subjectMatches(c.subject, subject));
      if (found) return found.principal;
      throw unauthenticated("the client certificate names no principal");
    }
    throw unauthenticated("no credentials: send authorization: Bearer <token> or a client certificate");
  }

  private fromToken(token: string): Principal {
    const digest = createHash("sha256").update(token, "utf8").digest();
    let found: Principal | undefined;
    // Every entry is compared, so the time taken does not say which matched.
    for (const entry of this.config().tokens) if (timingSafeEqual(entry.sha256, digest)) found ??= entry.principal;
    if (!found) throw unauthenticated("unknown token");
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

function bearerToken(call: CallCredentials): string | undefined {
  const values = call.metadata.get("authorization");
  if (values.length === 0) return undefined;
  const match = /^Bearer ([^\s]+)$/.exec(String(values[0]));
  if (values.length > 1 || !match) throw invalidField("authorization", "must be one header: Bearer <token>");
  return match[1]!;
}

/**
 * Whether a configured cert_subject names the certificate's subject: equal
 * as RFC 4514 strings, or, for a value with only `CN=…`, on the common name.
 */
export function subjectMatches(configured: string, actual: string): boolean {
  const normalize = (s: string) => s.split(",").map((part) => part.trim()).join(",");
  if (normalize(configured) === normalize(actual)) return true;
  const onlyCn = /^CN=([^,]+)$/.exec(configured.trim());
  return onlyCn !== null && actual.split(",").some((part) => part.trim() === `CN=${onlyCn[1]!.trim()}`);
}
