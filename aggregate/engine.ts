/**
 * Pure event-time windowing engine v2: tumbling windows of several resolutions per
 * (partition, symbol), one effective watermark per partition (event time, raised by floors from
 * resets, idle finalization and the open-window bound), Spark's lateness rule, volume/VWAP from
 * cumulative day volume, update-mode cuts with copy-on-write views, and state as records for
 * incremental checkpoints.
 *
 * No I/O, no clock, no randomness: the output depends only on the ticks folded, on the floors
 * set, and (for idle finalization and for when `isFinal` is first seen) on the cut inputs.
 * See `aggregate/SEMANTICS.md`.
 * @module
 */

/** One price tick read from Kafka. `offset` must increase strictly within each partition. */
export interface Tick {
  /** Instrument symbol (any non-empty string). */
  symbol: string;
  /** Event time, epoch milliseconds (UTC). */
  eventTime: number;
  /** Price; must be finite. */
  price: number;
  /** Kafka partition (non-negative safe integer). */
  partition: number;
  /** Kafka offset (non-negative safe integer, strictly increasing per partition). */
  offset: number;
  /** Cumulative day volume (finite, >= 0), or absent. Drives the per-window volume and VWAP. */
  dayVolume?: number;
  /** Wall time the tick arrived (ingest time or read time, epoch ms); only idle finalization uses it. */
  arrivalMs?: number;
}

/** A tick dropped by the watermark for at least one resolution, reported once by a cut. */
export interface LateTick {
  /** Symbol of the tick. */
  symbol: string;
  /** Event time of the tick (epoch ms). */
  eventTime: number;
  /** Price of the tick. */
  price: number;
  /** Kafka partition of the tick. */
  partition: number;
  /** Kafka offset of the tick. */
  offset: number;
  /** The partition's effective watermark just before this tick (always finite). */
  watermark: number;
  /** The resolutions (window lengths in ms, ascending) that dropped the tick. */
  lateFor: number[];
}

/** One version of one window, as emitted by a cut. */
export interface WindowRow {
  /** Symbol of the window. */
  symbol: string;
  /** Window length in ms (the resolution). */
  windowMs: number;
  /** Window start, inclusive (epoch ms, multiple of windowMs). */
  windowStart: number;
  /** Window end, exclusive (windowStart + windowMs). */
  windowEnd: number;
  /** Number of ticks folded. */
  count: number;
  /** Compensated (Neumaier) sum of prices. */
  sum: number;
  /** sum / count. */
  avg: number;
  /** Price at the earliest event time (ties: lowest offset). */
  open: number;
  /** Highest price. */
  high: number;
  /** Lowest price. */
  low: number;
  /** Price at the latest event time (ties: highest offset). */
  close: number;
  /** Earliest event time folded. */
  firstEventTime: number;
  /** Latest event time folded. */
  lastEventTime: number;
  /** Kafka partition the window belongs to. */
  partition: number;
  /** Highest offset folded into the window. */
  lastOffset: number;
  /** True on the single, last emission of a window (watermark >= windowEnd); it is then evicted. */
  isFinal: boolean;
  /** Sum of the ticks' volume deltas (compensated). */
  volume: number;
  /** Sum of price × volume delta (compensated). */
  pvSum: number;
  /** pvSum / volume, or null when volume is 0. */
  vwap: number | null;
}

/** One entry of the engine state, as checkpointed. Keys: see `stateKey()`. */
export type StateRecord =
  | {
    kind: "partition";
    partition: number;
    maxEventTime: number | null;
    lastOffset: number | null;
    floor: number | null;
    replayBelow: number;
    lastArrivalMs: number | null;
  }
  | { kind: "baseline"; partition: number; symbol: string; dayVolume: number }
  | {
    kind: "window";
    partition: number;
    windowMs: number;
    symbol: string;
    start: number;
    count: number;
    sum: number;
    comp: number;
    open: number;
    high: number;
    low: number;
    close: number;
    first: number;
    last: number;
    lastOffset: number;
    volume: number;
    volumeComp: number;
    pv: number;
    pvComp: number;
  }
  | { kind: "window-deleted"; partition: number; windowMs: number; symbol: string; start: number };

/** The `partition` state record. */
export type PartitionRecord = Extract<StateRecord, { kind: "partition" }>;
/** The `baseline` state record (last dayVolume seen per partition and symbol). */
export type BaselineRecord = Extract<StateRecord, { kind: "baseline" }>;
/** The `window` state record (one open window). */
export type WindowRecord = Extract<StateRecord, { kind: "window" }>;
/** The `window-deleted` state record (a window was finalized and evicted). */
export type WindowDeletedRecord = Extract<StateRecord, { kind: "window-deleted" }>;

/** Per-partition position and watermark, as of a cut (null = none yet). */
export interface PartitionMeta {
  /** Partition number. */
  partition: number;
  /** Max event time seen, or null before any tick. */
  maxEventTime: number | null;
  /** Last offset folded, or null before any tick. */
  lastOffset: number | null;
  /** Effective watermark max(maxEventTime − delay, floor), or null while both are unset. */
  watermark: number | null;
  /** The floor (from setFloor, idle finalization or the open-window bound), or null. */
  floor: number | null;
  /** Late ticks with a lower offset are not reported (counted in lateSuppressed). */
  replayBelow: number;
  /** Latest `arrivalMs` seen (max), or null. */
  lastArrivalMs: number | null;
  /** Open (not final) windows of the partition, all resolutions. */
  openWindows: number;
}

/** Counts of one cut (each since the previous cut). */
export interface CutStats {
  /** Windows emitted with isFinal false (changed and still open). */
  changed: number;
  /** Windows emitted with isFinal true (then evicted). */
  finalized: number;
  /** Windows made final by the open-window bound (a subset of the final ones, of this or later cuts). */
  forcedFinal: number;
  /** Late ticks not reported because their offset is below the partition's replayBelow. */
  lateSuppressed: number;
  /** Partitions whose effective watermark this cut's idle finalization raised. */
  idleAdvanced: number[];
}

/** Input of a cut: the wall clock and which partitions have been read up to their end. */
export interface CutInput {
  /** Wall time, epoch ms; without it, no idle finalization happens at this cut. */
  nowMs?: number;
  /** Whether a partition has no unread records; default: every partition is caught up. */
  caughtUp?: (partition: number) => boolean;
  /**
   * Capture the whole state in the cut ({@linkcode Cut.state}) when it has no more windows than
   * the delta would carry (the windows changed plus those made final): on a backlog, where every
   * delta is about as large as the state, a checkpoint then writes the state as its new base
   * instead of a delta that a compaction would soon read back and rewrite. Default false.
   */
  wholeState?: boolean;
  /**
   * Hold this cut's open rows back (a buffer-full trigger on a backlog): its `rows()` are only
   * the windows made final. The next cut without `hold` writes them: its rows are also every
   * window a held cut changed that is still open and unchanged since (its version as of that
   * cut), and windows born since the last cut without `hold` count as new (`born: "this-cut"`).
   * On a backlog that writes each window about once instead of twice (open, then final).
   * Default false.
   */
  hold?: boolean;
}

/** Result of `trigger()`: all rows and late ticks of one cut. */
export interface TriggerResult {
  /** Sorted by partition, windowMs, symbol (code-unit order), windowStart. */
  windows: WindowRow[];
  /** In fold order (offset order within each partition). */
  late: LateTick[];
  /** The cut's counts. */
  stats: CutStats;
}

/** Engine configuration. */
export interface EngineOptions {
  /** Window lengths in ms (distinct positive safe integers, 1 to 16 of them; default [300_000]). */
  windows?: readonly number[];
  /** Watermark delay in ms (non-negative safe integer; default 900_000). */
  watermarkDelayMs?: number;
  /** Wall-clock idle time after which a caught-up partition's watermark follows now − delay (0 = off; default = watermarkDelayMs). */
  idleFinalizeMs?: number;
  /** Max open windows per partition over all resolutions (positive safe integer; default 1_000_000). */
  maxOpenWindows?: number;
}

/** Counts returned by `foldAll()`. */
export interface FoldSummary {
  /** Ticks accepted by every resolution. */
  accepted: number;
  /** Ticks late for at least one resolution (reported or suppressed). */
  late: number;
}

/** Options of `setFloor()`. */
export interface FloorOptions {
  /** Lower bound of the partition's watermark (the floor only ever rises); null/absent = unchanged. */
  watermark?: number | null;
  /** Late ticks with an offset below this are not reported (only ever rises); absent = unchanged. */
  replayBelow?: number;
}

/** Error thrown for invalid ticks, options, cuts or state records. */
export class EngineError extends Error {
  /** Creates an EngineError. */
  constructor(message: string) {
    super(message);
    this.name = "EngineError";
  }
}

/** Default tumbling window size: 5 minutes. */
export const DEFAULT_WINDOW_MS = 300_000;
/** Default resolutions: one 5-minute window. */
export const DEFAULT_WINDOWS: readonly number[] = Object.freeze([DEFAULT_WINDOW_MS]);
/** Default watermark delay: 15 minutes. */
export const DEFAULT_WATERMARK_DELAY_MS = 900_000;
/** Default open-window bound per partition. */
export const DEFAULT_MAX_OPEN_WINDOWS = 1_000_000;
/** Default number of rows per slice of `Cut.rows()`. */
export const DEFAULT_SLICE_SIZE = 5000;
/** Most resolutions one engine folds. */
export const MAX_RESOLUTIONS = 16;
/** Largest accepted |eventTime| (the ECMAScript Date range), keeping window arithmetic exact. */
export const MAX_EVENT_TIME = 8_640_000_000_000_000;

/** Start of the tumbling window of size `windowMs` containing `eventTime` (floors negative times). */
export function windowStartOf(eventTime: number, windowMs: number): number {
  let start = Math.floor(eventTime / windowMs) * windowMs;
  // Guard against rounding for fractional times near a boundary.
  if (start > eventTime) start -= windowMs;
  else if (start + windowMs <= eventTime) start += windowMs;
  return start + 0; // normalise -0
}

function kindRank(r: StateRecord): number {
  return r.kind === "partition" ? 0 : r.kind === "baseline" ? 1 : 2;
}

/**
 * Merge key of a state record: `partition` by partition, `baseline` by (partition, symbol),
 * `window` and `window-deleted` by (partition, windowMs, symbol, start).
 */
export function stateKey(record: StateRecord): string {
  switch (record.kind) {
    case "partition":
      return JSON.stringify([record.partition, 0]);
    case "baseline":
      return JSON.stringify([record.partition, 1, record.symbol]);
    default:
      return JSON.stringify([
        record.partition,
        2,
        record.windowMs,
        record.symbol,
        record.start,
      ]);
  }
}

/** Codec order of state records: (partition, kind rank, windowMs, symbol (code units), start). */
export function compareStateRecords(a: StateRecord, b: StateRecord): number {
  if (a.partition !== b.partition) return a.partition - b.partition;
  const ka = kindRank(a);
  const kb = kindRank(b);
  if (ka !== kb) return ka - kb;
  if (ka === 0) return 0;
  if (ka === 2) {
    const wa = a as WindowRecord | WindowDeletedRecord;
    const wb = b as WindowRecord | WindowDeletedRecord;
    if (wa.windowMs !== wb.windowMs) return wa.windowMs - wb.windowMs;
    if (wa.symbol !== wb.symbol) return wa.symbol < wb.symbol ? -1 : 1;
    return wa.start - wb.start;
  }
  const sa = (a as BaselineRecord).symbol;
  const sb = (b as BaselineRecord).symbol;
  return sa === sb ? 0 : sa < sb ? -1 : 1;
}

// ---------------------------------------------------------------------------------------------
// Internal state. Windows live in a slot pool: a struct of arrays in Float64Array pages, so a fold
// allocates nothing per tick and the garbage collector never traces window data.

const PAGE_BITS = 12;
const PAGE_SLOTS = 1 << PAGE_BITS;
const PAGE_MASK = PAGE_SLOTS - 1;
// Hot fields of a window slot, in `Pool.pages`: 16 doubles, two cache lines (finalization
// touches only the first one).
/** Generation of the dirty list holding the window (-1: clean since restore). */
const F_GEN = 0;
/** Generation in which the window became final (OPEN while open). */
const F_FINAL_GEN = 1;
const F_COUNT = 2;
const F_SUM = 3;
const F_COMP = 4;
const F_HIGH = 5;
const F_LOW = 6;
const F_LAST_OFFSET = 7;
const F_FIRST = 8;
const F_OPEN = 9;
const F_LAST = 10;
const F_CLOSE = 11;
const F_VOLUME = 12;
const F_VOLUME_COMP = 13;
const F_PV = 14;
const F_PV_COMP = 15;
const STRIDE = 16;
// Cold fields of a window slot, in `Pool.metas`.
const M_START = 0;
const M_END = 1;
/** Index in the dirty list of generation F_GEN. */
const M_DIRTY_SLOT = 2;
/** Generation the window was created in (-1: restored). */
const M_BORN_GEN = 3;
/** Resolution index. */
const M_RES = 4;
const META_STRIDE = 5;
/** F_FINAL_GEN of a window that is not final. */
const OPEN = 2 ** 31 - 1;

class Pool {
  /** Hot fields, STRIDE per slot. */
  readonly pages: Float64Array[] = [];
  /** Cold fields, META_STRIDE per slot. */
  readonly metas: Float64Array[] = [];
  /** Owner of each slot (null when free). */
  readonly syms: (SymbolState | null)[] = [];
  readonly free: number[] = [];
  next = 0;
  alloc(sym: SymbolState): number {
    let s: number;
    if (this.free.length > 0) s = this.free.pop()!;
    else {
      s = this.next++;
      if ((s & PAGE_MASK) === 0) {
        this.pages.push(new Float64Array(PAGE_SLOTS * STRIDE));
        this.metas.push(new Float64Array(PAGE_SLOTS * META_STRIDE));
      }
    }
    this.syms[s] = sym;
    return s;
  }
  release(slots: readonly number[]): void {
    for (let i = 0; i < slots.length; i++) {
      this.syms[slots[i]] = null;
      this.free.push(slots[i]);
    }
  }
}

/**
 * The windows of one (partition, symbol, resolution) by window index. Small: an array of pairs
 * `[index, slot, index, slot, ...]` sorted by index (new windows are appended, finalized ones leave
 * from the front); above SMALL_INDEX pairs (only hostile or very sparse feeds), a Map.
 */
type WindowIndex = number[] | Map<number, number>;
const SMALL_INDEX = 64;

function indexGet(ix: WindowIndex, idx: number): number | undefined {
  if (!Array.isArray(ix)) return ix.get(idx);
  const n = ix.length;
  if (n <= 32) {
    for (let i = n - 2; i >= 0; i -= 2) {
      const v = ix[i];
      if (v === idx) return ix[i + 1];
      if (v < idx) return undefined;
    }
    return undefined;
  }
  let lo = 0;
  let hi = n / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = ix[2 * mid];
    if (v === idx) return ix[2 * mid + 1];
    if (v < idx) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}

/** Adds (idx, slot), idx absent; returns a Map when the array outgrew SMALL_INDEX. */
function indexAdd(ix: number[], idx: number, slot: number): Map<number, number> | undefined {
  const n = ix.length;
  if (ix[n - 2] < idx) ix.push(idx, slot);
  else {
    let i = n - 2;
    while (i >= 0 && ix[i] > idx) i -= 2;
    ix.splice(i + 2, 0, idx, slot);
  }
  if (ix.length <= 2 * SMALL_INDEX) return undefined;
  const m = new Map<number, number>();
  for (let i = 0; i < ix.length; i += 2) m.set(ix[i], ix[i + 1]);
  return m;
}

/** Deletes idx (present); returns true if the index is now empty. */
function indexDelete(ix: WindowIndex, idx: number): boolean {
  if (!Array.isArray(ix)) {
    ix.delete(idx);
    return ix.size === 0;
  }
  if (ix[0] === idx) {
    // Windows finalize in index order: the evicted one is almost always the first.
    if (ix.length === 2) return true;
    ix.shift();
    ix.shift();
    return false;
  }
  let i = 2;
  while (ix[i] !== idx) i += 2;
  ix.splice(i, 2);
  return false;
}

/** The slots of an index, by ascending window index. */
function indexSlots(ix: WindowIndex): number[] {
  const out: number[] = [];
  if (Array.isArray(ix)) {
    for (let i = 1; i < ix.length; i += 2) out.push(ix[i]);
  } else {
    for (const k of [...ix.keys()].sort((a, b) => a - b)) out.push(ix.get(k)!);
  }
  return out;
}

class SymbolState {
  /**
   * Per resolution r, at 3r: start, end and slot of the newest window (-Infinity, -Infinity,
   * -1: none); most ticks land in it. It may be final (end <= watermark): then it is not used.
   */
  readonly cur: number[] = [];
  /** Per resolution: window index (start / windowMs) -> slot (open, or final and not yet evicted). */
  readonly index: (WindowIndex | undefined)[] = [];
  /** Windows held (all resolutions). */
  count = 0;
  hasBase = false;
  /** Last dayVolume seen (valid when hasBase). */
  base = 0;
  /** Generation of the baseline dirty list holding this symbol (-1: none). */
  baseGen = -1;
  baseSlot = 0;
  constructor(readonly part: PartitionState, readonly symbol: string, resolutions: number) {
    for (let r = 0; r < resolutions; r++) {
      this.cur.push(-Infinity, -Infinity, -1);
      this.index.push(undefined);
    }
  }
}

/** A baseline as of a cut, kept when a fold changes it while the cut is unreleased. */
class BaselineCopy {
  constructor(readonly symbol: string, readonly partition: number, readonly dayVolume: number) {}
}

class PartitionState {
  maxEventTime = -Infinity;
  lastOffset = -Infinity;
  floor = -Infinity;
  /** Effective watermark: max(maxEventTime − delay, floor). */
  wm = -Infinity;
  replayBelow = 0;
  lastArrival = -Infinity;
  /** Generation of the last meta change. */
  metaGen = -1;
  /** Open (not final) windows. */
  open = 0;
  /** Smallest end among open windows (+Infinity if none). */
  minEnd = Infinity;
  /** Per resolution: min-heap of the window indexes (start / windowMs) of open windows. */
  readonly heaps: number[][] = [];
  /** Per resolution: window index -> slots of the open windows with that index. */
  readonly buckets: Map<number, number[]>[] = [];
  /** Per resolution: the bucket used last (NaN / undefined: none), saving most lookups. */
  readonly lastIdx: number[] = [];
  readonly lastBucket: (number[] | undefined)[] = [];
  readonly bySymbol = new Map<string, SymbolState>();
  constructor(readonly id: number, resolutions: number) {
    for (let r = 0; r < resolutions; r++) {
      this.heaps.push([]);
      this.buckets.push(new Map());
      this.lastIdx.push(NaN);
      this.lastBucket.push(undefined);
    }
  }
}

function heapPush(h: number[], v: number): void {
  let i = h.length;
  h.push(v);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (h[parent] <= v) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = v;
}

function heapPop(h: number[]): number {
  const top = h[0];
  const last = h.pop()!;
  const n = h.length;
  if (n > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r] < h[l] ? r : l;
      if (h[c] >= last) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = last;
  }
  return top;
}

function fmt(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value == null) {
    return Object.is(value, -0) ? "-0" : String(value);
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function nullIfInfinite(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}

interface ResolvedOptions {
  windows: readonly number[];
  watermarkDelayMs: number;
  idleFinalizeMs: number;
  maxOpenWindows: number;
}

function resolveOptions(options: EngineOptions | undefined): ResolvedOptions {
  if (options !== undefined && "windowMs" in (options as Record<string, unknown>)) {
    throw new EngineError(
      `Unknown option windowMs ${
        fmt((options as Record<string, unknown>).windowMs)
      }: use windows: [ms, ...]`,
    );
  }
  const raw = options?.windows ?? DEFAULT_WINDOWS;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_RESOLUTIONS) {
    throw new EngineError(
      `Invalid windows ${fmt(raw)}: expected 1 to ${MAX_RESOLUTIONS} window lengths in ms`,
    );
  }
  for (const ms of raw) {
    if (!Number.isSafeInteger(ms) || ms <= 0) {
      throw new EngineError(
        `Invalid window length ${fmt(ms)} in windows: expected a positive safe integer (ms)`,
      );
    }
  }
  const windows = [...raw].sort((a, b) => a - b);
  for (let i = 1; i < windows.length; i++) {
    if (windows[i] === windows[i - 1]) {
      throw new EngineError(`Duplicate window length ${windows[i]} in windows ${fmt(raw)}`);
    }
  }
  const watermarkDelayMs = options?.watermarkDelayMs ?? DEFAULT_WATERMARK_DELAY_MS;
  if (!Number.isSafeInteger(watermarkDelayMs) || watermarkDelayMs < 0) {
    throw new EngineError(
      `Invalid watermarkDelayMs ${fmt(watermarkDelayMs)}: expected a non-negative safe integer`,
    );
  }
  const idleFinalizeMs = options?.idleFinalizeMs ?? watermarkDelayMs;
  if (!Number.isSafeInteger(idleFinalizeMs) || idleFinalizeMs < 0) {
    throw new EngineError(
      `Invalid idleFinalizeMs ${fmt(idleFinalizeMs)}: expected a non-negative safe integer`,
    );
  }
  const maxOpenWindows = options?.maxOpenWindows ?? DEFAULT_MAX_OPEN_WINDOWS;
  if (!Number.isSafeInteger(maxOpenWindows) || maxOpenWindows <= 0) {
    throw new EngineError(
      `Invalid maxOpenWindows ${fmt(maxOpenWindows)}: expected a positive safe integer`,
    );
  }
  return { windows: Object.freeze(windows), watermarkDelayMs, idleFinalizeMs, maxOpenWindows };
}

function isPartitionId(p: unknown): p is number {
  return typeof p === "number" && Number.isSafeInteger(p) && p >= 0;
}

/** Throws EngineError unless `tick` is valid for partition state `p` (undefined: unknown). */
function validateTick(tick: Tick, p: PartitionState | undefined): void {
  const { symbol, partition, offset, eventTime, price, dayVolume, arrivalMs } = tick;
  if (p === undefined && !isPartitionId(partition)) {
    throw new EngineError(
      `Invalid partition ${fmt(partition)}: expected a non-negative safe integer`,
    );
  }
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new EngineError(
      `Invalid offset ${
        fmt(offset)
      } on partition ${partition}: expected a non-negative safe integer`,
    );
  }
  if (p !== undefined && offset <= p.lastOffset) {
    throw new EngineError(
      `Offset ${offset} on partition ${partition} is not greater than the previous offset ${p.lastOffset}`,
    );
  }
  if (typeof symbol !== "string" || symbol.length === 0) {
    throw new EngineError(
      `Invalid symbol ${fmt(symbol)} at partition ${partition} offset ${offset}`,
    );
  }
  if (
    typeof eventTime !== "number" || !(eventTime >= -MAX_EVENT_TIME && eventTime <= MAX_EVENT_TIME)
  ) {
    throw new EngineError(
      `Invalid eventTime ${
        fmt(eventTime)
      } at partition ${partition} offset ${offset}: expected a finite epoch ms within ±${MAX_EVENT_TIME}`,
    );
  }
  if (typeof price !== "number" || !Number.isFinite(price)) {
    throw new EngineError(
      `Invalid price ${
        fmt(price)
      } at partition ${partition} offset ${offset}: expected a finite number`,
    );
  }
  if (
    dayVolume !== undefined &&
    !(typeof dayVolume === "number" && dayVolume >= 0 && dayVolume <= Number.MAX_VALUE)
  ) {
    throw new EngineError(
      `Invalid dayVolume ${
        fmt(dayVolume)
      } at partition ${partition} offset ${offset}: expected a finite number >= 0 or absent`,
    );
  }
  if (arrivalMs !== undefined && !(typeof arrivalMs === "number" && Number.isFinite(arrivalMs))) {
    throw new EngineError(
      `Invalid arrivalMs ${
        fmt(arrivalMs)
      } at partition ${partition} offset ${offset}: expected a finite epoch ms or absent`,
    );
  }
}

/** Folds one accepted tick into the window at `d[b..]` (Neumaier-compensated sums). */
function addTick(
  d: Float64Array,
  b: number,
  price: number,
  eventTime: number,
  offset: number,
  delta: number,
): void {
  d[b + F_COUNT]++;
  const s = d[b + F_SUM];
  const t = s + price;
  if (Math.abs(s) >= Math.abs(price)) d[b + F_COMP] += (s - t) + price;
  else d[b + F_COMP] += (price - t) + s;
  d[b + F_SUM] = t;
  if (price > d[b + F_HIGH]) d[b + F_HIGH] = price;
  if (price < d[b + F_LOW]) d[b + F_LOW] = price;
  // Offsets increase within a partition, so "earliest, ties lowest offset" keeps the existing
  // open on a tie, and "latest, ties highest offset" takes the new close.
  if (eventTime < d[b + F_FIRST]) {
    d[b + F_FIRST] = eventTime;
    d[b + F_OPEN] = price;
  }
  if (eventTime >= d[b + F_LAST]) {
    d[b + F_LAST] = eventTime;
    d[b + F_CLOSE] = price;
  }
  d[b + F_LAST_OFFSET] = offset;
  if (delta !== 0) {
    const v = d[b + F_VOLUME];
    const vt = v + delta;
    if (Math.abs(v) >= Math.abs(delta)) d[b + F_VOLUME_COMP] += (v - vt) + delta;
    else d[b + F_VOLUME_COMP] += (delta - vt) + v;
    d[b + F_VOLUME] = vt;
    const pd = price * delta;
    const p = d[b + F_PV];
    const pt = p + pd;
    if (Math.abs(p) >= Math.abs(pd)) d[b + F_PV_COMP] += (p - pt) + pd;
    else d[b + F_PV_COMP] += (pd - pt) + p;
    d[b + F_PV] = pt;
  }
}

/** Sorts `order[lo..hi)` by `key` (stable): insertion sort for a short run, else the built-in. */
function sortRun(order: Int32Array, lo: number, hi: number, key: Float64Array): void {
  if (hi - lo > 32) {
    const run = Array.from(order.subarray(lo, hi)).sort((a, b) => key[a] - key[b]);
    order.set(run, lo);
    return;
  }
  for (let i = lo + 1; i < hi; i++) {
    const v = order[i];
    const k = key[v];
    let j = i - 1;
    while (j >= lo && key[order[j]] > k) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = v;
  }
}

/**
 * The indices 0..n-1 sorted (stable) by (part, major, start), `major` an integer below `majors`:
 * a counting sort by (part, major), then each group by start (a cut's windows of one symbol and
 * resolution are few and mostly in order). A comparison sort when the groups are too many.
 */
function deltaOrder(
  part: Float64Array,
  major: Float64Array,
  start: Float64Array,
  majors: number,
): Int32Array {
  const n = part.length;
  const order = new Int32Array(n);
  const parts = [...new Set(part)].sort((a, b) => a - b);
  const groups = parts.length * majors;
  if (groups > 4 * n + 1024) {
    const all = Array.from({ length: n }, (_, i) => i);
    all.sort((a, b) => (part[a] - part[b]) || (major[a] - major[b]) || (start[a] - start[b]));
    order.set(all);
    return order;
  }
  const partRank = new Map(parts.map((v, i) => [v, i]));
  const g = new Int32Array(n);
  const count = new Int32Array(groups + 1);
  for (let i = 0; i < n; i++) {
    g[i] = partRank.get(part[i])! * majors + major[i];
    count[g[i] + 1]++;
  }
  for (let i = 1; i <= groups; i++) count[i] += count[i - 1];
  for (let i = 0; i < n; i++) order[count[g[i]]++] = i;
  for (let lo = 0; lo < n;) {
    let hi = lo + 1;
    while (hi < n && g[order[hi]] === g[order[lo]]) hi++;
    if (hi - lo > 1) sortRun(order, lo, hi, start);
    lo = hi;
  }
  return order;
}

/** The slots of the windows `syms` hold, by resolution, then symbol (in `syms` order), then start. */
function* windowSlots(syms: Iterable<SymbolState>, resolutions: number): Iterable<number> {
  const list = [...syms];
  for (let r = 0; r < resolutions; r++) {
    for (const sym of list) {
      const ix = sym.index[r];
      if (ix !== undefined) yield* indexSlots(ix);
    }
  }
}

function toRow(pool: Pool, sizes: readonly number[], s: number, isFinal: boolean): WindowRow {
  const d = pool.pages[s >>> PAGE_BITS];
  const b = (s & PAGE_MASK) * STRIDE;
  const md = pool.metas[s >>> PAGE_BITS];
  const mb = (s & PAGE_MASK) * META_STRIDE;
  const sym = pool.syms[s]!;
  const sum = d[b + F_SUM] + d[b + F_COMP];
  const volume = d[b + F_VOLUME] + d[b + F_VOLUME_COMP];
  const pvSum = d[b + F_PV] + d[b + F_PV_COMP];
  const count = d[b + F_COUNT];
  return {
    symbol: sym.symbol,
    windowMs: sizes[md[mb + M_RES]],
    windowStart: md[mb + M_START],
    windowEnd: md[mb + M_END],
    count,
    sum,
    avg: sum / count,
    open: d[b + F_OPEN],
    high: d[b + F_HIGH],
    low: d[b + F_LOW],
    close: d[b + F_CLOSE],
    firstEventTime: d[b + F_FIRST],
    lastEventTime: d[b + F_LAST],
    partition: sym.part.id,
    lastOffset: d[b + F_LAST_OFFSET],
    isFinal,
    volume,
    pvSum,
    vwap: volume === 0 ? null : pvSum / volume,
  };
}

function toWindowRecord(pool: Pool, sizes: readonly number[], s: number): WindowRecord {
  const d = pool.pages[s >>> PAGE_BITS];
  const b = (s & PAGE_MASK) * STRIDE;
  const md = pool.metas[s >>> PAGE_BITS];
  const mb = (s & PAGE_MASK) * META_STRIDE;
  const sym = pool.syms[s]!;
  return {
    kind: "window",
    partition: sym.part.id,
    windowMs: sizes[md[mb + M_RES]],
    symbol: sym.symbol,
    start: md[mb + M_START],
    count: d[b + F_COUNT],
    sum: d[b + F_SUM],
    comp: d[b + F_COMP],
    open: d[b + F_OPEN],
    high: d[b + F_HIGH],
    low: d[b + F_LOW],
    close: d[b + F_CLOSE],
    first: d[b + F_FIRST],
    last: d[b + F_LAST],
    lastOffset: d[b + F_LAST_OFFSET],
    volume: d[b + F_VOLUME],
    volumeComp: d[b + F_VOLUME_COMP],
    pv: d[b + F_PV],
    pvComp: d[b + F_PV_COMP],
  };
}

function partitionRecord(p: PartitionState): PartitionRecord {
  return {
    kind: "partition",
    partition: p.id,
    maxEventTime: nullIfInfinite(p.maxEventTime),
    lastOffset: nullIfInfinite(p.lastOffset),
    floor: nullIfInfinite(p.floor),
    replayBelow: p.replayBelow,
    lastArrivalMs: nullIfInfinite(p.lastArrival),
  };
}

function metaOf(p: PartitionState): PartitionMeta {
  return {
    partition: p.id,
    maxEventTime: nullIfInfinite(p.maxEventTime),
    lastOffset: nullIfInfinite(p.lastOffset),
    watermark: nullIfInfinite(p.wm),
    floor: nullIfInfinite(p.floor),
    replayBelow: p.replayBelow,
    lastArrivalMs: nullIfInfinite(p.lastArrival),
    openWindows: p.open,
  };
}

function compareRows(a: WindowRow, b: WindowRow): number {
  if (a.partition !== b.partition) return a.partition - b.partition;
  if (a.windowMs !== b.windowMs) return a.windowMs - b.windowMs;
  if (a.symbol !== b.symbol) return a.symbol < b.symbol ? -1 : 1;
  return a.windowStart - b.windowStart;
}

/** The lists a cut owns; the engine writes copies into them (copy-on-write) until release. */
class CutLists {
  released = false;
  /** Slots of the copies made for this cut (freed with it). */
  readonly copies: number[] = [];
  constructor(
    readonly gen: number,
    /** Slots of the windows changed in the cut's generation (live, or copies once changed). */
    readonly windows: number[],
    /** Slots of the windows that became final in the cut's generation (never changed again). */
    readonly finals: number[],
    /** Symbols whose baseline changed (live, or copies once changed). */
    readonly baselines: (SymbolState | BaselineCopy)[],
  ) {}
}

// ---------------------------------------------------------------------------------------------
// Cut

/** What `WindowEngine.cut()` hands to a new Cut. */
interface CutInit {
  pool: Pool;
  sizes: readonly number[];
  late: LateTick[];
  meta: PartitionMeta[];
  changedParts: PartitionRecord[];
  stats: CutStats;
  openWindows: number;
  finalizeDueAt: number | null;
  deleteNew: boolean;
  state: readonly StateRecord[] | null;
  /** The cut holds its open rows back. */
  hold: boolean;
  /** Windows born after this generation were never written (they are `born: "this-cut"`). */
  bornAfter: number;
  onRelease: (lists: CutLists) => void;
}

/**
 * A frozen view of the engine at one cut: the windows changed since the previous cut (update
 * mode), the newly final ones, the late ticks, the state delta and the partition metas. Folding
 * may continue before `release()`: windows a fold changes are copied first (copy-on-write).
 */
export class Cut {
  /** Cut number (0 for the first cut of an engine). */
  readonly id: number;
  /** Late ticks since the previous cut, in fold order (offset order within each partition). */
  readonly late: readonly LateTick[];
  /** Per partition, ascending, as of the cut. */
  readonly meta: readonly PartitionMeta[];
  /** Counts since the previous cut. */
  readonly stats: Readonly<CutStats>;
  /** Open (not final) windows held after the cut, all partitions. */
  readonly openWindows: number;
  /**
   * Earliest wall time at which idle finalization would make an open window final if no tick
   * arrives (max(lastArrivalMs + idleFinalizeMs, smallest open end + delay), min over
   * partitions), or null (idle finalization off, or no open window on a partition with arrivals).
   */
  readonly finalizeDueAt: number | null;
  /**
   * The whole state as of the cut in codec order (what `WindowEngine.records()` would have
   * returned right after it), when the cut was asked for it (`wholeState`) and it has no more
   * windows than the delta would carry; otherwise null. Not affected by `release()`.
   */
  readonly state: readonly StateRecord[] | null;
  #lists: CutLists | null;
  readonly #init: CutInit;

  /** Internal: created by `WindowEngine.cut()`. */
  constructor(lists: CutLists, init: CutInit) {
    this.id = lists.gen;
    this.#lists = lists;
    this.#init = init;
    this.late = Object.freeze(init.late);
    this.meta = Object.freeze(init.meta);
    this.stats = Object.freeze(init.stats);
    this.openWindows = init.openWindows;
    this.finalizeDueAt = init.finalizeDueAt;
    this.state = init.state === null ? null : Object.freeze(init.state);
  }

  #live(): CutLists {
    if (this.#lists === null) throw new EngineError(`Cut ${this.id} was already released`);
    return this.#lists;
  }

  /** Whether `release()` was called. */
  get released(): boolean {
    return this.#lists === null;
  }

  /**
   * The cut's rows in slices of at most `sliceSize`: the newly final windows (isFinal true),
   * then the changed open ones (isFinal false; none if the cut holds them back, `hold`); each
   * window at most once; order unspecified. `born` keeps only the windows no earlier cut wrote
   * (`"this-cut"`: created since the last cut that did not hold its rows back, and not
   * restored) or only the others (`"before"`).
   */
  *rows(
    sliceSize: number = DEFAULT_SLICE_SIZE,
    options: { born?: "this-cut" | "before" } = {},
  ): Iterable<WindowRow[]> {
    if (!Number.isSafeInteger(sliceSize) || sliceSize <= 0) {
      throw new EngineError(
        `Invalid sliceSize ${fmt(sliceSize)}: expected a positive safe integer`,
      );
    }
    const lists = this.#live();
    const { pool, sizes } = this.#init;
    const gen = lists.gen;
    const born = options.born;
    // -1: every window; 1: only those never written (born after bornAfter); 0: only the others.
    const want = born === undefined ? -1 : born === "this-cut" ? 1 : 0;
    const bornAfter = Math.max(this.#init.bornAfter, -1); // -1: restored, maybe in the table
    const keep = (s: number) =>
      want === -1 ||
      (pool.metas[s >>> PAGE_BITS][(s & PAGE_MASK) * META_STRIDE + M_BORN_GEN] > bornAfter) ===
        (want === 1);
    let slice: WindowRow[] = [];
    const finals = lists.finals;
    for (let i = 0; i < finals.length; i++) {
      if (!keep(finals[i])) continue;
      slice.push(toRow(pool, sizes, finals[i], true));
      if (slice.length === sliceSize) {
        yield slice;
        this.#live();
        slice = [];
      }
    }
    const windows = this.#init.hold ? [] : lists.windows;
    for (let i = 0; i < windows.length; i++) {
      const s = windows[i]; // read now: a fold may have replaced it by a copy meanwhile
      const d = pool.pages[s >>> PAGE_BITS];
      if (d[(s & PAGE_MASK) * STRIDE + F_FINAL_GEN] <= gen) continue; // final: emitted above
      if (!keep(s)) continue;
      slice.push(toRow(pool, sizes, s, false));
      if (slice.length === sliceSize) {
        yield slice;
        this.#live();
        slice = [];
      }
    }
    if (slice.length > 0) yield slice;
  }

  /**
   * The state changes since the previous cut, in codec order: changed partition records,
   * changed baselines, changed open windows, and `window-deleted` for windows evicted as final.
   * Applying every cut's delta in order to a base (latest wins per `stateKey`) gives the state
   * as of the last of those cuts.
   */
  *delta(): Iterable<StateRecord> {
    const lists = this.#live();
    const { pool, sizes, changedParts, deleteNew } = this.#init;
    const gen = lists.gen;
    const head: StateRecord[] = [...changedParts];
    for (const b of lists.baselines) {
      head.push(
        b instanceof SymbolState
          ? { kind: "baseline", partition: b.part.id, symbol: b.symbol, dayVolume: b.base }
          : { kind: "baseline", partition: b.partition, symbol: b.symbol, dayVolume: b.dayVolume },
      );
    }
    head.sort(compareStateRecords);
    // Window records, sorted by numbers (partition, resolution, symbol rank, start) rather than
    // by comparing records: the same order as compareStateRecords, at a fraction of the cost.
    const slots: number[] = [];
    const deleted: boolean[] = [];
    for (const s of lists.windows) {
      const d = pool.pages[s >>> PAGE_BITS];
      if (d[(s & PAGE_MASK) * STRIDE + F_FINAL_GEN] > gen) {
        slots.push(s);
        deleted.push(false);
      }
    }
    for (const s of lists.finals) {
      const d = pool.metas[s >>> PAGE_BITS];
      if (d[(s & PAGE_MASK) * META_STRIDE + M_BORN_GEN] < gen || deleteNew) {
        slots.push(s);
        deleted.push(true);
      }
    }
    const n = slots.length;
    const rank = new Map<string, number>();
    for (let i = 0; i < n; i++) rank.set(pool.syms[slots[i]]!.symbol, 0);
    [...rank.keys()].sort().forEach((sym, i) => rank.set(sym, i));
    const part = new Float64Array(n);
    const major = new Float64Array(n);
    const start = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const s = slots[i];
      const sym = pool.syms[s]!;
      const md = pool.metas[s >>> PAGE_BITS];
      const mb = (s & PAGE_MASK) * META_STRIDE;
      part[i] = sym.part.id;
      major[i] = md[mb + M_RES] * rank.size + rank.get(sym.symbol)!;
      start[i] = md[mb + M_START];
    }
    const order = deltaOrder(part, major, start, sizes.length * rank.size);
    // Merge: within a partition, its record and baselines come before its windows. Built in full
    // before the first record is handed out, as the cut's lists may change once the engine folds.
    const out: StateRecord[] = [];
    let h = 0;
    for (const i of order) {
      while (h < head.length && head[h].partition <= part[i]) out.push(head[h++]);
      const s = slots[i];
      if (!deleted[i]) out.push(toWindowRecord(pool, sizes, s));
      else {
        const md = pool.metas[s >>> PAGE_BITS];
        out.push({
          kind: "window-deleted",
          partition: part[i],
          windowMs: sizes[md[(s & PAGE_MASK) * META_STRIDE + M_RES]],
          symbol: pool.syms[s]!.symbol,
          start: start[i],
        });
      }
    }
    while (h < head.length) out.push(head[h++]);
    yield* out;
  }

  /** Releases the cut's lists (idempotent); rows() and delta() then throw. */
  release(): void {
    const lists = this.#lists;
    if (lists === null) return;
    this.#lists = null;
    this.#init.onRelease(lists);
  }
}

// ---------------------------------------------------------------------------------------------
// Engine

/**
 * Incremental multi-resolution tumbling-window aggregator. Feed ticks with `fold`/`foldAll`,
 * then `cut()` to get the windows changed since the previous cut (update mode), the newly final
 * ones, the late ticks and the state delta.
 */
export class WindowEngine {
  /** Window lengths in ms, ascending. */
  readonly windows: readonly number[];
  /** Watermark delay in ms. */
  readonly watermarkDelayMs: number;
  /** Idle finalization delay in ms (0 = off). */
  readonly idleFinalizeMs: number;
  /** Open-window bound per partition (all resolutions). */
  readonly maxOpenWindows: number;
  readonly #sizes: number[];
  readonly #pool = new Pool();
  readonly #parts = new Map<number, PartitionState>();
  #cache: PartitionState | undefined = undefined;
  /** Current generation (= id of the next cut). */
  #gen = 0;
  #dirty: number[] = [];
  /** Windows of #dirty that became final in this generation. */
  #dirtyFinal = 0;
  #finals: number[] = [];
  #baseDirty: (SymbolState | BaselineCopy)[] = [];
  #late: LateTick[] = [];
  #open = 0;
  #forced = 0;
  #suppressed = 0;
  /** Unreleased cuts by generation. */
  readonly #cuts = new Map<number, CutLists>();
  /** Cuts whose slots are not yet freed, oldest first (freed once it and all older are released). */
  readonly #retiring: CutLists[] = [];
  /** Bumped by every state change (guards records()). */
  #mutations = 0;
  /** Generation in which records() was last read. */
  #recordsAt = -1;
  /**
   * Generation of the last cut that wrote its open rows (did not `hold`): windows changed after
   * it and still open are written by the next such cut. -2 after `resendRestored()`.
   */
  #writtenGen = -1;

  /** Creates an empty engine; throws EngineError on invalid options. */
  constructor(options: EngineOptions = {}) {
    const o = resolveOptions(options);
    this.windows = o.windows;
    this.watermarkDelayMs = o.watermarkDelayMs;
    this.idleFinalizeMs = o.idleFinalizeMs;
    this.maxOpenWindows = o.maxOpenWindows;
    this.#sizes = [...o.windows];
  }

  /** Number of open (not final) windows, all partitions and resolutions. */
  get openWindowCount(): number {
    return this.#open;
  }

  /** Windows changed since the previous cut (at most what the next cut reports as changed). */
  get changedSinceCut(): number {
    return this.#dirty.length;
  }

  /**
   * Makes the next cut without `hold` write every restored window as an open row, as if a held
   * cut had changed them all (a restart from a checkpoint taken while rows were held back: the
   * previous run may not have written them). Call before the first cut; returns their count.
   */
  resendRestored(): number {
    if (this.#gen !== 0) {
      throw new EngineError(
        `resendRestored() after ${this.#gen} cut(s): call it before the first cut`,
      );
    }
    this.#writtenGen = -2;
    return this.#open;
  }

  /** Number of cuts not yet released. */
  get unreleasedCuts(): number {
    return this.#cuts.size;
  }

  /** Effective watermark of `partition`, or -Infinity before any tick or floor. */
  watermark(partition: number): number {
    return this.#parts.get(partition)?.wm ?? -Infinity;
  }

  /** Partitions that have seen a tick, a floor or a restore, ascending. */
  partitions(): number[] {
    return [...this.#parts.keys()].sort((a, b) => a - b);
  }

  /** Last offset folded on `partition`, or undefined before any tick. Skip replayed ticks at or below it. */
  lastOffset(partition: number): number | undefined {
    const p = this.#parts.get(partition);
    return p === undefined || p.lastOffset === -Infinity ? undefined : p.lastOffset;
  }

  /** Current meta of `partition`, or undefined if the partition is unknown. */
  meta(partition: number): PartitionMeta | undefined {
    const p = this.#parts.get(partition);
    return p === undefined ? undefined : metaOf(p);
  }

  /**
   * Folds one tick; returns true if every resolution accepted it, false if it was late for at
   * least one. Throws EngineError (leaving the state untouched) on an invalid tick or an offset
   * not greater than the partition's last one.
   */
  fold(tick: Tick): boolean {
    let p = this.#cache;
    if (p === undefined || p.id !== tick.partition) p = this.#parts.get(tick.partition);
    validateTick(tick, p);
    const eventTime = tick.eventTime + 0; // normalise -0
    const price = tick.price + 0;
    const offset = tick.offset;
    if (p === undefined) p = this.#newPartition(tick.partition);
    this.#cache = p;
    this.#mutations++;
    const gen = this.#gen;
    const sym = this.#symbol(p, tick.symbol);
    const delta = tick.dayVolume === undefined ? 0 : this.#volumeDelta(sym, tick.dayVolume);
    const wm = p.wm;
    const n = this.#sizes.length;
    let lateMask = 0;
    for (let r = 0; r < n; r++) {
      if (!this.#foldInto(p, sym, r, eventTime, price, offset, delta, wm, gen)) {
        lateMask |= 1 << r;
      }
    }
    if (lateMask !== 0) this.#reportLate(p, sym, tick, wm, lateMask);
    this.#advance(p, eventTime, offset, tick.arrivalMs);
    if (p.wm >= p.minEnd) this.#finalize(p);
    if (p.open > this.maxOpenWindows) this.#enforceBound(p);
    return lateMask === 0;
  }

  /** Folds ticks in order; stops at (and throws) the first invalid tick, keeping the earlier ones. */
  foldAll(ticks: Iterable<Tick>): FoldSummary {
    let accepted = 0;
    if (Array.isArray(ticks)) {
      for (let i = 0; i < ticks.length; i++) if (this.fold(ticks[i])) accepted++;
      return { accepted, late: ticks.length - accepted };
    }
    let late = 0;
    for (const tick of ticks) {
      if (this.fold(tick)) accepted++;
      else late++;
    }
    return { accepted, late };
  }

  #newPartition(id: number): PartitionState {
    const p = new PartitionState(id, this.#sizes.length);
    this.#parts.set(id, p);
    return p;
  }

  #symbol(p: PartitionState, symbol: string): SymbolState {
    let sym = p.bySymbol.get(symbol);
    if (sym === undefined) {
      sym = new SymbolState(p, symbol, this.#sizes.length);
      p.bySymbol.set(symbol, sym);
    }
    return sym;
  }

  /** The volume delta of a tick with `dayVolume` (late ticks included); moves the baseline. */
  #volumeDelta(sym: SymbolState, dayVolume: number): number {
    if (!sym.hasBase) {
      this.#touchBaseline(sym);
      sym.hasBase = true;
      sym.base = dayVolume + 0;
      return 0;
    }
    const base = sym.base;
    if (dayVolume === base) return 0;
    if (sym.baseGen !== this.#gen) this.#touchBaseline(sym);
    sym.base = dayVolume + 0;
    return dayVolume < base ? dayVolume : dayVolume - base;
  }

  /** Folds one tick into its window of resolution r; false if that window is late. */
  #foldInto(
    p: PartitionState,
    sym: SymbolState,
    r: number,
    eventTime: number,
    price: number,
    offset: number,
    delta: number,
    wm: number,
    gen: number,
  ): boolean {
    const cur = sym.cur;
    const k = 3 * r;
    let s: number;
    if (eventTime >= cur[k] && eventTime < cur[k + 1] && cur[k + 1] > wm) s = cur[k + 2];
    else {
      const size = this.#sizes[r];
      let idx = Math.floor(eventTime / size);
      let start = idx * size;
      // Guard against rounding for fractional times near a boundary.
      if (start > eventTime) {
        idx--;
        start -= size;
      } else if (start + size <= eventTime) {
        idx++;
        start += size;
      }
      start += 0; // normalise -0
      const end = start + size;
      if (end <= wm) return false;
      // A window newer than the current one cannot exist yet: skip the lookup.
      const ix = sym.index[r];
      const found = start > cur[k] || ix === undefined ? undefined : indexGet(ix, idx);
      if (found === undefined) {
        this.#create(p, sym, r, idx, start, end, price, eventTime, offset, delta);
        return true;
      }
      s = found;
      if (start > cur[k]) {
        cur[k] = start;
        cur[k + 1] = end;
        cur[k + 2] = s;
      }
    }
    const d = this.#pool.pages[s >>> PAGE_BITS];
    const b = (s & PAGE_MASK) * STRIDE;
    if (d[b + F_GEN] !== gen) this.#touch(s, d, b);
    addTick(d, b, price, eventTime, offset, delta);
    return true;
  }

  /** Reports (or counts as suppressed) a tick late for the resolutions in lateMask. */
  #reportLate(p: PartitionState, sym: SymbolState, tick: Tick, wm: number, lateMask: number): void {
    if (tick.offset < p.replayBelow) this.#suppressed++;
    else {
      const lateFor: number[] = [];
      const sizes = this.#sizes;
      for (let r = 0; r < sizes.length; r++) {
        if ((lateMask & (1 << r)) !== 0) lateFor.push(sizes[r]);
      }
      this.#late.push({
        symbol: tick.symbol,
        eventTime: tick.eventTime + 0,
        price: tick.price + 0,
        partition: tick.partition,
        offset: tick.offset,
        watermark: wm,
        lateFor,
      });
    }
    // A symbol seen only in late ticks without volume holds nothing.
    if (sym.count === 0 && !sym.hasBase && p.bySymbol.get(sym.symbol) === sym) {
      p.bySymbol.delete(sym.symbol);
    }
  }

  /** Advances `p`'s max event time, natural watermark, last offset and last arrival. */
  #advance(p: PartitionState, eventTime: number, offset: number, arrivalMs?: number): void {
    if (eventTime > p.maxEventTime) {
      p.maxEventTime = eventTime;
      const natural = eventTime - this.watermarkDelayMs;
      if (natural > p.wm) p.wm = natural;
    }
    p.lastOffset = offset;
    if (arrivalMs !== undefined && arrivalMs > p.lastArrival) p.lastArrival = arrivalMs + 0;
    p.metaGen = this.#gen;
  }

  /** Creates the window (sym, r, idx) holding one tick. */
  #create(
    p: PartitionState,
    sym: SymbolState,
    r: number,
    idx: number,
    start: number,
    end: number,
    price: number,
    eventTime: number,
    offset: number,
    delta: number,
  ): void {
    const gen = this.#gen;
    const s = this.#pool.alloc(sym);
    const d = this.#pool.pages[s >>> PAGE_BITS];
    const b = (s & PAGE_MASK) * STRIDE;
    const md = this.#pool.metas[s >>> PAGE_BITS];
    const mb = (s & PAGE_MASK) * META_STRIDE;
    d[b + F_GEN] = gen;
    d[b + F_COUNT] = 1;
    d[b + F_SUM] = price;
    d[b + F_COMP] = 0;
    d[b + F_OPEN] = price;
    d[b + F_HIGH] = price;
    d[b + F_LOW] = price;
    d[b + F_CLOSE] = price;
    d[b + F_FIRST] = eventTime;
    d[b + F_LAST] = eventTime;
    d[b + F_LAST_OFFSET] = offset;
    d[b + F_VOLUME] = delta;
    d[b + F_VOLUME_COMP] = 0;
    d[b + F_PV] = price * delta;
    d[b + F_PV_COMP] = 0;
    d[b + F_FINAL_GEN] = OPEN;
    md[mb + M_START] = start;
    md[mb + M_END] = end;
    md[mb + M_DIRTY_SLOT] = this.#dirty.length;
    md[mb + M_BORN_GEN] = gen;
    md[mb + M_RES] = r;
    this.#dirty.push(s);
    this.#index(p, sym, r, idx, start, end, s);
  }

  /** Puts slot `s` into the symbol's index, its current-window entry and the end buckets. */
  #index(
    p: PartitionState,
    sym: SymbolState,
    r: number,
    idx: number,
    start: number,
    end: number,
    s: number,
  ): void {
    const ix = sym.index[r];
    if (ix === undefined) sym.index[r] = [idx, s];
    else if (Array.isArray(ix)) {
      const big = indexAdd(ix, idx, s);
      if (big !== undefined) sym.index[r] = big;
    } else ix.set(idx, s);
    sym.count++;
    const cur = sym.cur;
    const k = 3 * r;
    if (start > cur[k]) {
      cur[k] = start;
      cur[k + 1] = end;
      cur[k + 2] = s;
    }
    let bucket: number[] | undefined;
    if (p.lastIdx[r] === idx) bucket = p.lastBucket[r]!;
    else {
      const buckets = p.buckets[r];
      bucket = buckets.get(idx);
      if (bucket === undefined) {
        buckets.set(idx, bucket = []);
        heapPush(p.heaps[r], idx);
        if (end < p.minEnd) p.minEnd = end;
      }
      p.lastIdx[r] = idx;
      p.lastBucket[r] = bucket;
    }
    bucket.push(s);
    p.open++;
    this.#open++;
  }

  /** Marks slot `s` changed in this generation, first copying it into an unreleased cut holding it. */
  #touch(s: number, d: Float64Array, b: number): void {
    const md = this.#pool.metas[s >>> PAGE_BITS];
    const mb = (s & PAGE_MASK) * META_STRIDE;
    if (this.#cuts.size !== 0) {
      const c = this.#cuts.get(d[b + F_GEN]);
      if (c !== undefined) {
        const pool = this.#pool;
        const cs = pool.alloc(pool.syms[s]!);
        const cd = pool.pages[cs >>> PAGE_BITS];
        const cb = (cs & PAGE_MASK) * STRIDE;
        for (let i = 0; i < STRIDE; i++) cd[cb + i] = d[b + i];
        const cmd = pool.metas[cs >>> PAGE_BITS];
        const cmb = (cs & PAGE_MASK) * META_STRIDE;
        for (let i = 0; i < META_STRIDE; i++) cmd[cmb + i] = md[mb + i];
        c.windows[md[mb + M_DIRTY_SLOT]] = cs;
        c.copies.push(cs);
      }
    }
    d[b + F_GEN] = this.#gen;
    md[mb + M_DIRTY_SLOT] = this.#dirty.length;
    this.#dirty.push(s);
  }

  /** Marks `sym`'s baseline changed in this generation (before it changes), copy-on-write. */
  #touchBaseline(sym: SymbolState): void {
    if (this.#cuts.size !== 0 && sym.baseGen >= 0) {
      const c = this.#cuts.get(sym.baseGen);
      if (c !== undefined) {
        c.baselines[sym.baseSlot] = new BaselineCopy(sym.symbol, sym.part.id, sym.base);
      }
    }
    sym.baseGen = this.#gen;
    sym.baseSlot = this.#baseDirty.length;
    this.#baseDirty.push(sym);
  }

  /** Makes every open window of `p` with end <= wm final (queued for the next cut). */
  #finalize(p: PartitionState): number {
    const gen = this.#gen;
    const pool = this.#pool;
    const sizes = this.#sizes;
    const wm = p.wm;
    let n = 0;
    let minEnd = Infinity;
    for (let r = 0; r < sizes.length; r++) {
      const heap = p.heaps[r];
      const buckets = p.buckets[r];
      const size = sizes[r];
      while (heap.length > 0 && (heap[0] + 1) * size <= wm) {
        const idx = heapPop(heap);
        const bucket = buckets.get(idx)!;
        buckets.delete(idx);
        if (p.lastIdx[r] === idx) {
          p.lastIdx[r] = NaN;
          p.lastBucket[r] = undefined;
        }
        for (let i = 0; i < bucket.length; i++) {
          const s = bucket[i];
          const d = pool.pages[s >>> PAGE_BITS];
          const b = (s & PAGE_MASK) * STRIDE;
          d[b + F_FINAL_GEN] = gen;
          if (d[b + F_GEN] === gen) this.#dirtyFinal++;
          this.#finals.push(s);
        }
        n += bucket.length;
      }
      if (heap.length > 0 && (heap[0] + 1) * size < minEnd) minEnd = (heap[0] + 1) * size;
    }
    p.open -= n;
    this.#open -= n;
    p.minEnd = minEnd;
    return n;
  }

  /** Raises `p`'s floor to its smallest open window end until it holds at most the bound. */
  #enforceBound(p: PartitionState): void {
    while (p.open > this.maxOpenWindows) {
      const end = p.minEnd;
      if (end > p.floor) p.floor = end;
      if (end > p.wm) p.wm = end;
      this.#forced += this.#finalize(p);
    }
    p.metaGen = this.#gen;
  }

  /** Raises `p`'s floor (and its watermark if below); true if the watermark rose. */
  #raise(p: PartitionState, floor: number): boolean {
    let raised = false;
    if (floor > p.floor) {
      p.floor = floor;
      p.metaGen = this.#gen;
    }
    if (floor > p.wm) {
      p.wm = floor;
      raised = true;
      if (floor >= p.minEnd) this.#finalize(p);
    }
    return raised;
  }

  /**
   * Raises the floor of `partition`'s watermark (windows ending at or before it become final,
   * later ticks for them are late) and/or its replayBelow offset, for resets and rebuilds.
   * Both only ever rise. Creates the partition if unknown.
   */
  setFloor(partition: number, options: FloorOptions): void {
    if (!isPartitionId(partition)) {
      throw new EngineError(
        `Invalid partition ${fmt(partition)}: expected a non-negative safe integer`,
      );
    }
    const watermark = options.watermark;
    const replayBelow = options.replayBelow;
    if (
      watermark !== undefined && watermark !== null &&
      !(typeof watermark === "number" && Number.isFinite(watermark))
    ) {
      throw new EngineError(
        `Invalid floor watermark ${
          fmt(watermark)
        } for partition ${partition}: expected a finite number or null`,
      );
    }
    if (replayBelow !== undefined && !(Number.isSafeInteger(replayBelow) && replayBelow >= 0)) {
      throw new EngineError(
        `Invalid replayBelow ${
          fmt(replayBelow)
        } for partition ${partition}: expected a non-negative safe integer`,
      );
    }
    this.#mutations++;
    let p = this.#parts.get(partition);
    if (p === undefined) {
      p = new PartitionState(partition, this.#sizes.length);
      p.metaGen = this.#gen;
      this.#parts.set(partition, p);
    }
    if (watermark !== undefined && watermark !== null) this.#raise(p, watermark + 0);
    if (replayBelow !== undefined && replayBelow > p.replayBelow) {
      p.replayBelow = replayBelow;
      p.metaGen = this.#gen;
    }
  }

  /**
   * Ends the current generation: applies idle finalization (see `CutInput`), evicts the windows
   * that became final, and returns a view of the changes since the previous cut. Cost: O(1) in
   * the number of changed windows, plus the evictions and O(partitions).
   */
  cut(input: CutInput = {}): Cut {
    const nowMs = input.nowMs;
    const caughtUp = input.caughtUp;
    if (nowMs !== undefined && !(typeof nowMs === "number" && Number.isFinite(nowMs))) {
      throw new EngineError(`Invalid cut nowMs ${fmt(nowMs)}: expected a finite epoch ms`);
    }
    if (caughtUp !== undefined && typeof caughtUp !== "function") {
      throw new EngineError(`Invalid cut caughtUp ${fmt(caughtUp)}: expected a function`);
    }
    const wholeState = input.wholeState;
    if (wholeState !== undefined && typeof wholeState !== "boolean") {
      throw new EngineError(`Invalid cut wholeState ${fmt(wholeState)}: expected a boolean`);
    }
    const hold = input.hold ?? false;
    if (typeof hold !== "boolean") {
      throw new EngineError(`Invalid cut hold ${fmt(hold)}: expected a boolean`);
    }
    this.#mutations++;
    const gen = this.#gen;
    const ids = this.partitions();
    const idleAdvanced: number[] = [];
    const idle = this.idleFinalizeMs;
    if (nowMs !== undefined && idle > 0) {
      for (const id of ids) {
        const p = this.#parts.get(id)!;
        if (p.lastArrival === -Infinity || nowMs - p.lastArrival < idle) continue;
        if (caughtUp !== undefined && !caughtUp(id)) continue;
        if (this.#raise(p, nowMs - this.watermarkDelayMs)) idleAdvanced.push(id);
      }
    }
    // Evict the windows that became final in this generation.
    const pool = this.#pool;
    const sizes = this.#sizes;
    const finals = this.#finals;
    for (let i = 0; i < finals.length; i++) {
      const s = finals[i];
      const d = pool.metas[s >>> PAGE_BITS];
      const b = (s & PAGE_MASK) * META_STRIDE;
      const sym = pool.syms[s]!;
      const r = d[b + M_RES];
      if (indexDelete(sym.index[r]!, d[b + M_START] / sizes[r])) sym.index[r] = undefined;
      if (--sym.count === 0 && !sym.hasBase) sym.part.bySymbol.delete(sym.symbol);
    }
    const meta: PartitionMeta[] = [];
    const changedParts: PartitionRecord[] = [];
    let due = Infinity;
    for (const id of ids) {
      const p = this.#parts.get(id)!;
      meta.push(metaOf(p));
      if (p.metaGen === gen) changedParts.push(partitionRecord(p));
      if (idle > 0 && p.open > 0 && p.lastArrival !== -Infinity) {
        const at = Math.max(p.lastArrival + idle, p.minEnd + this.watermarkDelayMs);
        if (at < due) due = at;
      }
    }
    // A cut that writes after held ones: the windows they changed that are still open and were
    // not changed since join this cut's changed windows (copied first if an unreleased cut holds
    // them), so that this cut writes their version as of now, and copy-on-write keeps it.
    const bornAfter = this.#writtenGen;
    if (!hold) {
      if (bornAfter < gen - 1) this.#carry(bornAfter, gen);
      this.#writtenGen = gen;
    }
    const changed = this.#dirty.length - this.#dirtyFinal;
    // The finals are evicted: the state now is the state as of the cut. No window was born in the
    // next generation yet, so the next delta needs no deletions for this base (unlike records()).
    const state = wholeState === true && this.#open <= changed + finals.length
      ? [...this.#state()]
      : null;
    const lists = new CutLists(gen, this.#dirty, finals, this.#baseDirty);
    const cut = new Cut(lists, {
      pool,
      sizes,
      late: this.#late,
      meta,
      changedParts,
      stats: {
        changed,
        finalized: finals.length,
        forcedFinal: this.#forced,
        lateSuppressed: this.#suppressed,
        idleAdvanced,
      },
      openWindows: this.#open,
      finalizeDueAt: Number.isFinite(due) ? due : null,
      deleteNew: this.#recordsAt === gen,
      state,
      hold,
      bornAfter,
      onRelease: (l) => this.#release(l),
    });
    this.#cuts.set(gen, lists);
    this.#retiring.push(lists);
    this.#gen = gen + 1;
    this.#dirty = [];
    this.#dirtyFinal = 0;
    this.#finals = [];
    this.#baseDirty = [];
    this.#late = [];
    this.#forced = 0;
    this.#suppressed = 0;
    return cut;
  }

  /** Touches every open window last changed after generation `after` and before `gen`. */
  #carry(after: number, gen: number): void {
    const pool = this.#pool;
    for (const p of this.#parts.values()) {
      for (const s of windowSlots(p.bySymbol.values(), this.#sizes.length)) {
        const d = pool.pages[s >>> PAGE_BITS];
        const b = (s & PAGE_MASK) * STRIDE;
        const g = d[b + F_GEN];
        if (g > after && g < gen) this.#touch(s, d, b);
      }
    }
  }

  /** Frees the slots of released cuts once no older cut is unreleased. */
  #release(lists: CutLists): void {
    lists.released = true;
    this.#cuts.delete(lists.gen);
    const retiring = this.#retiring;
    let i = 0;
    while (i < retiring.length && retiring[i].released) {
      this.#pool.release(retiring[i].finals);
      this.#pool.release(retiring[i].copies);
      i++;
    }
    if (i > 0) retiring.splice(0, i);
  }

  /**
   * Convenience: cuts, collects every row (sorted by partition, windowMs, symbol, windowStart)
   * and the late ticks, and releases the cut.
   */
  trigger(input: CutInput = {}): TriggerResult {
    const c = this.cut(input);
    const windows: WindowRow[] = [];
    for (const slice of c.rows()) for (const row of slice) windows.push(row);
    c.release();
    windows.sort(compareRows);
    return { windows, late: [...c.late], stats: { ...c.stats } };
  }

  /**
   * The whole state as records in codec order (partition, then its baselines, then its windows
   * by windowMs, symbol, start), including windows final but not yet cut. Synchronous: read it
   * fully before the next fold, cut or setFloor (it throws EngineError if the engine changed).
   */
  *records(): Iterable<StateRecord> {
    this.#recordsAt = this.#gen;
    yield* this.#state();
  }

  /** The whole state as records in codec order (see `records()`). */
  *#state(): Iterable<StateRecord> {
    const m0 = this.#mutations;
    const check = () => {
      if (this.#mutations !== m0) {
        throw new EngineError(
          "The engine changed while records() was being read: read it fully before folding",
        );
      }
    };
    const pool = this.#pool;
    const sizes = this.#sizes;
    for (const id of this.partitions()) {
      check();
      const p = this.#parts.get(id)!;
      yield partitionRecord(p);
      const names = [...p.bySymbol.keys()].sort();
      const syms = names.map((s) => p.bySymbol.get(s)!);
      for (const sym of syms) {
        if (!sym.hasBase) continue;
        check();
        yield { kind: "baseline", partition: id, symbol: sym.symbol, dayVolume: sym.base };
      }
      for (const s of windowSlots(syms, sizes.length)) {
        check();
        yield toWindowRecord(pool, sizes, s);
      }
    }
  }

  /**
   * Rebuilds an engine from state records (`records()` output, or a base merged with deltas by
   * `stateKey`, latest wins, deletions removed), in any order, unique per key. Validates every
   * record against `options` (window lengths included) and throws EngineError naming the bad
   * value. Windows at or below their partition's watermark come back final (emitted by the next
   * cut); the open-window bound is applied.
   */
  static restore(records: Iterable<StateRecord>, options: EngineOptions = {}): WindowEngine {
    const engine = new WindowEngine(options);
    engine.#restore(records);
    return engine;
  }

  #restore(records: Iterable<StateRecord>): void {
    if (records === null || typeof records !== "object" || !(Symbol.iterator in records)) {
      throw new EngineError(`Invalid state records ${fmt(records)}: expected an iterable`);
    }
    const baselines: Record<string, unknown>[] = [];
    const windows: Record<string, unknown>[] = [];
    const num = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
    const bad = (what: string, value: unknown, rec: unknown): never => {
      throw new EngineError(`Invalid ${what} ${fmt(value)} in state record ${fmt(rec)}`);
    };
    for (const raw of records as Iterable<unknown>) {
      if (typeof raw !== "object" || raw === null) bad("state record", raw, raw);
      const rec = raw as Record<string, unknown>;
      if (!isPartitionId(rec.partition)) bad("partition", rec.partition, rec);
      const id = rec.partition as number;
      switch (rec.kind) {
        case "partition": {
          if (this.#parts.has(id)) {
            throw new EngineError(`Duplicate partition record for partition ${id}`);
          }
          const maxEventTime = rec.maxEventTime === null ? -Infinity : rec.maxEventTime;
          const lastOffset = rec.lastOffset === null ? -Infinity : rec.lastOffset;
          if (
            typeof maxEventTime !== "number" ||
            !(maxEventTime === -Infinity ||
              (maxEventTime >= -MAX_EVENT_TIME && maxEventTime <= MAX_EVENT_TIME))
          ) bad("maxEventTime", rec.maxEventTime, rec);
          if (
            typeof lastOffset !== "number" ||
            !(lastOffset === -Infinity || (Number.isSafeInteger(lastOffset) && lastOffset >= 0))
          ) bad("lastOffset", rec.lastOffset, rec);
          if ((maxEventTime === -Infinity) !== (lastOffset === -Infinity)) {
            bad("maxEventTime/lastOffset pair", [rec.maxEventTime, rec.lastOffset], rec);
          }
          if (rec.floor !== null && !num(rec.floor)) bad("floor", rec.floor, rec);
          if (!Number.isSafeInteger(rec.replayBelow) || (rec.replayBelow as number) < 0) {
            bad("replayBelow", rec.replayBelow, rec);
          }
          if (rec.lastArrivalMs !== null && !num(rec.lastArrivalMs)) {
            bad("lastArrivalMs", rec.lastArrivalMs, rec);
          }
          const p = new PartitionState(id, this.#sizes.length);
          p.maxEventTime = (maxEventTime as number) + 0;
          p.lastOffset = lastOffset as number;
          p.floor = rec.floor === null ? -Infinity : (rec.floor as number) + 0;
          p.replayBelow = rec.replayBelow as number;
          p.lastArrival = rec.lastArrivalMs === null ? -Infinity : (rec.lastArrivalMs as number);
          p.wm = Math.max(p.maxEventTime - this.watermarkDelayMs, p.floor);
          this.#parts.set(id, p);
          break;
        }
        case "baseline":
          if (typeof rec.symbol !== "string" || rec.symbol.length === 0) {
            bad("baseline symbol", rec.symbol, rec);
          }
          if (!num(rec.dayVolume) || rec.dayVolume < 0) {
            bad("baseline dayVolume", rec.dayVolume, rec);
          }
          baselines.push(rec);
          break;
        case "window":
          windows.push(rec);
          break;
        case "window-deleted":
          throw new EngineError(
            `Unexpected window-deleted record ${
              fmt(rec)
            } in restored state: merge deltas before restoring`,
          );
        default:
          bad("state record kind", rec.kind, rec);
      }
    }
    const partOf = (rec: Record<string, unknown>): PartitionState => {
      const p = this.#parts.get(rec.partition as number);
      if (p === undefined) {
        throw new EngineError(
          `State record ${fmt(rec)} has no partition record for partition ${rec.partition}`,
        );
      }
      return p;
    };
    const symOf = (p: PartitionState, symbol: string): SymbolState => {
      let sym = p.bySymbol.get(symbol);
      if (sym === undefined) {
        sym = new SymbolState(p, symbol, this.#sizes.length);
        p.bySymbol.set(symbol, sym);
      }
      return sym;
    };
    for (const rec of baselines) {
      const p = partOf(rec);
      const sym = symOf(p, rec.symbol as string);
      if (sym.hasBase) {
        throw new EngineError(
          `Duplicate baseline record for symbol ${fmt(rec.symbol)} on partition ${p.id}`,
        );
      }
      sym.hasBase = true;
      sym.base = (rec.dayVolume as number) + 0;
    }
    const pool = this.#pool;
    const fields = [
      "sum",
      "comp",
      "open",
      "high",
      "low",
      "close",
      "volume",
      "volumeComp",
      "pv",
      "pvComp",
    ] as const;
    for (const rec of windows) {
      const p = partOf(rec);
      const r = this.#sizes.indexOf(rec.windowMs as number);
      if (r < 0) {
        throw new EngineError(
          `Window record windowMs ${fmt(rec.windowMs)} is not one of the engine's windows ${
            fmt(this.windows)
          }: ${fmt(rec)}`,
        );
      }
      const size = this.#sizes[r];
      const { symbol, start, count, first, last, lastOffset } = rec;
      if (typeof symbol !== "string" || symbol.length === 0) bad("window symbol", symbol, rec);
      if (!num(start) || windowStartOf(start, size) !== start) bad("window start", start, rec);
      if (!Number.isSafeInteger(count) || (count as number) < 1) bad("window count", count, rec);
      for (const f of fields) if (!num(rec[f])) bad(`window ${f}`, rec[f], rec);
      if ((rec.low as number) > (rec.high as number)) {
        bad("window low/high", [rec.low, rec.high], rec);
      }
      const st = (start as number) + 0;
      if (
        !num(first) || !num(last) || first < st || last >= st + size || first > last ||
        last > p.maxEventTime
      ) bad("window event times", [first, last], rec);
      if (
        !Number.isSafeInteger(lastOffset) || (lastOffset as number) < 0 ||
        (lastOffset as number) > p.lastOffset
      ) bad("window lastOffset", lastOffset, rec);
      const sym = symOf(p, symbol as string);
      const idx = st / size;
      const ix = sym.index[r];
      if (ix !== undefined && indexGet(ix, idx) !== undefined) {
        throw new EngineError(
          `Duplicate window record (partition ${p.id}, windowMs ${size}, symbol ${
            fmt(symbol)
          }, start ${st})`,
        );
      }
      const s = pool.alloc(sym);
      const d = pool.pages[s >>> PAGE_BITS];
      const b = (s & PAGE_MASK) * STRIDE;
      const md = pool.metas[s >>> PAGE_BITS];
      const mb = (s & PAGE_MASK) * META_STRIDE;
      d[b + F_GEN] = -1;
      d[b + F_COUNT] = count as number;
      d[b + F_SUM] = rec.sum as number;
      d[b + F_COMP] = rec.comp as number;
      d[b + F_OPEN] = rec.open as number;
      d[b + F_HIGH] = rec.high as number;
      d[b + F_LOW] = rec.low as number;
      d[b + F_CLOSE] = rec.close as number;
      d[b + F_FIRST] = first as number;
      d[b + F_LAST] = last as number;
      d[b + F_LAST_OFFSET] = lastOffset as number;
      d[b + F_VOLUME] = rec.volume as number;
      d[b + F_VOLUME_COMP] = rec.volumeComp as number;
      d[b + F_PV] = rec.pv as number;
      d[b + F_PV_COMP] = rec.pvComp as number;
      d[b + F_FINAL_GEN] = OPEN;
      md[mb + M_START] = st;
      md[mb + M_END] = st + size;
      md[mb + M_DIRTY_SLOT] = 0;
      md[mb + M_BORN_GEN] = -1;
      md[mb + M_RES] = r;
      this.#index(p, sym, r, idx, st, st + size, s);
    }
    for (const p of this.#parts.values()) {
      if (p.wm >= p.minEnd) this.#finalize(p);
      if (p.open > this.maxOpenWindows) this.#enforceBound(p);
    }
  }
}
