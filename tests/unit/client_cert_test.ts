// Client certificates (mutual TLS) for PostgreSQL: the certificate and key DATABASE_URL names are
// checked before any connection (both given, readable, the key the certificate's and not
// encrypted, the certificate not expired), and the server's refusals are configuration errors
// with the fix, never "Cannot reach PostgreSQL".
import assert from "node:assert/strict";
import { ConfigError } from "../../common/config.ts";
import { checkClientCert } from "../../common/client_cert.ts";
import { checkDatabaseClientCert, DatabaseConfigError, databaseError } from "../../common/pg.ts";
import {
  makeClientCertificate,
  makeTestCertificates,
  toolsUnavailable,
} from "../_helpers/test_certs.ts";

const missing = await toolsUnavailable(["openssl", "version"]);
if (missing) console.log(`skipping the client certificate file checks: ${missing}`);

const URL_BASE = "postgres://u:pw-Secret-9@db.example:5432/t?sslmode=verify-full";

Deno.test({
  name: "client certificates: DATABASE_URL's sslcert and sslkey are checked before connecting",
  ignore: missing !== null,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await makeTestCertificates(dir);
      const a = await makeClientCertificate(dir, "a", { signer: "ca", cn: "u" });
      const b = await makeClientCertificate(dir, "b", { signer: "other-ca", cn: "u" });
      const enc = await makeClientCertificate(dir, "enc", {
        signer: "ca",
        cn: "u",
        keyPassword: "k-pw-1",
      });
      const url = (cert: string, key: string) => `${URL_BASE}&sslcert=${cert}&sslkey=${key}`;
      checkDatabaseClientCert(url(a.certFile, a.keyFile));
      checkDatabaseClientCert(URL_BASE); // nothing named: nothing to check
      checkDatabaseClientCert("not a url");
      const bad = (u: string, pattern: RegExp, now?: number) =>
        assert.throws(
          () => checkDatabaseClientCert(u, now === undefined ? {} : { now: () => now }),
          (e) =>
            e instanceof DatabaseConfigError && pattern.test(e.message) &&
            !e.message.includes("pw-Secret-9"),
        );
      bad(
        url(a.certFile, b.keyFile),
        /^sslkey=\S+b\.key in DATABASE_URL is not the private key of the certificate in sslcert=\S+a\.crt in DATABASE_URL/,
      );
      bad(
        url(enc.certFile, enc.keyFile),
        /^sslkey=\S+enc\.key in DATABASE_URL cannot be used: it is encrypted, and no password can be given for it here \(decrypt it: openssl pkey/,
      );
      bad(
        url(`${dir}/none.crt`, a.keyFile),
        /^sslcert=\S+none\.crt in DATABASE_URL cannot be read/,
      );
      bad(
        `${URL_BASE}&sslcert=${a.certFile}`,
        /^DATABASE_URL=postgres:\/\/u:\*\*\*@\S+ names sslcert without sslkey: a client certificate needs both$/,
      );
      bad(
        url(a.certFile, a.keyFile),
        /^sslcert=\S+a\.crt in DATABASE_URL expired on .+: expected a certificate valid now; renew it$/,
        Date.now() + 31 * 86_400_000,
      );
      // The shared check, as Kafka uses it: a password decrypts the key.
      const pem = {
        cert: await Deno.readTextFile(enc.certFile),
        key: await Deno.readTextFile(enc.keyFile),
      };
      const labels = { cert: "C=x", key: "K=y", password: "P" };
      const checked = checkClientCert(pem, { labels, password: "k-pw-1", nowMs: Date.now() });
      assert.match(checked.key, /^-----BEGIN PRIVATE KEY-----\n/);
      assert.throws(
        () => checkClientCert(pem, { labels, nowMs: Date.now() }),
        (e) =>
          e instanceof ConfigError &&
          /^K=y cannot be used: it is encrypted and P is unset/.test(e.message),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("client certificates: the server's refusals are configuration errors with the fix", () => {
  const url = `${URL_BASE}&sslrootcert=/ca.pem`;
  // SQLSTATE 28000 without a certificate, and for a CN that is not the user.
  const noCert = Object.assign(new Error("connection requires a valid client certificate"), {
    code: "28000",
  });
  const a = databaseError(noCert, url);
  assert.ok(a instanceof DatabaseConfigError && a instanceof ConfigError);
  assert.match(
    a.message,
    /refused the connection: connection requires a valid client certificate \(SQLSTATE 28000\)\. The server requires a client certificate: add sslcert=<its PEM file> and sslkey=<its key's PEM file> to DATABASE_URL$/,
  );
  const cn = Object.assign(new Error('certificate authentication failed for user "u"'), {
    code: "28000",
  });
  assert.match(databaseError(cn, url).message, /The client certificate's CN must be the user name/);
  // The server's TLS alert about the certificate it got (or did not get).
  const alert = Object.assign(new Error("received fatal alert: UnknownCA"), {
    code: "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
  });
  const withCert = databaseError(alert, `${url}&sslcert=/c.crt&sslkey=/c.key`);
  assert.ok(withCert instanceof DatabaseConfigError);
  assert.match(
    withCert.message,
    /refused this client's TLS certificate \(the server's alert: UnknownCA\): sslcert=\/c\.crt in DATABASE_URL is not signed by a CA the server trusts/,
  );
  assert.match(
    databaseError(alert, url).message,
    /\(the server's alert: UnknownCA\): the server requires a client certificate: add sslcert=/,
  );
  for (const e of [a, withCert]) assert.ok(!e.message.includes("pw-Secret-9"), "redacted");
  // An outage stays an outage.
  const down = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
  assert.equal(databaseError(down, url).name, "DatabaseUnavailableError");
});
