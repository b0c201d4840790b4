// Shortest decimal rendering of float32 values (what numpy/protobuf-JSON print for a float).

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

const POW10: number[] = [];
for (let i = 0; i <= 22; i++) POW10.push(Number("1e" + i));

// Direct-mapped cache keyed by float32 bits: streams repeat the same prices (dayHigh, dayLow,
// openPrice, previousClose...) on every tick, so most lookups hit. NaN bits are never cached,
// so a NaN key marks an empty slot.
const CACHE_BITS = 12;
const CACHE_MASK = (1 << CACHE_BITS) - 1;
const EMPTY = 0x7fc00001;
const cacheKey = new Uint32Array(1 << CACHE_BITS).fill(EMPTY);
const cacheValue = new Float64Array(1 << CACHE_BITS);

function roundTrips(ax: number, p: number): number {
  const v = Number(ax.toPrecision(p));
  return Math.fround(v) === ax ? v : NaN;
}

/** Slow path: nearest p-digit decimal (toPrecision is correctly rounded) for the least p. */
function byPrecision(ax: number, bits: number): number {
  let best = NaN;
  if ((bits & 0x7fffff) === 0) {
    // Powers of two have an asymmetric rounding interval, so "p digits round-trip" is not
    // monotonic in p there: search linearly.
    for (let p = 1; p <= 9 && best !== best; p++) best = roundTrips(ax, p);
    return best;
  }
  // Symmetric interval: if p digits round-trip so do p+1, so binary search over 1..9.
  let lo = 1;
  let hi = 9;
  best = roundTrips(ax, 9);
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const v = roundTrips(ax, mid);
    if (v === v) {
      best = v;
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return best;
}

/**
 * Fast path for 0.001 <= ax < 2^31: find the first digit count whose decimal grid hits the
 * float32 rounding interval [lo, hi], using only exact double arithmetic (lo/hi are dyadic with
 * <= 26 significant bits, scaled by 10^m with m <= 11 or compared with n*10^k < 2^53).
 * Returns NaN when the result would not round-trip (double-rounding corner), to fall back.
 */
function byInterval(ax: number, bits: number): number {
  const e8 = (bits >>> 23) & 0xff;
  const half = 2 ** (e8 - 151); // half an ulp
  const lo = ax - ((bits & 0x7fffff) === 0 ? half / 2 : half);
  const hi = ax + half;
  const incl = (bits & 1) === 0; // ties-to-even: midpoints round to an even mantissa
  let e = Math.floor(Math.log10(ax));
  if (e >= 0 ? POW10[e] > ax : 1 / POW10[-e] > ax) e--;
  else if (e + 1 >= 0 ? POW10[e + 1] <= ax : 1 / POW10[-e - 1] <= ax) e++;
  for (let k = e; k >= e - 9; k--) {
    let nMin: number, nMax: number, c: number, s: number;
    if (k < 0) {
      s = POW10[-k];
      const l = lo * s;
      const h = hi * s;
      nMin = Math.ceil(l);
      if (!incl && nMin === l) nMin++;
      nMax = Math.floor(h);
      if (!incl && nMax === h) nMax--;
      if (nMin > nMax) continue;
      c = Math.round(ax * s);
      const v = (c < nMin ? nMin : c > nMax ? nMax : c) / s;
      return Math.fround(v) === ax ? v : NaN;
    }
    s = POW10[k];
    nMin = Math.ceil(lo / s);
    if (nMin * s < lo || (!incl && nMin * s === lo)) nMin++;
    else if ((nMin - 1) * s > lo || (incl && (nMin - 1) * s === lo)) nMin--;
    nMax = Math.floor(hi / s);
    if (nMax * s > hi || (!incl && nMax * s === hi)) nMax--;
    else if ((nMax + 1) * s < hi || (incl && (nMax + 1) * s === hi)) nMax++;
    if (nMin > nMax) continue;
    c = Math.round(ax / s);
    const v = (c < nMin ? nMin : c > nMax ? nMax : c) * s;
    return Math.fround(v) === ax ? v : NaN;
  }
  return NaN;
}

/** Shortest decimal (as a JS number) that rounds to the same float32 as `Math.fround(x)`. */
export function shortestFloat32(x: number): number {
  F32[0] = x;
  x = F32[0];
  const bits = U32[0];
  const slot = (bits ^ (bits >>> 12) ^ (bits >>> 24)) & CACHE_MASK;
  if (cacheKey[slot] === bits) return cacheValue[slot];
  if (x !== x || x === Infinity || x === -Infinity || x === 0) return x;
  const ax = x < 0 ? -x : x;
  const abits = bits & 0x7fffffff;
  let v = ax >= 0.001 && ax < 2147483648 ? byInterval(ax, abits) : NaN;
  if (v !== v) v = byPrecision(ax, abits);
  if (x < 0) v = -v;
  cacheKey[slot] = bits;
  cacheValue[slot] = v;
  return v;
}
