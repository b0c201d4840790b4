/**
 * A simple, independent reference for the backlog suites: the 5-minute windows a backlog must
 * produce, computed tick by tick from the generated input (no engine code), and the comparison of
 * the rows a contender wrote against it. Pure: no I/O, no clock.
 *
 * Rules (README "Windowing semantics"): per partition, in offset order, a tick is accepted iff
 * its window's end is after the partition's watermark before the tick (max event time seen −
 * delay; −∞ before the first tick); late or not, it then advances the max event time. open/close
 * are the prices at the earliest/latest event time, ties broken by the lowest/highest offset.
 * With `watermarkDelayMs: null` every tick is accepted (what a micro-batch engine does with
 * ticks that arrive in its first batch, when its watermark is not set yet).
 * @module
 */

import type { Tick } from "../../aggregate/engine.ts";

/** Raised when the oracle is fed input that breaks its contract. */
export class OracleError extends Error {
  /** Creates the error; the message names the bad value. */
  constructor(message: string) {
    super(message);
    this.name = "OracleError";
  }
}

/** One expected window. */
export interface OracleWindow {
  /** Symbol. */
  symbol: string;
  /** Window start, epoch ms. */
  start: number;
  /** Ticks folded in. */
  count: number;
  /** Sum of the prices (plain). */
  sum: number;
  /** Price at the earliest event time (ties: lowest offset). */
  open: number;
  /** Highest price. */
  high: number;
  /** Lowest price. */
  low: number;
  /** Price at the latest event time (ties: highest offset). */
  close: number;
  /** Earliest event time. */
  first: number;
  /** Latest event time. */
  last: number;
  /** Offset of the open tick. */
  openOffset: number;
  /** Offset of the close tick. */
  closeOffset: number;
}

/** Options of createWindowOracle. */
export interface OracleOptions {
  /** Window length, ms (default 300,000). */
  windowMs?: number;
  /** Watermark delay, ms (default 900,000); null: no watermark, every tick is accepted. */
  watermarkDelayMs?: number | null;
}

/** The reference fold. */
export interface WindowOracle {
  /** Folds one tick (offsets must increase per partition). */
  fold(tick: Tick): void;
  /** The windows so far, by windowKey(). */
  readonly windows: ReadonlyMap<string, OracleWindow>;
  /** Ticks dropped as late so far. */
  readonly late: number;
  /** Ticks seen so far. */
  readonly seen: number;
}

/** Map key of a window: symbol and start. */
export function windowKey(symbol: string, start: number): string {
  return `${symbol}\u0000${start}`;
}

/** A reference fold of ticks into tumbling event-time windows. */
export function createWindowOracle(options: OracleOptions = {}): WindowOracle {
  const windowMs = options.windowMs ?? 300_000;
  const delay = options.watermarkDelayMs === undefined ? 900_000 : options.watermarkDelayMs;
  const maxEventTime = new Map<number, number>();
  const lastOffset = new Map<number, number>();
  const windows = new Map<string, OracleWindow>();
  let late = 0;
  let seen = 0;
  return {
    fold(t: Tick) {
      const prevOffset = lastOffset.get(t.partition);
      if (prevOffset !== undefined && t.offset <= prevOffset) {
        throw new OracleError(
          `Offset ${t.offset} of partition ${t.partition} does not follow ${prevOffset}`,
        );
      }
      lastOffset.set(t.partition, t.offset);
      seen++;
      const start = Math.floor(t.eventTime / windowMs) * windowMs;
      const max = maxEventTime.get(t.partition);
      const watermark = delay === null || max === undefined ? -Infinity : max - delay;
      if (max === undefined || t.eventTime > max) maxEventTime.set(t.partition, t.eventTime);
      if (!(start + windowMs > watermark)) {
        late++;
        return;
      }
      const key = windowKey(t.symbol, start);
      const w = windows.get(key);
      if (w === undefined) {
        windows.set(key, {
          symbol: t.symbol,
          start,
          count: 1,
          sum: t.price,
          open: t.price,
          high: t.price,
          low: t.price,
          close: t.price,
          first: t.eventTime,
          last: t.eventTime,
          openOffset: t.offset,
          closeOffset: t.offset,
        });
        return;
      }
      w.count++;
      w.sum += t.price;
      if (t.price > w.high) w.high = t.price;
      if (t.price < w.low) w.low = t.price;
      // Offsets increase, so a tie on event time keeps the earlier open and takes the later close.
      if (t.eventTime < w.first) {
        w.first = t.eventTime;
        w.open = t.price;
        w.openOffset = t.offset;
      }
      if (t.eventTime >= w.last) {
        w.last = t.eventTime;
        w.close = t.price;
        w.closeOffset = t.offset;
      }
    },
    get windows() {
      return windows;
    },
    get late() {
      return late;
    },
    get seen() {
      return seen;
    },
  };
}

/** A window row as a contender wrote it. */
export interface ActualWindow {
  /** Symbol. */
  symbol: string;
  /** Window start, epoch ms. */
  start: number;
  /** Tick count. */
  count: number;
  /** Average price. */
  avg: number;
  /** Open price. */
  open: number;
  /** High price. */
  high: number;
  /** Low price. */
  low: number;
  /** Close price. */
  close: number;
}

/** Result of comparing a contender's rows with the oracle. */
export interface WindowDiff {
  /** Windows the oracle expects. */
  expected: number;
  /** Rows the contender wrote. */
  actual: number;
  /** Rows equal to the expected window. */
  equal: number;
  /** Rows of an expected window with a different count, avg, open, high, low or close. */
  differing: number;
  /** Expected windows with no row. */
  missing: number;
  /** Rows of windows the oracle does not have. */
  extra: number;
  /** Up to 3 examples of differences, for the log. */
  examples: string[];
}

/** True when the diff found the rows equal to the oracle (nothing differing, missing or extra). */
export function diffIsClean(d: WindowDiff): boolean {
  return d.differing === 0 && d.missing === 0 && d.extra === 0 && d.actual === d.expected;
}

function close(a: number, b: number, relTol: number): boolean {
  return a === b || Math.abs(a - b) <= relTol * Math.max(Math.abs(a), Math.abs(b));
}

/**
 * Compares `actual` rows with the `expected` windows: count, open, high, low and close exactly,
 * avg within a relative `avgRelTol` (default 1e-9: sums in a different order round differently).
 */
export function diffWindows(
  expected: ReadonlyMap<string, OracleWindow>,
  actual: Iterable<ActualWindow>,
  options: { avgRelTol?: number } = {},
): WindowDiff {
  const tol = options.avgRelTol ?? 1e-9;
  const d: WindowDiff = {
    expected: expected.size,
    actual: 0,
    equal: 0,
    differing: 0,
    missing: 0,
    extra: 0,
    examples: [],
  };
  const matched = new Set<string>();
  for (const a of actual) {
    d.actual++;
    const key = windowKey(a.symbol, a.start);
    const e = expected.get(key);
    if (e === undefined || matched.has(key)) {
      d.extra++;
      if (d.examples.length < 3) {
        d.examples.push(`extra ${a.symbol}@${new Date(a.start).toISOString()} n=${a.count}`);
      }
      continue;
    }
    matched.add(key);
    const same = a.count === e.count && a.open === e.open && a.high === e.high &&
      a.low === e.low && a.close === e.close && close(a.avg, e.sum / e.count, tol);
    if (same) {
      d.equal++;
    } else {
      d.differing++;
      if (d.examples.length < 3) {
        d.examples.push(
          `${a.symbol}@${new Date(a.start).toISOString()}: n ${a.count} vs ${e.count}, ` +
            `avg ${a.avg} vs ${e.sum / e.count}, o/h/l/c ${a.open}/${a.high}/${a.low}/${a.close}` +
            ` vs ${e.open}/${e.high}/${e.low}/${e.close}`,
        );
      }
    }
  }
  d.missing = expected.size - matched.size;
  return d;
}
