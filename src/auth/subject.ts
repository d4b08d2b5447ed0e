// X.509 subjects as attributes, not text: the transport reads them from
// client certificates, the authenticator compares them with cert_subject.
// A light module of its own, so the transport does not load the
// authenticator (and jose) when there is no auth file.

/** An X.509 subject as its attributes, most specific first (RFC 4514 order): [["CN", "ops"], ["O", "acme"]]. */
export type Subject = [type: string, value: string][];

/** Parses an RFC 4514 subject ("CN=ops,O=acme"), honouring escaped commas and other escapes. */
export function parseSubject(text: string): Subject {
  return text
    .split(/(?<!\\),/)
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const at = part.indexOf("=");
      return [part.slice(0, at).trim().toUpperCase(), unescapeValue(part.slice(at + 1).trim())];
    });
}

function unescapeValue(value: string): string {
  return value.replace(/\\([0-9A-Fa-f]{2}|.)/g, (_, escaped: string) =>
    escaped.length === 2 ? String.fromCharCode(parseInt(escaped, 16)) : escaped,
  );
}
