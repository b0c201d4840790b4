/**
 * UTF-8 sizes of JS strings, as they go on the wire (WebSocket frames, Kafka records): a lone
 * surrogate counts as U+FFFD (3 bytes), which is what TextEncoder and kafkajs' Buffer.from
 * write for it. Internal to ingest.
 * @module
 */

const encoder = new TextEncoder();
// ignoreBOM: keep a leading U+FEFF as data (the default strips it).
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
// encodeInto is native and much faster than a charCodeAt loop for ASCII-heavy strings; it
// needs room for the whole string (3 bytes per UTF-16 unit at most).
const SCRATCH_UNITS = 16 * 1024;
const scratch = new Uint8Array(SCRATCH_UNITS * 3);

/** UTF-8 length of `s` in bytes. */
export function utf8Length(s: string): number {
  const len = s.length;
  if (len <= SCRATCH_UNITS) {
    return len < 16 ? utf8LengthLoop(s) : encoder.encodeInto(s, scratch).written;
  }
  return utf8LengthLoop(s);
}

function utf8LengthLoop(s: string): number {
  const len = s.length;
  let n = len;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (
      c >= 0xd800 && c <= 0xdbff && i + 1 < len && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      n += 2; // a pair: 2 units, 4 bytes
      i++;
    } else n += 2; // BMP or lone surrogate (U+FFFD): 1 unit, 3 bytes
  }
  return n;
}

/** True when `s` is surely at most `maxBytes` UTF-8 bytes without scanning it (3 bytes a unit). */
export function surelyWithin(s: string, maxBytes: number): boolean {
  return s.length * 3 <= maxBytes;
}

/**
 * The longest prefix of `s` of at most `maxBytes` UTF-8 bytes, cut between characters, as a NEW
 * flat string: it never shares memory with `s` (a `slice` of a long string can be a V8 sliced
 * string that keeps the whole original alive).
 */
export function truncateUtf8(s: string, maxBytes: number): string {
  if (maxBytes <= 0) return "";
  const buf = new Uint8Array(Math.min(maxBytes, s.length * 3));
  // encodeInto writes whole characters only, stopping before one that does not fit.
  const { written } = encoder.encodeInto(s, buf);
  return decoder.decode(buf.subarray(0, written));
}
