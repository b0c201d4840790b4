/**
 * A seeded pseudo-random number generator (mulberry32) for reproducible data: the simulator's
 * feed, the bench's inputs and the tests' randomized checks. Not for anything secret.
 * @module
 */

/** A mulberry32 generator seeded with `seed` (taken as an unsigned 32-bit integer); floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
