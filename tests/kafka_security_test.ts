// Kafka behind TLS and SASL, on a real broker (tests/_helpers/secure_kafka.ts: a SASL_SSL listener
// with its own CA, a PLAIN and a SCRAM-SHA-256 user). Through the launcher, as a user runs it:
// `start` (simulator -> ingest -> sensor -> aggregator) with SCRAM over TLS and the CA file: the
// windows equal the oracle over the ticks in Kafka, and the password is in no output. Refused
// settings are configuration errors (exit 2, one message naming the setting), never outages
// retried forever: a wrong password, a CA that did not sign the broker's certificate. Mutual TLS
// (a listener that requires a client certificate): the aggregator with an encrypted client key
// equals the oracle; no certificate, one another CA signed, or a wrong key password exit 2.
// Credentials revoked while the aggregator runs: reported as refused (not "kafka down"), retried,
// and caught up once restored, with kafkajs' per-attempt lines kept off ERROR.
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import { openKv } from "../common/kv.ts";
import { readCheckpoint } from "../aggregate/mod.ts";
import { startSimulator } from "../ingest/simulator.ts";
import { tempKvPath, testPool, uniqueName } from "./_helpers/env.ts";
import { launchCli } from "./_helpers/launch_cli.ts";
import {
  assertRowsEqual,
  cleanupRows,
  generateStream,
  oracle,
  produceStream,
  readRows,
  type StreamRecord,
} from "./_helpers/aggregate_stream.ts";
import { ensureTopic } from "../common/kafka.ts";
import {
  asStream,
  descendants,
  randomPrefix,
  readTopic,
  waitFor,
} from "./_helpers/e2e_pipeline.ts";
import {
  CLIENT_KEY_PASSWORD,
  ensureSecureKafka,
  MTLS_BROKER,
  PLAIN_BROKER,
  restartSecureKafka,
  SECURE_BROKER,
  secureKafkaUnavailable,
  stopSecureKafka,
  USERS,
} from "./_helpers/secure_kafka.ts";

const WINDOW_MS = 300_000;
const WATERMARK_MS = 900_000;

const reason = await secureKafkaUnavailable();
if (reason) console.log(`skipping the Kafka TLS/SASL tests: ${reason}`);

const opts = { sanitizeOps: false, sanitizeResources: false, ignore: reason !== null };

/** The broker's PLAINTEXT listener, for the test's own reads (no security). */
const plainKafka = () =>
  new Kafka({ brokers: [PLAIN_BROKER], logLevel: logLevel.NOTHING, clientId: "secure-test" });

Deno.test({
  name:
    "kafka security: start over SASL_SSL (SCRAM-SHA-256, own CA): windows equal the oracle, no password in the output",
  ...opts,
  async fn() {
    const { caFile } = await ensureSecureKafka();
    const topic = uniqueName("t-secure");
    const kvPath = await tempKvPath("secure");
    const prefix = randomPrefix();
    const symbols = [`${prefix}A`, `${prefix}B-USD`];
    const pool = testPool();
    await cleanupRows(pool, prefix, topic);
    const sim = await startSimulator({ port: 0, rate: 60, seed: 11, heartbeatMs: 1000 });
    const env = {
      KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
      KAFKA_SASL_MECHANISM: "SCRAM-SHA-256",
      KAFKA_SASL_USERNAME: USERS.scram.username,
      KAFKA_SASL_PASSWORD: USERS.scram.password,
      KAFKA_SSL_CA_FILE: caFile,
      LOG_LEVEL: "info",
    };
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        ...["run", "-q", "--no-prompt", "-P=launch", "main.ts", "launch", "start"],
        ...["--brokers", SECURE_BROKER, "--topic", topic, "--kv", kvPath],
        ...["--source", `ws://127.0.0.1:${sim.port}/?version=2`, "--symbols", symbols.join(",")],
        ...["--every", "2s", "--trigger", "1s", "--idle-timeout", "10s"],
        ...["--metrics-port", "0", "--dashboard-port", "0"],
      ],
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let output = "";
    const dec = new TextDecoder();
    const pump = (s: ReadableStream<Uint8Array>) =>
      s.pipeTo(
        new WritableStream({ write: (c) => void (output += dec.decode(c, { stream: true })) }),
      )
        .catch(() => {});
    const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
    const kv = await openKv(kvPath);
    const kafka = plainKafka();
    let exited = false;
    try {
      // Ticks flow through ingest, and the sensor's aggregator checkpoints windows of them.
      await waitFor("a checkpoint covering 150 ticks", async () => {
        const cp = await readCheckpoint(kv, topic);
        const n = Object.values(cp?.pointer.offsets ?? {}).reduce((a, b) => a + b, 0);
        return n >= 150 ? cp : null;
      }, { timeoutMs: 90_000 });
      await sim.close();
      child.kill("SIGTERM");
      const status = await child.status;
      exited = true;
      await pumps;
      assert.equal(status.code, 0, output.slice(-3000));
      const cp = await readCheckpoint(kv, topic);
      assert.ok(cp, "a final checkpoint");
      const records = await readTopic(kafka, topic);
      const expected = oracle(asStream(records, cp.pointer.offsets), {
        windowMs: WINDOW_MS,
        watermarkDelayMs: WATERMARK_MS,
      });
      const stored = await readRows(pool, prefix);
      assert.ok(expected.rows.size >= symbols.length, "windows for every symbol");
      assertRowsEqual(stored, expected.rows, WINDOW_MS);
      assert.match(output, /aggregator stopped reason=stopped/, "the aggregator ran and stopped");
      assert.ok(!output.includes(USERS.scram.password), "the password is in no output line");
    } finally {
      if (!exited) {
        for (const p of descendants(child.pid)) {
          try {
            Deno.kill(p.pid, "SIGKILL");
          } catch { /* gone */ }
        }
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await sim.close().catch(() => {});
      }
      kv.close();
      await cleanupRows(pool, prefix, topic);
      await pool.end();
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
    }
  },
});

Deno.test({
  name:
    "kafka security: a wrong password and an untrusted CA exit 2 at once, naming the setting (not retried as an outage)",
  ...opts,
  async fn() {
    const { caFile, otherCaFile } = await ensureSecureKafka();
    const topic = uniqueName("t-secure-bad");
    const kvPath = await tempKvPath("secure-bad");
    const base = {
      KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
      KAFKA_SASL_MECHANISM: "PLAIN",
      KAFKA_SASL_USERNAME: USERS.plain.username,
      KAFKA_SASL_PASSWORD: USERS.plain.password,
      KAFKA_SSL_CA_FILE: caFile,
    };
    const wrong = "Wrong-pw-42x";
    const cases = [
      {
        what: "wrong password (PLAIN)",
        env: { ...base, KAFKA_SASL_PASSWORD: wrong },
        expect:
          /refused the SASL credentials of user "alice" \(KAFKA_SASL_MECHANISM=PLAIN\): .*authentication failed.*Check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD/,
      },
      {
        what: "wrong password (SCRAM-SHA-256)",
        env: {
          ...base,
          KAFKA_SASL_MECHANISM: "SCRAM-SHA-256",
          KAFKA_SASL_USERNAME: USERS.scram.username,
          KAFKA_SASL_PASSWORD: wrong,
        },
        expect: /refused the SASL credentials of user "bob" \(KAFKA_SASL_MECHANISM=SCRAM-SHA-256\)/,
      },
      {
        what: "a CA that did not sign the broker's certificate",
        env: { ...base, KAFKA_SSL_CA_FILE: otherCaFile },
        expect: new RegExp(
          `presented a TLS certificate this process does not trust \\([A-Z_]+\\): ` +
            `KAFKA_SSL_CA_FILE=${otherCaFile.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} does not hold`,
        ),
      },
    ];
    for (const c of cases) {
      for (
        const [command, args] of [
          ["ingest", ["--source", "ws://127.0.0.1:9/?version=2", "--symbols", "X"]],
          ["aggregate", ["--idle-timeout", "5s"]],
          ["sensor", ["--once"]],
          ["status", []],
        ] as const
      ) {
        const r = await launchCli(command, [
          ...["--brokers", SECURE_BROKER, "--topic", topic],
          ...(command === "ingest" ? [] : ["--kv", kvPath]),
          ...args,
        ], { env: c.env });
        const what = `${command}, ${c.what}: ${r.output.slice(-1500)}`;
        assert.equal(r.code, 2, what);
        assert.match(r.output, c.expect, what);
        assert.ok(!r.output.includes(wrong) && !r.output.includes(USERS.plain.password), what);
        assert.ok(r.ms < 30_000, `${what}: exited after ${r.ms} ms`);
        // status shows refused settings in its table (exit 2), not as an outage.
        if (command === "status") assert.match(r.output, /^kafka +REFUSED /m, what);
        if (command === "status" && c.what.startsWith("wrong password")) {
          // status says which settings it used (never the password) and that they were refused.
          assert.match(
            r.output,
            /^kafka +REFUSED 127\.0\.0\.1:29093 \[SASL_SSL, [A-Z0-9-]+ user "(alice|bob)", CA file \S+ca\.pem\]/m,
            what,
          );
        }
      }
    }
    // Credentials the protocol would not send: refused before anything runs.
    const r = await launchCli("status", ["--brokers", SECURE_BROKER, "--topic", topic], {
      env: { KAFKA_SASL_USERNAME: "alice", KAFKA_SASL_PASSWORD: USERS.plain.password },
    });
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /KAFKA_SECURITY_PROTOCOL=PLAINTEXT sends no credentials/);
    assert.ok(!r.output.includes(USERS.plain.password));
    await Deno.remove(kvPath).catch(() => {});
  },
});

const [WINDOW_1M, DELAY_3M, PARTS] = [60_000, 180_000, 3];

/** What {@linkcode withSecureTopic} hands its test. */
interface SecureTopic {
  topic: string;
  kvPath: string;
  prefix: string;
  pool: ReturnType<typeof testPool>;
  kafka: Kafka;
  /** 300 generated records per partition, none produced yet. */
  streams: StreamRecord[][];
}

/**
 * Runs `fn` with a fresh topic on the secured broker (made through its PLAINTEXT listener), its
 * records to produce, a KV path and a row prefix; removes all of them after.
 */
async function withSecureTopic(name: string, seed: number, fn: (t: SecureTopic) => Promise<void>) {
  const topic = uniqueName(`t-${name}`);
  const kvPath = await tempKvPath(name);
  const prefix = `${name.toUpperCase()}${crypto.randomUUID().slice(0, 6)}_`;
  const pool = testPool();
  const kafka = plainKafka();
  const admin = kafka.admin();
  await admin.connect();
  const streams = generateStream({
    seed,
    prefix,
    perPartition: 300,
    partitions: PARTS,
    windowMs: WINDOW_1M,
    watermarkDelayMs: DELAY_3M,
  });
  try {
    await ensureTopic(admin, topic, { partitions: PARTS });
    await fn({ topic, kvPath, prefix, pool, kafka, streams });
  } finally {
    await cleanupRows(pool, prefix, topic);
    await pool.end();
    await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
    await admin.disconnect();
    for (const x of ["", "-wal", "-shm"]) await Deno.remove(kvPath + x).catch(() => {});
  }
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

Deno.test({
  name:
    "kafka security: mutual TLS (a client certificate with an encrypted key): aggregate equals the oracle; a missing, foreign or locked certificate exits 2",
  ...opts,
  async fn() {
    const { caFile, client, otherClient } = await ensureSecureKafka();
    await withSecureTopic("mtls", 5, async ({ topic, kvPath, prefix, pool, kafka, streams }) => {
      await produceStream(kafka, topic, streams, { from: 0, to: 300 });
      const env = {
        KAFKA_SECURITY_PROTOCOL: "SSL",
        KAFKA_SSL_CA_FILE: caFile,
        KAFKA_SSL_CERT_FILE: client.certFile,
        KAFKA_SSL_KEY_FILE: client.keyFile,
        KAFKA_SSL_KEY_PASSWORD: CLIENT_KEY_PASSWORD,
      };
      const flags = ["--brokers", MTLS_BROKER, "--topic", topic, "--kv", kvPath];
      const r = await launchCli("aggregate", [
        ...flags,
        ...["--trigger", "500ms", "--idle-timeout", "3s", "--windows", "1m"],
        ...["--watermark", "3m", "--idle-finalize", "0"],
      ], { env });
      assert.equal(r.code, 0, r.output.slice(-3000));
      const expected = oracle(streams, { windowMs: WINDOW_1M, watermarkDelayMs: DELAY_3M });
      assert.ok(expected.rows.size > 10, `windows to compare: ${expected.rows.size}`);
      assertRowsEqual(await readRows(pool, prefix), expected.rows, WINDOW_1M);
      const s = await launchCli("status", [...flags, "--no-rate"], { env });
      assert.equal(s.code, 0, s.output);
      assert.match(
        s.output,
        new RegExp(
          `^kafka +up +${escape(MTLS_BROKER)} \\[SSL, CA file \\S+, client certificate ${
            escape(client.certFile)
          }\\]`,
          "m",
        ),
      );
      const noCert = { KAFKA_SECURITY_PROTOCOL: "SSL", KAFKA_SSL_CA_FILE: caFile };
      const cases = [
        {
          what: "no client certificate",
          env: noCert,
          expect:
            /refused this client's TLS certificate \(the broker's alert: \w+\): the brokers require a client certificate: set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE/,
        },
        {
          what: "a certificate another CA signed",
          env: {
            ...noCert,
            KAFKA_SSL_CERT_FILE: otherClient.certFile,
            KAFKA_SSL_KEY_FILE: otherClient.keyFile,
          },
          expect: new RegExp(
            `refused this client's TLS certificate \\(the broker's alert: \\w+\\): ` +
              `KAFKA_SSL_CERT_FILE=${escape(otherClient.certFile)} is not signed by a CA the ` +
              `brokers trust`,
          ),
        },
        {
          what: "a wrong key password",
          env: { ...env, KAFKA_SSL_KEY_PASSWORD: "Wrong-key-pw-1" },
          expect: new RegExp(
            `KAFKA_SSL_KEY_FILE=${escape(client.keyFile)} cannot be used: ` +
              `KAFKA_SSL_KEY_PASSWORD does not decrypt it`,
          ),
        },
      ];
      for (const c of cases) {
        for (const command of ["aggregate", "status"]) {
          const extra = command === "aggregate" ? ["--idle-timeout", "3s"] : ["--no-rate"];
          const out = await launchCli(command, [...flags, ...extra], {
            env: c.env,
          });
          const what = `${command}, ${c.what}: ${out.output.slice(-1500)}`;
          assert.equal(out.code, 2, what);
          assert.match(out.output, c.expect, what);
          if (command === "status" && c.what !== "a wrong key password") {
            assert.match(out.output, /^kafka +REFUSED /m, what);
          }
          assert.ok(out.ms < 30_000, `${what}: exited after ${out.ms} ms`);
          for (const secret of [CLIENT_KEY_PASSWORD, "Wrong-key-pw-1"]) {
            assert.ok(!out.output.includes(secret), `${what}: a key password in the output`);
          }
        }
      }
      for (const out of [r.output, s.output]) {
        assert.ok(!out.includes(CLIENT_KEY_PASSWORD), "the key password is in no output");
      }
    });
  },
});

Deno.test({
  name:
    "kafka security: credentials revoked while the aggregator runs are reported as refused, retried, and it catches up once they are restored",
  ...opts,
  async fn() {
    const { caFile } = await ensureSecureKafka();
    await withSecureTopic("revoke", 9, async ({ topic, kvPath, prefix, pool, kafka, streams }) => {
      let child: Deno.ChildProcess | undefined;
      let output = "";
      let revoked = false;
      const kv = await openKv(kvPath);
      const stored = async () =>
        Object.values((await readCheckpoint(kv, topic))?.pointer.offsets ?? {})
          .reduce((a, b) => a + b, 0);
      try {
        await produceStream(kafka, topic, streams, { from: 0, to: 200 });
        child = new Deno.Command(Deno.execPath(), {
          args: [
            ...["run", "-q", "--no-prompt", "-P=launch", "main.ts", "launch", "aggregate"],
            ...["--brokers", SECURE_BROKER, "--topic", topic, "--kv", kvPath],
            ...["--trigger", "1s", "--idle-timeout", "120s", "--windows", "1m"],
            ...["--watermark", "3m", "--idle-finalize", "0"],
          ],
          env: {
            NO_COLOR: "1",
            KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
            KAFKA_SASL_MECHANISM: "PLAIN",
            KAFKA_SASL_USERNAME: USERS.plain.username,
            KAFKA_SASL_PASSWORD: USERS.plain.password,
            KAFKA_SSL_CA_FILE: caFile,
          },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const dec = new TextDecoder();
        for (const s of [child.stdout, child.stderr]) {
          s.pipeTo(new WritableStream({ write: (c) => void (output += dec.decode(c)) }))
            .catch(() => {});
        }
        await waitFor("the first 600 records checkpointed", async () => await stored() >= 600, {
          timeoutMs: 60_000,
        });
        // The operator revokes the user (gone from the broker's configuration, which a restart
        // applies), so every connection logs in again and is refused.
        revoked = true;
        await restartSecureKafka({ plainUser: false });
        await produceStream(kafka, topic, streams, { from: 200, to: 300 });
        await waitFor(
          "the refusal reported",
          () =>
            /kafka refused this process' TLS or SASL settings: retrying with backoff/.test(output),
          { timeoutMs: 60_000 },
        );
        assert.match(
          output,
          /reason="SASL authentication failed: SASL PLAIN authentication failed: [^"]*Invalid username or password/,
        );
        assert.equal(await stored(), 600, "nothing read while refused is checkpointed");
        // Restored: the same process logs in again and catches up.
        await restartSecureKafka({ plainUser: true });
        revoked = false;
        await waitFor("all 900 records checkpointed", async () => await stored() >= 900, {
          timeoutMs: 60_000,
        });
        child.kill("SIGTERM");
        const status = await child.status;
        child = undefined;
        assert.equal(status.code, 0, output.slice(-3000));
        const expected = oracle(streams, { windowMs: WINDOW_1M, watermarkDelayMs: DELAY_3M });
        assertRowsEqual(await readRows(pool, prefix), expected.rows, WINDOW_1M);
        assert.match(output, /kafka up: /);
        // kafkajs' line per failed attempt is not repeated at ERROR: the outage is said once.
        assert.doesNotMatch(output, /ERROR .*(Connection error|seed broker|ECONNREFUSED)/);
        assert.ok(!output.includes(USERS.plain.password), "the password is in no output line");
      } finally {
        if (revoked) await restartSecureKafka({ plainUser: true }).catch(() => {});
        if (child !== undefined) {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
          await child.status;
        }
        kv.close();
      }
    });
  },
});

Deno.test({
  name: "kafka security: the secured broker is stopped (teardown)",
  ...opts,
  async fn() {
    await stopSecureKafka();
  },
});
