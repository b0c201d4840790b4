/**
 * The one percentile of the project (nearest rank), for ingest's progress line and the
 * benchmarks. Pure.
 * @module
 */

/** Raised for samples a statistic cannot summarize (none, or not numbers) or a bad rank. */
export class StatsError extends Error {
  /** Creates the error; the message names the bad value. */
  constructor(message: string) {
    super(message);
    this.name = "StatsError";
  }
}

/**
 * Nearest-rank percentile: the smallest sample such that at least `p`% of the samples are <= it
 * (`p` in [0, 100]; p = 0 gives the minimum). Throws StatsError when `values` is empty or holds
 * NaN, or when `p` is out of range.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new StatsError("Cannot compute the percentile of no samples");
  for (const v of values) {
    if (typeof v !== "number" || Number.isNaN(v)) {
      throw new StatsError(`Sample ${String(v)} is not a number (percentile)`);
    }
  }
  if (!(p >= 0 && p <= 100)) throw new StatsError(`Percentile ${p} is not within [0, 100]`);
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1];
}
