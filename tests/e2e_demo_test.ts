// `deno task demo --duration 60` on the real services: sets itself up (a fresh demo topic), runs
// the whole pipeline against the simulator on a 20x event clock and exits 0 with a summary that
// shows windows turning final at 1m and 5m side by side, late ticks, volume and VWAP. The rows it
// leaves equal an independent oracle over the ticks in Kafka (both resolutions, volume, VWAP,
// finality), late_ticks holds exactly the oracle's late ticks, the simulator's port is free and
// the aggregator's lease released. Uses the demo's topic and the default KV.
import assert from "node:assert/strict";
import { openKv } from "../common/kv.ts";
import { readCheckpoint, readLease } from "../aggregate/mod.ts";
import { DEMO_SYMBOLS, DEMO_TOPIC } from "../pipeline/demo_main.ts";
import { config, runCli, testKafka, testPool } from "./_helpers/env.ts";
import { assertRowsEqual, oracle, readLate, readRows } from "./_helpers/aggregate_stream.ts";
import { asStream, readTopic } from "./_helpers/e2e_pipeline.ts";

const WINDOWS = [60_000, 300_000];
const WATERMARK_MS = 120_000;

Deno.test({
  name: "e2e demo: --duration 60 shows final 1m/5m windows, late ticks, volume and VWAP",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const r = await runCli("demo", ["demo", "--duration", "60"], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
    assert.match(r.stdout, /^tickpipe demo: simulator ws:\/\/127\.0\.0\.1:8765/m, "piped header");
    assert.match(r.stdout, /windows 1m,5m, watermark 2m, event time 20x/);
    assert.match(
      r.stdout,
      /^t\+\d+s \| ticks \d+ \(\d+\/s\) \| dlq \d+ \| lag \d+ .*\| event clock \d\d:\d\d:\d\d/m,
      "progress lines",
    );
    assert.ok(!r.stdout.includes("\x1b["), "no escape sequences when piped");
    assert.match(r.stderr, /fresh demo topic: its records, checkpoint and rows were removed/);
    const summary =
      /summary: .* (\d+) windows of .* \((\d+) final: 1m: \d+ \((\d+) final through [\d:]+\), 5m: \d+ \((\d+) final through [\d:]+\)\); (\d+) late ticks in late_ticks; exit codes: simulate 0, ingest 0, sensor 0/
        .exec(r.stdout);
    assert.ok(summary, r.stdout.slice(-3000));
    const [windows, final, final1m, final5m, late] = summary.slice(1).map(Number);
    assert.ok(windows > 0 && final > 0 && final1m > 0 && final5m > 0 && late > 0, summary[0]);
    // The latest final candles, 1m and 5m side by side, with volume and VWAP ("-" for FX).
    assert.match(r.stdout, /^ +1m windows -+ +5m windows -+$/m);
    assert.match(r.stdout, /^AAPL +\d\d:\d\d +[\d.]+ +[\d.]+[kM]? +[\d.]+ +\d+ final +\d\d:\d\d /m);
    assert.match(r.stdout, /^EURUSD=X +\d\d:\d\d +[\d.]+ +0 +- +\d+ final/m);
    assert.match(
      r.stdout,
      /newest late ticks \(in late_ticks\):\n {2}\S+ at [\d:]+ .* late for 1m,5m/,
    );

    // The rows equal the oracle over the ticks the final checkpoint covers.
    const kafka = testKafka();
    const pool = testPool();
    const kv = await openKv(config.kvPath);
    try {
      const cp = await readCheckpoint(kv, DEMO_TOPIC);
      assert.ok(cp, "a final checkpoint");
      assert.deepEqual(cp.pointer.engine, { windows: WINDOWS, watermarkDelayMs: WATERMARK_MS });
      const records = await readTopic(kafka, DEMO_TOPIC);
      // The demo empties its topic's records at start: offsets continue from the old end.
      const base = records.map((p) => p[0]?.offset ?? 0);
      const rebased = records.map((p, i) => p.map((x) => ({ ...x, offset: x.offset - base[i] })));
      const below = Object.fromEntries(
        Object.entries(cp.pointer.offsets).map(([p, o]) => [p, o - base[Number(p)]]),
      );
      const expected = oracle(asStream(rebased, below), {
        windows: WINDOWS,
        watermarkDelayMs: WATERMARK_MS,
      });
      const stored = await readRows(pool, "", { topic: DEMO_TOPIC });
      // Kafka partitions are oracle partitions; offsets in rows are Kafka's.
      const rows = new Map([...stored].map(([k, v]) => [k, {
        ...v,
        lastOffset: v.lastOffset - base[v.partition],
      }]));
      assertRowsEqual(rows, expected.rows);
      const lateStored = await readLate(pool, DEMO_TOPIC);
      const lateRebased = new Set([...lateStored].map((k) => {
        const [p, o] = k.split(":").map(Number);
        return `${p}:${o - base[p]}`;
      }));
      assert.deepEqual([...lateRebased].sort(), [...expected.late].sort(), "late ticks");
      assert.equal(lateStored.size, late);
      // Every symbol has windows at both resolutions; VWAP where there is volume, none for FX.
      for (const sym of DEMO_SYMBOLS.split(",")) {
        for (const w of WINDOWS) {
          const mine = [...stored.values()].filter((x) => x.symbol === sym && x.windowMs === w);
          assert.ok(mine.some((x) => x.isFinal), `${sym} ${w}: a final window`);
          if (sym.endsWith("=X")) assert.ok(mine.every((x) => x.volume === 0 && x.vwap === null));
          else assert.ok(mine.some((x) => x.volume > 0 && x.vwap !== null), `${sym}: VWAP`);
        }
      }
      const { rows: lf } = await pool.query(
        `SELECT count(*)::int AS n FROM late_ticks
          WHERE topic = $1 AND late_for = ARRAY[interval '1 minute', interval '5 minutes']`,
        [DEMO_TOPIC],
      );
      assert.ok(lf[0].n > 0, "late ticks name the resolutions that dropped them");
      // Everything stopped: the simulator's port is free, the aggregator released its lease.
      const l = Deno.listen({ hostname: "127.0.0.1", port: 8765 });
      l.close();
      assert.equal(await readLease(kv, DEMO_TOPIC), null);
    } finally {
      kv.close();
      await pool.end();
    }
  },
});
