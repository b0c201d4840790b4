// Chaos 8: hostile symbols (quotes, semicolons, SQL, unicode) travel simulator -> ingest ->
// Kafka -> aggregator -> price_windows verbatim; the DATABASE_URL password never appears in any
// output line of any chaos run (.data/chaos/logs), in aggregator_progress, in Deno KV, or in
// error messages (wrong password, malformed URL).
import assert from "node:assert/strict";
import { openKv } from "../../common/kv.ts";
import { startSimulator } from "../../ingest/simulator.ts";
import { parseFrame } from "../../ingest/frame.ts";
import {
  BROKER,
  CHAOS_DIR,
  CHAOS_PASSWORD,
  chaosKafka,
  chaosPool,
  createTopics,
  DB_URL,
  deleteTopics,
  ensureKafka,
  ensurePostgres,
  LOG_DIR,
  PG_PORT,
  readTopic,
  removeKv,
  sleep,
  spawnCli,
  summary,
  testOpts,
  uniq,
  until,
} from "./_harness.ts";
import { chaosSpoolDir, spawnIngest } from "./_ingest.ts";

// Symbols must be 1-32 characters: the brief's `O'Neil"; DROP TABLE price_windows;--` (36) is
// dead-lettered as bad_symbol (checked below), so the SQL payloads here fit in 32.
const TOO_LONG = `O'Neil"; DROP TABLE price_windows;--`;
const HOSTILE = [
  `O'Neil"; DROP TABLE t;--`,
  `x'; DROP TABLE price_windows;--`,
  "日経225",
  "€/$ 📈",
  "R'); DELETE FROM late_ticks;--",
  "a,b".replace(",", "\\"), // a backslash
  "$1 OR 1=1",
];

Deno.test(
  "chaos 8: hostile symbols stored verbatim; the database password never leaks",
  testOpts,
  async () => {
    const t0 = Date.now();
    await ensureKafka();
    await ensurePostgres();
    const kafka = chaosKafka();
    const topic = uniq("chaos-inj");
    const kvPath = `${CHAOS_DIR}/${topic}.kv`;
    await createTopics(kafka, [topic, `${topic}.dlq`]);
    const sim = await startSimulator({ port: 0, rate: 200, seed: 8, heartbeatMs: 1000 });
    const ingest = await spawnIngest(`c8-ingest-${topic}`, {
      topic,
      simPort: sim.port,
      symbols: [...HOSTILE, TOO_LONG],
    });
    const pool = chaosPool();
    try {
      await until(() => sim.symbols().length === HOSTILE.length + 1, "subscription", 30_000);
      await sleep(3000);
      await sim.close();
      await sleep(300);
      ingest.kill("SIGTERM");
      assert.equal(await ingest.status, 0, ingest.lines.slice(-10).join("\n"));
      const perSymbol = new Map<string, number>();
      for (const s of sim.sent()) {
        const r = parseFrame(s.frame, { nowMs: s.at });
        if (r.ok === true) perSymbol.set(r.tick.id, (perSymbol.get(r.tick.id) ?? 0) + 1);
      }
      assert.deepEqual([...perSymbol.keys()].sort(), [...HOSTILE].sort(), "all symbols were sent");
      const dlq = await readTopic(kafka, `${topic}.dlq`);
      const tooLong = dlq.filter((m) => m.headers.reason === "bad_symbol").length;
      assert.ok(tooLong > 0, "the 36-character symbol is dead-lettered as bad_symbol");
      assert.equal(dlq.length, tooLong, "nothing else is dead-lettered");
      const agg = await spawnCli("aggregate", [
        "aggregate",
        "--brokers",
        BROKER,
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--trigger",
        "500ms",
        "--idle-timeout",
        "3s",
        "--windows",
        "1m",
        "--watermark",
        "3m",
        "--group",
        uniq("chaos-inj-group"),
      ], { name: `c8-aggregate-${topic}`, env: { DATABASE_URL: DB_URL, LOG_LEVEL: "debug" } });
      assert.equal(await agg.status, 0, agg.lines.slice(-10).join("\n"));
      const { rows } = await pool.query(
        `SELECT symbol, sum(tick_count)::int AS n FROM price_windows
         WHERE topic = $2 AND symbol = ANY($1::text[]) GROUP BY symbol`,
        [HOSTILE, topic],
      );
      const stored = new Map(rows.map((r) => [r.symbol as string, r.n as number]));
      assert.deepEqual(
        [...stored].sort(),
        [...perSymbol].sort(),
        "every hostile symbol stored verbatim with every tick",
      );
      const tables = await pool.query(
        "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name = ANY($1)",
        [["price_windows", "late_ticks", "aggregator_progress"]],
      );
      assert.equal(tables.rows[0].n, 3, "no table was dropped");

      // Error paths: a wrong password and a malformed URL carrying the secret.
      const wrong = `postgres://postgres:wr0ng-pw-ABC@127.0.0.1:${PG_PORT}/tickpipe`;
      const bad = await spawnCli("aggregate", [
        "aggregate",
        "--brokers",
        BROKER,
        "--topic",
        topic,
        "--kv",
        kvPath,
      ], {
        name: `c8-wrongpw-${topic}`,
        env: { DATABASE_URL: wrong, LOG_LEVEL: "debug" },
      });
      // The server answered and refused the credentials: a configuration error, not an outage.
      assert.equal(await bad.status, 2, bad.lines.join("\n"));
      const badText = bad.lines.join("\n");
      assert.match(badText, /password authentication failed/, badText);
      assert.doesNotMatch(badText, /wr0ng-pw-ABC/, "wrong password redacted");
      const malformed = await spawnCli("aggregate", [
        "aggregate",
        "--database-url",
        `postgres://postgres:${CHAOS_PASSWORD}@127.0.0.1:${PG_PORT}`,
      ], { name: `c8-malformed-${topic}` });
      assert.equal(await malformed.status, 2);
      assert.match(malformed.lines.join("\n"), /names no database/);

      // The password nowhere: every chaos log file, aggregator_progress, every KV value.
      const needles = [CHAOS_PASSWORD, encodeURIComponent(CHAOS_PASSWORD), "wr0ng-pw-ABC"];
      let files = 0;
      let lines = 0;
      const leaks: string[] = [];
      for await (const e of Deno.readDir(LOG_DIR)) {
        if (!e.isFile || !e.name.endsWith(".log")) continue;
        const text = await Deno.readTextFile(`${LOG_DIR}/${e.name}`);
        files++;
        lines += text.split("\n").length;
        for (const n of needles) if (text.includes(n)) leaks.push(`${e.name} contains ${n}`);
      }
      const prog = await pool.query(
        "SELECT count(*)::int AS n, count(*) FILTER (WHERE progress::text LIKE '%' || $1 || '%')::int AS leak FROM aggregator_progress",
        [CHAOS_PASSWORD],
      );
      assert.ok(prog.rows[0].n > 0);
      const kv = await openKv(kvPath);
      let kvValues = 0;
      try {
        for await (const e of kv.list({ prefix: [] })) {
          kvValues++;
          const v = e.value instanceof Uint8Array
            ? new TextDecoder().decode(e.value)
            : JSON.stringify(e.value);
          for (const n of needles) if (v.includes(n)) leaks.push(`KV ${JSON.stringify(e.key)}`);
        }
      } finally {
        kv.close();
      }
      await summary(
        `8 injection+secrets: symbols=${HOSTILE.length} stored_verbatim=${stored.size} ` +
          `too_long_dead_lettered=${tooLong} ` +
          `ticks=${[...stored.values()].reduce((a, b) => a + b, 0)} tables_intact=3 ` +
          `password_leaks: logs=${leaks.length} (${files} files, ${lines} lines) ` +
          `progress_rows=${prog.rows[0].leak}/${prog.rows[0].n} kv_values=${kvValues} ` +
          `wrong_pw_error_redacted=yes in ${((Date.now() - t0) / 1000).toFixed(0)}s`,
      );
      assert.deepEqual(leaks, [], "the password appears nowhere");
      assert.equal(prog.rows[0].leak, 0);
      await pool.query("DELETE FROM price_windows WHERE symbol = ANY($1::text[])", [HOSTILE]);
    } finally {
      if (!ingest.exited()) {
        ingest.kill("SIGKILL");
        await ingest.status;
      }
      await sim.close();
      await pool.end();
      await removeKv(kvPath, topic);
      await deleteTopics(kafka, [topic, `${topic}.dlq`]);
      await Deno.remove(chaosSpoolDir(topic), { recursive: true }).catch(() => {});
    }
  },
);
