// The sink's check of window rows before they are sent as binary arrays (windowRowProblem):
// random rows, valid or with one field given a value it must refuse; the check must name that field.
import assert from "node:assert/strict";
import { WINDOW_FLOATS, WINDOW_INTEGERS, windowRowProblem } from "../../aggregate/sink.ts";
import type { WindowRow } from "../../aggregate/engine.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

function validRow(r: () => number): WindowRow {
  const windowStart = Math.floor(r() * 2e12);
  return {
    symbol: `S${Math.floor(r() * 1000)}`,
    windowMs: 60_000,
    windowStart,
    windowEnd: windowStart + 60_000,
    count: 1 + Math.floor(r() * 100),
    sum: r() * 1e4,
    avg: r() * 100,
    open: r() * 100,
    high: r() * 100,
    low: -r() * 100,
    close: r() * 100,
    firstEventTime: windowStart + 1,
    lastEventTime: windowStart + 2,
    partition: Math.floor(r() * 2147483648),
    lastOffset: Math.floor(r() * 2 ** 53),
    isFinal: r() < 0.5,
    volume: r() < 0.3 ? 0 : r() * 1e6,
    pvSum: r() * 1e8,
    vwap: r() < 0.3 ? null : r() * 100,
  };
}

Deno.test("window rows: the sink's check refuses exactly the rows with a bad field, naming it", () => {
  const r = prng(11);
  const badInts = [2.5, NaN, Infinity, -Infinity, 2 ** 60, -(2 ** 53), "1", null, undefined];
  const badFloats = ["1.5", null, undefined, 10n, {}];
  // The sink's field lists cover every number of a row but partition and vwap (checked apart).
  const numbers = Object.entries(validRow(r)).filter(([k, v]) =>
    typeof v === "number" && k !== "partition" && k !== "vwap"
  ).map(([k]) => k);
  assert.deepEqual([...WINDOW_INTEGERS, ...WINDOW_FLOATS].sort(), numbers.sort());
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    const row = validRow(r) as unknown as Record<string, unknown>;
    const ints = WINDOW_INTEGERS.length;
    const fields = ints + WINDOW_FLOATS.length;
    const bad = Math.floor(r() * (fields + 9));
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
    // Every value given here is one the check must refuse; the last 6 choices leave the row valid.
    let expected: string | null = null;
    if (bad < ints) row[expected = WINDOW_INTEGERS[bad]] = pick(badInts);
    else if (bad < fields) row[expected = WINDOW_FLOATS[bad - ints]] = pick(badFloats);
    else if (bad === fields) row[expected = "partition"] = pick([-1, 2147483648, 1.5, NaN, "0"]);
    else if (bad === fields + 1) row[expected = "vwap"] = pick(["1", undefined, {}]);
    else if (bad === fields + 2) row[expected = "symbol"] = `S\ud800${i}`;
    const problem = windowRowProblem(row as unknown as WindowRow);
    if (expected === null) {
      assert.equal(problem, null, `row ${i}: ${JSON.stringify(row)}`);
      continue;
    }
    refused++;
    assert.ok(problem !== null, `row ${i}: ${expected} is bad but the row passed`);
    if (expected === "symbol") assert.match(problem, /^Symbol is not well-formed/);
    else assert.ok(problem.startsWith(`${expected} is `), `row ${i}: ${problem}`);
  }
  assert.ok(refused > 3000, `${refused} rows refused`);
});
