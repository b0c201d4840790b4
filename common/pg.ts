/**
 * PostgreSQL access at the edge: a pool with short connect timeouts and
 * errors that name the (redacted) DATABASE_URL.
 * @module
 */

// @ts-types="npm:@types/pg@8.15.6"
import pg from "pg";
import { redact } from "./log.ts";
import { ConfigError } from "./config.ts";
import { AccessDeniedError, deniedTarget, isPermissionError } from "./permissions.ts";
import { tlsClientCertRefusal, tlsTrustCode } from "./tls_errors.ts";
import { checkClientCert } from "./client_cert.ts";

/** A node-postgres pool. */
export type Pool = pg.Pool;
/** A node-postgres client checked out of a pool. */
export type PoolClient = pg.PoolClient;

/** Raised when PostgreSQL cannot be reached; the message names the redacted URL. */
export class DatabaseUnavailableError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DatabaseUnavailableError";
  }
}

/** Options for {@linkcode createPool}. */
export interface CreatePoolOptions {
  /** Max connections (default 4). */
  max?: number;
  /** Connect timeout in ms (default 5000). */
  connectTimeoutMs?: number;
  /** application_name reported to the server. */
  applicationName?: string;
}

/** Creates a pool for `databaseUrl`. Pool-level errors (idle client dropped) are swallowed: queries surface them. */
export function createPool(databaseUrl: string, options: CreatePoolOptions = {}): Pool {
  checkDatabaseClientCert(databaseUrl);
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max ?? 4,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    application_name: options.applicationName ?? "tickpipe",
  });
  pool.on("error", () => {});
  return pool;
}

/** A query parameter of `databaseUrl`, or null (also when it is not a URL). */
function urlParam(databaseUrl: string, name: string): string | null {
  try {
    return new URL(databaseUrl).searchParams.get(name);
  } catch {
    return null;
  }
}

/**
 * Checks the client certificate `databaseUrl` names (`sslcert` and `sslkey`, mutual TLS) before
 * any connection: both given, readable, the certificate valid now and the key its own and not
 * encrypted (node-postgres takes no key password from a URL). Throws DatabaseConfigError naming
 * the parameter; does nothing for a URL without them (or not a URL: node-postgres reports that).
 */
export function checkDatabaseClientCert(
  databaseUrl: string,
  options: { readFile?: (path: string) => string; now?: () => number } = {},
): void {
  const certFile = urlParam(databaseUrl, "sslcert");
  const keyFile = urlParam(databaseUrl, "sslkey");
  if (certFile === null && keyFile === null) return;
  const url = redact(databaseUrl);
  if (certFile === null || keyFile === null) {
    throw new DatabaseConfigError(
      `DATABASE_URL=${url} names ${certFile === null ? "sslkey" : "sslcert"} without ` +
        `${certFile === null ? "sslcert" : "sslkey"}: a client certificate needs both`,
    );
  }
  const read = (path: string, name: string) => {
    try {
      return (options.readFile ?? Deno.readTextFileSync)(path);
    } catch (e) {
      throw new DatabaseConfigError(
        `${name}=${path} in DATABASE_URL cannot be read: ${(e as Error)?.message ?? e}: ` +
          `expected a PEM file`,
        { cause: e },
      );
    }
  };
  try {
    checkClientCert({ cert: read(certFile, "sslcert"), key: read(keyFile, "sslkey") }, {
      labels: {
        cert: `sslcert=${certFile} in DATABASE_URL`,
        key: `sslkey=${keyFile} in DATABASE_URL`,
      },
      nowMs: (options.now ?? Date.now)(),
    });
  } catch (e) {
    if (e instanceof DatabaseConfigError || !(e instanceof ConfigError)) throw e;
    throw new DatabaseConfigError(e.message, { cause: e.cause });
  }
}

/**
 * Wraps a connection failure in a DatabaseUnavailableError naming the redacted `databaseUrl`; a
 * permission denial becomes an AccessDeniedError (a configuration error) naming the address.
 */
export function databaseError(e: unknown, databaseUrl: string): Error {
  if (
    e instanceof DatabaseUnavailableError || e instanceof AccessDeniedError ||
    e instanceof DatabaseConfigError
  ) return e;
  const err = e as Error & { code?: string };
  const url = redact(databaseUrl);
  if (isPermissionError(e)) {
    // A configuration error (exit 2), naming the address Deno refused.
    let target = deniedTarget(e)?.target;
    if (target === undefined) {
      try {
        const u = new URL(databaseUrl);
        target = `${u.hostname}:${u.port || 5432}`;
      } catch {
        target = "?";
      }
    }
    return new AccessDeniedError({
      kind: "net",
      target,
      what: "PostgreSQL",
      setting: `DATABASE_URL=${url}`,
      settings: "DATABASE_URL / --database-url",
    }, { cause: e });
  }
  // Class 28 (invalid authorization) and 3D000 (no such database): the server answered, the
  // configuration is wrong. Not an outage: exit 2, nothing to retry.
  if (/^28/.test(err?.code ?? "") || err?.code === "3D000") {
    const message = err?.message ?? "";
    const fix = /no encryption/.test(message)
      ? "The server requires TLS: add sslmode=verify-full (and sslrootcert=<the CA's PEM file>) " +
        "to DATABASE_URL"
      : /requires a valid client certificate/.test(message)
      ? "The server requires a client certificate: add sslcert=<its PEM file> and " +
        "sslkey=<its key's PEM file> to DATABASE_URL"
      : /certificate authentication failed/.test(message)
      ? "The client certificate's CN must be the user name in DATABASE_URL (or mapped to it in " +
        "the server's pg_ident.conf)"
      : "Check the user, password and database in DATABASE_URL";
    return new DatabaseConfigError(
      `PostgreSQL at DATABASE_URL=${url} refused the connection: ` +
        `${redact(err?.message ?? String(e))} (SQLSTATE ${err.code}). ${fix}`,
      { cause: e },
    );
  }
  // The server refused this client's certificate (its CA, expiry): a configuration error too.
  const alert = tlsClientCertRefusal(e);
  if (alert !== undefined) {
    const cert = urlParam(databaseUrl, "sslcert");
    const fix = cert === null
      ? "the server requires a client certificate: add sslcert=<its PEM file> and " +
        "sslkey=<its key's PEM file> to DATABASE_URL"
      : `sslcert=${cert} in DATABASE_URL is not signed by a CA the server trusts (its ` +
        `ssl_ca_file), or the server does not accept it`;
    return new DatabaseConfigError(
      `PostgreSQL at DATABASE_URL=${url} refused this client's TLS certificate (the server's ` +
        `alert: ${alert}): ${fix}`,
      { cause: e },
    );
  }
  // A certificate the configured CAs do not vouch for: a configuration error too.
  const untrusted = tlsTrustCode(e);
  if (untrusted !== undefined) {
    const root = urlParam(databaseUrl, "sslrootcert");
    const fix = root
      ? `sslrootcert=${root} in DATABASE_URL does not hold the CA that signed it`
      : "add sslrootcert=<the PEM file of the CA that signed it> to DATABASE_URL";
    return new DatabaseConfigError(
      `PostgreSQL at DATABASE_URL=${url} presented a TLS certificate this process does not ` +
        `trust (${untrusted}): ${fix}`,
      { cause: e },
    );
  }
  return new DatabaseUnavailableError(
    `Cannot reach PostgreSQL at DATABASE_URL=${url}: ${redact(err?.message ?? String(e))}. ` +
      `Start the local server with "deno task services" or point DATABASE_URL at a running one`,
    { cause: e },
  );
}

/** Raised when PostgreSQL answers but refuses the configured credentials or database (exit 2). */
export class DatabaseConfigError extends ConfigError {
  /** Creates the error; the message names the redacted URL and what was refused. */
  constructor(message: string, options?: ErrorOptions) {
    super(message);
    this.name = "DatabaseConfigError";
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** Checks that `pool` can run a query, throwing DatabaseUnavailableError naming `databaseUrl` if not. */
export async function checkDatabase(pool: Pool, databaseUrl: string): Promise<void> {
  try {
    await pool.query("SELECT 1");
  } catch (e) {
    throw databaseError(e, databaseUrl);
  }
}

/** What a PostgreSQL error is: unavailable (retry), a statement timeout (split), refused rows (data) or a bug (other). */
export type DbErrorClass = "availability" | "timeout" | "data" | "other";

const NODE_UNAVAILABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);
const CONNECTION_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|not queryable|Connection refused|connect ECONNREFUSED|socket hang up/i;

/**
 * Classifies a node-postgres error: "availability" (connection errors, 08xxx, 40001, 40P01,
 * 53xxx, 55P03, 57P0x, 58xxx), "timeout" (57014), "data" (classes 21, 22, 23, 44, 54: the rows
 * were refused), or "other" (42xxx and everything else: a bug).
 */
export function classifyDbError(e: unknown): DbErrorClass {
  const err = e as { code?: unknown; message?: unknown } | null;
  const code = typeof err?.code === "string" ? err.code : "";
  if (code === "57014") return "timeout";
  if (/^[0-9A-Z]{5}$/.test(code)) {
    if (/^(08|53|57P|58)/.test(code) || code === "40001" || code === "40P01" || code === "55P03") {
      return "availability";
    }
    if (/^(21|22|23|44|54)/.test(code)) return "data";
    return "other";
  }
  if (NODE_UNAVAILABLE.has(code)) return "availability";
  const message = typeof err?.message === "string" ? err.message : "";
  return CONNECTION_MESSAGE.test(message) ? "availability" : "other";
}
