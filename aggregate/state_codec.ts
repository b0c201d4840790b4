/**
 * The binary codec of the engine state, pure (no I/O): {@linkcode StateRecord}s in and out of
 * chunks of at most 60 KiB (Deno KV values are limited to 64 KiB), a streaming k-way merge of
 * sorted segments (base + deltas, latest record wins, `window-deleted` removes a window), and a
 * compact-memory sort for a state that comes unsorted.
 *
 * Chunk format (version 1): byte 0 is the codec version, then records back to back until the end
 * of the chunk. A record is a kind byte and its fields in the order of
 * {@linkcode StateRecord}'s declaration (aggregate/engine.ts). Numbers
 * are tagged: `0` (+0), a safe integer as a LEB128 varint (`1` positive, `2` negative), any other
 * value as its IEEE-754 float64 bits (`3`: -0, NaN, ±Infinity and fractions round-trip exactly),
 * or `4` (null, for the nullable fields). Strings are WTF-8 (UTF-8 that also encodes lone
 * surrogates, so every UTF-16 string round-trips; TextEncoder would replace them with U+FFFD),
 * prefixed by their byte length + 1; a prefix of 0 means "the same symbol as the previous record
 * of this chunk". Every chunk decodes on its own.
 *
 * Records inside a segment are sorted by {@linkcode compareRecords}: (partition, kind rank
 * [partition 0, baseline 1, window and window-deleted 2], windowMs, symbol in UTF-16 code unit
 * order, start), unique per key. The encoder checks it.
 * @module
 */

import type { StateRecord } from "./engine.ts";

/** One entry of the engine state, as checkpointed (the engine's own type). */
export type { StateRecord };

/** Version byte written at the start of every chunk. */
export const STATE_CODEC_VERSION = 1;

/** Default and maximum chunk size in bytes (60 KiB, under Deno KV's 64 KiB value limit). */
export const MAX_CHUNK_BYTES = 60 * 1024;

/** Raised for a record that cannot be encoded or a chunk that cannot be decoded. */
export class StateCodecError extends Error {
  /** Creates the error; the message names the bad value. */
  constructor(message: string) {
    super(message);
    this.name = "StateCodecError";
  }
}

/** Raised when records that must be sorted by key (unique) are not. */
export class StateOrderError extends Error {
  /** Creates the error; the message names the two keys. */
  constructor(message: string) {
    super(message);
    this.name = "StateOrderError";
  }
}

const KIND_PARTITION = 1;
const KIND_BASELINE = 2;
const KIND_WINDOW = 3;
const KIND_WINDOW_DELETED = 4;

const T_ZERO = 0;
const T_POS = 1;
const T_NEG = 2;
const T_F64 = 3;
const T_NULL = 4;

/** Sort rank of a record kind: partition 0, baseline 1, window and window-deleted 2. */
export function kindRank(record: StateRecord): 0 | 1 | 2 {
  switch (record.kind) {
    case "partition":
      return 0;
    case "baseline":
      return 1;
    default:
      return 2;
  }
}

function cmpNum(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function cmpStr(a: string, b: string): number {
  // JS string comparison is UTF-16 code unit order.
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Compares the keys of two records in segment order: (partition, kind rank, windowMs, symbol,
 * start). 0 means same key (a window and a window-deleted of one window share a key).
 */
export function compareRecords(a: StateRecord, b: StateRecord): number {
  if (a.partition !== b.partition) return cmpNum(a.partition, b.partition);
  const ra = kindRank(a);
  const rb = kindRank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 0) return 0;
  if (ra === 1) return cmpStr((a as { symbol: string }).symbol, (b as { symbol: string }).symbol);
  const wa = a as { windowMs: number; symbol: string; start: number };
  const wb = b as { windowMs: number; symbol: string; start: number };
  if (wa.windowMs !== wb.windowMs) return cmpNum(wa.windowMs, wb.windowMs);
  if (wa.symbol !== wb.symbol) return cmpStr(wa.symbol, wb.symbol);
  return cmpNum(wa.start, wb.start);
}

/** A string naming the key of `record` (equal for equal keys), e.g. for Maps and messages. */
export function stateKey(record: StateRecord): string {
  switch (record.kind) {
    case "partition":
      return JSON.stringify([record.partition]);
    case "baseline":
      return JSON.stringify([record.partition, record.symbol]);
    default:
      return JSON.stringify([record.partition, record.windowMs, record.symbol, record.start]);
  }
}

/** A record's kind and key for messages, shortened. */
function keyText(record: StateRecord): string {
  const k = `${record.kind} ${stateKey(record)}`;
  return k.length > 100 ? k.slice(0, 99) + "…" : k;
}

// ---------------------------------------------------------------------------------------------
// Writing

class Writer {
  buf: Uint8Array;
  view: DataView;
  pos = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
}

function fmt(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v);
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : String(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function badField(record: StateRecord, field: string, value: unknown): never {
  throw new StateCodecError(
    `Cannot encode ${fmt(record.kind)} record field ${field} = ${fmt(value)}: expected ${
      field === "symbol" ? "a string" : "a number"
    }`,
  );
}

function writeVarint(w: Writer, v: number): void {
  // v is a non-negative safe integer. Bit operations work on 32 bits, so a larger value is split
  // into its low 32 bits and the rest (floating-point % and / are several times slower).
  const b = w.buf;
  let p = w.pos;
  if (v < 0x80000000) {
    let x = v | 0;
    while (x >= 128) {
      b[p++] = (x & 127) | 128;
      x >>>= 7;
    }
    b[p++] = x;
  } else {
    let lo = v >>> 0;
    const hi = Math.floor(v / 4294967296);
    for (let i = 0; i < 4; i++) {
      b[p++] = (lo & 127) | 128;
      lo >>>= 7;
    }
    let x = (hi << 4) | lo; // hi < 2^21, lo has 4 bits left
    while (x >= 128) {
      b[p++] = (x & 127) | 128;
      x >>>= 7;
    }
    b[p++] = x;
  }
  w.pos = p;
}

function writeNum(w: Writer, v: number, record: StateRecord, field: string): void {
  if (typeof v !== "number") badField(record, field, v);
  if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
    if (v === 0) {
      w.buf[w.pos++] = T_ZERO;
    } else if (v > 0) {
      w.buf[w.pos++] = T_POS;
      writeVarint(w, v);
    } else {
      w.buf[w.pos++] = T_NEG;
      writeVarint(w, -v);
    }
    return;
  }
  w.buf[w.pos++] = T_F64;
  w.view.setFloat64(w.pos, v, true);
  w.pos += 8;
}

function writeNullable(w: Writer, v: number | null, record: StateRecord, field: string): void {
  if (v === null) w.buf[w.pos++] = T_NULL;
  else writeNum(w, v, record, field);
}

function wtf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

function writeWtf8(w: Writer, s: string): void {
  const b = w.buf;
  let p = w.pos;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      b[p++] = c;
    } else if (c < 0x800) {
      b[p++] = 0xc0 | (c >> 6);
      b[p++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          b[p++] = 0xf0 | (cp >> 18);
          b[p++] = 0x80 | ((cp >> 12) & 0x3f);
          b[p++] = 0x80 | ((cp >> 6) & 0x3f);
          b[p++] = 0x80 | (cp & 0x3f);
          i++;
          continue;
        }
      }
      b[p++] = 0xe0 | (c >> 12);
      b[p++] = 0x80 | ((c >> 6) & 0x3f);
      b[p++] = 0x80 | (c & 0x3f);
    }
  }
  w.pos = p;
}

/** Upper bound of the encoded size of `record` (for the writer's capacity). */
function recordBound(record: StateRecord): number {
  const s = (record as { symbol?: unknown }).symbol;
  return 1 + 18 * 9 + (typeof s === "string" ? 10 + 3 * s.length : 0);
}

/** Encodes `record`; `prev` is the previous symbol of the chunk. Returns the symbol to remember. */
function writeRecord(w: Writer, record: StateRecord, prev: string | null): string | null {
  w.ensure(recordBound(record));
  const writeSymbol = (symbol: string): string => {
    if (typeof symbol !== "string") badField(record, "symbol", symbol);
    if (symbol === prev) {
      w.buf[w.pos++] = 0;
    } else {
      writeVarint(w, wtf8Length(symbol) + 1);
      writeWtf8(w, symbol);
    }
    return symbol;
  };
  switch (record.kind) {
    case "partition":
      w.buf[w.pos++] = KIND_PARTITION;
      writeKey(w, record.partition, record, "partition");
      writeNullable(w, record.maxEventTime, record, "maxEventTime");
      writeNullable(w, record.lastOffset, record, "lastOffset");
      writeNullable(w, record.floor, record, "floor");
      writeNum(w, record.replayBelow, record, "replayBelow");
      writeNullable(w, record.lastArrivalMs, record, "lastArrivalMs");
      return prev;
    case "baseline": {
      w.buf[w.pos++] = KIND_BASELINE;
      writeKey(w, record.partition, record, "partition");
      const s = writeSymbol(record.symbol);
      writeNum(w, record.dayVolume, record, "dayVolume");
      return s;
    }
    case "window": {
      w.buf[w.pos++] = KIND_WINDOW;
      writeKey(w, record.partition, record, "partition");
      writeKey(w, record.windowMs, record, "windowMs");
      const s = writeSymbol(record.symbol);
      writeKey(w, record.start, record, "start");
      writeNum(w, record.count, record, "count");
      writeNum(w, record.sum, record, "sum");
      writeNum(w, record.comp, record, "comp");
      writeNum(w, record.open, record, "open");
      writeNum(w, record.high, record, "high");
      writeNum(w, record.low, record, "low");
      writeNum(w, record.close, record, "close");
      writeNum(w, record.first, record, "first");
      writeNum(w, record.last, record, "last");
      writeNum(w, record.lastOffset, record, "lastOffset");
      writeNum(w, record.volume, record, "volume");
      writeNum(w, record.volumeComp, record, "volumeComp");
      writeNum(w, record.pv, record, "pv");
      writeNum(w, record.pvComp, record, "pvComp");
      return s;
    }
    case "window-deleted": {
      w.buf[w.pos++] = KIND_WINDOW_DELETED;
      writeKey(w, record.partition, record, "partition");
      writeKey(w, record.windowMs, record, "windowMs");
      const s = writeSymbol(record.symbol);
      writeKey(w, record.start, record, "start");
      return s;
    }
    default:
      throw new StateCodecError(
        `Cannot encode a record of kind ${fmt((record as { kind?: unknown })?.kind)}: expected ` +
          `partition, baseline, window or window-deleted`,
      );
  }
}

/** Key fields order the records, so NaN (which compares to nothing) is refused. */
function writeKey(w: Writer, v: number, record: StateRecord, field: string): void {
  if (typeof v !== "number" || Number.isNaN(v)) {
    throw new StateCodecError(
      `Cannot encode ${fmt(record.kind)} record key field ${field} = ${fmt(v)}: expected a ` +
        `number other than NaN`,
    );
  }
  writeNum(w, v, record, field);
}

/** Options of {@linkcode ChunkEncoder}. */
export interface ChunkEncoderOptions {
  /** Max bytes per chunk (default and max 60 KiB; at least 256). */
  chunkBytes?: number;
  /** Check that records come strictly sorted by key (default true). */
  checkOrder?: boolean;
}

/**
 * Encodes records one at a time into chunks of at most `chunkBytes`, holding only the chunk being
 * filled: `add()` returns a finished chunk when the record did not fit, `finish()` the last one.
 */
export class ChunkEncoder {
  /** Records encoded so far. */
  records = 0;
  /** Bytes of the chunks returned so far. */
  bytes = 0;
  /** Chunks returned so far. */
  chunks = 0;
  readonly #limit: number;
  readonly #checkOrder: boolean;
  readonly #w: Writer;
  #prev: string | null = null;
  #inChunk = 0;
  #last: StateRecord | null = null;

  /** Creates an encoder. */
  constructor(options: ChunkEncoderOptions = {}) {
    const limit = options.chunkBytes ?? MAX_CHUNK_BYTES;
    if (!Number.isSafeInteger(limit) || limit < 256 || limit > MAX_CHUNK_BYTES) {
      throw new StateCodecError(
        `Invalid chunkBytes ${fmt(limit)}: expected an integer from 256 to ${MAX_CHUNK_BYTES}`,
      );
    }
    this.#limit = limit;
    this.#checkOrder = options.checkOrder ?? true;
    this.#w = new Writer(limit + 1024);
    this.#begin();
  }

  #begin(): void {
    this.#w.buf[0] = STATE_CODEC_VERSION;
    this.#w.pos = 1;
    this.#prev = null;
    this.#inChunk = 0;
  }

  #take(end: number): Uint8Array {
    const out = this.#w.buf.slice(0, end);
    this.bytes += out.byteLength;
    this.chunks++;
    return out;
  }

  /** Adds `record`; returns a finished chunk when the current one is full, else null. */
  add(record: StateRecord): Uint8Array | null {
    if (this.#checkOrder) {
      const last = this.#last;
      if (last !== null && compareRecords(last, record) >= 0) {
        throw new StateOrderError(
          `Record ${keyText(record)} comes after ${
            keyText(last)
          }: records must be sorted by key and unique`,
        );
      }
      this.#last = record;
    }
    const w = this.#w;
    const mark = w.pos;
    const prev = this.#prev;
    this.#prev = writeRecord(w, record, prev);
    if (w.pos <= this.#limit) {
      this.#inChunk++;
      this.records++;
      return null;
    }
    const size = w.pos - mark;
    if (this.#inChunk === 0) this.#tooLarge(record, size);
    // Did not fit: close the chunk before it and start the next one with this record.
    const out = this.#take(mark);
    this.#begin();
    this.#prev = writeRecord(w, record, null);
    if (w.pos > this.#limit) this.#tooLarge(record, w.pos - 1);
    this.#inChunk = 1;
    this.records++;
    return out;
  }

  #tooLarge(record: StateRecord, size: number): never {
    throw new StateCodecError(
      `Record ${keyText(record)} needs ${size} bytes, over the chunk size ` +
        `${this.#limit} (a symbol of ${
          (record as { symbol?: string }).symbol?.length ?? 0
        } code units)`,
    );
  }

  /** Returns the last, partly filled chunk (null when empty) and resets for more records. */
  finish(): Uint8Array | null {
    if (this.#inChunk === 0) return null;
    const out = this.#take(this.#w.pos);
    this.#begin();
    return out;
  }
}

/** Encodes `records` (sorted, unique keys) into chunks lazily, one chunk in memory at a time. */
export function* encodeRecords(
  records: Iterable<StateRecord>,
  options: ChunkEncoderOptions = {},
): Generator<Uint8Array> {
  const enc = new ChunkEncoder(options);
  for (const r of records) {
    const chunk = enc.add(r);
    if (chunk !== null) yield chunk;
  }
  const last = enc.finish();
  if (last !== null) yield last;
}

// ---------------------------------------------------------------------------------------------
// Reading

class Reader {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly end: number;
  pos: number;
  units = new Uint16Array(64);
  constructor(bytes: Uint8Array, pos: number) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.end = bytes.byteLength;
    this.pos = pos;
  }
  fail(what: string): never {
    throw new StateCodecError(`Corrupt state chunk: ${what} at byte ${this.pos} of ${this.end}`);
  }
  // Reads are unchecked: past the end a Uint8Array yields undefined, which no tag, kind or
  // varint accepts, a float64 read throws RangeError, and readRecord's caller checks `pos`.
  byte(): number {
    return this.bytes[this.pos++];
  }
  varint(): number {
    // Up to 4 bytes (28 bits) with bit operations, the rest in floating point.
    const b = this.bytes;
    let p = this.pos;
    let x = b[p++];
    let v = x & 127;
    if (x < 128) {
      this.pos = p;
      return v;
    }
    for (let shift = 7; shift < 28; shift += 7) {
      x = b[p++];
      v |= (x & 127) << shift;
      if (x < 128) {
        this.pos = p;
        return v;
      }
    }
    let scale = 268435456;
    for (let i = 0; i < 4; i++) {
      x = b[p++];
      v += (x & 127) * scale;
      if (x < 128) {
        this.pos = p;
        return v;
      }
      scale *= 128;
    }
    this.pos = p;
    return this.fail("varint too long or truncated");
  }
  num(): number {
    const tag = this.bytes[this.pos++];
    if (tag === T_F64) {
      const v = this.view.getFloat64(this.pos, true);
      this.pos += 8;
      return v;
    }
    if (tag === T_POS) return this.varint();
    if (tag === T_ZERO) return 0;
    if (tag === T_NEG) return -this.varint();
    this.pos--;
    return this.fail(`number tag ${tag}`);
  }
  nullable(): number | null {
    if (this.bytes[this.pos] === T_NULL) {
      this.pos++;
      return null;
    }
    return this.num();
  }
  string(): string {
    const n = this.varint() - 1;
    const end = this.pos + n;
    if (end > this.end) this.fail(`string of ${n} bytes past the end`);
    if (this.units.length < n) this.units = new Uint16Array(n);
    const u = this.units;
    const b = this.bytes;
    let k = 0;
    let p = this.pos;
    while (p < end) {
      const c = b[p];
      if (c < 0x80) {
        u[k++] = c;
        p++;
      } else if (c < 0xe0) {
        if (c < 0xc0 || p + 1 >= end) this.fail("bad WTF-8 sequence");
        u[k++] = ((c & 0x1f) << 6) | (b[p + 1] & 0x3f);
        p += 2;
      } else if (c < 0xf0) {
        if (p + 2 >= end) this.fail("bad WTF-8 sequence");
        u[k++] = ((c & 0x0f) << 12) | ((b[p + 1] & 0x3f) << 6) | (b[p + 2] & 0x3f);
        p += 3;
      } else {
        if (c > 0xf7 || p + 3 >= end) this.fail("bad WTF-8 sequence");
        const cp = (((c & 0x07) << 18) | ((b[p + 1] & 0x3f) << 12) | ((b[p + 2] & 0x3f) << 6) |
          (b[p + 3] & 0x3f)) - 0x10000;
        u[k++] = 0xd800 + (cp >> 10);
        u[k++] = 0xdc00 + (cp & 0x3ff);
        p += 4;
      }
    }
    this.pos = end;
    return unitsToString(u, k);
  }
}

function unitsToString(u: Uint16Array, n: number): string {
  if (n <= 16) {
    let s = "";
    for (let i = 0; i < n; i++) s += String.fromCharCode(u[i]);
    return s;
  }
  let s = "";
  for (let i = 0; i < n; i += 4096) {
    s += String.fromCharCode.apply(
      null,
      u.subarray(i, Math.min(n, i + 4096)) as unknown as number[],
    );
  }
  return s;
}

function readRecord(r: Reader, prev: string | null): StateRecord {
  const kind = r.byte();
  const symbol = (): string => {
    if (r.pos < r.end && r.bytes[r.pos] === 0) {
      r.pos++;
      if (prev === null) r.fail("repeated symbol without a previous one");
      return prev;
    }
    return r.string();
  };
  switch (kind) {
    case KIND_PARTITION:
      return {
        kind: "partition",
        partition: r.num(),
        maxEventTime: r.nullable(),
        lastOffset: r.nullable(),
        floor: r.nullable(),
        replayBelow: r.num(),
        lastArrivalMs: r.nullable(),
      };
    case KIND_BASELINE: {
      const partition = r.num();
      return { kind: "baseline", partition, symbol: symbol(), dayVolume: r.num() };
    }
    case KIND_WINDOW: {
      const partition = r.num();
      const windowMs = r.num();
      return {
        kind: "window",
        partition,
        windowMs,
        symbol: symbol(),
        start: r.num(),
        count: r.num(),
        sum: r.num(),
        comp: r.num(),
        open: r.num(),
        high: r.num(),
        low: r.num(),
        close: r.num(),
        first: r.num(),
        last: r.num(),
        lastOffset: r.num(),
        volume: r.num(),
        volumeComp: r.num(),
        pv: r.num(),
        pvComp: r.num(),
      };
    }
    case KIND_WINDOW_DELETED: {
      const partition = r.num();
      const windowMs = r.num();
      return { kind: "window-deleted", partition, windowMs, symbol: symbol(), start: r.num() };
    }
    default:
      return r.fail(`record kind ${kind}`);
  }
}

/** Decodes one chunk into its records (in stored order); throws StateCodecError when corrupt. */
export function decodeChunk(chunk: Uint8Array): StateRecord[] {
  if (chunk.byteLength === 0) throw new StateCodecError("Corrupt state chunk: it is empty");
  if (chunk[0] !== STATE_CODEC_VERSION) {
    throw new StateCodecError(
      `Unsupported state chunk version ${chunk[0]}: expected ${STATE_CODEC_VERSION}`,
    );
  }
  const r = new Reader(chunk, 1);
  const out: StateRecord[] = [];
  let prev: string | null = null;
  try {
    while (r.pos < r.end) {
      const rec = readRecord(r, prev);
      if (r.pos > r.end) r.fail("truncated record");
      if (rec.kind !== "partition") prev = rec.symbol;
      out.push(rec);
    }
  } catch (e) {
    if (e instanceof RangeError) r.fail("truncated float64");
    throw e;
  }
  return out;
}

/** Decodes chunks lazily into their records, in order. */
export function* decodeChunks(chunks: Iterable<Uint8Array>): Generator<StateRecord> {
  for (const c of chunks) yield* decodeChunk(c);
}

// ---------------------------------------------------------------------------------------------
// Merging

/**
 * A resumable k-way merge of sorted segments: source 0 is the base, sources 1..k-1 the deltas in
 * order. Per key the record of the highest source wins; a winning `window-deleted` removes the
 * window (nothing is emitted), so the output is a sorted base without deletes.
 *
 * Pull-based and I/O-free, so the caller decides where records come from: `next()` returns a
 * record, or the index of a source whose buffered records ran out (then `feed()` that source its
 * next batch, or null when it has no more), or null when the merge is done.
 */
export class MergeCursor {
  readonly #bufs: (StateRecord[] | null)[];
  readonly #at: number[];
  readonly #ended: boolean[];
  readonly #heads: (StateRecord | null)[];
  readonly #heap: number[] = [];
  #pending: number[];

  /** Creates a merge over `sources` segments (base first). */
  constructor(sources: number) {
    if (!Number.isSafeInteger(sources) || sources < 0) {
      throw new StateCodecError(`Invalid merge source count ${fmt(sources)}`);
    }
    this.#bufs = new Array(sources).fill(null);
    this.#at = new Array(sources).fill(0);
    this.#ended = new Array(sources).fill(false);
    this.#heads = new Array(sources).fill(null);
    this.#pending = Array.from({ length: sources }, (_, i) => sources - 1 - i);
  }

  /** Gives source `index` its next batch of records (in order), or null: it has no more. */
  feed(index: number, records: StateRecord[] | null): void {
    if (records === null) this.#ended[index] = true;
    else {
      this.#bufs[index] = records;
      this.#at[index] = 0;
    }
  }

  #less(i: number, j: number): boolean {
    const c = compareRecords(this.#heads[i]!, this.#heads[j]!);
    return c < 0 || (c === 0 && i < j);
  }

  #push(i: number): void {
    const h = this.#heap;
    let k = h.length;
    h.push(i);
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (!this.#less(h[k], h[parent])) break;
      [h[k], h[parent]] = [h[parent], h[k]];
      k = parent;
    }
  }

  #pop(): number {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let k = 0;
      for (;;) {
        const l = 2 * k + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const m = r < h.length && this.#less(h[r], h[l]) ? r : l;
        if (!this.#less(h[m], h[k])) break;
        [h[k], h[m]] = [h[m], h[k]];
        k = m;
      }
    }
    return top;
  }

  /** The next merged record, a source index that needs `feed()`, or null when done. */
  next(): StateRecord | number | null {
    for (;;) {
      while (this.#pending.length > 0) {
        const i = this.#pending[this.#pending.length - 1];
        const buf = this.#bufs[i];
        if (buf !== null && this.#at[i] < buf.length) {
          const rec = buf[this.#at[i]++];
          const prev = this.#heads[i];
          if (prev !== null && compareRecords(prev, rec) >= 0) {
            throw new StateOrderError(
              `Segment ${i} of the merge is not sorted: ${keyText(rec)} comes after ${
                keyText(prev)
              }`,
            );
          }
          this.#heads[i] = rec;
          this.#pending.pop();
          this.#push(i);
        } else if (this.#ended[i]) {
          this.#bufs[i] = null;
          this.#pending.pop();
        } else {
          this.#bufs[i] = null;
          return i;
        }
      }
      if (this.#heap.length === 0) return null;
      let winner = this.#pop();
      const rec = this.#heads[winner]!;
      this.#pending.push(winner);
      let best = rec;
      while (this.#heap.length > 0 && compareRecords(this.#heads[this.#heap[0]]!, rec) === 0) {
        winner = this.#pop();
        best = this.#heads[winner]!;
        this.#pending.push(winner);
      }
      if (best.kind !== "window-deleted") return best;
    }
  }
}

/**
 * Merges sorted segments (base first, then the deltas in order) into one sorted stream: latest
 * record per key wins, `window-deleted` removes the window. Lazy: holds one record per source.
 */
export function* mergeSorted(sources: Iterable<StateRecord>[]): Generator<StateRecord> {
  const its = sources.map((s) => s[Symbol.iterator]());
  const cursor = new MergeCursor(its.length);
  for (;;) {
    const r = cursor.next();
    if (r === null) return;
    if (typeof r === "number") {
      const batch: StateRecord[] = [];
      const it = its[r];
      while (batch.length < 256) {
        const n = it.next();
        if (n.done) break;
        batch.push(n.value);
      }
      cursor.feed(r, batch.length > 0 ? batch : null);
      continue;
    }
    yield r;
  }
}

/**
 * Sorts a delta (small, in memory) by key; of records with the same key the later one wins.
 * Returns a new array.
 */
export function sortDelta(records: Iterable<StateRecord>): StateRecord[] {
  const all = [...records];
  // A cut's delta comes sorted with distinct keys already (Cut.delta()): one pass checks that
  // and returns it as it is.
  let strict = true;
  for (let i = 1; i < all.length && strict; i++) strict = compareRecords(all[i - 1], all[i]) < 0;
  if (strict) return all;
  // Stable sort: among equal keys the input order stays, so the last one is the latest.
  all.sort(compareRecords);
  const out: StateRecord[] = [];
  for (const r of all) {
    if (out.length > 0 && compareRecords(out[out.length - 1], r) === 0) out[out.length - 1] = r;
    else out.push(r);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sorting a whole state in compact memory

const ARENA_BLOCK = 1 << 20;

function denseRanks(values: string[], cmp: (a: string, b: string) => number): Uint32Array {
  const order = Array.from(values.keys()).sort((a, b) => cmp(values[a], values[b]));
  const ranks = new Uint32Array(values.length);
  for (let i = 0; i < order.length; i++) ranks[order[i]] = i;
  return ranks;
}

function rankMap(values: Float64Array, n: number): Map<number, number> {
  const distinct = [...new Set(values.subarray(0, n))].sort((a, b) => a - b);
  return new Map(distinct.map((v, i) => [v, i]));
}

function grown<T extends Float64Array | Uint32Array | Uint8Array>(a: T, size: number): T {
  const b = new (a.constructor as new (n: number) => T)(size);
  b.set(a);
  return b;
}

/**
 * Sorts a whole state that may come unsorted (e.g. `engine.records()`) without holding the record
 * objects: each record is encoded into a binary arena as it arrives (about its chunk size), its
 * sort key kept in typed arrays (about 33 bytes per record plus one string per distinct symbol);
 * then an index is sorted and the records are decoded back one at a time, in key order.
 * Duplicate keys are kept (in input order): the encoder refuses them.
 */
export function* sortRecords(records: Iterable<StateRecord>): Generator<StateRecord> {
  let cap = 1024;
  let n = 0;
  let part = new Float64Array(cap);
  let wms = new Float64Array(cap);
  let start = new Float64Array(cap);
  let sym = new Uint32Array(cap);
  let rank = new Uint8Array(cap);
  let loc = new Float64Array(cap); // block * 2^21 + offset
  const symbols = new Map<string, number>();
  const names: string[] = [];
  const blocks: Uint8Array[] = [];
  let w = new Writer(ARENA_BLOCK);
  const grow = () => {
    cap *= 2;
    part = grown(part, cap);
    wms = grown(wms, cap);
    start = grown(start, cap);
    loc = grown(loc, cap);
    sym = grown(sym, cap);
    rank = grown(rank, cap);
  };
  for (const r of records) {
    if (n === cap) grow();
    const bound = recordBound(r);
    if (w.pos + bound > w.buf.length && w.pos > 0) {
      blocks.push(w.buf.subarray(0, w.pos));
      w = new Writer(Math.max(ARENA_BLOCK, bound));
    }
    loc[n] = blocks.length * 2 ** 21 + w.pos;
    writeRecord(w, r, null);
    part[n] = r.partition;
    const k = kindRank(r);
    rank[n] = k;
    if (k === 0) {
      wms[n] = 0;
      sym[n] = 0;
      start[n] = 0;
    } else {
      const s = (r as { symbol: string }).symbol;
      let id = symbols.get(s);
      if (id === undefined) {
        id = names.length;
        symbols.set(s, id);
        names.push(s);
      }
      sym[n] = id;
      if (k === 1) {
        wms[n] = 0;
        start[n] = 0;
      } else {
        const x = r as { windowMs: number; start: number };
        wms[n] = x.windowMs;
        start[n] = x.start;
      }
    }
    n++;
  }
  if (w.pos > 0) blocks.push(w.buf.subarray(0, w.pos));
  symbols.clear();
  // One composite major key per record from the dense ranks of partition, kind, windowMs and
  // symbol, then start: two loads per comparison instead of six.
  const symRank = denseRanks(names, cmpStr);
  names.length = 0;
  const partRank = rankMap(part, n);
  const wmsRank = rankMap(wms, n);
  const nS = symRank.length + 1;
  const nW = wmsRank.size;
  const major = new Float64Array(n);
  const fits = partRank.size * 3 * nW * nS < 2 ** 53;
  for (let i = 0; i < n; i++) {
    major[i] = fits
      ? ((partRank.get(part[i])! * 3 + rank[i]) * nW + wmsRank.get(wms[i])!) * nS +
        (rank[i] === 0 ? 0 : symRank[sym[i]] + 1)
      : 0;
  }
  // A plain array of small integers: Array#sort with a comparator is much faster than
  // TypedArray#sort with one.
  const perm: number[] = new Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  if (fits) perm.sort((a, b) => major[a] - major[b] || start[a] - start[b] || a - b);
  else {
    perm.sort((a, b) =>
      part[a] - part[b] || rank[a] - rank[b] || wms[a] - wms[b] ||
      symRank[sym[a]] - symRank[sym[b]] || start[a] - start[b] || a - b
    );
  }
  const readers = blocks.map((b) => new Reader(b, 0));
  for (let i = 0; i < n; i++) {
    const at = loc[perm[i]];
    const block = Math.floor(at / 2 ** 21);
    const rd = readers[block];
    rd.pos = at - block * 2 ** 21;
    yield readRecord(rd, null);
  }
}
