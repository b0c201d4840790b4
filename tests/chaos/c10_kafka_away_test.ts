// Chaos 10: the chaos broker is killed under a running aggregator and comes back after a while
// (60 s in the full profile): the aggregator stays the same process (no crash loop, no exit),
// does not advance its offsets while Kafka is away, reads what arrives afterwards, exits 0 on
// idle, and its rows and late ticks equal the oracle.
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
  killKafka,
  pick,
  removeKv,
  sleep,
  spawnCli,
  summary,
  testOpts,
  uniq,
  until,
} from "./_harness.ts";

const WINDOW = 60_000;
const DELAY = 180_000;
const PARTS = 3;

Deno.test(
  "chaos 10: Kafka taken away from a running aggregator, then back",
  testOpts,
  async () => {
    const awayMs = pick(11_000, 60_000);
    const per = pick(3000, 20_000);
    const t0 = Date.now();
    await ensureKafka();
    await ensurePostgres();
    let kafka = chaosKafka();
    const topic = uniq("chaos-kafka-away");
    const prefix = `C10${crypto.randomUUID().slice(0, 6)}_`;
    const kvPath = `${CHAOS_DIR}/${topic}.kv`;
    const kv = await openKv(kvPath);
    await createTopics(kafka, [topic], PARTS);
    const streams = generateStream({
      seed: 1010,
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
      // Shorter than the outage: were time without Kafka counted as idle, the run would exit
      // while Kafka is away (asserted not to); it still exits on idle once caught up.
      "--idle-timeout",
      "6s",
      "--windows",
      "1m,5m", // two resolutions, each checked against the oracle
      "--watermark",
      "3m",
      "--lease-ttl",
      "3s",
      "--group",
      uniq("chaos-away-group"),
    ], { name: `c10-aggregate-${topic}`, env: { DATABASE_URL: DB_URL, LOG_LEVEL: "info" } });
    let brokerDown = false;
    try {
      await until(async () => (await offsets()).every((o) => o >= half), "first half", 60_000);
      assert.ok(await killKafka(), "the chaos broker was running and is killed");
      brokerDown = true;
      const before = await offsets();
      await sleep(awayMs);
      assert.deepEqual(await offsets(), before, "offsets do not move while Kafka is away");
      assert.ok(!agg.exited(), "the aggregator is still the same running process");
      await ensureKafka();
      brokerDown = false;
      kafka = chaosKafka();
      const back = Date.now();
      await produceStream(kafka, topic, streams, { from: half, to: per });
      await until(async () => (await offsets()).every((o) => o >= per), "catch-up", 180_000);
      const catchUpMs = Date.now() - back;
      const code = await agg.status;
      assert.equal(code, 0, agg.lines.slice(-30).join("\n"));
      const downLines = agg.lines.filter((l) => /kafka down/.test(l)).length;
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
          `10 kafka-away: ticks=${per * PARTS} away=${awayMs / 1000}s aggregator_processes=1 ` +
            `exit=0 kafka_down_lines=${downLines} offsets_frozen_while_away=yes ` +
            `catch_up_ms=${catchUpMs} rows=${stored.size} (= oracle) late=${late.size} ` +
            `(= oracle) in ${((Date.now() - t0) / 1000).toFixed(0)}s`,
        );
        await pool.query("DELETE FROM price_windows WHERE starts_with(symbol, $1)", [prefix]);
        await pool.query("DELETE FROM late_ticks WHERE topic = $1", [topic]);
      } finally {
        await pool.end();
      }
    } finally {
      if (brokerDown) await ensureKafka().catch(() => {});
      if (!agg.exited()) {
        agg.kill("SIGTERM");
        await Promise.race([agg.status, sleep(20_000)]);
        if (!agg.exited()) agg.kill("SIGKILL");
      }
      kv.close();
      await removeKv(kvPath, topic);
      await deleteTopics(chaosKafka(), [topic]);
    }
  },
);
