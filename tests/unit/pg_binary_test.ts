// common/pg_binary.ts without a server: the exact bytes of each array kind (PostgreSQL's
// array_send layout), and the values that cannot be sent exactly refused with the value named.
// The round trip through a real server is in tests/sink_test.ts.
import assert from "node:assert/strict";
import * as bin from "../../common/pg_binary.ts";

/** Big-endian reader of an array's header and elements. */
function parse(b: Uint8Array): { hasNulls: number; oid: number; elements: (Uint8Array | null)[] } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  assert.equal(v.getInt32(0), 1, "one dimension");
  const n = v.getInt32(12);
  assert.equal(v.getInt32(16), 1, "lower bound 1");
  const elements: (Uint8Array | null)[] = [];
  let at = 20;
  for (let i = 0; i < n; i++) {
    const len = v.getInt32(at);
    at += 4;
    if (len === -1) elements.push(null);
    else {
      elements.push(b.subarray(at, at + len));
      at += len;
    }
  }
  assert.equal(at, b.byteLength, "no trailing bytes");
  return { hasNulls: v.getInt32(4), oid: v.getInt32(8), elements };
}

const be = (e: Uint8Array | null) => new DataView(e!.buffer, e!.byteOffset, e!.byteLength);

Deno.test("pg_binary: float8 arrays carry the IEEE 754 bytes, NULLs flagged", () => {
  const xs = [0, -0, NaN, Infinity, -Infinity, 5e-324, 0.1, null];
  const p = parse(bin.float8Array(xs.length, (i) => xs[i]));
  assert.equal(p.oid, bin.ELEMENT_OID.float8);
  assert.equal(p.hasNulls, 1);
  xs.forEach((x, i) => {
    if (x === null) assert.equal(p.elements[i], null);
    else assert.ok(Object.is(be(p.elements[i]).getFloat64(0), x), `element ${i}`);
  });
  assert.equal(parse(bin.float8Array(2, () => 1)).hasNulls, 0);
});

Deno.test("pg_binary: int8, int4 and timestamptz elements are exact two's complement", () => {
  const r = (() => {
    let a = 7;
    return () => ((a = (a * 1103515245 + 12345) % 2147483648) / 2147483648);
  })();
  const xs = [0, -1, 2 ** 32, -(2 ** 32) - 1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
  for (let i = 0; i < 500; i++) xs.push(Math.floor((r() - 0.5) * 2 * Number.MAX_SAFE_INTEGER));
  const p = parse(bin.int8Array(xs.length, (i) => xs[i]));
  assert.equal(p.oid, bin.ELEMENT_OID.int8);
  xs.forEach((x, i) => assert.equal(be(p.elements[i]).getBigInt64(0), BigInt(x), `int8 ${x}`));
  const ys = [0, -1, 2147483647, -2147483648];
  const q = parse(bin.int4Array(ys.length, (i) => ys[i]));
  assert.equal(q.oid, bin.ELEMENT_OID.int4);
  ys.forEach((y, i) => assert.equal(be(q.elements[i]).getInt32(0), y));
  // µs since 2000-01-01, exact on both sides of 2^53 µs.
  const ms = [0, 946_684_800_000, -1, 8_000_000_000_000_001, -8_000_000_000_000_001];
  const t = parse(bin.timestamptzArray(ms.length, (i) => ms[i]));
  assert.equal(t.oid, bin.ELEMENT_OID.timestamptz);
  ms.forEach((m, i) =>
    assert.equal(be(t.elements[i]).getBigInt64(0), (BigInt(m) - 946_684_800_000n) * 1000n, `${m}`)
  );
});

Deno.test("pg_binary: text is UTF-8, booleans one byte, empty arrays valid", () => {
  const ss = ["", "é", "\u{1F600}", 'a"b\\c', null];
  const p = parse(bin.textArray(ss.length, (i) => ss[i]));
  assert.equal(p.oid, bin.ELEMENT_OID.text);
  assert.equal(p.hasNulls, 1);
  assert.deepEqual(
    p.elements.map((e) => e === null ? null : new TextDecoder().decode(e)),
    ss,
  );
  // Long strings grow the buffer.
  const long = "x".repeat(100_000);
  assert.equal(new TextDecoder().decode(parse(bin.textArray(1, () => long)).elements[0]!), long);
  const b = parse(bin.boolArray(3, (i) => i !== 1));
  assert.deepEqual(b.elements.map((e) => [...e!]), [[1], [0], [1]]);
  assert.equal(parse(bin.int8Array(0, () => 0)).elements.length, 0);
});

Deno.test("pg_binary: values that cannot be sent exactly throw BinaryArrayError naming them", () => {
  const cases: [() => unknown, RegExp][] = [
    [
      () => bin.int8Array(2, (i) => [1, 2.5][i]),
      /bigint\[\] element 1 is 2\.5: expected an integer/,
    ],
    [() => bin.int8Array(1, () => NaN), /element 0 is NaN/],
    [() => bin.int8Array(1, () => 2 ** 53), /element 0 is 9007199254740992/],
    [() => bin.int4Array(1, () => 2 ** 31), /int\[\] element 0 is 2147483648: expected a 32-bit/],
    [() => bin.timestamptzArray(1, () => 1.5), /timestamptz\[\] \(epoch ms\) element 0 is 1\.5/],
  ];
  for (const [f, re] of cases) {
    assert.throws(f, (e) => e instanceof bin.BinaryArrayError && re.test(e.message));
  }
});
