// Certificates made in the test run with Debian's openssl: a CA, server
// certificates for 127.0.0.1, and client certificates by subject.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pem {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

export class TestCa {
  readonly dir = mkdtempSync(join(tmpdir(), "cairn-certs-"));
  readonly ca: Pem;
  private serial = 1;

  constructor(name = "Cairn Test CA") {
    const keyFile = join(this.dir, "ca.key");
    const certFile = join(this.dir, "ca.crt");
    openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", `/CN=${name}`]);
    this.ca = pem(certFile, keyFile);
  }

  /** A certificate for `subject` ("/CN=ops/O=acme"), server (with SANs) or client, signed by this CA. */
  issue(name: string, subject: string, kind: "server" | "client"): Pem {
    const keyFile = join(this.dir, `${name}.key`);
    const csrFile = join(this.dir, `${name}.csr`);
    const certFile = join(this.dir, `${name}.crt`);
    const extFile = join(this.dir, `${name}.ext`);
    writeFileSync(
      extFile,
      kind === "server"
        ? "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        : "extendedKeyUsage=clientAuth\n",
    );
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyFile, "-out", csrFile, "-subj", subject]);
    openssl([
      "x509", "-req", "-in", csrFile, "-CA", this.ca.certFile, "-CAkey", this.ca.keyFile, "-set_serial", String(this.serial++),
      "-out", certFile, "-days", "2", "-extfile", extFile,
    ]);
    return pem(certFile, keyFile);
  }
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: "pipe" });
}

function pem(certFile: string, keyFile: string): Pem {
  return { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8"), certFile, keyFile };
}
