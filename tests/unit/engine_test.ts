/**
 * Unit and randomized property tests for the windowing engine v2: every randomized test checks
 * the engine against a plain reference implementation written here (per tick, per resolution, a
 * list of ticks per window, aggregated from scratch).
 * @module
 */
import assert from "node:assert/strict";
import {
  type Cut,
  type CutInput,
  EngineError,
  type EngineOptions,
  type LateTick,
  stateKey,
  type StateRecord,
  type Tick,
  WindowEngine,
  type WindowRow,
} from "../../aggregate/engine.ts";
import { mulberry32 } from "../../common/prng.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

function randInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)];
}

function rowKey(r: { partition: number; windowMs: number; symbol: string; windowStart: number }) {
  return JSON.stringify([r.partition, r.windowMs, r.symbol, r.windowStart]);
}

function tick(
  symbol: string,
  eventTime: number,
  price: number,
  offset: number,
  partition = 0,
  extra: { dayVolume?: number; arrivalMs?: number } = {},
): Tick {
  return { symbol, eventTime, price, partition, offset, ...extra };
}

function relClose(a: number | null, b: number | null, tol = 1e-9): boolean {
  if (a === null || b === null) return a === b;
  return a === b || Math.abs(a - b) <= tol * Math.max(Math.abs(a), Math.abs(b), 1e-300);
}

/** Rows equal except the compensated sums and their ratios, which may differ by 1e-9 relative. */
function assertRowClose(actual: WindowRow, expected: WindowRow, ctx: string): void {
  const { sum: as, avg: aa, volume: av, pvSum: ap, vwap: aw, ...ar } = actual;
  const { sum: es, avg: ea, volume: ev, pvSum: ep, vwap: ew, ...er } = expected;
  assert.deepEqual(ar, er, ctx);
  assert.ok(relClose(as, es), `${ctx}: sum ${as} vs ${es}`);
  assert.ok(relClose(aa, ea), `${ctx}: avg ${aa} vs ${ea}`);
  assert.ok(relClose(av, ev), `${ctx}: volume ${av} vs ${ev}`);
  assert.ok(relClose(ap, ep), `${ctx}: pvSum ${ap} vs ${ep}`);
  assert.ok(relClose(aw, ew), `${ctx}: vwap ${aw} vs ${ew}`);
}

function allRows(cut: Cut, sliceSize?: number): WindowRow[] {
  const out: WindowRow[] = [];
  for (const slice of cut.rows(sliceSize)) {
    assert.ok(slice.length > 0 && slice.length <= (sliceSize ?? 5000), "slice size");
    out.push(...slice);
  }
  return out;
}

const lateList = (ticks: Iterable<LateTick>) => [...ticks].map((t) => JSON.stringify(t)).sort();

// ---------------------------------------------------------------------------------------------
// Reference implementation: replays events one by one with the rules of DESIGN.md, keeps every
// accepted tick per window, and aggregates from scratch.

type Event =
  | { kind: "tick"; tick: Tick }
  | { kind: "cut"; nowMs?: number; caughtUp?: number[] }
  | { kind: "floor"; partition: number; watermark?: number; replayBelow?: number };

interface RefOptions {
  windows: number[];
  delay: number;
  idle: number;
  maxOpen: number;
}

interface RefTick {
  price: number;
  eventTime: number;
  offset: number;
  delta: number;
}

interface RefWindow {
  partition: number;
  windowMs: number;
  symbol: string;
  start: number;
  ticks: RefTick[];
}

interface RefPartition {
  max: number;
  floor: number;
  wm: number;
  lastArrival: number;
  replayBelow: number;
}

class Reference {
  readonly parts = new Map<number, RefPartition>();
  readonly baselines = new Map<string, number>();
  readonly windows = new Map<string, RefWindow>();
  readonly late: LateTick[] = [];
  suppressed = 0;
  forced = 0;
  /** Whether the last tick applied was late for at least one resolution. */
  lastLate = false;
  constructor(readonly o: RefOptions) {}

  part(p: number): RefPartition {
    let s = this.parts.get(p);
    if (s === undefined) {
      s = {
        max: -Infinity,
        floor: -Infinity,
        wm: -Infinity,
        lastArrival: -Infinity,
        replayBelow: 0,
      };
      this.parts.set(p, s);
    }
    return s;
  }

  openOf(p: number): RefWindow[] {
    const wm = this.part(p).wm;
    return [...this.windows.values()].filter((w) => w.partition === p && w.start + w.windowMs > wm);
  }

  apply(e: Event): void {
    if (e.kind === "tick") this.#tick(e.tick);
    else if (e.kind === "floor") {
      const s = this.part(e.partition);
      if (e.watermark !== undefined) {
        s.floor = Math.max(s.floor, e.watermark);
        s.wm = Math.max(s.wm, s.floor);
      }
      if (e.replayBelow !== undefined) s.replayBelow = Math.max(s.replayBelow, e.replayBelow);
    } else if (e.nowMs !== undefined && this.o.idle > 0) {
      for (const [p, s] of this.parts) {
        if (s.lastArrival === -Infinity || e.nowMs - s.lastArrival < this.o.idle) continue;
        if (e.caughtUp !== undefined && !e.caughtUp.includes(p)) continue;
        s.floor = Math.max(s.floor, e.nowMs - this.o.delay);
        s.wm = Math.max(s.wm, s.floor);
      }
    }
  }

  #tick(input: Tick): void {
    const t = { ...input, eventTime: input.eventTime + 0, price: input.price + 0 }; // no -0
    const s = this.part(t.partition);
    const wm = s.wm;
    let delta = 0;
    const bk = JSON.stringify([t.partition, t.symbol]);
    if (t.dayVolume !== undefined) {
      const base = this.baselines.get(bk);
      if (base !== undefined) delta = t.dayVolume < base ? t.dayVolume : t.dayVolume - base;
      this.baselines.set(bk, t.dayVolume);
    }
    const lateFor: number[] = [];
    for (const ms of [...this.o.windows].sort((a, b) => a - b)) {
      const start = t.eventTime - (((t.eventTime % ms) + ms) % ms) + 0;
      if (start + ms > wm) {
        const k = rowKey({
          partition: t.partition,
          windowMs: ms,
          symbol: t.symbol,
          windowStart: start,
        });
        let w = this.windows.get(k);
        if (w === undefined) {
          w = { partition: t.partition, windowMs: ms, symbol: t.symbol, start, ticks: [] };
          this.windows.set(k, w);
        }
        w.ticks.push({ price: t.price, eventTime: t.eventTime, offset: t.offset, delta });
      } else lateFor.push(ms);
    }
    this.lastLate = lateFor.length > 0;
    if (lateFor.length > 0) {
      if (t.offset < s.replayBelow) this.suppressed++;
      else {
        this.late.push({
          symbol: t.symbol,
          eventTime: t.eventTime,
          price: t.price,
          partition: t.partition,
          offset: t.offset,
          watermark: wm,
          lateFor,
        });
      }
    }
    s.max = Math.max(s.max, t.eventTime);
    s.wm = Math.max(s.wm, s.max - this.o.delay);
    if (t.arrivalMs !== undefined) s.lastArrival = Math.max(s.lastArrival, t.arrivalMs);
    for (;;) {
      const open = this.openOf(t.partition);
      if (open.length <= this.o.maxOpen) break;
      const minEnd = Math.min(...open.map((w) => w.start + w.windowMs));
      s.floor = Math.max(s.floor, minEnd);
      s.wm = Math.max(s.wm, minEnd);
      this.forced += open.filter((w) => w.start + w.windowMs <= s.wm).length;
    }
  }

  /** The current version of every window, as the engine's rows would show it. */
  rows(): Map<string, WindowRow> {
    const out = new Map<string, WindowRow>();
    for (const [k, w] of this.windows) {
      const byTime = [...w.ticks].sort((a, b) => a.eventTime - b.eventTime || a.offset - b.offset);
      const first = byTime[0];
      const last = byTime[byTime.length - 1];
      let sum = 0;
      let volume = 0;
      let pvSum = 0;
      for (const t of w.ticks) {
        sum += t.price;
        volume += t.delta;
        pvSum += t.price * t.delta;
      }
      out.set(k, {
        symbol: w.symbol,
        windowMs: w.windowMs,
        windowStart: w.start,
        windowEnd: w.start + w.windowMs,
        count: w.ticks.length,
        sum,
        avg: sum / w.ticks.length,
        open: first.price,
        high: Math.max(...w.ticks.map((t) => t.price)),
        low: Math.min(...w.ticks.map((t) => t.price)),
        close: last.price,
        firstEventTime: first.eventTime,
        lastEventTime: last.eventTime,
        partition: w.partition,
        lastOffset: Math.max(...w.ticks.map((t) => t.offset)),
        isFinal: w.start + w.windowMs <= this.part(w.partition).wm,
        volume,
        pvSum,
        vwap: volume === 0 ? null : pvSum / volume,
      });
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Random scenarios

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
/** Symbols that never carry a dayVolume (like FX and many crypto feeds). */
const NO_VOLUME = new Set<string>(["EURUSD=X", "b"]);

interface Scenario {
  options: RefOptions;
  partitions: number[];
  /** Per partition, in offset order: ticks and floors. */
  perPartition: Event[][];
}

function genOptions(rand: () => number, modes: { idle: boolean; bound: boolean }): RefOptions {
  const unit = pick(rand, [1, 10, 1000, 60_000]);
  const mults = [1, 2, 3, 5, 7, 10, 12].filter(() => rand() < 0.4);
  if (mults.length === 0) mults.push(pick(rand, [1, 5]));
  const windows = mults.slice(0, 4).map((m) => m * unit);
  const base = Math.min(...windows);
  const delay = pick(rand, [0, 1, Math.floor(base / 2), base, 3 * base, 15 * unit]);
  const idle = modes.idle ? pick(rand, [0, delay, Math.max(1, base), 5 * base + 1]) : 0;
  const maxOpen = modes.bound ? randInt(rand, 1, 12) : 1_000_000;
  return { windows, delay, idle, maxOpen };
}

function genScenario(
  rand: () => number,
  modes: { idle: boolean; bound: boolean; floors: boolean },
): Scenario {
  const options = genOptions(rand, modes);
  const size = Math.max(...options.windows);
  const base = Math.min(...options.windows);
  const span = size + options.delay;
  const nParts = randInt(rand, 1, 3);
  const perPartition: Event[][] = [];
  const partitions: number[] = [];
  for (let i = 0; i < nParts; i++) {
    const partition = rand() < 0.8 ? i : i + randInt(rand, 5, 1000);
    if (partitions.includes(partition)) continue;
    partitions.push(partition);
    const symbols = SYMBOLS.filter(() => rand() < 0.4);
    if (symbols.length === 0) symbols.push(pick(rand, SYMBOLS));
    const volumes = new Map<string, number>();
    const n = randInt(rand, 0, 70);
    let cursor = Math.round((rand() - 0.5) * 40 * size); // sometimes negative
    let offset = randInt(rand, 0, 1000);
    let prevT = cursor;
    const es: Event[] = [];
    for (let j = 0; j < n; j++) {
      if (modes.floors && rand() < 0.04) {
        es.push({
          kind: "floor",
          partition,
          watermark: rand() < 0.8 ? cursor - randInt(rand, -size, span) : undefined,
          replayBelow: rand() < 0.7 ? Math.max(0, offset + randInt(rand, -3, 10)) : undefined,
        });
      }
      const r = rand();
      let t: number;
      if (r < 0.55) t = cursor += randInt(rand, 0, Math.max(1, Math.floor(base / 2)));
      else if (r < 0.75) t = cursor - randInt(rand, 0, options.delay + 2 * size);
      else if (r < 0.82) t = prevT;
      else if (r < 0.9) {
        const w = pick(rand, options.windows);
        const start = cursor - (((cursor % w) + w) % w);
        t = pick(rand, [start, start - 1, start + w, start + w - 1, start - options.delay]);
      } else if (r < 0.95) t = cursor += randInt(rand, 0, 10 * span);
      else t = cursor - 100 * span - randInt(rand, 0, span); // days-old tick
      const symbol = pick(rand, symbols);
      const price = rand() < 0.2 ? 100 : Math.round(rand() * 100_000) / 100;
      let dayVolume: number | undefined;
      if (!NO_VOLUME.has(symbol) && rand() < 0.9) {
        const prev = volumes.get(symbol) ?? randInt(rand, 0, 5000);
        const v = rand() < 0.06 ? randInt(rand, 0, 50) : prev + pick(rand, [0, 0, 1, 100, 2500]);
        volumes.set(symbol, v);
        dayVolume = v;
      }
      const arrivalMs = rand() < 0.9 ? t + randInt(rand, 0, base) : undefined;
      es.push({
        kind: "tick",
        tick: { symbol, eventTime: t, price, partition, offset, dayVolume, arrivalMs },
      });
      offset += randInt(rand, 1, 3);
      prevT = t;
    }
    perPartition.push(es);
  }
  return { options, partitions, perPartition };
}

/** Random interleaving that keeps each partition's order, with cuts sprinkled in. */
function interleave(
  rand: () => number,
  s: Scenario,
  cuts: { p: number; clock: boolean },
): Event[] {
  const lists = s.perPartition;
  const idx = lists.map(() => 0);
  const out: Event[] = [];
  const total = lists.reduce((n, es) => n + es.length, 0);
  const bias = lists.map(() => rand() + 0.05);
  // The driven wall clock: the latest arrival so far plus a random wait.
  let arrived = 0;
  const base = Math.min(...s.options.windows);
  const cut = (wait?: number): Event => {
    if (!cuts.clock) return { kind: "cut" };
    return {
      kind: "cut",
      nowMs: arrived + (wait ?? randInt(rand, -base, 2 * (s.options.idle + base))),
      caughtUp: rand() < 0.3 ? s.partitions.filter(() => rand() < 0.5) : undefined,
    };
  };
  let emitted = 0;
  while (emitted < total) {
    const live = lists.map((es, i) => (idx[i] < es.length ? bias[i] : 0));
    let r = rand() * live.reduce((a, b) => a + b, 0);
    let i = 0;
    while (r >= live[i] || live[i] === 0) {
      r -= live[i];
      i++;
    }
    const e = lists[i][idx[i]++];
    if (e.kind === "tick" && e.tick.arrivalMs !== undefined) {
      arrived = Math.max(arrived, e.tick.arrivalMs);
    }
    out.push(e);
    emitted++;
    if (rand() < cuts.p) out.push(cut());
  }
  out.push(cut());
  if (cuts.clock) {
    // Let the clock run on so that idle finalization gets its chance.
    const step = s.options.idle + s.options.delay + Math.max(...s.options.windows);
    for (let k = 1; k <= 3; k++) out.push(cut(k * step));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Engine runner: applies events, reads cuts now or later (copy-on-write), restarts from records
// or from base + deltas, and checks every cut against the reference.

interface RunOptions {
  /** Probability, per cut, of leaving it unread while more events are folded. */
  deferP: number;
  /** Probability, per cut, of a restart (records() or base + deltas) once nothing is pending. */
  restartP: number;
  /** Compare every cut with the reference (else: a sample). */
  checkAll?: boolean;
  /** Probability, per tick, of folding it and the ticks that follow through foldAll. */
  batchP?: number;
  /** Probability, per cut, of asking for the whole state (`wholeState`); default never. */
  wholeStateP?: number;
}

interface RunResult {
  view: Map<string, WindowRow>;
  late: LateTick[];
  stats: { forcedFinal: number; lateSuppressed: number };
  /** Cuts that captured the whole state (asked for, and no larger than the delta). */
  wholeStates: number;
  restarts: number;
}

function engineOptions(o: RefOptions): EngineOptions {
  return {
    windows: o.windows,
    watermarkDelayMs: o.delay,
    idleFinalizeMs: o.idle,
    maxOpenWindows: o.maxOpen,
  };
}

function cutInput(e: Extract<Event, { kind: "cut" }>): CutInput {
  return {
    nowMs: e.nowMs,
    caughtUp: e.caughtUp === undefined ? undefined : (p) => e.caughtUp!.includes(p),
  };
}

function jsonRoundTrip<T>(v: T): T {
  return JSON.parse(JSON.stringify(v));
}

function applyDelta(store: Map<string, StateRecord>, delta: Iterable<StateRecord>): void {
  const keys = new Set<string>();
  let prev: StateRecord | undefined;
  for (const rec of delta) {
    const k = stateKey(rec);
    assert.ok(!keys.has(k), `delta key ${k} unique`);
    keys.add(k);
    if (prev !== undefined) {
      // Codec order: partition, kind rank, windowMs, symbol, start.
      const rank = (r: StateRecord) => r.kind === "partition" ? 0 : r.kind === "baseline" ? 1 : 2;
      const a = prev as Record<string, unknown>;
      const b = rec as Record<string, unknown>;
      const ka = [a.partition, rank(prev), a.windowMs ?? 0, a.symbol ?? "", a.start ?? 0];
      const kb = [b.partition, rank(rec), b.windowMs ?? 0, b.symbol ?? "", b.start ?? 0];
      let c = 0;
      for (let i = 0; i < ka.length && c === 0; i++) {
        c = ka[i] === kb[i] ? 0 : (ka[i] as number | string) < (kb[i] as number | string) ? -1 : 1;
      }
      assert.ok(c < 0, `delta sorted: ${JSON.stringify(ka)} before ${JSON.stringify(kb)}`);
    }
    prev = rec;
    const r = jsonRoundTrip(rec);
    if (r.kind === "window-deleted") store.delete(k);
    else store.set(k, r);
  }
}

function sortedRecords(records: Iterable<StateRecord>): string[] {
  return [...records].map((r) => JSON.stringify(r)).sort();
}

function runEngine(
  rand: () => number,
  s: Scenario,
  events: readonly Event[],
  run: RunOptions,
): RunResult {
  run = { batchP: 0.05, ...run };
  const options = engineOptions(s.options);
  let engine = new WindowEngine(options);
  const ref = new Reference(s.options);
  const view = new Map<string, WindowRow>();
  const finalKeys = new Set<string>();
  const late: LateTick[] = [];
  const stats = { forcedFinal: 0, lateSuppressed: 0 };
  let store = new Map<string, StateRecord>();
  let restarts = 0;
  let wholeStates = 0;
  const nCuts = events.filter((e) => e.kind === "cut").length;
  const checkP = run.checkAll ? 1 : Math.min(1, 6 / (nCuts + 1));
  // Cuts not yet read, in cut order, with the reference's view at the cut (when sampled).
  const pending: Array<{ cut: Cut; expected: Map<string, WindowRow> | null; id: string }> = [];
  const releaseLater: Cut[] = [];
  let cutNo = 0;

  const process = () => {
    const { cut, expected, id } = pending.shift()!;
    const rows = allRows(cut, pick(rand, [1, 3, 5000]));
    const seen = new Set<string>();
    for (const row of rows) {
      const k = rowKey(row);
      assert.ok(!seen.has(k), `${id}: window ${k} twice in one cut`);
      seen.add(k);
      assert.ok(!finalKeys.has(k), `${id}: window ${k} emitted after it was final`);
      const prev = view.get(k);
      if (prev !== undefined && !row.isFinal) {
        assert.notDeepEqual(row, prev, `${id}: window ${k} re-emitted unchanged`);
      }
      view.set(k, row);
      if (row.isFinal) finalKeys.add(k);
    }
    assert.equal(cut.stats.finalized, rows.filter((r) => r.isFinal).length, `${id}: finalized`);
    assert.equal(cut.stats.changed, rows.filter((r) => !r.isFinal).length, `${id}: changed`);
    late.push(...cut.late);
    stats.forcedFinal += cut.stats.forcedFinal;
    stats.lateSuppressed += cut.stats.lateSuppressed;
    if (cut.state !== null) {
      // The whole state as of the cut replaces base + deltas, as writeCheckpoint's base does.
      wholeStates++;
      store = new Map();
      applyDelta(store, cut.state);
      assert.equal(
        [...store.values()].filter((r) => r.kind === "window").length,
        cut.openWindows,
        `${id}: the whole state holds the open windows`,
      );
    } else applyDelta(store, cut.delta());
    if (expected !== null) {
      assert.deepEqual([...view.keys()].sort(), [...expected.keys()].sort(), `${id}: keys`);
      for (const [k, row] of expected) assertRowClose(view.get(k)!, row, `${id}: ${k}`);
    }
    if (rand() < 0.5) cut.release();
    else releaseLater.push(cut);
  };

  for (let ei = 0; ei < events.length; ei++) {
    const e = events[ei];
    if (e.kind === "tick" && rand() < run.batchP!) {
      // A run of ticks through foldAll.
      const batch: Tick[] = [];
      let late = 0;
      const limit = pick(rand, [2, 50, 5000]);
      while (ei < events.length && events[ei].kind === "tick" && batch.length < limit) {
        const t = (events[ei] as Extract<Event, { kind: "tick" }>).tick;
        ref.apply(events[ei]);
        if (ref.lastLate) late++;
        batch.push(t);
        ei++;
      }
      ei--;
      assert.deepEqual(engine.foldAll(batch), { accepted: batch.length - late, late }, "foldAll");
      for (const p of s.partitions) {
        const meta = engine.meta(p);
        if (meta === undefined) continue;
        assert.ok(meta.openWindows <= s.options.maxOpen, "open-window bound after foldAll");
        assert.equal(meta.watermark, nullIfInf(ref.part(p).wm), "watermark after foldAll");
      }
      continue;
    }
    ref.apply(e);
    if (e.kind === "tick") {
      assert.equal(engine.fold(e.tick), !ref.lastLate, "fold's return value");
      const meta = engine.meta(e.tick.partition)!;
      assert.ok(meta.openWindows <= s.options.maxOpen, "open-window bound held at fold time");
      assert.equal(meta.watermark, nullIfInf(ref.part(e.tick.partition).wm), "watermark");
    } else if (e.kind === "floor") {
      engine.setFloor(e.partition, { watermark: e.watermark, replayBelow: e.replayBelow });
    } else {
      const wholeState = run.wholeStateP !== undefined && rand() < run.wholeStateP;
      const cut = engine.cut({ ...cutInput(e), ...(wholeState ? { wholeState } : {}) });
      if (!wholeState) assert.equal(cut.state, null, "no whole state unless asked");
      const id = `cut #${cutNo++}`;
      for (const m of cut.meta) {
        const rp = ref.part(m.partition);
        assert.equal(m.watermark, nullIfInf(rp.wm), `${id}: meta watermark p${m.partition}`);
        assert.equal(m.floor, nullIfInf(rp.floor), `${id}: meta floor p${m.partition}`);
        assert.equal(m.maxEventTime, nullIfInf(rp.max), `${id}: meta maxEventTime`);
        assert.equal(m.lastArrivalMs, nullIfInf(rp.lastArrival), `${id}: meta lastArrivalMs`);
        assert.equal(m.replayBelow, rp.replayBelow, `${id}: meta replayBelow`);
        assert.equal(m.openWindows, ref.openOf(m.partition).length, `${id}: meta openWindows`);
      }
      pending.push({ cut, expected: rand() < checkP ? ref.rows() : null, id });
      if (rand() >= run.deferP) { while (pending.length > 0) process(); }
      if (pending.length === 0 && rand() < run.restartP) {
        // A restart right after a committed cut, as a crash-free handover would do it.
        restarts++;
        if (rand() < 0.5) {
          const records = jsonRoundTrip([...engine.records()]);
          assert.deepEqual(sortedRecords(records), sortedRecords(store.values()), "base+deltas");
          store = new Map(records.map((r) => [stateKey(r), r]));
          const shuffled = [...records].sort(() => rand() - 0.5);
          engine = WindowEngine.restore(shuffled, options);
        } else {
          engine = WindowEngine.restore(store.values(), options);
        }
        while (releaseLater.length > 0) releaseLater.pop()!.release();
      }
    }
    // Unread cuts are read after some more folding (copy-on-write keeps them as they were).
    if (pending.length > 0 && rand() < 0.2) process();
    if (releaseLater.length > 0 && rand() < 0.3) {
      releaseLater.splice(randInt(rand, 0, releaseLater.length - 1), 1)[0].release();
    }
  }
  while (pending.length > 0) process();
  while (releaseLater.length > 0) releaseLater.pop()!.release();
  assert.equal(engine.unreleasedCuts, 0);
  // The state is exactly base + deltas.
  assert.deepEqual(sortedRecords(engine.records()), sortedRecords(store.values()), "final state");
  // Final comparison with the reference.
  const expected = ref.rows();
  assert.deepEqual([...view.keys()].sort(), [...expected.keys()].sort(), "final keys");
  for (const [k, row] of expected) assertRowClose(view.get(k)!, row, `final: ${k}`);
  assert.deepEqual(lateList(late), lateList(ref.late), "late ticks");
  assert.equal(stats.forcedFinal, ref.forced, "forcedFinal");
  assert.equal(stats.lateSuppressed, ref.suppressed, "lateSuppressed");
  // A cut with no new input emits nothing.
  const again = engine.cut();
  assert.deepEqual(allRows(again), []);
  assert.deepEqual(again.late, []);
  again.release();
  return { view, late, stats, restarts, wholeStates };
}

function nullIfInf(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}

function withSeed(base: number, cases: number, fn: (rand: () => number) => void): void {
  for (let i = 0; i < cases; i++) {
    const seed = base + i;
    try {
      fn(mulberry32(seed));
    } catch (e) {
      console.error(`failed with seed ${seed} (0x${seed.toString(16)})`);
      throw e;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Randomized tests against the reference

Deno.test("randomized: multi-resolution windows, volume and late ticks match the reference", () => {
  withSeed(0x5eed_0000, 300, (rand) => {
    const s = genScenario(rand, { idle: false, bound: false, floors: false });
    const events = interleave(rand, s, { p: pick(rand, [0, 0.05, 0.3, 1]), clock: false });
    runEngine(rand, s, events, { deferP: 0, restartP: 0 });
  });
});

Deno.test("randomized: results do not depend on cut placement, interleaving or restarts", () => {
  withSeed(0x5eed_1000, 200, (rand) => {
    // Floors ride with their partition's ticks; no wall clock: nothing may depend on the cuts.
    const s = genScenario(rand, { idle: false, bound: rand() < 0.4, floors: rand() < 0.4 });
    const r1 = runEngine(rand, s, interleave(rand, s, { p: 0.2, clock: false }), {
      deferP: 0.3,
      restartP: 0.3,
    });
    const r2 = runEngine(rand, s, interleave(rand, s, { p: pick(rand, [0, 0.5]), clock: false }), {
      deferP: 0.5,
      restartP: 0.1,
    });
    assert.deepEqual(r2.view, r1.view, "last emitted version of every window");
    assert.deepEqual(lateList(r2.late), lateList(r1.late), "late ticks");
    assert.deepEqual(r2.stats, r1.stats, "forcedFinal and lateSuppressed");
  });
});

Deno.test("randomized: restarts from records() and from base + deltas (some cuts' whole states as bases) equal an uninterrupted run", () => {
  let restarts = 0;
  let wholeStates = 0;
  withSeed(0x5eed_2000, 200, (rand) => {
    const s = genScenario(rand, { idle: rand() < 0.5, bound: rand() < 0.3, floors: rand() < 0.3 });
    const events = interleave(rand, s, { p: 0.25, clock: s.options.idle > 0 });
    // Same events and cut placement: with and without restarts (idle finalization included).
    const a = runEngine(mulberry32(1), s, events, { deferP: 0, restartP: 0 });
    const b = runEngine(rand, s, events, {
      deferP: 0.3,
      restartP: 0.5,
      checkAll: true,
      wholeStateP: 0.5,
    });
    restarts += b.restarts;
    wholeStates += b.wholeStates;
    assert.deepEqual(b.view, a.view);
    assert.deepEqual(lateList(b.late), lateList(a.late));
    assert.deepEqual(b.stats, a.stats);
  });
  assert.ok(restarts > 200, `restarts exercised (${restarts})`);
  assert.ok(wholeStates > 200, `whole states exercised (${wholeStates})`);
});

Deno.test("randomized: idle finalization with a driven clock matches the reference", () => {
  withSeed(0x5eed_3000, 200, (rand) => {
    const s = genScenario(rand, { idle: true, bound: false, floors: rand() < 0.3 });
    const events = interleave(rand, s, { p: 0.3, clock: true });
    runEngine(rand, s, events, { deferP: 0.3, restartP: 0.1 });
  });
});

Deno.test("randomized: the open-window bound holds at fold time and is counted", () => {
  let forced = 0;
  withSeed(0x5eed_4000, 200, (rand) => {
    const s = genScenario(rand, { idle: false, bound: true, floors: false });
    const events = interleave(rand, s, { p: 0.1, clock: false });
    forced += runEngine(rand, s, events, { deferP: 0.3, restartP: 0.1 }).stats.forcedFinal;
  });
  assert.ok(forced > 100, `forced finalization exercised (${forced})`);
});

Deno.test("randomized: floors and replayBelow match the reference", () => {
  let suppressed = 0;
  withSeed(0x5eed_5000, 200, (rand) => {
    const s = genScenario(rand, { idle: false, bound: false, floors: true });
    const events = interleave(rand, s, { p: 0.2, clock: false });
    suppressed += runEngine(rand, s, events, { deferP: 0.2, restartP: 0.2 }).stats.lateSuppressed;
  });
  assert.ok(suppressed > 20, `suppression exercised (${suppressed})`);
});

Deno.test("randomized: a cut is frozen while folding continues (copy-on-write)", () => {
  withSeed(0x5eed_6000, 200, (rand) => {
    const s = genScenario(rand, { idle: false, bound: rand() < 0.3, floors: false });
    const events = interleave(rand, s, { p: 0.3, clock: false });
    // Twin engines: X reads each cut at once, Y reads it after the next events were folded.
    const o = engineOptions(s.options);
    const x = new WindowEngine(o);
    const y = new WindowEngine(o);
    const expected: Array<{ rows: string[]; delta: string[]; late: string[] }> = [];
    const held: Cut[] = [];
    const read = (c: Cut) => ({
      rows: allRows(c).map((r) => JSON.stringify(r)).sort(),
      delta: [...c.delta()].map((r) => JSON.stringify(r)),
      late: lateList(c.late),
    });
    let checked = 0;
    for (const e of events) {
      if (e.kind === "tick") {
        x.fold(e.tick);
        y.fold(e.tick);
      } else if (e.kind === "cut") {
        const cx = x.cut();
        expected.push(read(cx));
        cx.release();
        held.push(y.cut());
      }
      // Read held cuts at random later points, in any order.
      while (held.length > 0 && rand() < 0.3) {
        const i = randInt(rand, 0, held.length - 1);
        const c = held.splice(i, 1)[0];
        assert.deepEqual(read(c), expected[c.id], `cut ${c.id} read late`);
        c.release();
        checked++;
      }
    }
    for (const c of held) {
      assert.deepEqual(read(c), expected[c.id], `cut ${c.id} read at the end`);
      c.release();
      checked++;
    }
    assert.equal(checked, expected.length);
    assert.equal(y.unreleasedCuts, 0);
  });
});

Deno.test("randomized: hundreds of open windows per symbol, in random order", () => {
  withSeed(0x5eed_7000, 20, (rand) => {
    const options: RefOptions = {
      windows: pick(rand, [[1], [1, 3], [2, 5]]),
      delay: randInt(rand, 50, 1000),
      idle: 0,
      maxOpen: pick(rand, [1_000_000, 300]),
    };
    const es: Event[] = [];
    let t = 0;
    for (let i = 0; i < 1500; i++) {
      t += randInt(rand, 0, 2);
      const eventTime = rand() < 0.5 ? t : t - randInt(rand, 0, options.delay + 50);
      es.push({
        kind: "tick",
        tick: { symbol: pick(rand, ["A", "B"]), eventTime, price: i % 13, partition: 0, offset: i },
      });
    }
    const s: Scenario = { options, partitions: [0], perPartition: [es] };
    runEngine(rand, s, interleave(rand, s, { p: 0.01, clock: false }), {
      deferP: 0.3,
      restartP: 0.3,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Edge cases and worked examples

const W = 300_000;
const D = 900_000;
const FOUR = [60_000, 300_000, 900_000, 3_600_000];

Deno.test("defaults: one 5 min resolution, 15 min delay, idle = delay, watermark -Infinity", () => {
  const e = new WindowEngine();
  assert.deepEqual(e.windows, [W]);
  assert.equal(e.watermarkDelayMs, D);
  assert.equal(e.idleFinalizeMs, D);
  assert.equal(e.maxOpenWindows, 1_000_000);
  assert.equal(e.watermark(0), -Infinity);
  assert.equal(e.lastOffset(0), undefined);
  assert.deepEqual(e.partitions(), []);
  assert.deepEqual(e.trigger(), {
    windows: [],
    late: [],
    stats: { changed: 0, finalized: 0, forcedFinal: 0, lateSuppressed: 0, idleAdvanced: [] },
  });
  assert.deepEqual([...e.records()], []);
  assert.deepEqual(new WindowEngine({ windows: [3, 1, 2] }).windows, [1, 2, 3], "sorted");
});

Deno.test("single tick produces one full row", () => {
  const e = new WindowEngine();
  assert.equal(e.fold(tick("AAPL", 1_700_000_123_456, 189.5, 42, 3, { dayVolume: 10 })), true);
  assert.equal(e.openWindowCount, 1);
  assert.deepEqual(e.partitions(), [3]);
  assert.equal(e.lastOffset(3), 42);
  assert.equal(e.watermark(3), 1_700_000_123_456 - D);
  assert.deepEqual(e.trigger().windows, [{
    symbol: "AAPL",
    windowMs: W,
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
    volume: 0, // the first dayVolume of a symbol only sets its baseline
    pvSum: 0,
    vwap: null,
  }]);
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
  const e2 = new WindowEngine({ windows: [7] });
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
  assert.equal(e.fold(tick("X", W, 12, 2)), true);
  const out = e.trigger();
  assert.deepEqual(out.late.map((t) => [t.offset, t.watermark, t.lateFor]), [[1, W, [W]]]);
  assert.deepEqual(out.windows.map((r) => [r.windowStart, r.count, r.isFinal]), [
    [W, 1, false],
    [4 * W, 1, false],
  ]);
  // Watermark 299_999: window [0, 300_000) ends one ms after it -> accepted.
  const f = new WindowEngine();
  f.fold(tick("X", W + D - 1, 10, 0));
  assert.equal(f.watermark(0), W - 1);
  assert.equal(f.fold(tick("X", 0, 11, 1)), true);
  // The rule uses the watermark BEFORE the tick: a tick that advances the watermark past its
  // own window is still accepted.
  const g = new WindowEngine({ watermarkDelayMs: 0 });
  assert.equal(g.fold(tick("X", 5, 1, 0)), true);
  assert.equal(g.fold(tick("X", W + 5, 1, 1)), true);
  assert.equal(g.fold(tick("X", W - 1, 1, 2)), false);
});

Deno.test("several resolutions: each follows the contract; a late tick is reported once", () => {
  const e = new WindowEngine({ windows: [3_600_000, 60_000, 300_000], watermarkDelayMs: 60_000 });
  const h = 3_600_000;
  assert.equal(e.fold(tick("A", h + 10_000, 1, 0)), true);
  assert.equal(e.fold(tick("A", h + 400_000, 2, 1)), true); // wm h+340_000
  // h+290_000: the 1m window [h+240k, h+300k) and the 5m window [h, h+300k) end at or below the
  // watermark; the 1h window is open.
  assert.equal(e.fold(tick("A", h + 290_000, 3, 2)), false);
  const out = e.trigger();
  assert.deepEqual(out.late, [{
    symbol: "A",
    eventTime: h + 290_000,
    price: 3,
    partition: 0,
    offset: 2,
    watermark: h + 340_000,
    lateFor: [60_000, 300_000],
  }]);
  assert.deepEqual(out.windows.map((r) => [r.windowMs, r.windowStart - h, r.count, r.isFinal]), [
    [60_000, 0, 1, true],
    [60_000, 360_000, 1, false],
    [300_000, 0, 1, true],
    [300_000, 300_000, 1, false],
    [3_600_000, 0, 3, false],
  ]);
  assert.equal(e.openWindowCount, 3);
});

Deno.test("volume: deltas of the cumulative day volume, session resets, no volume, VWAP", () => {
  const e = new WindowEngine({ windows: [60_000] });
  const m = 60_000;
  e.foldAll([
    tick("V", 1000, 10, 0, 0, { dayVolume: 1000 }), // first tick: baseline only, delta 0
    tick("V", 2000, 11, 1, 0, { dayVolume: 1100 }), // +100
    tick("V", 3000, 12, 2, 0), // no dayVolume: delta 0, baseline kept
    tick("V", 4000, 13, 3, 0, { dayVolume: 1400 }), // +300
    tick("V", m + 1, 20, 4, 0, { dayVolume: 50 }), // decreased: new session, delta 50
    tick("V", m + 2, 30, 5, 0, { dayVolume: 50 }), // equal: delta 0
    tick("FX", 1000, 1.1, 6, 0), // never any volume
  ]);
  const rows = e.trigger().windows;
  assert.deepEqual(rows.map((r) => [r.symbol, r.windowStart, r.volume, r.pvSum, r.vwap]), [
    ["FX", 0, 0, 0, null],
    ["V", 0, 400, 100 * 11 + 300 * 13, (100 * 11 + 300 * 13) / 400],
    ["V", m, 50, 50 * 20, 20],
  ]);
  // Late ticks still advance the baseline (and carry no volume into any window).
  const f = new WindowEngine({ windows: [60_000], watermarkDelayMs: 0 });
  f.fold(tick("V", 5 * m, 1, 0, 0, { dayVolume: 100 }));
  assert.equal(f.fold(tick("V", m, 1, 1, 0, { dayVolume: 180 })), false);
  f.fold(tick("V", 5 * m + 1, 2, 2, 0, { dayVolume: 200 }));
  const [row] = f.trigger().windows;
  assert.deepEqual([row.volume, row.vwap], [20, 2]);
  // Baselines are per partition.
  const g = new WindowEngine();
  g.foldAll([
    tick("S", 1, 1, 0, 0, { dayVolume: 10 }),
    tick("S", 2, 1, 0, 1, { dayVolume: 30 }),
    tick("S", 3, 1, 1, 1, { dayVolume: 35 }),
  ]);
  assert.deepEqual(g.trigger().windows.map((r) => [r.partition, r.volume]), [[0, 0], [1, 5]]);
});

Deno.test("days-old first tick (Yahoo's last close) then live ticks", () => {
  const now = 1_750_000_000_000;
  const old = now - 3 * 86_400_000;
  const e = new WindowEngine();
  assert.equal(e.fold(tick("AAPL", old, 200, 0)), true); // no watermark yet: accepted
  let out = e.trigger();
  assert.deepEqual(out.windows.map((r) => [r.windowStart, r.isFinal]), [[old - (old % W), false]]);
  assert.equal(e.fold(tick("AAPL", now, 201, 1)), true);
  assert.equal(e.fold(tick("AAPL", old + 1, 199, 2)), false); // far behind the watermark now
  out = e.trigger();
  assert.deepEqual(out.windows.map((r) => [r.windowStart, r.count, r.isFinal]), [
    [old - (old % W), 1, true],
    [now - (now % W), 1, false],
  ]);
  assert.equal(out.late.length, 1);
  assert.equal(out.late[0].watermark, now - D);
  assert.equal(e.openWindowCount, 1);
  // Same input in one cut: the old window is emitted once, directly final.
  const f = new WindowEngine();
  f.foldAll([tick("AAPL", old, 200, 0), tick("AAPL", now, 201, 1)]);
  assert.deepEqual(f.trigger().windows.map((r) => r.isFinal), [true, false]);
});

Deno.test("equal timestamps: open takes the lowest offset, close the highest", () => {
  const e = new WindowEngine();
  e.foldAll([tick("T", 1000, 10, 5), tick("T", 1000, 20, 6), tick("T", 1000, 30, 7)]);
  let [r] = e.trigger().windows;
  assert.deepEqual([r.open, r.close, r.high, r.low, r.count], [10, 30, 30, 10, 3]);
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

Deno.test("symbols with quotes, spaces and unicode are distinct keys and survive restore", () => {
  const syms = ['a"b', "a b", "a\\b", "ünï€😀", "A", "a", "a\u0000b"];
  const e = new WindowEngine();
  syms.forEach((s, i) => e.fold(tick(s, 1000 + i, i + 1, i, 0, { dayVolume: i })));
  const records = jsonRoundTrip([...e.records()]);
  const r = WindowEngine.restore(records);
  assert.deepEqual(sortedRecords(r.records()), sortedRecords(records));
  const rows = e.trigger().windows;
  assert.deepEqual(rows.map((x) => x.symbol), [...syms].sort());
  // Codec order of records(): partition, baselines by symbol, windows by (windowMs, symbol).
  assert.deepEqual(
    records.map((x) => "symbol" in x ? `${x.kind[0]}:${x.symbol}` : "p"),
    ["p", ...[...syms].sort().map((s) => `b:${s}`), ...[...syms].sort().map((s) => `w:${s}`)],
  );
});

Deno.test("Neumaier summation: 1e8 + 10_000 × 0.1 and the 1, 1e100, 1, -1e100 case", () => {
  const e = new WindowEngine();
  const prices = [1e8, ...Array(10_000).fill(0.1)];
  prices.forEach((p, i) => e.fold(tick("K", 1000, p, i)));
  let naive = 0;
  for (const p of prices) naive += p;
  const [r] = e.trigger().windows;
  assert.equal(r.sum, 100_001_000);
  assert.notEqual(naive, 100_001_000, "naive summation drifts (sanity check of the test)");
  assert.equal(r.avg, 100_001_000 / 10_001);
  const f = new WindowEngine();
  [1, 1e100, 1, -1e100].forEach((p, i) => f.fold(tick("K", 1000, p, i)));
  assert.equal(f.trigger().windows[0].sum, 2);
  // Compensation survives a restore.
  const g = new WindowEngine();
  [1, 1e100, 1].forEach((p, i) => g.fold(tick("K", 1000, p, i)));
  const h = WindowEngine.restore(jsonRoundTrip([...g.records()]));
  h.fold(tick("K", 1000, -1e100, 3));
  assert.equal(h.trigger().windows[0].sum, 2);
  // Volume and price × volume are compensated too.
  const v = new WindowEngine();
  v.fold(tick("K", 1000, 1, 0, 0, { dayVolume: 0 }));
  v.fold(tick("K", 1000, 1, 1, 0, { dayVolume: 1e16 })); // delta 1e16
  // Then a new session counting 1, 2, ..., 10: ten deltas of 1 that a plain sum would lose.
  for (let i = 1; i <= 10; i++) v.fold(tick("K", 1000, 1, 1 + i, 0, { dayVolume: i }));
  assert.equal(v.trigger().windows[0].volume, 1e16 + 10);
});

Deno.test("offset regression is rejected and leaves the state untouched", () => {
  const e = new WindowEngine();
  e.fold(tick("O", 1000, 1, 10));
  e.fold(tick("O", 1000, 1, 5, 1)); // other partition: independent offsets
  const before = JSON.stringify([...e.records()]);
  for (const off of [10, 9, 0]) {
    assert.throws(
      () => e.fold(tick("O", 2000, 2, off, 0, { dayVolume: 5 })),
      (err: unknown) =>
        err instanceof EngineError && err.name === "EngineError" &&
        err.message.startsWith(`Offset ${off} on partition 0 is not greater`) &&
        err.message.includes("10"),
    );
  }
  assert.equal(JSON.stringify([...e.records()]), before);
  assert.equal(e.lastOffset(0), 10);
  assert.equal(e.fold(tick("O", 2000, 2, 11)), true);
  // foldAll stops at the bad tick, keeping the earlier ones.
  assert.throws(() => e.foldAll([tick("O", 3000, 3, 12), tick("O", 3000, 3, 12)]), EngineError);
  assert.equal(e.lastOffset(0), 12);
});

Deno.test("foldAll with several resolutions: a bad tick keeps the earlier ones", () => {
  const ticks = Array.from({ length: 3000 }, (_, i) => tick("A", i * 1000, 1 + i, i));
  const bad = [...ticks];
  bad[2500] = { ...bad[2500], price: NaN };
  const e = new WindowEngine({ windows: FOUR });
  assert.throws(() => e.foldAll(bad), /^EngineError: Invalid price NaN at partition 0 offset 2500/);
  assert.equal(e.lastOffset(0), 2499);
  const f = new WindowEngine({ windows: FOUR });
  for (const t of ticks.slice(0, 2500)) f.fold(t);
  assert.deepEqual(sortedRecords(e.records()), sortedRecords(f.records()));
  assert.deepEqual(e.trigger(), f.trigger());
  assert.throws(() => e.foldAll([null as unknown as Tick]), TypeError);
});

Deno.test("invalid ticks and options are rejected with typed errors naming the value", () => {
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
    [{ dayVolume: -1 }, /^Invalid dayVolume -1/],
    [{ dayVolume: NaN }, /^Invalid dayVolume NaN/],
    [{ dayVolume: Infinity }, /^Invalid dayVolume Infinity/],
    [{ dayVolume: "5" as unknown as number }, /^Invalid dayVolume "5"/],
    [{ dayVolume: null as unknown as number }, /^Invalid dayVolume null/],
    [{ arrivalMs: NaN }, /^Invalid arrivalMs NaN/],
    [{ arrivalMs: "1" as unknown as number }, /^Invalid arrivalMs "1"/],
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
      [{ windows: [0] }, /^Invalid window length 0/],
      [{ windows: [1.5] }, /^Invalid window length 1.5/],
      [{ windows: [] }, /^Invalid windows \[\]/],
      [{ windows: [5, 5] }, /^Duplicate window length 5/],
      [{ windows: Array.from({ length: 17 }, (_, i) => i + 1) }, /^Invalid windows/],
      [{ watermarkDelayMs: -1 }, /^Invalid watermarkDelayMs -1/],
      [{ watermarkDelayMs: NaN }, /^Invalid watermarkDelayMs NaN/],
      [{ idleFinalizeMs: -1 }, /^Invalid idleFinalizeMs -1/],
      [{ maxOpenWindows: 0 }, /^Invalid maxOpenWindows 0/],
      [{ windowMs: 60_000 } as EngineOptions, /^Unknown option windowMs 60000: use windows/],
    ] as const
  ) {
    assert.throws(
      () => new WindowEngine(opts as EngineOptions),
      (err: unknown) => err instanceof EngineError && re.test(err.message),
      re.source,
    );
  }
  assert.throws(() => e.cut({ nowMs: NaN }), /^EngineError: Invalid cut nowMs NaN/);
  assert.throws(() => e.setFloor(0, { watermark: NaN }), /Invalid floor watermark NaN/);
  assert.throws(() => e.setFloor(0, { replayBelow: -2 }), /Invalid replayBelow -2/);
  assert.throws(() => e.setFloor(-1, {}), /Invalid partition -1/);
});

Deno.test("watermark never decreases and final windows are evicted", () => {
  const e = new WindowEngine({ windows: [10], watermarkDelayMs: 5 });
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
  assert.equal([...e.records()].filter((r) => r.kind === "window").length, 1);
});

Deno.test("cut emits only changed windows, each final window exactly once, in slices", () => {
  const e = new WindowEngine({ windows: [10], watermarkDelayMs: 0 });
  e.foldAll([tick("A", 1, 1, 0), tick("B", 2, 1, 1)]);
  assert.equal(e.trigger().windows.length, 2);
  e.fold(tick("A", 3, 2, 2));
  assert.deepEqual(e.trigger().windows.map((r) => [r.symbol, r.count, r.isFinal]), [
    ["A", 2, false],
  ]);
  e.fold(tick("C", 10, 1, 3)); // watermark 10: both windows [0,10) final, B unchanged
  const c = e.cut();
  assert.deepEqual(c.stats, {
    changed: 1,
    finalized: 2,
    forcedFinal: 0,
    lateSuppressed: 0,
    idleAdvanced: [],
  });
  const slices = [...c.rows(2)];
  assert.deepEqual(slices.map((s) => s.length), [2, 1]);
  assert.deepEqual(
    slices.flat().map((r) => [r.symbol, r.windowStart, r.count, r.isFinal]).sort(),
    [["A", 0, 2, true], ["B", 0, 1, true], ["C", 10, 1, false]],
  );
  assert.equal(c.openWindows, 1);
  c.release();
  assert.equal(c.released, true);
  assert.throws(() => [...c.rows()], /^EngineError: Cut 2 was already released$/);
  assert.throws(() => [...c.delta()], /already released/);
  c.release(); // idempotent
  assert.deepEqual(e.trigger().windows, []);
  assert.deepEqual(e.foldAll([tick("A", 5, 1, 4), tick("A", 15, 1, 5)]), { accepted: 1, late: 1 });
  assert.throws(() => [...e.cut().rows(0)], /Invalid sliceSize 0/);
});

Deno.test("delta: changed metas, baselines and windows, deletions of final windows", () => {
  const e = new WindowEngine({ windows: [10], watermarkDelayMs: 0 });
  e.foldAll([
    tick("A", 1, 1, 0, 0, { dayVolume: 5 }),
    tick("B", 2, 1, 1, 0),
    tick("Z", 1, 1, 0, 1),
  ]);
  let c = e.cut();
  assert.deepEqual([...c.delta()].map((r) => stateKey(r)), [
    "[0,0]",
    '[0,1,"A"]',
    '[0,2,10,"A",0]',
    '[0,2,10,"B",0]',
    "[1,0]",
    '[1,2,10,"Z",0]',
  ]);
  c.release();
  e.fold(tick("A", 12, 2, 2, 0, { dayVolume: 5 })); // same dayVolume: baseline unchanged
  c = e.cut();
  assert.deepEqual([...c.delta()], [
    {
      kind: "partition",
      partition: 0,
      maxEventTime: 12,
      lastOffset: 2,
      floor: null,
      replayBelow: 0,
      lastArrivalMs: null,
    },
    { kind: "window-deleted", partition: 0, windowMs: 10, symbol: "A", start: 0 },
    {
      kind: "window",
      partition: 0,
      windowMs: 10,
      symbol: "A",
      start: 10,
      count: 1,
      sum: 2,
      comp: 0,
      open: 2,
      high: 2,
      low: 2,
      close: 2,
      first: 12,
      last: 12,
      lastOffset: 2,
      volume: 0,
      volumeComp: 0,
      pv: 0,
      pvComp: 0,
    },
    { kind: "window-deleted", partition: 0, windowMs: 10, symbol: "B", start: 0 },
  ]);
  c.release();
  // A window created and finalized between two cuts never reached a checkpoint: no record.
  e.fold(tick("Q", 15, 1, 3, 0));
  e.fold(tick("Q", 40, 1, 4, 0));
  c = e.cut();
  assert.deepEqual(
    [...c.delta()].map((r) => `${r.kind}:${"symbol" in r ? r.symbol : ""}`),
    ["partition:", "window-deleted:A", "window:Q"],
  );
  c.release();
});

Deno.test("copy-on-write: folds, finalization and eviction after a cut leave it unchanged", () => {
  const e = new WindowEngine({ windows: [10, 20], watermarkDelayMs: 0 });
  e.foldAll([tick("A", 1, 1, 0, 0, { dayVolume: 1 }), tick("A", 2, 2, 1, 0, { dayVolume: 3 })]);
  const c1 = e.cut();
  const rows1 = JSON.stringify(allRows(c1));
  const delta1 = JSON.stringify([...c1.delta()]);
  e.foldAll([tick("A", 3, 3, 2, 0, { dayVolume: 10 }), tick("A", 4, 4, 3, 0, { dayVolume: 11 })]);
  const c2 = e.cut(); // c1 still unreleased
  e.fold(tick("A", 25, 5, 4, 0, { dayVolume: 20 })); // finalizes [0,10) and [0,20)
  const c3 = e.cut(); // evicts them
  e.fold(tick("A", 26, 6, 5, 0, { dayVolume: 30 }));
  assert.equal(JSON.stringify(allRows(c1)), rows1);
  assert.equal(JSON.stringify([...c1.delta()]), delta1);
  assert.deepEqual(allRows(c2).map((r) => [r.windowMs, r.count, r.volume, r.isFinal]).sort(), [
    [10, 4, 10, false],
    [20, 4, 10, false],
  ]);
  assert.deepEqual(
    [...c2.delta()].filter((r) => r.kind === "baseline").map((r) =>
      "dayVolume" in r && r.dayVolume
    ),
    [11],
  );
  assert.deepEqual(allRows(c3).map((r) => [r.windowMs, r.windowStart, r.count, r.isFinal]).sort(), [
    [10, 0, 4, true],
    [10, 20, 1, false],
    [20, 0, 4, true],
    [20, 20, 1, false],
  ]);
  // Release out of order: slots are reused only once every older cut is released.
  c3.release();
  c1.release();
  assert.equal(allRows(c2).length, 2);
  c2.release();
  assert.equal(e.unreleasedCuts, 0);
  const rows = e.trigger().windows;
  assert.deepEqual(rows.map((r) => [r.windowMs, r.count, r.close]), [[10, 2, 6], [20, 2, 6]]);
});

Deno.test("idle finalization: every window final within delay + window + one cut after the last tick", () => {
  const rand = mulberry32(7);
  for (const windows of [[W], FOUR, [60_000, 300_000]]) {
    const e = new WindowEngine({ windows });
    const t0 = 1_750_000_000_000;
    let off = 0;
    let t = t0;
    const arrivals = [t0, t0];
    for (let i = 0; i < 2000; i++) {
      t += randInt(rand, 0, 2000);
      const arrival = t + randInt(rand, 0, 500); // ingest shortly after the event
      arrivals[i % 2] = Math.max(arrivals[i % 2], arrival);
      e.fold(
        tick(pick(rand, ["A", "B", "C"]), t, 100 + rand(), off++, i % 2, { arrivalMs: arrival }),
      );
    }
    const last = Math.max(...arrivals);
    const view = new Map<string, WindowRow>();
    const cutEvery = 7_000;
    const deadline = last + D + Math.max(...windows) + cutEvery;
    let now = last;
    let finalAt = -1;
    while (now <= deadline + 10 * cutEvery) {
      // Partition 1 is caught up only from the deadline on: it cannot finalize before.
      const c = e.cut({ nowMs: now, caughtUp: (p) => p === 0 || now >= deadline - cutEvery });
      for (const row of allRows(c)) view.set(rowKey(row), row);
      for (const p of c.stats.idleAdvanced) assert.ok(now - arrivals[p] >= D, "idle only after D");
      c.release();
      if (finalAt < 0 && e.openWindowCount === 0) finalAt = now;
      now += cutEvery;
    }
    assert.ok(finalAt > 0 && finalAt <= deadline, `all final by ${deadline} (at ${finalAt})`);
    assert.ok([...view.values()].every((r) => r.isFinal), "every window emitted final");
    assert.equal(e.meta(0)!.watermark, now - cutEvery - D, "watermark follows now - delay");
    // A later tick for a finalized window is late, for every resolution.
    assert.equal(e.fold(tick("A", t, 1, off++, 0)), false);
    const out = e.trigger({ nowMs: now });
    assert.deepEqual(out.late.map((x) => x.lateFor), [windows]);
  }
  // idleFinalizeMs 0 turns it off; so does a cut without nowMs.
  for (const opts of [{ idleFinalizeMs: 0 }, {}]) {
    const e = new WindowEngine(opts);
    e.fold(tick("A", 1000, 1, 0, 0, { arrivalMs: 1000 }));
    const c = e.cut("idleFinalizeMs" in opts ? { nowMs: 1e12 } : {});
    assert.deepEqual(c.stats.idleAdvanced, []);
    assert.equal(e.openWindowCount, 1);
    c.release();
  }
  // Without arrivalMs a partition never goes idle; the due time tells when idling would finish.
  const e = new WindowEngine();
  e.fold(tick("A", 1000, 1, 0));
  assert.equal(e.cut({ nowMs: 1e12 }).finalizeDueAt, null);
  e.fold(tick("A", 2000, 1, 1, 0, { arrivalMs: 5000 }));
  const c = e.cut({ nowMs: 5000 });
  assert.equal(c.finalizeDueAt, Math.max(5000 + D, W + D));
  assert.equal(e.cut({ nowMs: W + D - 1 }).openWindows, 1);
  const done = e.cut({ nowMs: W + D });
  assert.deepEqual(done.stats.idleAdvanced, [0]);
  assert.equal(done.stats.finalized, 1);
});

Deno.test("open-window bound: floor raised to the smallest open end, forced windows counted", () => {
  const e = new WindowEngine({ windows: [10], watermarkDelayMs: 1000, maxOpenWindows: 3 });
  for (let i = 0; i < 6; i++) e.fold(tick("A", i * 10, i, i));
  assert.equal(e.meta(0)!.openWindows, 3);
  assert.equal(e.meta(0)!.floor, 30); // ends 10, 20, 30 forced final
  assert.equal(e.watermark(0), 30);
  assert.equal(e.fold(tick("A", 25, 9, 6)), false, "a tick below the raised floor is late");
  const out = e.trigger();
  assert.equal(out.stats.forcedFinal, 3);
  assert.deepEqual(out.windows.map((r) => [r.windowStart, r.isFinal]), [
    [0, true],
    [10, true],
    [20, true],
    [30, false],
    [40, false],
    [50, false],
  ]);
  // Several resolutions share one bound; windows ending together are finalized together.
  const f = new WindowEngine({ windows: [10, 20], watermarkDelayMs: 1000, maxOpenWindows: 2 });
  f.fold(tick("A", 5, 1, 0)); // [0,10) and [0,20)
  assert.equal(f.meta(0)!.openWindows, 2);
  f.fold(tick("A", 15, 1, 1)); // [10,20) -> 3 open: floor 10 finalizes [0,10)
  assert.equal(f.meta(0)!.floor, 10);
  f.fold(tick("A", 25, 1, 2)); // [20,30), [20,40): floor 20 finalizes [10,20) and [0,20)
  assert.deepEqual([f.meta(0)!.floor, f.meta(0)!.openWindows], [20, 2]);
  assert.equal(f.trigger().stats.forcedFinal, 3);
  // Restoring into a smaller bound applies it.
  const g = WindowEngine.restore(e.records(), {
    windows: [10],
    watermarkDelayMs: 1000,
    maxOpenWindows: 1,
  });
  assert.equal(g.openWindowCount, 1);
  // Restored windows are clean: only the forced-final ones are emitted; the raised floor is in
  // the delta.
  const gc = g.cut();
  assert.deepEqual(allRows(gc).map((r) => [r.windowStart, r.isFinal]).sort(), [
    [30, true],
    [40, true],
  ]);
  assert.deepEqual(
    [...gc.delta()].map((r) => r.kind === "partition" ? `floor ${r.floor}` : r.kind),
    ["floor 50", "window-deleted", "window-deleted"],
  );
  assert.equal(gc.stats.forcedFinal, 2);
});

Deno.test("floors: setFloor raises the watermark, replayBelow suppresses replayed late ticks", () => {
  const e = new WindowEngine({ windows: [10], watermarkDelayMs: 0 });
  // A rebuild: the previous run had watermark 100 and read up to offset 50.
  e.setFloor(2, { watermark: 100, replayBelow: 50 });
  assert.deepEqual(e.meta(2), {
    partition: 2,
    maxEventTime: null,
    lastOffset: null,
    watermark: 100,
    floor: 100,
    replayBelow: 50,
    lastArrivalMs: null,
    openWindows: 0,
  });
  assert.equal(e.fold(tick("A", 95, 1, 10, 2)), false); // late, replayed: suppressed
  assert.equal(e.fold(tick("A", 105, 1, 11, 2)), true);
  assert.equal(e.fold(tick("A", 99, 1, 50, 2)), false); // late, new: reported
  const out = e.trigger();
  assert.deepEqual(out.late.map((t) => t.offset), [50]);
  assert.equal(out.stats.lateSuppressed, 1);
  // Floors only rise; a floor above open windows finalizes them.
  e.setFloor(2, { watermark: 50, replayBelow: 10 });
  assert.deepEqual([e.meta(2)!.floor, e.meta(2)!.replayBelow], [100, 50]);
  e.setFloor(2, { watermark: 110 });
  const c = e.cut();
  assert.deepEqual(allRows(c).map((r) => [r.windowStart, r.isFinal]), [[100, true]]);
  assert.deepEqual([...c.delta()].map((r) => r.kind), ["partition", "window-deleted"]);
  c.release();
});

Deno.test("wholeState: a cut captures the state when it is no larger than the delta, else null", () => {
  const e = new WindowEngine({ windows: [10, 20], watermarkDelayMs: 100, idleFinalizeMs: 0 });
  // A backlog's cut: every window changed since the previous cut.
  e.foldAll([
    tick("A", 1, 1, 0, 0, { dayVolume: 100 }),
    tick("B", 2, 2, 1),
    tick("A", 12, 3, 2, 0, { dayVolume: 150 }),
  ]);
  const c1 = e.cut({ wholeState: true });
  assert.ok(c1.state !== null, "every open window changed: the whole state");
  const expected = JSON.stringify([...e.records()]); // read right after the cut: the same state
  assert.equal(JSON.stringify(c1.state), expected);
  assert.deepEqual(c1.state.map((r) => r.kind), [
    "partition",
    "baseline",
    "window",
    "window",
    "window",
    "window",
    "window",
  ]);
  assert.equal(c1.state.filter((r) => r.kind === "window").length, c1.openWindows);
  // The state was captured at the cut: folds after it do not change it.
  e.fold(tick("B", 5, 9, 3));
  assert.equal(JSON.stringify(c1.state), expected);
  c1.release();
  assert.ok(c1.state !== null, "release() keeps the state");
  e.cut().release();
  // One window changed of several open: the delta is smaller, no state is captured.
  e.fold(tick("A", 13, 4, 4, 0, { dayVolume: 160 }));
  const c2 = e.cut({ wholeState: true });
  assert.equal(c2.stats.changed, 2);
  assert.equal(c2.openWindows, 5);
  assert.equal(c2.state, null);
  c2.release();
  // Windows made final count as the delta's deletions: finalizing them all captures the state.
  e.fold(tick("A", 145, 5, 5, 0, { dayVolume: 170 }));
  const c3 = e.cut({ wholeState: true });
  assert.equal(c3.stats.finalized, 5);
  assert.ok(c3.state !== null);
  assert.deepEqual(
    c3.state.filter((r) => r.kind === "window").map((r) => "start" in r && r.start),
    [140, 140],
  );
  c3.release();
  assert.equal(e.cut().state, null, "not asked for: null");
  for (const bad of [1, "yes", null]) {
    assert.throws(
      () => e.cut({ wholeState: bad as unknown as boolean }),
      new RegExp(`^EngineError: Invalid cut wholeState ${bad === "yes" ? '"yes"' : bad}`),
    );
  }
});

Deno.test("records(): pending final windows included; reading while folding throws", () => {
  const e = new WindowEngine({ windows: [10], watermarkDelayMs: 0 });
  e.foldAll([tick("A", 1, 1, 0), tick("A", 15, 2, 1)]); // [0,10) final, not yet cut
  const records = [...e.records()];
  assert.deepEqual(records.filter((r) => r.kind === "window").map((r) => "start" in r && r.start), [
    0,
    10,
  ]);
  const r = WindowEngine.restore(records, { windows: [10], watermarkDelayMs: 0 });
  const out = r.trigger();
  assert.deepEqual(out.windows.map((w) => [w.windowStart, w.isFinal]), [[0, true]]);
  assert.equal(out.stats.finalized, 1);
  const it = e.records()[Symbol.iterator]();
  it.next();
  e.fold(tick("A", 16, 1, 2));
  assert.throws(
    () => it.next(),
    /^EngineError: The engine changed while records\(\) was being read/,
  );
});

Deno.test("restore validates every record and names the bad value", () => {
  const opts = { windows: [60_000], watermarkDelayMs: D };
  const e = new WindowEngine(opts);
  e.fold(tick("A", 1000, 1, 0, 0, { dayVolume: 7, arrivalMs: 5 }));
  const good = jsonRoundTrip([...e.records()]);
  assert.equal(WindowEngine.restore(good, opts).openWindowCount, 1);
  const idx = (kind: string) => good.findIndex((r) => r.kind === kind);
  const cases: Array<[(rs: Record<string, unknown>[]) => void, RegExp]> = [
    [(rs) => (rs[idx("window")].start = 5), /^Invalid window start 5 in state record/],
    [(rs) => (rs[idx("window")].count = 0), /^Invalid window count 0/],
    [(rs) => (rs[idx("window")].symbol = ""), /^Invalid window symbol ""/],
    [(rs) => (rs[idx("window")].lastOffset = 9), /^Invalid window lastOffset 9/],
    [(rs) => (rs[idx("window")].sum = "1"), /^Invalid window sum "1"/],
    [(rs) => (rs[idx("window")].pvComp = null), /^Invalid window pvComp null/],
    [(rs) => (rs[idx("window")].last = 70_000), /^Invalid window event times \[1000,70000\]/],
    [(rs) => (rs[idx("window")].windowMs = 300_000), /^Window record windowMs 300000 is not one/],
    [(rs) => rs.push({ ...rs[idx("window")] }), /^Duplicate window record \(partition 0/],
    [(rs) => rs.push({ ...rs[idx("partition")] }), /^Duplicate partition record for partition 0/],
    [(rs) => rs.push({ ...rs[idx("baseline")] }), /^Duplicate baseline record for symbol "A"/],
    [(rs) => (rs[idx("baseline")].dayVolume = -1), /^Invalid baseline dayVolume -1/],
    [(rs) => (rs[idx("partition")].maxEventTime = null), /maxEventTime\/lastOffset pair/],
    [(rs) => (rs[idx("partition")].floor = "x"), /^Invalid floor "x"/],
    [(rs) => (rs[idx("partition")].replayBelow = -1), /^Invalid replayBelow -1/],
    [(rs) => (rs[idx("partition")].lastArrivalMs = NaN), /^Invalid lastArrivalMs NaN/],
    [(rs) => (rs[idx("partition")].partition = 1.5), /^Invalid partition 1.5/],
    [(rs) => rs.splice(idx("partition"), 1), /has no partition record for partition 0/],
    [(rs) => (rs[0].kind = "bogus"), /^Invalid state record kind "bogus"/],
    [
      (rs) =>
        rs.push({ kind: "window-deleted", partition: 0, windowMs: 60_000, symbol: "A", start: 0 }),
      /^Unexpected window-deleted record/,
    ],
  ];
  for (const [mutate, re] of cases) {
    const rs = jsonRoundTrip(good) as unknown as Record<string, unknown>[];
    mutate(rs);
    assert.throws(
      () => WindowEngine.restore(rs as unknown as StateRecord[], opts),
      (err: unknown) => err instanceof EngineError && re.test(err.message),
      re.source,
    );
  }
  assert.throws(
    () => WindowEngine.restore(null as unknown as StateRecord[]),
    /^EngineError: Invalid state records null/,
  );
  assert.deepEqual(WindowEngine.restore([], opts).partitions(), []);
  // Restored partition state: floor, replayBelow and lastArrivalMs come back.
  e.setFloor(0, { watermark: 10, replayBelow: 3 });
  const r = WindowEngine.restore(jsonRoundTrip([...e.records()]), opts);
  assert.deepEqual(r.meta(0), e.meta(0));
});

Deno.test("SEMANTICS.md worked example", () => {
  const day = Date.UTC(2025, 0, 2);
  const at = (h: number, m: number, s: number) => day + ((h * 60 + m) * 60 + s) * 1000;
  const e = new WindowEngine();
  assert.deepEqual(
    [
      e.fold(tick("AAPL", at(9, 31, 10), 100, 0, 0, { dayVolume: 1000 })),
      e.fold(tick("AAPL", at(9, 33, 0), 101, 1, 0, { dayVolume: 1200 })),
      e.fold(tick("AAPL", at(9, 36, 0), 102, 2, 0, { dayVolume: 1500 })),
    ],
    [true, true, true],
  );
  let out = e.trigger();
  assert.deepEqual(
    out.windows.map((r) => [r.windowStart, r.count, r.open, r.close, r.volume, r.vwap, r.isFinal]),
    [
      [at(9, 30, 0), 2, 100, 101, 200, 101, false],
      [at(9, 35, 0), 1, 102, 102, 300, 102, false],
    ],
  );
  assert.equal(e.watermark(0), at(9, 21, 0));
  assert.equal(e.fold(tick("AAPL", at(9, 52, 30), 103, 3, 0, { dayVolume: 1600 })), true);
  assert.equal(e.watermark(0), at(9, 37, 30));
  assert.equal(e.fold(tick("AAPL", at(9, 34, 59), 99, 4, 0, { dayVolume: 1700 })), false);
  assert.equal(e.fold(tick("AAPL", at(9, 38, 0), 104, 5, 0, { dayVolume: 1900 })), true);
  out = e.trigger();
  assert.deepEqual(
    out.windows.map((r) => [r.windowStart, r.count, r.avg, r.close, r.volume, r.vwap, r.isFinal]),
    [
      [at(9, 30, 0), 2, 100.5, 101, 200, 101, true],
      [at(9, 35, 0), 2, 103, 104, 500, (300 * 102 + 200 * 104) / 500, false],
      [at(9, 50, 0), 1, 103, 103, 100, 103, false],
    ],
  );
  assert.deepEqual(out.late, [{
    symbol: "AAPL",
    eventTime: at(9, 34, 59),
    price: 99,
    partition: 0,
    offset: 4,
    watermark: at(9, 37, 30),
    lateFor: [W],
  }]);
  assert.equal(e.openWindowCount, 2);
});

Deno.test("a cut's delta is in codec order with many partitions and symbols, and long runs of one symbol", () => {
  // Cut.delta() counts windows into (partition, resolution, symbol) groups, unless the groups
  // would outnumber the windows (a comparison sort then), and sorts a group of more than 32
  // windows with the built-in sort: this covers both, with windows folded out of time order.
  const T = Date.UTC(2026, 0, 5, 14, 0, 0);
  const rand = mulberry32(7);
  const e = new WindowEngine({ windows: [60_000, 300_000], watermarkDelayMs: 86_400_000 });
  const store = new Map<string, StateRecord>();
  const offsets = new Map<number, number>();
  const fold = (symbol: string, eventTime: number, partition: number) => {
    const offset = offsets.get(partition) ?? 0;
    offsets.set(partition, offset + 1);
    e.fold(tick(symbol, eventTime, 100 + rand(), offset, partition, { dayVolume: offset * 10 }));
  };
  // 60 partitions x 25 symbols, each with windows folded latest first: 180k groups for 6000.
  for (let p = 0; p < 60; p++) {
    for (let i = 0; i < 25; i++) {
      for (const m of [3, 2, 1]) fold(`P${p}_${String(i).padStart(2, "0")}`, T + m * 60_000, p);
    }
  }
  const c1 = e.cut();
  const d1 = [...c1.delta()];
  c1.release();
  assert.ok(d1.length > 6000, `${d1.length} records`);
  applyDelta(store, d1);
  // One symbol: 120 one-minute windows in random order (groups of 120 and 24 windows).
  const minutes = Array.from({ length: 120 }, (_, i) => i);
  for (let i = minutes.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [minutes[i], minutes[j]] = [minutes[j], minutes[i]];
  }
  for (const m of minutes) fold("LONG", T + 3_600_000 + m * 60_000 + 1, 0);
  const c2 = e.cut();
  const d2 = [...c2.delta()];
  c2.release();
  assert.ok(d2.filter((r) => r.kind === "window").length >= 144);
  applyDelta(store, d2);
  assert.deepEqual(sortedRecords(store.values()), sortedRecords(e.records()));
});
