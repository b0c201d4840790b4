/**
 * Pure event-time windowing engine: tumbling windows per (partition, symbol), a per-partition
 * watermark, Spark's lateness rule, update-mode triggers and JSON snapshots.
 *
 * No I/O, no clock, no randomness: the output depends only on the ticks folded (and, for
 * `isFinal` timing, on where `trigger()` is called). See `aggregate/SEMANTICS.md`.
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
  /** Kafka partition (non-negative integer). */
  partition: number;
  /** Kafka offset (non-negative safe integer, strictly increasing per partition). */
  offset: number;
}

/** A tick dropped by the watermark, as reported by `trigger()`. */
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
  /** The partition's watermark just before this tick (always finite). */
  watermark: number;
}

/** One version of one window, as emitted by `trigger()`. */
export interface WindowRow {
  /** Symbol of the window. */
  symbol: string;
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
}

/** Result of `trigger()`: changed and newly final windows, and late ticks since the previous trigger. */
export interface TriggerResult {
  /** Sorted by partition, symbol (code-unit order), windowStart. */
  windows: WindowRow[];
  /** Sorted by partition, offset. */
  late: LateTick[];
}

/** Engine configuration. */
export interface EngineOptions {
  /** Tumbling window size in ms (positive safe integer; default 300_000). */
  windowMs?: number;
  /** Watermark delay in ms (non-negative safe integer; default 900_000). */
  watermarkDelayMs?: number;
}

/** Counts returned by `foldAll()`. */
export interface FoldSummary {
  /** Ticks folded into a window. */
  accepted: number;
  /** Ticks dropped as late. */
  late: number;
}

/**
 * Serialized open window:
 * `[symbol, windowStart, count, sum, compensation, open, high, low, close, firstEventTime,
 * lastEventTime, lastOffset, dirty (1 = changed since the last trigger)]`.
 */
export type WindowStateTuple = [
  symbol: string,
  windowStart: number,
  count: number,
  sum: number,
  compensation: number,
  open: number,
  high: number,
  low: number,
  close: number,
  firstEventTime: number,
  lastEventTime: number,
  lastOffset: number,
  dirty: 0 | 1,
];

/** State of one partition inside a snapshot. */
export interface PartitionStateSnapshot {
  /** Max event time seen, or null before any tick. */
  maxEventTime: number | null;
  /** Last offset seen, or null before any tick. */
  lastOffset: number | null;
  /** Open windows, sorted by symbol then windowStart. */
  windows: WindowStateTuple[];
  /** Late ticks not yet returned by a trigger, in offset order. */
  late: LateTick[];
}

/** Whole-engine snapshot (JSON-serializable). */
export interface EngineSnapshot {
  /** Format version. */
  version: 1;
  /** Window size the state was built with. */
  windowMs: number;
  /** Watermark delay the state was built with. */
  watermarkDelayMs: number;
  /** State per partition, keyed by the partition number as a decimal string. */
  partitions: Record<string, PartitionStateSnapshot>;
}

/** Self-describing snapshot of one partition, or of a piece of one (see `snapshotChunks`). */
export interface PartitionSnapshot extends PartitionStateSnapshot {
  /** Format version. */
  version: 1;
  /** Window size the state was built with. */
  windowMs: number;
  /** Watermark delay the state was built with. */
  watermarkDelayMs: number;
  /** Partition number. */
  partition: number;
}

/** Options for `snapshotChunks()`. */
export interface SnapshotChunkOptions {
  /** Max UTF-8 size of `JSON.stringify(piece)` (default 61_440, under Deno KV's 64 KiB). */
  maxBytes?: number;
}

/** Error thrown for invalid ticks, options or snapshots. */
export class EngineError extends Error {
  /** Creates an EngineError. */
  constructor(message: string) {
    super(message);
    this.name = "EngineError";
  }
}

/** Default tumbling window size: 5 minutes. */
export const DEFAULT_WINDOW_MS = 300_000;
/** Default watermark delay: 15 minutes. */
export const DEFAULT_WATERMARK_DELAY_MS = 900_000;
/** Largest accepted |eventTime| (the ECMAScript Date range), keeping window arithmetic exact. */
export const MAX_EVENT_TIME = 8_640_000_000_000_000;

const SNAPSHOT_VERSION = 1;
const DEFAULT_MAX_CHUNK_BYTES = 61_440;

/** Start of the tumbling window of size `windowMs` containing `eventTime` (floors negative times). */
export function windowStartOf(eventTime: number, windowMs: number): number {
  let start = Math.floor(eventTime / windowMs) * windowMs;
  // Guard against rounding for fractional times near a boundary.
  if (start > eventTime) start -= windowMs;
  else if (start + windowMs <= eventTime) start += windowMs;
  return start + 0; // normalise -0
}

// ---------------------------------------------------------------------------------------------
// Internal state

class WindowState {
  dirty = true;
  constructor(
    readonly symbol: string,
    readonly start: number,
    readonly partition: number,
    public count: number,
    public sum: number,
    public comp: number,
    public open: number,
    public high: number,
    public low: number,
    public close: number,
    public first: number,
    public last: number,
    public lastOffset: number,
  ) {}
}

class SymbolState {
  /** Window hit by the previous tick of this symbol (fast path: most ticks land in it). */
  cur: WindowState | undefined = undefined;
  /** windowStart -> window. */
  readonly windows = new Map<number, WindowState>();
}

class PartitionState {
  maxEventTime = -Infinity;
  lastOffset = -Infinity;
  /** symbol -> its open windows. */
  readonly bySymbol = new Map<string, SymbolState>();
  /** windowStart -> windows (all share the same end, so they become final together). */
  readonly byStart = new Map<number, WindowState[]>();
  late: LateTick[] = [];
  /** Watermark at the last eviction pass; eviction is skipped while the watermark is unchanged. */
  evictedAt = -Infinity;
  constructor(readonly id: number) {}
}

function fmt(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value == null) {
    return String(value);
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** UTF-8 byte length of a string (lone surrogates count 3, as TextEncoder writes U+FFFD). */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 2; // 4 bytes for 2 UTF-16 units
        i++;
      } else n += 2;
    } else n += 2;
  }
  return n;
}

function resolveOptions(options: EngineOptions | undefined): Required<EngineOptions> {
  const windowMs = options?.windowMs ?? DEFAULT_WINDOW_MS;
  const watermarkDelayMs = options?.watermarkDelayMs ?? DEFAULT_WATERMARK_DELAY_MS;
  if (!Number.isSafeInteger(windowMs) || windowMs <= 0) {
    throw new EngineError(`Invalid windowMs ${fmt(windowMs)}: expected a positive safe integer`);
  }
  if (!Number.isSafeInteger(watermarkDelayMs) || watermarkDelayMs < 0) {
    throw new EngineError(
      `Invalid watermarkDelayMs ${fmt(watermarkDelayMs)}: expected a non-negative safe integer`,
    );
  }
  return { windowMs, watermarkDelayMs };
}

function isPartitionId(p: unknown): p is number {
  return typeof p === "number" && Number.isSafeInteger(p) && p >= 0;
}

function toRow(w: WindowState, windowMs: number, isFinal: boolean): WindowRow {
  const sum = w.sum + w.comp;
  return {
    symbol: w.symbol,
    windowStart: w.start,
    windowEnd: w.start + windowMs,
    count: w.count,
    sum,
    avg: sum / w.count,
    open: w.open,
    high: w.high,
    low: w.low,
    close: w.close,
    firstEventTime: w.first,
    lastEventTime: w.last,
    partition: w.partition,
    lastOffset: w.lastOffset,
    isFinal,
  };
}

function compareRows(a: WindowRow, b: WindowRow): number {
  if (a.partition !== b.partition) return a.partition - b.partition;
  if (a.symbol !== b.symbol) return a.symbol < b.symbol ? -1 : 1;
  return a.windowStart - b.windowStart;
}

// ---------------------------------------------------------------------------------------------
// Engine

/**
 * Incremental tumbling-window aggregator. Feed ticks with `fold`/`foldAll`, then call `trigger`
 * to get the windows changed since the previous trigger (update mode) and the late ticks.
 */
export class WindowEngine {
  /** Tumbling window size in ms. */
  readonly windowMs: number;
  /** Watermark delay in ms. */
  readonly watermarkDelayMs: number;
  readonly #parts = new Map<number, PartitionState>();
  #dirty: WindowState[] = [];
  #open = 0;
  #cache: PartitionState | undefined = undefined;

  /** Creates an empty engine; throws EngineError on invalid options. */
  constructor(options: EngineOptions = {}) {
    const o = resolveOptions(options);
    this.windowMs = o.windowMs;
    this.watermarkDelayMs = o.watermarkDelayMs;
  }

  /** Number of windows currently held in state (not yet final). */
  get openWindowCount(): number {
    return this.#open;
  }

  /** Current watermark of `partition` (max event time - delay), or -Infinity before any tick. */
  watermark(partition: number): number {
    const p = this.#parts.get(partition);
    return p === undefined ? -Infinity : p.maxEventTime - this.watermarkDelayMs;
  }

  /** Partitions that have seen at least one tick (or were restored), ascending. */
  partitions(): number[] {
    return [...this.#parts.keys()].sort((a, b) => a - b);
  }

  /** Last offset seen on `partition`, or undefined before any tick. Skip replayed ticks at or below it. */
  lastOffset(partition: number): number | undefined {
    const p = this.#parts.get(partition);
    return p === undefined || p.lastOffset === -Infinity ? undefined : p.lastOffset;
  }

  /**
   * Folds one tick; returns true if accepted, false if late. Throws EngineError (leaving the
   * state untouched) on an invalid tick or an offset not greater than the partition's last one.
   */
  fold(tick: Tick): boolean {
    const symbol = tick.symbol;
    const partition = tick.partition;
    const offset = tick.offset;
    let eventTime = tick.eventTime;
    let price = tick.price;

    let p = this.#cache;
    if (p === undefined || p.id !== partition) p = this.#parts.get(partition);
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
      typeof eventTime !== "number" ||
      !(eventTime >= -MAX_EVENT_TIME && eventTime <= MAX_EVENT_TIME)
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
    eventTime += 0; // normalise -0
    price += 0;

    if (p === undefined) {
      p = new PartitionState(partition);
      this.#parts.set(partition, p);
    }
    this.#cache = p;

    const size = this.windowMs;
    const watermarkBefore = p.maxEventTime - this.watermarkDelayMs;
    const start = windowStartOf(eventTime, size);
    let accepted: boolean;
    if (start + size > watermarkBefore) {
      accepted = true;
      let sym = p.bySymbol.get(symbol);
      if (sym === undefined) {
        sym = new SymbolState();
        p.bySymbol.set(symbol, sym);
      }
      let w = sym.cur;
      if (w === undefined || w.start !== start) {
        w = sym.windows.get(start);
        if (w !== undefined) sym.cur = w;
      }
      if (w === undefined) {
        const nw = new WindowState(
          symbol,
          start,
          partition,
          1,
          price,
          0,
          price,
          price,
          price,
          price,
          eventTime,
          eventTime,
          offset,
        );
        sym.windows.set(start, nw);
        sym.cur = nw;
        const bucket = p.byStart.get(start);
        if (bucket === undefined) p.byStart.set(start, [nw]);
        else bucket.push(nw);
        this.#dirty.push(nw);
        this.#open++;
      } else {
        w.count++;
        // Neumaier compensated summation.
        const s = w.sum;
        const t = s + price;
        if (Math.abs(s) >= Math.abs(price)) w.comp += (s - t) + price;
        else w.comp += (price - t) + s;
        w.sum = t;
        if (price > w.high) w.high = price;
        if (price < w.low) w.low = price;
        // Offsets increase within a partition, so "earliest, ties lowest offset" keeps the
        // existing open on a tie, and "latest, ties highest offset" takes the new close.
        if (eventTime < w.first) {
          w.first = eventTime;
          w.open = price;
        }
        if (eventTime >= w.last) {
          w.last = eventTime;
          w.close = price;
        }
        w.lastOffset = offset;
        if (!w.dirty) {
          w.dirty = true;
          this.#dirty.push(w);
        }
      }
    } else {
      accepted = false;
      p.late.push({ symbol, eventTime, price, partition, offset, watermark: watermarkBefore });
    }
    if (eventTime > p.maxEventTime) p.maxEventTime = eventTime;
    p.lastOffset = offset;
    return accepted;
  }

  /** Folds ticks in order; stops at (and throws) the first invalid tick, keeping the earlier ones. */
  foldAll(ticks: Iterable<Tick>): FoldSummary {
    let accepted = 0;
    let late = 0;
    for (const tick of ticks) {
      if (this.fold(tick)) accepted++;
      else late++;
    }
    return { accepted, late };
  }

  /**
   * Emits every window changed since the previous trigger (isFinal false) plus every window whose
   * end is now <= its partition's watermark (isFinal true, once, then evicted), and the late ticks
   * seen since the previous trigger.
   */
  trigger(): TriggerResult {
    const size = this.windowMs;
    const delay = this.watermarkDelayMs;
    const windows: WindowRow[] = [];
    const ids = this.partitions();
    for (const id of ids) {
      const p = this.#parts.get(id)!;
      const wm = p.maxEventTime - delay;
      if (wm > p.evictedAt) {
        p.evictedAt = wm;
        for (const [start, bucket] of p.byStart) {
          if (start + size > wm) continue;
          for (const w of bucket) {
            windows.push(toRow(w, size, true));
            w.dirty = false;
            const sym = p.bySymbol.get(w.symbol)!;
            sym.windows.delete(start);
            if (sym.cur === w) sym.cur = undefined;
            if (sym.windows.size === 0) p.bySymbol.delete(w.symbol);
          }
          this.#open -= bucket.length;
          p.byStart.delete(start);
        }
      }
    }
    const dirty = this.#dirty;
    this.#dirty = [];
    for (const w of dirty) {
      if (!w.dirty) continue; // evicted above
      w.dirty = false;
      windows.push(toRow(w, size, false));
    }
    windows.sort(compareRows);
    const late: LateTick[] = [];
    for (const id of ids) {
      const p = this.#parts.get(id)!;
      if (p.late.length === 0) continue;
      for (const t of p.late) late.push(t);
      p.late = [];
    }
    return { windows, late };
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots

  /** JSON-serializable snapshot of the whole engine, including pending (untriggered) changes. */
  snapshot(): EngineSnapshot {
    const partitions: Record<string, PartitionStateSnapshot> = {};
    for (const id of this.partitions()) partitions[String(id)] = this.#partitionState(id);
    return {
      version: SNAPSHOT_VERSION,
      windowMs: this.windowMs,
      watermarkDelayMs: this.watermarkDelayMs,
      partitions,
    };
  }

  /** Snapshot of one partition; throws EngineError if the partition is unknown. */
  snapshotPartition(partition: number): PartitionSnapshot {
    return {
      version: SNAPSHOT_VERSION,
      windowMs: this.windowMs,
      watermarkDelayMs: this.watermarkDelayMs,
      partition,
      ...this.#partitionState(partition),
    };
  }

  /**
   * Whole-engine snapshot split into partition pieces whose JSON is at most `maxBytes` UTF-8
   * bytes each; a large partition is split across several pieces. Restore with `restore(pieces)`.
   */
  snapshotChunks(options: SnapshotChunkOptions = {}): PartitionSnapshot[] {
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_CHUNK_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
      throw new EngineError(`Invalid maxBytes ${fmt(maxBytes)}: expected a positive safe integer`);
    }
    const bytes = (v: unknown) => utf8Length(JSON.stringify(v));
    const pieces: PartitionSnapshot[] = [];
    for (const id of this.partitions()) {
      const full = this.snapshotPartition(id);
      const empty = (): PartitionSnapshot => ({ ...full, windows: [], late: [] });
      let piece = empty();
      let used = bytes(piece);
      const header = used;
      let items = 0;
      const add = (size: number, push: (p: PartitionSnapshot) => void, what: string) => {
        const extra = size + (items > 0 ? 1 : 0); // a comma between array items (upper bound)
        if (used + extra > maxBytes) {
          if (items === 0 || header + size > maxBytes) {
            throw new EngineError(
              `Snapshot ${what} on partition ${id} needs ${
                header + size
              } bytes, over maxBytes ${maxBytes}`,
            );
          }
          pieces.push(piece);
          piece = empty();
          used = header;
          items = 0;
        }
        push(piece);
        used += size + (items > 0 ? 1 : 0);
        items++;
      };
      for (const w of full.windows) {
        add(bytes(w), (p) => p.windows.push(w), `window ${fmt(w[0])} @${w[1]}`);
      }
      for (const t of full.late) {
        add(bytes(t), (p) => p.late.push(t), `late tick at offset ${t.offset}`);
      }
      pieces.push(piece);
    }
    return pieces;
  }

  #partitionState(partition: number): PartitionStateSnapshot {
    const p = this.#parts.get(partition);
    if (p === undefined) throw new EngineError(`Unknown partition ${fmt(partition)}`);
    const windows: WindowStateTuple[] = [];
    const symbols = [...p.bySymbol.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const symbol of symbols) {
      const bySymbol = p.bySymbol.get(symbol)!.windows;
      const starts = [...bySymbol.keys()].sort((a, b) => a - b);
      for (const start of starts) {
        const w = bySymbol.get(start)!;
        windows.push([
          w.symbol,
          w.start,
          w.count,
          w.sum,
          w.comp,
          w.open,
          w.high,
          w.low,
          w.close,
          w.first,
          w.last,
          w.lastOffset,
          w.dirty ? 1 : 0,
        ]);
      }
    }
    return {
      maxEventTime: p.maxEventTime === -Infinity ? null : p.maxEventTime,
      lastOffset: p.lastOffset === -Infinity ? null : p.lastOffset,
      windows,
      late: p.late.map((t) => ({ ...t })),
    };
  }

  /**
   * Rebuilds an engine from `snapshot()` output, one `snapshotPartition()` output, or a set of
   * partition pieces (`snapshotChunks()` output, in any order). The snapshot's windowMs and
   * watermarkDelayMs must equal the resolved `options` (defaults included), else EngineError.
   */
  static restore(
    snapshot: EngineSnapshot | PartitionSnapshot | readonly PartitionSnapshot[],
    options: EngineOptions = {},
  ): WindowEngine {
    const engine = new WindowEngine(options);
    const pieces: Array<{ id: number; state: PartitionStateSnapshot }> = [];
    const checkHeader = (s: Record<string, unknown>, what: string) => {
      if (s.version !== SNAPSHOT_VERSION) {
        throw new EngineError(
          `Unsupported ${what} version ${fmt(s.version)}: expected ${SNAPSHOT_VERSION}`,
        );
      }
      if (s.windowMs !== engine.windowMs) {
        throw new EngineError(
          `Snapshot windowMs ${
            fmt(s.windowMs)
          } does not match the engine's windowMs ${engine.windowMs}`,
        );
      }
      if (s.watermarkDelayMs !== engine.watermarkDelayMs) {
        throw new EngineError(
          `Snapshot watermarkDelayMs ${
            fmt(s.watermarkDelayMs)
          } does not match the engine's watermarkDelayMs ${engine.watermarkDelayMs}`,
        );
      }
    };
    const isObject = (v: unknown): v is Record<string, unknown> =>
      typeof v === "object" && v !== null && !Array.isArray(v);

    if (Array.isArray(snapshot) || (isObject(snapshot) && "partition" in snapshot)) {
      const list = (Array.isArray(snapshot) ? snapshot : [snapshot]) as unknown[];
      for (const [i, piece] of list.entries()) {
        if (!isObject(piece)) {
          throw new EngineError(`Invalid partition snapshot #${i}: ${fmt(piece)} is not an object`);
        }
        checkHeader(piece, "partition snapshot");
        if (!isPartitionId(piece.partition)) {
          throw new EngineError(`Invalid snapshot partition ${fmt(piece.partition)}`);
        }
        pieces.push({ id: piece.partition, state: piece as unknown as PartitionStateSnapshot });
      }
    } else if (isObject(snapshot)) {
      checkHeader(snapshot, "snapshot");
      if (!isObject(snapshot.partitions)) {
        throw new EngineError(`Invalid snapshot partitions ${fmt(snapshot.partitions)}`);
      }
      for (const [key, state] of Object.entries(snapshot.partitions)) {
        const id = Number(key);
        if (!isPartitionId(id) || String(id) !== key) {
          throw new EngineError(`Invalid snapshot partition key ${fmt(key)}`);
        }
        pieces.push({ id, state: state as PartitionStateSnapshot });
      }
    } else {
      throw new EngineError(`Invalid snapshot ${fmt(snapshot)}: expected an object or an array`);
    }
    for (const { id, state } of pieces) engine.#restorePiece(id, state);
    for (const p of engine.#parts.values()) {
      p.late.sort((a, b) => a.offset - b.offset);
      for (let i = 1; i < p.late.length; i++) {
        if (p.late[i].offset === p.late[i - 1].offset) {
          throw new EngineError(
            `Duplicate late tick offset ${p.late[i].offset} in snapshot of partition ${p.id}`,
          );
        }
      }
    }
    return engine;
  }

  #restorePiece(id: number, state: unknown): void {
    const bad = (what: string, value: unknown): never => {
      throw new EngineError(`Invalid ${what} ${fmt(value)} in snapshot of partition ${id}`);
    };
    if (typeof state !== "object" || state === null) bad("partition state", state);
    const s = state as Record<string, unknown>;
    const maxEventTime = s.maxEventTime === null ? -Infinity : s.maxEventTime;
    const lastOffset = s.lastOffset === null ? -Infinity : s.lastOffset;
    if (
      typeof maxEventTime !== "number" ||
      !(maxEventTime === -Infinity ||
        (maxEventTime >= -MAX_EVENT_TIME && maxEventTime <= MAX_EVENT_TIME))
    ) bad("maxEventTime", s.maxEventTime);
    if (
      typeof lastOffset !== "number" ||
      !(lastOffset === -Infinity || (Number.isSafeInteger(lastOffset) && lastOffset >= 0))
    ) bad("lastOffset", s.lastOffset);
    if ((maxEventTime === -Infinity) !== (lastOffset === -Infinity)) {
      bad("maxEventTime/lastOffset pair", [s.maxEventTime, s.lastOffset]);
    }
    if (!Array.isArray(s.windows)) bad("windows", s.windows);
    if (!Array.isArray(s.late)) bad("late", s.late);

    let p = this.#parts.get(id);
    if (p === undefined) {
      p = new PartitionState(id);
      p.maxEventTime = maxEventTime as number;
      p.lastOffset = lastOffset as number;
      this.#parts.set(id, p);
    } else if (p.maxEventTime !== maxEventTime || p.lastOffset !== lastOffset) {
      throw new EngineError(
        `Conflicting pieces for partition ${id}: maxEventTime/lastOffset ${
          fmt([s.maxEventTime, s.lastOffset])
        } vs ${fmt([p.maxEventTime, p.lastOffset])}`,
      );
    }
    const size = this.windowMs;
    const num = (v: unknown) => typeof v === "number" && Number.isFinite(v);
    for (const raw of s.windows as unknown[]) {
      if (!Array.isArray(raw) || raw.length !== 13) bad("window", raw);
      const t = raw as unknown[];
      const [symbol, start, count, sum, comp, open, high, low, close, first, last, off, dirty] = t;
      if (typeof symbol !== "string" || symbol.length === 0) bad("window symbol", symbol);
      if (!num(start) || windowStartOf(start as number, size) !== start) bad("windowStart", start);
      if (!Number.isSafeInteger(count) || (count as number) < 1) bad("window count", count);
      for (const v of [sum, comp, open, high, low, close]) if (!num(v)) bad("window value", raw);
      const st = start as number;
      if (
        !num(first) || !num(last) || (first as number) < st || (last as number) >= st + size ||
        (first as number) > (last as number) || (last as number) > p.maxEventTime
      ) bad("window event times", raw);
      if (
        !Number.isSafeInteger(off) || (off as number) < 0 || (off as number) > p.lastOffset
      ) bad("window lastOffset", off);
      if (dirty !== 0 && dirty !== 1) bad("window dirty flag", dirty);
      let sym = p.bySymbol.get(symbol as string);
      if (sym === undefined) {
        sym = new SymbolState();
        p.bySymbol.set(symbol as string, sym);
      }
      const bySymbol = sym.windows;
      if (bySymbol.has(st)) bad("duplicate window", [symbol, start]);
      const w = new WindowState(
        symbol as string,
        st,
        id,
        count as number,
        sum as number,
        comp as number,
        open as number,
        high as number,
        low as number,
        close as number,
        first as number,
        last as number,
        off as number,
      );
      w.dirty = dirty === 1;
      bySymbol.set(st, w);
      const bucket = p.byStart.get(st);
      if (bucket === undefined) p.byStart.set(st, [w]);
      else bucket.push(w);
      if (w.dirty) this.#dirty.push(w);
      this.#open++;
    }
    for (const raw of s.late as unknown[]) {
      if (typeof raw !== "object" || raw === null) bad("late tick", raw);
      const t = raw as Record<string, unknown>;
      if (
        typeof t.symbol !== "string" || t.symbol.length === 0 || !num(t.eventTime) ||
        !num(t.price) || t.partition !== id || !Number.isSafeInteger(t.offset) ||
        (t.offset as number) < 0 || (t.offset as number) > p.lastOffset || !num(t.watermark)
      ) bad("late tick", raw);
      p.late.push({
        symbol: t.symbol as string,
        eventTime: t.eventTime as number,
        price: t.price as number,
        partition: id,
        offset: t.offset as number,
        watermark: t.watermark as number,
      });
    }
  }
}
