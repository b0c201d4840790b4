/**
 * Suite 4, engine: ticks folded per second on one core (target >= 2M/s) and the emission of 50k
 * changed windows by trigger(), each against a minimal hand-written equivalent (a bare Map fold
 * with no validation, watermark or lateness; building and sorting 50k plain rows).
 * @module
 */

import { type Tick, WindowEngine, type WindowRow } from "../../aggregate/engine.ts";
import { perSecond } from "../_stats.ts";
import { interleave, type Row, rowOf, type Suite, type SuiteContext } from "../_suite.ts";
import { engineTicks, windowFillTicks } from "./_data.ts";

interface RawWindow {
  symbol: string;
  partition: number;
  start: number;
  count: number;
  sum: number;
  open: number;
  high: number;
  low: number;
  close: number;
  first: number;
  last: number;
  lastOffset: number;
}

/** The baseline fold: nested Maps, no checks. Returns the number of windows. */
function rawFold(ticks: readonly Tick[], windowMs: number): number {
  const bySymbol = new Map<string, Map<number, RawWindow>>();
  let windows = 0;
  for (let i = 0; i < ticks.length; i++) {
    const t = ticks[i];
    const start = Math.floor(t.eventTime / windowMs) * windowMs;
    let m = bySymbol.get(t.symbol);
    if (m === undefined) bySymbol.set(t.symbol, m = new Map());
    const w = m.get(start);
    if (w === undefined) {
      m.set(start, {
        symbol: t.symbol,
        partition: t.partition,
        start,
        count: 1,
        sum: t.price,
        open: t.price,
        high: t.price,
        low: t.price,
        close: t.price,
        first: t.eventTime,
        last: t.eventTime,
        lastOffset: t.offset,
      });
      windows++;
    } else {
      w.count++;
      w.sum += t.price;
      if (t.price > w.high) w.high = t.price;
      if (t.price < w.low) w.low = t.price;
      if (t.eventTime < w.first) {
        w.first = t.eventTime;
        w.open = t.price;
      }
      if (t.eventTime >= w.last) {
        w.last = t.eventTime;
        w.close = t.price;
      }
      w.lastOffset = t.offset;
    }
  }
  return windows;
}

function compareRows(a: WindowRow, b: WindowRow): number {
  if (a.partition !== b.partition) return a.partition - b.partition;
  if (a.symbol !== b.symbol) return a.symbol < b.symbol ? -1 : 1;
  return a.windowStart - b.windowStart;
}

/** The baseline emission: plain window objects -> row objects, sorted like trigger(). */
function rawEmit(windows: readonly RawWindow[], windowMs: number): WindowRow[] {
  const rows: WindowRow[] = windows.map((w) => ({
    symbol: w.symbol,
    windowStart: w.start,
    windowEnd: w.start + windowMs,
    count: w.count,
    sum: w.sum,
    avg: w.sum / w.count,
    open: w.open,
    high: w.high,
    low: w.low,
    close: w.close,
    firstEventTime: w.first,
    lastEventTime: w.last,
    partition: w.partition,
    lastOffset: w.lastOffset,
    isFinal: false,
  }));
  rows.sort(compareRows);
  return rows;
}

/** The engine suite. */
export const engineSuite: Suite = {
  name: "engine",
  title: "Engine (fold, trigger)",
  async run(ctx: SuiteContext): Promise<Row[]> {
    const n = ctx.quick ? 500_000 : 2_000_000;
    const ticks = engineTicks(n, 1000, { partitions: 3 });
    const windowMs = 300_000;
    let check = 0;

    const fold = await interleave(() => {
      const engine = new WindowEngine();
      const t0 = performance.now();
      engine.foldAll(ticks);
      const ms = performance.now() - t0;
      check += engine.openWindowCount;
      return perSecond(n, ms);
    }, () => {
      const t0 = performance.now();
      const w = rawFold(ticks, windowMs);
      const ms = performance.now() - t0;
      check += w;
      return perSecond(n, ms);
    }, { runs: ctx.runs, log: ctx.log, label: "engine fold" });

    // 12_500 symbols x 4 windows = 50k open, changed windows (none final under the defaults).
    const fill = windowFillTicks(12_500, 4, { partitions: 3 });
    const rawWindows: RawWindow[] = fill.map((t) => ({
      symbol: t.symbol,
      partition: t.partition,
      start: Math.floor(t.eventTime / windowMs) * windowMs,
      count: 1,
      sum: t.price,
      open: t.price,
      high: t.price,
      low: t.price,
      close: t.price,
      first: t.eventTime,
      last: t.eventTime,
      lastOffset: t.offset,
    }));
    // Shuffle deterministically so the baseline sort does real work, like the engine's.
    for (let i = rawWindows.length - 1; i > 0; i--) {
      const j = (i * 2_654_435_761) % (i + 1);
      [rawWindows[i], rawWindows[j]] = [rawWindows[j], rawWindows[i]];
    }
    const emit = await interleave(() => {
      const engine = new WindowEngine();
      engine.foldAll(fill);
      const t0 = performance.now();
      const out = engine.trigger();
      const ms = performance.now() - t0;
      if (out.windows.length !== 50_000) throw new Error(`Trigger emitted ${out.windows.length}`);
      return perSecond(out.windows.length, ms);
    }, () => {
      const t0 = performance.now();
      const rows = rawEmit(rawWindows, windowMs);
      const ms = performance.now() - t0;
      check += rows.length;
      return perSecond(rows.length, ms);
    }, { runs: ctx.runs, log: ctx.log, label: "engine emit" });
    if (check === 0) throw new Error("Engine produced nothing");

    return [
      rowOf({
        suite: "engine",
        metric: `fold, one core (${(n / 1e6).toFixed(1)}M ticks, 1000 symbols, 3 partitions)`,
        unit: "ticks/s",
        ours: fold.ours,
        baseline: fold.baseline,
        baselineLabel: "bare Map fold, no checks or watermark",
        target: { op: ">=", value: 2_000_000, on: "value" },
      }),
      rowOf({
        suite: "engine",
        metric: "trigger() emitting 50k changed windows",
        unit: "windows/s",
        ours: emit.ours,
        baseline: emit.baseline,
        baselineLabel: "map 50k plain objects to rows + sort",
        note: "time per trigger = 50k / figure",
      }),
    ];
  },
};
