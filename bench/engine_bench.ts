/**
 * Benchmarks for the windowing engine: `deno bench bench/engine_bench.ts`.
 * Throughput = ticks per iteration / time per iteration (e.g. 1M ticks in 250 ms = 4M ticks/s).
 * @module
 */
import { type Tick, WindowEngine } from "../aggregate/engine.ts";
import { engineTicks, T0 } from "./suites/_data.ts";

const PARTITIONS = 6;

const MILLION = engineTicks(1_000_000, 1000, { partitions: PARTITIONS, tickMs: 21 });

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
