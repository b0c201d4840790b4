/**
 * A real PostgreSQL cluster that accepts TCP connections over TLS only (`hostssl` in pg_hba.conf,
 * `ssl = on` with a certificate signed by a test CA), for the tests of TLS to PostgreSQL. One user,
 * {@linkcode CERT_USER}, authenticates by a client certificate the test CA signed (`cert`, mutual
 * TLS). Its own data under `.data/secure-pg`, port 25433; started once per test process, stopped
 * by {@linkcode stopSecurePostgres}.
 * @module
 */

import pg from "pg";
import { createLogger } from "../../common/log.ts";
import {
  clusterOwner,
  postgresPaths,
  startPostgres,
  stopPostgres,
} from "../../services/postgres.ts";
import {
  type ClientCertificate,
  makeClientCertificate,
  makeTestCertificates,
  type TestCertificates,
  toolsUnavailable,
} from "./test_certs.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const DIR = `${ROOT}.data/secure-pg`;
const CERTS = `${DIR}/certs`;

/** The cluster's port. */
export const SECURE_PG_PORT = 25433;
/** Its password (a secret the tests look for in output). */
export const SECURE_PG_PASSWORD = "pgtls-Pw-3kq8";
/** Its URL without TLS parameters (the server refuses it once TLS is required). */
export const SECURE_PG_URL =
  `postgres://postgres:${SECURE_PG_PASSWORD}@127.0.0.1:${SECURE_PG_PORT}/tickpipe`;

/** The user that logs in with a client certificate (its CN), no password. */
export const CERT_USER = "tickpipe_cert";
/** Its URL without TLS parameters. */
export const SECURE_PG_CERT_URL = `postgres://${CERT_USER}@127.0.0.1:${SECURE_PG_PORT}/tickpipe`;

/** The cluster's certificates: the server's CAs and {@linkcode CERT_USER}'s client certificates. */
export interface SecurePostgresCertificates extends TestCertificates {
  /** CN=tickpipe_cert, signed by the CA the server trusts. */
  client: ClientCertificate;
  /** CN=tickpipe_cert, signed by the unrelated CA (the server must refuse it). */
  otherClient: ClientCertificate;
}

/** Why the TLS cluster cannot be started here (no openssl, no PostgreSQL), or null. */
export async function securePostgresUnavailable(): Promise<string | null> {
  const tools = await toolsUnavailable(["openssl", "version"]);
  if (tools) return tools;
  try {
    await Deno.stat("/usr/lib/postgresql");
    return null;
  } catch {
    return "PostgreSQL's server binaries are not installed (/usr/lib/postgresql)";
  }
}

let started: Promise<SecurePostgresCertificates> | undefined;

/** Starts the TLS-only cluster (once per process; fresh data and certificates each time). */
export function ensureSecurePostgres(): Promise<SecurePostgresCertificates> {
  started ??= start();
  return started;
}

async function start(): Promise<SecurePostgresCertificates> {
  await stopPostgres(DIR).catch(() => {});
  await Deno.remove(DIR, { recursive: true }).catch(() => {});
  await Deno.mkdir(CERTS, { recursive: true });
  const certs = {
    ...await makeTestCertificates(CERTS),
    client: await makeClientCertificate(CERTS, "pg-client", { signer: "ca", cn: CERT_USER }),
    otherClient: await makeClientCertificate(CERTS, "pg-other-client", {
      signer: "other-ca",
      cn: CERT_USER,
    }),
  };
  await startPostgres({
    dataDir: DIR,
    databaseUrl: SECURE_PG_URL,
    logger: createLogger("secure-pg", { level: "error" }),
    install: false,
  });
  // The server's key and certificate in its data folder, owned by the server's user, key 0600.
  const data = (await postgresPaths(DIR)).data;
  const owner = await clusterOwner();
  for (
    const [from, to, mode] of [
      [certs.certFile, "server.crt", 0o644],
      [certs.keyFile, "server.key", 0o600],
      [certs.caFile, "root.crt", 0o644],
    ] as const
  ) {
    await Deno.copyFile(from, `${data}/${to}`);
    await Deno.chmod(`${data}/${to}`, mode);
    await Deno.chown(`${data}/${to}`, owner.uid, owner.gid);
  }
  // TCP only over TLS: every "host" rule becomes "hostssl"; CERT_USER by its certificate.
  const hba = `${data}/pg_hba.conf`;
  const rules = (await Deno.readTextFile(hba)).split("\n")
    .map((l) => l.replace(/^host(\s)/, "hostssl$1"));
  await Deno.writeTextFile(
    hba,
    [`hostssl all ${CERT_USER} 127.0.0.1/32 cert`, ...rules].join("\n"),
  );
  const client = new pg.Client({ connectionString: SECURE_PG_URL });
  await client.connect();
  try {
    await client.query("ALTER SYSTEM SET ssl = on");
    await client.query("ALTER SYSTEM SET ssl_cert_file = 'server.crt'");
    await client.query("ALTER SYSTEM SET ssl_key_file = 'server.key'");
    // The CA whose client certificates it accepts.
    await client.query("ALTER SYSTEM SET ssl_ca_file = 'root.crt'");
    await client.query(`DROP ROLE IF EXISTS ${CERT_USER}`);
    await client.query(`CREATE ROLE ${CERT_USER} LOGIN`);
    await client.query(`GRANT pg_read_all_data, pg_write_all_data TO ${CERT_USER}`);
    await client.query("SELECT pg_reload_conf()");
  } finally {
    await client.end();
  }
  // The reload is asynchronous: wait until TLS is on and plain TCP is refused.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const plain = new pg.Client({ connectionString: SECURE_PG_URL });
    const refused = await plain.connect().then(() => false, () => true);
    await plain.end().catch(() => {});
    if (refused) break;
    if (Date.now() > deadline) throw new Error("The TLS-only PostgreSQL still accepts plain TCP");
    await new Promise((r) => setTimeout(r, 200));
  }
  return certs;
}

/** Stops the TLS cluster and removes its folder. */
export async function stopSecurePostgres(): Promise<void> {
  started = undefined;
  await stopPostgres(DIR).catch(() => {});
  await Deno.remove(DIR, { recursive: true }).catch(() => {});
}
