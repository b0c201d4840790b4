// candles() (sql/005_candles.sql) against an oracle written in TypeScript: random windows with
// gaps for several topics, symbols and resolutions, random ranges (inside gaps, before the first
// window, after the last one), and a daily resolution across a DST change in a non-UTC session.
import assert from "node:assert/strict";
import { type WindowRow, writeBatch } from "../aggregate/sink.ts";
import type { Pool } from "../common/pg.ts";
import { migrate } from "../sql/migrate.ts";
import { testPool, uniqueName } from "./_helpers/env.ts";
import { mulberry32 as rng } from "../common/prng.ts";

const pg = { sanitizeResources: false, sanitizeOps: false };
const T0 = Date.UTC(2026, 2, 1); // a multiple of every resolution used below

/** One row of candles(), times in epoch ms. */
interface Candle {
  start: number;
  end: number;
  open: number;
  high: number;
  low: number;
  close: number;
  avg: number | null;
  count: number;
  volume: number;
  vwap: number | null;
  isFinal: boolean;
  filled: boolean;
}

/** The oracle: the documented semantics of candles(), over the windows of one key. */
function oracle(windows: readonly WindowRow[], resMs: number, from: number, to: number): Candle[] {
  if (windows.length === 0) return [];
  const sorted = [...windows].sort((a, b) => a.windowStart - b.windowStart);
  const at = new Map(sorted.map((w) => [w.windowStart, w]));
  const first = sorted[0].windowStart;
  const lo = Math.max(Math.floor(from / resMs) * resMs, first);
  const finals = sorted.filter((w) => w.isFinal);
  const lastFinal = finals.length > 0 ? finals[finals.length - 1].windowStart : null;
  const out: Candle[] = [];
  for (let b = lo; b < to; b += resMs) {
    const w = at.get(b);
    if (w !== undefined) {
      out.push({
        start: b,
        end: w.windowEnd,
        open: w.open,
        high: w.high,
        low: w.low,
        close: w.close,
        avg: w.avg,
        count: w.count,
        volume: w.volume,
        vwap: w.vwap,
        isFinal: w.isFinal,
        filled: false,
      });
      continue;
    }
    const prev = sorted.filter((x) => x.windowStart < b).pop()!;
    out.push({
      start: b,
      end: b + resMs,
      open: prev.close,
      high: prev.close,
      low: prev.close,
      close: prev.close,
      avg: null,
      count: 0,
      volume: 0,
      vwap: null,
      isFinal: lastFinal !== null && b < lastFinal,
      filled: true,
    });
  }
  return out;
}

interface CandleSqlRow {
  window_start: Date;
  window_end: Date;
  open_price: number;
  high_price: number;
  low_price: number;
  close_price: number;
  avg_price: number | null;
  tick_count: string;
  volume: number;
  vwap: number | null;
  is_final: boolean;
  filled: boolean;
}

async function candles(
  db: Pool | { query: Pool["query"] },
  args: { topic: string; symbol: string; resolution: string; from: number; to: number },
): Promise<Candle[]> {
  const { rows } = await (db as Pool).query<CandleSqlRow>(
    "SELECT * FROM candles($1, $2, $3::interval, $4, $5)",
    [args.topic, args.symbol, args.resolution, new Date(args.from), new Date(args.to)],
  );
  return rows.map((r) => ({
    start: r.window_start.getTime(),
    end: r.window_end.getTime(),
    open: r.open_price,
    high: r.high_price,
    low: r.low_price,
    close: r.close_price,
    avg: r.avg_price,
    count: Number(r.tick_count),
    volume: r.volume,
    vwap: r.vwap,
    isFinal: r.is_final,
    filled: r.filled,
  }));
}

function window(symbol: string, windowMs: number, windowStart: number, r: () => number): WindowRow {
  const p = () => Math.round(r() * 1e6) / 100;
  const [a, b, c, d] = [p(), p(), p(), p()];
  const volume = r() < 0.3 ? 0 : Math.floor(r() * 1e4);
  const count = 1 + Math.floor(r() * 50);
  return {
    symbol,
    windowMs,
    windowStart,
    windowEnd: windowStart + windowMs,
    count,
    sum: a * count,
    avg: a,
    open: b,
    high: Math.max(a, b, c, d),
    low: Math.min(a, b, c, d),
    close: c,
    firstEventTime: windowStart,
    lastEventTime: windowStart + windowMs - 1,
    partition: 0,
    lastOffset: Math.floor(r() * 1e6),
    isFinal: false,
    volume,
    pvSum: volume * d,
    vwap: volume === 0 ? null : d,
  };
}

async function withTopics(fn: (pool: Pool, topics: string[]) => Promise<void>): Promise<void> {
  const pool = testPool();
  const topics = [uniqueName("candles-a"), uniqueName("candles-b")];
  try {
    await migrate(pool);
    await fn(pool, topics);
  } finally {
    for (const t of topics) {
      await pool.query("DELETE FROM price_windows WHERE topic = $1", [t]).catch(() => {});
    }
    await pool.end();
  }
}

Deno.test({
  name: "candles: random windows with gaps, topics, resolutions and ranges equal the oracle",
  ...pg,
  async fn() {
    await withTopics(async (pool, topics) => {
      const r = rng(14);
      const resolutions = [60_000, 300_000, 3_600_000];
      const symbols = ["S1", "S2", "S3"];
      const data = new Map<string, WindowRow[]>();
      for (const topic of topics) {
        const rows: WindowRow[] = [];
        for (const symbol of symbols) {
          for (const res of resolutions) {
            const key = `${topic}/${symbol}/${res}`;
            if (symbol === "S3" && res === 300_000) { // no windows at all at this resolution
              data.set(key, []);
              continue;
            }
            const density = [0.15, 0.5, 0.9][Math.floor(r() * 3)];
            const offset = Math.floor(r() * 20); // the symbol's first bucket
            const finalBefore = Math.floor(r() * 70);
            const ws: WindowRow[] = [];
            for (let k = offset; k < 70; k++) {
              if (k !== offset && r() > density) continue;
              const w = window(symbol, res, T0 + k * res, r);
              w.isFinal = k < finalBefore;
              ws.push(w);
            }
            data.set(key, ws);
            rows.push(...ws);
          }
        }
        const res = await writeBatch(pool, { topic, windows: rows }, { sliceSize: 97 });
        assert.equal(res.windowsWritten, rows.length);
      }
      let checked = 0;
      let filled = 0;
      let carriedFromBeforeRange = 0;
      for (let q = 0; q < 150; q++) {
        const topic = topics[Math.floor(r() * topics.length)];
        const symbol = [...symbols, "NONE"][Math.floor(r() * 4)];
        const res = resolutions[Math.floor(r() * resolutions.length)];
        // from/to anywhere from 5 buckets before the data to 10 after, aligned or not.
        const pick = () =>
          T0 + Math.floor((r() * 85 - 5) * res) +
          (r() < 0.5 ? 0 : Math.floor(r() * res) - Math.floor(res / 2));
        let from = pick();
        let to = pick();
        if (r() < 0.8 && from > to) [from, to] = [to, from];
        const resolution = r() < 0.5 ? `${res / 1000} seconds` : `${res / 60_000} minutes`;
        const want = oracle(data.get(`${topic}/${symbol}/${res}`) ?? [], res, from, to);
        const got = await candles(pool, { topic, symbol, resolution, from, to });
        assert.deepEqual(got, want, `${topic} ${symbol} ${resolution} [${from}, ${to})`);
        checked += got.length;
        filled += got.filter((c) => c.filled).length;
        if (got.length > 0 && got[0].filled) carriedFromBeforeRange++;
      }
      // The random ranges did reach the interesting cases.
      assert.ok(checked > 1000, `rows checked: ${checked}`);
      assert.ok(filled > 200, `filled rows: ${filled}`);
      assert.ok(carriedFromBeforeRange > 5, `ranges starting in a gap: ${carriedFromBeforeRange}`);
    });
  },
});

Deno.test({
  name: "candles: a range inside a gap carries the close from before it; p_to is exclusive",
  ...pg,
  async fn() {
    await withTopics(async (pool, [topic]) => {
      const r = rng(3);
      const res = 300_000;
      const a = window("G", res, T0, r);
      const b = window("G", res, T0 + 50 * res, r);
      a.isFinal = true;
      await writeBatch(pool, { topic, windows: [a, b] });
      const got = await candles(pool, {
        topic,
        symbol: "G",
        resolution: "5 minutes",
        from: T0 + 30 * res + 1234,
        to: T0 + 33 * res,
      });
      assert.deepEqual(got.map((c) => [c.start, c.close, c.count, c.filled, c.isFinal]), [
        [T0 + 30 * res, a.close, 0, true, false],
        [T0 + 31 * res, a.close, 0, true, false],
        [T0 + 32 * res, a.close, 0, true, false],
      ]);
      // Before the first window: nothing; the first row is the first window.
      const early = await candles(pool, {
        topic,
        symbol: "G",
        resolution: "300 seconds",
        from: T0 - 10 * res,
        to: T0 + 2 * res,
      });
      assert.deepEqual(early.map((c) => [c.start, c.filled]), [[T0, false], [T0 + res, true]]);
      // Other resolutions and topics have no such windows.
      assert.deepEqual(
        await candles(pool, { topic, symbol: "G", resolution: "1 minute", from: T0, to: T0 + res }),
        [],
      );
      await assert.rejects(
        candles(pool, { topic, symbol: "G", resolution: "0 seconds", from: T0, to: T0 + res }),
        (e: { code?: string; message?: string }) =>
          e.code === "22023" && /Resolution 00:00:00 is not a positive duration/.test(e.message!),
      );
    });
  },
});

Deno.test({
  name: "candles: daily buckets are UTC days of 24 h, also across a DST change in the session",
  ...pg,
  async fn() {
    await withTopics(async (pool, [topic]) => {
      const r = rng(9);
      const day = 86_400_000;
      const d0 = Date.UTC(2026, 2, 5); // US DST starts on 2026-03-08
      const rows = [0, 1, 5, 6].map((k) => window("D", day, d0 + k * day, r));
      await writeBatch(pool, { topic, windows: rows });
      const client = await pool.connect();
      try {
        await client.query("SET TimeZone = 'America/New_York'");
        const got = await candles(client, {
          topic,
          symbol: "D",
          resolution: "1 day",
          from: d0,
          to: d0 + 7 * day,
        });
        assert.deepEqual(got, oracle(rows, day, d0, d0 + 7 * day));
        assert.equal(got.length, 7);
      } finally {
        await client.query("RESET TimeZone");
        client.release();
      }
    });
  },
});
