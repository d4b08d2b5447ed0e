// cert_subject matching is attribute by attribute: an escaped comma inside a
// value, or a second common name, cannot make one certificate pass for another.
import { expect, it } from "vitest";
import { subjectMatches } from "../../src/auth/authenticator.js";
import { parseSubject } from "../../src/auth/subject.js";

it("parses RFC 4514 subjects, honouring escaped commas", () => {
  expect(parseSubject("CN=ops,O=acme")).toEqual([["CN", "ops"], ["O", "acme"]]);
  expect(parseSubject("CN=intern,O=acme\\, CN=ops")).toEqual([["CN", "intern"], ["O", "acme, CN=ops"]]);
});

it("a CN-only cert_subject matches a certificate with exactly that one common name", () => {
  expect(subjectMatches("CN=ops", parseSubject("CN=ops,O=acme"))).toBe(true);
  expect(subjectMatches("CN=ops", parseSubject("CN=intern,O=acme\\, CN=ops"))).toBe(false);
  expect(subjectMatches("CN=ops", parseSubject("CN=intern,OU=x,CN=ops"))).toBe(false);
});

it("a full cert_subject matches the same attributes in the same order", () => {
  expect(subjectMatches("CN=ops,O=acme", parseSubject("CN=ops,O=acme"))).toBe(true);
  expect(subjectMatches("CN=ops, O=acme", parseSubject("CN=ops,O=acme"))).toBe(true);
  expect(subjectMatches("CN=ops,O=acme", parseSubject("CN=ops,O=acme,C=US"))).toBe(false);
  expect(subjectMatches("CN=ops,O=acme", parseSubject("O=acme,CN=ops"))).toBe(false);
});
