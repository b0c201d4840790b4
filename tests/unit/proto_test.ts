import assert from "node:assert/strict";
import protobuf from "protobufjs";
import {
  decode,
  encode,
  type PricingData,
  ProtoError,
  type ProtoErrorCode,
  shortestFloat32,
} from "../../proto/mod.ts";
import {
  type DecodedTick,
  decodeTick,
  encodeTick,
  encodeTickValue,
  FORMAT_HEADER,
  scanTick,
  type TickMessage,
  TickScan,
  type ValueFormat,
} from "../../proto/tick.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

interface Vector {
  id: string;
  frame_base64: string;
  expected: PricingData;
}
const VECTORS_PATH = new URL("../fixtures/yahoo_frames.json", import.meta.url);
const VECTORS: { field_names: string; frames: Vector[] } = JSON.parse(
  await Deno.readTextFile(VECTORS_PATH),
);
const PROTO_TEXT = await Deno.readTextFile(
  new URL("../../proto/pricing_data.proto", import.meta.url),
);
const PB = protobuf.parse(PROTO_TEXT, { keepCase: false }).root.lookupType(
  "tickpipe.yahoo.PricingData",
);

const bytesOf = (b64: string) => Uint8Array.fromBase64(b64);
/** proto3 JSON name (protobufjs keeps "vol_24hr"; protoc's JSON name is "vol24hr"). */
const jsonName = (name: string) => name.replace(/_(.)/g, (_, c: string) => c.toUpperCase());
const FIELDS = PB.fieldsArray.map((f) => ({ id: f.id, type: f.type, name: jsonName(f.name) }));
const FLOAT_FIELDS = new Set(FIELDS.filter((f) => f.type === "float").map((f) => f.name));

/** Decode with protobufjs reflection (independent implementation), rendered like decode(). */
function referenceDecode(bytes: Uint8Array): PricingData {
  const obj = PB.toObject(PB.decode(bytes), { longs: Number, enums: Number }) as Record<
    string,
    number | string
  >;
  const out: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(obj)) {
    const name = jsonName(k);
    out[name] = FLOAT_FIELDS.has(name) ? shortestFloat32(v as number) : v;
  }
  return out as PricingData;
}

function assertProtoError(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProtoError, `expected ProtoError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, /^[A-Z]/);
    return true;
  });
}

Deno.test("schema field names and numbers match the vectors' field_names", () => {
  const fromProto = FIELDS.map((f) => `${f.name}=${f.id}`).join(" ");
  assert.equal(fromProto, VECTORS.field_names);
});

Deno.test("every vector decodes to exactly its expected value", () => {
  assert.ok(VECTORS.frames.length >= 5);
  for (const v of VECTORS.frames) {
    assert.deepStrictEqual(decode(bytesOf(v.frame_base64)), v.expected, v.id);
  }
});

Deno.test("decode agrees with protobufjs reflection on the vectors", () => {
  for (const v of VECTORS.frames) {
    assert.deepStrictEqual(
      decode(bytesOf(v.frame_base64)),
      referenceDecode(bytesOf(v.frame_base64)),
    );
  }
});

Deno.test("encode reproduces the vectors' bytes and round-trips", () => {
  for (const v of VECTORS.frames) {
    const bytes = encode(v.expected);
    assert.equal(bytes.toBase64(), v.frame_base64, v.id);
    assert.deepStrictEqual(decode(bytes), v.expected, v.id);
  }
});

Deno.test("float32 fields render as the shortest round-tripping decimal", () => {
  assert.equal(shortestFloat32(177.4199981689453), 177.42);
  assert.equal(shortestFloat32(Math.fround(0.1)), 0.1);
  assert.equal(shortestFloat32(Math.fround(1e-40)), 1e-40); // subnormal
  assert.equal(shortestFloat32(Math.fround(3.4028234663852886e38)), 3.4028235e38);
  assert.equal(shortestFloat32(Math.fround(16777216)), 16777216);
  assert.ok(Object.is(shortestFloat32(-0), -0));
  assert.ok(Number.isNaN(shortestFloat32(NaN)));
  assert.equal(shortestFloat32(-Infinity), -Infinity);
  // Against a brute-force reference over random bit patterns.
  const random = prng(7);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < 20_000; i++) {
    u[0] = Math.floor(random() * 2 ** 32);
    const x = f[0];
    if (!Number.isFinite(x) || x === 0) continue;
    let ref = NaN;
    for (let p = 1; p <= 9 && Number.isNaN(ref); p++) {
      const v = Number(x.toPrecision(p));
      if (Math.fround(v) === x) ref = v;
    }
    assert.equal(shortestFloat32(x), ref, `bits 0x${u[0].toString(16)}`);
  }
});

const SINT64_EXTREMES = [
  0,
  1,
  -1,
  2 ** 31,
  -(2 ** 31),
  2 ** 32,
  -(2 ** 32) - 1,
  Number.MAX_SAFE_INTEGER,
  Number.MIN_SAFE_INTEGER,
  2 ** 62,
  2 ** 63, // int64 max rounds to 2^63 as a double
  -(2 ** 63),
];
const STRINGS = [
  "",
  "A",
  "BRK-B",
  "^GSPC",
  "EURUSD=X",
  "Société Générale",
  "株式",
  "😀 rocket",
  "x".repeat(300),
];

function randomMessage(random: () => number): PricingData {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)];
  const float = () =>
    pick([
      () => Math.fround((random() - 0.5) * 10 ** Math.floor(random() * 12)),
      () => Math.round(random() * 1e6) / 100,
      () => -Math.round(random() * 1e4) / 100,
      () => pick([0, -0, Infinity, -Infinity, NaN, 3.4028234663852886e38, 1e-45]),
    ])();
  const sint64 = () =>
    random() < 0.5
      ? pick(SINT64_EXTREMES)
      : Math.round((random() - 0.5) * 2 ** Math.floor(random() * 63)) + 0; // no -0 in int64
  const enumValue = () => pick([0, 1, 4, 8, 41, 1000, -1, 2147483647, -2147483648]);
  const double = () => pick([0, -0, 19808172, 1876726640000, -1.5e300, 5e-324, Math.PI, NaN]);
  const out: Record<string, unknown> = {};
  for (const f of FIELDS) {
    if (random() < 0.3) continue; // absent on the wire
    switch (f.type) {
      case "string":
        out[f.name] = pick(STRINGS);
        break;
      case "float":
        out[f.name] = shortestFloat32(float());
        break;
      case "double":
        out[f.name] = double();
        break;
      case "sint64":
        out[f.name] = sint64();
        break;
      default:
        out[f.name] = enumValue();
    }
  }
  return out as PricingData;
}

Deno.test("randomized encode/decode round trip over all field types (seeded)", () => {
  const random = prng(42);
  for (let i = 0; i < 3000; i++) {
    const msg = randomMessage(random);
    const bytes = encode(msg);
    assert.deepStrictEqual(decode(bytes), msg, JSON.stringify(msg));
    if (i % 10 === 0) {
      // protobufjs reflection must read the same bytes identically (where doubles agree).
      const ref = referenceDecode(bytes) as Record<string, unknown>;
      const mine = decode(bytes) as Record<string, unknown>;
      for (const k of Object.keys(mine)) {
        if (typeof mine[k] === "number" && Math.abs(mine[k] as number) > 2 ** 53) continue;
        assert.deepStrictEqual(mine[k], ref[k], k);
      }
    }
  }
});

Deno.test("sint64 zigzag covers the full 64-bit range", () => {
  const cases: [bigint, number][] = [
    [0n, 0],
    [1n, -1],
    [2n, 1],
    [0xfffffffen, 2147483647],
    [0xffffffffn, -2147483648],
    [0xfffffffffffffffen, 2 ** 63], // int64 max, nearest double
    [0xffffffffffffffffn, -(2 ** 63)], // int64 min
    [2n ** 53n, 2 ** 52],
    [2n ** 54n - 1n, -(2 ** 53)],
  ];
  for (const [u, want] of cases) {
    const bytes = [0x18]; // field 3 (time), wire type 0
    let v = u;
    do {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      bytes.push(v > 0n ? b | 0x80 : b);
    } while (v > 0n);
    assert.equal(decode(new Uint8Array(bytes)).time, want, `zigzag ${u}`);
  }
});

Deno.test("enums keep unknown and negative values as numbers", () => {
  assert.deepStrictEqual(decode(new Uint8Array([0x38, 0x04])), { marketHours: 4 });
  // -1 as int32 is a 10-byte sign-extended varint.
  const neg = [0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
  assert.deepStrictEqual(decode(new Uint8Array(neg)), { quoteType: -1 });
});

Deno.test("unknown fields of every wire type are skipped, last duplicate wins", () => {
  const known = encode({ id: "MSFT", price: 1.5 });
  const unknown = [
    0xa0,
    0x03,
    0x96,
    0x01, // field 52 varint
    0xa9,
    0x03,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8, // field 53 fixed64
    0xb2,
    0x03,
    0x02,
    0xff,
    0xfe, // field 54 bytes (not UTF-8: fine, unknown)
    0xbd,
    0x03,
    1,
    2,
    3,
    4, // field 55 fixed32
    0xc3,
    0x03,
    0x08,
    0x01,
    0xc4,
    0x03, // field 56 group containing field 1 varint
  ];
  const again = encode({ id: "AAPL" });
  const bytes = new Uint8Array([...unknown, ...known, ...unknown, ...again]);
  assert.deepStrictEqual(decode(bytes), { id: "AAPL", price: 1.5 });
  assert.deepStrictEqual(decode(new Uint8Array()), {});
});

Deno.test("malformed input throws typed ProtoError", () => {
  // Wrong wire type for every known field.
  for (const f of FIELDS) {
    const expected = f.type === "string" ? 2 : f.type === "float" ? 5 : f.type === "double" ? 1 : 0;
    for (const wt of [0, 1, 2, 5]) {
      if (wt === expected) continue;
      const tag = (f.id << 3) | wt;
      const tagBytes = tag < 0x80 ? [tag] : [(tag & 0x7f) | 0x80, tag >> 7];
      const payload = wt === 0
        ? [1]
        : wt === 1
        ? [0, 0, 0, 0, 0, 0, 0, 0]
        : wt === 2
        ? [0]
        : [0, 0, 0, 0];
      assertProtoError(() => decode(new Uint8Array([...tagBytes, ...payload])), "wire_type");
    }
  }
  assertProtoError(() => decode(new Uint8Array([0x0a, 0x02, 0xc3, 0x28])), "utf8");
  assertProtoError(() => decode(new Uint8Array([0x0a, 0x01, 0x80])), "utf8");
  assertProtoError(() => decode(new Uint8Array([0x0a, 0x05, 0x41])), "truncated");
  assertProtoError(() => decode(new Uint8Array([0x15, 0x00, 0x00])), "truncated");
  assertProtoError(() => decode(new Uint8Array([0x18, 0x80])), "truncated");
  assertProtoError(() => decode(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])), "truncated");
  assertProtoError(
    () => decode(new Uint8Array([0x18, ...new Array(10).fill(0xff), 0x01])),
    "varint",
  );
  assertProtoError(() => decode(new Uint8Array([0x00, 0x01])), "field_number");
  assertProtoError(() => decode(new Uint8Array([0xa6, 0x03])), "wire_type"); // wire type 6
  assertProtoError(() => decode(new Uint8Array([0xa7, 0x03])), "wire_type"); // wire type 7
  assertProtoError(() => decode(new Uint8Array([0xa4, 0x03])), "wire_type"); // stray end group
  assertProtoError(() => decode(new Uint8Array([0xa3, 0x03, 0xac, 0x03])), "group"); // mismatched
  assertProtoError(() => decode(new Uint8Array([0xa3, 0x03])), "truncated"); // unterminated
  assertProtoError(
    () => decode(new Uint8Array(new Array(200).fill(0xa3).flatMap((b) => [b, 0x03]))),
    "group",
  );
});

Deno.test("every truncation of every vector decodes or throws ProtoError", () => {
  for (const v of VECTORS.frames) {
    const bytes = bytesOf(v.frame_base64);
    for (let n = 0; n < bytes.length; n++) {
      try {
        const d = decode(bytes.subarray(0, n));
        // A cut on a field boundary is a valid shorter message: a prefix of the expected fields.
        for (const [k, val] of Object.entries(d)) {
          assert.deepStrictEqual(val, (v.expected as Record<string, unknown>)[k]);
        }
      } catch (e) {
        assert.ok(e instanceof ProtoError, `${v.id}[0..${n}]: ${e}`);
      }
    }
  }
});

Deno.test("random bytes never hang and only throw ProtoError", () => {
  const random = prng(99);
  for (let i = 0; i < 20_000; i++) {
    const bytes = new Uint8Array(1 + Math.floor(random() * 64)).map(() => random() * 256);
    try {
      decode(bytes);
    } catch (e) {
      assert.ok(e instanceof ProtoError, String(e));
    }
  }
});

Deno.test("encode rejects values the schema cannot hold, naming the value", () => {
  const bad: [PricingData, RegExp][] = [
    [{ time: 1.5 }, /time.*1\.5/],
    [{ time: 2 ** 64 }, /time/],
    [{ dayVolume: NaN }, /dayVolume.*NaN/],
    [{ quoteType: 2 ** 31 }, /quoteType.*2147483648/],
    [{ id: "\ud800" }, /id/],
    [{ price: "1" as unknown as number }, /price.*"1"/],
  ];
  for (const [msg, re] of bad) {
    assert.throws(() => encode(msg), (e: unknown) => {
      assert.ok(e instanceof ProtoError);
      assert.equal(e.code, "value");
      assert.match(e.message, re);
      assert.match(e.message, /^[A-Z]/);
      return true;
    });
  }
});

// ---- tickpipe.v1.Tick (proto/tick.ts) -------------------------------------------------------

const TICK_PB = protobuf.parse(
  await Deno.readTextFile(new URL("../../proto/tick.proto", import.meta.url)),
  { keepCase: false },
).root.lookupType("tickpipe.v1.Tick");
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** Expected wire type of each Tick field number. */
const TICK_WIRE: Record<number, number> = { 1: 2, 2: 1, 3: 0, 4: 0, 5: 0, 6: 2, 7: 2, 8: 0, 9: 0 };
const TICK_NAME: Record<number, keyof TickMessage> = {
  1: "id",
  2: "price",
  3: "time",
  4: "dayVolume",
  5: "lastSize",
  6: "exchange",
  7: "currency",
  8: "quoteType",
  9: "marketHours",
};

/**
 * Reference decoder for Tick (the oracle): BigInt varints, recursion for groups, written from
 * the protobuf encoding spec. Throws a plain Error on malformed input.
 */
function referenceTick(bytes: Uint8Array): DecodedTick {
  let pos = 0;
  const need = (n: number) => {
    if (bytes.length - pos < n) throw new Error("truncated");
  };
  const varint = (): bigint => {
    let v = 0n;
    for (let k = 0; k < 10; k++) {
      need(1);
      const b = bytes[pos++];
      if (k === 9 && b > 1) throw new Error("varint overflow");
      v |= BigInt(b & 0x7f) << BigInt(7 * k);
      if (b < 0x80) return v;
    }
    throw new Error("varint too long");
  };
  const skip = (field: number, wt: number, depth: number): void => {
    if (wt === 0) varint();
    else if (wt === 1) (need(8), pos += 8);
    else if (wt === 5) (need(4), pos += 4);
    else if (wt === 2) {
      const n = varint();
      if (n > BigInt(bytes.length - pos)) throw new Error("truncated");
      pos += Number(n);
    } else if (wt === 3) {
      if (depth >= 64) throw new Error("too deep");
      for (;;) {
        const t = varint();
        if (t > 0xffffffffn || t >> 3n === 0n) throw new Error("bad tag");
        const f = Number(t >> 3n);
        const w = Number(t & 7n);
        if (w === 4) {
          if (f !== field) throw new Error("group mismatch");
          return;
        }
        skip(f, w, depth + 1);
      }
    } else throw new Error(`wire type ${wt}`);
  };
  const out: Record<string, unknown> = {};
  while (pos < bytes.length) {
    const t = varint();
    if (t > 0xffffffffn || t >> 3n === 0n) throw new Error("bad tag");
    const field = Number(t >> 3n);
    const wt = Number(t & 7n);
    const expected = TICK_WIRE[field];
    if (expected === undefined) {
      skip(field, wt, 0);
      continue;
    }
    if (wt !== expected) throw new Error("wrong wire type");
    const name = TICK_NAME[field];
    if (wt === 2) {
      const n = varint();
      if (n > BigInt(bytes.length - pos)) throw new Error("truncated");
      out[name] = STRICT_UTF8.decode(bytes.subarray(pos, pos + Number(n)));
      pos += Number(n);
    } else if (wt === 1) {
      need(8);
      out[name] = new DataView(bytes.buffer, bytes.byteOffset + pos, 8).getFloat64(0, true);
      pos += 8;
    } else {
      const v = varint();
      out[name] = field >= 8 ? Number(BigInt.asIntN(32, v)) : Number((v >> 1n) ^ -(v & 1n)); // zigzag
    }
  }
  return out as DecodedTick;
}

function tryDecodeTick(bytes: Uint8Array): DecodedTick | "error" {
  try {
    return decodeTick(bytes);
  } catch (e) {
    assert.ok(e instanceof ProtoError, `only ProtoError is thrown, got ${e}`);
    assert.match(e.message, /^[A-Z]/);
    return "error";
  }
}

function tryReference(bytes: Uint8Array): DecodedTick | "error" {
  try {
    return referenceTick(bytes);
  } catch {
    return "error";
  }
}

/** A random Tick message; `safe` keeps integers within 2^53 (for protobufjs comparisons). */
function randomTick(rand: () => number, safe: boolean): TickMessage {
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const i64 = () =>
    safe
      ? pick([0, 1, -1, int(1e6), -int(1e6), 2 ** 53 - 1, -(2 ** 53 - 1), 1_750_000_000_000])
      : pick([0, -1, 2 ** 53 + 2, -(2 ** 60), 2 ** 63, -(2 ** 63), 2 ** 62, int(1e15)]);
  const str = () => pick(["", "NMS", "USD", "日経", "📈x", "a\u0000b", "\"'\\", "x".repeat(200)]);
  const t: TickMessage = {
    id: pick(["AAPL", "BRK-B", "€/$ 📈", "", "O'Brien\";--", "X".repeat(300)]),
    price: pick([189.5, 0.0001, 1e308, -0, 0, NaN, Infinity, 5e-324, shortestFloat32(rand())]),
    time: i64(),
  };
  if (rand() < 0.5) t.dayVolume = i64();
  if (rand() < 0.5) t.lastSize = i64();
  if (rand() < 0.5) t.exchange = str();
  if (rand() < 0.5) t.currency = str();
  if (rand() < 0.5) t.quoteType = pick([0, 8, 41, -1, 2 ** 31 - 1, -(2 ** 31)]);
  if (rand() < 0.5) t.marketHours = pick([0, 1, 4, -7]);
  return t;
}

Deno.test("tick.proto declares the Tick of DESIGN (numbers, types, optional fields)", () => {
  const fields = TICK_PB.fieldsArray.map((
    f,
  ) => [f.id, f.name, f.type, f.options?.proto3_optional ?? false]);
  assert.deepStrictEqual(fields, [
    [1, "id", "string", false],
    [2, "price", "double", false],
    [3, "time", "sint64", false],
    [4, "dayVolume", "sint64", true],
    [5, "lastSize", "sint64", true],
    [6, "exchange", "string", false],
    [7, "currency", "string", false],
    [8, "quoteType", "int32", false],
    [9, "marketHours", "int32", false],
  ]);
});

Deno.test("tick: encodeTick writes the same bytes as protobufjs and decodes back", () => {
  const rand = prng(77);
  for (let i = 0; i < 3000; i++) {
    const t = randomTick(rand, true);
    const ours = encodeTick(t);
    const theirs = TICK_PB.encode(TICK_PB.fromObject(t)).finish();
    assert.deepStrictEqual([...ours], [...theirs], JSON.stringify(t));
    assert.deepStrictEqual(decodeTick(ours), t);
    assert.deepStrictEqual(referenceTick(ours), t);
  }
});

Deno.test("tick: round trip beyond 2^53 and at the int64 limits", () => {
  const rand = prng(78);
  for (let i = 0; i < 3000; i++) {
    const t = randomTick(rand, false);
    const bytes = encodeTick(t);
    const want = referenceTick(bytes);
    assert.deepStrictEqual(decodeTick(bytes), want);
    // int64 max (2^63 - 1) reads back as the double 2^63; everything else is exact.
    for (const k of ["time", "dayVolume", "lastSize"] as const) {
      if (t[k] !== undefined) assert.equal(want[k], t[k], k);
    }
  }
  assert.deepStrictEqual(
    [...encodeTick({ id: "A", price: 1, time: -(2 ** 63) })].slice(12),
    [0x18, ...new Array(9).fill(0xff), 0x01],
  );
});

Deno.test("tick: any valid encoding decodes like the reference (order, repeats, unknown fields, overlong varints)", () => {
  const rand = prng(79);
  const int = (n: number) => Math.floor(rand() * n);
  const varint = (n: bigint, pad: number): number[] => {
    const out: number[] = [];
    do {
      out.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    } while (n > 0n);
    // Overlong: trailing zero groups, up to 10 bytes in all.
    for (let k = 0; k < pad && out.length < 10; k++) out.push(0x80);
    out[out.length - 1] &= 0x7f;
    return out;
  };
  const tagOf = (f: number, w: number) => varint(BigInt(f * 8 + w), int(3) === 0 ? int(3) : 0);
  const field = (f: number): number[] => {
    const w = TICK_WIRE[f];
    if (w === 2) {
      const s = new TextEncoder().encode(["AAPL", "", "日経", "📈"][int(4)]);
      return [...tagOf(f, 2), ...varint(BigInt(s.length), int(2)), ...s];
    }
    if (w === 1) {
      return [...tagOf(f, 1), ...new Uint8Array(new Float64Array([rand() * 1000]).buffer)];
    }
    return [...tagOf(f, 0), ...varint(BigInt(int(2 ** 30)) * BigInt(int(2 ** 30)), int(3))];
  };
  const unknown = (depth = 0): number[] => {
    const f = 10 + int(3000);
    switch (depth < 3 ? int(5) : int(4)) {
      case 0:
        return [...tagOf(f, 0), ...varint(BigInt(int(1e9)), int(4))];
      case 1:
        return [...tagOf(f, 1), 1, 2, 3, 4, 5, 6, 7, 8];
      case 2:
        return [...tagOf(f, 2), 3, 0xff, 0x00, 0x80];
      case 3:
        return [...tagOf(f, 5), 9, 9, 9, 9];
      default:
        return [
          ...tagOf(f, 3),
          ...Array.from({ length: int(3) }, () => int(2) ? unknown(depth + 1) : field(1 + int(9)))
            .flat(),
          ...tagOf(f, 4),
        ];
    }
  };
  for (let i = 0; i < 3000; i++) {
    const parts: number[][] = [];
    for (let k = int(14); k > 0; k--) parts.push(int(3) === 0 ? unknown() : field(1 + int(9)));
    const bytes = new Uint8Array(parts.flat());
    const want = referenceTick(bytes);
    assert.deepStrictEqual(decodeTick(bytes), want, `case ${i}`);
    // (protobufjs is no oracle here: it misreads int32 varints of 6-9 bytes, which are valid.)
  }
});

Deno.test("tick: mutated and truncated encodings decode exactly when the reference does", () => {
  const rand = prng(80);
  const int = (n: number) => Math.floor(rand() * n);
  let errors = 0;
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    const good = encodeTick(randomTick(rand, i % 2 === 0));
    let b = [...good];
    for (let m = 1 + int(3); m > 0; m--) {
      const at = int(b.length + 1);
      switch (int(5)) {
        case 0:
          b.splice(at, 1);
          break;
        case 1:
          b.splice(at, 0, int(256));
          break;
        case 2:
          b[at % Math.max(1, b.length)] = int(256);
          break;
        case 3:
          b = b.slice(0, at);
          break;
        default: // a tricky tag byte: wire types 6/3/4, continuation, field 0, 7/3, 1/4
          b.splice(at, 0, [0x0e, 0x13, 0x14, 0xff, 0x80, 0x00, 0x3b, 0x0c][int(8)]);
      }
    }
    const bytes = new Uint8Array(b);
    const ours = tryDecodeTick(bytes);
    const want = tryReference(bytes);
    assert.deepStrictEqual(ours, want, `bytes ${b.map((x) => x.toString(16)).join(" ")}`);
    if (ours === "error") errors++;
    else decoded++;
  }
  assert.ok(errors > 5000 && decoded > 2000, `both outcomes exercised: ${errors}/${decoded}`);
});

Deno.test("tick: malformed input is a typed ProtoError naming the problem", () => {
  const cases: Array<[number[], ProtoErrorCode, RegExp]> = [
    [[0x10, 0x01], "wire_type", /field 2 \(price\)/],
    [[0x0d, 1, 2, 3, 4], "wire_type", /field 1 \(id\)/],
    [[0x0a, 0x05, 0x41], "truncated", /Truncated/],
    [[0x11, 1, 2], "truncated", /double/],
    [[0x18, 0xff], "truncated", /varint/],
    [[0x18, ...new Array(9).fill(0xff), 0x02], "varint", /overflows/],
    [[0x00, 0x01], "field_number", /field number 0/],
    [[0x0a, 0x02, 0xff, 0xfe], "utf8", /UTF-8.*id/],
    [[0x32, 0x02, 0xc3, 0x28], "utf8", /UTF-8.*exchange/],
    [[0x3a, 0x03, 0xed, 0xa0, 0x80], "utf8", /UTF-8.*currency/], // a UTF-8-encoded surrogate
    [[0x54], "wire_type", /end-group/],
    [[0x53, 0x08, 0x01], "truncated", /group/],
    [[0x53, 0x5c], "group", /does not match/],
    [[0x56], "wire_type", /wire type 6/],
    [[0xff, 0xff, 0xff, 0xff, 0x7f], "field_number", /Invalid field number/],
  ];
  for (const [bytes, code, re] of cases) {
    assert.throws(() => decodeTick(new Uint8Array(bytes)), (e: unknown) => {
      assert.ok(e instanceof ProtoError);
      assert.equal(e.code, code, `${bytes}: ${e.message}`);
      assert.match(e.message, re);
      return true;
    });
  }
  // Groups nest up to 64 levels.
  const nest = (n: number) => [...new Array(n).fill(0x53), ...new Array(n).fill(0x54)];
  assert.deepStrictEqual(decodeTick(new Uint8Array(nest(64))), {});
  assert.throws(() => decodeTick(new Uint8Array(nest(65))), /nested deeper than 64/);
  // scanTick never throws and reports the same error.
  const s = new TickScan();
  assert.equal(scanTick(new Uint8Array([0x10, 0x01]), s), false);
  assert.match(s.error, /^Wrong wire type 0 for field 2/);
  assert.equal(scanTick(encodeTick({ id: "A", price: 1, time: 2 }), s), true);
  assert.equal(s.error, "");
});

Deno.test("tick: encodeTick rejects values the schema cannot hold, naming the value", () => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ price: 1, time: 1 }, /Field id must be a well-formed string, got undefined/],
    [{ id: "\ud800", price: 1, time: 1 }, /Field id must be a well-formed string/],
    [{ id: 5, price: 1, time: 1 }, /Field id .* got 5/],
    [{ id: "A", price: "1", time: 1 }, /Field price must be a number, got "1"/],
    [{ id: "A", price: 1, time: 1.5 }, /Field time must be an integer in the int64 range, got 1.5/],
    [{ id: "A", price: 1, time: 2 ** 64 }, /Field time/],
    [{ id: "A", price: 1, time: 1, dayVolume: NaN }, /Field dayVolume .* NaN/],
    [{ id: "A", price: 1, time: 1, quoteType: 2 ** 31 }, /Field quoteType must be an int32/],
    [{ id: "A", price: 1, time: 1, exchange: 7 }, /Field exchange/],
  ];
  for (const [t, re] of bad) {
    assert.throws(() => encodeTick(t as unknown as TickMessage), (e: unknown) => {
      assert.ok(e instanceof ProtoError && e.code === "value");
      assert.match(e.message, re);
      return true;
    });
  }
});

Deno.test("tick: encodeTickValue gives the value bytes and the tp-format header", () => {
  const q: PricingData = {
    id: "AAPL",
    price: 189.5,
    time: 1_750_000_000_000,
    dayVolume: 5,
    exchange: "NMS",
    shortName: "Apple",
  };
  const json = encodeTickValue(q, "json");
  assert.equal(json.format, "json");
  assert.deepStrictEqual(JSON.parse(new TextDecoder().decode(json.value)), q);
  const bin = encodeTickValue(q, "tick-v1");
  assert.equal(bin.format, "tick-v1");
  assert.deepStrictEqual(decodeTick(bin.value), {
    id: "AAPL",
    price: 189.5,
    time: 1_750_000_000_000,
    dayVolume: 5,
    exchange: "NMS",
  });
  assert.ok(
    bin.value.length < json.value.length / 2,
    `${bin.value.length} vs ${json.value.length}`,
  );
  assert.throws(() => encodeTickValue(q, "xml" as ValueFormat), /Unknown value format "xml"/);
  assert.equal(FORMAT_HEADER, "tp-format");
});
