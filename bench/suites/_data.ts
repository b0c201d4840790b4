/**
 * Deterministic benchmark inputs shared by the suites: seeded ticks, PricingData quotes and
 * frames, and window rows.
 * @module
 */

import type { Tick, WindowRow } from "../../aggregate/engine.ts";
import type { PricingData } from "../../proto/mod.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

/** Base event time of generated data (fixed, for determinism). */
export const T0 = 1_750_000_000_000;

/** Symbol names `<prefix><i>` for i in [0, n). */
export function symbols(n: number, prefix = "SYM"): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`);
}

/** Partition of a symbol index (a stand-in for Kafka's key hash: round robin). */
export function partitionOf(symbolIndex: number, partitions: number): number {
  return symbolIndex % partitions;
}

/** Options of engineTicks and engineTickChunks. */
export interface EngineTickOptions {
  /** Partitions (symbol i lives in partition i % partitions); default 3. */
  partitions?: number;
  /** Event-time step between consecutive ticks, ms; default 21. */
  tickMs?: number;
  /** PRNG seed; default 1. */
  seed?: number;
  /** Event time of the first tick; default T0. */
  start?: number;
  /** Symbol prefix; default "SYM". */
  prefix?: string;
}

/**
 * `n` engine ticks over `symbolCount` symbols and `partitions` partitions, ~`tickMs` apart in
 * event time, 2% up to 30 s out of order and 0.1% an hour late (as bench/engine_bench.ts).
 */
export function engineTicks(
  n: number,
  symbolCount: number,
  options: EngineTickOptions = {},
): Tick[] {
  const out: Tick[] = [];
  for (const chunk of engineTickChunks(n, symbolCount, { ...options, chunkSize: n })) {
    for (const t of chunk) out.push(t);
  }
  return out;
}

/**
 * The ticks of `engineTicks(n, symbolCount, options)`, the same sequence, in chunks of at most
 * `chunkSize` (default 50,000): for backlogs too large to hold in memory at once.
 */
export function* engineTickChunks(
  n: number,
  symbolCount: number,
  options: EngineTickOptions & { chunkSize?: number } = {},
): Generator<Tick[]> {
  const partitions = options.partitions ?? 3;
  const tickMs = options.tickMs ?? 21;
  const start = options.start ?? T0;
  const chunkSize = Math.max(1, options.chunkSize ?? 50_000);
  const rand = prng(options.seed ?? 1);
  const names = symbols(symbolCount, options.prefix ?? "SYM");
  const offsets = new Array<number>(partitions).fill(0);
  for (let from = 0; from < n; from += chunkSize) {
    const size = Math.min(chunkSize, n - from);
    const ticks: Tick[] = new Array(size);
    for (let j = 0; j < size; j++) {
      const i = from + j;
      const s = Math.floor(rand() * symbolCount);
      const partition = partitionOf(s, partitions);
      let eventTime = start + i * tickMs;
      const r = rand();
      if (r < 0.02) eventTime -= Math.floor(rand() * 30_000);
      else if (r < 0.021) eventTime -= 3_600_000;
      ticks[j] = {
        symbol: names[s],
        eventTime,
        price: 100 + Math.round(rand() * 10_000) / 100,
        partition,
        offset: offsets[partition]++,
      };
    }
    yield ticks;
  }
}

/** `symbolCount * windowsPerSymbol` ticks, one per (symbol, window): that many open windows. */
export function windowFillTicks(
  symbolCount: number,
  windowsPerSymbol: number,
  options: { partitions?: number; prefix?: string; start?: number; windowMs?: number } = {},
): Tick[] {
  const partitions = options.partitions ?? 3;
  const start = options.start ?? T0;
  const windowMs = options.windowMs ?? 300_000;
  const names = symbols(symbolCount, options.prefix ?? "SYM");
  const offsets = new Array<number>(partitions).fill(0);
  const out: Tick[] = [];
  // Window-major order keeps event time non-decreasing, so nothing is late.
  for (let w = 0; w < windowsPerSymbol; w++) {
    for (let s = 0; s < symbolCount; s++) {
      const partition = partitionOf(s, partitions);
      out.push({
        symbol: names[s],
        eventTime: start + w * windowMs + 1 + (s % 1000),
        price: 100 + ((s * 7 + w) % 997) / 100,
        partition,
        offset: offsets[partition]++,
      });
    }
  }
  return out;
}

/** A realistic PricingData quote (the fields the simulator sends). */
export function quote(
  symbol: string,
  options: { price: number; time: number; volume: number },
): PricingData {
  const { price, time, volume } = options;
  return {
    id: symbol,
    price,
    time,
    currency: "USD",
    exchange: "NMS",
    quoteType: 8,
    marketHours: 1,
    changePercent: 0.42,
    dayVolume: volume,
    dayHigh: price * 1.01,
    dayLow: price * 0.99,
    change: 0.5,
    openPrice: price * 0.995,
    previousClose: price * 0.996,
    priceHint: 2,
  };
}

/** `n` quotes over `symbolCount` symbols, prices rounded to cents (exact in float32 terms). */
export function quotes(
  n: number,
  symbolCount: number,
  options: { prefix?: string; start?: number; stepMs?: number; seed?: number } = {},
): PricingData[] {
  const rand = prng(options.seed ?? 7);
  const names = symbols(symbolCount, options.prefix ?? "SYM");
  const start = options.start ?? T0;
  const step = options.stepMs ?? 1;
  return Array.from({ length: n }, (_, i) => {
    const price = Math.round((50 + rand() * 400) * 100) / 100;
    return quote(names[i % symbolCount], { price, time: start + i * step, volume: 1000 + i });
  });
}

/** `n` window rows (as the engine emits them) over distinct (symbol, window) pairs. */
export function windowRows(
  n: number,
  options: { prefix?: string; windowsPerSymbol?: number; partitions?: number; start?: number } = {},
): WindowRow[] {
  const perSymbol = options.windowsPerSymbol ?? 4;
  const partitions = options.partitions ?? 3;
  const start = options.start ?? T0;
  const prefix = options.prefix ?? "SYM";
  const rows: WindowRow[] = [];
  for (let i = 0; i < n; i++) {
    const s = Math.floor(i / perSymbol);
    const w = i % perSymbol;
    const windowStart = start + w * 300_000;
    const p = 100 + (i % 997) / 100;
    const volume = 100 * (10 + (i % 50));
    rows.push({
      symbol: `${prefix}${s}`,
      windowMs: 300_000,
      windowStart,
      windowEnd: windowStart + 300_000,
      count: 10 + (i % 50),
      sum: p * (10 + (i % 50)),
      avg: p,
      open: p - 0.5,
      high: p + 1,
      low: p - 1,
      close: p + 0.25,
      firstEventTime: windowStart + 10,
      lastEventTime: windowStart + 299_000,
      partition: s % partitions,
      lastOffset: i,
      isFinal: false,
      volume,
      pvSum: p * volume,
      vwap: p,
    });
  }
  return rows;
}
