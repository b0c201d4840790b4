// The dashboard's data module against the real PostgreSQL, Kafka and Deno KV: windows written by
// the real sink (random, with gaps, two resolutions) read back as the latest `bars` gap-free
// candles per chart equal a simple oracle; late ticks are counted per resolution and window;
// partitions, lag, watermarks and the aggregator come from Kafka and KV; the resolutions come
// from KV, else from the table; PostgreSQL being down is shown, not thrown.
import assert from "node:assert/strict";
import { type LateTick, type WindowRow, writeBatch } from "../aggregate/sink.ts";
import { checkpointKey, leaseKey, progressKey } from "../aggregate/kv_layout.ts";
import { ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { createPool } from "../common/pg.ts";
import {
  collectDashboard,
  discoverSymbols,
  readCandles,
  readLateTicks,
  readResolutions,
} from "../pipeline/web/data.ts";
import type { CandleView, ProcessView } from "../pipeline/web/types.ts";
import { config, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";
import { cleanupRows } from "./_helpers/aggregate_stream.ts";
import { mulberry32 as prng } from "../common/prng.ts";
import { randomPrefix } from "./_helpers/e2e_pipeline.ts";

const T0 = Date.UTC(2026, 5, 1, 9, 0);
const RES = [60_000, 300_000];

function windowRow(symbol: string, windowMs: number, start: number, r: () => number): WindowRow {
  const p = () => 100 + Math.round(r() * 10_000) / 100;
  const [a, b] = [p(), p()];
  const count = 1 + Math.floor(r() * 40);
  const volume = r() < 0.3 ? 0 : Math.floor(r() * 1e4);
  return {
    symbol,
    windowMs,
    windowStart: start,
    windowEnd: start + windowMs,
    count,
    sum: a * count,
    avg: a,
    open: a,
    high: Math.max(a, b) + 1,
    low: Math.min(a, b) - 1,
    close: b,
    firstEventTime: start,
    lastEventTime: start + windowMs - 1,
    partition: 0,
    lastOffset: Math.floor(r() * 1e6),
    isFinal: r() < 0.5,
    volume,
    pvSum: volume * a,
    vwap: volume === 0 ? null : a,
  };
}

/** The oracle: the last `bars` buckets up to a chart's latest window, gaps carrying the close. */
function expectedCandles(rows: WindowRow[], windowMs: number, bars: number): CandleView[] {
  if (rows.length === 0) return [];
  const sorted = [...rows].sort((a, b) => a.windowStart - b.windowStart);
  const byStart = new Map(sorted.map((w) => [w.windowStart, w]));
  const last = sorted.at(-1)!.windowStart;
  const first = Math.max(sorted[0].windowStart, last - (bars - 1) * windowMs);
  const lastFinal = sorted.filter((w) => w.isFinal).at(-1)?.windowStart ?? null;
  const out: CandleView[] = [];
  for (let t = first; t <= last; t += windowMs) {
    const w = byStart.get(t);
    if (w) {
      out.push({
        t,
        o: w.open,
        h: w.high,
        l: w.low,
        c: w.close,
        n: w.count,
        v: w.volume,
        vwap: w.vwap,
        final: w.isFinal,
        filled: false,
      });
    } else {
      const c = sorted.filter((x) => x.windowStart < t).at(-1)!.close;
      out.push({
        t,
        o: c,
        h: c,
        l: c,
        c,
        n: 0,
        v: 0,
        vwap: null,
        final: lastFinal !== null && t < lastFinal,
        filled: true,
      });
    }
  }
  return out;
}

const pg = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "dashboard data: candles, late ticks, partitions and processes from the real services",
  ...pg,
  async fn() {
    const topic = uniqueName("t-dash-data");
    const prefix = randomPrefix();
    const symbols = [`${prefix}A`, `${prefix}B`, `${prefix}C`];
    const none = `${prefix}NONE`;
    const kvPath = await tempKvPath("dash-data");
    const pool = testPool();
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    const kv = await openKv(kvPath);
    try {
      // Windows with random gaps; C has no 1-minute windows at all.
      const r = prng(20261);
      const rows: WindowRow[] = [];
      for (const symbol of symbols) {
        for (const windowMs of RES) {
          if (symbol.endsWith("C") && windowMs === 60_000) continue;
          const n = windowMs === 60_000 ? 40 : 9;
          for (let i = 0; i < n; i++) {
            if (r() < 0.3) continue;
            rows.push(windowRow(symbol, windowMs, T0 + i * windowMs, r));
          }
        }
      }
      const late: LateTick[] = [
        { lateFor: [60_000] },
        { lateFor: [60_000, 300_000] },
        { lateFor: [300_000] },
        { lateFor: [] }, // as written before v2 (no resolutions): counted in the total only
      ].map((x, i) => ({
        symbol: symbols[0],
        eventTime: T0 + 35 * 60_000 + i * 1000,
        price: 1,
        partition: 0,
        offset: 1000 + i,
        watermark: T0,
        lateFor: x.lateFor,
      }));
      await writeBatch(pool, { topic, windows: rows, late });
      await pool.query(
        `UPDATE late_ticks SET late_for = NULL WHERE topic = $1 AND cardinality(late_for) = 0`,
        [topic],
      );

      // Candles: the latest `bars` per chart equal the oracle, for several bar counts.
      for (const bars of [1, 5, 12, 120]) {
        const got = await readCandles(pool, {
          topic,
          symbols: [...symbols, none],
          resolutions: RES,
          bars,
        });
        for (const symbol of [...symbols, none]) {
          for (const windowMs of RES) {
            const mine = rows.filter((w) => w.symbol === symbol && w.windowMs === windowMs);
            assert.deepEqual(
              got.filter((x) => x.symbol === symbol && x.windowMs === windowMs).map((x) =>
                x.candle
              ),
              expectedCandles(mine, windowMs, bars),
              `${symbol} ${windowMs} bars ${bars}`,
            );
          }
        }
      }

      // Late ticks: per resolution and window, and once per tick in the total.
      const lt = await readLateTicks(pool, { topic, symbols });
      const bucket = (ms: number) => Math.floor((T0 + 35 * 60_000) / ms) * ms;
      assert.deepEqual(lt.rows, [
        { symbol: symbols[0], windowMs: 60_000, t: bucket(60_000), n: 2 },
        { symbol: symbols[0], windowMs: 300_000, t: bucket(300_000), n: 2 },
      ]);
      assert.deepEqual([...lt.totals], [[symbols[0], 4]]);

      // Symbols, resolutions from the table (nothing in KV yet), then the default.
      const found = await discoverSymbols(pool, { topic });
      assert.deepEqual(found, [...symbols].sort());
      assert.deepEqual(await readResolutions({ kv, pool }, { topic, symbols }), RES);
      assert.deepEqual(await readResolutions({ kv, pool }, { topic, symbols: [none] }), [300_000]);

      // Kafka: two partitions with 5 and 3 records; KV: checkpoint, lease and progress.
      await ensureTopic(admin, topic, { partitions: 2 });
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({
        topic,
        messages: [0, 0, 0, 0, 0, 1, 1, 1].map((partition, i) => ({
          partition,
          key: "k",
          value: String(i),
        })),
      });
      await producer.disconnect();
      const now = Date.now();
      await kv.set(checkpointKey(topic), {
        version: 2,
        runId: "run-1",
        batchId: 7,
        committedAt: now - 4000,
        offsets: { "0": 2, "1": 3 },
        watermarks: { "0": T0 + 1234, "1": null },
        base: null,
        deltas: [],
        nextGeneration: 1,
        garbage: [],
        compacting: null,
        engine: { windows: [300_000, 60_000], watermarkDelayMs: 900_000 },
        identity: { partitions: 2, fingerprints: {} },
        openWindows: 3,
        finalizeDueAt: null,
      });
      assert.deepEqual(await readResolutions({ kv, pool }, { topic, symbols: [none] }), RES);
      await kv.set(leaseKey(topic), {
        holder: "h-1",
        pid: 4242,
        hostname: "host",
        acquiredAt: now - 60_000,
        expiresAt: now + 60_000,
      });
      await kv.set(progressKey(topic), {
        runId: "run-1",
        batchId: 7,
        topic,
        timestamp: new Date(now - 4000).toISOString(),
        inputRows: 8,
        invalidRows: 0,
        rowsPerSecond: 2,
        watermarks: { "0": T0 + 1234, "1": null },
        windowsUpdated: 5,
        windowsFinalized: 2,
        lateDropped: 1,
        windows: RES,
        openWindows: 3,
        offsets: { "0": 2, "1": 3 },
        lag: { "0": 3, "1": 0 },
        durationsMs: { fetchMs: 1, foldMs: 1, triggerMs: 1, sinkMs: 1, checkpointMs: 1 },
        reason: "interval",
      });

      const supervised: ProcessView[] = [{
        name: "ingest",
        state: "running",
        pid: 11,
        since: now - 1000,
        starts: 1,
        lastExit: null,
        detail: "",
      }];
      const cfg = { ...config, topic, kvPath };
      const first = await collectDashboard(cfg, { kafka, pool, kv }, {
        symbols,
        bars: 12,
        processes: supervised,
      });
      assert.equal(first.topic, topic);
      assert.deepEqual(first.resolutions, RES);
      assert.deepEqual(first.partitions, [
        { partition: 0, endOffset: 5, storedOffset: 2, lag: 3, watermark: T0 + 1234 },
        { partition: 1, endOffset: 3, storedOffset: 3, lag: 0, watermark: null },
      ]);
      assert.equal(first.pipeline.totalLag, 3);
      assert.equal(first.pipeline.ticksInTopic, 8);
      assert.equal(first.pipeline.ratePerSec, null, "no previous snapshot: no rate");
      assert.deepEqual(first.pipeline.lastTrigger, {
        batchId: 7,
        at: now - 4000,
        reason: "interval",
        inputRows: 8,
        windowsUpdated: 5,
        windowsFinalized: 2,
        lateDropped: 1,
        openWindows: 3,
      });
      assert.equal(first.pipeline.checkpointAt, now - 4000);
      assert.deepEqual(first.pipeline.postgres, { reachable: true, error: null });
      assert.deepEqual(first.processes.map((p) => [p.name, p.state, p.pid]), [
        ["ingest", "running", 11],
        ["aggregator", "running", 4242],
      ]);
      // Charts: the oracle's candles; the last close is the database's latest 1-minute close.
      for (const view of first.symbols) {
        for (const s of view.series) {
          const mine = rows.filter((w) => w.symbol === view.symbol && w.windowMs === s.windowMs);
          assert.deepEqual(s.candles, expectedCandles(mine, s.windowMs, 12));
        }
        const { rows: db } = await pool.query(
          `SELECT close_price, window_start FROM price_windows
            WHERE topic = $1 AND symbol = $2 ORDER BY window_length, window_start DESC LIMIT 1`,
          [topic, view.symbol],
        );
        assert.equal(view.lastClose, db[0].close_price, view.symbol);
        assert.equal(view.lastStart, db[0].window_start.getTime(), view.symbol);
      }
      assert.deepEqual(first.symbols.map((s) => s.late), [4, 0, 0]);
      assert.deepEqual(first.symbols[0].series.map((s) => s.late), [2, 2]);

      // A second snapshot: the arrival rate from the first.
      const second = await collectDashboard(cfg, { kafka, pool, kv, now: () => first.at + 2000 }, {
        symbols,
        previous: { ...first, pipeline: { ...first.pipeline, ticksInTopic: 4 } },
      });
      assert.equal(second.pipeline.ratePerSec, 2, "(8 - 4) ticks over 2 s");

      // PostgreSQL down: shown, not thrown.
      const dead = createPool("postgres://postgres:postgres@127.0.0.1:1/tickpipe", {
        applicationName: "tickpipe-test",
      });
      try {
        const down = await collectDashboard(cfg, { kafka, pool: dead, kv }, { symbols });
        assert.equal(down.pipeline.postgres.reachable, false);
        assert.ok(down.pipeline.postgres.error, "says why");
        assert.deepEqual(down.symbols.map((s) => s.series.map((x) => x.candles.length)), [
          [0, 0],
          [0, 0],
          [0, 0],
        ]);
        assert.equal(down.partitions.length, 2, "Kafka and KV still shown");
      } finally {
        await dead.end().catch(() => {});
      }
    } finally {
      kv.close();
      await cleanupRows(pool, prefix, topic).catch(() => {});
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
      await pool.end();
      for (const s of ["", "-shm", "-wal"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
});
