/**
 * Suite 5, sink: one flush of 50k window rows through aggregate/sink.ts writeBatch (transaction,
 * statement timeout, slices of 5000 under savepoints, hand-built array literals, versioned upsert
 * with the final-row guard) against one raw `INSERT ... SELECT FROM unnest ... ON CONFLICT DO
 * UPDATE` of the same rows (node-postgres array parameters, autocommit, no guard), as new rows
 * (insert) and as newer versions of existing rows (update). Target: ratio >= 0.9.
 * A third row times only the building of the array parameters of 50k rows: node-postgres'
 * `prepareValue` on JS arrays (what the v1 sink and the raw baseline send) against
 * common/pg_array.ts.
 * @module
 */

import pgUtils from "pg/lib/utils.js";
import type { WindowRow } from "../../aggregate/sink.ts";
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
  batch: { topic: string; windows: readonly WindowRow[] },
) => Promise<{ windowsWritten: number; rejected: number }>;

type ArrayBuilders = {
  textArray(n: number, get: (i: number) => string | null): string;
  floatArray(n: number, get: (i: number) => number | null): string;
  integerArray(n: number, get: (i: number) => number | bigint | null): string;
  boolArray(n: number, get: (i: number) => boolean): string;
};

const RAW_SQL = `
INSERT INTO price_windows (
  topic, symbol, window_length, window_start, window_end, avg_price, open_price, high_price,
  low_price, close_price, tick_count, is_final, kafka_partition, last_offset, updated_at,
  price_sum, first_tick_at, last_tick_at, volume, pv_sum, vwap)
SELECT $1, u.symbol, u.wl * interval '1 millisecond', to_timestamp(u.ws / 1000.0),
  to_timestamp(u.we / 1000.0), u.avg, u.o, u.h, u.l, u.c, u.n, u.fin, u.p, u.off, now(), u.s,
  to_timestamp(u.ft / 1000.0), to_timestamp(u.lt / 1000.0), u.v, u.pv, u.vwap
FROM unnest($2::text[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::float8[],
            $8::float8[], $9::float8[], $10::float8[], $11::bigint[], $12::boolean[],
            $13::int[], $14::bigint[], $15::float8[], $16::float8[], $17::float8[],
            $18::float8[], $19::float8[], $20::float8[])
  AS u(symbol, wl, ws, we, avg, o, h, l, c, n, fin, p, off, s, ft, lt, v, pv, vwap)
ON CONFLICT (topic, symbol, window_length, window_start) DO UPDATE SET
  window_end = EXCLUDED.window_end, avg_price = EXCLUDED.avg_price,
  open_price = EXCLUDED.open_price, high_price = EXCLUDED.high_price,
  low_price = EXCLUDED.low_price, close_price = EXCLUDED.close_price,
  tick_count = EXCLUDED.tick_count, is_final = EXCLUDED.is_final,
  kafka_partition = EXCLUDED.kafka_partition, last_offset = EXCLUDED.last_offset,
  updated_at = EXCLUDED.updated_at, price_sum = EXCLUDED.price_sum,
  first_tick_at = EXCLUDED.first_tick_at, last_tick_at = EXCLUDED.last_tick_at,
  volume = EXCLUDED.volume, pv_sum = EXCLUDED.pv_sum, vwap = EXCLUDED.vwap`;

/** The 19 column arrays of `rows` as JS arrays (what node-postgres then escapes). */
function jsColumns(rows: readonly WindowRow[]): unknown[][] {
  return [
    rows.map((w) => w.symbol),
    rows.map((w) => w.windowMs),
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
    rows.map((w) => w.volume),
    rows.map((w) => w.pvSum),
    rows.map((w) => w.vwap),
  ];
}

/** The baseline: one autocommit statement, node-postgres array parameters, no version check. */
async function rawUpsert(pool: Pool, topic: string, rows: readonly WindowRow[]): Promise<number> {
  const r = await pool.query(RAW_SQL, [topic, ...jsColumns(rows)]);
  return r.rowCount ?? 0;
}

/** The same literals the sink builds (19 columns), from common/pg_array.ts. */
function ourColumns(a: ArrayBuilders, rows: readonly WindowRow[]): string[] {
  const n = rows.length;
  return [
    a.textArray(n, (i) => rows[i].symbol),
    a.integerArray(n, (i) => rows[i].windowMs),
    a.integerArray(n, (i) => rows[i].windowStart),
    a.integerArray(n, (i) => rows[i].windowEnd),
    a.floatArray(n, (i) => rows[i].avg),
    a.floatArray(n, (i) => rows[i].open),
    a.floatArray(n, (i) => rows[i].high),
    a.floatArray(n, (i) => rows[i].low),
    a.floatArray(n, (i) => rows[i].close),
    a.integerArray(n, (i) => rows[i].count),
    a.boolArray(n, (i) => rows[i].isFinal),
    a.integerArray(n, (i) => rows[i].partition),
    a.integerArray(n, (i) => rows[i].lastOffset),
    a.floatArray(n, (i) => rows[i].sum),
    a.integerArray(n, (i) => rows[i].firstEventTime),
    a.integerArray(n, (i) => rows[i].lastEventTime),
    a.floatArray(n, (i) => rows[i].volume),
    a.floatArray(n, (i) => rows[i].pvSum),
    a.floatArray(n, (i) => rows[i].vwap),
  ];
}

/** v2 rows (a resolution, volume and VWAP) from the shared generator; prices with full digits. */
function v2Rows(n: number, prefix: string): WindowRow[] {
  return windowRows(n, { prefix }).map((r, i) => {
    const volume = i % 5 === 0 ? 0 : 100 + (i % 37);
    const pvSum = volume * r.avg * (1 + 1e-9 * i);
    return {
      ...r,
      windowMs: r.windowEnd - r.windowStart,
      sum: r.sum * (1 + 1e-12 * i),
      avg: r.avg * (1 + 1e-12 * i),
      volume,
      pvSum,
      vwap: volume === 0 ? null : pvSum / volume,
    };
  });
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
  requires: ["aggregate/sink.ts", "common/pg_array.ts"],
  async run(ctx: SuiteContext): Promise<Row[]> {
    const mod = await importModule<Record<string, unknown>>("aggregate/sink.ts");
    const writeBatch = requireFunction<WriteBatch>(mod, "writeBatch", {
      path: "aggregate/sink.ts",
    });
    const arrays = await importModule<ArrayBuilders & Record<string, unknown>>(
      "common/pg_array.ts",
    );
    const N = 50_000;
    const pool = benchPool(ctx.config, 2);
    const topic = `${ctx.runId}-sink`;
    const rawTopic = `${ctx.runId}-sink-raw`;
    let set = 0;
    const fresh = () => v2Rows(N, `${ctx.symbolPrefix}K${set++}_`);
    const clear = async () => {
      await pool.query("DELETE FROM price_windows WHERE topic = ANY($1)", [[topic, rawTopic]]);
    };
    const ours = async (rows: WindowRow[]) => {
      const t0 = performance.now();
      const r = await writeBatch(pool, { topic, windows: rows });
      const ms = performance.now() - t0;
      if (r.windowsWritten !== rows.length || r.rejected !== 0) {
        throw new Error(
          `writeBatch wrote ${r.windowsWritten} of ${rows.length} rows (${r.rejected} rejected)`,
        );
      }
      return perSecond(rows.length, ms);
    };
    const raw = async (rows: WindowRow[]) => {
      const t0 = performance.now();
      const n = await rawUpsert(pool, rawTopic, rows);
      const ms = performance.now() - t0;
      if (n !== rows.length) throw new Error(`Raw upsert wrote ${n} of ${rows.length} rows`);
      return perSecond(rows.length, ms);
    };
    try {
      // Insert: every run writes a fresh set of 50k keys, deleted (untimed) afterwards.
      const insert = await interleave(async () => {
        const v = await ours(fresh());
        await clear();
        return v;
      }, async () => {
        const v = await raw(fresh());
        await clear();
        return v;
      }, { runs: ctx.runs, log: ctx.log, label: "sink insert" });
      await pool.query("VACUUM ANALYZE price_windows").catch(() => {});
      // Update: the keys exist (written untimed by the same path), the flush brings newer versions.
      const update = await interleave(async () => {
        const rows = fresh();
        await writeBatch(pool, { topic, windows: rows });
        const v = await ours(newer(rows));
        await clear();
        return v;
      }, async () => {
        const rows = fresh();
        await rawUpsert(pool, rawTopic, rows);
        const v = await raw(newer(rows));
        await clear();
        return v;
      }, { runs: ctx.runs, log: ctx.log, label: "sink update" });
      // Parameter building only (CPU): node-postgres' per-element escaping vs our literals.
      const rows = fresh();
      let sink = 0;
      const params = await interleave(() => {
        const t0 = performance.now();
        for (const c of ourColumns(arrays, rows)) sink += c.length;
        return performance.now() - t0;
      }, () => {
        const t0 = performance.now();
        for (const c of jsColumns(rows)) sink += String(pgUtils.prepareValue(c)).length;
        return performance.now() - t0;
      }, { runs: ctx.runs, log: ctx.log, label: "sink params" });
      if (sink === 0) throw new Error("Parameter building produced nothing");
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
        rowOf({
          suite: "sink",
          metric: "array parameters of 50k rows (19 columns), build time",
          unit: "ms",
          baselineLabel: "node-postgres prepareValue (per-element escaping)",
          lowerIsBetter: true,
          ...params,
          note: "CPU only, no I/O; ratio = baseline ms / ours ms",
        }),
      ];
    } finally {
      await clear().catch(() => {});
      await pool.end().catch(() => {});
    }
  },
};
