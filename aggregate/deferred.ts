/**
 * Which window rows a commit writes, and how (pure: no I/O, no clock).
 *
 * Held back: a trigger that runs because `--max-buffered` records wait (a backlog, a burst)
 * bounds what a crash would replay: it checkpoints the state and offsets, writes the windows that
 * became final (evicted from the state, so they must be in PostgreSQL now), the late ticks and the
 * progress row, and holds back the open windows it changed. The next trigger of any other kind
 * (interval, caught-up, final) writes them, minus those a later cut superseded (a newer open
 * version or the final row of the same window). On a backlog the open windows of each buffer-full
 * trigger were rewritten by the next one anyway; holding them back writes each window about once
 * instead of twice (open, then final). Results still appear at every interval, as update mode
 * promises.
 *
 * New rows: a window this run created (not restored) and never wrote is not in the table, unless
 * a run that crashed wrote it before its checkpoint (a replay) or a rebuild re-creates it. Those
 * rows go to {@linkcode DeferralPlan.newRows}, which the sink writes with a plain INSERT (half
 * the cost of an upsert's speculative insertion for a new row) and, on a conflict, with the
 * upsert.
 *
 * Crash safety: the checkpoint records that rows were held back (`openRowsDeferred`); a restart
 * from it re-sends every restored window as an open row at its first writing trigger
 * ({@linkcode DeferredRows.restore}). Replayed versions the database already holds are no-ops
 * (the sink's version guard).
 * @module
 */

import type { WindowRow } from "./engine.ts";

/** Most rows held back at once; a buffer-full trigger beyond it writes its open rows. */
export const MAX_DEFERRED_ROWS = 100_000;

/** A held row, and whether its window was ever written by this run or a restored state. */
interface Held {
  row: WindowRow;
  /** Never written, and created by this run: not in the table (short of a replay). */
  isNew: boolean;
  /** The pass over a cut's rows that last met this window ({@linkcode HeldIndex.pass}). */
  seen: number;
}

/** Where `row`'s engine window (partition, resolution, start, symbol) is in `list`, or -1. */
function indexIn(list: readonly Held[], row: WindowRow): number {
  for (let i = 0; i < list.length; i++) {
    const r = list[i].row;
    if (
      r.windowStart === row.windowStart && r.windowMs === row.windowMs &&
      r.partition === row.partition && r.symbol === row.symbol
    ) return i;
  }
  return -1;
}

/**
 * The held rows by window: by symbol, then start, then the few (partition, resolution) pairs
 * that share both. No key string is built per row (it cost more than the rest of this module).
 */
class HeldIndex {
  #bySymbol = new Map<string, Map<number, Held[]>>();
  #size = 0;
  /** Counts the passes over a cut's rows; `Held.seen` holds the last pass that met a window. */
  pass = 0;

  get size(): number {
    return this.#size;
  }

  get(row: WindowRow): Held | undefined {
    const list = this.#bySymbol.get(row.symbol)?.get(row.windowStart);
    if (list === undefined) return undefined;
    const i = indexIn(list, row);
    return i < 0 ? undefined : list[i];
  }

  /** Holds `h`, in place of the held row of the same window if there is one. */
  set(h: Held): void {
    const row = h.row;
    let starts = this.#bySymbol.get(row.symbol);
    if (starts === undefined) this.#bySymbol.set(row.symbol, starts = new Map());
    const list = starts.get(row.windowStart);
    if (list === undefined) {
      starts.set(row.windowStart, [h]);
      this.#size++;
      return;
    }
    const i = indexIn(list, row);
    if (i >= 0) {
      list[i] = h;
      return;
    }
    list.push(h);
    this.#size++;
  }

  /** Drops the held row of `row`'s window, if there is one. */
  delete(row: WindowRow): void {
    const starts = this.#bySymbol.get(row.symbol);
    const list = starts?.get(row.windowStart);
    if (starts === undefined || list === undefined) return;
    const i = indexIn(list, row);
    if (i < 0) return;
    this.#size--;
    if (list.length > 1) list.splice(i, 1);
    else if (starts.size > 1) starts.delete(row.windowStart);
    else this.#bySymbol.delete(row.symbol);
  }

  clear(): void {
    this.#bySymbol.clear();
    this.#size = 0;
  }

  *values(): Iterable<Held> {
    for (const starts of this.#bySymbol.values()) {
      for (const list of starts.values()) yield* list;
    }
  }
}

/** The cut's rows: of the windows created since the previous cut, or of the others. */
export type CutRows = (born: "this-cut" | "before") => Iterable<readonly WindowRow[]>;

/** What one commit writes, and how the held rows change once it has committed. */
export interface DeferralPlan {
  /** Whether this commit holds its open rows back. */
  readonly defer: boolean;
  /** Rows the table may hold already (the upsert); iterate it before `newRows()`. */
  rows(): Iterable<readonly WindowRow[]>;
  /** Rows the table should not hold yet (a plain INSERT, the upsert on a conflict). */
  newRows(): Iterable<readonly WindowRow[]>;
  /** Applies the plan to the held rows; call once, after the commit succeeded. */
  committed(): void;
}

/** Options of {@linkcode DeferredRows.plan}. */
export interface PlanOptions {
  /** Hold the cut's open rows back (a buffer-full trigger). */
  defer: boolean;
  /** Open rows the cut changed (bounds what is held). */
  changed: number;
  /** Rows per slice of the rows this module gathers (default 5000). */
  sliceSize?: number;
}

/** Slices of at most `size` of `rows`. */
function* sliced<T>(rows: Iterable<T>, size: number): Iterable<T[]> {
  let out: T[] = [];
  for (const r of rows) {
    out.push(r);
    if (out.length === size) {
      yield out;
      out = [];
    }
  }
  if (out.length !== 0) yield out;
}

/** The open rows held back, by window. */
export class DeferredRows {
  #held = new HeldIndex();

  /** Rows held back now. */
  get size(): number {
    return this.#held.size;
  }

  /** Holds `rows` back as if a buffer-full trigger had cut them (a restart's restored windows). */
  restore(rows: Iterable<readonly WindowRow[]>): void {
    for (const slice of rows) {
      for (const row of slice) this.#held.set({ row, isNew: false, seen: 0 });
    }
  }

  /**
   * Plans one commit of the cut's rows. Deferring is refused when it would hold more than
   * {@linkcode MAX_DEFERRED_ROWS}. `rows()` and `newRows()` may be iterated again (a retried
   * commit), `rows()` first each time.
   */
  plan(cutRows: CutRows, options: PlanOptions): DeferralPlan {
    const held = this.#held;
    const defer = options.defer && held.size + options.changed <= MAX_DEFERRED_ROWS;
    const size = options.sliceSize ?? 5000;
    // Filled by the latest iteration: what the commit changes in `held`, and the rows of windows
    // held while new (they go with the new rows). The held windows this cut superseded are
    // marked with the iteration's pass number.
    let hold: Held[] = [];
    let drop: WindowRow[] = [];
    let promoted: WindowRow[] = [];
    let pass = 0;
    return {
      defer,
      *rows() {
        hold = [];
        drop = [];
        promoted = [];
        pass = ++held.pass;
        for (const slice of cutRows("before")) {
          const out: WindowRow[] = [];
          for (const row of slice) {
            const h = held.size === 0 ? undefined : held.get(row);
            if (h !== undefined) h.seen = pass;
            if (defer && !row.isFinal) {
              hold.push({ row, isNew: h?.isNew ?? false, seen: 0 });
              continue;
            }
            if (defer && h !== undefined) drop.push(row);
            (h?.isNew ? promoted : out).push(row);
          }
          if (out.length !== 0) yield out;
        }
        if (defer) return;
        const rest = (function* () {
          for (const h of held.values()) if (!h.isNew && h.seen !== pass) yield h.row;
        })();
        yield* sliced(rest, size);
      },
      *newRows() {
        for (const slice of cutRows("this-cut")) {
          if (!defer) {
            yield slice;
            continue;
          }
          const finals: WindowRow[] = [];
          for (const row of slice) {
            if (row.isFinal) finals.push(row);
            else hold.push({ row, isNew: true, seen: 0 });
          }
          if (finals.length !== 0) yield finals;
        }
        yield* sliced(promoted, size);
        if (defer) return;
        const rest = (function* () {
          for (const h of held.values()) if (h.isNew && h.seen !== pass) yield h.row;
        })();
        yield* sliced(rest, size);
      },
      committed() {
        if (!defer) {
          held.clear();
          return;
        }
        for (const row of drop) held.delete(row);
        for (const h of hold) held.set(h);
      },
    };
  }
}
