import assert from "node:assert/strict";
import {
  BenchStatsError,
  formatNumber,
  formatSummary,
  formatTarget,
  max,
  median,
  meets,
  min,
  pairedRatio,
  perSecond,
  ratio,
  summarize,
} from "../../bench/_stats.ts";
import { interleave, rowOf } from "../../bench/_suite.ts";

Deno.test("median of odd and even counts, independent of order", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.equal(median([5, 5, 1, 9, 9]), 5);
});

Deno.test("median does not reorder its input", () => {
  const xs = [3, 1, 2];
  median(xs);
  assert.deepEqual(xs, [3, 1, 2]);
});

Deno.test("min and max", () => {
  assert.equal(min([3, -1, 2]), -1);
  assert.equal(max([3, -1, 2]), 3);
  assert.equal(min([Infinity, 5]), 5);
});

Deno.test("empty or NaN samples throw BenchStatsError naming the statistic", () => {
  assert.throws(() => median([]), (e) => e instanceof BenchStatsError && /median/.test(e.message));
  assert.throws(() => min([]), BenchStatsError);
  assert.throws(() => max([]), BenchStatsError);
  assert.throws(() => median([1, NaN]), /NaN/);
});

Deno.test("summarize keeps the samples in order", () => {
  const s = summarize([3, 1, 2, 10]);
  assert.deepEqual(s, { median: 2.5, min: 1, max: 10, n: 4, samples: [3, 1, 2, 10] });
});

Deno.test("ratio and its errors", () => {
  assert.equal(ratio(3, 4), 0.75);
  assert.throws(() => ratio(1, 0), /zero baseline/);
  assert.throws(() => ratio(NaN, 1), BenchStatsError);
  assert.throws(() => ratio(1, Infinity), BenchStatsError);
});

Deno.test("pairedRatio pairs runs by index", () => {
  const r = pairedRatio([10, 20, 30], [20, 20, 20]);
  assert.deepEqual(r.samples, [0.5, 1, 1.5]);
  assert.equal(r.median, 1);
  assert.equal(r.min, 0.5);
  assert.equal(r.max, 1.5);
  // Differs from the ratio of medians when runs drift together.
  const drift = pairedRatio([1, 2, 4], [2, 4, 8]);
  assert.equal(drift.median, 0.5);
  assert.equal(drift.max, 0.5);
  assert.throws(() => pairedRatio([1], [1, 2]), /pair 1 runs/);
});

Deno.test("perSecond", () => {
  assert.equal(perSecond(1_000_000, 250), 4_000_000);
  assert.throws(() => perSecond(1, 0), /positive/);
});

Deno.test("meets: ties meet, both directions", () => {
  assert.equal(meets(0.7, { op: ">=", value: 0.7, on: "ratio" }), true);
  assert.equal(meets(0.69, { op: ">=", value: 0.7, on: "ratio" }), false);
  assert.equal(meets(2.5, { op: "<=", value: 2.5, on: "value" }), true);
  assert.equal(meets(2.6, { op: "<=", value: 2.5, on: "value" }), false);
});

Deno.test("formatting", () => {
  assert.equal(formatNumber(2_345_678), "2.35M");
  assert.equal(formatNumber(12_345), "12.3k");
  assert.equal(formatNumber(1234), "1234");
  assert.equal(formatNumber(0.7512), "0.751");
  assert.equal(formatNumber(3e9), "3G");
  assert.equal(formatSummary(summarize([1, 2, 3])), "2 (1–3)");
  assert.equal(formatSummary(summarize([5, 5])), "5");
  assert.equal(formatTarget({ op: ">=", value: 0.7, on: "ratio" }), "ratio ≥ 0.7");
  assert.equal(formatTarget({ op: "<=", value: 150, on: "value" }, "MB"), "≤ 150 MB");
});

Deno.test("rowOf: paired ratio, lower-is-better inversion and target check", () => {
  const up = rowOf({
    suite: "s",
    metric: "m",
    unit: "ticks/s",
    ours: [70, 80, 90],
    baseline: [100, 100, 100],
    target: { op: ">=", value: 0.8, on: "ratio" },
  });
  assert.equal(up.ratio?.median, 0.8);
  assert.equal(up.met, true);
  const down = rowOf({
    suite: "s",
    metric: "m",
    unit: "MB",
    ours: [200, 200, 200],
    baseline: [100, 100, 100],
    lowerIsBetter: true,
    target: { op: "<=", value: 150, on: "value" },
  });
  assert.equal(down.ratio?.median, 0.5);
  assert.equal(down.met, false);
  const noBaseline = rowOf({
    suite: "s",
    metric: "m",
    unit: "x",
    ours: [1, 2, 3],
    target: { op: ">=", value: 0.5, on: "ratio" },
  });
  assert.equal(noBaseline.met, false); // a ratio target without a baseline cannot be met
});

Deno.test("interleave: warm-up, then ABBA order, samples paired by run", async () => {
  const calls: string[] = [];
  const r = await interleave((i) => {
    calls.push(`o${i}`);
    return i + 10;
  }, (i) => {
    calls.push(`b${i}`);
    return i + 20;
  }, { runs: 4 });
  assert.deepEqual(calls, ["o-1", "b-1", "o0", "b0", "b1", "o1", "o2", "b2", "b3", "o3"]);
  assert.deepEqual(r.ours, [10, 11, 12, 13]);
  assert.deepEqual(r.baseline, [20, 21, 22, 23]);
});
