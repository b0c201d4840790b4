import assert from "node:assert/strict";
import protobuf from "protobufjs";
import { decode, encode, type PricingData, ProtoError, shortestFloat32 } from "../../proto/mod.ts";

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

/** Seeded PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
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
