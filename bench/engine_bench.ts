/**
 * Benchmarks for the windowing engine: `deno bench bench/engine_bench.ts`.
 * Throughput = ticks per iteration / time per iteration (e.g. 1M ticks in 250 ms = 4M ticks/s).
 * @module
 */
import { type StateRecord, type Tick, WindowEngine } from "../aggregate/engine.ts";
import { engineTicks, T0 } from "./suites/_data.ts";

const PARTITIONS = 6;

const MILLION = engineTicks(1_000_000, 1000, { partitions: PARTITIONS, tickMs: 21 });
const FOUR = [60_000, 300_000, 900_000, 3_600_000];

Deno.bench("fold 1M ticks, 1000 symbols, 6 partitions (no cut)", { group: "fold" }, () => {
  const engine = new WindowEngine();
  engine.foldAll(MILLION);
  if (engine.openWindowCount === 0) throw new Error("Unexpected empty state");
});

Deno.bench("fold 1M ticks, 4 resolutions (no cut)", { group: "fold" }, () => {
  const engine = new WindowEngine({ windows: FOUR });
  engine.foldAll(MILLION);
  if (engine.openWindowCount === 0) throw new Error("Unexpected empty state");
});

Deno.bench("fold 1M ticks + cut every 10k ticks (rows + eviction)", { group: "fold" }, () => {
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
    dayVolume: 1000 + i,
  };
});

Deno.bench("cut + rows of 50k changed windows", { group: "cut" }, (b) => {
  const engine = new WindowEngine();
  engine.foldAll(FIFTY_K);
  b.start();
  const cut = engine.cut();
  let rows = 0;
  for (const slice of cut.rows()) rows += slice.length;
  cut.release();
  b.end();
  if (rows !== 50_000) throw new Error(`Only ${rows} windows`);
});

Deno.bench("records() + JSON.stringify of 50k windows", { group: "state" }, (b) => {
  const engine = new WindowEngine();
  engine.foldAll(FIFTY_K);
  b.start();
  const json = JSON.stringify([...engine.records()]);
  b.end();
  if (json.length === 0) throw new Error("No records");
});

const RECORDS_JSON = (() => {
  const engine = new WindowEngine();
  engine.foldAll(FIFTY_K);
  engine.cut().release();
  return JSON.stringify([...engine.records()]);
})();

Deno.bench("JSON.parse + restore of 50k windows", { group: "state" }, () => {
  const engine = WindowEngine.restore(JSON.parse(RECORDS_JSON) as StateRecord[]);
  if (engine.openWindowCount !== 50_000) throw new Error("Restore lost windows");
});
