/**
 * Random engine-state records for the codec and checkpoint tests, and the simple oracle they are
 * checked against: a Map from record key to record, where a later record replaces an earlier one
 * and a `window-deleted` removes its window.
 * @module
 */

import { compareRecords, stateKey, type StateRecord } from "../../aggregate/state_codec.ts";

/** Strings that break naive codecs: lone surrogates, pairs, NUL, controls, long, empty. */
export const HOSTILE_STRINGS: readonly string[] = [
  "",
  "A",
  "AAPL",
  "\u0000",
  "A\u0000B",
  "\ud800",
  "\udfff",
  "\udc00\ud800",
  "a\ud83d",
  "\ud83d\ude00",
  "\ud83d\ude00\ud83d",
  "\u007f\u0080\u07ff\u0800\uffff",
  "é",
  "日本",
  " lead",
  "trail ",
  "x".repeat(5000),
  "\ud800".repeat(300),
];

/** A random string of random UTF-16 code units (any value, lone surrogates included). */
export function randomString(rnd: () => number, maxLength = 12): string {
  const n = Math.floor(rnd() * (maxLength + 1));
  let s = "";
  for (let i = 0; i < n; i++) {
    const r = rnd();
    s += String.fromCharCode(
      r < 0.5
        ? 0x41 + Math.floor(rnd() * 26)
        : r < 0.7
        ? Math.floor(rnd() * 0x80)
        : r < 0.85
        ? 0xd800 + Math.floor(rnd() * 0x800)
        : Math.floor(rnd() * 0x10000),
    );
  }
  return s;
}

const SPECIAL_NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.1,
  -0.1,
  Number.MAX_SAFE_INTEGER,
  -Number.MAX_SAFE_INTEGER,
  Number.MAX_SAFE_INTEGER + 1,
  2 ** 53 + 2,
  -(2 ** 60),
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  -Number.MIN_VALUE,
  Infinity,
  -Infinity,
  NaN,
  1e21,
  1 / 3,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 35 + 7,
  1_700_000_000_123,
  127,
  128,
  16383,
  16384,
];

/** A random number: special values, random float64 bit patterns, integers of every size. */
export function randomNumber(rnd: () => number): number {
  const r = rnd();
  if (r < 0.25) return SPECIAL_NUMBERS[Math.floor(rnd() * SPECIAL_NUMBERS.length)];
  if (r < 0.45) {
    const b = new Uint32Array(2);
    b[0] = Math.floor(rnd() * 2 ** 32);
    b[1] = Math.floor(rnd() * 2 ** 32);
    return new Float64Array(b.buffer)[0];
  }
  if (r < 0.8) {
    const v = Math.floor(rnd() * 2 ** Math.floor(rnd() * 53));
    return rnd() < 0.3 ? -v : v;
  }
  return (rnd() - 0.5) * 10 ** Math.floor(rnd() * 30 - 10);
}

/** Options for {@linkcode randomRecord}. */
export interface RecordSpace {
  /** Partitions 0..n-1. */
  partitions: number;
  /** Symbols to draw from. */
  symbols: readonly string[];
  /** Window resolutions. */
  windows: readonly number[];
  /** Window starts per (symbol, resolution). */
  starts: number;
  /** Use hostile numbers (default true); false: realistic values only. */
  hostile?: boolean;
}

function num(rnd: () => number, hostile: boolean, realistic: number): number {
  return hostile && rnd() < 0.3 ? randomNumber(rnd) : realistic;
}

/** A random record of `kind` in `space`. */
export function randomRecord(
  rnd: () => number,
  space: RecordSpace,
  kind: StateRecord["kind"],
): StateRecord {
  const h = space.hostile ?? true;
  const partition = Math.floor(rnd() * space.partitions);
  const symbol = space.symbols[Math.floor(rnd() * space.symbols.length)];
  const windowMs = space.windows[Math.floor(rnd() * space.windows.length)];
  const start = 1_700_000_000_000 + Math.floor(rnd() * space.starts) * windowMs;
  const nullable = (v: number) => (rnd() < 0.2 ? null : num(rnd, h, v));
  switch (kind) {
    case "partition":
      return {
        kind,
        partition,
        maxEventTime: nullable(start + 1234),
        lastOffset: nullable(Math.floor(rnd() * 1e9)),
        floor: nullable(start - 900_000),
        replayBelow: num(rnd, h, Math.floor(rnd() * 1e6)),
        lastArrivalMs: nullable(start + 5000),
      };
    case "baseline":
      return { kind, partition, symbol, dayVolume: num(rnd, h, Math.floor(rnd() * 1e9)) };
    case "window-deleted":
      return { kind, partition, windowMs, symbol, start };
    case "window": {
      const price = Math.round(rnd() * 1e6) / 100;
      return {
        kind,
        partition,
        windowMs,
        symbol,
        start,
        count: num(rnd, h, 1 + Math.floor(rnd() * (rnd() < 0.1 ? 1e12 : 1000))),
        sum: num(rnd, h, price * 17.000000001),
        comp: num(rnd, h, rnd() < 0.5 ? 0 : 1e-12 * rnd()),
        open: num(rnd, h, price),
        high: num(rnd, h, price + 1),
        low: num(rnd, h, price - 1),
        close: num(rnd, h, price + 0.5),
        first: num(rnd, h, start + 1),
        last: num(rnd, h, start + windowMs - 1),
        lastOffset: num(rnd, h, Math.floor(rnd() * 1e9)),
        volume: num(rnd, h, Math.floor(rnd() * 1e7)),
        volumeComp: num(rnd, h, 0),
        pv: num(rnd, h, price * 1e7),
        pvComp: num(rnd, h, rnd() < 0.5 ? 0 : -1e-9),
      };
    }
  }
}

/** Random records (any kinds, keys may repeat), `n` of them. */
export function randomRecords(
  rnd: () => number,
  space: RecordSpace,
  n: number,
  options: { deletes?: boolean } = {},
): StateRecord[] {
  const out: StateRecord[] = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    const kind: StateRecord["kind"] = r < 0.05
      ? "partition"
      : r < 0.2
      ? "baseline"
      : options.deletes && r < 0.4
      ? "window-deleted"
      : "window";
    out.push(randomRecord(rnd, space, kind));
  }
  return out;
}

/** The oracle: applies `records` in order to `state` (latest wins, window-deleted removes). */
export function applyRecords(state: Map<string, StateRecord>, records: Iterable<StateRecord>) {
  for (const r of records) {
    if (r.kind === "window-deleted") state.delete(stateKey(r));
    else state.set(stateKey(r), r);
  }
  return state;
}

/** The oracle's state as a sorted array. */
export function sortedState(state: Map<string, StateRecord>): StateRecord[] {
  return [...state.values()].sort(compareRecords);
}

/** A Fisher-Yates shuffle (new array). */
export function shuffled<T>(rnd: () => number, items: readonly T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
