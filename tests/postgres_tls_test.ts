// PostgreSQL over TLS, on a real server that accepts TCP over TLS only (tests/_helpers/
// secure_postgres.ts: hostssl rules, a certificate signed by a test CA). Through the launcher, as a
// user runs it: the aggregator and status with `DATABASE_URL=...?sslmode=verify-full&sslrootcert=`
// work (the CA file joins the derived read list), and the windows equal the oracle. A URL without
// the CA, or without TLS, is reported as what it is. Mutual TLS: a user that logs in by its client
// certificate (sslcert, sslkey) and has data rights only runs the aggregator on a database its
// owner migrated (before that: exit 2 naming the pending migrations); no certificate, another
// CA's, or a key of another certificate exit 2 naming the parameter.
import assert from "node:assert/strict";
import { ensureTopic } from "../common/kafka.ts";
import { createPool } from "../common/pg.ts";
import { tempKvPath, testKafka, uniqueName } from "./_helpers/env.ts";
import {
  assertRowsEqual,
  generateStream,
  oracle,
  produceStream,
  readRows,
  type StreamRecord,
} from "./_helpers/aggregate_stream.ts";
import { launchCli } from "./_helpers/launch_cli.ts";
import {
  CERT_USER,
  ensureSecurePostgres,
  SECURE_PG_PASSWORD,
  SECURE_PG_URL,
  securePostgresUnavailable,
  stopSecurePostgres,
} from "./_helpers/secure_postgres.ts";

const WINDOW = 60_000;
const DELAY = 180_000;
const PARTS = 3;

const reason = await securePostgresUnavailable();
if (reason) console.log(`skipping the PostgreSQL TLS tests: ${reason}`);

const opts = { sanitizeOps: false, sanitizeResources: false, ignore: reason !== null };

/** Runs `fn` with a fresh topic (holding `perPartition` generated records per partition) and KV. */
async function withTopic(
  fn: (topic: string, kvPath: string, prefix: string, streams: StreamRecord[][]) => Promise<void>,
  perPartition = 0,
) {
  const topic = uniqueName("t-pgtls");
  const kvPath = await tempKvPath("pgtls");
  const prefix = `PGTLS${crypto.randomUUID().slice(0, 6)}_`;
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopic(admin, topic, { partitions: PARTS });
    const streams = generateStream({
      seed: 77,
      prefix,
      perPartition,
      partitions: PARTS,
      windowMs: WINDOW,
      watermarkDelayMs: DELAY,
    });
    if (perPartition > 0) await produceStream(kafka, topic, streams, { from: 0, to: perPartition });
    await fn(topic, kvPath, prefix, streams);
  } finally {
    const existing = new Set(await admin.listTopics());
    const ours = [topic, `${topic}.dlq`].filter((t) => existing.has(t));
    await admin.deleteTopics({ topics: ours }).catch(() => {});
    await admin.disconnect();
    for (const s of ["", "-wal", "-shm"]) await Deno.remove(kvPath + s).catch(() => {});
  }
}

Deno.test({
  name:
    "postgres TLS: aggregate and status with sslmode=verify-full and sslrootcert, through the launcher: windows equal the oracle",
  ...opts,
  async fn() {
    const certs = await ensureSecurePostgres();
    const url = `${SECURE_PG_URL}?sslmode=verify-full&sslrootcert=${certs.caFile}`;
    const per = 400;
    await withTopic(async (topic, kvPath, prefix, streams) => {
      const flags = ["--topic", topic, "--kv", kvPath];
      const r = await launchCli("aggregate", [
        ...flags,
        ...["--trigger", "500ms", "--idle-timeout", "3s", "--windows", "1m"],
        ...["--watermark", "3m", "--idle-finalize", "0"],
      ], { env: { DATABASE_URL: url } });
      assert.equal(r.code, 0, r.output.slice(-3000));
      const pool = createPool(url, { applicationName: "pgtls-test" });
      try {
        // The server accepts TLS only, so these rows came over TLS.
        const tls = await pool.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
        assert.equal(tls.rows[0].ssl, true, "this connection is TLS");
        const expected = oracle(streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
        assert.ok(expected.rows.size > 10, `windows to compare: ${expected.rows.size}`);
        assertRowsEqual(await readRows(pool, prefix), expected.rows, WINDOW);
      } finally {
        await pool.end();
      }
      const s = await launchCli("status", [...flags, "--no-rate"], { env: { DATABASE_URL: url } });
      assert.equal(s.code, 0, s.output);
      assert.match(s.output, /^postgres +up /m);
      for (const out of [r.output, s.output]) {
        assert.ok(!out.includes(SECURE_PG_PASSWORD), "the password is in no output");
      }
    }, per);
  },
});

Deno.test({
  name:
    "postgres TLS: a certificate the CA file does not vouch for, and no TLS at all, are reported as what they are",
  ...opts,
  async fn() {
    const certs = await ensureSecurePostgres();
    await withTopic(async (topic, kvPath) => {
      const flags = ["--topic", topic, "--kv", kvPath, "--idle-timeout", "3s"];
      const cases = [
        {
          what: "another CA",
          url: `${SECURE_PG_URL}?sslmode=verify-full&sslrootcert=${certs.otherCaFile}`,
          expect:
            /PostgreSQL at DATABASE_URL=\S+@127\.0\.0\.1:25433\S+ presented a TLS certificate this process does not trust \([A-Z_]+\): sslrootcert=\S+other-ca\.pem in DATABASE_URL does not hold the CA that signed it/,
        },
        {
          what: "no TLS",
          url: SECURE_PG_URL,
          expect:
            /PostgreSQL at DATABASE_URL=\S+@127\.0\.0\.1:25433\S+ refused the connection: .*no encryption.*\(SQLSTATE 28000\)\. The server requires TLS: add sslmode=verify-full/,
        },
      ];
      for (const c of cases) {
        const r = await launchCli("aggregate", flags, { env: { DATABASE_URL: c.url } });
        const what = `${c.what}: ${r.output.slice(-2000)}`;
        assert.equal(r.code, 2, what);
        assert.match(r.output, c.expect, what);
        assert.ok(!r.output.includes(SECURE_PG_PASSWORD), what);
        assert.ok(r.ms < 30_000, `${what}: exited after ${r.ms} ms`);
        // status says which it is: refused (exit 2), not down.
        const s = await launchCli("status", [...flags.slice(0, 4), "--no-rate"], {
          env: { DATABASE_URL: c.url },
        });
        assert.equal(s.code, 2, `${c.what}: ${s.output}`);
        assert.match(s.output, /^postgres +REFUSED /m, s.output);
        assert.match(s.output, c.expect, s.output);
        assert.ok(!s.output.includes(SECURE_PG_PASSWORD), s.output);
      }
    });
  },
});

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

Deno.test({
  name:
    "postgres TLS: a user authenticated by its client certificate, with data rights only, aggregates once the owner has migrated; bad certificates exit 2",
  ...opts,
  async fn() {
    const certs = await ensureSecurePostgres();
    const tls = `sslmode=verify-full&sslrootcert=${certs.caFile}`;
    const db = `tickpipe_mtls_${crypto.randomUUID().slice(0, 6)}`;
    const admin = createPool(`${SECURE_PG_URL}?${tls}`, { applicationName: "pgtls-test" });
    await admin.query(`CREATE DATABASE ${db}`);
    const host = `127.0.0.1:25433/${db}`;
    const ownerUrl = `postgres://postgres:${SECURE_PG_PASSWORD}@${host}?${tls}`;
    const certUrl = (cert = certs.client) =>
      `postgres://${CERT_USER}@${host}?${tls}&sslcert=${cert.certFile}&sslkey=${cert.keyFile}`;
    const per = 300;
    try {
      await withTopic(async (topic, kvPath, prefix, streams) => {
        const flags = ["--topic", topic, "--kv", kvPath];
        const aggregate = (url: string) =>
          launchCli("aggregate", [
            ...flags,
            ...["--trigger", "500ms", "--idle-timeout", "3s", "--windows", "1m"],
            ...["--watermark", "3m", "--idle-finalize", "0"],
          ], { env: { DATABASE_URL: url } });
        // A fresh database: the certificate's user may not create the schema.
        const before = await aggregate(certUrl());
        assert.equal(before.code, 2, before.output.slice(-2000));
        assert.match(
          before.output,
          new RegExp(
            `User "${CERT_USER}" may not change the database's schema \\(.*SQLSTATE 42501\\), ` +
              `and migrations 001_\\w+, .* are pending: apply them as the database's owner`,
          ),
        );
        const m = await launchCli("migrate", [], { env: { DATABASE_URL: ownerUrl } });
        assert.equal(m.code, 0, m.output);
        const r = await aggregate(certUrl());
        assert.equal(r.code, 0, r.output.slice(-3000));
        const owner = createPool(ownerUrl, { applicationName: "pgtls-test" });
        try {
          const expected = oracle(streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
          assert.ok(expected.rows.size > 10, `windows to compare: ${expected.rows.size}`);
          assertRowsEqual(await readRows(owner, prefix), expected.rows, WINDOW);
        } finally {
          await owner.end();
        }
        const s = await launchCli("status", [...flags, "--no-rate"], {
          env: { DATABASE_URL: certUrl() },
        });
        assert.equal(s.code, 0, s.output);
        assert.match(s.output, /^postgres +up /m);
        const noCert = `postgres://${CERT_USER}@${host}?${tls}`;
        const cases = [
          {
            what: "no client certificate",
            url: noCert,
            refused: true,
            expect:
              /refused the connection: connection requires a valid client certificate \(SQLSTATE 28000\)\. The server requires a client certificate: add sslcert=<its PEM file> and sslkey=<its key's PEM file> to DATABASE_URL/,
          },
          {
            what: "a certificate another CA signed",
            url: certUrl(certs.otherClient),
            refused: true,
            expect: new RegExp(
              `refused this client's TLS certificate \\(the server's alert: \\w+\\): sslcert=${
                escape(certs.otherClient.certFile)
              } in DATABASE_URL is not signed by a CA the server trusts`,
            ),
          },
          {
            what: "the key of another certificate",
            url: `${noCert}&sslcert=${certs.client.certFile}&sslkey=${certs.otherClient.keyFile}`,
            refused: false,
            expect: new RegExp(
              `sslkey=${escape(certs.otherClient.keyFile)} in DATABASE_URL is not the private ` +
                `key of the certificate in sslcert=${
                  escape(certs.client.certFile)
                } in DATABASE_URL`,
            ),
          },
        ];
        for (const c of cases) {
          const a = await launchCli("aggregate", [...flags, "--idle-timeout", "3s"], {
            env: { DATABASE_URL: c.url },
          });
          assert.equal(a.code, 2, `aggregate, ${c.what}: ${a.output.slice(-2000)}`);
          assert.match(a.output, c.expect, `aggregate, ${c.what}`);
          const st = await launchCli("status", [...flags, "--no-rate"], {
            env: { DATABASE_URL: c.url },
          });
          assert.equal(st.code, 2, `status, ${c.what}: ${st.output}`);
          assert.match(st.output, c.expect, `status, ${c.what}`);
          if (c.refused) assert.match(st.output, /^postgres +REFUSED /m, c.what);
        }
      }, per);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => {});
      await admin.end();
    }
  },
});

Deno.test({
  name: "postgres TLS: the TLS cluster is stopped (teardown)",
  ...opts,
  async fn() {
    await stopSecurePostgres();
  },
});
