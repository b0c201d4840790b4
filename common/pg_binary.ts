/**
 * PostgreSQL arrays in the binary wire format, to pass as ONE binary parameter (node-postgres
 * sends a `Buffer` parameter with format code 1) and cast in SQL (`$3::float8[]`). The server
 * reads them with `array_recv`: no float or timestamp parsing, and the values arrive exactly
 * (a float8 is its 8 IEEE 754 bytes; -0, NaN and ±Infinity included).
 *
 * Format (PostgreSQL `array_send`): int32 number of dimensions (1), int32 has-nulls flag, int32
 * element type OID, int32 length and int32 lower bound (1) of the dimension, then per element an
 * int32 byte length (-1 = NULL) and the element's binary form, all big-endian.
 *
 * Exactness: integers must be safe integers (|x| ≤ 2^53 − 1) and timestamps whole milliseconds;
 * a value that is not raises a {@link BinaryArrayError} naming it (callers check rows first).
 * Text elements are UTF-8; a string that is not well-formed UTF-16 (a lone surrogate) would
 * become U+FFFD, so callers check `String.prototype.isWellFormed()` first.
 *
 * An array with a NULL element carries a null bitmap, which makes `arr[i]` on the server scan
 * the array from the start: read nullable arrays with `unnest`, not by subscript.
 * @module
 */

import { Buffer } from "node:buffer";

/** A value cannot be written exactly in the binary form asked for. */
export class BinaryArrayError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "BinaryArrayError";
  }
}

/** Element type OIDs (pg_type.oid) of the arrays this module writes. */
export const ELEMENT_OID = {
  bool: 16,
  int8: 20,
  int4: 23,
  text: 25,
  float8: 701,
  timestamptz: 1184,
} as const;

const TWO_32 = 4294967296;
/** Milliseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z). */
const PG_EPOCH_MS = 946_684_800_000;
/** Largest |µs| that a double holds exactly (then split into int32 halves exactly). */
const EXACT_US = Number.MAX_SAFE_INTEGER;
const encoder = new TextEncoder();

/** A growing big-endian byte buffer. */
class ByteWriter {
  bytes: Uint8Array;
  view: DataView;
  length = 0;

  constructor(capacity: number) {
    this.bytes = new Uint8Array(Math.max(64, capacity));
    this.view = new DataView(this.bytes.buffer);
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    const need = this.length + n;
    if (need <= this.bytes.length) return;
    let capacity = this.bytes.length * 2;
    while (capacity < need) capacity *= 2;
    const bytes = new Uint8Array(capacity);
    bytes.set(this.bytes.subarray(0, this.length));
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer);
  }

  int32(x: number): void {
    this.view.setInt32(this.length, x);
    this.length += 4;
  }

  /** A safe integer as a big-endian int64 (two's complement, split into exact halves). */
  int64(x: number): void {
    const hi = Math.floor(x / TWO_32);
    this.view.setInt32(this.length, hi);
    this.view.setUint32(this.length + 4, x - hi * TWO_32);
    this.length += 8;
  }

  /** The array header for `n` elements of `oid`. */
  header(oid: number, n: number, hasNulls: boolean): void {
    this.int32(1);
    this.int32(hasNulls ? 1 : 0);
    this.int32(oid);
    this.int32(n);
    this.int32(1);
  }

  /** The bytes written, as a Buffer sharing this writer's memory. */
  done(): Buffer {
    return Buffer.from(this.bytes.buffer, 0, this.length);
  }
}

/** Throws unless `x` is a safe integer. */
function safeInteger(x: number, what: string, i: number): number {
  if (!Number.isSafeInteger(x)) {
    throw new BinaryArrayError(
      `${what} element ${i} is ${x}: expected an integer within ±(2^53 − 1)`,
    );
  }
  return x;
}

/** Whether any of the `n` values is null. */
function anyNull(n: number, get: (i: number) => unknown): boolean {
  for (let i = 0; i < n; i++) if (get(i) === null) return true;
  return false;
}

/** Binary `float8[]` of `n` values; `get(i)` returns element i (null = SQL NULL). */
export function float8Array(n: number, get: (i: number) => number | null): Buffer {
  const w = new ByteWriter(20 + n * 12);
  w.header(ELEMENT_OID.float8, n, anyNull(n, get));
  for (let i = 0; i < n; i++) {
    const v = get(i);
    if (v === null) {
      w.int32(-1);
      continue;
    }
    w.int32(8);
    w.view.setFloat64(w.length, v);
    w.length += 8;
  }
  return w.done();
}

/** Binary `bigint[]` of `n` safe integers; throws {@link BinaryArrayError} on any other value. */
export function int8Array(n: number, get: (i: number) => number): Buffer {
  const w = new ByteWriter(20 + n * 12);
  w.header(ELEMENT_OID.int8, n, false);
  for (let i = 0; i < n; i++) {
    w.int32(8);
    w.int64(safeInteger(get(i), "bigint[]", i));
  }
  return w.done();
}

/** Binary `int[]` of `n` int32 values; throws {@link BinaryArrayError} on any other value. */
export function int4Array(n: number, get: (i: number) => number): Buffer {
  const w = new ByteWriter(20 + n * 8);
  w.header(ELEMENT_OID.int4, n, false);
  for (let i = 0; i < n; i++) {
    const v = get(i);
    if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
      throw new BinaryArrayError(`int[] element ${i} is ${v}: expected a 32-bit integer`);
    }
    w.int32(4);
    w.int32(v);
  }
  return w.done();
}

/** Binary `boolean[]` of `n` values. */
export function boolArray(n: number, get: (i: number) => boolean): Buffer {
  const w = new ByteWriter(20 + n * 5);
  w.header(ELEMENT_OID.bool, n, false);
  for (let i = 0; i < n; i++) {
    w.int32(1);
    w.bytes[w.length++] = get(i) ? 1 : 0;
  }
  return w.done();
}

/**
 * Binary `timestamptz[]` of `n` instants given as epoch milliseconds (whole numbers); throws
 * {@link BinaryArrayError} on any other value. PostgreSQL itself refuses instants outside its
 * range (SQLSTATE 22008, a data error).
 */
export function timestamptzArray(n: number, get: (i: number) => number): Buffer {
  const w = new ByteWriter(20 + n * 12);
  w.header(ELEMENT_OID.timestamptz, n, false);
  for (let i = 0; i < n; i++) {
    const ms = safeInteger(get(i), "timestamptz[] (epoch ms)", i);
    w.int32(8);
    const us = (ms - PG_EPOCH_MS) * 1000;
    if (Math.abs(us) <= EXACT_US) {
      w.int64(us);
    } else {
      w.view.setBigInt64(w.length, (BigInt(ms) - BigInt(PG_EPOCH_MS)) * 1000n);
      w.length += 8;
    }
  }
  return w.done();
}

/** Binary `text[]` of `n` strings as UTF-8; `get(i)` returns element i (null = SQL NULL). */
export function textArray(n: number, get: (i: number) => string | null): Buffer {
  const w = new ByteWriter(20 + n * 16);
  w.header(ELEMENT_OID.text, n, anyNull(n, get));
  for (let i = 0; i < n; i++) {
    const s = get(i);
    if (s === null) {
      w.reserve(4);
      w.int32(-1);
      continue;
    }
    w.reserve(4 + s.length * 3);
    const { written } = encoder.encodeInto(s, w.bytes.subarray(w.length + 4));
    w.int32(written);
    w.length += written;
  }
  return w.done();
}
