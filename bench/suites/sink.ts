/**
 * Suite 5, sink: one flush of 50k window rows through aggregate/sink.ts writeBatch (transaction,
 * dedupe, versioned upsert) against one raw `INSERT ... SELECT FROM unnest ... ON CONFLICT DO
 * UPDATE` of the same rows, as new rows (insert) and as newer versions of existing rows (update).
 * Target: ratio >= 0.9.
 * @module
 */

import type { WindowRow } from "../../aggregate/engine.ts";
import type { Pool } from "../../common/pg.ts";
import { perSecond } from "../_stats.ts";
import {
  importModule,
  interleave,
  requireFunction,
  type Row,
  rowOf,
  type Suite,
  type SuiteContext,
} from "../_suite.ts";
import { windowRows } from "./_data.ts";
import { benchPool } from "./_io.ts";

type WriteBatch = (
  pool: Pool,
  topic: string,
  batch: { windows: WindowRow[]; late: never[]; progress: null },
) => Promise<{ windowsWritten: number }>;

const RAW_SQL = `
INSERT INTO price_windows (
  symbol, window_start, window_end, avg_price, open_price, high_price, low_price, close_price,
  tick_count, is_final, kafka_partition, last_offset, updated_at, price_sum, first_tick_at,
  last_tick_at)
SELECT u.symbol, to_timestamp(u.ws / 1000.0), to_timestamp(u.we / 1000.0), u.avg, u.o, u.h, u.l,
  u.c, u.n, u.fin, u.p, u.off, now(), u.s, to_timestamp(u.ft / 1000.0), to_timestamp(u.lt / 1000.0)
FROM unnest($1::text[], $2::float8[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
            $7::float8[], $8::float8[], $9::bigint[], $10::boolean[], $11::int[], $12::bigint[],
            $13::float8[], $14::float8[], $15::float8[])
  AS u(symbol, ws, we, avg, o, h, l, c, n, fin, p, off, s, ft, lt)
ON CONFLICT (symbol, window_start) DO UPDATE SET
  window_end = EXCLUDED.window_end, avg_price = EXCLUDED.avg_price,
  open_price = EXCLUDED.open_price, high_price = EXCLUDED.high_price,
  low_price = EXCLUDED.low_price, close_price = EXCLUDED.close_price,
  tick_count = EXCLUDED.tick_count, is_final = EXCLUDED.is_final,
  kafka_partition = EXCLUDED.kafka_partition, last_offset = EXCLUDED.last_offset,
  updated_at = EXCLUDED.updated_at, price_sum = EXCLUDED.price_sum,
  first_tick_at = EXCLUDED.first_tick_at, last_tick_at = EXCLUDED.last_tick_at`;

/** The baseline: one autocommit statement, no dedupe, no version check. */
async function rawUpsert(pool: Pool, rows: readonly WindowRow[]): Promise<number> {
  const r = await pool.query(RAW_SQL, [
    rows.map((w) => w.symbol),
    rows.map((w) => w.windowStart),
    rows.map((w) => w.windowEnd),
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
    rows.map((w) => w.firstEventTime),
    rows.map((w) => w.lastEventTime),
  ]);
  return r.rowCount ?? 0;
}

/** The same rows, one version newer (one more tick each). */
function newer(rows: readonly WindowRow[]): WindowRow[] {
  return rows.map((r) => ({
    ...r,
    count: r.count + 1,
    sum: r.sum + r.close,
    lastOffset: r.lastOffset + 1_000_000,
    lastEventTime: r.lastEventTime + 1,
  }));
}

/** The sink suite. */
export const sinkSuite: Suite = {
  name: "sink",
  title: "Sink (50k-row flush)",
  requires: ["aggregate/sink.ts"],
  async run(ctx: SuiteContext): Promise<Row[]> {
    const mod = await importModule<Record<string, unknown>>("aggregate/sink.ts");
    const writeBatch = requireFunction<WriteBatch>(mod, "writeBatch", {
      path: "aggregate/sink.ts",
    });
    const N = 50_000;
    const pool = benchPool(ctx.config, 2);
    const topic = `${ctx.runId}-sink`;
    let set = 0;
    const fresh = () => windowRows(N, { prefix: `${ctx.symbolPrefix}K${set++}_` });
    const clear = async (rows: readonly WindowRow[]) => {
      const prefix = rows[0].symbol.slice(0, rows[0].symbol.lastIndexOf("_") + 1);
      await pool.query("DELETE FROM price_windows WHERE left(symbol, length($1)) = $1", [prefix]);
    };
    const ours = async (rows: WindowRow[]) => {
      const t0 = performance.now();
      const r = await writeBatch(pool, topic, { windows: rows, late: [], progress: null });
      const ms = performance.now() - t0;
      if (r.windowsWritten !== rows.length) {
        throw new Error(`writeBatch wrote ${r.windowsWritten} of ${rows.length} rows`);
      }
      return perSecond(rows.length, ms);
    };
    const raw = async (rows: WindowRow[]) => {
      const t0 = performance.now();
      const n = await rawUpsert(pool, rows);
      const ms = performance.now() - t0;
      if (n !== rows.length) throw new Error(`Raw upsert wrote ${n} of ${rows.length} rows`);
      return perSecond(rows.length, ms);
    };
    try {
      // Insert: every run writes a fresh set of 50k keys, deleted (untimed) afterwards.
      const insert = await interleave(async () => {
        const rows = fresh();
        const v = await ours(rows);
        await clear(rows);
        return v;
      }, async () => {
        const rows = fresh();
        const v = await raw(rows);
        await clear(rows);
        return v;
      }, { runs: ctx.runs, log: ctx.log, label: "sink insert" });
      await pool.query("VACUUM ANALYZE price_windows").catch(() => {});
      // Update: the keys exist (written untimed by the same path), the flush brings newer versions.
      const update = await interleave(async () => {
        const rows = fresh();
        await writeBatch(pool, topic, { windows: rows, late: [], progress: null });
        const v = await ours(newer(rows));
        await clear(rows);
        return v;
      }, async () => {
        const rows = fresh();
        await rawUpsert(pool, rows);
        const v = await raw(newer(rows));
        await clear(rows);
        return v;
      }, { runs: ctx.runs, log: ctx.log, label: "sink update" });
      const common = {
        suite: "sink",
        unit: "rows/s",
        baselineLabel: "raw unnest upsert",
        target: { op: ">=", value: 0.9, on: "ratio" } as const,
      };
      return [
        rowOf({ ...common, metric: "writeBatch of 50k new rows", ...insert }),
        rowOf({
          ...common,
          metric: "writeBatch of 50k newer versions of existing rows",
          ...update,
        }),
      ];
    } finally {
      await pool.query(
        "DELETE FROM price_windows WHERE left(symbol, length($1)) = $1",
        [ctx.symbolPrefix],
      ).catch(() => {});
      await pool.end().catch(() => {});
    }
  },
};
