/**
 * Which triggers hold their open window rows back (pure: no I/O, no clock).
 *
 * Held back: a trigger that runs because `--max-buffered` records wait (a backlog, a burst)
 * bounds what a crash would replay: it checkpoints the state and offsets, writes the windows that
 * became final (evicted from the state, so they must be in PostgreSQL now), the late ticks and the
 * progress row, and holds back the open windows it changed. The next trigger of any other kind
 * (interval, caught-up, final) writes them, in their version as of its cut. On a backlog the open
 * windows of each buffer-full trigger were rewritten by the next one anyway; holding them back
 * writes each window about once instead of twice (open, then final). Results still appear at
 * every interval, as update mode promises.
 *
 * The engine does the rows' part (`CutInput.hold`, engine.ts): a held cut's rows are its final
 * windows; the next cut that does not hold also writes every window a held cut changed that is
 * still open, and counts as new (a plain INSERT, `born: "this-cut"`) every window created since
 * the last cut that wrote. No row is kept in memory meanwhile: the windows are the engine's.
 *
 * Crash safety: the checkpoint records that rows were held back (`openRowsDeferred`); a restart
 * from it re-sends every restored window as an open row at its first writing trigger
 * (`WindowEngine.resendRestored()`). Replayed versions the database already holds are no-ops (the
 * sink's version guard).
 * @module
 */

/** Most changed windows held back at once; a buffer-full trigger beyond it writes its open rows. */
export const MAX_DEFERRED_ROWS = 100_000;

/** Options of {@linkcode HeldRows.shouldHold}. */
export interface HoldOptions {
  /** The trigger runs because `--max-buffered` records wait and the log is not read to its end. */
  bufferFull: boolean;
  /** Windows changed since the previous cut (`WindowEngine.changedSinceCut`). */
  changed: number;
}

/** Counts what held cuts left for the next writing one, and decides whether a trigger holds. */
export class HeldRows {
  #changes = 0;

  /**
   * Changed windows the held cuts since the last writing cut reported (an upper bound of the
   * windows held: a window changed by two of them counts twice); 0 when nothing is held.
   */
  get pending(): number {
    return this.#changes;
  }

  /** Whether a trigger holds its open rows back: buffer-full, and within the bound. */
  shouldHold(options: HoldOptions): boolean {
    return options.bufferFull && this.#changes + options.changed <= MAX_DEFERRED_ROWS;
  }

  /**
   * What `pending` becomes once a cut that held (or not) and reported `changed` windows has
   * committed; the checkpoint of that cut says rows are held when it is above 0.
   */
  after(hold: boolean, changed: number): number {
    return hold ? this.#changes + changed : 0;
  }

  /** Records a committed cut (`after()`'s value). */
  committed(hold: boolean, changed: number): void {
    this.#changes = this.after(hold, changed);
  }

  /** A restart from a checkpoint that held rows: `count` restored windows are to be re-sent. */
  restored(count: number): void {
    this.#changes = count;
  }
}
