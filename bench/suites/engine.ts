/**
 * Suite 4, engine: ticks folded per second on one core for one resolution (target >= 2M/s, against
 * a bare Map fold) and for four (1m, 5m, 15m, 1h; the ratio to one resolution), a cut emitting 50k
 * changed windows (against mapping 50k plain objects to rows), and the delta of a cut with 1k
 * changed windows among 50k open (against records() of the whole state, i.e. a full snapshot).
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

/** The baseline emission: plain window objects -> row objects. */
function rawEmit(windows: readonly RawWindow[], windowMs: number): WindowRow[] {
  return windows.map((w) => ({
    symbol: w.symbol,
    windowMs,
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
    volume: 0,
    pvSum: 0,
    vwap: null,
  }));
}

/** The ticks as the aggregator passes them: with a cumulative day volume and an arrival time. */
function withVolume(ticks: readonly Tick[]): Tick[] {
  const volume = new Map<string, number>();
  return ticks.map((t) => {
    const v = (volume.get(t.symbol) ?? 1000) + 1 + (t.offset % 7) * 100;
    volume.set(t.symbol, v);
    return { ...t, dayVolume: v, arrivalMs: t.eventTime + 150 };
  });
}

/** foldAll time of each chunk, with a cut (untimed, released) after each: ticks/s. */
function timedFold(chunks: readonly Tick[][], windows: number[]): number {
  const engine = new WindowEngine({ windows });
  let ms = 0;
  let n = 0;
  for (const chunk of chunks) {
    const t0 = performance.now();
    engine.foldAll(chunk);
    ms += performance.now() - t0;
    n += chunk.length;
    engine.cut().release();
  }
  if (engine.openWindowCount === 0) throw new Error("Engine holds no window");
  return perSecond(n, ms);
}

/** The resolutions of the multi-resolution row. */
const FOUR = [60_000, 300_000, 900_000, 3_600_000];

/** The engine suite. */
export const engineSuite: Suite = {
  name: "engine",
  title: "Engine (fold, cut, delta)",
  async run(ctx: SuiteContext): Promise<Row[]> {
    const n = ctx.quick ? 500_000 : 2_000_000;
    const ticks = withVolume(engineTicks(n, 1000, { partitions: 3 }));
    const chunks: Tick[][] = [];
    for (let i = 0; i < n; i += 50_000) chunks.push(ticks.slice(i, i + 50_000));
    const windowMs = 300_000;
    let check = 0;

    const fold = await interleave(() => timedFold(chunks, [windowMs]), () => {
      const t0 = performance.now();
      const w = rawFold(ticks, windowMs);
      const ms = performance.now() - t0;
      check += w;
      return perSecond(n, ms);
    }, { runs: ctx.runs, log: ctx.log, label: "engine fold" });

    const multi = await interleave(
      () => timedFold(chunks, FOUR),
      () => timedFold(chunks, [windowMs]),
      { runs: ctx.runs, log: ctx.log, label: "engine fold 4 resolutions" },
    );

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
    const emit = await interleave(() => {
      const engine = new WindowEngine();
      engine.foldAll(fill);
      const t0 = performance.now();
      const cut = engine.cut();
      let rows = 0;
      for (const slice of cut.rows()) rows += slice.length;
      cut.release();
      const ms = performance.now() - t0;
      if (rows !== 50_000) throw new Error(`Cut emitted ${rows} rows`);
      return perSecond(rows, ms);
    }, () => {
      const t0 = performance.now();
      const rows = rawEmit(rawWindows, windowMs);
      const ms = performance.now() - t0;
      check += rows.length;
      return perSecond(rows.length, ms);
    }, { runs: ctx.runs, log: ctx.log, label: "engine cut" });

    // 1k changed windows among 50k open: the delta of one cut vs the whole state's records.
    const base = new WindowEngine();
    base.foldAll(fill);
    base.cut().release();
    const nextOffset = [0, 1, 2].map((p) => base.lastOffset(p)! + 1);
    const touch = () => {
      const out: Tick[] = [];
      for (let i = 0; i < 1000; i++) {
        const t = fill[(i * 53) % fill.length];
        out.push({ ...t, offset: nextOffset[t.partition]++ });
      }
      return out;
    };
    const delta = await interleave(() => {
      base.foldAll(touch());
      const t0 = performance.now();
      const cut = base.cut();
      let records = 0;
      for (const _ of cut.delta()) records++;
      cut.release();
      const ms = performance.now() - t0;
      if (records < 1000) throw new Error(`Delta held ${records} records`);
      return ms;
    }, () => {
      const t0 = performance.now();
      let records = 0;
      for (const _ of base.records()) records++;
      const ms = performance.now() - t0;
      check += records;
      return ms;
    }, { runs: ctx.runs, log: ctx.log, label: "engine delta" });
    if (check === 0) throw new Error("Engine produced nothing");

    return [
      rowOf({
        suite: "engine",
        metric: `fold, one core, 1 resolution (${
          (n / 1e6).toFixed(1)
        }M ticks with volume, 1000 symbols, 3 partitions, a cut every 50k)`,
        unit: "ticks/s",
        ours: fold.ours,
        baseline: fold.baseline,
        baselineLabel: "bare Map fold, no checks, watermark or volume",
        target: { op: ">=", value: 2_000_000, on: "value" },
      }),
      rowOf({
        suite: "engine",
        metric: "fold, 4 resolutions (1m, 5m, 15m, 1h), same ticks",
        unit: "ticks/s",
        ours: multi.ours,
        baseline: multi.baseline,
        baselineLabel: "our fold with 1 resolution (5m)",
        target: { op: ">=", value: 0.5, on: "ratio" },
        note: "ratio >= 0.5: four resolutions cost at most 2x one",
      }),
      rowOf({
        suite: "engine",
        metric: "cut() + rows() of 50k changed windows",
        unit: "windows/s",
        ours: emit.ours,
        baseline: emit.baseline,
        baselineLabel: "map 50k plain objects to rows",
        note: "time per cut = 50k / figure",
      }),
      rowOf({
        suite: "engine",
        metric: "cut() + delta() with 1k changed among 50k open windows",
        unit: "ms",
        ours: delta.ours,
        baseline: delta.baseline,
        baselineLabel: "records() of the whole state (a full snapshot)",
        lowerIsBetter: true,
      }),
    ];
  },
};
