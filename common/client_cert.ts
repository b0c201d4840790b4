/**
 * Checks a TLS client certificate and its private key before any connection (mutual TLS to Kafka
 * or PostgreSQL): the certificate parses and has not expired, the key decrypts and belongs to it.
 * Deno's TLS sends no certificate at all for a key it cannot use, which a server reports only as
 * "certificate required"; these checks name the file and the fix instead. Pure (the PEM texts and
 * the clock are passed in).
 * @module
 */

import crypto from "node:crypto";
import { ConfigError } from "./config.ts";

/** How the settings are named in messages (e.g. `KAFKA_SSL_CERT_FILE=/etc/kafka/client.crt`). */
export interface ClientCertLabels {
  /** The certificate's setting and value. */
  cert: string;
  /** The key's setting and value. */
  key: string;
  /** The key password's setting; absent where none can be given (an encrypted key is refused). */
  password?: string;
}

/** A checked client certificate: the PEM as given and the key decrypted (PKCS#8 PEM). */
export interface CheckedClientCert {
  /** The certificate (PEM). */
  cert: string;
  /** The private key, decrypted (PKCS#8 PEM). */
  key: string;
}

/**
 * Checks `pem` (the certificate's and the key's texts); throws ConfigError naming the setting
 * and what was expected when the certificate is unreadable or expired at `options.nowMs`, or the
 * key cannot be decrypted or is not the certificate's.
 */
export function checkClientCert(
  pem: { cert: string; key: string },
  options: { labels: ClientCertLabels; password?: string; nowMs: number },
): CheckedClientCert {
  const { labels } = options;
  let x509: crypto.X509Certificate;
  try {
    if (!pem.cert.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no PEM certificate");
    x509 = new crypto.X509Certificate(pem.cert);
  } catch (e) {
    throw new ConfigError(
      `${labels.cert} holds no readable certificate (${(e as Error)?.message ?? e}): expected a ` +
        `"-----BEGIN CERTIFICATE-----" block`,
      { cause: e },
    );
  }
  if (Date.parse(x509.validTo) < options.nowMs) {
    throw new ConfigError(
      `${labels.cert} expired on ${x509.validTo}: expected a certificate valid now; renew it`,
    );
  }
  const encrypted = pem.key.includes("ENCRYPTED");
  let key: crypto.KeyObject;
  try {
    if (encrypted && labels.password === undefined) throw new Error("encrypted");
    key = crypto.createPrivateKey({ key: pem.key, passphrase: options.password ?? "" });
  } catch (e) {
    const why = !encrypted
      ? `it holds no readable private key (${(e as Error)?.message ?? e})`
      : labels.password === undefined
      ? "it is encrypted, and no password can be given for it here (decrypt it: openssl pkey " +
        "-in <key> -out <plain key>)"
      : options.password === undefined
      ? `it is encrypted and ${labels.password} is unset`
      : `${labels.password} does not decrypt it`;
    throw new ConfigError(
      `${labels.key} cannot be used: ${why}: expected the PEM private key of the certificate in ` +
        `${labels.cert}`,
      { cause: e },
    );
  }
  if (!x509.checkPrivateKey(key)) {
    throw new ConfigError(
      `${labels.key} is not the private key of the certificate in ${labels.cert}: expected the ` +
        `key the certificate was issued for`,
    );
  }
  return { cert: pem.cert, key: key.export({ type: "pkcs8", format: "pem" }) as string };
}
