// Kafka's TLS and SASL settings: parsing (every protocol and mechanism, every refusal), the
// kafkajs options they become, the CA file's and the client certificate's checks, the permissions
// they add, and the errors that mean "refused settings" (never an outage).
import assert from "node:assert/strict";
import { ConfigError } from "../../common/config.ts";
import { kafkaError } from "../../common/kafka.ts";
import {
  KAFKA_SASL_MECHANISMS,
  KAFKA_SECURITY_ENV,
  KAFKA_SECURITY_PROTOCOLS,
  kafkajsSecurity,
  KafkaSecurityError,
  kafkaSecurityError,
  parseKafkaSecurity,
  saslFailure,
} from "../../common/kafka_security.ts";
import { tlsClientCertRefusal, tlsTrustCode } from "../../common/tls_errors.ts";
import {
  makeClientCertificate,
  makeTestCertificates,
  toolsUnavailable,
} from "../_helpers/test_certs.ts";
import { redact } from "../../common/log.ts";
import { commandAccess } from "../../common/permissions.ts";

type Env = Record<string, string>;
const parse = (env: Env) => parseKafkaSecurity((n) => env[n]);
const refused = (env: Env, pattern: RegExp) =>
  assert.throws(() => parse(env), (e) => e instanceof ConfigError && pattern.test(e.message));

const PW = "s3cret-Kafka-pw";

Deno.test("kafka security: the default is PLAINTEXT, and every protocol and mechanism parses", () => {
  assert.deepEqual(parse({}), { protocol: "PLAINTEXT" });
  for (const protocol of KAFKA_SECURITY_PROTOCOLS) {
    for (const mechanism of KAFKA_SASL_MECHANISMS) {
      const sasl = protocol.startsWith("SASL_");
      const env: Env = { KAFKA_SECURITY_PROTOCOL: protocol.toLowerCase() };
      if (sasl) {
        Object.assign(env, {
          KAFKA_SASL_MECHANISM: mechanism.toLowerCase(),
          KAFKA_SASL_USERNAME: "alice",
          KAFKA_SASL_PASSWORD: PW,
        });
      }
      const s = parse(env);
      assert.equal(s.protocol, protocol);
      if (sasl) assert.deepEqual(s.sasl, { mechanism, username: "alice", password: PW });
      else assert.equal(s.sasl, undefined);
      const k = kafkajsSecurity(s);
      assert.equal(k.ssl, protocol.endsWith("SSL") ? true : undefined, protocol);
      assert.equal(k.sasl?.mechanism, sasl ? mechanism.toLowerCase() : undefined);
    }
  }
  // A parsed password is a secret: logs show it redacted.
  assert.equal(redact(`password ${PW} here`).includes(PW), false);
});

Deno.test("kafka security: bad or half-given settings are refused, naming the variable", () => {
  refused(
    { KAFKA_SECURITY_PROTOCOL: "TLS" },
    /^KAFKA_SECURITY_PROTOCOL "TLS" is not a security protocol: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL$/,
  );
  refused(
    { KAFKA_SECURITY_PROTOCOL: "SASL_SSL" },
    /needs KAFKA_SASL_MECHANISM: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512/,
  );
  refused(
    { KAFKA_SECURITY_PROTOCOL: "SASL_SSL", KAFKA_SASL_MECHANISM: "GSSAPI" },
    /^KAFKA_SASL_MECHANISM "GSSAPI" is not supported/,
  );
  refused(
    { KAFKA_SECURITY_PROTOCOL: "SASL_SSL", KAFKA_SASL_MECHANISM: "PLAIN" },
    /KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are unset$/,
  );
  refused(
    {
      KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
      KAFKA_SASL_MECHANISM: "PLAIN",
      KAFKA_SASL_USERNAME: "a",
    },
    /: KAFKA_SASL_PASSWORD is unset$/,
  );
  // Credentials or a CA file that the protocol would ignore: refused, not silently unused.
  refused(
    { KAFKA_SASL_USERNAME: "alice", KAFKA_SASL_PASSWORD: PW },
    /^KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT sends no credentials/,
  );
  refused(
    { KAFKA_SECURITY_PROTOCOL: "SSL", KAFKA_SASL_MECHANISM: "PLAIN" },
    /set KAFKA_SECURITY_PROTOCOL=SASL_SSL, or unset them$/,
  );
  refused(
    { KAFKA_SSL_CA_FILE: "/ca.pem" },
    /^KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS/,
  );
  refused(
    {
      KAFKA_SECURITY_PROTOCOL: "SASL_PLAINTEXT",
      KAFKA_SASL_MECHANISM: "PLAIN",
      KAFKA_SASL_USERNAME: "a",
      KAFKA_SASL_PASSWORD: PW,
      KAFKA_SSL_CA_FILE: "/ca.pem",
    },
    /KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS/,
  );
});

Deno.test("kafka security: the CA file is read, checked, and added to the commands' read list", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    await Deno.writeTextFile(`${dir}/ca.pem`, pem);
    await Deno.writeTextFile(`${dir}/not.pem`, "hello\n");
    const env: Env = { KAFKA_SECURITY_PROTOCOL: "SSL", KAFKA_SSL_CA_FILE: `${dir}/ca.pem` };
    assert.deepEqual(kafkajsSecurity(parse(env)).ssl, { ca: [pem] });
    assert.throws(
      () => kafkajsSecurity(parse({ ...env, KAFKA_SSL_CA_FILE: `${dir}/not.pem` })),
      /^ConfigError: KAFKA_SSL_CA_FILE=.*not\.pem holds no PEM certificate/,
    );
    assert.throws(
      () => kafkajsSecurity(parse({ ...env, KAFKA_SSL_CA_FILE: `${dir}/missing.pem` })),
      /^ConfigError: KAFKA_SSL_CA_FILE=.*missing\.pem cannot be read: .*expected a PEM file/,
    );
    // Every Kafka client command may read the CA file, and nothing else is added.
    for (const command of ["ingest", "aggregate", "sensor", "status", "offsets", "dashboard"]) {
      const needs = commandAccess(command, [], { env: (n) => env[n] });
      const ca = needs.filter((n) => n.what === "Kafka CA file");
      assert.deepEqual(ca.map((n) => [n.kind, n.target]), [["read", `${dir}/ca.pem`]], command);
      const without = commandAccess(command, [], { env: () => undefined });
      assert.equal(needs.length, without.length + 1, command);
    }
    // A bad setting fails the command's access derivation (the launcher's exit 2).
    assert.throws(
      () => commandAccess("ingest", [], { env: (n) => ({ KAFKA_SECURITY_PROTOCOL: "X" })[n] }),
      ConfigError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kafka security: every Kafka command's permission set may read the settings", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  ) as { permissions: Record<string, { env?: string[] }> };
  for (
    const set of [
      "launch",
      "services",
      "ingest",
      "aggregate",
      "sensor",
      "offsets",
      "status",
      "start",
      "demo",
      "dashboard",
      "compile",
    ]
  ) {
    for (const name of KAFKA_SECURITY_ENV) {
      assert.ok(config.permissions[set].env?.includes(name), `${set} may read ${name}`);
    }
  }
  for (const set of ["migrate", "simulate"]) {
    assert.ok(!config.permissions[set].env?.includes("KAFKA_SASL_PASSWORD"), `${set} needs none`);
  }
});

Deno.test("kafka security: refused credentials and untrusted certificates are configuration errors", () => {
  const security = parseKafkaSecurity((n) =>
    ({
      KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
      KAFKA_SASL_MECHANISM: "SCRAM-SHA-256",
      KAFKA_SASL_USERNAME: "bob",
      KAFKA_SASL_PASSWORD: PW,
      KAFKA_SSL_CA_FILE: "/etc/ca.pem",
    })[n]
  );
  // As kafkajs throws them: the SASL error directly, the TLS error wrapped after its retries.
  const sasl = Object.assign(new Error("SASL SCRAM SHA256 authentication failed: bad"), {
    name: "KafkaJSSASLAuthenticationError",
  });
  const tls = Object.assign(new Error("Connection error: unable to verify the first certificate"), {
    name: "KafkaJSNumberOfRetriesExceeded",
    cause: Object.assign(new Error("Connection error: unable to verify the first certificate"), {
      name: "KafkaJSConnectionError",
      code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    }),
  });
  assert.equal(saslFailure(sasl), sasl);
  assert.equal(saslFailure(tls), undefined);
  assert.equal(tlsTrustCode(tls), "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
  assert.equal(tlsTrustCode(new Error("Closed connection")), undefined);
  const a = kafkaSecurityError(sasl, ["k:9093"], security);
  assert.ok(a instanceof KafkaSecurityError && a instanceof ConfigError);
  assert.match(
    a.message,
    /^Kafka at KAFKA_BROKERS=k:9093 refused the SASL credentials of user "bob" \(KAFKA_SASL_MECHANISM=SCRAM-SHA-256\): SASL SCRAM SHA256 authentication failed: bad\. Check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM$/,
  );
  const b = kafkaSecurityError(tls, ["k:9093"], security);
  assert.match(
    b?.message ?? "",
    /presented a TLS certificate this process does not trust \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): KAFKA_SSL_CA_FILE=\/etc\/ca\.pem does not hold the CA that signed it$/,
  );
  assert.equal(kafkaSecurityError(new Error("Closed connection"), ["k:1"], security), undefined);
  // kafkaError (every command's start) passes them on as configuration errors (exit 2); an
  // outage stays an outage.
  assert.ok(kafkaError(sasl, ["k:9093"]) instanceof ConfigError);
  assert.equal(kafkaError(new Error("Closed connection"), ["k:1"]).name, "KafkaUnavailableError");
});

Deno.test("kafka security: a client certificate needs TLS and both files; its key password is a secret", () => {
  const tls: Env = { KAFKA_SECURITY_PROTOCOL: "SSL" };
  const files = { KAFKA_SSL_CERT_FILE: "/c.crt", KAFKA_SSL_KEY_FILE: "/c.key" };
  assert.deepEqual(parse({ ...tls, ...files }).clientCert, {
    certFile: "/c.crt",
    keyFile: "/c.key",
  });
  const sasl = {
    KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
    KAFKA_SASL_MECHANISM: "PLAIN",
    KAFKA_SASL_USERNAME: "a",
    KAFKA_SASL_PASSWORD: PW,
  };
  const keyPw = "Key-pw-unit-77";
  assert.deepEqual(parse({ ...sasl, ...files, KAFKA_SSL_KEY_PASSWORD: keyPw }).clientCert, {
    certFile: "/c.crt",
    keyFile: "/c.key",
    keyPassword: keyPw,
  });
  assert.equal(redact(`key ${keyPw}`).includes(keyPw), false, "the key password is redacted");
  refused(
    files,
    /^KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE are set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS: set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, or unset them$/,
  );
  refused(
    { ...sasl, KAFKA_SECURITY_PROTOCOL: "SASL_PLAINTEXT", ...files },
    /KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS/,
  );
  refused(
    { ...tls, KAFKA_SSL_CERT_FILE: "/c.crt" },
    /^A client certificate needs both KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE: KAFKA_SSL_KEY_FILE is unset$/,
  );
  refused(
    { ...tls, KAFKA_SSL_KEY_FILE: "/c.key", KAFKA_SSL_KEY_PASSWORD: keyPw },
    /: KAFKA_SSL_CERT_FILE is unset$/,
  );
  refused({ KAFKA_SSL_KEY_PASSWORD: keyPw }, /^KAFKA_SSL_KEY_PASSWORD is set but .* or unset it$/);
  // Both files join every Kafka command's read list.
  const env: Env = { ...tls, ...files };
  for (const command of ["ingest", "aggregate", "sensor", "status", "offsets", "dashboard"]) {
    const reads = commandAccess(command, [], { env: (n) => env[n] })
      .filter((n) => n.kind === "read" && n.what.startsWith("Kafka client"))
      .map((n) => [n.target, n.setting]);
    assert.deepEqual(reads, [
      ["/c.crt", "KAFKA_SSL_CERT_FILE=/c.crt"],
      ["/c.key", "KAFKA_SSL_KEY_FILE=/c.key"],
    ], command);
  }
});

const opensslMissing = await toolsUnavailable(["openssl", "version"]);
if (opensslMissing) console.log(`skipping the client certificate file checks: ${opensslMissing}`);

Deno.test({
  name:
    "kafka security: the client certificate and key are read, decrypted and checked against each other",
  ignore: opensslMissing !== null,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await makeTestCertificates(dir);
      const pw = "Unit-key-pw-3";
      const enc = await makeClientCertificate(dir, "enc", {
        signer: "ca",
        cn: "x",
        keyPassword: pw,
      });
      const plain = await makeClientCertificate(dir, "plain", { signer: "other-ca", cn: "y" });
      const env = (extra: Env): Env => ({
        KAFKA_SECURITY_PROTOCOL: "SSL",
        KAFKA_SSL_CERT_FILE: enc.certFile,
        KAFKA_SSL_KEY_FILE: enc.keyFile,
        ...extra,
      });
      const use = (e: Env, now?: number) =>
        kafkajsSecurity(parse(e), now === undefined ? {} : { now: () => now });
      // Decrypted for TLS (handed over as plain PKCS#8), the certificate as written.
      const ok = use(env({ KAFKA_SSL_KEY_PASSWORD: pw })).ssl;
      assert.ok(ok !== undefined && ok !== true);
      assert.equal(ok.cert, await Deno.readTextFile(enc.certFile));
      assert.match(ok.key ?? "", /^-----BEGIN PRIVATE KEY-----\n/);
      assert.equal(ok.ca, undefined, "the system's CAs without KAFKA_SSL_CA_FILE");
      const bad = (e: Env, pattern: RegExp, now?: number) =>
        assert.throws(
          () => use(e, now),
          (x) => x instanceof ConfigError && pattern.test(x.message),
        );
      bad(
        env({}),
        /^KAFKA_SSL_KEY_FILE=\S+enc\.key cannot be used: it is encrypted and KAFKA_SSL_KEY_PASSWORD is unset: expected the PEM private key/,
      );
      bad(
        env({ KAFKA_SSL_KEY_PASSWORD: "nope" }),
        /enc\.key cannot be used: KAFKA_SSL_KEY_PASSWORD does not decrypt it/,
      );
      bad(
        env({ KAFKA_SSL_KEY_FILE: plain.keyFile }),
        /^KAFKA_SSL_KEY_FILE=\S+plain\.key is not the private key of the certificate in KAFKA_SSL_CERT_FILE=\S+enc\.crt/,
      );
      bad(
        env({ KAFKA_SSL_CERT_FILE: `${dir}/none.crt` }),
        /^KAFKA_SSL_CERT_FILE=\S+none\.crt cannot be read: /,
      );
      bad(
        env({ KAFKA_SSL_CERT_FILE: plain.keyFile, KAFKA_SSL_KEY_PASSWORD: pw }),
        /^KAFKA_SSL_CERT_FILE=\S+plain\.key holds no readable certificate/,
      );
      bad(
        env({ KAFKA_SSL_KEY_FILE: enc.certFile }),
        /enc\.crt cannot be used: it holds no readable private key/,
      );
      // The certificates are made for 30 days: 31 days on, the certificate has expired.
      bad(
        env({ KAFKA_SSL_KEY_PASSWORD: pw }),
        /^KAFKA_SSL_CERT_FILE=\S+enc\.crt expired on .+: expected a certificate valid now; renew it$/,
        Date.now() + 31 * 86_400_000,
      );
      // With a CA file, both.
      const both = use(env({ KAFKA_SSL_KEY_PASSWORD: pw, KAFKA_SSL_CA_FILE: `${dir}/ca.pem` })).ssl;
      assert.ok(both !== undefined && both !== true && both.ca?.length === 1 && both.key);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("kafka security: a broker's alert about the client certificate is a configuration error", () => {
  // As Deno's TLS reports them (code and message), and as kafkajs wraps them after its retries.
  const alert = (code: string, name: string) =>
    Object.assign(new Error(`Connection error: received fatal alert: ${name}`), {
      name: "KafkaJSNumberOfRetriesExceeded",
      cause: Object.assign(new Error(`received fatal alert: ${name}`), { code }),
    });
  const cases: [string, string][] = [
    ["ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED", "CertificateRequired"],
    ["ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE", "BadCertificate"],
    ["ERR_SSL_TLSV1_ALERT_UNKNOWN_CA", "UnknownCA"],
    ["ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN", "CertificateUnknown"],
    ["ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED", "CertificateExpired"],
  ];
  for (const [code, name] of cases) {
    assert.equal(tlsClientCertRefusal(alert(code, name)), name, code);
    // By the message alone (kafkajs' own log lines), and by OpenSSL's wording.
    assert.equal(tlsClientCertRefusal({ message: `received fatal alert: ${name}` }), name);
  }
  assert.equal(
    tlsClientCertRefusal({ message: "ssl/tls alert bad certificate" }),
    "BadCertificate",
  );
  for (const other of ["received fatal alert: HandshakeFailure", "Connection error: ECONNRESET"]) {
    assert.equal(tlsClientCertRefusal(new Error(other)), undefined, other);
  }
  const sec = (extra: Env) => parse({ KAFKA_SECURITY_PROTOCOL: "SSL", ...extra });
  const none = kafkaSecurityError(alert(...cases[1]), ["k:9093"], sec({}));
  assert.ok(none instanceof KafkaSecurityError && none instanceof ConfigError);
  assert.equal(
    none.message,
    "Kafka at KAFKA_BROKERS=k:9093 refused this client's TLS certificate (the broker's alert: " +
      "BadCertificate): the brokers require a client certificate: set KAFKA_SSL_CERT_FILE and " +
      "KAFKA_SSL_KEY_FILE",
  );
  const files = { KAFKA_SSL_CERT_FILE: "/c.crt", KAFKA_SSL_KEY_FILE: "/c.key" };
  assert.match(
    kafkaSecurityError(alert(...cases[2]), ["k:9093"], sec(files))?.message ?? "",
    /\(the broker's alert: UnknownCA\): KAFKA_SSL_CERT_FILE=\/c\.crt is not signed by a CA the brokers trust/,
  );
  assert.match(
    kafkaSecurityError(alert(...cases[4]), ["k:9093"], sec(files))?.message ?? "",
    /KAFKA_SSL_CERT_FILE=\/c\.crt has expired: renew it$/,
  );
  // Every command's start passes it on as a configuration error (exit 2), not an outage.
  assert.ok(kafkaError(alert(...cases[0]), ["k:9093"]) instanceof ConfigError);
});
