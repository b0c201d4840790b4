// `tickpipe status --json` against the real Kafka, PostgreSQL and a KV file:
// end offsets, dead letters and lag agree with what was produced.
import assert from "node:assert/strict";
import { ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { writeDelta } from "../aggregate/checkpoint.ts";
import { runCli, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";

Deno.test({
  name: "status: --json reports end offsets, dead letters, lag and reachability",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    const topic = uniqueName("t-status");
    const kvPath = await tempKvPath("status");
    const pool = testPool();
    const symbol = `ST${crypto.randomUUID().slice(0, 8).toUpperCase()}`;
    try {
      await ensureTopic(admin, topic, { partitions: 3 });
      await ensureTopic(admin, `${topic}.dlq`, { partitions: 1 });
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      await producer.sendBatch({
        acks: -1,
        topicMessages: [
          {
            topic,
            messages: Array.from({ length: 12 }, (_, i) => ({
              partition: i % 3,
              key: `S${i}`,
              value: JSON.stringify({ id: `S${i}`, price: 1 + i, time: 1_700_000_000_000 + i }),
            })),
          },
          {
            topic: `${topic}.dlq`,
            messages: [{ value: "garbage", headers: { reason: "bad_json" } }],
          },
        ],
      });
      await producer.disconnect();
      const r = await runCli("status", [
        "status",
        "--json",
        "--no-rate",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout);
      assert.equal(s.topic, topic);
      assert.equal(s.kafka.reachable, true);
      assert.equal(s.postgres.reachable, true);
      assert.ok(!r.stdout.includes(":postgres@"), "password redacted");
      assert.deepEqual(s.partitions.map((p: { endOffset: number }) => p.endOffset), [4, 4, 4]);
      assert.equal(s.ticksInTopic, 12);
      assert.equal(s.deadLetters, 1);
      assert.equal(s.totalLag, 12, "nothing stored yet: everything is unread");
      assert.equal(s.lease, null);
      assert.equal(typeof s.windows.total, "number");
      assert.equal(s.checkpoint, null);
      // A v2 checkpoint (base + deltas): stored offsets, lag and its summary.
      const kv = await openKv(kvPath);
      try {
        const meta = {
          runId: "r",
          batchId: 3,
          committedAt: Date.now(),
          offsets: { "0": 4, "1": 1, "2": 0 },
          watermarks: { "0": 1_700_000_000_000, "1": null, "2": null },
          engine: { windows: [300_000], watermarkDelayMs: 900_000 },
          identity: { partitions: 3, fingerprints: { "0": null, "1": null, "2": null } },
          openWindows: 1,
          finalizeDueAt: null,
        };
        const rec = {
          kind: "baseline" as const,
          partition: 0,
          symbol: "S0",
          dayVolume: 5,
        };
        const w1 = await writeDelta(kv, topic, { ...meta, records: [rec] }, { previous: null });
        await writeDelta(kv, topic, { ...meta, batchId: 4, records: [{ ...rec, symbol: "S3" }] }, {
          previous: w1.checkpoint,
        });
      } finally {
        kv.close();
      }
      // Rows of this topic at two resolutions, a row of another topic (not counted), late ticks.
      const base = Date.UTC(2026, 0, 5, 14, 30);
      const win = (t: string, len: number, start: number, final: boolean, volume: number) => [
        t,
        symbol,
        `${len / 1000} seconds`,
        new Date(start),
        new Date(start + len),
        final,
        volume,
      ];
      await pool.query(
        `INSERT INTO price_windows (topic, symbol, window_length, window_start, window_end,
                                    is_final, volume, pv_sum, vwap, avg_price, open_price,
                                    high_price, low_price, close_price, tick_count,
                                    kafka_partition, last_offset, price_sum, first_tick_at,
                                    last_tick_at)
         SELECT t, s, l::interval, ws, we, f, v, v * 10, CASE WHEN v > 0 THEN 10 END, 10, 10, 10,
                10, 10, 1, 0, 0, 10, ws, ws
           FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                       $6::boolean[], $7::float8[]) AS x(t, s, l, ws, we, f, v)`,
        [0, 1, 2, 3, 4, 5, 6].map((i) =>
          [
            win(topic, 60_000, base, true, 5),
            win(topic, 60_000, base + 60_000, false, 0),
            win(topic, 300_000, base, false, 5),
            win(`${topic}-other`, 60_000, base, true, 5),
          ].map((r) => r[i])
        ),
      );
      await pool.query(
        `INSERT INTO late_ticks (topic, symbol, event_time, price, kafka_partition, kafka_offset,
                                 watermark, late_for)
         VALUES ($1, $2, $3, 9.5, 0, 7, $3, ARRAY[interval '1 minute', interval '5 minutes']),
                ($4, $2, $3, 9.5, 0, 7, $3, NULL)`,
        [topic, symbol, new Date(base - 600_000), `${topic}-other`],
      );
      const r2 = await runCli("status", [
        "status",
        "--json",
        "--no-rate",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(r2.code, 0, r2.stderr);
      const s2 = JSON.parse(r2.stdout);
      assert.deepEqual(
        s2.partitions.map((
          p: { storedOffset: number | null; lag: number },
        ) => [p.storedOffset, p.lag]),
        [[4, 0], [1, 3], [0, 4]],
      );
      assert.equal(s2.totalLag, 7);
      assert.equal(s2.checkpoint.generation, 2);
      assert.equal(s2.checkpoint.batchId, 4);
      assert.ok(s2.checkpoint.stateBytes > 0);
      assert.deepEqual(s2.checkpoint.windows, [300_000]);
      assert.equal(s2.checkpoint.watermarkDelayMs, 900_000);
      // Windows per topic and resolution; late ticks of this topic only.
      assert.deepEqual(s2.windows.byResolution, [
        {
          windowMs: 60_000,
          total: 2,
          final: 1,
          finalThrough: new Date(base + 60_000).toISOString(),
        },
        { windowMs: 300_000, total: 1, final: 0, finalThrough: null },
      ]);
      assert.equal(s2.windows.total, 3);
      assert.equal(s2.windows.final, 1);
      assert.deepEqual(
        s2.windows.newest.map((w: { windowMs: number; windowStart: string; vwap: number }) => [
          w.windowMs,
          Date.parse(w.windowStart) - base,
          w.vwap,
        ]),
        [[60_000, 60_000, null], [60_000, 0, 10], [300_000, 0, 10]],
      );
      assert.equal(s2.lateTicks.total, 1);
      const text = await runCli("status", [
        "status",
        "--no-rate",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /by length 1m: 2 \(1 final through 14:31:00\), 5m: 1 \(0 final\)/);
      assert.match(text.stdout, /engine {5}windows 5m, watermark 15m, 1 open windows/);
      assert.match(text.stdout, /late ticks 1 in late_ticks, newest: .* late for 1m,5m/);
      assert.match(text.stdout, new RegExp(`${symbol}\\s+5m\\s+14:30 .* no$`, "m"));
    } finally {
      await pool.query("DELETE FROM price_windows WHERE symbol = $1", [symbol]);
      await pool.query("DELETE FROM late_ticks WHERE symbol = $1", [symbol]);
      await pool.end();
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      await Deno.remove(kvPath).catch(() => {});
    }
  },
});
