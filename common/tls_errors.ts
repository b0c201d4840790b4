/**
 * TLS errors that are configuration problems (the server's certificate is not trusted, or the
 * server refused the client's certificate), told apart from outages, for Kafka's and PostgreSQL's
 * clients. Pure.
 * @module
 */

import { errorChain } from "./error_chain.ts";

/** TLS errors that mean the server's certificate is not trusted (a configuration problem). */
const TLS_TRUST_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** The TLS trust error code in `e` or its causes (kafkajs wraps them), or undefined. */
export function tlsTrustCode(e: unknown): string | undefined {
  for (const x of errorChain(e)) {
    const code = x.code;
    if (typeof code === "string" && TLS_TRUST_CODES.has(code)) return code;
    const message = typeof x.message === "string" ? x.message : "";
    const m =
      /\b(UNABLE_TO_[A-Z_]+|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_[A-Z_]+|ERR_TLS_CERT_ALTNAME_INVALID)\b/
        .exec(message);
    if (m && TLS_TRUST_CODES.has(m[1])) return m[1];
    if (/unable to verify the first certificate|self[- ]signed certificate/i.test(message)) {
      return "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
    }
  }
  return undefined;
}

/** The TLS alerts a server sends when it refuses the client's certificate, by their names. */
const CLIENT_CERT_ALERTS = new Map([
  ["CERTIFICATE_REQUIRED", "CertificateRequired"],
  ["BAD_CERTIFICATE", "BadCertificate"],
  ["UNKNOWN_CA", "UnknownCA"],
  ["CERTIFICATE_EXPIRED", "CertificateExpired"],
  ["CERTIFICATE_REVOKED", "CertificateRevoked"],
  ["CERTIFICATE_UNKNOWN", "CertificateUnknown"],
  ["UNSUPPORTED_CERTIFICATE", "UnsupportedCertificate"],
  ["ACCESS_DENIED", "AccessDenied"],
]);
const ALERT_NAMES = new Set(CLIENT_CERT_ALERTS.values());

/**
 * The alert of a server that refused this client's TLS certificate (none sent, an unknown CA,
 * expired, …) in `e` or its causes, by its name (`CertificateRequired`), or undefined.
 */
export function tlsClientCertRefusal(e: unknown): string | undefined {
  for (const x of errorChain(e)) {
    const code = typeof x.code === "string" ? x.code : "";
    const byCode = /^ERR_SSL_\w*?ALERT_([A-Z_]+)$/.exec(code);
    if (byCode && CLIENT_CERT_ALERTS.has(byCode[1])) return CLIENT_CERT_ALERTS.get(byCode[1]);
    const message = typeof x.message === "string" ? x.message : "";
    const byName = /received fatal alert: (\w+)/.exec(message);
    if (byName && ALERT_NAMES.has(byName[1])) return byName[1];
    const byText =
      /\balert (certificate required|bad certificate|unknown ca|certificate expired|certificate revoked|certificate unknown|unsupported certificate|access denied)\b/i
        .exec(message);
    if (byText) return CLIENT_CERT_ALERTS.get(byText[1].toUpperCase().replaceAll(" ", "_"));
  }
  return undefined;
}
