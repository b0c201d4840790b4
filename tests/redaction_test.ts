// Redaction end to end, against the REAL Kafka broker and PostgreSQL: a database password given
// as `?password=` in DATABASE_URL (node-postgres honours it) and the value of PGPASSWORD never
// appear in what leaves the process: log lines (text and JSON), aggregator_progress rows, Deno KV
// values, and `status` output. The password must really work, so the test creates a throw-away
// login role with a random password (member of postgres, dropped at the end).
import assert from "node:assert/strict";
import { openKv } from "../common/kv.ts";
import { ensureTopic } from "../common/kafka.ts";
import { config, runCli, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";
import { cleanupRows, generateStream, produceStream } from "./_helpers/aggregate_stream.ts";
import { randomPrefix } from "./_helpers/e2e_pipeline.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Every line of `text` that mentions one of `needles`. */
function leaks(text: string, needles: string[]): string[] {
  return text.split("\n").filter((l) => needles.some((n) => l.includes(n)));
}

/** Asserts every non-empty line of `text` is one JSON object. */
function assertJsonLines(text: string, what: string): number {
  let n = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let v;
    try {
      v = JSON.parse(line);
    } catch {
      assert.fail(`${what}: not a JSON line: ${line}`);
    }
    assert.ok(v !== null && typeof v === "object", `${what}: ${line}`);
    n++;
  }
  return n;
}

Deno.test({
  name:
    "redaction: ?password= and PGPASSWORD stay out of logs, progress rows, KV values and status",
  ...opts,
  async fn() {
    const pool = testPool();
    const kafka = testKafka();
    const hex = crypto.randomUUID().replaceAll("-", "");
    const role = `tickpipe_redact_${hex.slice(0, 12)}`;
    const secret = `Qs-${hex.slice(12, 28)}`; // the role's password, given as ?password=
    const pgSecret = `Pg-${hex.slice(16)}`; // PGPASSWORD's value
    const wrong = `Wr-${crypto.randomUUID().slice(0, 13)}`;
    const needles = [secret, pgSecret, wrong, encodeURIComponent(secret)];
    const topic = uniqueName("t-redact");
    const kvPath = await tempKvPath("redact");
    const prefix = randomPrefix();
    const db = new URL(config.databaseUrl);
    const base = `postgres://${role}@${db.hostname}:${db.port || 5432}${db.pathname}`;
    // application_name carries PGPASSWORD's value, so the URL shows it where the URL is shown.
    const url = `${base}?password=${secret}&application_name=${pgSecret}`;
    const env = { DATABASE_URL: url, PGPASSWORD: pgSecret, LOG_LEVEL: "debug" };
    try {
      await pool.query(`CREATE ROLE ${role} LOGIN PASSWORD '${secret}' IN ROLE postgres`);
      // Whatever it creates (a pending migration) belongs to postgres, not to the role.
      await pool.query(`ALTER ROLE ${role} SET role = 'postgres'`);

      const admin = kafka.admin();
      await admin.connect();
      await ensureTopic(admin, topic, { partitions: 2 });
      await admin.disconnect();
      const stream = generateStream({
        seed: 5,
        prefix,
        perPartition: 200,
        partitions: 2,
        watermarkDelayMs: 60_000,
        windowMs: 60_000,
      });
      await produceStream(kafka, topic, stream, { from: 0, to: 200 });

      // The aggregator, through the role: JSON logs at debug level, exits 0 when idle.
      const agg = await runCli("aggregate", [
        "aggregate",
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--group",
        uniqueName("g-redact"),
        "--trigger",
        "500ms",
        "--idle-timeout",
        "3s",
      ], { env: { ...env, LOG_FORMAT: "json" }, timeoutMs: 120_000 });
      assert.equal(agg.code, 0, agg.stderr.slice(-3000));
      assert.deepEqual(leaks(agg.stdout + agg.stderr, needles), [], "aggregator output");
      const jsonLines = assertJsonLines(agg.stdout, "aggregator stdout") +
        assertJsonLines(agg.stderr, "aggregator stderr");

      // A wrong password in the query string: a clear error, the password redacted.
      const bad = await runCli("aggregate", ["aggregate", "--topic", topic, "--kv", kvPath], {
        env: { ...env, DATABASE_URL: `${base}?password=${wrong}` },
        timeoutMs: 60_000,
      });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /refused the connection: password authentication failed/);
      assert.match(bad.stderr, /\?password=\*\*\*/);
      assert.deepEqual(leaks(bad.stdout + bad.stderr, needles), [], "error output");

      // status, text and JSON: reachable through the role, the URL shown redacted.
      const statusArgs = ["status", "--topic", topic, "--kv", kvPath, "--no-rate"];
      const text = await runCli("status", statusArgs, { env });
      const json = await runCli("status", [...statusArgs, "--json"], { env });
      for (const r of [text, json]) {
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.deepEqual(leaks(r.stdout + r.stderr, needles), [], "status output");
      }
      const s = JSON.parse(json.stdout);
      assert.equal(s.postgres.reachable, true);
      assert.equal(s.postgres.url, `${base}?password=***&application_name=***`);
      assert.ok(s.progress !== null, "status shows the aggregator's progress");
      assert.match(text.stdout, /\?password=\*\*\*&application_name=\*\*\*/);

      // aggregator_progress rows and every KV value.
      const prog = await pool.query<{ progress: string }>(
        "SELECT progress::text AS progress FROM aggregator_progress WHERE topic = $1",
        [topic],
      );
      assert.ok(prog.rows.length > 0, "progress rows were written");
      assert.deepEqual(leaks(prog.rows.map((r) => r.progress).join("\n"), needles), []);
      const kv = await openKv(kvPath);
      let kvValues = 0;
      try {
        for await (const e of kv.list({ prefix: [] })) {
          kvValues++;
          const v = e.value instanceof Uint8Array
            ? new TextDecoder().decode(e.value)
            : JSON.stringify(e.value);
          assert.deepEqual(leaks(v, needles), [], `KV ${JSON.stringify(e.key)}`);
        }
      } finally {
        kv.close();
      }
      assert.ok(kvValues >= 3, `KV values checked: ${kvValues}`);
      console.log(
        `redaction: aggregator JSON lines=${jsonLines} progress rows=${prog.rows.length} ` +
          `KV values=${kvValues} status text+json: 0 leaks`,
      );
    } finally {
      await cleanupRows(pool, prefix, topic);
      const admin = kafka.admin();
      await admin.connect();
      const existing = new Set(await admin.listTopics());
      const topics = [topic, `${topic}.dlq`].filter((t) => existing.has(t));
      if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => {});
      await admin.disconnect();
      await pool.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`,
        [role],
      ).catch(() => {});
      await pool.query(`DROP ROLE IF EXISTS ${role}`);
      await pool.end();
      for (const f of [kvPath, `${kvPath}-shm`, `${kvPath}-wal`]) {
        await Deno.remove(f).catch(() => {});
      }
    }
  },
});
