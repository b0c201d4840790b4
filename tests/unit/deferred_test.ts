// Open rows held back by buffer-full triggers (aggregate/deferred.ts) against a reference that
// writes every cut in full: the real engine, random ticks (late, out of order, two partitions,
// two resolutions, some symbols on both partitions), random buffer-full triggers, retried
// commits and crashes with a restart from the state, each applied to a model of price_windows
// with the sink's version guard.
import assert from "node:assert/strict";
import { WindowEngine, type WindowRow } from "../../aggregate/engine.ts";
import { DeferredRows, MAX_DEFERRED_ROWS } from "../../aggregate/deferred.ts";
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

Deno.test("deferred rows: random buffer-full triggers, retries and crashes converge to the full writes", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const r = rng(seed);
    const n = 1500;
    const ticks = Array.from({ length: n }, (_, i) => {
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
    let deferred = new DeferredRows();
    let flagged = false; // the checkpoint's openRowsDeferred
    for (let i = 0; i < n;) {
      const step = 1 + Math.floor(r() * 120);
      for (const t of ticks.slice(i, i + step)) {
        full.fold(t);
        engine.fold(t);
      }
      i += step;
      const last = i >= n;
      const defer = !last && r() < 0.6;
      const refCut = full.cut();
      reference.apply(refCut.rows(7));
      refCut.release();
      const cut = engine.cut();
      const plan = deferred.plan((born) => cut.rows(7, { born }), {
        defer,
        changed: cut.stats.changed,
        sliceSize: 5,
      });
      assert.equal(plan.defer, defer);
      // A retried commit: the first attempt's rows never reach the table (rolled back).
      if (r() < 0.2) {
        for (const _ of plan.rows()) { /* rolled back */ }
        if (r() < 0.5) { for (const _ of plan.newRows()) { /* rolled back */ } }
      }
      const written: WindowRow[] = [];
      for (const s of plan.rows()) written.push(...s);
      const fresh: WindowRow[] = [];
      for (const s of plan.newRows()) fresh.push(...s);
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
      if (defer) assert.ok(written.every((w) => w.isFinal), `seed ${seed}: only finals held`);
      plan.committed();
      flagged = defer && (deferred.size > 0 || cut.stats.changed > 0);
      cut.release();
      if (!defer) {
        assert.equal(deferred.size, 0);
        assert.deepEqual(table.sorted(), reference.sorted(), `seed ${seed} at tick ${i}`);
      } else {
        // Finals are never held: every final row of the reference is already written.
        for (const [k, v] of reference.rows) {
          if (v.isFinal) assert.deepEqual(table.rows.get(k), v, `seed ${seed}: final ${k}`);
        }
      }
      if (!last && r() < 0.15) {
        // Crash after the commit: a new process restores the checkpointed state.
        engine = WindowEngine.restore(engine.records(), OPTIONS);
        deferred = new DeferredRows();
        if (flagged) deferred.restore(engine.openRows(3));
      }
    }
    assert.deepEqual(table.sorted(), reference.sorted(), `seed ${seed}: final state`);
    assert.ok(table.writes <= reference.writes + 2 * n, `seed ${seed}: writes bounded`);
    assert.ok(newSeen > 0, `seed ${seed}: some rows went as new`);
  }
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
    const deferred = new DeferredRows();
    const table = new Table();
    for (let i = 0; i < ticks.length; i += 1000) {
      for (const t of ticks.slice(i, i + 1000)) engine.fold(t);
      const cut = engine.cut();
      const plan = deferred.plan((born) => cut.rows(undefined, { born }), {
        defer: deferFull && i + 1000 < ticks.length,
        changed: cut.stats.changed,
      });
      table.apply(plan.rows());
      const before = table.rows.size;
      for (const slice of plan.newRows()) {
        for (const w of slice) {
          assert.ok(
            !table.rows.has(`${w.partition}|${w.symbol}|${w.windowMs}|${w.windowStart}`),
            "new",
          );
        }
        table.apply([slice]);
      }
      inserted += table.rows.size - before;
      plan.committed();
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

Deno.test("deferred rows: a buffer-full trigger beyond the bound writes its open rows", () => {
  const d = new DeferredRows();
  const row = (i: number): WindowRow => ({
    symbol: `S${i}`,
    windowMs: 60_000,
    windowStart: T0,
    windowEnd: T0 + 60_000,
    count: 1,
    sum: 1,
    avg: 1,
    open: 1,
    high: 1,
    low: 1,
    close: 1,
    firstEventTime: T0,
    lastEventTime: T0,
    partition: 0,
    lastOffset: i,
    isFinal: false,
    volume: 0,
    pvSum: 0,
    vwap: null,
  });
  const rows = [Array.from({ length: 10 }, (_, i) => row(i))];
  const p = d.plan((born) => born === "this-cut" ? rows : [], { defer: true, changed: 10 });
  assert.equal([...p.rows()].flat().length, 0);
  assert.equal([...p.newRows()].flat().length, 0);
  p.committed();
  assert.equal(d.size, 10);
  const q = d.plan(() => [], { defer: true, changed: MAX_DEFERRED_ROWS });
  assert.equal(q.defer, false, "over the bound: written");
  assert.equal([...q.rows()].flat().length, 0);
  assert.equal([...q.newRows()].flat().length, 10, "the held rows go with it, as new rows");
  q.committed();
  assert.equal(d.size, 0);
});
