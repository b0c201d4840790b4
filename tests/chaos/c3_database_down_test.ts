// Chaos 3: the chaos PostgreSQL is stopped mid-run: the aggregator (one process, real
// permission set) retries without crash-looping, does not advance its offsets while the
// database is down, catches up when it returns, and the rows equal the oracle.
import assert from "node:assert/strict";
import { openKv } from "../../common/kv.ts";
import { readCheckpoint } from "../../aggregate/mod.ts";
import {
  assertRowsEqual,
  generateStream,
  oracle,
  produceStream,
  readLate,
  readRows,
} from "../_helpers/aggregate_stream.ts";
import {
  BROKER,
  CHAOS_DIR,
  chaosKafka,
  chaosPool,
  createTopics,
  DB_URL,
  deleteTopics,
  ensureKafka,
  ensurePostgres,
  pick,
  removeKv,
  sleep,
  spawnCli,
  stopChaosPostgres,
  summary,
  testOpts,
  uniq,
  until,
} from "./_harness.ts";

const WINDOW = 60_000;
const DELAY = 180_000;
const PARTS = 3;

Deno.test(
  "chaos 3: PostgreSQL stopped mid-run, the aggregator waits and catches up",
  testOpts,
  async () => {
    const downMs = pick(10_000, 60_000);
    const per = pick(3000, 20_000);
    const t0 = Date.now();
    await ensureKafka();
    await ensurePostgres();
    const kafka = chaosKafka();
    const topic = uniq("chaos-pg");
    const prefix = `C3${crypto.randomUUID().slice(0, 6)}_`;
    const kvPath = `${CHAOS_DIR}/${topic}.kv`;
    const kv = await openKv(kvPath);
    await createTopics(kafka, [topic], PARTS);
    const streams = generateStream({
      seed: 33,
      prefix,
      perPartition: per,
      partitions: PARTS,
      windowMs: WINDOW,
      watermarkDelayMs: DELAY,
    });
    const offsets = async () => {
      const o = (await readCheckpoint(kv, topic))?.pointer.offsets ?? {};
      return Array.from({ length: PARTS }, (_, p) => o[p] ?? 0);
    };
    const half = Math.floor(per / 2);
    await produceStream(kafka, topic, streams, { from: 0, to: half });
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
      "5s",
      "--windows",
      "1m,5m", // two resolutions, each checked against the oracle
      "--watermark",
      "3m",
      "--lease-ttl",
      "3s",
      "--max-buffered",
      String(per),
      "--group",
      uniq("chaos-pg-group"),
    ], { name: `c3-aggregate-${topic}`, env: { DATABASE_URL: DB_URL, LOG_LEVEL: "info" } });
    let pgStopped = false;
    try {
      await until(async () => (await offsets()).every((o) => o >= half), "first half", 60_000);
      assert.ok(await stopChaosPostgres(), "the chaos PostgreSQL was running and is stopped");
      pgStopped = true;
      await sleep(700); // a checkpoint already past PostgreSQL may still land
      const before = await offsets();
      await produceStream(kafka, topic, streams, { from: half, to: per });
      await sleep(downMs);
      const during = await offsets();
      assert.deepEqual(during, before, "offsets do not advance while PostgreSQL is down");
      assert.ok(!agg.exited(), "the aggregator is still the same running process (no crash loop)");
      await ensurePostgres();
      pgStopped = false;
      const back = Date.now();
      await until(async () => (await offsets()).every((o) => o >= per), "catch-up", 120_000);
      const catchUpMs = Date.now() - back;
      const code = await agg.status; // idle timeout: exit 0
      assert.equal(code, 0, agg.lines.slice(-20).join("\n"));
      const downLines = agg.lines.filter((l) => /postgres down/.test(l)).length;
      const upLines = agg.lines.filter((l) => /postgres up/.test(l)).length;
      assert.equal(downLines, 1, "one 'postgres down' line");
      assert.equal(upLines, 1, "one 'postgres up' line");
      const pool = chaosPool();
      try {
        const expected = oracle(streams, {
          windows: [WINDOW, 5 * WINDOW],
          watermarkDelayMs: DELAY,
        });
        const stored = await readRows(pool, prefix);
        assertRowsEqual(stored, expected.rows, WINDOW);
        const late = await readLate(pool, topic);
        assert.deepEqual([...late].sort(), [...expected.late].sort());
        await summary(
          `3 database-down: ticks=${per * PARTS} pg_down=${
            downMs / 1000
          }s aggregator_processes=1 ` +
            `exit=0 down_lines=${downLines} up_lines=${upLines} offsets_frozen_while_down=yes ` +
            `catch_up_ms=${catchUpMs} rows=${stored.size} (= oracle) late=${late.size} (= oracle) ` +
            `in ${((Date.now() - t0) / 1000).toFixed(0)}s`,
        );
        await pool.query("DELETE FROM price_windows WHERE starts_with(symbol, $1)", [prefix]);
        await pool.query("DELETE FROM late_ticks WHERE topic = $1", [topic]);
      } finally {
        await pool.end();
      }
    } finally {
      if (pgStopped) await ensurePostgres().catch(() => {});
      if (!agg.exited()) {
        agg.kill("SIGTERM");
        await Promise.race([agg.status, sleep(20_000)]);
        if (!agg.exited()) agg.kill("SIGKILL");
      }
      kv.close();
      await removeKv(kvPath, topic);
      await deleteTopics(kafka, [topic]);
    }
  },
);
