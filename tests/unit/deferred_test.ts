// Open rows held back by buffer-full triggers (the engine's `hold`, aggregate/deferred.ts) against
// a reference that writes every cut in full: the real engine, random ticks (late, out of order,
// two partitions, two resolutions, some symbols on both partitions), random buffer-full triggers,
// folds between a cut and the reading of its rows, retried commits and crashes with a restart from
// the state, each applied to a model of price_windows with the sink's version guard.
import assert from "node:assert/strict";
import { type Tick, WindowEngine, type WindowRow } from "../../aggregate/engine.ts";
import { HeldRows, MAX_DEFERRED_ROWS } from "../../aggregate/deferred.ts";
import { mulberry32 as rng } from "../../common/prng.ts";

/**
 * price_windows with the sink's guard: final rows never change, otherwise newer versions win.
 * Keyed by engine window (partition included): the real table keeps one row for a symbol that
 * comes on two partitions, and which of their versions stays depends on the order of the writes.
 */
class Table {
  rows = new Map<string, WindowRow>();
  writes = 0;
  apply(slices: Iterable<readonly WindowRow[]>): void {
    for (const slice of slices) {
      for (const v of slice) {
        this.writes++;
        const k = `${v.partition}|${v.symbol}|${v.windowMs}|${v.windowStart}`;
        const cur = this.rows.get(k);
        if (cur?.isFinal) continue;
        const newer = cur === undefined ||
          (v.partition === cur.partition
            ? (v.lastOffset - cur.lastOffset || Number(v.isFinal) - Number(cur.isFinal)) > 0
            : (v.lastEventTime - cur.lastEventTime || v.partition - cur.partition) > 0);
        if (newer) this.rows.set(k, v);
      }
    }
  }
  sorted(): WindowRow[] {
    return [...this.rows.entries()].sort(([a], [b]) => a < b ? -1 : 1).map(([, v]) => v);
  }
}

const OPTIONS = { windows: [60_000, 300_000], watermarkDelayMs: 120_000, idleFinalizeMs: 0 };
const T0 = Date.UTC(2026, 0, 5, 14, 0, 0);

Deno.test("deferred rows: random buffer-full triggers, late reads, retries and crashes converge to the full writes", () => {
  let carriedLate = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const r = rng(seed);
    const n = 1500;
    const ticks: Tick[] = Array.from({ length: n }, (_, i) => {
      const partition = i % 2;
      return {
        // Most symbols stay on one partition; "Sx_" ones come on both (a re-keyed producer).
        symbol: `S${r() < 0.2 ? "x" : partition}_${Math.floor(r() * 4)}`,
        eventTime: T0 + i * 2_000 - Math.floor(r() < 0.1 ? r() * 400_000 : r() * 5_000),
        price: 100 + Math.round(r() * 1000) / 100,
        partition,
        offset: Math.floor(i / 2),
        dayVolume: 1000 + i,
      };
    });
    const reference = new Table();
    let newSeen = 0;
    const table = new Table();
    const full = new WindowEngine(OPTIONS);
    let engine = new WindowEngine(OPTIONS);
    let held = new HeldRows();
    let flagged = false; // the checkpoint's openRowsDeferred
    let folded = 0; // ticks folded into `engine` (it may run ahead of `full`)
    for (let i = 0; i < n;) {
      // Cuts cover the same ticks in both engines: at least those `engine` folded ahead.
      const step = Math.max(1 + Math.floor(r() * 120), folded - i);
      for (const t of ticks.slice(i, i + step)) full.fold(t);
      for (const t of ticks.slice(folded, i + step)) engine.fold(t);
      folded = Math.max(folded, i + step);
      i += step;
      const last = i >= n;
      const defer = !last && r() < 0.6;
      const refCut = full.cut();
      reference.apply(refCut.rows(7));
      refCut.release();
      const hold = held.shouldHold({ bufferFull: defer, changed: engine.changedSinceCut });
      assert.equal(hold, defer);
      const cut = engine.cut({ hold });
      if (!last && r() < 0.5) {
        // The aggregator folds on while a trigger commits: the next ticks, before any row is read.
        const ahead = ticks.slice(i, i + 1 + Math.floor(r() * 60));
        for (const t of ahead) engine.fold(t);
        folded = i + ahead.length;
        carriedLate++;
      }
      // A retried commit: the first attempt's rows never reach the table (rolled back).
      if (r() < 0.2) {
        for (const _ of cut.rows(5, { born: "before" })) { /* rolled back */ }
        if (r() < 0.5) { for (const _ of cut.rows(5, { born: "this-cut" })) { /* rolled back */ } }
      }
      const written: WindowRow[] = [];
      for (const s of cut.rows(5, { born: "before" })) written.push(...s);
      const fresh: WindowRow[] = [];
      for (const s of cut.rows(5, { born: "this-cut" })) fresh.push(...s);
      // Rows said to be new are not in the table: a plain INSERT of them succeeds.
      for (const w of fresh) {
        const k = `${w.partition}|${w.symbol}|${w.windowMs}|${w.windowStart}`;
        assert.ok(!table.rows.has(k), `seed ${seed}: ${k} is said to be new but is stored`);
      }
      newSeen += fresh.length;
      written.push(...fresh);
      table.apply([written]);
      const keys = written.map((w) => `${w.partition}|${w.windowMs}|${w.windowStart}|${w.symbol}`);
      assert.equal(new Set(keys).size, keys.length, `seed ${seed}: a window twice in one commit`);
      if (hold) assert.ok(written.every((w) => w.isFinal), `seed ${seed}: only finals held`);
      flagged = held.after(hold, cut.stats.changed) > 0;
      held.committed(hold, cut.stats.changed);
      cut.release();
      if (!hold) {
        assert.equal(held.pending, 0);
        assert.deepEqual(table.sorted(), reference.sorted(), `seed ${seed} at tick ${i}`);
      } else {
        // Finals are never held: every final row of the reference is already written.
        for (const [k, v] of reference.rows) {
          if (v.isFinal) assert.deepEqual(table.rows.get(k), v, `seed ${seed}: final ${k}`);
        }
      }
      if (!last && folded === i && r() < 0.15) {
        // Crash after the commit: a new process restores the checkpointed state.
        engine = WindowEngine.restore(engine.records(), OPTIONS);
        held = new HeldRows();
        if (flagged) held.restored(engine.resendRestored());
      }
    }
    assert.deepEqual(table.sorted(), reference.sorted(), `seed ${seed}: final state`);
    assert.ok(table.writes <= reference.writes + 2 * n, `seed ${seed}: writes bounded`);
    assert.ok(newSeen > 0, `seed ${seed}: some rows went as new`);
  }
  assert.ok(carriedLate > 200, `folds between a cut and its rows exercised (${carriedLate})`);
});

Deno.test("deferred rows: held rows write each window about once on a backlog, not open then final", () => {
  const ticks = Array.from({ length: 20_000 }, (_, i) => ({
    symbol: `S${i % 50}`,
    eventTime: T0 + i * 300,
    price: 100 + (i % 7),
    partition: 0,
    offset: i,
  }));
  let inserted = 0;
  const writes = (deferFull: boolean) => {
    const engine = new WindowEngine(OPTIONS);
    const table = new Table();
    for (let i = 0; i < ticks.length; i += 1000) {
      for (const t of ticks.slice(i, i + 1000)) engine.fold(t);
      const cut = engine.cut({ hold: deferFull && i + 1000 < ticks.length });
      table.apply(cut.rows(undefined, { born: "before" }));
      const before = table.rows.size;
      for (const slice of cut.rows(undefined, { born: "this-cut" })) {
        for (const w of slice) {
          assert.ok(
            !table.rows.has(`${w.partition}|${w.symbol}|${w.windowMs}|${w.windowStart}`),
            "new",
          );
        }
        table.apply([slice]);
      }
      inserted += table.rows.size - before;
      cut.release();
    }
    return table;
  };
  const all = writes(false);
  inserted = 0;
  const held = writes(true);
  assert.equal(inserted, held.rows.size, "every window went in as a new row");
  assert.deepEqual(held.sorted(), all.sorted());
  assert.ok(held.writes < 0.75 * all.writes, `${held.writes} writes against ${all.writes}`);
});

Deno.test("deferred rows: a buffer-full trigger beyond the bound writes its open rows, and the held ones", () => {
  const held = new HeldRows();
  assert.equal(held.shouldHold({ bufferFull: false, changed: 0 }), false, "not buffer-full");
  assert.equal(held.shouldHold({ bufferFull: true, changed: MAX_DEFERRED_ROWS }), true);
  assert.equal(held.shouldHold({ bufferFull: true, changed: MAX_DEFERRED_ROWS + 1 }), false);
  const engine = new WindowEngine(OPTIONS);
  const fold = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      engine.fold({ symbol: `S${i}`, eventTime: T0, price: 1, partition: 0, offset: i });
    }
  };
  fold(0, 10);
  const h1 = held.shouldHold({ bufferFull: true, changed: engine.changedSinceCut });
  const c1 = engine.cut({ hold: h1 });
  assert.equal(h1, true);
  assert.deepEqual([...c1.rows()].flat(), [], "open rows held back");
  assert.equal(held.after(h1, c1.stats.changed), 20, "two resolutions, ten symbols");
  held.committed(h1, c1.stats.changed);
  c1.release();
  // Nearly the bound's worth already counted: the next buffer-full trigger writes.
  fold(10, 11);
  const h2 = held.shouldHold({ bufferFull: true, changed: MAX_DEFERRED_ROWS - 15 });
  assert.equal(h2, false, "over the bound: written");
  const c2 = engine.cut({ hold: h2 });
  assert.equal([...c2.rows(undefined, { born: "before" })].flat().length, 0);
  const fresh = [...c2.rows(undefined, { born: "this-cut" })].flat();
  assert.equal(fresh.length, 22, "the held rows go with it, as new rows");
  assert.ok(fresh.every((w) => !w.isFinal));
  held.committed(h2, c2.stats.changed);
  c2.release();
  assert.equal(held.pending, 0);
  assert.throws(() => engine.resendRestored(), /before the first cut/);
  assert.throws(
    () => engine.cut({ hold: "yes" as unknown as boolean }),
    /^EngineError: Invalid cut hold "yes": expected a boolean/,
  );
});
