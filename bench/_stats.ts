/**
 * Pure statistics for the benchmark harness: median, min/max, nearest-rank percentiles, paired
 * ratios against a baseline, target checks and number formatting. No I/O.
 * @module
 */

/** Raised for input the statistics cannot summarize (empty or non-finite samples). */
export class BenchStatsError extends Error {
  /** Creates the error; the message names the bad value. */
  constructor(message: string) {
    super(message);
    this.name = "BenchStatsError";
  }
}

/** Median and range of a set of samples. */
export interface Summary {
  /** Median (mean of the two middle samples for an even count). */
  median: number;
  /** Smallest sample. */
  min: number;
  /** Largest sample. */
  max: number;
  /** Number of samples. */
  n: number;
  /** The samples, in measurement order. */
  samples: number[];
}

/** A target a figure is checked against. */
export interface Target {
  /** `>=`: the figure must be at least `value`; `<=`: at most `value`. */
  op: ">=" | "<=";
  /** Threshold. */
  value: number;
  /** What is compared: the ratio to the baseline, or the measured value itself. */
  on: "ratio" | "value";
}

function check(values: readonly number[], what: string): void {
  if (values.length === 0) throw new BenchStatsError(`Cannot compute the ${what} of no samples`);
  for (const v of values) {
    if (typeof v !== "number" || Number.isNaN(v)) {
      throw new BenchStatsError(`Sample ${String(v)} is not a number (${what})`);
    }
  }
}

function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** Median of `values` (mean of the two middle values for an even count); throws when empty. */
export function median(values: readonly number[]): number {
  check(values, "median");
  const s = sorted(values);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Smallest of `values`; throws when empty. */
export function min(values: readonly number[]): number {
  check(values, "min");
  let m = values[0];
  for (const v of values) if (v < m) m = v;
  return m;
}

/** Largest of `values`; throws when empty. */
export function max(values: readonly number[]): number {
  check(values, "max");
  let m = values[0];
  for (const v of values) if (v > m) m = v;
  return m;
}

/** Nearest-rank percentile (common/stats.ts: the project's one definition). */
export { percentile } from "../common/stats.ts";

/** Median, min, max and count of `values`; throws when empty. */
export function summarize(values: readonly number[]): Summary {
  return {
    median: median(values),
    min: min(values),
    max: max(values),
    n: values.length,
    samples: [...values],
  };
}

/** `ours / baseline`; throws when the baseline is zero or either value is not finite. */
export function ratio(ours: number, baseline: number): number {
  if (!Number.isFinite(ours) || !Number.isFinite(baseline)) {
    throw new BenchStatsError(`Cannot take the ratio of ${ours} to ${baseline}`);
  }
  if (baseline === 0) {
    throw new BenchStatsError(`Cannot take the ratio of ${ours} to a zero baseline`);
  }
  return ours / baseline;
}

/**
 * Ratios of paired runs (`ours[i] / baseline[i]`, the runs of one pair measured back to back),
 * summarized. Pairing cancels slow drift of the machine better than a ratio of medians.
 * Throws when the arrays differ in length or are empty.
 */
export function pairedRatio(ours: readonly number[], baseline: readonly number[]): Summary {
  if (ours.length !== baseline.length) {
    throw new BenchStatsError(
      `Cannot pair ${ours.length} runs of ours with ${baseline.length} baseline runs`,
    );
  }
  return summarize(ours.map((o, i) => ratio(o, baseline[i])));
}

/** Throughput in units per second: `count` units in `ms` milliseconds. */
export function perSecond(count: number, ms: number): number {
  if (!(ms > 0)) throw new BenchStatsError(`Duration ${ms} ms must be positive`);
  return (count * 1000) / ms;
}

/** Whether `value` meets `target` (ties meet it). */
export function meets(value: number, target: Target): boolean {
  return target.op === ">=" ? value >= target.value : value <= target.value;
}

/** Human-readable target, e.g. "ratio ≥ 0.7" or "≤ 150 MB". */
export function formatTarget(target: Target, unit = ""): string {
  const op = target.op === ">=" ? "≥" : "≤";
  return target.on === "ratio"
    ? `ratio ${op} ${target.value}`
    : `${op} ${formatNumber(target.value)}${unit ? " " + unit : ""}`;
}

/** Compact number: 3 significant digits with k/M/G suffixes for large values. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const a = Math.abs(value);
  const sig = (v: number) => {
    const s = Number(v.toPrecision(3));
    return String(s);
  };
  if (a >= 1e9) return `${sig(value / 1e9)}G`;
  if (a >= 1e6) return `${sig(value / 1e6)}M`;
  if (a >= 1e4) return `${sig(value / 1e3)}k`;
  if (a >= 100) return String(Math.round(value));
  return sig(value);
}

/** "median (min–max)" of a summary, formatted. */
export function formatSummary(s: Summary): string {
  if (s.n === 1 || s.min === s.max) return formatNumber(s.median);
  return `${formatNumber(s.median)} (${formatNumber(s.min)}–${formatNumber(s.max)})`;
}
