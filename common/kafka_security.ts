/**
 * Kafka's security settings (TLS and SASL), from the environment only, so that a password is
 * never on a command line: `KAFKA_SECURITY_PROTOCOL` (Kafka's `security.protocol`: PLAINTEXT, the
 * default, SSL, SASL_PLAINTEXT or SASL_SSL), `KAFKA_SASL_MECHANISM` (PLAIN, SCRAM-SHA-256 or
 * SCRAM-SHA-512), `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CA_FILE` (a PEM file
 * of the CAs to trust instead of the system's), and a client certificate for brokers that require
 * one (mutual TLS): `KAFKA_SSL_CERT_FILE`, `KAFKA_SSL_KEY_FILE` and, for an encrypted key,
 * `KAFKA_SSL_KEY_PASSWORD`. Children inherit them with the environment.
 *
 * Parsing is pure ({@linkcode parseKafkaSecurity}); reading the files is the one I/O
 * ({@linkcode kafkajsSecurity}). Configuration problems are ConfigErrors (exit 2): a setting that
 * would be ignored (credentials without a SASL protocol, a CA file or client certificate without
 * TLS) is refused rather than silently connecting without it.
 * @module
 */

import { checkClientCert, type CheckedClientCert } from "./client_cert.ts";
import { ConfigError, readEnv } from "./config.ts";
import { addSecret } from "./log.ts";
import { errorChain } from "./error_chain.ts";
import { tlsClientCertRefusal, tlsTrustCode } from "./tls_errors.ts";

/** Kafka's `security.protocol` values. */
export const KAFKA_SECURITY_PROTOCOLS = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] as const;

/** A Kafka security protocol. */
export type KafkaSecurityProtocol = typeof KAFKA_SECURITY_PROTOCOLS[number];

/** The SASL mechanisms tickpipe's Kafka client speaks. */
export const KAFKA_SASL_MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] as const;

/** A SASL mechanism. */
export type KafkaSaslMechanism = typeof KAFKA_SASL_MECHANISMS[number];

/** The environment variables of the security settings (every Kafka client's set may read them). */
export const KAFKA_SECURITY_ENV = [
  "KAFKA_SECURITY_PROTOCOL",
  "KAFKA_SASL_MECHANISM",
  "KAFKA_SASL_USERNAME",
  "KAFKA_SASL_PASSWORD",
  "KAFKA_SSL_CA_FILE",
  "KAFKA_SSL_CERT_FILE",
  "KAFKA_SSL_KEY_FILE",
  "KAFKA_SSL_KEY_PASSWORD",
] as const;

/** SASL credentials. */
export interface KafkaSasl {
  /** Mechanism. */
  mechanism: KafkaSaslMechanism;
  /** User name. */
  username: string;
  /** Password (registered as a secret: logs show it redacted). */
  password: string;
}

/** Resolved security settings. */
export interface KafkaSecurity {
  /** Protocol. */
  protocol: KafkaSecurityProtocol;
  /** Credentials (SASL_* protocols only). */
  sasl?: KafkaSasl;
  /** PEM file of the CAs to trust (SSL and SASL_SSL only; default: the system's). */
  caFile?: string;
  /** The client certificate for brokers that require one (SSL and SASL_SSL only). */
  clientCert?: KafkaClientCert;
}

/** A TLS client certificate (mutual TLS). */
export interface KafkaClientCert {
  /** PEM file of the certificate (and any intermediates after it). */
  certFile: string;
  /** PEM file of its private key. */
  keyFile: string;
  /** The key's password, when the key is encrypted (registered as a secret). */
  keyPassword?: string;
}

/** True when `security` uses TLS. */
function usesTls(security: KafkaSecurity): boolean {
  return security.protocol === "SSL" || security.protocol === "SASL_SSL";
}

function oneOf<T extends string>(list: readonly T[]): string {
  return `${list.slice(0, -1).join(", ")} or ${list[list.length - 1]}`;
}

/**
 * Parses the security settings from `env`. Pure (apart from registering the password as a secret
 * for the logs); throws ConfigError naming the variable and what was expected.
 */
export function parseKafkaSecurity(env: (name: string) => string | undefined): KafkaSecurity {
  const get = (name: string) => {
    const v = env(name)?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const rawProtocol = get("KAFKA_SECURITY_PROTOCOL") ?? "PLAINTEXT";
  const protocol = rawProtocol.toUpperCase() as KafkaSecurityProtocol;
  if (!KAFKA_SECURITY_PROTOCOLS.includes(protocol)) {
    throw new ConfigError(
      `KAFKA_SECURITY_PROTOCOL "${rawProtocol}" is not a security protocol: expected ${
        oneOf(KAFKA_SECURITY_PROTOCOLS)
      }`,
    );
  }
  const rawMechanism = get("KAFKA_SASL_MECHANISM");
  const username = get("KAFKA_SASL_USERNAME");
  // A password keeps its spaces: only an empty one counts as unset.
  const password = env("KAFKA_SASL_PASSWORD") || undefined;
  const caFile = get("KAFKA_SSL_CA_FILE");
  const certFile = get("KAFKA_SSL_CERT_FILE");
  const keyFile = get("KAFKA_SSL_KEY_FILE");
  const keyPassword = env("KAFKA_SSL_KEY_PASSWORD") || undefined;
  if (keyPassword !== undefined) addSecret(keyPassword);
  const security: KafkaSecurity = { protocol };
  if (protocol.startsWith("SASL_")) {
    if (rawMechanism === undefined) {
      throw new ConfigError(
        `KAFKA_SECURITY_PROTOCOL=${protocol} needs KAFKA_SASL_MECHANISM: expected ${
          oneOf(KAFKA_SASL_MECHANISMS)
        }`,
      );
    }
    const mechanism = rawMechanism.toUpperCase() as KafkaSaslMechanism;
    if (!KAFKA_SASL_MECHANISMS.includes(mechanism)) {
      throw new ConfigError(
        `KAFKA_SASL_MECHANISM "${rawMechanism}" is not supported: expected ${
          oneOf(KAFKA_SASL_MECHANISMS)
        }`,
      );
    }
    const missing = [
      username === undefined ? "KAFKA_SASL_USERNAME" : "",
      password === undefined ? "KAFKA_SASL_PASSWORD" : "",
    ].filter((s) => s !== "");
    if (missing.length > 0) {
      throw new ConfigError(
        `KAFKA_SECURITY_PROTOCOL=${protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD: ` +
          `${missing.join(" and ")} ${missing.length > 1 ? "are" : "is"} unset`,
      );
    }
    addSecret(password!);
    security.sasl = { mechanism, username: username!, password: password! };
  } else {
    const given = [
      rawMechanism === undefined ? "" : "KAFKA_SASL_MECHANISM",
      username === undefined ? "" : "KAFKA_SASL_USERNAME",
      password === undefined ? "" : "KAFKA_SASL_PASSWORD",
    ].filter((s) => s !== "");
    if (given.length > 0) {
      if (password !== undefined) addSecret(password);
      throw new ConfigError(
        `${given.join(", ")} ${given.length > 1 ? "are" : "is"} set but ` +
          `KAFKA_SECURITY_PROTOCOL=${protocol} sends no credentials: set KAFKA_SECURITY_PROTOCOL=` +
          `${protocol === "SSL" ? "SASL_SSL" : "SASL_SSL (or SASL_PLAINTEXT)"}, or unset them`,
      );
    }
  }
  if (caFile !== undefined) {
    if (!usesTls(security)) {
      throw new ConfigError(
        `KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL=${protocol} does not use TLS: ` +
          `set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, or unset KAFKA_SSL_CA_FILE`,
      );
    }
    security.caFile = caFile;
  }
  if (certFile !== undefined || keyFile !== undefined || keyPassword !== undefined) {
    const given = [
      certFile === undefined ? "" : "KAFKA_SSL_CERT_FILE",
      keyFile === undefined ? "" : "KAFKA_SSL_KEY_FILE",
      keyPassword === undefined ? "" : "KAFKA_SSL_KEY_PASSWORD",
    ].filter((s) => s !== "");
    if (!usesTls(security)) {
      throw new ConfigError(
        `${given.join(", ")} ${given.length > 1 ? "are" : "is"} set but ` +
          `KAFKA_SECURITY_PROTOCOL=${protocol} does not use TLS: set KAFKA_SECURITY_PROTOCOL=SSL ` +
          `or SASL_SSL, or unset ${given.length > 1 ? "them" : "it"}`,
      );
    }
    if (certFile === undefined || keyFile === undefined) {
      throw new ConfigError(
        `A client certificate needs both KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE: ${
          certFile === undefined ? "KAFKA_SSL_CERT_FILE" : "KAFKA_SSL_KEY_FILE"
        } is unset`,
      );
    }
    security.clientCert = { certFile, keyFile, ...(keyPassword ? { keyPassword } : {}) };
  }
  return security;
}

/** kafkajs' name of each mechanism. */
const KAFKAJS_MECHANISM = {
  "PLAIN": "plain",
  "SCRAM-SHA-256": "scram-sha-256",
  "SCRAM-SHA-512": "scram-sha-512",
} as const;

/** A mechanism as kafkajs names it. */
export type KafkajsMechanism = typeof KAFKAJS_MECHANISM[KafkaSaslMechanism];

/** kafkajs' `ssl` and `sasl` client options. */
export interface KafkajsSecurity {
  /**
   * TLS: true (the system's CAs), or the CAs to trust and the client certificate with its
   * (decrypted) key; absent for plain TCP.
   */
  ssl?: true | { ca?: string[]; cert?: string; key?: string };
  /** SASL credentials in kafkajs' form; absent without SASL. */
  sasl?: {
    [M in KafkajsMechanism]: { mechanism: M; username: string; password: string };
  }[KafkajsMechanism];
}

/** The file reads and the clock of {@linkcode kafkajsSecurity} (tests pass their own). */
export interface KafkajsSecurityOptions {
  /** Reads a text file (default Deno.readTextFileSync). */
  readFile?: (path: string) => string;
  /** Now in ms since the epoch (default Date.now), to refuse an expired client certificate. */
  now?: () => number;
}

function readPem(
  path: string,
  variable: string,
  expected: string,
  readFile: (path: string) => string,
): string {
  let pem: string;
  try {
    pem = readFile(path);
  } catch (e) {
    throw new ConfigError(
      `${variable}=${path} cannot be read: ${(e as Error)?.message ?? e}: expected ${expected}`,
      { cause: e },
    );
  }
  return pem;
}

/** The client certificate and its key, read and checked ({@linkcode checkClientCert}). */
function clientCertPem(
  cert: KafkaClientCert,
  readFile: (path: string) => string,
  nowMs: number,
): CheckedClientCert {
  const pem = {
    cert: readPem(
      cert.certFile,
      "KAFKA_SSL_CERT_FILE",
      "a PEM file of this client's certificate",
      readFile,
    ),
    key: readPem(
      cert.keyFile,
      "KAFKA_SSL_KEY_FILE",
      "a PEM file of the client certificate's private key",
      readFile,
    ),
  };
  // Handed to TLS decrypted (Deno's TLS sends no certificate at all for a key it cannot read).
  return checkClientCert(pem, {
    labels: {
      cert: `KAFKA_SSL_CERT_FILE=${cert.certFile}`,
      key: `KAFKA_SSL_KEY_FILE=${cert.keyFile}`,
      password: "KAFKA_SSL_KEY_PASSWORD",
    },
    password: cert.keyPassword,
    nowMs,
  });
}

/**
 * kafkajs' options for `security`, reading its CA file and client certificate (the one I/O).
 * Throws ConfigError when a file cannot be read or used, naming the variable and what was expected.
 */
export function kafkajsSecurity(
  security: KafkaSecurity,
  options: KafkajsSecurityOptions = {},
): KafkajsSecurity {
  const out: KafkajsSecurity = {};
  const readFile = options.readFile ?? Deno.readTextFileSync;
  if (usesTls(security)) {
    if (security.caFile === undefined && security.clientCert === undefined) out.ssl = true;
    else {
      const ssl: { ca?: string[]; cert?: string; key?: string } = {};
      if (security.caFile !== undefined) {
        const pem = readPem(
          security.caFile,
          "KAFKA_SSL_CA_FILE",
          "a PEM file of the CA certificates that signed the brokers' certificates",
          readFile,
        );
        if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
          throw new ConfigError(
            `KAFKA_SSL_CA_FILE=${security.caFile} holds no PEM certificate: expected ` +
              `"-----BEGIN CERTIFICATE-----" blocks of the CAs that signed the brokers' certificates`,
          );
        }
        ssl.ca = [pem];
      }
      if (security.clientCert !== undefined) {
        Object.assign(
          ssl,
          clientCertPem(security.clientCert, readFile, (options.now ?? Date.now)()),
        );
      }
      out.ssl = ssl;
    }
  }
  if (security.sasl !== undefined) {
    // One object of the union: TypeScript cannot narrow a computed mechanism to its member.
    out.sasl = {
      mechanism: KAFKAJS_MECHANISM[security.sasl.mechanism],
      username: security.sasl.username,
      password: security.sasl.password,
    } as NonNullable<KafkajsSecurity["sasl"]>;
  }
  return out;
}

/** The files `security` names (CA file, client certificate and key), for permission lists. */
export function securityFiles(security: KafkaSecurity): string[] {
  return [security.caFile, security.clientCert?.certFile, security.clientCert?.keyFile]
    .filter((f): f is string => f !== undefined);
}

/** How `security` is shown in a message or a settings line (never the password). */
export function describeKafkaSecurity(security: KafkaSecurity): string {
  const parts: string[] = [security.protocol];
  if (security.sasl) parts.push(`${security.sasl.mechanism} user "${security.sasl.username}"`);
  if (security.caFile) parts.push(`CA file ${security.caFile}`);
  if (security.clientCert) parts.push(`client certificate ${security.clientCert.certFile}`);
  return parts.join(", ");
}

/** The SASL authentication failure in `e` or its causes (kafkajs wraps it), or undefined. */
export function saslFailure(e: unknown): Error | undefined {
  for (const x of errorChain(e)) {
    if (x.name === "KafkaJSSASLAuthenticationError") return x as Error;
  }
  return undefined;
}

/**
 * What in `e` says Kafka refused this process' TLS or SASL settings, for a log line of a process
 * that keeps retrying (credentials revoked or rotating while it runs), or undefined.
 */
export function kafkaRefusalReason(e: unknown): string | undefined {
  const sasl = saslFailure(e);
  if (sasl !== undefined) return `SASL authentication failed: ${sasl.message}`;
  const alert = tlsClientCertRefusal(e);
  if (alert !== undefined) return `the broker refused this client's TLS certificate (${alert})`;
  const code = tlsTrustCode(e);
  if (code !== undefined) return `the broker's TLS certificate is not trusted (${code})`;
  return undefined;
}

/**
 * Kafka refused this process' TLS or SASL settings (an untrusted certificate, rejected
 * credentials): a configuration error (exit 2), never an outage to wait out.
 */
export class KafkaSecurityError extends ConfigError {
  /** Creates the error; the message names the brokers, the setting and the fix. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KafkaSecurityError";
  }
}

let envSecurity: KafkaSecurity | undefined;

/** The security settings of this process' environment (parsed once; ConfigError when bad). */
export function kafkaSecurityFromEnv(): KafkaSecurity {
  envSecurity ??= parseKafkaSecurity(readEnv);
  return envSecurity;
}

/**
 * The configuration error `e` stands for, when Kafka refused the security settings (SASL
 * credentials, an untrusted TLS certificate); undefined for anything else.
 */
export function kafkaSecurityError(
  e: unknown,
  brokers: string[],
  security: KafkaSecurity = kafkaSecurityFromEnv(),
): KafkaSecurityError | undefined {
  const at = `Kafka at KAFKA_BROKERS=${brokers.join(",")}`;
  const sasl = saslFailure(e);
  if (sasl !== undefined) {
    const who = security.sasl
      ? `user "${security.sasl.username}" (KAFKA_SASL_MECHANISM=${security.sasl.mechanism})`
      : "this client";
    return new KafkaSecurityError(
      `${at} refused the SASL credentials of ${who}: ${sasl.message}. Check ` +
        `KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM`,
      { cause: e },
    );
  }
  const alert = tlsClientCertRefusal(e);
  if (alert !== undefined) {
    const cert = security.clientCert;
    const fix = cert === undefined
      ? "the brokers require a client certificate: set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE"
      : alert === "CertificateExpired"
      ? `KAFKA_SSL_CERT_FILE=${cert.certFile} has expired: renew it`
      : `KAFKA_SSL_CERT_FILE=${cert.certFile} is not signed by a CA the brokers trust, or the ` +
        `brokers do not accept it (revoked, or not allowed for this listener)`;
    return new KafkaSecurityError(
      `${at} refused this client's TLS certificate (the broker's alert: ${alert}): ${fix}`,
      { cause: e },
    );
  }
  const code = tlsTrustCode(e);
  if (code !== undefined) {
    const fix = security.caFile
      ? `KAFKA_SSL_CA_FILE=${security.caFile} does not hold the CA that signed it`
      : "set KAFKA_SSL_CA_FILE to the PEM file of the CA that signed it";
    return new KafkaSecurityError(
      `${at} presented a TLS certificate this process does not trust (${code}): ${fix}`,
      { cause: e },
    );
  }
  return undefined;
}
