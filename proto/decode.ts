// Hand-written PricingData wire-format reader: one pass, no per-field allocation, strict.
//
// protobufjs's Reader is not used here: it decodes sint64 to Long objects, replaces invalid
// UTF-8 instead of rejecting it and silently misreads known fields sent with the wrong wire
// type. This reader is ~3x faster on Yahoo frames and throws ProtoError for all of those.

import { shortestFloat32 } from "./_float32.ts";
import {
  FIELD_KIND,
  FIELD_NAME,
  KIND_DOUBLE,
  KIND_ENUM,
  KIND_FLOAT,
  KIND_SINT64,
  KIND_STRING,
  KIND_WIRE_TYPE,
  MAX_FIELD,
} from "./_schema.ts";
import { type PricingData, ProtoError } from "./_types.ts";

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const SCRATCH = new Uint8Array(8);
const SCRATCH_F32 = new Float32Array(SCRATCH.buffer, 0, 1);
const SCRATCH_F64 = new Float64Array(SCRATCH.buffer, 0, 1);
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const MAX_GROUP_DEPTH = 64;

// Reader state: decode() is synchronous and never re-entered, so module-level state avoids
// allocating a reader object per frame.
let buf: Uint8Array = SCRATCH;
let pos = 0;
let end = 0;
// Result of readVarint(): low and high 32 bits, unsigned.
let lo = 0;
let hi = 0;

function truncated(what: string, at: number): ProtoError {
  return new ProtoError(
    "truncated",
    `Truncated input: ${what} at offset ${at} runs past the end (${end} bytes)`,
    at,
  );
}

function readVarint(): void {
  const start = pos;
  let b = 0;
  lo = 0;
  hi = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= end) throw truncated("varint", start);
    b = buf[pos++];
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) {
      lo >>>= 0;
      return;
    }
  }
  if (pos >= end) throw truncated("varint", start);
  b = buf[pos++];
  lo = (lo | ((b & 0x0f) << 28)) >>> 0;
  hi = (b & 0x7f) >>> 4;
  if (b < 0x80) return;
  for (let shift = 3; shift < 31; shift += 7) {
    if (pos >= end) throw truncated("varint", start);
    b = buf[pos++];
    hi |= (b & 0x7f) << shift;
    if (b < 0x80) {
      hi >>>= 0;
      return;
    }
  }
  if (pos >= end) throw truncated("varint", start);
  b = buf[pos++];
  if (b > 1) {
    throw new ProtoError(
      "varint",
      `Varint at offset ${start} overflows 64 bits (10th byte 0x${b.toString(16)})`,
      start,
    );
  }
  hi = (hi | (b << 31)) >>> 0;
}

/** Zigzag-decode the 64-bit varint in lo/hi to the nearest JS number. */
function zigzag(): number {
  let l = ((lo >>> 1) | (hi << 31)) >>> 0;
  let h = hi >>> 1;
  if ((lo & 1) === 0) return h * 4294967296 + l;
  // -(u + 1): add one on the integer halves first so the conversion rounds only once.
  l = (l + 1) >>> 0;
  if (l === 0) h++;
  return -(h * 4294967296 + l);
}

function readLength(): number {
  const at = pos;
  readVarint();
  if (hi !== 0 || lo > end - pos) {
    throw truncated(`length-delimited field of ${hi * 4294967296 + lo} bytes`, at);
  }
  return lo;
}

function readString(len: number): string {
  const start = pos;
  const stop = start + len;
  if (len <= 64) {
    let s = "";
    for (let i = start; i < stop; i++) {
      const c = buf[i];
      if (c >= 0x80) return readUtf8(start, stop);
      s += String.fromCharCode(c);
    }
    pos = stop;
    return s;
  }
  return readUtf8(start, stop);
}

function readUtf8(start: number, stop: number): string {
  let s: string;
  try {
    s = UTF8.decode(buf.subarray(start, stop));
  } catch {
    throw new ProtoError(
      "utf8",
      `Invalid UTF-8 in string field at offset ${start} (${stop - start} bytes)`,
      start,
    );
  }
  pos = stop;
  return s;
}

function readFixed(n: 4 | 8): void {
  if (end - pos < n) throw truncated(`fixed${n * 8} field`, pos);
  if (LITTLE_ENDIAN) {
    for (let i = 0; i < n; i++) SCRATCH[i] = buf[pos + i];
  } else {
    for (let i = 0; i < n; i++) SCRATCH[n - 1 - i] = buf[pos + i];
  }
  pos += n;
}

/** Skip one unknown field's payload; `field` is needed to match a group's end tag. */
function skipField(field: number, wireType: number, tagAt: number, depth: number): void {
  switch (wireType) {
    case 0:
      readVarint();
      return;
    case 1:
      if (end - pos < 8) throw truncated("fixed64 field", pos);
      pos += 8;
      return;
    case 2: {
      const len = readLength(); // before reading pos: readLength advances it
      pos += len;
      return;
    }
    case 5:
      if (end - pos < 4) throw truncated("fixed32 field", pos);
      pos += 4;
      return;
    case 3: {
      if (depth >= MAX_GROUP_DEPTH) {
        throw new ProtoError(
          "group",
          `Groups nested deeper than ${MAX_GROUP_DEPTH} at offset ${tagAt}`,
          tagAt,
        );
      }
      for (;;) {
        if (pos >= end) throw truncated(`group ${field}`, tagAt);
        const at = pos;
        readVarint();
        const f = checkTag(at);
        const wt = lo & 7;
        if (wt === 4) {
          if (f !== field) {
            throw new ProtoError(
              "group",
              `End-group tag for field ${f} at offset ${at} does not match open group ${field}`,
              at,
            );
          }
          return;
        }
        skipField(f, wt, at, depth + 1);
      }
    }
    default:
      throw new ProtoError(
        "wire_type",
        wireType === 4
          ? `Unexpected end-group tag for field ${field} at offset ${tagAt}`
          : `Invalid wire type ${wireType} for field ${field} at offset ${tagAt}`,
        tagAt,
      );
  }
}

/** Validate the tag in lo/hi and return its field number. */
function checkTag(at: number): number {
  const field = lo >>> 3;
  if (hi !== 0 || field === 0) {
    throw new ProtoError(
      "field_number",
      `Invalid field number ${hi * 536870912 + field} at offset ${at}`,
      at,
    );
  }
  return field;
}

/** Decode a Yahoo PricingData protobuf message; throws ProtoError on malformed input. */
export function decode(bytes: Uint8Array): PricingData {
  buf = bytes;
  pos = 0;
  end = bytes.length;
  // deno-lint-ignore no-explicit-any
  const out: any = {};
  while (pos < end) {
    const at = pos;
    const t = buf[pos];
    if (t < 0x80) {
      pos++;
      lo = t;
      hi = 0;
    } else {
      readVarint();
    }
    const field = checkTag(at);
    const wireType = lo & 7;
    const kind = field <= MAX_FIELD ? FIELD_KIND[field] : 0;
    if (kind === 0) {
      skipField(field, wireType, at, 0);
      continue;
    }
    if (wireType !== KIND_WIRE_TYPE[kind]) {
      throw new ProtoError(
        "wire_type",
        `Wrong wire type ${wireType} for field ${field} (${
          FIELD_NAME[field]
        }) at offset ${at}; expected ${KIND_WIRE_TYPE[kind]}`,
        at,
      );
    }
    switch (kind) {
      case KIND_STRING:
        out[FIELD_NAME[field]] = readString(readLength());
        break;
      case KIND_FLOAT:
        readFixed(4);
        out[FIELD_NAME[field]] = shortestFloat32(SCRATCH_F32[0]);
        break;
      case KIND_DOUBLE:
        readFixed(8);
        out[FIELD_NAME[field]] = SCRATCH_F64[0];
        break;
      case KIND_SINT64:
        readVarint();
        out[FIELD_NAME[field]] = zigzag();
        break;
      case KIND_ENUM:
        readVarint();
        out[FIELD_NAME[field]] = lo | 0; // int32: the low 32 bits, sign-extended
        break;
    }
  }
  buf = SCRATCH; // do not retain the caller's buffer
  return out as PricingData;
}
