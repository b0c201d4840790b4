/**
 * `tickpipe.v1.Tick` (proto/tick.proto), the compact binary record value of the ticks topic
 * (record header `tp-format: tick-v1`), and the choice of value format for ingest.
 *
 * Hand-written codec, no protobufjs:
 * - {@linkcode encodeTick} writes every defined field once, in field-number order, with
 *   one-byte tags (the layout the decoder's fast path expects);
 * - {@linkcode scanTick} reads any valid protobuf encoding of Tick: fields in any order,
 *   repeated fields (last one wins), overlong varints, unknown fields of every wire type
 *   (groups included) skipped; a known field with the wrong wire type, a truncated field, a bad
 *   varint or tag and invalid UTF-8 in a string are errors. It fills a reusable
 *   {@linkcode TickScan} with numbers and byte spans and creates no strings, so the aggregator
 *   can intern the symbol;
 * - {@linkcode decodeTick} is the full decoder built on scanTick (throws ProtoError).
 * @module
 */

import { type PricingData, ProtoError } from "./_types.ts";

/** Name of the Kafka record header that says how the value is encoded. */
export const FORMAT_HEADER = "tp-format";
/** Value formats: `json` (JSON.stringify of the tick; also when the header is absent), `tick-v1`. */
export const VALUE_FORMATS = ["json", "tick-v1"] as const;
/** A record value format (the `tp-format` header value). */
export type ValueFormat = typeof VALUE_FORMATS[number];

/** The fields of tickpipe.v1.Tick (proto3 JSON names, as in PricingData). */
export interface TickMessage {
  /** Symbol (field 1). */
  id: string;
  /** Last price (field 2, double). */
  price: number;
  /** Event time, epoch ms (field 3, sint64). */
  time: number;
  /** Cumulative session volume (field 4, optional sint64). */
  dayVolume?: number;
  /** Size of the last trade (field 5, optional sint64). */
  lastSize?: number;
  /** Exchange code (field 6). */
  exchange?: string;
  /** Currency (field 7). */
  currency?: string;
  /** Yahoo QuoteType enum value (field 8, int32). */
  quoteType?: number;
  /** Yahoo MarketHoursType enum value (field 9, int32). */
  marketHours?: number;
}

/** A decoded Tick: fields absent on the wire are omitted (proto3 defaults are not filled in). */
export type DecodedTick = Partial<TickMessage>;

/** A record value and the `tp-format` header value that goes with it. */
export interface TickValue {
  /** The record value bytes. */
  value: Uint8Array;
  /** The `tp-format` header value. */
  format: ValueFormat;
}

/** Field numbers of Tick. */
const F_ID = 1;
const F_PRICE = 2;
const F_TIME = 3;
const F_DAY_VOLUME = 4;
const F_LAST_SIZE = 5;
const F_EXCHANGE = 6;
const F_CURRENCY = 7;
const F_QUOTE_TYPE = 8;
const F_MARKET_HOURS = 9;
const FIELD_NAMES = [
  "",
  "id",
  "price",
  "time",
  "dayVolume",
  "lastSize",
  "exchange",
  "currency",
  "quoteType",
  "marketHours",
];
/** Wire type of each field (index = field number). */
const FIELD_WIRE = [-1, 2, 1, 0, 0, 0, 2, 2, 0, 0];
const MAX_GROUP_DEPTH = 64;
const TWO_32 = 4294967296;
const INT64_LIMIT = 2 ** 63;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);
const UTF8_ENCODER = new TextEncoder();
const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------------
// Encoder

function badValue(name: string, value: unknown, expected: string): ProtoError {
  const shown = typeof value === "string"
    ? JSON.stringify(value.length > 40 ? value.slice(0, 40) + "..." : value)
    : String(value);
  return new ProtoError("value", `Field ${name} must be ${expected}, got ${shown}`);
}

// Result of zigzag64(): the zigzag encoding of an int64, as unsigned 32-bit halves.
let zlo = 0;
let zhi = 0;

/** Zigzag-encode an integer in [-2^63, 2^63] (2^63 saturates to int64 max) into zlo/zhi. */
function zigzag64(v: number): void {
  if (v >= INT64_LIMIT) {
    zhi = 0xffffffff;
    zlo = 0xfffffffe;
    return;
  }
  if (v <= -INT64_LIMIT) {
    zhi = 0xffffffff;
    zlo = 0xffffffff;
    return;
  }
  const m = v >= 0 ? 2 * v : -2 * v; // exact: a power-of-two multiple of an integer < 2^63
  zhi = Math.floor(m / TWO_32);
  zlo = m - zhi * TWO_32;
  if (v < 0) {
    // zigzag(v) = -2v - 1
    if (zlo === 0) {
      zlo = 0xffffffff;
      zhi -= 1;
    } else zlo -= 1;
  }
}

function varintSize(lo: number, hi: number): number {
  let n = 1;
  while (hi !== 0 || lo > 127) {
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
    n++;
  }
  return n;
}

function writeVarint(out: Uint8Array, at: number, lo: number, hi: number): number {
  while (hi !== 0 || lo > 127) {
    out[at++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  out[at++] = lo;
  return at;
}

/** UTF-16 length when `s` is ASCII, else -1. */
function asciiLength(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return -1;
  return s.length;
}

function checkInt64(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < -INT64_LIMIT || v > INT64_LIMIT) {
    throw badValue(name, v, "an integer in the int64 range");
  }
  return v;
}

function checkInt32(name: string, v: unknown): number {
  if (typeof v !== "number" || (v | 0) !== v) throw badValue(name, v, "an int32");
  return v;
}

/** A string field prepared for writing: ASCII written from the string, else its UTF-8 bytes. */
interface StringField {
  text: string;
  bytes: Uint8Array | null;
  length: number;
}

function prepareString(name: string, v: unknown): StringField {
  if (typeof v !== "string" || !v.isWellFormed()) throw badValue(name, v, "a well-formed string");
  const n = asciiLength(v);
  if (n >= 0) return { text: v, bytes: null, length: n };
  const bytes = UTF8_ENCODER.encode(v);
  return { text: v, bytes, length: bytes.length };
}

function stringSize(f: StringField | null): number {
  return f === null ? 0 : 1 + varintSize(f.length, 0) + f.length;
}

function writeString(out: Uint8Array, at: number, tag: number, f: StringField | null): number {
  if (f === null) return at;
  out[at++] = tag;
  at = writeVarint(out, at, f.length, 0);
  if (f.bytes !== null) {
    out.set(f.bytes, at);
    return at + f.length;
  }
  const s = f.text;
  for (let i = 0; i < f.length; i++) out[at++] = s.charCodeAt(i);
  return at;
}

/**
 * Encodes a tick (a validated tick or any PricingData with id, price and time) as a
 * tickpipe.v1.Tick. Writes every Tick field that is not undefined (zeros and empty strings
 * included), in field-number order; other PricingData fields are dropped. Throws ProtoError
 * ("value") for a value the schema cannot hold.
 */
export function encodeTick(tick: TickMessage | PricingData): Uint8Array {
  const t = tick as Partial<TickMessage>;
  const id = prepareString("id", t.id);
  const price = t.price;
  if (typeof price !== "number") throw badValue("price", price, "a number");
  const time = checkInt64("time", t.time);
  const exchange = t.exchange === undefined ? null : prepareString("exchange", t.exchange);
  const currency = t.currency === undefined ? null : prepareString("currency", t.currency);

  let size = stringSize(id) + 9 + stringSize(exchange) + stringSize(currency);
  zigzag64(time);
  const timeLo = zlo, timeHi = zhi;
  size += 1 + varintSize(timeLo, timeHi);
  let volLo = 0, volHi = 0, lastLo = 0, lastHi = 0;
  if (t.dayVolume !== undefined) {
    zigzag64(checkInt64("dayVolume", t.dayVolume));
    volLo = zlo;
    volHi = zhi;
    size += 1 + varintSize(volLo, volHi);
  }
  if (t.lastSize !== undefined) {
    zigzag64(checkInt64("lastSize", t.lastSize));
    lastLo = zlo;
    lastHi = zhi;
    size += 1 + varintSize(lastLo, lastHi);
  }
  // int32 varints: a negative value is sign-extended to 64 bits (10 bytes), as protobuf does.
  const quoteType = t.quoteType === undefined ? null : checkInt32("quoteType", t.quoteType);
  const marketHours = t.marketHours === undefined ? null : checkInt32("marketHours", t.marketHours);
  if (quoteType !== null) size += 1 + varintSize(quoteType >>> 0, quoteType < 0 ? 0xffffffff : 0);
  if (marketHours !== null) {
    size += 1 + varintSize(marketHours >>> 0, marketHours < 0 ? 0xffffffff : 0);
  }

  const out = new Uint8Array(size);
  let at = writeString(out, 0, (F_ID << 3) | 2, id);
  out[at++] = (F_PRICE << 3) | 1;
  F64[0] = price;
  if (LITTLE_ENDIAN) { for (let i = 0; i < 8; i++) out[at++] = F64_BYTES[i]; }
  else for (let i = 7; i >= 0; i--) out[at++] = F64_BYTES[i];
  out[at++] = F_TIME << 3;
  at = writeVarint(out, at, timeLo, timeHi);
  if (t.dayVolume !== undefined) {
    out[at++] = F_DAY_VOLUME << 3;
    at = writeVarint(out, at, volLo, volHi);
  }
  if (t.lastSize !== undefined) {
    out[at++] = F_LAST_SIZE << 3;
    at = writeVarint(out, at, lastLo, lastHi);
  }
  at = writeString(out, at, (F_EXCHANGE << 3) | 2, exchange);
  at = writeString(out, at, (F_CURRENCY << 3) | 2, currency);
  if (quoteType !== null) {
    out[at++] = F_QUOTE_TYPE << 3;
    at = writeVarint(out, at, quoteType >>> 0, quoteType < 0 ? 0xffffffff : 0);
  }
  if (marketHours !== null) {
    out[at++] = F_MARKET_HOURS << 3;
    at = writeVarint(out, at, marketHours >>> 0, marketHours < 0 ? 0xffffffff : 0);
  }
  if (at !== size) throw new Error(`Tick encoder wrote ${at} bytes, sized ${size}`); // a bug
  return out;
}

/**
 * The record value of a tick in `format`, with its `tp-format` header value: `json` is
 * `JSON.stringify(tick)` as UTF-8 (every field), `tick-v1` is {@linkcode encodeTick}.
 */
export function encodeTickValue(tick: PricingData, format: ValueFormat): TickValue {
  if (format === "tick-v1") return { value: encodeTick(tick), format };
  if (format === "json") return { value: UTF8_ENCODER.encode(JSON.stringify(tick)), format };
  throw new ProtoError("value", `Unknown value format ${JSON.stringify(format)}`);
}

// ---------------------------------------------------------------------------------------------
// Decoder

/**
 * What {@linkcode scanTick} found, reused from record to record: numbers, presence flags and
 * byte spans `[start, end)` of the strings in the scanned buffer (start -1 = absent). Fields
 * that occur more than once take their last value, as protobuf requires.
 */
export class TickScan {
  /** Start of the id bytes, -1 when absent. Their UTF-8 is NOT checked by scanTick. */
  idStart = -1;
  /** End of the id bytes. */
  idEnd = -1;
  /** Whether price occurred. */
  hasPrice = false;
  /** Price. */
  price = 0;
  /** Whether time occurred. */
  hasTime = false;
  /** Time (an int64 beyond 2^53 is rounded to the nearest double). */
  time = 0;
  /** Whether day_volume occurred. */
  hasDayVolume = false;
  /** Day volume. */
  dayVolume = 0;
  /** Whether last_size occurred. */
  hasLastSize = false;
  /** Last size. */
  lastSize = 0;
  /** Start of the exchange bytes (checked UTF-8), -1 when absent. */
  exchangeStart = -1;
  /** End of the exchange bytes. */
  exchangeEnd = -1;
  /** Start of the currency bytes (checked UTF-8), -1 when absent. */
  currencyStart = -1;
  /** End of the currency bytes. */
  currencyEnd = -1;
  /** Whether quote_type occurred. */
  hasQuoteType = false;
  /** Quote type (int32). */
  quoteType = 0;
  /** Whether market_hours occurred. */
  hasMarketHours = false;
  /** Market hours (int32). */
  marketHours = 0;
  /** Why the scan failed ("" after a successful scan). */
  error = "";
  /** ProtoError code of the failure. */
  errorCode: ProtoError["code"] = "truncated";
  /** Byte offset of the failure. */
  errorAt = -1;
}

/** True when buf[start, stop) is well-formed UTF-8 (RFC 3629: no surrogates, no overlongs). */
export function isUtf8(bytes: Uint8Array, start: number, stop: number): boolean {
  let i = start;
  while (i < stop) {
    const c = bytes[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c < 0xc2) return false;
    if (c < 0xe0) {
      if (i + 1 >= stop || (bytes[i + 1] & 0xc0) !== 0x80) return false;
      i += 2;
      continue;
    }
    if (c < 0xf0) {
      if (i + 2 >= stop) return false;
      const c1 = bytes[i + 1];
      if ((c1 & 0xc0) !== 0x80 || (bytes[i + 2] & 0xc0) !== 0x80) return false;
      if (c === 0xe0 ? c1 < 0xa0 : c === 0xed && c1 > 0x9f) return false;
      i += 3;
      continue;
    }
    if (c > 0xf4 || i + 3 >= stop) return false;
    const c1 = bytes[i + 1];
    if (
      (c1 & 0xc0) !== 0x80 || (bytes[i + 2] & 0xc0) !== 0x80 || (bytes[i + 3] & 0xc0) !== 0x80
    ) return false;
    if (c === 0xf0 ? c1 < 0x90 : c === 0xf4 && c1 > 0x8f) return false;
    i += 4;
  }
  return true;
}

/**
 * The scanner: its state lives in fields of one reused object (fast in V8: no boxing of the
 * 32-bit halves, no hole checks of module-level `let`s). Synchronous, never re-entered.
 */
class TickReader {
  buf: Uint8Array = F64_BYTES;
  pos = 0;
  end = 0;
  /** Result of readVarint(): low and high 32 bits, unsigned. */
  lo = 0;
  hi = 0;
  out: TickScan = new TickScan();

  scan(bytes: Uint8Array, out: TickScan): boolean {
    this.buf = bytes;
    this.pos = 0;
    this.end = bytes.length;
    this.out = out;
    out.idStart =
      out.idEnd =
      out.exchangeStart =
      out.exchangeEnd =
        -1;
    out.currencyStart = out.currencyEnd = out.errorAt = -1;
    out.hasPrice =
      out.hasTime =
      out.hasDayVolume =
      out.hasLastSize =
        false;
    out.hasQuoteType = out.hasMarketHours = false;
    out.error = "";
    const ok = this.fields();
    this.buf = F64_BYTES; // do not retain the caller's buffer
    return ok;
  }

  private fail(code: ProtoError["code"], message: string, at: number): false {
    this.out.error = message;
    this.out.errorCode = code;
    this.out.errorAt = at;
    return false;
  }

  private truncated(what: string, at: number): false {
    return this.fail(
      "truncated",
      `Truncated input: ${what} at offset ${at} runs past the end (${this.end} bytes)`,
      at,
    );
  }

  /** Reads a varint into lo/hi; false (with the error set) on a truncated or over-long one. */
  private readVarint(): boolean {
    const buf = this.buf;
    const end = this.end;
    const start = this.pos;
    let pos = start;
    let b = 0;
    let lo = 0;
    let hi = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (pos >= end) return this.truncated("varint", start);
      b = buf[pos++];
      lo |= (b & 0x7f) << shift;
      if (b < 0x80) {
        this.pos = pos;
        this.lo = lo >>> 0;
        this.hi = 0;
        return true;
      }
    }
    if (pos >= end) return this.truncated("varint", start);
    b = buf[pos++];
    lo = (lo | ((b & 0x0f) << 28)) >>> 0;
    hi = (b & 0x7f) >>> 4;
    if (b >= 0x80) {
      let shift = 3;
      for (;;) {
        if (pos >= end) return this.truncated("varint", start);
        b = buf[pos++];
        if (shift === 31) {
          if (b > 1) {
            return this.fail(
              "varint",
              `Varint at offset ${start} overflows 64 bits (10th byte 0x${b.toString(16)})`,
              start,
            );
          }
          hi |= b << 31;
          break;
        }
        hi |= (b & 0x7f) << shift;
        if (b < 0x80) break;
        shift += 7;
      }
    }
    this.pos = pos;
    this.lo = lo;
    this.hi = hi >>> 0;
    return true;
  }

  /** Zigzag-decodes the 64-bit varint in lo/hi to the nearest JS number. */
  private unzigzag(): number {
    const lo = this.lo;
    const hi = this.hi;
    let l = ((lo >>> 1) | (hi << 31)) >>> 0;
    let h = hi >>> 1;
    if ((lo & 1) === 0) return h * TWO_32 + l;
    // -(u + 1): add one on the integer halves first so the conversion rounds only once.
    l = (l + 1) >>> 0;
    if (l === 0) h++;
    return -(h * TWO_32 + l);
  }

  /** Reads a length prefix; the payload must fit in the input. Returns -1 on failure. */
  private readLength(what: string): number {
    const at = this.pos;
    if (!this.readVarint()) return -1;
    if (this.hi !== 0 || this.lo > this.end - this.pos) {
      this.truncated(`${what} of ${this.hi * TWO_32 + this.lo} bytes`, at);
      return -1;
    }
    return this.lo;
  }

  /** Reads a tag into lo; false on a bad varint or field number 0 / beyond 2^29 - 1. */
  private readTag(): boolean {
    const at = this.pos;
    if (!this.readVarint()) return false;
    if (this.hi !== 0 || this.lo >>> 3 === 0) {
      return this.fail(
        "field_number",
        `Invalid field number ${this.hi * 536870912 + (this.lo >>> 3)} at offset ${at}`,
        at,
      );
    }
    return true;
  }

  /** Skips one unknown field's payload (wire type `wt`), groups included. */
  private skipField(field: number, wt: number, tagAt: number, depth: number): boolean {
    switch (wt) {
      case 0:
        return this.readVarint();
      case 1:
        if (this.end - this.pos < 8) return this.truncated("fixed64 field", this.pos);
        this.pos += 8;
        return true;
      case 2: {
        const len = this.readLength(`length-delimited field ${field}`);
        if (len < 0) return false;
        this.pos += len;
        return true;
      }
      case 5:
        if (this.end - this.pos < 4) return this.truncated("fixed32 field", this.pos);
        this.pos += 4;
        return true;
      case 3: {
        if (depth >= MAX_GROUP_DEPTH) {
          return this.fail(
            "group",
            `Groups nested deeper than ${MAX_GROUP_DEPTH} at offset ${tagAt}`,
            tagAt,
          );
        }
        for (;;) {
          if (this.pos >= this.end) return this.truncated(`group ${field}`, tagAt);
          const at = this.pos;
          if (!this.readTag()) return false;
          const f = this.lo >>> 3;
          const w = this.lo & 7;
          if (w === 4) {
            if (f !== field) {
              return this.fail(
                "group",
                `End-group tag for field ${f} at offset ${at} does not match open group ${field}`,
                at,
              );
            }
            return true;
          }
          if (!this.skipField(f, w, at, depth + 1)) return false;
        }
      }
      default:
        return this.fail(
          "wire_type",
          wt === 4
            ? `Unexpected end-group tag for field ${field} at offset ${tagAt}`
            : `Invalid wire type ${wt} for field ${field} at offset ${tagAt}`,
          tagAt,
        );
    }
  }

  /**
   * The field loop. Hot paths are inline with local state: one-byte tags and lengths, and
   * varints of up to 7 bytes (49 bits, exact as doubles); anything longer or unusual goes
   * through the general methods above.
   */
  private fields(): boolean {
    const out = this.out;
    const buf = this.buf;
    const end = this.end;
    let pos = 0;
    while (pos < end) {
      const tagAt = pos;
      let tag = buf[pos];
      if (tag < 0x80) pos++;
      else {
        this.pos = pos;
        if (!this.readTag()) return false;
        pos = this.pos;
        tag = this.lo;
      }
      switch (tag) {
        case 0x0a: // id
        case 0x32: // exchange
        case 0x3a: { // currency
          let len = pos < end ? buf[pos] : 0x80;
          if (len < 0x80) pos++;
          else {
            this.pos = pos;
            len = this.readLength(`string field ${FIELD_NAMES[tag >>> 3]}`);
            if (len < 0) return false;
            pos = this.pos;
          }
          if (len > end - pos) {
            return this.truncated(`string field ${FIELD_NAMES[tag >>> 3]} of ${len} bytes`, tagAt);
          }
          const start = pos;
          pos += len;
          if (tag === 0x0a) {
            out.idStart = start;
            out.idEnd = pos;
          } else if (!isUtf8(buf, start, pos)) {
            return this.fail(
              "utf8",
              `Invalid UTF-8 in string field ${FIELD_NAMES[tag >>> 3]} at offset ${start}`,
              start,
            );
          } else if (tag === 0x32) {
            out.exchangeStart = start;
            out.exchangeEnd = pos;
          } else {
            out.currencyStart = start;
            out.currencyEnd = pos;
          }
          break;
        }
        case 0x11: { // price, double
          if (end - pos < 8) return this.truncated("double field price", pos);
          if (LITTLE_ENDIAN) { for (let i = 0; i < 8; i++) F64_BYTES[i] = buf[pos + i]; }
          else for (let i = 0; i < 8; i++) F64_BYTES[7 - i] = buf[pos + i];
          pos += 8;
          out.price = F64[0];
          out.hasPrice = true;
          break;
        }
        case 0x18: // time, sint64
        case 0x20: // day_volume, sint64
        case 0x28: // last_size, sint64
        case 0x40: // quote_type, int32
        case 0x48: { // market_hours, int32
          const valueAt = pos;
          let v = 0;
          let scale = 1;
          let done = false;
          for (let k = 0; k < 7 && pos < end; k++) {
            const c = buf[pos++];
            v += (c & 0x7f) * scale;
            if (c < 0x80) {
              done = true;
              break;
            }
            scale *= 128;
          }
          let value: number;
          if (done) {
            // int32: the low 32 bits, sign-extended; sint64: zigzag (v < 2^49, so exact).
            value = tag >= 0x40 ? v | 0 : (v & 1) === 0 ? v / 2 : -(v + 1) / 2;
          } else {
            this.pos = valueAt;
            if (!this.readVarint()) return false;
            pos = this.pos;
            value = tag >= 0x40 ? this.lo | 0 : this.unzigzag();
          }
          if (tag === 0x18) {
            out.time = value;
            out.hasTime = true;
          } else if (tag === 0x20) {
            out.dayVolume = value;
            out.hasDayVolume = true;
          } else if (tag === 0x28) {
            out.lastSize = value;
            out.hasLastSize = true;
          } else if (tag === 0x40) {
            out.quoteType = value;
            out.hasQuoteType = true;
          } else {
            out.marketHours = value;
            out.hasMarketHours = true;
          }
          break;
        }
        default: {
          const field = tag >>> 3;
          const wt = tag & 7;
          if (field === 0) {
            return this.fail("field_number", `Invalid field number 0 at offset ${tagAt}`, tagAt);
          }
          if (field < FIELD_WIRE.length) {
            return this.fail(
              "wire_type",
              `Wrong wire type ${wt} for field ${field} (${
                FIELD_NAMES[field]
              }) at offset ${tagAt}; expected ${FIELD_WIRE[field]}`,
              tagAt,
            );
          }
          this.pos = pos;
          if (!this.skipField(field, wt, tagAt, 0)) return false;
          pos = this.pos;
        }
      }
    }
    return true;
  }
}

const READER = new TickReader();

/**
 * Scans a tickpipe.v1.Tick into `out` (reset first). Returns false, with `out.error` set, on
 * malformed input. Never throws, creates no strings; does not check the id's UTF-8 (the caller
 * decodes or interns it).
 */
export function scanTick(bytes: Uint8Array, out: TickScan): boolean {
  return READER.scan(bytes, out);
}

/**
 * Decodes a tickpipe.v1.Tick. Fields absent on the wire are omitted. Throws ProtoError on
 * malformed input (including invalid UTF-8 in the id).
 */
export function decodeTick(bytes: Uint8Array): DecodedTick {
  const s = new TickScan();
  if (!scanTick(bytes, s)) throw new ProtoError(s.errorCode, s.error, s.errorAt);
  const out: DecodedTick = {};
  if (s.idStart >= 0) {
    try {
      out.id = UTF8_STRICT.decode(bytes.subarray(s.idStart, s.idEnd));
    } catch {
      throw new ProtoError(
        "utf8",
        `Invalid UTF-8 in string field id at offset ${s.idStart}`,
        s.idStart,
      );
    }
  }
  if (s.hasPrice) out.price = s.price;
  if (s.hasTime) out.time = s.time;
  if (s.hasDayVolume) out.dayVolume = s.dayVolume;
  if (s.hasLastSize) out.lastSize = s.lastSize;
  if (s.exchangeStart >= 0) {
    out.exchange = UTF8_STRICT.decode(bytes.subarray(s.exchangeStart, s.exchangeEnd));
  }
  if (s.currencyStart >= 0) {
    out.currency = UTF8_STRICT.decode(bytes.subarray(s.currencyStart, s.currencyEnd));
  }
  if (s.hasQuoteType) out.quoteType = s.quoteType;
  if (s.hasMarketHours) out.marketHours = s.marketHours;
  return out;
}
