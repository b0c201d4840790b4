/**
 * Test helpers for the aggregator: a seeded tick stream over several partitions (out-of-order,
 * late and one invalid record), an independent oracle of the expected price_windows rows and
 * late ticks, a producer writing the stream at exact offsets, and readers of the tables.
 * @module
 */

import assert from "node:assert/strict";
import type { Kafka } from "../../common/kafka.ts";
import type { Pool } from "../../common/pg.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

/** One Kafka record of the stream: a tick, or an invalid value. */
export interface StreamRecord {
  /** Symbol (record key). */
  symbol: string;
  /** The tick, or null for an invalid record. */
  tick: { id: string; price: number; time: number; dayVolume?: number } | null;
}

/** Options of {@linkcode generateStream}. */
export interface StreamOptions {
  /** PRNG seed. */
  seed: number;
  /** Symbol prefix (unique per test). */
  prefix: string;
  /** Records per partition. */
  perPartition: number;
  /** Partitions (default 3). */
  partitions?: number;
  /** Symbols per partition (default 2). */
  symbolsPerPartition?: number;
  /** Watermark delay used to make some ticks late. */
  watermarkDelayMs: number;
  /** Window size (the smallest resolution when several). */
  windowMs: number;
  /** Give ticks a cumulative `dayVolume` (sessions reset now and then; some symbols have none). */
  volume?: boolean;
}

/** Records per partition, in offset order. */
export function generateStream(o: StreamOptions): StreamRecord[][] {
  const rnd = prng(o.seed);
  const parts = o.partitions ?? 3;
  const per = o.symbolsPerPartition ?? 2;
  const t0 = Date.UTC(2024, 0, 2, 14, 30, 0);
  const out: StreamRecord[][] = [];
  for (let p = 0; p < parts; p++) {
    const rows: StreamRecord[] = [];
    let t = t0 + Math.floor(rnd() * 10_000);
    let max = -Infinity;
    const prices = Array.from({ length: per }, () => 50 + rnd() * 100);
    const dayVolumes = Array.from({ length: per }, () => Math.floor(rnd() * 1000));
    for (let i = 0; i < o.perPartition; i++) {
      const s = Math.floor(rnd() * per);
      const symbol = `${o.prefix}P${p}S${s}`;
      if (p === 0 && i === 17) { // one invalid record: must be skipped, offset still advances
        rows.push({ symbol, tick: null });
        continue;
      }
      t += Math.floor(rnd() * 4000);
      let time: number;
      const r = rnd();
      if (r < 0.04 && max > -Infinity) {
        // Late: well before the watermark.
        time = max - o.watermarkDelayMs - o.windowMs - Math.floor(rnd() * o.windowMs * 3);
      } else if (r < 0.08) {
        // Near the watermark boundary: late or not depending on the exact window end.
        time = max - o.watermarkDelayMs - Math.floor(rnd() * o.windowMs);
      } else if (r < 0.3) {
        time = t - Math.floor(rnd() * 60_000); // out of order
      } else if (r < 0.32) {
        time = Math.floor(t / o.windowMs) * o.windowMs; // exactly on a boundary
      } else time = t;
      if (!Number.isFinite(time)) time = t;
      prices[s] = Math.max(1, prices[s] + (rnd() - 0.5) * 2);
      const price = Math.round(prices[s] * 10_000) / 10_000 + (rnd() < 0.1 ? 1 / 3 : 0);
      const tick: { id: string; price: number; time: number; dayVolume?: number } = {
        id: symbol,
        price,
        time,
      };
      if (o.volume && s !== per - 1) { // the last symbol of each partition carries no volume
        if (rnd() < 0.01) dayVolumes[s] = Math.floor(rnd() * 50); // a new session
        else dayVolumes[s] += Math.floor(rnd() * 500);
        tick.dayVolume = dayVolumes[s];
      }
      rows.push({ symbol, tick });
      if (time > max) max = time;
    }
    out.push(rows);
  }
  return out;
}

/** Expected row of price_windows. */
export interface OracleRow {
  /** Symbol. */
  symbol: string;
  /** Window length (ms). */
  windowMs: number;
  /** Window start ms. */
  windowStart: number;
  /** Tick count. */
  count: number;
  /** Sum of prices. */
  sum: number;
  /** Open. */
  open: number;
  /** High. */
  high: number;
  /** Low. */
  low: number;
  /** Close. */
  close: number;
  /** First event time. */
  first: number;
  /** Last event time. */
  last: number;
  /** Partition. */
  partition: number;
  /** Last offset. */
  lastOffset: number;
  /** Final (watermark at the end >= window end). */
  isFinal: boolean;
  /** Sum of the per-tick volume deltas. */
  volume: number;
  /** Sum of price × volume delta. */
  pv: number;
}

/**
 * Expected rows (key `symbol|windowMs|windowStart`) and late ticks (key `partition:offset`), by
 * the rules of aggregate/SEMANTICS.md, computed the simple way: each resolution on its own, the
 * watermark before each tick, the volume delta of every valid tick in offset order.
 */
export function oracle(
  streams: StreamRecord[][],
  o: { windowMs?: number; windows?: number[]; watermarkDelayMs: number },
): { rows: Map<string, OracleRow>; late: Set<string> } {
  const windows = o.windows ?? [o.windowMs ?? 300_000];
  const rows = new Map<string, OracleRow>();
  const late = new Set<string>();
  streams.forEach((records, p) => {
    let max = -Infinity;
    const mine: OracleRow[] = [];
    const baseline = new Map<string, number>();
    records.forEach((r, offset) => {
      if (r.tick === null) return;
      const { id, price, time, dayVolume } = r.tick;
      let delta = 0;
      if (dayVolume !== undefined) {
        const prev = baseline.get(id);
        delta = prev === undefined ? 0 : dayVolume < prev ? dayVolume : dayVolume - prev;
        baseline.set(id, dayVolume);
      }
      const wm = max - o.watermarkDelayMs;
      let isLate = false;
      for (const size of windows) {
        const start = Math.floor(time / size) * size;
        if (start + size <= wm) {
          isLate = true;
          continue;
        }
        const key = `${id}|${size}|${start}`;
        const w = rows.get(key);
        if (!w) {
          const nw: OracleRow = {
            symbol: id,
            windowMs: size,
            windowStart: start,
            count: 1,
            sum: price,
            open: price,
            high: price,
            low: price,
            close: price,
            first: time,
            last: time,
            partition: p,
            lastOffset: offset,
            isFinal: false,
            volume: delta,
            pv: price * delta,
          };
          rows.set(key, nw);
          mine.push(nw);
        } else {
          w.count++;
          w.sum += price;
          w.high = Math.max(w.high, price);
          w.low = Math.min(w.low, price);
          if (time < w.first) [w.first, w.open] = [time, price];
          if (time >= w.last) [w.last, w.close] = [time, price];
          w.lastOffset = offset;
          w.volume += delta;
          w.pv += price * delta;
        }
      }
      if (isLate) late.add(`${p}:${offset}`);
      if (time > max) max = time;
    });
    for (const w of mine) {
      w.isFinal = max - o.watermarkDelayMs >= w.windowStart + w.windowMs;
    }
  });
  return { rows, late };
}

/** Produces records `[from, to)` of each partition, in order, acks=all; offsets = indexes. */
export async function produceStream(
  kafka: Kafka,
  topic: string,
  streams: StreamRecord[][],
  range: { from: number; to: number },
): Promise<void> {
  const producer = kafka.producer({ allowAutoTopicCreation: false, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let p = 0; p < streams.length; p++) {
      const slice = streams[p].slice(range.from, range.to);
      for (let i = 0; i < slice.length; i += 500) {
        await producer.send({
          topic,
          acks: -1,
          messages: slice.slice(i, i + 500).map((r) => ({
            partition: p,
            key: r.symbol,
            value: r.tick ? JSON.stringify(r.tick) : "{not json",
            timestamp: String(r.tick?.time ?? Date.now()),
            headers: { ingest_ms: String(Date.now()) },
          })),
        });
      }
    }
  } finally {
    await producer.disconnect();
  }
}

/** Stored row as read back (times in epoch ms). */
export type StoredRow = OracleRow & { avg: number; windowEnd: number; vwap: number | null };

/** Reads price_windows rows of symbols starting with `prefix` (of `topic`, when given). */
export async function readRows(
  pool: Pool,
  prefix: string,
  options: { topic?: string } = {},
): Promise<Map<string, StoredRow>> {
  const { rows } = await pool.query(
    `SELECT symbol, (extract(epoch FROM window_start) * 1000)::bigint AS ws,
            (extract(epoch FROM window_end) * 1000)::bigint AS we,
            (extract(epoch FROM window_length) * 1000)::bigint AS wl,
            avg_price, open_price, high_price, low_price, close_price, tick_count, is_final,
            kafka_partition, last_offset, price_sum, volume, pv_sum, vwap,
            (extract(epoch FROM first_tick_at) * 1000)::bigint AS ft,
            (extract(epoch FROM last_tick_at) * 1000)::bigint AS lt
     FROM price_windows WHERE starts_with(symbol, $1) AND ($2::text IS NULL OR topic = $2)`,
    [prefix, options.topic ?? null],
  );
  const out = new Map<string, StoredRow>();
  for (const r of rows) {
    out.set(`${r.symbol}|${Number(r.wl)}|${Number(r.ws)}`, {
      symbol: r.symbol,
      windowMs: Number(r.wl),
      windowStart: Number(r.ws),
      windowEnd: Number(r.we),
      count: Number(r.tick_count),
      sum: r.price_sum,
      avg: r.avg_price,
      open: r.open_price,
      high: r.high_price,
      low: r.low_price,
      close: r.close_price,
      first: Number(r.ft),
      last: Number(r.lt),
      partition: r.kafka_partition,
      lastOffset: Number(r.last_offset),
      isFinal: r.is_final,
      volume: r.volume,
      pv: r.pv_sum,
      vwap: r.vwap,
    });
  }
  return out;
}

/**
 * Asserts the stored rows equal the oracle's: the same windows, counts, OHLC, times, versions
 * and finality exactly; sums, averages, volumes and VWAP within 1e-9 relative.
 */
export function assertRowsEqual(
  stored: Map<string, StoredRow>,
  expected: Map<string, OracleRow>,
  _windowMs?: number,
): void {
  assert.deepEqual([...stored.keys()].sort(), [...expected.keys()].sort(), "same windows");
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
  for (const [k, e] of expected) {
    const s = stored.get(k)!;
    const { sum: _s, avg: _a, windowEnd, volume: _v, pv: _p, vwap, ...rest } = s;
    const { sum: _e, volume: _ev, pv: _ep, ...exp } = e;
    assert.deepEqual(rest, exp, k);
    assert.equal(windowEnd, e.windowStart + e.windowMs, k);
    assert.ok(close(s.sum, e.sum), `${k} sum ${s.sum} vs ${e.sum}`);
    assert.ok(close(s.avg, e.sum / e.count), `${k} avg ${s.avg} vs ${e.sum / e.count}`);
    assert.ok(close(s.volume, e.volume), `${k} volume ${s.volume} vs ${e.volume}`);
    assert.ok(close(s.pv, e.pv), `${k} pv ${s.pv} vs ${e.pv}`);
    if (e.volume === 0) assert.equal(vwap, null, `${k} vwap without volume`);
    else assert.ok(close(vwap!, e.pv / e.volume), `${k} vwap ${vwap} vs ${e.pv / e.volume}`);
  }
}

/** Reads the late ticks of `topic` as `partition:offset` keys. */
export async function readLate(pool: Pool, topic: string): Promise<Set<string>> {
  const { rows } = await pool.query(
    "SELECT kafka_partition, kafka_offset FROM late_ticks WHERE topic = $1",
    [topic],
  );
  return new Set(rows.map((r) => `${r.kafka_partition}:${r.kafka_offset}`));
}

/** Deletes the rows of symbols starting with `prefix` and the late ticks/progress of `topic`. */
export async function cleanupRows(pool: Pool, prefix: string, topic: string): Promise<void> {
  await pool.query("DELETE FROM price_windows WHERE starts_with(symbol, $1)", [prefix]);
  await pool.query("DELETE FROM late_ticks WHERE topic = $1", [topic]);
  await pool.query("DELETE FROM rejected_rows WHERE topic = $1", [topic]);
  await pool.query("DELETE FROM aggregator_progress WHERE topic = $1", [topic]);
}
