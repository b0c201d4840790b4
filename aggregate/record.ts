/**
 * The aggregator's record parser: a Kafka record value (bytes), its `tp-format` header and the
 * wall clock → a validated tick `{ symbol, price, time, dayVolume }` or a reject with a stable
 * reason (proto/validate.ts) and a short detail naming the bad value. Pure, never throws.
 *
 * - `json` (header absent or `json`): one pass over the bytes that validates the whole JSON text
 *   exactly as `JSON.parse` of its strict UTF-8 decoding would (anything JSON.parse rejects is
 *   `not_json`; invalid UTF-8 and a byte-order mark are `not_json` too), and extracts the
 *   top-level `id`, `price`, `time` and `dayVolume` (last occurrence wins, like JSON.parse)
 *   without building objects for the other fields. Numbers are decoded exactly (Clinger's fast
 *   path for up to 15 significant digits and |exponent| <= 22, else `Number()` of the text).
 * - `tick-v1`: proto/tick.ts scanTick; malformed protobuf is `bad_binary`.
 * - Symbols are interned: a bounded table keyed by the symbol's UTF-8 bytes returns the same
 *   (already validated) string without decoding.
 * @module
 */

import { isUtf8, scanTick, TickScan } from "../proto/tick.ts";
import {
  checkDayVolume,
  checkPrice,
  checkSymbol,
  checkTime,
  DEFAULT_MAX_FUTURE_MS,
  isValidDayVolume,
  isValidPrice,
  isValidSymbol,
  isValidTime,
  MAX_SYMBOL_LENGTH,
  RawValue,
  type Reject,
  type RejectReason,
  showValue,
} from "../proto/validate.ts";

/** Default cap on a record value's size: larger values are rejected as `too_large`. */
export const DEFAULT_MAX_VALUE_BYTES = 1_048_576;
/** Default number of symbols the intern table holds before it starts over. */
export const DEFAULT_INTERN_CAPACITY = 16_384;

/** A parsed, validated tick. */
export interface ParsedTick {
  /** Symbol (the `id` field). */
  symbol: string;
  /** Price, finite and > 0. */
  price: number;
  /** Event time, epoch ms. */
  time: number;
  /** Cumulative session volume, when the record has one. */
  dayVolume: number | undefined;
}

/** Outcome of {@linkcode parseRecord}. */
export type RecordResult =
  | { ok: true; tick: ParsedTick }
  | { ok: false; reason: RejectReason; detail: string };

/** The `tp-format` header as kafkajs hands it over (a Buffer, a string, repeated, or absent). */
export type FormatHeader =
  | string
  | Uint8Array
  | ReadonlyArray<string | Uint8Array>
  | null
  | undefined;

/** Options of {@linkcode RecordParser}. */
export interface RecordParserOptions {
  /** Largest accepted `time - nowMs` (default 5 minutes). */
  maxFutureMs?: number;
  /** Values over this many bytes are `too_large` (default 1 MiB). */
  maxValueBytes?: number;
  /** Symbols interned before the table starts over (default 16,384; 0 = no interning). */
  internCapacity?: number;
}

/** Options of {@linkcode parseRecord}. */
export interface ParseRecordOptions {
  /** Largest accepted `time - nowMs` (default 5 minutes). */
  maxFutureMs?: number;
  /** Values over this many bytes are `too_large` (default 1 MiB). */
  maxValueBytes?: number;
  /** The record's `tp-format` header. */
  format?: FormatHeader;
  /** Wall-clock now, epoch ms. */
  nowMs: number;
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

const UTF8 = new TextDecoder("utf-8", { ignoreBOM: true });
const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const POW10 = new Float64Array(23);
for (let k = 0; k <= 22; k++) POW10[k] = Number("1e" + k);

// Longest raw JSON text of a valid symbol: 32 code points as \uXXXX\uXXXX surrogate escapes.
const MAX_SYMBOL_JSON_BYTES = MAX_SYMBOL_LENGTH * 12;
// Longest UTF-8 of a valid symbol.
const MAX_SYMBOL_UTF8_BYTES = MAX_SYMBOL_LENGTH * 4;

/** A short, log-safe preview of raw bytes (decoded leniently, quoted, ~40 characters). */
function preview(b: Uint8Array, start: number, stop: number): string {
  const text = UTF8.decode(b.subarray(start, Math.min(stop, start + 160)));
  return showValue(stop - start > 160 ? text + "..." : text);
}

/** A raw JSON value (the wrong type for its field), shown as its shortened source text. */
function rawValue(b: Uint8Array, start: number, stop: number): RawValue {
  const text = UTF8.decode(b.subarray(start, Math.min(stop, start + 160)));
  return new RawValue(stop - start > 160 ? text + "..." : text);
}

// ---------------------------------------------------------------------------------------------
// Symbol interning

/**
 * A bounded open-addressing table from a symbol's UTF-8 bytes to its (valid) string. Holds at
 * most `capacity` symbols of at most 255 bytes; when full it starts over. The table and the
 * byte arena start small and double as symbols arrive, so a feed of a few hundred symbols
 * stays in the CPU caches.
 */
class Interner {
  readonly capacity: number;
  private mask = 63;
  // Per slot: hash, arena offset, length (0 = empty), index into `strings`.
  private meta = new Int32Array(64 * 4);
  private strings: string[] = [];
  private arena = new Uint8Array(1024);
  private arenaUsed = 0;
  private slot = 0; // where the last miss would insert
  private hash = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** The interned string of b[start, stop), or null (then insert() may follow). */
  lookup(b: Uint8Array, start: number, stop: number): string | null {
    const len = stop - start;
    let h = 0x811c9dc5 ^ len;
    for (let i = start; i < stop; i++) h = Math.imul(h ^ b[i], 0x01000193);
    this.hash = h;
    const meta = this.meta;
    const mask = this.mask;
    let slot = h & mask;
    for (;;) {
      const m = slot << 2;
      const l = meta[m + 2];
      if (l === 0) break;
      if (l === len && meta[m] === h) {
        const arena = this.arena;
        const o = meta[m + 1] - start;
        let i = start;
        while (i < stop && arena[o + i] === b[i]) i++;
        if (i === stop) return this.strings[meta[m + 3]];
      }
      slot = (slot + 1) & mask;
    }
    this.slot = slot;
    return null;
  }

  /** Inserts b[start, stop) → s, right after a lookup() of the same bytes missed. */
  insert(b: Uint8Array, start: number, stop: number, s: string): void {
    const len = stop - start;
    if (len === 0 || len > 255) return;
    const count = this.strings.length;
    if (count >= this.capacity || this.arenaUsed + len > this.capacity * 32) {
      // Full: start over (bounded memory; a churning feed only costs decoding again).
      this.meta.fill(0);
      this.strings.length = 0;
      this.arenaUsed = 0;
      this.slot = this.probe(this.hash);
    } else if ((count + 1) * 2 > this.mask + 1) {
      this.grow();
      this.slot = this.probe(this.hash);
    }
    if (this.arenaUsed + len > this.arena.length) {
      const arena = new Uint8Array(Math.min(this.capacity * 32, this.arena.length * 2) + 256);
      arena.set(this.arena.subarray(0, this.arenaUsed));
      this.arena = arena;
    }
    const m = this.slot << 2;
    this.arena.set(b.subarray(start, stop), this.arenaUsed);
    this.meta[m] = this.hash;
    this.meta[m + 1] = this.arenaUsed;
    this.meta[m + 2] = len;
    this.meta[m + 3] = this.strings.length;
    this.strings.push(s);
    this.arenaUsed += len;
  }

  /** The first empty slot for hash h. */
  private probe(h: number): number {
    let slot = h & this.mask;
    while (this.meta[(slot << 2) + 2] !== 0) slot = (slot + 1) & this.mask;
    return slot;
  }

  /** Doubles the table and re-inserts every entry. */
  private grow(): void {
    const old = this.meta;
    this.mask = this.mask * 2 + 1;
    this.meta = new Int32Array((this.mask + 1) * 4);
    for (let m = 0; m < old.length; m += 4) {
      if (old[m + 2] === 0) continue;
      const to = this.probe(old[m]) << 2;
      for (let k = 0; k < 4; k++) this.meta[to + k] = old[m + k];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// JSON scanner. Functions take (bytes, index, end) and return the next index, or -1 after
// setting jsonError/jsonErrorAt. Module-level state is safe: parsing is synchronous.

let jsonError = "";
let jsonErrorAt = 0;
/**
 * Value of the last readNumber(). A typed array slot, not a variable: a double returned from
 * (or stored in a variable by) a function that is not inlined is boxed in a new heap object.
 */
const NUMBER = new Float64Array(1);
/** Whether the last string scanned by skipString() had an escape. */
let stringEscaped = false;
/** Whether the last string scanned by skipString() had a byte >= 0x80. */
let stringHigh = false;
let stack = new Uint8Array(64);

function fail(message: string, at: number): number {
  jsonError = message;
  jsonErrorAt = at;
  return -1;
}

function unexpected(b: Uint8Array, i: number, end: number, expected: string): number {
  if (i >= end) return fail(`unexpected end, expected ${expected}`, i);
  const c = b[i];
  const shown = c >= 0x20 && c < 0x7f
    ? JSON.stringify(String.fromCharCode(c))
    : `0x${c.toString(16).padStart(2, "0")}`;
  return fail(`unexpected ${shown}, expected ${expected}`, i);
}

// Byte classes inside a string: 0 plain ASCII, 1 quote, 2 backslash, 3 control, 4 non-ASCII.
const STR_CLASS = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) STR_CLASS[c] = 3;
STR_CLASS[0x22] = 1;
STR_CLASS[0x5c] = 2;
for (let c = 0x80; c < 0x100; c++) STR_CLASS[c] = 4;

// Hex digit values, -1 = not hex.
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEX[0x41 + c] = HEX[0x61 + c] = 10 + c;

function skipWs(b: Uint8Array, i: number, end: number): number {
  while (i < end) {
    const c = b[i];
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
    i++;
  }
  return i;
}

/** One UTF-8 sequence starting at b[i] (>= 0x80), strictly; returns the index after it. */
function skipUtf8(b: Uint8Array, i: number, end: number): number {
  const c = b[i];
  if (c >= 0xc2 && c < 0xe0) {
    if (i + 1 < end && (b[i + 1] & 0xc0) === 0x80) return i + 2;
  } else if (c >= 0xe0 && c < 0xf0) {
    if (i + 2 < end) {
      const c1 = b[i + 1];
      if (
        (c1 & 0xc0) === 0x80 && (b[i + 2] & 0xc0) === 0x80 &&
        (c === 0xe0 ? c1 >= 0xa0 : c !== 0xed || c1 <= 0x9f)
      ) return i + 3;
    }
  } else if (c >= 0xf0 && c <= 0xf4) {
    if (i + 3 < end) {
      const c1 = b[i + 1];
      if (
        (c1 & 0xc0) === 0x80 && (b[i + 2] & 0xc0) === 0x80 && (b[i + 3] & 0xc0) === 0x80 &&
        (c === 0xf0 ? c1 >= 0x90 : c !== 0xf4 || c1 <= 0x8f)
      ) return i + 4;
    }
  }
  return fail(`invalid UTF-8 (byte 0x${c.toString(16)})`, i);
}

/** Scans a string body from just after its opening quote; returns the index after the close. */
function skipString(b: Uint8Array, i: number, end: number): number {
  stringEscaped = false;
  stringHigh = false;
  for (;;) {
    if (i >= end) return fail("unterminated string", i);
    const k = STR_CLASS[b[i]];
    if (k === 0) {
      i++;
      continue;
    }
    if (k === 1) return i + 1;
    if (k === 2) {
      stringEscaped = true;
      if (i + 1 >= end) return fail("unterminated escape", i);
      const e = b[i + 1];
      if (e === 0x75) {
        if (
          i + 5 >= end || (HEX[b[i + 2]] | HEX[b[i + 3]] | HEX[b[i + 4]] | HEX[b[i + 5]]) < 0
        ) return fail("bad \\u escape", i);
        i += 6;
      } else if (
        e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e ||
        e === 0x72 || e === 0x74
      ) {
        i += 2;
      } else return fail("bad escape", i);
      continue;
    }
    if (k === 4) {
      stringHigh = true;
      i = skipUtf8(b, i, end);
      if (i < 0) return -1;
      continue;
    }
    return fail(`control character 0x${b[i].toString(16)} in a string`, i);
  }
}

/** Checks the number grammar from b[i] ('-' or a digit); returns the index after it. */
function skipNumber(b: Uint8Array, i: number, end: number): number {
  if (b[i] === 0x2d) i++;
  if (i >= end) return fail("unexpected end in a number", i);
  let c = b[i];
  if (c === 0x30) i++;
  else if (c >= 0x31 && c <= 0x39) {
    i++;
    while (i < end && (c = b[i]) >= 0x30 && c <= 0x39) i++;
  } else return unexpected(b, i, end, "a digit");
  if (i < end && b[i] === 0x2e) {
    i++;
    if (i >= end || (c = b[i]) < 0x30 || c > 0x39) return unexpected(b, i, end, "a digit");
    i++;
    while (i < end && (c = b[i]) >= 0x30 && c <= 0x39) i++;
  }
  if (i < end && (b[i] | 0x20) === 0x65) {
    i++;
    if (i < end && (b[i] === 0x2b || b[i] === 0x2d)) i++;
    if (i >= end || (c = b[i]) < 0x30 || c > 0x39) return unexpected(b, i, end, "a digit");
    i++;
    while (i < end && (c = b[i]) >= 0x30 && c <= 0x39) i++;
  }
  return i;
}

/**
 * Like skipNumber (returns the index after the number, -1 on a syntax error), and stores the
 * number's exact (correctly rounded) value in NUMBER[0].
 */
function readNumber(b: Uint8Array, i: number, end: number): number {
  const start = i;
  const negative = b[i] === 0x2d;
  if (negative) i++;
  if (i >= end) return fail("unexpected end in a number", i);
  let c = b[i];
  // Significant digits (leading zeros skipped) go into two int32 halves of up to 9 digits each,
  // which is faster than a double multiply-add chain; the value is exact while digits <= 15.
  let hi = 0;
  let lo = 0;
  let loDigits = 0;
  let digits = 0;
  let scale = 0; // value = digits * 10^scale
  if (c === 0x30) i++;
  else if (c >= 0x31 && c <= 0x39) {
    do {
      if (digits < 9) hi = hi * 10 + (c - 0x30);
      else if (digits < 18) {
        lo = lo * 10 + (c - 0x30);
        loDigits++;
      }
      digits++;
      i++;
    } while (i < end && (c = b[i]) >= 0x30 && c <= 0x39);
  } else return unexpected(b, i, end, "a digit");
  if (i < end && b[i] === 0x2e) {
    i++;
    if (i >= end || (c = b[i]) < 0x30 || c > 0x39) return unexpected(b, i, end, "a digit");
    do {
      if (digits !== 0 || c !== 0x30) {
        if (digits < 9) hi = hi * 10 + (c - 0x30);
        else if (digits < 18) {
          lo = lo * 10 + (c - 0x30);
          loDigits++;
        }
        digits++;
      }
      scale--;
      i++;
    } while (i < end && (c = b[i]) >= 0x30 && c <= 0x39);
  }
  if (i < end && (b[i] | 0x20) === 0x65) {
    i++;
    let expNegative = false;
    if (i < end && (b[i] === 0x2b || b[i] === 0x2d)) expNegative = b[i++] === 0x2d;
    if (i >= end || (c = b[i]) < 0x30 || c > 0x39) return unexpected(b, i, end, "a digit");
    let e = 0;
    do {
      if (e < 100_000) e = e * 10 + (c - 0x30);
      i++;
    } while (i < end && (c = b[i]) >= 0x30 && c <= 0x39);
    scale += expNegative ? -e : e;
  }
  if (digits === 0) NUMBER[0] = negative ? -0 : 0;
  else if (digits <= 15 && scale >= -22 && scale <= 22) {
    // Clinger's fast path: m < 10^15 and 10^|scale| are exact doubles, so one IEEE operation
    // rounds correctly. (Digits after the first 18 are not accumulated; more than 15 digits
    // take the slow path anyway.)
    const m = loDigits === 0 ? hi : hi * POW10[loDigits] + lo;
    const v = scale >= 0 ? m * POW10[scale] : m / POW10[-scale];
    NUMBER[0] = negative ? -v : v;
  } else NUMBER[0] = Number(UTF8.decode(b.subarray(start, i)));
  return i;
}

function skipLiteral(b: Uint8Array, i: number, end: number): number {
  const c = b[i];
  if (c === 0x74) {
    if (i + 3 < end && b[i + 1] === 0x72 && b[i + 2] === 0x75 && b[i + 3] === 0x65) return i + 4;
  } else if (c === 0x66) {
    if (
      i + 4 < end && b[i + 1] === 0x61 && b[i + 2] === 0x6c && b[i + 3] === 0x73 &&
      b[i + 4] === 0x65
    ) return i + 5;
  } else if (c === 0x6e) {
    if (i + 3 < end && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c) return i + 4;
  }
  return unexpected(b, i, end, "a JSON value");
}

/** An object key from b[i] (must be '"'), the white space and the colon after it. */
function skipKey(b: Uint8Array, i: number, end: number): number {
  if (i >= end || b[i] !== 0x22) return unexpected(b, i, end, "a string key");
  i = skipString(b, i + 1, end);
  if (i < 0) return -1;
  i = skipWs(b, i, end);
  if (i >= end || b[i] !== 0x3a) return unexpected(b, i, end, "':'");
  return i + 1;
}

/** Any JSON value from b[i] (white space skipped first), nested ones iteratively. */
function skipValue(b: Uint8Array, i: number, end: number): number {
  let depth = 0;
  for (;;) {
    i = skipWs(b, i, end);
    if (i >= end) return fail("unexpected end, expected a JSON value", i);
    let c = b[i];
    if (c === 0x22) i = skipString(b, i + 1, end);
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) i = skipNumber(b, i, end);
    else if (c === 0x7b || c === 0x5b) {
      const close = c + 2; // '}' or ']'
      i = skipWs(b, i + 1, end);
      if (i < end && b[i] === close) i++;
      else {
        if (depth === stack.length) {
          const grown = new Uint8Array(stack.length * 2);
          grown.set(stack);
          stack = grown;
        }
        stack[depth++] = close;
        if (close === 0x7d) {
          i = skipKey(b, i, end);
          if (i < 0) return -1;
        }
        continue;
      }
    } else i = skipLiteral(b, i, end);
    if (i < 0) return -1;
    // After a value: a comma (next element) or the closing bracket of the open container.
    for (;;) {
      if (depth === 0) return i;
      i = skipWs(b, i, end);
      if (i >= end) return fail("unexpected end in a container", i);
      c = b[i];
      const close = stack[depth - 1];
      if (c === 0x2c) {
        i++;
        if (close === 0x7d) {
          i = skipKey(b, skipWs(b, i, end), end);
          if (i < 0) return -1;
        }
        break;
      }
      if (c !== close) return unexpected(b, i, end, close === 0x7d ? "',' or '}'" : "',' or ']'");
      depth--;
      i++;
    }
  }
}

const F_OTHER = 0;
const F_ID = 1;
const F_PRICE = 2;
const F_TIME = 3;
const F_DAY_VOLUME = 4;

/** Which of the four fields an unescaped ASCII key b[s, e) is. */
function fieldOf(b: Uint8Array, s: number, e: number): number {
  switch (e - s) {
    case 2:
      return b[s] === 0x69 && b[s + 1] === 0x64 ? F_ID : F_OTHER;
    case 4:
      return b[s] === 0x74 && b[s + 1] === 0x69 && b[s + 2] === 0x6d && b[s + 3] === 0x65
        ? F_TIME
        : F_OTHER;
    case 5:
      return b[s] === 0x70 && b[s + 1] === 0x72 && b[s + 2] === 0x69 && b[s + 3] === 0x63 &&
          b[s + 4] === 0x65
        ? F_PRICE
        : F_OTHER;
    case 9:
      return b[s] === 0x64 && b[s + 1] === 0x61 && b[s + 2] === 0x79 && b[s + 3] === 0x56 &&
          b[s + 4] === 0x6f && b[s + 5] === 0x6c && b[s + 6] === 0x75 && b[s + 7] === 0x6d &&
          b[s + 8] === 0x65
        ? F_DAY_VOLUME
        : F_OTHER;
    default:
      return F_OTHER;
  }
}

/** Which of the four fields a key with escapes is (decoding it: a rare, slow path). */
function escapedFieldOf(b: Uint8Array, s: number, e: number): number {
  if (e - s > 64) return F_OTHER;
  const key = JSON.parse(UTF8.decode(b.subarray(s - 1, e + 1))) as string;
  return key === "id"
    ? F_ID
    : key === "price"
    ? F_PRICE
    : key === "time"
    ? F_TIME
    : key === "dayVolume"
    ? F_DAY_VOLUME
    : F_OTHER;
}

// Kinds of a field's last occurrence.
const K_ABSENT = 0;
const K_STRING = 1; // id only
const K_NUMBER = 2; // price, time, dayVolume only
const K_OTHER = 3; // any other JSON value

// ---------------------------------------------------------------------------------------------
// The parser

/**
 * A reusable record parser. `parse()` fills the public fields (symbol, price, time, dayVolume,
 * hasDayVolume on success; reason and detail on a reject) and allocates nothing for a valid
 * record whose symbol is interned.
 */
export class RecordParser {
  /** Symbol (meaningful after parse() returned true). */
  symbol = "";
  /** Price (after parse() returned true). */
  price = 0;
  /** Event time, epoch ms (after parse() returned true). */
  time = 0;
  /** Day volume, 0 when the record has none (after parse() returned true). */
  dayVolume = 0;
  /** Whether the record has a day volume (after parse() returned true). */
  hasDayVolume = false;
  /** Reject reason (after parse() returned false). */
  reason: RejectReason = "not_json";
  /** Reject detail (after parse() returned false). */
  detail = "";
  /** Largest accepted `time - nowMs`. */
  maxFutureMs: number;
  /** Values over this many bytes are `too_large`. */
  maxValueBytes: number;

  private readonly interner: Interner | null;
  private readonly scan = new TickScan();
  // Last occurrence of each field in the JSON object being scanned.
  private idKind = K_ABSENT;
  private idStart = 0;
  private idEnd = 0;
  private idEscaped = false;
  private idHigh = false;
  private priceKind = K_ABSENT;
  private priceStart = 0;
  private priceEnd = 0;
  private timeKind = K_ABSENT;
  private timeStart = 0;
  private timeEnd = 0;
  private volumeKind = K_ABSENT;
  private volumeStart = 0;
  private volumeEnd = 0;

  /** Creates a parser with its own intern table. */
  constructor(options: RecordParserOptions = {}) {
    this.maxFutureMs = options.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS;
    this.maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    const capacity = options.internCapacity ?? DEFAULT_INTERN_CAPACITY;
    this.interner = capacity > 0 ? new Interner(capacity) : null;
  }

  /**
   * Parses and validates one record value. True: the tick is in symbol/price/time/dayVolume.
   * False: the reject is in reason/detail. `format` is the record's `tp-format` header.
   */
  parse(value: Uint8Array | null, format: FormatHeader, nowMs: number): boolean {
    const bytes = value ?? EMPTY;
    if (bytes.length > this.maxValueBytes) {
      return this.reject(
        "too_large",
        `Value of ${bytes.length} bytes exceeds the limit of ${this.maxValueBytes} bytes`,
      );
    }
    const f = formatOf(format);
    if (f === FORMAT_JSON) return this.parseJson(bytes, value === null, nowMs);
    if (f === FORMAT_TICK_V1) return this.parseTickV1(bytes, nowMs);
    return this.reject(
      "unknown_format",
      `Unknown tp-format header ${showFormat(format)}; expected "json" or "tick-v1"`,
    );
  }

  /** The last parse's outcome as a fresh object. */
  result(ok: boolean): RecordResult {
    if (!ok) return { ok: false, reason: this.reason, detail: this.detail };
    return {
      ok: true,
      tick: {
        symbol: this.symbol,
        price: this.price,
        time: this.time,
        dayVolume: this.hasDayVolume ? this.dayVolume : undefined,
      },
    };
  }

  private reject(reason: RejectReason, detail: string): false {
    this.reason = reason;
    this.detail = detail;
    return false;
  }

  private rejectWith(bad: Reject | null): false {
    // The fast checks and the validate.ts checks are the same rules; null would be a bug.
    return this.reject(bad?.reason ?? "not_json", bad?.detail ?? "Internal error: no reason");
  }

  // --- JSON ----------------------------------------------------------------------------------

  private parseJson(b: Uint8Array, isNull: boolean, nowMs: number): boolean {
    const end = b.length;
    if (end === 0) {
      return this.reject("not_json", isNull ? "Value is null (a tombstone)" : "Value is empty");
    }
    let i = skipWs(b, 0, end);
    if (i >= end || b[i] !== 0x7b) {
      // Not an object: still tell "not JSON" from "JSON, but not an object".
      const j = i >= end ? fail("unexpected end, expected a JSON value", i) : skipValue(b, i, end);
      if (j < 0) return this.notJson(b);
      const k = skipWs(b, j, end);
      if (k !== end) return this.notJson(b, unexpected(b, k, end, "the end of the value"));
      return this.reject("not_object", `Value ${preview(b, i, end)} is JSON but not an object`);
    }
    this.idKind =
      this.priceKind =
      this.timeKind =
      this.volumeKind =
        K_ABSENT;
    i = skipWs(b, i + 1, end);
    if (i < end && b[i] === 0x7d) i++;
    else {
      for (;;) {
        // Key.
        if (i >= end || b[i] !== 0x22) {
          return this.notJson(b, unexpected(b, i, end, "a string key"));
        }
        const keyStart = i + 1;
        let k = keyStart;
        while (k < end && STR_CLASS[b[k]] === 0) k++;
        let field: number;
        if (k < end && b[k] === 0x22) {
          field = fieldOf(b, keyStart, k);
          i = k + 1;
        } else {
          i = skipString(b, keyStart, end);
          if (i < 0) return this.notJson(b);
          field = stringEscaped ? escapedFieldOf(b, keyStart, i - 1) : F_OTHER;
        }
        // Colon and value, with fast paths for compact JSON (no white space).
        if (i < end && b[i] === 0x3a) i++;
        else {
          i = skipWs(b, i, end);
          if (i >= end || b[i] !== 0x3a) return this.notJson(b, unexpected(b, i, end, "':'"));
          i++;
        }
        if (i < end && b[i] <= 0x20) i = skipWs(b, i, end);
        if (i >= end) return this.notJson(b, fail("unexpected end, expected a JSON value", i));
        const c = b[i];
        const start = i;
        const isNumber = c === 0x2d || (c >= 0x30 && c <= 0x39);
        if (field === F_OTHER) {
          if (c === 0x22) {
            // Inline fast path for plain ASCII strings; skipString handles the rest.
            let k = i + 1;
            while (k < end && STR_CLASS[b[k]] === 0) k++;
            i = k < end && b[k] === 0x22 ? k + 1 : skipString(b, i + 1, end);
          } else if (isNumber) i = skipNumber(b, i, end);
          else i = skipValue(b, i, end);
        } else if (field === F_ID) {
          if (c === 0x22) {
            let k = i + 1;
            while (k < end && STR_CLASS[b[k]] === 0) k++;
            if (k < end && b[k] === 0x22) {
              i = k + 1;
              this.idEscaped = this.idHigh = false;
            } else {
              i = skipString(b, i + 1, end);
              this.idEscaped = stringEscaped;
              this.idHigh = stringHigh;
            }
            this.idKind = K_STRING;
          } else {
            i = skipValue(b, i, end);
            this.idKind = K_OTHER;
          }
          this.idStart = start;
          this.idEnd = i;
        } else {
          let kind = K_OTHER;
          let n = 0;
          if (isNumber) {
            i = readNumber(b, i, end);
            n = NUMBER[0];
            kind = K_NUMBER;
          } else i = skipValue(b, i, end);
          if (field === F_PRICE) {
            this.priceKind = kind;
            this.price = n;
            this.priceStart = start;
            this.priceEnd = i;
          } else if (field === F_TIME) {
            this.timeKind = kind;
            this.time = n;
            this.timeStart = start;
            this.timeEnd = i;
          } else {
            this.volumeKind = kind;
            this.dayVolume = n;
            this.volumeStart = start;
            this.volumeEnd = i;
          }
        }
        if (i < 0) return this.notJson(b);
        // Separator.
        if (i < end && b[i] <= 0x20) i = skipWs(b, i, end);
        if (i < end) {
          const s = b[i];
          if (s === 0x2c) {
            i++;
            if (i < end && b[i] <= 0x20) i = skipWs(b, i, end);
            continue;
          }
          if (s === 0x7d) {
            i++;
            break;
          }
        }
        return this.notJson(b, unexpected(b, i, end, "',' or '}'"));
      }
    }
    i = skipWs(b, i, end);
    if (i !== end) return this.notJson(b, unexpected(b, i, end, "the end of the value"));
    return this.checkJsonFields(b, nowMs);
  }

  /** Rejects as not_json with the scanner's error (`_failed` is the -1 that reported it). */
  private notJson(b: Uint8Array, _failed = -1): false {
    return this.reject(
      "not_json",
      `Value ${preview(b, 0, b.length)} is not JSON: ${jsonError} at byte ${jsonErrorAt}`,
    );
  }

  private checkJsonFields(b: Uint8Array, nowMs: number): boolean {
    // Symbol.
    if (this.idKind !== K_STRING) {
      return this.rejectWith(checkSymbol(
        this.idKind === K_ABSENT ? undefined : rawValue(b, this.idStart, this.idEnd),
      ));
    }
    const symbol = this.jsonSymbol(b);
    if (symbol === null) return false;
    // Price, time, day volume: a fast check, the validate.ts check for the detail.
    if (this.priceKind !== K_NUMBER || !isValidPrice(this.price)) {
      return this.rejectWith(checkPrice(
        this.fieldValue(b, this.priceKind, this.price, this.priceStart, this.priceEnd),
        { symbol },
      ));
    }
    if (
      this.timeKind !== K_NUMBER ||
      !isValidTime(this.time, { nowMs, maxFutureMs: this.maxFutureMs })
    ) {
      return this.rejectWith(checkTime(
        this.fieldValue(b, this.timeKind, this.time, this.timeStart, this.timeEnd),
        { symbol, nowMs, maxFutureMs: this.maxFutureMs },
      ));
    }
    if (this.volumeKind === K_ABSENT) {
      this.hasDayVolume = false;
      this.dayVolume = 0;
    } else if (this.volumeKind === K_NUMBER && isValidDayVolume(this.dayVolume)) {
      this.hasDayVolume = true;
    } else {
      return this.rejectWith(checkDayVolume(
        this.fieldValue(b, this.volumeKind, this.dayVolume, this.volumeStart, this.volumeEnd),
        { symbol },
      ));
    }
    this.symbol = symbol;
    return true;
  }

  private fieldValue(
    b: Uint8Array,
    kind: number,
    n: number,
    start: number,
    stop: number,
  ): unknown {
    return kind === K_ABSENT ? undefined : kind === K_NUMBER ? n : rawValue(b, start, stop);
  }

  /** The id string (interned when possible) if it is a valid symbol; else rejects (null). */
  private jsonSymbol(b: Uint8Array): string | null {
    const start = this.idStart + 1;
    const stop = this.idEnd - 1;
    if (stop - start > MAX_SYMBOL_JSON_BYTES) return this.rejectLongSymbol(b, start, stop);
    const interner = this.interner;
    if (this.idEscaped) {
      // Escaped spans are never interned: their bytes are not the string's UTF-8.
      const s = JSON.parse(UTF8.decode(b.subarray(start - 1, stop + 1))) as string;
      return isValidSymbol(s) ? s : (this.rejectWith(checkSymbol(s)), null);
    }
    if (interner !== null) {
      const hit = interner.lookup(b, start, stop);
      if (hit !== null) return hit;
    }
    const s = this.idHigh ? UTF8.decode(b.subarray(start, stop)) : latin1(b, start, stop);
    if (!isValidSymbol(s)) return (this.rejectWith(checkSymbol(s)), null);
    interner?.insert(b, start, stop, s);
    return s;
  }

  private rejectLongSymbol(b: Uint8Array, start: number, stop: number): null {
    this.reject(
      "bad_symbol",
      `Symbol ${preview(b, start, stop)} of ${
        stop - start
      } bytes must be 1-${MAX_SYMBOL_LENGTH} code points`,
    );
    return null;
  }

  // --- tick-v1 -------------------------------------------------------------------------------

  private parseTickV1(b: Uint8Array, nowMs: number): boolean {
    const s = this.scan;
    if (!scanTick(b, s)) {
      return this.reject("bad_binary", `Value is not a tick-v1 Tick: ${s.error}`);
    }
    if (s.idStart < 0) return this.rejectWith(checkSymbol(undefined));
    const symbol = this.binarySymbol(b, s.idStart, s.idEnd);
    if (symbol === null) return false;
    if (!s.hasPrice || !isValidPrice(s.price)) {
      return this.rejectWith(checkPrice(s.hasPrice ? s.price : undefined, { symbol }));
    }
    if (!s.hasTime || !isValidTime(s.time, { nowMs, maxFutureMs: this.maxFutureMs })) {
      return this.rejectWith(
        checkTime(s.hasTime ? s.time : undefined, { symbol, nowMs, maxFutureMs: this.maxFutureMs }),
      );
    }
    if (s.hasDayVolume && !isValidDayVolume(s.dayVolume)) {
      return this.rejectWith(checkDayVolume(s.dayVolume, { symbol }));
    }
    this.symbol = symbol;
    this.price = s.price;
    this.time = s.time;
    this.hasDayVolume = s.hasDayVolume;
    this.dayVolume = s.hasDayVolume ? s.dayVolume : 0;
    return true;
  }

  private binarySymbol(b: Uint8Array, start: number, stop: number): string | null {
    const interner = this.interner;
    if (interner !== null && stop - start <= MAX_SYMBOL_UTF8_BYTES) {
      const hit = interner.lookup(b, start, stop);
      if (hit !== null) return hit;
    }
    if (!isUtf8(b, start, stop)) {
      this.reject(
        "bad_binary",
        `Value is not a tick-v1 Tick: invalid UTF-8 in the id at offset ${start}`,
      );
      return null;
    }
    if (stop - start > MAX_SYMBOL_UTF8_BYTES) return this.rejectLongSymbol(b, start, stop);
    const s = UTF8_STRICT.decode(b.subarray(start, stop));
    if (!isValidSymbol(s)) return (this.rejectWith(checkSymbol(s)), null);
    interner?.insert(b, start, stop, s);
    return s;
  }
}

const EMPTY = new Uint8Array(0);
const FORMAT_UNKNOWN = 0;
const FORMAT_JSON = 1;
const FORMAT_TICK_V1 = 2;

/** ASCII bytes to a string. */
function latin1(b: Uint8Array, start: number, stop: number): string {
  let s = "";
  for (let i = start; i < stop; i++) s += String.fromCharCode(b[i]);
  return s;
}

function formatOf(h: FormatHeader): number {
  if (h === undefined || h === null) return FORMAT_JSON;
  if (typeof h === "string") {
    return h === "json" ? FORMAT_JSON : h === "tick-v1" ? FORMAT_TICK_V1 : FORMAT_UNKNOWN;
  }
  if (h instanceof Uint8Array) {
    if (
      h.length === 7 && h[0] === 0x74 && h[1] === 0x69 && h[2] === 0x63 && h[3] === 0x6b &&
      h[4] === 0x2d && h[5] === 0x76 && h[6] === 0x31
    ) return FORMAT_TICK_V1;
    if (h.length === 4 && h[0] === 0x6a && h[1] === 0x73 && h[2] === 0x6f && h[3] === 0x6e) {
      return FORMAT_JSON;
    }
    return FORMAT_UNKNOWN;
  }
  return h.length === 1 ? formatOf(h[0]) : FORMAT_UNKNOWN;
}

/**
 * The `tp-format` header as a small code: 0 = `json` or absent, 1 = `tick-v1`, 2 = anything
 * else (parse() with the header itself then gives the reject).
 */
export function formatCodeOf(h: FormatHeader): 0 | 1 | 2 {
  const f = formatOf(h);
  return f === FORMAT_JSON ? 0 : f === FORMAT_TICK_V1 ? 1 : 2;
}

function showFormat(h: FormatHeader): string {
  if (typeof h === "string") return showValue(h);
  if (h instanceof Uint8Array) return preview(h, 0, h.length);
  if (h !== null && h !== undefined && h.length !== 1) {
    return `repeated ${h.length} times`;
  }
  return showValue(String(h));
}

const DEFAULT_PARSER = new RecordParser();

/**
 * Parses and validates one record value (see the module doc). Allocates a result object; for
 * the hot path, reuse a {@linkcode RecordParser}.
 */
export function parseRecord(value: Uint8Array | null, options: ParseRecordOptions): RecordResult {
  const parser = DEFAULT_PARSER;
  parser.maxFutureMs = options.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS;
  parser.maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
  return parser.result(parser.parse(value, options.format, options.nowMs));
}
