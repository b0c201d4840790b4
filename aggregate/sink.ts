/**
 * The PostgreSQL sink (schema v2): one transaction per trigger (two for a large one, below), one
 * upsert statement per slice of window rows (`INSERT ... SELECT ... ON CONFLICT ... DO UPDATE ...
 * WHERE`), the late ticks (`ON CONFLICT DO NOTHING`) and the progress row.
 *
 * Rows: `price_windows` is keyed by (topic, symbol, window_length, window_start).
 * - A row with `is_final` is never changed again (final rows are immutable).
 * - Otherwise a version applies only when it is newer. Within one Kafka partition a row's version
 *   is `(last_offset, is_final)`; rows of one key coming from a DIFFERENT partition (the topic was
 *   re-partitioned and the symbol moved) are ordered by `(last_tick_at, kafka_partition)`. Both
 *   are restrictions of the total order `(last_tick_at, kafka_partition, last_offset, is_final)`
 *   ({@linkcode compareVersions}), so replays never move a row backwards.
 * - The result is that of upserting the rows one by one in the order given (slices in order, rows
 *   in order). Two versions of one key in one slice (the engine never emits that) make PostgreSQL
 *   refuse the statement (21000): the slice is bisected until they are in separate statements.
 * - `newWindows` (windows never written before) go in by a plain INSERT, about half the cost of
 *   the upsert for a new row. A slice that meets a stored row (a replay, a rebuild) or a refused
 *   row is rolled back to its savepoint and upserted; after a conflict, the call's later slices
 *   are upserted too.
 * - Two connections: a call of two slices or more splits its window rows by symbol between the
 *   main transaction and a second one (`connections`, default 2; the pool must allow two), so
 *   PostgreSQL executes them on two cores. Every version of one key goes to the same one, in
 *   order: they never wait for each other's locks, and the result is the same. The second
 *   commits just before the main one (late ticks, progress); if the main one then fails, its rows
 *   are ahead of the progress row and the checkpoint, as after a crash between this commit and
 *   the checkpoint, and the retry's versions are no-ops. A failure before that rolls back both.
 *
 * Errors ({@linkcode classifyDbError}): every statement runs under a savepoint. A data error
 * (SQLSTATE classes 21, 22, 23, 44, 54) rolls back to it and the rows are bisected, each half
 * under its own savepoint, until the offending rows are isolated: those go to `rejected_rows`
 * (with the reason and their source partition and offset) and the rest commits. A statement
 * timeout (57014) splits the same way (a single row that still times out is an availability
 * problem). Availability errors (connection, 08xxx, 40001/40P01, 53xxx, 55P03, 57P0x, 58xxx)
 * throw {@linkcode SinkUnavailableError}: the caller retries the trigger. Anything else (42xxx,
 * a bug) throws {@linkcode SinkError}. Either way the transaction is rolled back.
 *
 * Parameters: window rows travel as binary arrays (`common/pg_binary.ts`: float8 as its IEEE 754
 * bytes, integers and epoch-ms timestamps as exact int64, text as UTF-8; a row that cannot be sent
 * exactly, e.g. a fractional offset, is rejected before sending by {@linkcode windowRowProblem});
 * late ticks, progress and rejected rows as array literals built by `common/pg_array.ts` (exact
 * for every string and float64), with epoch ms as bigint that become `timestamptz 'epoch' + ms *
 * interval '1 millisecond'`. A window length of `windowMs` is `windowMs * interval '1
 * millisecond'` (a pure time interval).
 * @module
 */

import { classifyDbError, type DbErrorClass, type Pool, type PoolClient } from "../common/pg.ts";
import { floatArray, integerArray, textArray } from "../common/pg_array.ts";
import * as bin from "../common/pg_binary.ts";
import type { AggregatorProgress } from "./progress.ts";
import type { LateTick, WindowRow } from "./engine.ts";

/** How the sink tells a PostgreSQL error's kind (common/pg.ts). */
export { classifyDbError, type DbErrorClass };

/** The rows the sink writes are the engine's: a window version and a late tick. */
export type { LateTick, WindowRow };

/** What one trigger writes. */
export interface SinkBatch {
  /** Kafka topic the rows come from (part of every key). */
  topic: string;
  /** Window versions: slices (one upsert statement each), or one array sliced by `sliceSize`. */
  windows: Iterable<readonly WindowRow[]> | readonly WindowRow[];
  /**
   * Window versions the table should not hold yet (windows never written before), written after
   * `windows`, in slices: a plain INSERT each (half the cost of the upsert for a new row); a slice
   * that conflicts with a stored row (or that PostgreSQL refuses) is written by the upsert
   * instead, and so are the later ones of the call. Keys distinct from those of `windows`.
   */
  newWindows?: Iterable<readonly WindowRow[]>;
  /** Late ticks (default none). */
  late?: readonly LateTick[];
  /** The progress record (inserted into aggregator_progress), or null. */
  progress?: AggregatorProgress | null;
}

/** Options of {@linkcode writeBatch}. */
export interface WriteBatchOptions {
  /** Rows per statement when `windows` is one array, and for late ticks (default 5000). */
  sliceSize?: number;
  /** statement_timeout of the sink's statements, ms (default 60 000; 0 = none). */
  statementTimeoutMs?: number;
  /** Statement timeouts tolerated in one call before it gives up as unavailable (default 8). */
  maxTimeouts?: number;
  /**
   * Connections writing the window rows (`windows` and `newWindows`, split by symbol) when the
   * call has two slices or more (default 2; 1 = one transaction). The second one commits its
   * share just before the main transaction.
   */
  connections?: number;
}

/** A row PostgreSQL (or the sink's own check) refused, as recorded in rejected_rows. */
export interface Rejection {
  /** Target table: price_windows, late_ticks or aggregator_progress. */
  table: string;
  /** The row's key, as JSON text. */
  rowKey: string;
  /** SQLSTATE of the refusal; null when the sink refused it before sending it. */
  sqlstate: string | null;
  /** Why it was refused. */
  reason: string;
}

/** Counts of what the transaction changed. */
export interface SinkResult {
  /** Window rows inserted or updated (versions skipped as older, or final rows, not counted). */
  windowsWritten: number;
  /** Late ticks inserted (duplicates of a replay are not counted). */
  lateInserted: number;
  /** Rows refused and dead-lettered to rejected_rows in this call. */
  rejected: number;
  /** The refused rows (keys and reasons, for the log). */
  rejections: Rejection[];
  /** Time from the call to just before the progress insert, ms (written into the progress row). */
  sinkMs: number;
}

/** PostgreSQL cannot take the batch now (connection, shutdown, resources, locks): retry later. */
export class SinkUnavailableError extends Error {
  /** SQLSTATE (or Node error code) of the cause, if any. */
  readonly code: string | undefined;
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions & { code?: string }) {
    super(message, options);
    this.name = "SinkUnavailableError";
    this.code = options?.code;
  }
}

/** PostgreSQL refused the batch for a reason that is not the data nor availability (a bug). */
export class SinkError extends Error {
  /** SQLSTATE of the cause, if any. */
  readonly code: string | undefined;
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions & { code?: string }) {
    super(message, options);
    this.name = "SinkError";
    this.code = options?.code;
  }
}

/** Compares two versions of one window by the total order (lastEventTime, partition, lastOffset, isFinal). */
export function compareVersions(a: WindowRow, b: WindowRow): number {
  return (a.lastEventTime - b.lastEventTime) || (a.partition - b.partition) ||
    (a.lastOffset - b.lastOffset) || (Number(a.isFinal) - Number(b.isFinal));
}

const EPOCH = "CROSS JOIN (SELECT timestamptz 'epoch' AS t, interval '1 millisecond' AS ms) AS e";

// Window rows travel as binary arrays (common/pg_binary.ts). The nullable ones (symbol, vwap) are
// unnested; the others are read by subscript, which on a fixed-width array without NULLs is a
// direct offset: an 18-array unnest cost about as much as the upsert's inserts (measured in the
// sink notes of bench/README.md).
const INSERT_SQL = `
INSERT INTO price_windows AS w (
  topic, symbol, window_length, window_start, window_end, avg_price, open_price, high_price,
  low_price, close_price, tick_count, is_final, kafka_partition, last_offset, updated_at,
  price_sum, first_tick_at, last_tick_at, volume, pv_sum, vwap)
SELECT $1, u.symbol, u.wl * interval '1 millisecond', u.ws, u.we, u.avg, u.o, u.h, u.l, u.c, u.n,
  u.fin, u.p, u.off, now(), u.s, u.ft, u.lt, u.v, u.pv, u.vwap
FROM (
  SELECT x.symbol, x.vwap, ($4::bigint[])[x.i] AS wl, ($5::timestamptz[])[x.i] AS ws,
    ($6::timestamptz[])[x.i] AS we, ($7::float8[])[x.i] AS avg, ($8::float8[])[x.i] AS o,
    ($9::float8[])[x.i] AS h, ($10::float8[])[x.i] AS l, ($11::float8[])[x.i] AS c,
    ($12::bigint[])[x.i] AS n, ($13::boolean[])[x.i] AS fin, ($14::int[])[x.i] AS p,
    ($15::bigint[])[x.i] AS off, ($16::float8[])[x.i] AS s, ($17::timestamptz[])[x.i] AS ft,
    ($18::timestamptz[])[x.i] AS lt, ($19::float8[])[x.i] AS v, ($20::float8[])[x.i] AS pv
  FROM unnest($2::text[], $3::float8[]) WITH ORDINALITY AS x(symbol, vwap, i)
) AS u
`;

/** The upsert: the same rows, a newer version of a row that is not final replaces it. */
const UPSERT_SQL = `${INSERT_SQL}
ON CONFLICT (topic, symbol, window_length, window_start) DO UPDATE SET
  window_end = EXCLUDED.window_end, avg_price = EXCLUDED.avg_price,
  open_price = EXCLUDED.open_price, high_price = EXCLUDED.high_price,
  low_price = EXCLUDED.low_price, close_price = EXCLUDED.close_price,
  tick_count = EXCLUDED.tick_count, is_final = EXCLUDED.is_final,
  kafka_partition = EXCLUDED.kafka_partition, last_offset = EXCLUDED.last_offset,
  updated_at = EXCLUDED.updated_at, price_sum = EXCLUDED.price_sum,
  first_tick_at = EXCLUDED.first_tick_at, last_tick_at = EXCLUDED.last_tick_at,
  volume = EXCLUDED.volume, pv_sum = EXCLUDED.pv_sum, vwap = EXCLUDED.vwap
WHERE NOT w.is_final AND (
      (EXCLUDED.kafka_partition = w.kafka_partition
       AND (EXCLUDED.last_offset, EXCLUDED.is_final) > (w.last_offset, w.is_final))
   OR (EXCLUDED.kafka_partition <> w.kafka_partition
       AND (EXCLUDED.last_tick_at, EXCLUDED.kafka_partition) > (w.last_tick_at, w.kafka_partition)))`;

// late_for travels as one text element per tick ("300000,60000": window lengths in ms).
const LATE_SQL = `
INSERT INTO late_ticks (
  topic, symbol, event_time, price, kafka_partition, kafka_offset, watermark, late_for)
SELECT $1, u.symbol, e.t + u.et * e.ms, u.price, u.p, u.off, e.t + u.wm * e.ms,
  CASE WHEN u.lf IS NULL THEN NULL ELSE ARRAY(
    SELECT f.x * e.ms FROM unnest(string_to_array(u.lf, ',')::bigint[]) WITH ORDINALITY AS f(x, i)
    ORDER BY f.i) END
FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::int[], $6::bigint[], $7::bigint[],
            $8::text[])
  AS u(symbol, et, price, p, off, wm, lf)
${EPOCH}
ON CONFLICT DO NOTHING`;

const PROGRESS_SQL = `
INSERT INTO aggregator_progress (run_id, batch_id, topic, progress)
VALUES ($2, $3, $1, $4::jsonb) ON CONFLICT (run_id, batch_id) DO NOTHING`;

const REJECTED_SQL = `
INSERT INTO rejected_rows (
  topic, table_name, row_key, row_json, sqlstate, reason, kafka_partition, last_offset)
SELECT $1, u.tbl, u.k, u.j, u.st, u.r, u.p, u.off
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::bigint[])
  AS u(tbl, k, j, st, r, p, off)
ON CONFLICT (topic, table_name, md5(row_key), (coalesce(kafka_partition, -1)),
             (coalesce(last_offset, -1)))
DO NOTHING`;

/** How one kind of row is written, checked and described for rejected_rows. */
interface RowKind<T> {
  table: string;
  /** Runs the statement for `rows`; returns the rows affected. */
  exec(client: PoolClient, topic: string, rows: readonly T[]): Promise<number>;
  /** Why the sink refuses a row before sending it (it cannot be sent exactly), or null. */
  check(row: T): string | null;
  /** Key (JSON text), source partition and offset of a row. */
  source(row: T): { key: unknown[]; partition: number | null; offset: number | null };
}

/** The parameters of INSERT_SQL and UPSERT_SQL for `rows`. */
function windowParams(topic: string, rows: readonly WindowRow[]): unknown[] {
  const n = rows.length;
  return [
    topic,
    bin.textArray(n, (i) => rows[i].symbol),
    bin.float8Array(n, (i) => rows[i].vwap),
    bin.int8Array(n, (i) => rows[i].windowMs),
    bin.timestamptzArray(n, (i) => rows[i].windowStart),
    bin.timestamptzArray(n, (i) => rows[i].windowEnd),
    bin.float8Array(n, (i) => rows[i].avg),
    bin.float8Array(n, (i) => rows[i].open),
    bin.float8Array(n, (i) => rows[i].high),
    bin.float8Array(n, (i) => rows[i].low),
    bin.float8Array(n, (i) => rows[i].close),
    bin.int8Array(n, (i) => rows[i].count),
    bin.boolArray(n, (i) => rows[i].isFinal),
    bin.int4Array(n, (i) => rows[i].partition),
    bin.int8Array(n, (i) => rows[i].lastOffset),
    bin.float8Array(n, (i) => rows[i].sum),
    bin.timestamptzArray(n, (i) => rows[i].firstEventTime),
    bin.timestamptzArray(n, (i) => rows[i].lastEventTime),
    // Subscripted: a NULL would make every read scan the array (pg_binary.ts); none is sent.
    bin.float8Array(n, (i) => rows[i].volume),
    bin.float8Array(n, (i) => rows[i].pvSum),
  ];
}

const WINDOWS: RowKind<WindowRow> = {
  table: "price_windows",
  async exec(client, topic, rows) {
    const r = await client.query(UPSERT_SQL, windowParams(topic, rows));
    return r.rowCount ?? 0;
  },
  check: windowRowProblem,
  source: (r) => ({
    key: [r.symbol, r.windowMs, r.windowStart],
    partition: r.partition,
    offset: r.lastOffset,
  }),
};

/** The integer fields of a window row (sent as binary integers: they must be exact). */
export const WINDOW_INTEGERS = [
  "windowMs",
  "windowStart",
  "windowEnd",
  "count",
  "lastOffset",
  "firstEventTime",
  "lastEventTime",
] as const;

/** The float fields of a window row that may not be null (`vwap` may). */
export const WINDOW_FLOATS = [
  "avg",
  "open",
  "high",
  "low",
  "close",
  "sum",
  "volume",
  "pvSum",
] as const;

/** Why a window row cannot be sent exactly, or null. */
export function windowRowProblem(r: WindowRow): string | null {
  // The common case in one expression (no loop over field names: keyed reads cost more than the
  // checks), then the field-by-field search for the message.
  if (
    Number.isSafeInteger(r.windowMs) && Number.isSafeInteger(r.windowStart) &&
    Number.isSafeInteger(r.windowEnd) && Number.isSafeInteger(r.count) &&
    Number.isSafeInteger(r.lastOffset) && Number.isSafeInteger(r.firstEventTime) &&
    Number.isSafeInteger(r.lastEventTime) && Number.isInteger(r.partition) &&
    r.partition >= 0 && r.partition <= 2147483647 && typeof r.avg === "number" &&
    typeof r.open === "number" && typeof r.high === "number" && typeof r.low === "number" &&
    typeof r.close === "number" && typeof r.sum === "number" && typeof r.volume === "number" &&
    typeof r.pvSum === "number" && (r.vwap === null || typeof r.vwap === "number") &&
    r.symbol.isWellFormed()
  ) return null;
  return windowRowProblemOf(r);
}

/** The first problem of a window row that has one, field by field. */
function windowRowProblemOf(r: WindowRow): string | null {
  if (!r.symbol.isWellFormed()) return LONE_SURROGATE;
  for (const f of WINDOW_INTEGERS) {
    const v = r[f];
    if (!Number.isSafeInteger(v)) return `${f} is ${v}: expected an integer within ±(2^53 − 1)`;
  }
  if (!Number.isInteger(r.partition) || r.partition < 0 || r.partition > 2147483647) {
    return `partition is ${r.partition}: expected an integer from 0 to 2147483647`;
  }
  for (const f of WINDOW_FLOATS) {
    if (typeof r[f] !== "number") return `${f} is ${r[f]}: expected a number`;
  }
  if (r.vwap !== null && typeof r.vwap !== "number") {
    return `vwap is ${r.vwap}: expected a number or null`;
  }
  return null;
}

const LATE: RowKind<LateTick> = {
  table: "late_ticks",
  async exec(client, topic, rows) {
    const n = rows.length;
    const r = await client.query(LATE_SQL, [
      topic,
      textArray(n, (i) => rows[i].symbol),
      integerArray(n, (i) => rows[i].eventTime),
      floatArray(n, (i) => rows[i].price),
      integerArray(n, (i) => rows[i].partition),
      integerArray(n, (i) => rows[i].offset),
      integerArray(n, (i) => rows[i].watermark),
      textArray(n, (i) => {
        const lf = rows[i].lateFor as number[] | undefined;
        return lf === undefined ? null : lf.map((x) => String(x)).join(",");
      }),
    ]);
    return r.rowCount ?? 0;
  },
  check: (t) => t.symbol.isWellFormed() ? null : LONE_SURROGATE,
  source: (t) => ({ key: [t.partition, t.offset], partition: t.partition, offset: t.offset }),
};

const PROGRESS: RowKind<AggregatorProgress> = {
  table: "aggregator_progress",
  async exec(client, topic, rows) {
    const p = rows[0];
    const r = await client.query(PROGRESS_SQL, [topic, p.runId, p.batchId, JSON.stringify(p)]);
    return r.rowCount ?? 0;
  },
  check: () => null,
  source: (p) => ({ key: [p.runId, p.batchId], partition: null, offset: null }),
};

const LONE_SURROGATE =
  "Symbol is not well-formed UTF-16 (a lone surrogate): it cannot be stored exactly";

/** JSON text of a row for rejected_rows: non-finite numbers kept as strings, \u0000 escaped. */
function rowJson(row: unknown): string {
  return JSON.stringify(
    row,
    (_k, v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : v,
  );
}

/** `s` cut to 200 characters for a message. */
function clip(s: string): string {
  return s.length <= 200 ? s : `${s.slice(0, 200)}… (${s.length} characters)`;
}

/** The error text of `e` (message and SQLSTATE). */
function describe(e: unknown): string {
  const err = e as { message?: unknown; code?: unknown };
  const msg = typeof err?.message === "string" ? err.message : String(e);
  return typeof err?.code === "string" ? `${msg} (SQLSTATE ${err.code})` : msg;
}

/** One transaction's writer: savepoints, bisection and the rejections collected. */
class Transaction {
  readonly rejected: {
    kind: RowKind<unknown>;
    row: unknown;
    sqlstate: string | null;
    reason: string;
  }[] = [];
  #timeouts = 0;

  constructor(
    readonly client: PoolClient,
    readonly topic: string,
    readonly options: { statementTimeoutMs: number; maxTimeouts: number },
  ) {}

  /** Plain inserts are tried (newWindows) until one conflicts. */
  #plain = true;

  /**
   * Writes window rows believed new with a plain INSERT under a savepoint; if PostgreSQL refuses
   * it (a row exists after all: a replay, a rebuild; or a data error), rolls back to the savepoint
   * and writes them with the upsert, which isolates refused rows. Returns rows affected.
   */
  async insertNew(rows: readonly WindowRow[]): Promise<number> {
    if (!this.#plain || rows.some((r) => windowRowProblem(r) !== null)) {
      return await this.write(WINDOWS, rows);
    }
    const r = await this.#underSavepoint(async () =>
      (await this.client.query(INSERT_SQL, windowParams(this.topic, rows))).rowCount ?? 0
    );
    if ("n" in r) return r.n;
    if ((r.failure as { code?: string }).code === "23505") this.#plain = false;
    return await this.write(WINDOWS, rows);
  }

  /**
   * Runs one statement under a savepoint. A data error or a statement timeout rolls back to it
   * and is returned with its class; any other error is thrown.
   */
  async #underSavepoint(
    run: () => Promise<number>,
  ): Promise<{ n: number } | { failure: unknown; cls: "data" | "timeout" }> {
    await this.client.query("SAVEPOINT tp_sink");
    let failure: unknown;
    try {
      const n = await run();
      await this.client.query("RELEASE SAVEPOINT tp_sink");
      return { n };
    } catch (e) {
      failure = e;
    }
    const cls = classifyDbError(failure);
    if (cls !== "data" && cls !== "timeout") throw failure;
    await this.client.query("ROLLBACK TO SAVEPOINT tp_sink; RELEASE SAVEPOINT tp_sink");
    return { failure, cls };
  }

  /** Writes `rows` (one statement, bisected on data errors and timeouts); returns rows affected. */
  async write<T>(kind: RowKind<T>, rows: readonly T[]): Promise<number> {
    let send = rows;
    if (rows.some((r) => kind.check(r) !== null)) {
      send = rows.filter((r) => {
        const why = kind.check(r);
        if (why !== null) this.#reject(kind, r, null, why);
        return why === null;
      });
    }
    return send.length === 0 ? 0 : await this.#attempt(kind, send);
  }

  async #attempt<T>(kind: RowKind<T>, rows: readonly T[]): Promise<number> {
    const r = await this.#underSavepoint(() => kind.exec(this.client, this.topic, rows));
    if ("n" in r) return r.n;
    const { failure, cls } = r;
    const code = (failure as { code?: string }).code ?? null;
    if (cls === "timeout") {
      if (++this.#timeouts > this.options.maxTimeouts || rows.length === 1) {
        const what = rows.length === 1
          ? `a single ${kind.table} row (key ${clip(JSON.stringify(kind.source(rows[0]).key))})`
          : `${this.#timeouts} statements of one batch`;
        throw new SinkUnavailableError(
          `PostgreSQL statement timeout (${this.options.statementTimeoutMs} ms) on ${what}: ` +
            `the server is overloaded or the rows are locked; retry later`,
          { cause: failure, code: "57014" },
        );
      }
    }
    if (rows.length === 1) {
      this.#reject(kind, rows[0], code, describe(failure));
      return 0;
    }
    const mid = rows.length >>> 1;
    const left = await this.#attempt(kind, rows.slice(0, mid));
    return left + await this.#attempt(kind, rows.slice(mid));
  }

  #reject<T>(kind: RowKind<T>, row: T, sqlstate: string | null, reason: string): void {
    this.rejected.push({ kind: kind as RowKind<unknown>, row, sqlstate, reason });
  }

  /** Inserts the rejections into rejected_rows (a replay's duplicates are skipped). */
  async recordRejections(): Promise<Rejection[]> {
    const n = this.rejected.length;
    if (n === 0) return [];
    const rs = this.rejected.map((r) => {
      const s = r.kind.source(r.row);
      return { ...r, key: JSON.stringify(s.key), partition: s.partition, offset: s.offset };
    });
    await this.client.query(REJECTED_SQL, [
      this.topic,
      textArray(n, (i) => rs[i].kind.table),
      textArray(n, (i) => rs[i].key),
      textArray(n, (i) => rowJson(rs[i].row)),
      textArray(n, (i) => rs[i].sqlstate),
      textArray(n, (i) => rs[i].reason),
      // The source columns only hold what they can: a refused row's bad partition or offset
      // (a fraction, out of range) is kept in row_json, not allowed to fail the recording.
      integerArray(n, (i) => int32OrNull(rs[i].partition)),
      integerArray(n, (i) => safeOrNull(rs[i].offset)),
    ]);
    return rs.map((r) => ({
      table: r.kind.table,
      rowKey: r.key,
      sqlstate: r.sqlstate,
      reason: r.reason,
    }));
  }
}

function safeOrNull(x: number | null): number | null {
  return x !== null && Number.isSafeInteger(x) ? x : null;
}

function int32OrNull(x: number | null): number | null {
  return x !== null && Number.isInteger(x) && x >= -2147483648 && x <= 2147483647 ? x : null;
}

/** Yields the window slices: the given ones, or `rows` cut into slices of `size`. */
function* slicesOf(
  windows: Iterable<readonly WindowRow[]> | readonly WindowRow[],
  size: number,
): Iterable<readonly WindowRow[]> {
  if (Array.isArray(windows) && (windows.length === 0 || !Array.isArray(windows[0]))) {
    const rows = windows as readonly WindowRow[];
    for (let i = 0; i < rows.length; i += size) yield rows.slice(i, i + size);
    return;
  }
  for (const slice of windows as Iterable<readonly WindowRow[]>) {
    if (slice.length > 0) yield slice;
  }
}

function positiveInteger(name: string, v: number | undefined, fallback: number, min: number) {
  const x = v ?? fallback;
  if (!Number.isSafeInteger(x) || x < min) {
    throw new RangeError(`Option ${name} must be an integer >= ${min}, got ${v}`);
  }
  return x;
}

/** Turns a failure outside the bisected statements into SinkUnavailableError or SinkError. */
function sinkError(e: unknown, what: string): Error {
  if (e instanceof SinkUnavailableError || e instanceof SinkError) return e;
  const code = (e as { code?: unknown })?.code;
  const opts = { cause: e, code: typeof code === "string" ? code : undefined };
  const cls = classifyDbError(e);
  if (cls === "availability" || cls === "timeout") {
    return new SinkUnavailableError(
      `PostgreSQL unavailable while ${what}: ${describe(e)}; retry later`,
      opts,
    );
  }
  return new SinkError(`PostgreSQL refused ${what}: ${describe(e)}`, opts);
}

/** A v1 window row (no resolution, volume or VWAP): the deprecated call shape. */
export type LegacyWindowRow =
  & Omit<WindowRow, "windowMs" | "volume" | "pvSum" | "vwap">
  & Partial<Pick<WindowRow, "windowMs" | "volume" | "pvSum" | "vwap">>;

/** A v1 late tick (no lateFor): the deprecated call shape. */
export type LegacyLateTick = Omit<LateTick, "lateFor"> & Partial<Pick<LateTick, "lateFor">>;

/** The v1 batch: `writeBatch(pool, topic, batch)`. */
export interface LegacySinkBatch {
  /** Window versions. */
  windows: LegacyWindowRow[];
  /** Late ticks. */
  late: LegacyLateTick[];
  /** Progress row or null. */
  progress: AggregatorProgress | null;
}

/**
 * Writes one trigger's output to PostgreSQL in one transaction (two for a call of several slices,
 * split by symbol; see the module doc): data errors are dead-lettered to
 * rejected_rows and never fail the call; availability problems throw SinkUnavailableError (retry),
 * anything else SinkError; on a throw nothing is committed.
 */
export function writeBatch(
  pool: Pool,
  batch: SinkBatch,
  options?: WriteBatchOptions,
): Promise<SinkResult>;
/** @deprecated v1 call shape (topic first), kept until the aggregator is rewired to v2. */
export function writeBatch(pool: Pool, topic: string, batch: LegacySinkBatch): Promise<SinkResult>;
export function writeBatch(
  pool: Pool,
  batchOrTopic: SinkBatch | string,
  optionsOrLegacy?: WriteBatchOptions | LegacySinkBatch,
): Promise<SinkResult> {
  if (typeof batchOrTopic !== "string") {
    return write(pool, batchOrTopic, (optionsOrLegacy ?? {}) as WriteBatchOptions);
  }
  const legacy = optionsOrLegacy as LegacySinkBatch;
  return write(pool, {
    topic: batchOrTopic,
    windows: legacy.windows.map((w) => ({
      ...w,
      windowMs: w.windowMs ?? w.windowEnd - w.windowStart,
      volume: w.volume ?? 0,
      pvSum: w.pvSum ?? 0,
      vwap: w.vwap ?? null,
    })),
    late: legacy.late as LateTick[], // lateFor undefined → late_for NULL
    progress: legacy.progress,
  }, {});
}

/** A checked-out client in a transaction: its writer, and whether the connection broke. */
interface Session {
  client: PoolClient;
  tx: Transaction;
  broken: boolean;
  onError: () => void;
}

/** Checks a client out and begins a transaction on it (statement timeout set). */
async function begin(
  pool: Pool,
  topic: string,
  options: { statementTimeoutMs: number; maxTimeouts: number },
): Promise<Session> {
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (e) {
    throw sinkError(e, "connecting");
  }
  const session: Session = {
    client,
    tx: new Transaction(client, topic, options),
    broken: false,
    // A connection dropped while checked out emits "error" on the client: without a listener it
    // would be an uncaught exception. The failing query reports it.
    onError: () => {
      session.broken = true;
    },
  };
  client.on("error", session.onError);
  try {
    await client.query(`BEGIN; SET LOCAL statement_timeout = ${options.statementTimeoutMs}`);
  } catch (e) {
    end(session, true);
    throw sinkError(e, "beginning a transaction");
  }
  return session;
}

/** Returns the client to the pool; one that failed mid-transaction may be dead: dropped. */
function end(session: Session, broken = session.broken): void {
  session.client.off("error", session.onError);
  session.client.release(broken ? true : undefined);
}

/** Rolls a failed session's transaction back (an unavailable connection is just dropped). */
async function abandon(session: Session, err: Error): Promise<void> {
  if (err instanceof SinkUnavailableError) session.broken = true;
  else await session.client.query("ROLLBACK").catch(() => (session.broken = true));
}

/** Whether the pool can lend a second client while one is checked out. */
function hasSpareClient(pool: Pool): boolean {
  const max = (pool as { options?: { max?: number } }).options?.max;
  return typeof max === "number" && max >= 2;
}

/** One slice of window rows, and whether the table should not hold them yet. */
interface Work {
  slice: readonly WindowRow[];
  isNew: boolean;
}

/** Writes one slice in `tx`: the upsert, or a plain INSERT for new rows. */
function writeWork(tx: Transaction, w: Work): Promise<number> {
  return w.isNew ? tx.insertNew(w.slice) : tx.write(WINDOWS, w.slice);
}

/** Which of `n` transactions writes the rows of `symbol` (all versions of a key go to one). */
function shareOf(symbol: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < symbol.length; i++) h = Math.imul(h ^ symbol.charCodeAt(i), 0x01000193);
  return (h >>> 0) % n;
}

/**
 * Writes the slices of `first` and `rest` over several transactions at once, each taking the
 * rows of its share of the symbols: every version of one key goes to one transaction, in order,
 * so they never wait for each other's row locks. Returns the rows written by all.
 */
async function writeShared(
  txs: readonly Transaction[],
  first: readonly Work[],
  rest: Iterator<Work>,
): Promise<number> {
  const n = txs.length;
  const queues: Work[][] = txs.map(() => []);
  const pending = first.slice();
  let failed = false;
  const refill = (): boolean => {
    let w = pending.shift();
    if (w === undefined) {
      const r = rest.next();
      if (r.done) return false;
      w = r.value;
    }
    const parts: WindowRow[][] = txs.map(() => []);
    for (const row of w.slice) parts[shareOf(row.symbol, n)].push(row);
    for (let i = 0; i < n; i++) {
      if (parts[i].length !== 0) queues[i].push({ slice: parts[i], isNew: w.isNew });
    }
    return true;
  };
  const drain = async (i: number): Promise<number> => {
    let written = 0;
    while (!failed) {
      if (queues[i].length === 0 && !refill()) break;
      const w = queues[i].shift();
      if (w === undefined) continue;
      try {
        written += await writeWork(txs[i], w);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
    return written;
  };
  const results = await Promise.allSettled(txs.map((_, i) => drain(i)));
  let written = 0;
  for (const r of results) {
    if (r.status === "rejected") throw r.reason;
    written += r.value;
  }
  return written;
}

async function write(
  pool: Pool,
  batch: SinkBatch,
  options: WriteBatchOptions,
): Promise<SinkResult> {
  const t0 = performance.now();
  const sliceSize = positiveInteger("sliceSize", options.sliceSize, 5000, 1);
  const statementTimeoutMs = positiveInteger(
    "statementTimeoutMs",
    options.statementTimeoutMs,
    60_000,
    0,
  );
  const maxTimeouts = positiveInteger("maxTimeouts", options.maxTimeouts, 8, 0);
  const connections = positiveInteger("connections", options.connections, 2, 1);
  const txOptions = { statementTimeoutMs, maxTimeouts };
  const main = await begin(pool, batch.topic, txOptions);
  let helper: Session | null = null;
  try {
    const tx = main.tx;
    // The window rows, upserts first, then the new ones, as one stream of slices.
    const stream = (function* (): Iterable<Work> {
      for (const slice of slicesOf(batch.windows, sliceSize)) yield { slice, isNew: false };
      for (const slice of slicesOf(batch.newWindows ?? [], sliceSize)) yield { slice, isNew: true };
    })()[Symbol.iterator]();
    const peeked: Work[] = [];
    while (peeked.length < 2) {
      const r = stream.next();
      if (r.done) break;
      peeked.push(r.value);
    }
    let windowsWritten = 0;
    if (peeked.length === 2 && connections >= 2 && hasSpareClient(pool)) {
      helper = await begin(pool, batch.topic, txOptions);
      windowsWritten = await writeShared([tx, helper.tx], peeked, stream);
    } else {
      for (const w of peeked) windowsWritten += await writeWork(tx, w);
      for (let r = stream.next(); !r.done; r = stream.next()) {
        windowsWritten += await writeWork(tx, r.value);
      }
    }
    let lateInserted = 0;
    const late = batch.late ?? [];
    for (let i = 0; i < late.length; i += sliceSize) {
      lateInserted += await tx.write(LATE, late.slice(i, i + sliceSize));
    }
    const sinkMs = Math.round(performance.now() - t0);
    if (batch.progress) {
      const p = batch.progress;
      await tx.write(PROGRESS, [{ ...p, durationsMs: { ...p.durationsMs, sinkMs } }]);
    }
    const rejections = await tx.recordRejections();
    if (helper !== null) {
      // The helper commits first: a failure after it leaves rows ahead of the progress row and
      // the checkpoint, as a crash after this commit would; the retry's versions are no-ops.
      rejections.push(...await helper.tx.recordRejections());
      await helper.client.query("COMMIT");
    }
    await main.client.query("COMMIT");
    return { windowsWritten, lateInserted, rejected: rejections.length, rejections, sinkMs };
  } catch (e) {
    const err = sinkError(e, `writing a batch of topic ${batch.topic}`);
    await abandon(main, err);
    if (helper !== null) await abandon(helper, err);
    throw err;
  } finally {
    end(main);
    if (helper !== null) end(helper);
  }
}
