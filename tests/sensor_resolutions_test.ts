// "Every path knows the resolutions", on the real Kafka, PostgreSQL and KV: the sensor forwards
// --windows/--watermark to the aggregator it launches, and refuses (exit 2, naming both settings)
// to launch one whose settings differ from the checkpoint's, in --once and in cron mode, unless
// --rebuild; an aggregator that refuses its configuration (exit 2) stops the sensor instead of
// being relaunched every check.
import assert from "node:assert/strict";
import { ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { checkpointKey, readCheckpoint } from "../aggregate/mod.ts";
import { runCli, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";

type Kafka = ReturnType<typeof testKafka>;

async function produce(kafka: Kafka, topic: string, symbols: string[], n: number, t0: number) {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: Array.from({ length: n }, (_, i) => {
        const id = symbols[i % symbols.length];
        return {
          key: id,
          value: JSON.stringify({ id, price: 10 + i, time: t0 + i * 7_000, dayVolume: 100 * i }),
          headers: { ingest_ms: String(Date.now()) },
        };
      }),
    });
  } finally {
    await producer.disconnect();
  }
}

const sensor = (topic: string, kv: string, args: string[]) =>
  runCli("sensor", [
    "sensor",
    "--topic",
    topic,
    "--kv",
    kv,
    "--trigger",
    "500ms",
    "--idle-timeout",
    "2s",
    ...args,
  ], { timeoutMs: 90_000 });

async function launches(kvPath: string, topic: string) {
  const kv = await openKv(kvPath);
  try {
    return (await kv.get<{ exitCode: number | null }[]>(["tickpipe", topic, "sensor", "launches"]))
      .value ?? [];
  } finally {
    kv.close();
  }
}

Deno.test({
  name: "sensor: --windows reach the aggregator; other settings refused (exit 2) unless --rebuild",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const pool = testPool();
    const topic = uniqueName("t-sensor-res");
    const kvPath = await tempKvPath("sensor-res");
    const tag = crypto.randomUUID().slice(0, 6).toUpperCase();
    const symbols = [`RA${tag}`, `RB${tag}`];
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureTopic(admin, topic, { partitions: 2 });
      const t0 = Date.UTC(2026, 2, 2, 15, 0);
      await produce(kafka, topic, symbols, 60, t0);

      // 1m,5m with a 2 min watermark: forwarded, and the checkpoint records them.
      const first = await sensor(topic, kvPath, [
        "--once",
        "--wait",
        "--windows",
        "5m,1m",
        "--watermark",
        "2m",
        "--idle-finalize",
        "1s",
      ]);
      assert.equal(first.code, 0, first.stderr.slice(-3000));
      assert.match(
        first.stderr,
        /launched aggregator .*--windows 5m,1m --watermark 2m --idle-finalize 1s/,
      );
      const kv = await openKv(kvPath);
      const cp = (await readCheckpoint(kv, topic))!;
      kv.close();
      assert.deepEqual(cp.pointer.engine, {
        windows: [60_000, 300_000],
        watermarkDelayMs: 120_000,
      });
      const { rows } = await pool.query(
        `SELECT extract(epoch FROM window_length)::int AS len, count(*)::int AS n,
                bool_and(is_final) AS final
           FROM price_windows WHERE topic = $1 GROUP BY 1 ORDER BY 1`,
        [topic],
      );
      // 60 ticks 7 s apart: 7 minutes of event time, per symbol; in the past, so idle
      // finalization (after 1 s) made them all final before the idle exit.
      assert.deepEqual(rows.map((r) => [r.len, r.final]), [[60, true], [300, true]]);
      assert.ok(rows[0].n >= 2 * 7 && rows[1].n >= 2 * 2, JSON.stringify(rows));

      // The defaults (5m, 15m) against that checkpoint: refused before any launch, naming both.
      const refused = await sensor(topic, kvPath, ["--once", "--wait"]);
      assert.equal(refused.code, 2, refused.stderr.slice(-3000));
      assert.match(
        refused.stderr,
        /tickpipe sensor: Topic ".*": the checkpoint was made with windows 1m,5m watermark 2m, not windows 5m watermark 15m: run with the checkpoint's --windows\/--watermark, or add --rebuild/,
      );
      assert.doesNotMatch(refused.stderr, /launched aggregator/);
      assert.equal((await launches(kvPath, topic)).length, 1);

      // Cron mode: refused at its first check, exit 2 (start then stops the tree), not a loop.
      const cron = await sensor(topic, kvPath, ["--every", "1s", "--windows", "1m"]);
      assert.equal(cron.code, 2, cron.stderr.slice(-3000));
      assert.match(cron.stderr, /not windows 1m watermark 15m/);
      assert.equal((await launches(kvPath, topic)).length, 1);

      // --rebuild: the aggregator starts over from the log start with the new settings.
      const rebuilt = await sensor(topic, kvPath, [
        "--once",
        "--wait",
        "--windows",
        "1m",
        "--rebuild",
      ]);
      assert.equal(rebuilt.code, 0, rebuilt.stderr.slice(-3000));
      assert.match(
        rebuilt.stderr,
        /decision: launch: rebuild \(--rebuild\): the checkpoint was made/,
      );
      assert.match(rebuilt.stderr, /launched aggregator .*--windows 1m --rebuild --yes/);
      const kv2 = await openKv(kvPath);
      const cp2 = (await readCheckpoint(kv2, topic))!;
      kv2.close();
      assert.deepEqual(cp2.pointer.engine, { windows: [60_000], watermarkDelayMs: 900_000 });
      // Once rebuilt, the same flags with --rebuild are an ordinary check (nothing to read).
      const again = await sensor(topic, kvPath, [
        "--once",
        "--wait",
        "--windows",
        "1m",
        "--rebuild",
      ]);
      assert.equal(again.code, 0, again.stderr.slice(-3000));
      assert.match(again.stderr, /decision: skip: no new data/);
    } finally {
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      await pool.query("DELETE FROM price_windows WHERE topic = $1", [topic]);
      await pool.query("DELETE FROM late_ticks WHERE topic = $1", [topic]);
      await pool.query("DELETE FROM aggregator_progress WHERE topic = $1", [topic]);
      await pool.end();
      for (const s of ["", "-shm", "-wal"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
});

Deno.test({
  name: "sensor: an aggregator that refuses its configuration (exit 2) stops the sensor",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-sensor-refuse");
    const kvPath = await tempKvPath("sensor-refuse");
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureTopic(admin, topic, { partitions: 1 });
      await produce(kafka, topic, [`RX${crypto.randomUUID().slice(0, 6)}`], 3, Date.now() - 60_000);
      // A v1 checkpoint (5-minute windows, before the engine settings were recorded): the sensor
      // cannot tell, so it launches; the aggregator refuses --windows 1m with exit 2.
      const kv = await openKv(kvPath);
      await kv.set(checkpointKey(topic), {
        generation: 1,
        runId: "v1",
        batchId: 0,
        committedAt: Date.now(),
        offsets: { "0": 0 },
        watermarks: { "0": null },
        chunks: 0,
        stateBytes: 0,
      });
      kv.close();
      const started = Date.now();
      const r = await sensor(topic, kvPath, ["--every", "1s", "--windows", "1m"]);
      assert.equal(r.code, 2, r.stderr.slice(-3000));
      assert.match(
        r.stderr,
        /\[aggregate\] tickpipe aggregate: The checkpoint of topic .* windows 5m watermark 15m, not windows 1m watermark 15m/,
      );
      assert.match(
        r.stderr,
        /The aggregator refused its configuration \(exit 2, its message is above\)/,
      );
      const l = await launches(kvPath, topic);
      assert.equal(l.length, 1, "launched once, not again at every check");
      assert.equal(l[0].exitCode, 2);
      assert.ok(Date.now() - started < 60_000);
    } finally {
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      for (const s of ["", "-shm", "-wal"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
});
