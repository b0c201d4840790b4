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

/** The key of one engine window: partition, resolution, start and symbol. */
function keyOf(r: WindowRow): string {
  return `${r.partition}\u0000${r.windowMs}\u0000${r.windowStart}\u0000${r.symbol}`;
}

/** A held row, and whether its window was ever written by this run or a restored state. */
interface Held {
  row: WindowRow;
  /** Never written, and created by this run: not in the table (short of a replay). */
  isNew: boolean;
  /** Its key, when already computed. */
  key?: string;
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
  #held = new Map<string, Held>();

  /** Rows held back now. */
  get size(): number {
    return this.#held.size;
  }

  /** Holds `rows` back as if a buffer-full trigger had cut them (a restart's restored windows). */
  restore(rows: Iterable<readonly WindowRow[]>): void {
    for (const slice of rows) {
      for (const row of slice) this.#held.set(keyOf(row), { row, isNew: false });
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
    // Filled by the latest iteration: what the commit changes in `held`, the rows of windows
    // held while new (they go with the new rows), and the held windows this cut superseded.
    let hold: Held[] = [];
    let drop: string[] = [];
    let promoted: WindowRow[] = [];
    let seen = new Set<string>();
    return {
      defer,
      *rows() {
        hold = [];
        drop = [];
        promoted = [];
        seen = new Set();
        for (const slice of cutRows("before")) {
          const out: WindowRow[] = [];
          for (const row of slice) {
            const k = held.size === 0 ? null : keyOf(row);
            const h = k === null ? undefined : held.get(k);
            if (h !== undefined) seen.add(k!);
            if (defer && !row.isFinal) {
              hold.push({ row, isNew: h?.isNew ?? false, key: k ?? undefined });
              continue;
            }
            if (defer && h !== undefined) drop.push(k!);
            (h?.isNew ? promoted : out).push(row);
          }
          if (out.length !== 0) yield out;
        }
        if (defer) return;
        const rest = (function* () {
          for (const [k, h] of held) if (!h.isNew && !seen.has(k)) yield h.row;
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
            else hold.push({ row, isNew: true });
          }
          if (finals.length !== 0) yield finals;
        }
        yield* sliced(promoted, size);
        if (defer) return;
        const rest = (function* () {
          for (const [k, h] of held) if (h.isNew && !seen.has(k)) yield h.row;
        })();
        yield* sliced(rest, size);
      },
      committed() {
        if (!defer) {
          held.clear();
          return;
        }
        for (const k of drop) held.delete(k);
        for (const h of hold) held.set(h.key ?? keyOf(h.row), h);
      },
    };
  }
}
