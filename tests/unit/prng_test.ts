import assert from "node:assert/strict";
import { mulberry32 } from "../../common/prng.ts";

const M = 1n << 32n;

/** mulberry32 in BigInt arithmetic modulo 2^32: no int32/uint32 conversions to get wrong. */
function oracle(seed: number): () => number {
  let a = BigInt(seed >>> 0);
  const imul = (x: bigint, y: bigint) => (x * y) % M;
  return () => {
    a = (a + 0x6d2b79f5n) % M;
    let t = imul(a ^ (a >> 15n), a | 1n);
    t = t ^ ((t + imul(t ^ (t >> 7n), t | 61n)) % M);
    return Number(t ^ (t >> 14n)) / 2 ** 32;
  };
}

Deno.test("mulberry32: the same sequence as modular arithmetic, for edge and random seeds", () => {
  const seeds = [0, 1, 42, 0x7fffffff, 0x80000000, 0xffffffff, -1, 2 ** 32 + 5];
  for (let i = 0; i < 200; i++) seeds.push(Math.floor(Math.random() * 2 ** 32));
  for (const seed of seeds) {
    const got = mulberry32(seed);
    const want = oracle(seed);
    for (let i = 0; i < 500; i++) {
      const g = got();
      assert.equal(g, want(), `seed ${seed}, draw ${i}`);
      assert.ok(g >= 0 && g < 1, `seed ${seed}, draw ${i}: ${g} is outside [0, 1)`);
    }
  }
});

Deno.test("mulberry32: seeded, not shared; seeds give different sequences", () => {
  const a = mulberry32(7), b = mulberry32(7), c = mulberry32(8);
  const xs = Array.from({ length: 100 }, () => a());
  assert.deepEqual(Array.from({ length: 100 }, () => b()), xs);
  assert.notDeepEqual(Array.from({ length: 100 }, () => c()), xs);
  assert.ok(new Set(xs).size > 95, "draws repeat far more than a 32-bit generator should");
});
