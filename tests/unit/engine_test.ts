/**
 * Unit and randomized property tests for the windowing engine.
 * @module
 */
import assert from "node:assert/strict";
import {
  EngineError,
  type EngineSnapshot,
  type LateTick,
  type PartitionSnapshot,
  type Tick,
  WindowEngine,
  type WindowRow,
} from "../../aggregate/engine.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/** mulberry32 seeded PRNG, returns floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)];
}

function key(partition: number, symbol: string, windowStart: number): string {
  return JSON.stringify([partition, symbol, windowStart]);
}

function lateKey(t: LateTick): string {
  return JSON.stringify([t.partition, t.offset]);
}

function tick(
  symbol: string,
  eventTime: number,
  price: number,
  offset: number,
  partition = 0,
): Tick {
  return { symbol, eventTime, price, partition, offset };
}

function relClose(a: number, b: number, tol = 1e-9): boolean {
  return a === b || Math.abs(a - b) <= tol * Math.max(Math.abs(a), Math.abs(b), 1e-300);
}

/** Rows equal except sum/avg, which may differ by 1e-9 relative. */
function assertRowClose(actual: WindowRow, expected: WindowRow, ctx: string): void {
  const { sum: as, avg: aa, ...ar } = actual;
  const { sum: es, avg: ea, ...er } = expected;
  assert.deepEqual(ar, er, ctx);
  assert.ok(relClose(as, es), `${ctx}: sum ${as} vs ${es}`);
  assert.ok(relClose(aa, ea), `${ctx}: avg ${aa} vs ${ea}`);
}

// ---------------------------------------------------------------------------------------------
// Naive batch oracle, written independently of the engine: replay the lateness rule tick by
// tick, keep every accepted tick, then group and aggregate at the end.

interface OracleResult {
  windows: Map<string, WindowRow>;
  late: Map<string, LateTick>;
  decisions: boolean[];
}

function oracle(ticks: readonly Tick[], windowMs: number, delay: number): OracleResult {
  const maxByPartition = new Map<number, number>();
  const groups = new Map<string, Tick[]>();
  const late = new Map<string, LateTick>();
  const decisions: boolean[] = [];
  for (const t of ticks) {
    const max = maxByPartition.get(t.partition);
    const wm = max === undefined ? -Infinity : max - delay;
    const start = t.eventTime - (((t.eventTime % windowMs) + windowMs) % windowMs);
    if (start + windowMs > wm) {
      const k = key(t.partition, t.symbol, start);
      const g = groups.get(k) ?? [];
      g.push(t);
      groups.set(k, g);
      decisions.push(true);
    } else {
      const lt: LateTick = { ...t, watermark: wm };
      late.set(lateKey(lt), lt);
      decisions.push(false);
    }
    maxByPartition.set(t.partition, Math.max(max ?? -Infinity, t.eventTime));
  }
  const windows = new Map<string, WindowRow>();
  for (const [k, g] of groups) {
    const [partition, symbol, windowStart] = JSON.parse(k) as [number, string, number];
    const byOpen = [...g].sort((a, b) => a.eventTime - b.eventTime || a.offset - b.offset);
    const open = byOpen[0];
    const close = byOpen[byOpen.length - 1];
    let sum = 0;
    for (const t of g) sum += t.price;
    const wm = maxByPartition.get(partition)! - delay;
    windows.set(k, {
      symbol,
      windowStart,
      windowEnd: windowStart + windowMs,
      count: g.length,
      sum,
      avg: sum / g.length,
      open: open.price,
      high: Math.max(...g.map((t) => t.price)),
      low: Math.min(...g.map((t) => t.price)),
      close: close.price,
      firstEventTime: open.eventTime,
      lastEventTime: close.eventTime,
      partition,
      lastOffset: Math.max(...g.map((t) => t.offset)),
      isFinal: windowStart + windowMs <= wm,
    });
  }
  return { windows, late, decisions };
}

// ---------------------------------------------------------------------------------------------
// Random inputs

const SYMBOLS = [
  "AAPL",
  "BRK-B",
  "^GSPC",
  "EURUSD=X",
  'we"ird\\sym',
  "with space",
  "ünïcødé€😀",
  "b",
  "B",
] as const;

interface Case {
  windowMs: number;
  delay: number;
  /** Ticks per partition, in offset order. */
  perPartition: Tick[][];
}

function genCase(rand: () => number): Case {
  const windowMs = pick(rand, [1, 7, 10, 100, 1000, 300_000]);
  const delay = pick(rand, [0, 1, Math.floor(windowMs / 2), windowMs, 3 * windowMs, 900_000]);
  const nParts = randInt(rand, 1, 4);
  const perPartition: Tick[][] = [];
  const span = windowMs + delay;
  for (let i = 0; i < nParts; i++) {
    const partition = rand() < 0.8 ? i : i + randInt(rand, 5, 1000);
    if (perPartition.some((ts) => ts[0]?.partition === partition)) continue;
    const symbols = SYMBOLS.filter(() => rand() < 0.4);
    if (symbols.length === 0) symbols.push(pick(rand, SYMBOLS));
    const n = randInt(rand, 0, 80);
    let cursor = Math.round((rand() - 0.5) * 40 * windowMs); // sometimes negative
    let offset = randInt(rand, 0, 1000);
    let prevT = cursor;
    const ts: Tick[] = [];
    for (let j = 0; j < n; j++) {
      const r = rand();
      let t: number;
      if (r < 0.55) t = cursor += randInt(rand, 0, Math.max(1, Math.floor(windowMs / 2)));
      else if (r < 0.75) t = cursor - randInt(rand, 0, delay + 2 * windowMs);
      else if (r < 0.82) t = prevT;
      else if (r < 0.9) {
        const start = cursor - (((cursor % windowMs) + windowMs) % windowMs);
        t = pick(rand, [start, start - 1, start + windowMs, start + windowMs - 1, start - delay]);
      } else if (r < 0.95) t = cursor += randInt(rand, 0, 10 * span);
      else t = cursor - 100 * span - randInt(rand, 0, span); // days-old tick
      const price = rand() < 0.2 ? 100 : Math.round(rand() * 100_000) / 100;
      ts.push({ symbol: pick(rand, symbols), eventTime: t, price, partition, offset });
      offset += randInt(rand, 1, 3);
      prevT = t;
    }
    perPartition.push(ts);
  }
  return { windowMs, delay, perPartition };
}

/** Random interleaving that keeps each partition's order. */
function interleave(rand: () => number, perPartition: Tick[][]): Tick[] {
  const idx = perPartition.map(() => 0);
  const out: Tick[] = [];
  const total = perPartition.reduce((n, ts) => n + ts.length, 0);
  const bias = perPartition.map(() => rand() + 0.05);
  while (out.length < total) {
    const live = perPartition.map((ts, i) => (idx[i] < ts.length ? bias[i] : 0));
    let r = rand() * live.reduce((a, b) => a + b, 0);
    let i = 0;
    while (r >= live[i] || live[i] === 0) {
      r -= live[i];
      i++;
    }
    out.push(perPartition[i][idx[i]++]);
  }
  return out;
}

function roundTrip(rand: () => number, engine: WindowEngine, options: object): WindowEngine {
  const mode = randInt(rand, 0, 2);
  if (mode === 0) {
    const snap = JSON.parse(JSON.stringify(engine.snapshot())) as EngineSnapshot;
    return WindowEngine.restore(snap, options);
  }
  if (mode === 1) {
    const pieces = engine.partitions().map((p) =>
      JSON.parse(JSON.stringify(engine.snapshotPartition(p))) as PartitionSnapshot
    );
    return WindowEngine.restore(pieces.reverse(), options);
  }
  const maxBytes = randInt(rand, 700, 4000);
  const pieces = engine.snapshotChunks({ maxBytes });
  for (const piece of pieces) {
    assert.ok(new TextEncoder().encode(JSON.stringify(piece)).length <= maxBytes);
  }
  const parsed = pieces.map((p) => JSON.parse(JSON.stringify(p)) as PartitionSnapshot);
  // Any order of pieces must work.
  for (let i = parsed.length - 1; i > 0; i--) {
    const j = randInt(rand, 0, i);
    [parsed[i], parsed[j]] = [parsed[j], parsed[i]];
  }
  return WindowEngine.restore(parsed, options);
}

interface RunResult {
  view: Map<string, WindowRow>;
  late: Map<string, LateTick>;
}

/** Runs one case through the engine with random triggers / snapshots, checking invariants. */
function runEngine(rand: () => number, c: Case, order: Tick[]): RunResult {
  const options = { windowMs: c.windowMs, watermarkDelayMs: c.delay };
  const triggerP = pick(rand, [0, 0.02, 0.1, 0.5, 1]);
  const snapshotP = pick(rand, [0, 0.02, 0.1, 0.3]);
  let engine = new WindowEngine(options);
  const view = new Map<string, WindowRow>();
  const finalKeys = new Set<string>();
  const late = new Map<string, LateTick>();
  const expectedDecisions = oracle(order, c.windowMs, c.delay).decisions;
  const checkP = Math.min(1, 5 / (triggerP * order.length + 1));

  const doTrigger = (prefix: number) => {
    const { windows, late: lateTicks } = engine.trigger();
    for (let i = 1; i < windows.length; i++) {
      const a = windows[i - 1];
      const b = windows[i];
      assert.ok(
        a.partition < b.partition ||
          (a.partition === b.partition &&
            (a.symbol < b.symbol || (a.symbol === b.symbol && a.windowStart < b.windowStart))),
        "windows sorted and unique",
      );
    }
    for (const row of windows) {
      const k = key(row.partition, row.symbol, row.windowStart);
      assert.ok(!finalKeys.has(k), `window ${k} emitted after it was final`);
      const prev = view.get(k);
      if (prev !== undefined) assert.notDeepEqual(row, prev, `window ${k} re-emitted unchanged`);
      view.set(k, row);
      if (row.isFinal) finalKeys.add(k);
    }
    for (const t of lateTicks) {
      const k = lateKey(t);
      assert.ok(!late.has(k), `late tick ${k} reported twice`);
      late.set(k, t);
    }
    assert.equal(engine.openWindowCount, view.size - finalKeys.size, "final windows evicted");
    // The materialized view must equal the batch oracle over the prefix folded so far
    // (sampled, ~5 times per run, to keep the suite fast; always at the end).
    if (prefix === order.length || rand() < checkP) {
      const expected = oracle(order.slice(0, prefix), c.windowMs, c.delay);
      compare({ view, late }, expected, `after ${prefix} ticks`);
    }
  };

  for (let i = 0; i < order.length; i++) {
    assert.equal(engine.fold(order[i]), expectedDecisions[i], `decision for tick #${i}`);
    if (rand() < triggerP) doTrigger(i + 1);
    if (rand() < snapshotP) engine = roundTrip(rand, engine, options);
  }
  doTrigger(order.length);
  // A second trigger with no new input emits nothing.
  const again = engine.trigger();
  assert.deepEqual(again, { windows: [], late: [] });
  return { view, late };
}

function compare(actual: RunResult, expected: OracleResult, ctx: string): void {
  assert.deepEqual(
    [...actual.view.keys()].sort(),
    [...expected.windows.keys()].sort(),
    `${ctx}: window keys`,
  );
  for (const [k, row] of expected.windows) assertRowClose(actual.view.get(k)!, row, `${ctx}: ${k}`);
  const lateList = (m: Map<string, LateTick>) =>
    [...m.values()].map((t) => JSON.stringify(t)).sort();
  assert.deepEqual(lateList(actual.late), lateList(expected.late), `${ctx}: late ticks`);
}

Deno.test("randomized: engine matches batch oracle under splits, interleavings and restores", () => {
  const base = 0x5eed_0000;
  const cases = 500;
  for (let i = 0; i < cases; i++) {
    const seed = base + i;
    try {
      const rand = mulberry32(seed);
      const c = genCase(rand);
      const order1 = interleave(rand, c.perPartition);
      const r1 = runEngine(rand, c, order1);
      compare(r1, oracle(order1, c.windowMs, c.delay), "final");
      // Different interleaving, trigger split and restore points: bit-identical result.
      const order2 = interleave(rand, c.perPartition);
      const r2 = runEngine(rand, c, order2);
      assert.deepEqual(r2.view, r1.view, "view independent of interleaving/splits");
      assert.deepEqual(
        [...r2.late.values()].map((t) => JSON.stringify(t)).sort(),
        [...r1.late.values()].map((t) => JSON.stringify(t)).sort(),
      );
    } catch (e) {
      console.error(`engine property test failed with seed ${seed} (0x${seed.toString(16)})`);
      throw e;
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Edge cases

const W = 300_000;
const D = 900_000;

Deno.test("defaults: 5 min windows, 15 min delay, watermark -Infinity before any tick", () => {
  const e = new WindowEngine();
  assert.equal(e.windowMs, W);
  assert.equal(e.watermarkDelayMs, D);
  assert.equal(e.watermark(0), -Infinity);
  assert.equal(e.lastOffset(0), undefined);
  assert.deepEqual(e.partitions(), []);
  assert.deepEqual(e.trigger(), { windows: [], late: [] });
  assert.deepEqual(e.snapshot(), { version: 1, windowMs: W, watermarkDelayMs: D, partitions: {} });
});

Deno.test("single tick produces one full row", () => {
  const e = new WindowEngine();
  assert.equal(e.fold(tick("AAPL", 1_700_000_123_456, 189.5, 42, 3)), true);
  assert.equal(e.openWindowCount, 1);
  assert.deepEqual(e.partitions(), [3]);
  assert.equal(e.lastOffset(3), 42);
  assert.equal(e.watermark(3), 1_700_000_123_456 - D);
  assert.deepEqual(e.trigger(), {
    windows: [{
      symbol: "AAPL",
      windowStart: 1_700_000_100_000,
      windowEnd: 1_700_000_400_000,
      count: 1,
      sum: 189.5,
      avg: 189.5,
      open: 189.5,
      high: 189.5,
      low: 189.5,
      close: 189.5,
      firstEventTime: 1_700_000_123_456,
      lastEventTime: 1_700_000_123_456,
      partition: 3,
      lastOffset: 42,
      isFinal: false,
    }],
    late: [],
  });
  assert.equal(e.openWindowCount, 1);
});

Deno.test("tick exactly on a window boundary belongs to the next window", () => {
  const e = new WindowEngine();
  e.foldAll([tick("X", W - 1, 1, 0), tick("X", W, 2, 1), tick("X", 2 * W - 1, 3, 2)]);
  const rows = e.trigger().windows;
  assert.deepEqual(rows.map((r) => [r.windowStart, r.windowEnd, r.count]), [
    [0, W, 1],
    [W, 2 * W, 2],
  ]);
});

Deno.test("negative event times floor correctly", () => {
  const e = new WindowEngine({ watermarkDelayMs: 10 * W });
  e.foldAll([
    tick("N", -1, 1, 0),
    tick("N", -W, 2, 1),
    tick("N", -W - 1, 3, 2),
    tick("N", 0, 4, 3),
  ]);
  assert.deepEqual(e.trigger().windows.map((r) => [r.windowStart, r.windowEnd, r.count]), [
    [-2 * W, -W, 1],
    [-W, 0, 2],
    [0, W, 1],
  ]);
  const e2 = new WindowEngine({ windowMs: 7 });
  e2.fold(tick("N", -0, -0, 0));
  const [row] = e2.trigger().windows;
  assert.ok(Object.is(row.windowStart, 0) && Object.is(row.open, 0), "-0 normalised");
});

Deno.test("window end equal to the watermark is late; one ms later is accepted", () => {
  // Watermark 300_000 exactly: window [0, 300_000) has end == watermark -> late.
  const e = new WindowEngine();
  assert.equal(e.fold(tick("X", W + D, 10, 0)), true);
  assert.equal(e.watermark(0), W);
  assert.equal(e.fold(tick("X", 0, 11, 1)), false);
  assert.equal(e.fold(tick("X", W - 1, 12, 2)), false);
  assert.equal(e.fold(tick("X", W, 13, 3)), true); // window [W, 2W): end > watermark
  const out = e.trigger();
  assert.deepEqual(out.late, [
    { symbol: "X", eventTime: 0, price: 11, partition: 0, offset: 1, watermark: W },
    { symbol: "X", eventTime: W - 1, price: 12, partition: 0, offset: 2, watermark: W },
  ]);
  assert.deepEqual(out.windows.map((r) => [r.windowStart, r.count, r.isFinal]), [
    [W, 1, false],
    [4 * W, 1, false],
  ]);

  // Watermark 299_999: window [0, 300_000) ends one ms after it -> accepted.
  const f = new WindowEngine();
  f.fold(tick("X", W + D - 1, 10, 0));
  assert.equal(f.watermark(0), W - 1);
  assert.equal(f.fold(tick("X", 0, 11, 1)), true);
  assert.deepEqual(f.trigger().windows.map((r) => [r.windowStart, r.count, r.isFinal]), [
    [0, 1, false],
    [3 * W, 1, false],
  ]);
  // The watermark rule uses the watermark BEFORE the tick: a tick that itself advances the
  // watermark past its own window is still accepted.
  const g = new WindowEngine({ watermarkDelayMs: 0 });
  assert.equal(g.fold(tick("X", 5, 1, 0)), true);
  assert.equal(g.fold(tick("X", W + 5, 1, 1)), true);
  assert.equal(g.fold(tick("X", W - 1, 1, 2)), false);
});

Deno.test("days-old first tick (Yahoo's last close) then live ticks", () => {
  const now = 1_750_000_000_000;
  const old = now - 3 * 86_400_000;
  const e = new WindowEngine();
  assert.equal(e.fold(tick("AAPL", old, 200, 0)), true); // no watermark yet: accepted
  let out = e.trigger();
  assert.deepEqual(out.windows.map((r) => [r.windowStart, r.isFinal]), [
    [old - (old % W), false],
  ]);
  assert.equal(e.fold(tick("AAPL", now, 201, 1)), true);
  assert.equal(e.fold(tick("AAPL", old + 1, 199, 2)), false); // now far behind the watermark
  out = e.trigger();
  assert.deepEqual(out.windows.map((r) => [r.windowStart, r.count, r.isFinal]), [
    [old - (old % W), 1, true],
    [now - (now % W), 1, false],
  ]);
  assert.equal(out.late.length, 1);
  assert.equal(out.late[0].watermark, now - D);
  assert.equal(e.openWindowCount, 1);

  // Same input folded in one trigger: the old window is emitted once, directly final.
  const f = new WindowEngine();
  f.foldAll([tick("AAPL", old, 200, 0), tick("AAPL", now, 201, 1)]);
  assert.deepEqual(f.trigger().windows.map((r) => r.isFinal), [true, false]);
});

Deno.test("equal timestamps: open takes the lowest offset, close the highest", () => {
  const e = new WindowEngine();
  e.foldAll([
    tick("T", 1000, 10, 5),
    tick("T", 1000, 20, 6),
    tick("T", 1000, 30, 7),
  ]);
  let [r] = e.trigger().windows;
  assert.deepEqual([r.open, r.close, r.high, r.low, r.count], [10, 30, 30, 10, 3]);

  // Out of order within the window.
  e.foldAll([
    tick("U", 5000, 1, 10),
    tick("U", 3000, 2, 11),
    tick("U", 3000, 3, 12),
    tick("U", 5000, 4, 13),
    tick("U", 4000, 5, 14),
  ]);
  [r] = e.trigger().windows;
  assert.deepEqual(
    [r.open, r.close, r.firstEventTime, r.lastEventTime, r.lastOffset],
    [2, 4, 3000, 5000, 14],
  );
});

Deno.test("symbols with quotes, spaces and unicode are distinct keys and survive snapshots", () => {
  const syms = ['a"b', "a b", "a\\b", "ünï€😀", "A", "a", "a\u0000b"];
  const e = new WindowEngine();
  syms.forEach((s, i) => e.fold(tick(s, 1000 + i, i + 1, i)));
  const snap = JSON.parse(JSON.stringify(e.snapshot()));
  const r = WindowEngine.restore(snap);
  const rows = r.trigger().windows;
  assert.deepEqual(rows.map((x) => x.symbol), [...syms].sort());
  assert.deepEqual(rows.map((x) => x.count), syms.map(() => 1));
  assert.deepEqual(e.trigger().windows, rows);
});

Deno.test("same symbol in two partitions gives two windows", () => {
  const e = new WindowEngine();
  e.foldAll([tick("S", 10, 1, 0, 0), tick("S", 20, 2, 0, 1), tick("S", 30, 3, 1, 0)]);
  const rows = e.trigger().windows;
  assert.deepEqual(rows.map((r) => [r.partition, r.count, r.sum]), [[0, 2, 4], [1, 1, 2]]);
});

Deno.test("Neumaier summation: 1e8 + 10_000 × 0.1 and the 1, 1e100, 1, -1e100 case", () => {
  const e = new WindowEngine();
  const prices = [1e8, ...Array(10_000).fill(0.1)];
  prices.forEach((p, i) => e.fold(tick("K", 1000, p, i)));
  let naive = 0;
  for (const p of prices) naive += p;
  const [r] = e.trigger().windows;
  // Exact value of the doubles is 100001000.0000000000555..., which rounds to 100001000.
  assert.equal(r.sum, 100_001_000);
  assert.notEqual(naive, 100_001_000, "naive summation drifts (sanity check of the test)");
  assert.equal(r.avg, 100_001_000 / 10_001);

  const f = new WindowEngine();
  [1, 1e100, 1, -1e100].forEach((p, i) => f.fold(tick("K", 1000, p, i)));
  const [s] = f.trigger().windows;
  assert.equal(s.sum, 2);
  assert.equal(s.avg, 0.5);
  // Compensation survives a snapshot round trip.
  const g = new WindowEngine();
  [1, 1e100, 1].forEach((p, i) => g.fold(tick("K", 1000, p, i)));
  const h = WindowEngine.restore(JSON.parse(JSON.stringify(g.snapshot())));
  h.fold(tick("K", 1000, -1e100, 3));
  assert.equal(h.trigger().windows[0].sum, 2);
});

Deno.test("offset regression is rejected and leaves the state untouched", () => {
  const e = new WindowEngine();
  e.fold(tick("O", 1000, 1, 10));
  e.fold(tick("O", 1000, 1, 5, 1)); // other partition: independent offsets
  const before = JSON.stringify(e.snapshot());
  for (const off of [10, 9, 0]) {
    assert.throws(
      () => e.fold(tick("O", 2000, 2, off)),
      (err: unknown) =>
        err instanceof EngineError && err.name === "EngineError" &&
        err.message.startsWith(`Offset ${off} on partition 0 is not greater`) &&
        err.message.includes("10"),
    );
  }
  assert.equal(JSON.stringify(e.snapshot()), before);
  assert.equal(e.lastOffset(0), 10);
  assert.equal(e.fold(tick("O", 2000, 2, 11)), true);
  // foldAll stops at the bad tick, keeping the earlier ones.
  assert.throws(() => e.foldAll([tick("O", 3000, 3, 12), tick("O", 3000, 3, 12)]), EngineError);
  assert.equal(e.lastOffset(0), 12);
});

Deno.test("invalid ticks are rejected with typed errors naming the value", () => {
  const e = new WindowEngine();
  const bad: Array<[Partial<Tick>, RegExp]> = [
    [{ eventTime: NaN }, /^Invalid eventTime NaN/],
    [{ eventTime: Infinity }, /^Invalid eventTime Infinity/],
    [{ eventTime: -Infinity }, /^Invalid eventTime -Infinity/],
    [{ eventTime: "5" as unknown as number }, /^Invalid eventTime "5"/],
    [{ eventTime: 9e15 }, /^Invalid eventTime 9000000000000000/],
    [{ price: NaN }, /^Invalid price NaN/],
    [{ price: Infinity }, /^Invalid price Infinity/],
    [{ price: "1" as unknown as number }, /^Invalid price "1"/],
    [{ symbol: "" }, /^Invalid symbol ""/],
    [{ symbol: 5 as unknown as string }, /^Invalid symbol 5/],
    [{ partition: -1 }, /^Invalid partition -1/],
    [{ partition: 1.5 }, /^Invalid partition 1.5/],
    [{ offset: -1 }, /^Invalid offset -1/],
    [{ offset: 2.5 }, /^Invalid offset 2.5/],
    [{ offset: NaN }, /^Invalid offset NaN/],
  ];
  for (const [patch, re] of bad) {
    assert.throws(
      () => e.fold({ ...tick("X", 1000, 1, 0), ...patch }),
      (err: unknown) => err instanceof EngineError && re.test(err.message),
      JSON.stringify(patch),
    );
  }
  assert.deepEqual(e.partitions(), [], "no state created by rejected ticks");
  for (
    const [opts, re] of [
      [{ windowMs: 0 }, /^Invalid windowMs 0/],
      [{ windowMs: 1.5 }, /^Invalid windowMs 1.5/],
      [{ watermarkDelayMs: -1 }, /^Invalid watermarkDelayMs -1/],
      [{ watermarkDelayMs: NaN }, /^Invalid watermarkDelayMs NaN/],
    ] as const
  ) {
    assert.throws(
      () => new WindowEngine(opts),
      (err: unknown) => err instanceof EngineError && re.test(err.message),
    );
  }
});

Deno.test("watermark never decreases and final windows are evicted", () => {
  const e = new WindowEngine({ windowMs: 10, watermarkDelayMs: 5 });
  const seen: number[] = [];
  const counts: number[] = [];
  [100, 50, 120, 110, 200, 10, 300].forEach((t, i) => {
    e.fold(tick("E", t, i, i));
    seen.push(e.watermark(0));
    const out = e.trigger();
    counts.push(e.openWindowCount);
    for (const r of out.windows) if (r.isFinal) assert.ok(r.windowEnd <= e.watermark(0));
  });
  assert.deepEqual(seen, [95, 95, 115, 115, 195, 195, 295]);
  assert.deepEqual(counts, [1, 1, 1, 2, 1, 1, 1]); // t=110 opens [110,120) next to [120,130)
  // Each trigger emitted the previous window as final and evicted it.
  assert.equal(e.snapshot().partitions["0"].windows.length, 1);
});

Deno.test("snapshot taken with pending changes restores them exactly", () => {
  const mk = () => {
    const e = new WindowEngine({ windowMs: 100, watermarkDelayMs: 50 });
    e.foldAll([tick("A", 10, 1, 0), tick("B", 20, 2, 1), tick("A", 500, 3, 2, 1)]);
    e.trigger();
    e.foldAll([tick("A", 30, 4, 2), tick("A", 300, 5, 3), tick("A", 40, 6, 4)]); // last is late
    return e;
  };
  const a = mk();
  const snap = a.snapshot();
  assert.equal(snap.partitions["0"].late.length, 1);
  assert.deepEqual(snap.partitions["0"].windows.map((w) => [w[0], w[1], w[12]]), [
    ["A", 0, 1],
    ["A", 300, 1],
    ["B", 0, 0],
  ]);
  const b = WindowEngine.restore(JSON.parse(JSON.stringify(snap)), {
    windowMs: 100,
    watermarkDelayMs: 50,
  });
  assert.equal(b.openWindowCount, a.openWindowCount);
  assert.deepEqual(b.snapshot(), snap);
  assert.deepEqual(b.trigger(), a.trigger());
  assert.deepEqual(b.snapshot(), a.snapshot());
  assert.equal(b.lastOffset(0), 4);
  assert.equal(b.watermark(1), 450);
});

Deno.test("per-partition snapshots and size-bounded chunks round-trip", () => {
  const e = new WindowEngine();
  let off = 0;
  for (let s = 0; s < 500; s++) {
    for (let k = 0; k < 3; k++) e.fold(tick(`SYM${s}`, 1_000_000 + k * W, s + k / 10, off++));
  }
  e.fold(tick("Z", 1_000_000, 1, 0, 7));
  const pieces = e.snapshotChunks({ maxBytes: 8 * 1024 });
  assert.ok(pieces.length > 5);
  for (const p of pieces) {
    assert.ok(new TextEncoder().encode(JSON.stringify(p)).length <= 8 * 1024);
  }
  assert.deepEqual(new Set(pieces.map((p) => p.partition)), new Set([0, 7]));
  const r = WindowEngine.restore(JSON.parse(JSON.stringify(pieces)));
  assert.deepEqual(r.snapshot(), e.snapshot());
  const one = WindowEngine.restore(e.snapshotPartition(7));
  assert.deepEqual(one.partitions(), [7]);
  assert.equal(one.openWindowCount, 1);
  assert.ok(e.snapshotChunks().length >= 2, "default 60 KiB chunks");
  assert.throws(() => e.snapshotPartition(3), /^EngineError: Unknown partition 3$/);
  assert.throws(() => e.snapshotChunks({ maxBytes: 100 }), /over maxBytes 100/);
});

Deno.test("restore rejects mismatched options and malformed snapshots", () => {
  const e = new WindowEngine({ windowMs: 60_000 });
  e.fold(tick("A", 1000, 1, 0));
  const snap = e.snapshot();
  assert.throws(
    () => WindowEngine.restore(snap),
    (err: unknown) =>
      err instanceof EngineError &&
      err.message === "Snapshot windowMs 60000 does not match the engine's windowMs 300000",
  );
  assert.throws(
    () => WindowEngine.restore(snap, { windowMs: 60_000, watermarkDelayMs: 1 }),
    /^EngineError: Snapshot watermarkDelayMs 900000 does not match the engine's watermarkDelayMs 1$/,
  );
  assert.throws(
    () => WindowEngine.restore([e.snapshotPartition(0)], { watermarkDelayMs: D }),
    /Snapshot windowMs 60000/,
  );
  const ok = { windowMs: 60_000 };
  assert.equal(WindowEngine.restore(snap, ok).openWindowCount, 1);
  const clone = () => JSON.parse(JSON.stringify(snap));
  const cases: Array<[(s: EngineSnapshot) => void, RegExp]> = [
    [(s) => ((s as { version: number }).version = 2), /Unsupported snapshot version 2/],
    [(s) => (s.partitions["0"].windows[0][1] = 5), /Invalid windowStart 5/],
    [(s) => (s.partitions["0"].windows[0][2] = 0), /Invalid window count 0/],
    [(s) => (s.partitions["0"].windows[0][0] = ""), /Invalid window symbol ""/],
    [(s) => (s.partitions["0"].windows[0][11] = 9), /Invalid window lastOffset 9/],
    [(s) => s.partitions["0"].windows.push(s.partitions["0"].windows[0]), /duplicate window/],
    [(s) => (s.partitions["0"].maxEventTime = null), /maxEventTime\/lastOffset pair/],
    [(s) => (s.partitions["x"] = s.partitions["0"]), /Invalid snapshot partition key "x"/],
    [(s) => ((s as { partitions: unknown }).partitions = []), /Invalid snapshot partitions/],
  ];
  for (const [mutate, re] of cases) {
    const s = clone();
    mutate(s);
    assert.throws(
      () => WindowEngine.restore(s, ok),
      (err: unknown) => err instanceof EngineError && re.test(err.message),
      re.source,
    );
  }
  // Conflicting pieces of the same partition.
  const p1 = e.snapshotPartition(0);
  const p2 = { ...p1, windows: [], late: [], lastOffset: 99 };
  assert.throws(() => WindowEngine.restore([p1, p2], ok), /Conflicting pieces for partition 0/);
  assert.throws(() => WindowEngine.restore(null as unknown as EngineSnapshot), EngineError);
  // An empty set of pieces is an empty engine.
  assert.deepEqual(WindowEngine.restore([], ok).partitions(), []);
});

Deno.test("trigger emits only changed windows, each final window exactly once", () => {
  const e = new WindowEngine({ windowMs: 10, watermarkDelayMs: 0 });
  e.foldAll([tick("A", 1, 1, 0), tick("B", 2, 1, 1)]);
  assert.equal(e.trigger().windows.length, 2);
  e.fold(tick("A", 3, 2, 2));
  assert.deepEqual(e.trigger().windows.map((r) => [r.symbol, r.count, r.isFinal]), [
    ["A", 2, false],
  ]);
  e.fold(tick("C", 10, 1, 3)); // watermark 10: both windows [0,10) final, B unchanged
  const out = e.trigger().windows;
  assert.deepEqual(out.map((r) => [r.symbol, r.windowStart, r.count, r.isFinal]), [
    ["A", 0, 2, true],
    ["B", 0, 1, true],
    ["C", 10, 1, false],
  ]);
  assert.equal(e.openWindowCount, 1);
  assert.deepEqual(e.trigger(), { windows: [], late: [] });
  assert.deepEqual(e.foldAll([tick("A", 5, 1, 4), tick("A", 15, 1, 5)]), { accepted: 1, late: 1 });
});

Deno.test("SEMANTICS.md worked example", () => {
  const day = Date.UTC(2025, 0, 2);
  const at = (h: number, m: number, s: number) => day + ((h * 60 + m) * 60 + s) * 1000;
  const e = new WindowEngine();
  assert.deepEqual(
    [
      e.fold(tick("AAPL", at(9, 31, 10), 100, 0)),
      e.fold(tick("AAPL", at(9, 33, 0), 101, 1)),
      e.fold(tick("AAPL", at(9, 36, 0), 102, 2)),
    ],
    [true, true, true],
  );
  let out = e.trigger();
  assert.deepEqual(out.windows.map((r) => [r.windowStart, r.count, r.open, r.close, r.isFinal]), [
    [at(9, 30, 0), 2, 100, 101, false],
    [at(9, 35, 0), 1, 102, 102, false],
  ]);
  assert.equal(e.watermark(0), at(9, 21, 0));
  assert.equal(e.fold(tick("AAPL", at(9, 52, 30), 103, 3)), true);
  assert.equal(e.watermark(0), at(9, 37, 30));
  assert.equal(e.fold(tick("AAPL", at(9, 34, 59), 99, 4)), false);
  assert.equal(e.fold(tick("AAPL", at(9, 38, 0), 104, 5)), true);
  out = e.trigger();
  assert.deepEqual(
    out.windows.map((r) => [r.windowStart, r.count, r.avg, r.close, r.isFinal]),
    [
      [at(9, 30, 0), 2, 100.5, 101, true],
      [at(9, 35, 0), 2, 103, 104, false],
      [at(9, 50, 0), 1, 103, 103, false],
    ],
  );
  assert.deepEqual(out.late, [{
    symbol: "AAPL",
    eventTime: at(9, 34, 59),
    price: 99,
    partition: 0,
    offset: 4,
    watermark: at(9, 37, 30),
  }]);
  assert.equal(e.openWindowCount, 2);
});
