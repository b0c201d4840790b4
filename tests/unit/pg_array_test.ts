// common/pg_array.ts against a small parser of PostgreSQL's array literal syntax (the exact
// round trip through the real server is in tests/sink_test.ts).
import assert from "node:assert/strict";
import {
  boolArray,
  floatArray,
  floatText,
  integerArray,
  integerText,
  quoteElement,
  textArray,
} from "../../common/pg_array.ts";
import { mulberry32 as rng } from "../../common/prng.ts";

/** Parses a one-dimensional array literal: quoted elements with \ escapes, or bare tokens. */
function parse(literal: string): (string | null)[] {
  assert.equal(literal[0], "{");
  assert.equal(literal[literal.length - 1], "}");
  const out: (string | null)[] = [];
  let i = 1;
  if (literal === "{}") return out;
  for (;;) {
    if (literal[i] === '"') {
      let s = "";
      i++;
      while (literal[i] !== '"') {
        if (literal[i] === "\\") i++;
        assert.ok(i < literal.length, "unterminated element");
        s += literal[i++];
      }
      i++;
      out.push(s);
    } else {
      let j = i;
      while (literal[j] !== "," && literal[j] !== "}") j++;
      const token = literal.slice(i, j);
      assert.ok(!/["\\{ ]/.test(token), `bare token ${token}`);
      out.push(token === "NULL" ? null : token);
      i = j;
    }
    if (literal[i] === "}") break;
    assert.equal(literal[i], ",");
    i++;
  }
  assert.equal(i, literal.length - 1);
  return out;
}

const ALPHABET = ['"', "\\", ",", "{", "}", " ", "\n", "NULL", "", "a", "é", "📈", "'", "\\\\"];

Deno.test("pg_array: text arrays parse back to the same strings (NULL, quotes, escapes)", () => {
  const r = rng(1);
  for (let n = 0; n < 300; n++) {
    const values: (string | null)[] = [];
    const len = Math.floor(r() * 8);
    for (let k = 0; k < len; k++) {
      if (r() < 0.1) values.push(null);
      else {
        let s = "";
        for (let m = Math.floor(r() * 6); m > 0; m--) {
          s += ALPHABET[Math.floor(r() * ALPHABET.length)];
        }
        values.push(s);
      }
    }
    assert.deepEqual(parse(textArray(values.length, (i) => values[i])), values);
  }
  assert.equal(quoteElement("NULL"), '"NULL"');
  assert.equal(quoteElement(""), '""');
  assert.equal(quoteElement('a"b\\c'), '"a\\"b\\\\c"');
});

Deno.test("pg_array: floats print in a form that parses back to the same double", () => {
  const r = rng(2);
  const dv = new DataView(new ArrayBuffer(8));
  const xs = [0, -0, 5e-324, -1.7976931348623157e308, Infinity, -Infinity, NaN, 0.1, 1e21];
  for (let k = 0; k < 20_000; k++) {
    dv.setUint32(0, Math.floor(r() * 2 ** 32));
    dv.setUint32(4, Math.floor(r() * 2 ** 32));
    xs.push(dv.getFloat64(0));
  }
  const parsed = parse(floatArray(xs.length, (i) => xs[i]));
  for (let i = 0; i < xs.length; i++) {
    assert.ok(Object.is(Number(parsed[i]), xs[i]), `${xs[i]} printed as ${parsed[i]}`);
  }
  assert.equal(floatText(-0), "-0");
  assert.deepEqual(parse(floatArray(2, (i) => i === 0 ? null : 1.5)), [null, "1.5"]);
});

Deno.test("pg_array: integers print every digit (numbers past int32 and bigints)", () => {
  const r = rng(3);
  for (let k = 0; k < 50_000; k++) {
    const x = Math.floor(r() * 2 ** Math.floor(r() * 54)) * (r() < 0.2 ? -1 : 1);
    assert.equal(integerText(x), BigInt(x).toString(), String(x));
  }
  for (const x of [2 ** 31, 2 ** 31 - 1, 1e8, 1e8 + 1, 1e15 + 7, Number.MAX_SAFE_INTEGER]) {
    assert.equal(integerText(x), BigInt(x).toString());
  }
  assert.equal(integerText(2n ** 63n - 1n), "9223372036854775807");
  assert.equal(integerText(1.5), "1.5", "a fraction is left for PostgreSQL to refuse");
  assert.deepEqual(parse(integerArray(3, (i) => [1, null, -(2n ** 63n)][i])), [
    "1",
    null,
    "-9223372036854775808",
  ]);
  assert.deepEqual(parse(boolArray(2, (i) => i === 0)), ["t", "f"]);
});
