/**
 * Benchmarks for the windowing engine: `deno bench bench/engine_bench.ts`.
 * Throughput = ticks per iteration / time per iteration (e.g. 1M ticks in 250 ms = 4M ticks/s).
 * @module
 */
import { type Tick, WindowEngine } from "../aggregate/engine.ts";

/** mulberry32 seeded PRNG (the benchmark input is deterministic). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const T0 = 1_750_000_000_000;
const PARTITIONS = 6;

/** `n` ticks over `symbols` symbols, ~`tickMs` apart, 2% up to 30 s out of order, 0.1% very late. */
function makeTicks(n: number, symbols: number, tickMs: number, seed = 1): Tick[] {
  const rand = mulberry32(seed);
  const names = Array.from({ length: symbols }, (_, i) => `SYM${i}.X`);
  const offsets = new Array<number>(PARTITIONS).fill(0);
  const ticks: Tick[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const s = Math.floor(rand() * symbols);
    const partition = s % PARTITIONS; // Kafka key = symbol
    let eventTime = T0 + i * tickMs;
    const r = rand();
    if (r < 0.02) eventTime -= Math.floor(rand() * 30_000);
    else if (r < 0.021) eventTime -= 3_600_000;
    ticks[i] = {
      symbol: names[s],
      eventTime,
      price: 100 + Math.round(rand() * 10_000) / 100,
      partition,
      offset: offsets[partition]++,
    };
  }
  return ticks;
}

// 1M ticks over 1000 symbols, ~6 h of event time (one tick per symbol every ~21 s).
const MILLION = makeTicks(1_000_000, 1000, 21);

Deno.bench("fold 1M ticks, 1000 symbols, 6 partitions (no trigger)", { group: "fold" }, () => {
  const engine = new WindowEngine();
  engine.foldAll(MILLION);
  if (engine.openWindowCount === 0) throw new Error("Unexpected empty state");
});

Deno.bench("fold 1M ticks + trigger every 10k ticks (rows + eviction)", { group: "fold" }, () => {
  const engine = new WindowEngine();
  let rows = 0;
  for (let i = 0; i < MILLION.length; i++) {
    engine.fold(MILLION[i]);
    if (i % 10_000 === 9_999) rows += engine.trigger().windows.length;
  }
  rows += engine.trigger().windows.length;
  if (rows === 0) throw new Error("Unexpected empty output");
});

// 12_500 symbols x 4 windows = exactly 50k open, changed windows (none final under defaults).
const FIFTY_K: Tick[] = Array.from({ length: 50_000 }, (_, i) => {
  const s = i >> 2;
  return {
    symbol: `SYM${s}.X`,
    eventTime: T0 + (i & 3) * 300_000 + 1,
    price: 100 + (i % 997) / 100,
    partition: s % PARTITIONS,
    offset: i,
  };
});

Deno.bench("trigger emitting 50k changed windows", { group: "trigger" }, (b) => {
  const engine = new WindowEngine();
  engine.foldAll(FIFTY_K);
  b.start();
  const out = engine.trigger();
  b.end();
  if (out.windows.length !== 50_000) throw new Error(`Only ${out.windows.length} windows`);
});

Deno.bench("snapshotChunks + JSON.stringify of 50k windows", { group: "snapshot" }, (b) => {
  const engine = new WindowEngine();
  engine.foldAll(FIFTY_K);
  b.start();
  const pieces = engine.snapshotChunks().map((p) => JSON.stringify(p));
  b.end();
  if (pieces.length === 0) throw new Error("No pieces");
});

const SNAPSHOT_JSON = (() => {
  const engine = new WindowEngine();
  engine.foldAll(FIFTY_K);
  engine.trigger();
  return engine.snapshotChunks().map((p) => JSON.stringify(p));
})();

Deno.bench("JSON.parse + restore of 50k windows", { group: "snapshot" }, () => {
  const engine = WindowEngine.restore(SNAPSHOT_JSON.map((s) => JSON.parse(s)));
  if (engine.openWindowCount !== 50_000) throw new Error("Restore lost windows");
});
