/**
 * The PostgreSQL sink: one transaction per trigger with ONE batched upsert of the window rows
 * (`INSERT ... SELECT ... FROM unnest(...) ON CONFLICT ... DO UPDATE ... WHERE newer`), the late
 * ticks (`ON CONFLICT DO NOTHING`) and the progress row.
 *
 * Row versions: within one Kafka partition a row's version is `(last_offset, is_final)` (a window
 * finalizes with the offset it already had, so is_final breaks the tie). Rows of the same
 * (symbol, window_start) coming from a DIFFERENT partition (the topic was re-partitioned and the
 * symbol moved) are ordered by `(last_tick_at, kafka_partition)`. Both orders are restrictions of
 * the single total order `(last_tick_at, kafka_partition, last_offset, is_final)` (within one
 * partition last_tick_at never decreases as the offset grows), so the stored row is the maximum of
 * every version ever written, whatever the write order or replays: rows never regress. On a
 * re-partition a window split across two partitions keeps the version of the partition that saw
 * the latest tick (a partial window; documented limitation).
 * Timestamps are exact to the ms: epoch ms travel as bigint and become
 * `timestamptz 'epoch' + ms * interval '1 millisecond'` (integer microseconds, no float seconds).
 * @module
 */

import type { Pool, PoolClient } from "../common/pg.ts";
import type { LateTick, WindowRow } from "./engine.ts";
import type { AggregatorProgress } from "./progress.ts";

/** What one trigger writes. */
export interface SinkBatch {
  /** Window versions (any order; duplicates of one key are reduced to the newest). */
  windows: WindowRow[];
  /** Late ticks. */
  late: LateTick[];
  /** The progress record (inserted into aggregator_progress), or null. */
  progress: AggregatorProgress | null;
}

/** Counts of what the transaction changed. */
export interface SinkResult {
  /** Window rows inserted or updated (rows skipped as older are not counted). */
  windowsWritten: number;
  /** Late ticks inserted (duplicates of a replay are not counted). */
  lateInserted: number;
  /** Time from BEGIN to just before the progress insert, ms. */
  sinkMs: number;
}

const UPSERT_SQL = `
INSERT INTO price_windows AS w (
  symbol, window_start, window_end, avg_price, open_price, high_price, low_price, close_price,
  tick_count, is_final, kafka_partition, last_offset, updated_at, price_sum, first_tick_at,
  last_tick_at)
SELECT u.symbol, e.t + u.ws * e.ms, e.t + u.we * e.ms, u.avg, u.o, u.h, u.l, u.c,
  u.n, u.fin, u.p, u.off, now(), u.s, e.t + u.ft * e.ms, e.t + u.lt * e.ms
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[], $6::float8[],
            $7::float8[], $8::float8[], $9::bigint[], $10::boolean[], $11::int[], $12::bigint[],
            $13::float8[], $14::bigint[], $15::bigint[])
  AS u(symbol, ws, we, avg, o, h, l, c, n, fin, p, off, s, ft, lt)
CROSS JOIN (SELECT timestamptz 'epoch' AS t, interval '1 millisecond' AS ms) AS e
ON CONFLICT (symbol, window_start) DO UPDATE SET
  window_end = EXCLUDED.window_end, avg_price = EXCLUDED.avg_price,
  open_price = EXCLUDED.open_price, high_price = EXCLUDED.high_price,
  low_price = EXCLUDED.low_price, close_price = EXCLUDED.close_price,
  tick_count = EXCLUDED.tick_count, is_final = EXCLUDED.is_final,
  kafka_partition = EXCLUDED.kafka_partition, last_offset = EXCLUDED.last_offset,
  updated_at = EXCLUDED.updated_at, price_sum = EXCLUDED.price_sum,
  first_tick_at = EXCLUDED.first_tick_at, last_tick_at = EXCLUDED.last_tick_at
WHERE (EXCLUDED.kafka_partition = w.kafka_partition
       AND (EXCLUDED.last_offset, EXCLUDED.is_final) > (w.last_offset, w.is_final))
   OR (EXCLUDED.kafka_partition <> w.kafka_partition
       AND (EXCLUDED.last_tick_at, EXCLUDED.kafka_partition) > (w.last_tick_at, w.kafka_partition))`;

const LATE_SQL = `
INSERT INTO late_ticks (topic, symbol, event_time, price, kafka_partition, kafka_offset, watermark)
SELECT $1, u.symbol, e.t + u.et * e.ms, u.price, u.p, u.off, e.t + u.wm * e.ms
FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::int[], $6::bigint[], $7::bigint[])
  AS u(symbol, et, price, p, off, wm)
CROSS JOIN (SELECT timestamptz 'epoch' AS t, interval '1 millisecond' AS ms) AS e
ON CONFLICT DO NOTHING`;

const PROGRESS_SQL = `
INSERT INTO aggregator_progress (run_id, batch_id, topic, progress)
VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (run_id, batch_id) DO NOTHING`;

/** Compares two versions of one window by the total order (lastEventTime, partition, lastOffset, isFinal). */
export function compareVersions(a: WindowRow, b: WindowRow): number {
  return (a.lastEventTime - b.lastEventTime) || (a.partition - b.partition) ||
    (a.lastOffset - b.lastOffset) || (Number(a.isFinal) - Number(b.isFinal));
}

/** Keeps only the newest version per (symbol, windowStart): ON CONFLICT cannot touch a row twice. */
export function dedupeWindows(rows: WindowRow[]): WindowRow[] {
  const best = new Map<string, WindowRow>();
  for (const r of rows) {
    const k = `${r.windowStart}\u0000${r.symbol}`;
    const cur = best.get(k);
    if (cur === undefined || compareVersions(r, cur) > 0) best.set(k, r);
  }
  return best.size === rows.length ? rows : [...best.values()];
}

/** Integer epoch ms as a bigint literal (engine times are integers; fractions are truncated). */
function ms(v: number): string {
  return Math.trunc(v).toString();
}

/** Writes one trigger's output to PostgreSQL in ONE transaction; rolls back on any error. */
export async function writeBatch(pool: Pool, topic: string, batch: SinkBatch): Promise<SinkResult> {
  const t0 = performance.now();
  const client: PoolClient = await pool.connect();
  let broken = false;
  // A connection dropped while checked out emits "error" on the client: without a listener it
  // would be an uncaught exception. The failing query reports it.
  const onError = () => {
    broken = true;
  };
  client.on("error", onError);
  try {
    await client.query("BEGIN");
    let windowsWritten = 0;
    const rows = dedupeWindows(batch.windows);
    if (rows.length > 0) {
      const r = await client.query(UPSERT_SQL, [
        rows.map((w) => w.symbol),
        rows.map((w) => ms(w.windowStart)),
        rows.map((w) => ms(w.windowEnd)),
        rows.map((w) => w.avg),
        rows.map((w) => w.open),
        rows.map((w) => w.high),
        rows.map((w) => w.low),
        rows.map((w) => w.close),
        rows.map((w) => w.count),
        rows.map((w) => w.isFinal),
        rows.map((w) => w.partition),
        rows.map((w) => w.lastOffset),
        rows.map((w) => w.sum),
        rows.map((w) => ms(w.firstEventTime)),
        rows.map((w) => ms(w.lastEventTime)),
      ]);
      windowsWritten = r.rowCount ?? 0;
    }
    let lateInserted = 0;
    if (batch.late.length > 0) {
      const l = batch.late;
      const r = await client.query(LATE_SQL, [
        topic,
        l.map((t) => t.symbol),
        l.map((t) => ms(t.eventTime)),
        l.map((t) => t.price),
        l.map((t) => t.partition),
        l.map((t) => t.offset),
        l.map((t) => ms(t.watermark)),
      ]);
      lateInserted = r.rowCount ?? 0;
    }
    const sinkMs = Math.round(performance.now() - t0);
    if (batch.progress) {
      const p = { ...batch.progress, durationsMs: { ...batch.progress.durationsMs, sinkMs } };
      await client.query(PROGRESS_SQL, [p.runId, p.batchId, topic, JSON.stringify(p)]);
    }
    await client.query("COMMIT");
    return { windowsWritten, lateInserted, sinkMs };
  } catch (e) {
    broken = true;
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    client.off("error", onError);
    // A client that failed mid-transaction may be dead: drop it from the pool.
    client.release(broken ? true : undefined);
  }
}
