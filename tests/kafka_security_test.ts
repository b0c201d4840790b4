// Kafka behind TLS and SASL, on a real broker (tests/_helpers/secure_kafka.ts: a SASL_SSL listener
// with its own CA, a PLAIN and a SCRAM-SHA-256 user). Through the launcher, as a user runs it:
// `start` (simulator -> ingest -> sensor -> aggregator) with SCRAM over TLS and the CA file: the
// windows equal the oracle over the ticks in Kafka, and the password is in no output. Refused
// settings are configuration errors (exit 2, one message naming the setting), never outages
// retried forever: a wrong password, a CA that did not sign the broker's certificate.
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import { openKv } from "../common/kv.ts";
import { readCheckpoint } from "../aggregate/mod.ts";
import { startSimulator } from "../ingest/simulator.ts";
import { tempKvPath, testPool, uniqueName } from "./_helpers/env.ts";
import { launchCli } from "./_helpers/launch_cli.ts";
import { assertRowsEqual, cleanupRows, oracle, readRows } from "./_helpers/aggregate_stream.ts";
import {
  asStream,
  descendants,
  randomPrefix,
  readTopic,
  waitFor,
} from "./_helpers/e2e_pipeline.ts";
import {
  ensureSecureKafka,
  PLAIN_BROKER,
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

Deno.test({
  name: "kafka security: the secured broker is stopped (teardown)",
  ...opts,
  async fn() {
    await stopSecureKafka();
  },
});
