// Kafka's TLS and SASL settings: parsing (every protocol and mechanism, every refusal), the
// kafkajs options they become, the CA file's checks, the permission they add, and the errors
// that mean "refused settings" (never an outage).
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
import { tlsTrustCode } from "../../common/tls_errors.ts";
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
