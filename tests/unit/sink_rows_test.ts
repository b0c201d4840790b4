// The sink's check of window rows before they are sent as binary arrays (windowRowProblem):
// random rows, valid or with one bad field, against an oracle that checks each field on its own.
import assert from "node:assert/strict";
import { windowRowProblem } from "../../aggregate/sink.ts";
import type { WindowRow } from "../../aggregate/engine.ts";
import { prng } from "../_helpers/aggregate_stream.ts";

const INTEGERS = [
  "windowMs",
  "windowStart",
  "windowEnd",
  "count",
  "lastOffset",
  "firstEventTime",
  "lastEventTime",
] as const;
const FLOATS = ["avg", "open", "high", "low", "close", "sum", "volume", "pvSum"] as const;

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

/** The field an oracle finds wrong first, in the sink's order of checks, or null. */
function oracle(row: WindowRow): string | null {
  if (!row.symbol.isWellFormed()) return "symbol";
  for (const f of INTEGERS) if (!Number.isSafeInteger(row[f])) return f;
  const p = row.partition;
  if (!Number.isInteger(p) || p < 0 || p > 2147483647) return "partition";
  for (const f of FLOATS) if (typeof row[f] !== "number") return f;
  if (row.vwap !== null && typeof row.vwap !== "number") return "vwap";
  return null;
}

Deno.test("window rows: the sink's check refuses exactly the rows with a bad field, naming it", () => {
  const r = prng(11);
  const badInts = [2.5, NaN, Infinity, -Infinity, 2 ** 60, -(2 ** 53), "1", null, undefined];
  const badFloats = ["1.5", null, undefined, 10n, {}];
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    const row = validRow(r) as unknown as Record<string, unknown>;
    const bad = Math.floor(r() * 24);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
    if (bad < INTEGERS.length) row[INTEGERS[bad]] = pick(badInts);
    else if (bad < INTEGERS.length + FLOATS.length) {
      row[FLOATS[bad - INTEGERS.length]] = pick(badFloats);
    } else if (bad === 15) row.partition = pick([-1, 2147483648, 1.5, NaN, "0"]);
    else if (bad === 16) row.vwap = pick(["1", undefined, {}]);
    else if (bad === 17) row.symbol = `S\ud800${i}`;
    // 18..23: valid
    const w = row as unknown as WindowRow;
    const expected = oracle(w);
    const problem = windowRowProblem(w);
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
