// The project's one percentile (common/stats.ts): nearest rank, as the benchmarks define it, and
// what ingest's progress line uses.
import assert from "node:assert/strict";
import { percentile, StatsError } from "../../common/stats.ts";
import { percentile as benchPercentile } from "../../bench/_stats.ts";

Deno.test("percentile: nearest rank on fixed samples", () => {
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 1..100, reversed
  assert.equal(percentile(xs, 50), 50);
  assert.equal(percentile(xs, 99), 99);
  assert.equal(percentile(xs, 100), 100);
  assert.equal(percentile(xs, 0), 1);
  assert.equal(percentile(xs, 0.5), 1);
  assert.equal(percentile([10, 20, 30], 50), 20);
  assert.equal(percentile([10, 20, 30, 40], 50), 20);
  assert.equal(percentile([10, 20, 30, 40], 51), 30);
  assert.equal(percentile([42], 99), 42);
});

Deno.test("percentile: equals the definition (smallest x with >= p% of samples <= x), randomized", () => {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let run = 0; run < 500; run++) {
    const n = 1 + Math.floor(rnd() * 40);
    const xs = Array.from({ length: n }, () => Math.round(rnd() * 50) - 10);
    const p = run % 7 === 0 ? Math.round(rnd() * 100) : rnd() * 100;
    // Oracle: scan the distinct sample values in increasing order.
    const want = [...new Set(xs)].sort((a, b) => a - b).find((x) =>
      xs.filter((y) => y <= x).length * 100 >= p * n
    );
    assert.equal(percentile(xs, p), want, `p=${p} xs=${xs}`);
  }
});

Deno.test("percentile: no samples, NaN samples or p outside [0, 100] throw StatsError", () => {
  assert.throws(
    () => percentile([], 50),
    (e) => e instanceof StatsError && /no samples/.test(e.message),
  );
  assert.throws(() => percentile([1, NaN], 50), /NaN/);
  assert.throws(
    () => percentile([1], 101),
    (e) => e instanceof StatsError && /101/.test(e.message),
  );
  assert.throws(() => percentile([1], -1), StatsError);
  assert.throws(() => percentile([1], NaN), StatsError);
});

Deno.test("percentile: the benchmarks use the same function", () => {
  assert.equal(benchPercentile, percentile);
});

Deno.test("percentile: ingest's progress line reports the p50 batch latency", async () => {
  const { progressLine } = await import("../../ingest/ingest.ts");
  const stats = {
    frames: 0,
    ticks: 0,
    ignored: 0,
    ticksProduced: 0,
    dlq: {},
    reconnects: 0,
    dropped: 0,
    memory: 0,
    spooled: 0,
    spoolBytes: 0,
    sendFailures: 0,
  } as Parameters<typeof progressLine>[0];
  const line = progressLine(stats, stats, { elapsedMs: 1000, latencies: [9, 1, 5, 3] });
  assert.match(line, /batch_p50=3\.0ms batch_max=9\.0ms/);
  assert.match(progressLine(stats, stats, { elapsedMs: 1000, latencies: [] }), /batch_p50=- /);
});
