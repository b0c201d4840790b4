/**
 * The dashboard's data: one {@linkcode DashboardSnapshot} built from PostgreSQL (gap-free candles
 * through `candles()`, late-tick counts), Deno KV and Kafka (partitions, lag, watermarks, the
 * aggregator's lease and progress, through pipeline/status.ts) and the supervised processes
 * handed in. The edges are passed in; turning rows into views is pure.
 * @module
 */

import type { BaseConfig } from "../../common/config.ts";
import type { Kafka } from "../../common/kafka.ts";
import { redact } from "../../common/log.ts";
import type { Pool } from "../../common/pg.ts";
import { checkpointKey, isPointerV2, type StoredPointerValue } from "../../aggregate/kv_layout.ts";
import { collectStatus, type PipelineStatus } from "../status.ts";
import { DASHBOARD_DISCOVERED_SYMBOLS, DASHBOARD_OWN_FLAGS } from "../options.ts";
import { aggregatorView } from "./processes.ts";
import type {
  CandleView,
  DashboardSnapshot,
  LateBucket,
  PartitionView,
  PipelineView,
  ProcessView,
  SymbolView,
} from "./types.ts";

/** Candles per chart by default. */
export const DEFAULT_BARS = DASHBOARD_OWN_FLAGS.bars.default;

/** Symbols charted when none are named (the most recently written). */
export const MAX_DISCOVERED_SYMBOLS = DASHBOARD_DISCOVERED_SYMBOLS;

/** The resolution of a v1 checkpoint and of the aggregator's default. */
const DEFAULT_RESOLUTION_MS = 300_000;

/** One row of the candles query. */
export interface CandleRow {
  /** Symbol. */
  symbol: string;
  /** Resolution, ms. */
  windowMs: number;
  /** The candle. */
  candle: CandleView;
}

/** One row of the late-ticks query: ticks of a symbol late for a resolution, per window. */
export interface LateRow {
  /** Symbol. */
  symbol: string;
  /** Resolution that dropped them, ms. */
  windowMs: number;
  /** Window start (epoch ms). */
  t: number;
  /** Late ticks. */
  n: number;
}

/** Options of {@linkcode readCandles}. */
export interface CandleQuery {
  /** Ticks topic. */
  topic: string;
  /** Symbols. */
  symbols: readonly string[];
  /** Resolutions, ms. */
  resolutions: readonly number[];
  /** Candles per chart, ending with each chart's latest window (default 120). */
  bars?: number;
}

/**
 * The latest `bars` candles of each (symbol, resolution), gap-free (`candles()`: a bucket
 * without ticks carries the previous close), ending at the chart's latest window rather than
 * at the wall clock (so an accelerated or replayed event clock charts as well). One query.
 */
export async function readCandles(pool: Pool, q: CandleQuery): Promise<CandleRow[]> {
  if (q.symbols.length === 0 || q.resolutions.length === 0) return [];
  const bars = Math.max(1, Math.floor(q.bars ?? DEFAULT_BARS));
  const { rows } = await pool.query(
    `WITH s AS (SELECT unnest($2::text[]) AS symbol),
          r AS (SELECT ms, make_interval(secs => ms / 1000.0) AS res
                  FROM unnest($3::float8[]) AS ms),
          b AS (SELECT s.symbol, r.ms, r.res,
                       (SELECT max(w.window_start) FROM price_windows w
                         WHERE w.topic = $1 AND w.symbol = s.symbol
                           AND w.window_length = r.res) AS last_start
                  FROM s CROSS JOIN r)
     SELECT b.symbol, b.ms, c.window_start, c.open_price, c.high_price, c.low_price,
            c.close_price, c.tick_count, c.volume, c.vwap, c.is_final, c.filled
       FROM b CROSS JOIN LATERAL
            candles($1, b.symbol, b.res, b.last_start - b.res * ($4::int - 1),
                    b.last_start + b.res) c
      ORDER BY b.symbol, b.ms, c.window_start`,
    [q.topic, [...q.symbols], [...q.resolutions], bars],
  );
  return rows.map((r) => ({
    symbol: r.symbol,
    windowMs: Number(r.ms),
    candle: {
      t: (r.window_start as Date).getTime(),
      o: r.open_price,
      h: r.high_price,
      l: r.low_price,
      c: r.close_price,
      n: Number(r.tick_count),
      v: r.volume,
      vwap: r.vwap,
      final: r.is_final,
      filled: r.filled,
    },
  }));
}

/**
 * Late ticks of `symbols` in `topic` per resolution that dropped them (`late_for`) and window
 * of that resolution, and per symbol in all (a tick late for two resolutions counts once there;
 * rows from before v2, without `late_for`, count only there).
 */
export async function readLateTicks(
  pool: Pool,
  q: { topic: string; symbols: readonly string[] },
): Promise<{ rows: LateRow[]; totals: Map<string, number> }> {
  if (q.symbols.length === 0) return { rows: [], totals: new Map() };
  const [byWindow, totals] = await Promise.all([
    pool.query(
      `SELECT l.symbol, f.ms,
              floor(extract(epoch FROM l.event_time) * 1000 / f.ms) * f.ms AS t,
              count(*)::int AS n
         FROM late_ticks l
        CROSS JOIN LATERAL (SELECT round(extract(epoch FROM x) * 1000)::float8 AS ms
                              FROM unnest(l.late_for) AS x) f
        WHERE l.topic = $1 AND l.symbol = ANY($2::text[]) AND f.ms > 0
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3`,
      [q.topic, [...q.symbols]],
    ),
    pool.query(
      `SELECT symbol, count(*)::int AS n FROM late_ticks
        WHERE topic = $1 AND symbol = ANY($2::text[]) GROUP BY symbol`,
      [q.topic, [...q.symbols]],
    ),
  ]);
  return {
    rows: byWindow.rows.map((r) => ({
      symbol: r.symbol,
      windowMs: Number(r.ms),
      t: Number(r.t),
      n: r.n,
    })),
    totals: new Map(totals.rows.map((r) => [r.symbol as string, r.n as number])),
  };
}

/** The symbols most recently written in `topic` (at most `limit`), by name. */
export async function discoverSymbols(
  pool: Pool,
  q: { topic: string; limit?: number },
): Promise<string[]> {
  // Bounded: the newest 5000 windows of the topic (window_start index), not the whole table.
  const { rows } = await pool.query(
    `SELECT symbol FROM (
       SELECT symbol, window_start FROM price_windows WHERE topic = $1
        ORDER BY window_start DESC LIMIT 5000) recent
      GROUP BY symbol ORDER BY max(window_start) DESC, symbol LIMIT $2`,
    [q.topic, q.limit ?? MAX_DISCOVERED_SYMBOLS],
  );
  return rows.map((r) => r.symbol as string).sort();
}

/**
 * The resolutions the aggregator runs, from KV (its latest progress, else its checkpoint), else
 * those `price_windows` holds for the symbols, else the default 5 minutes.
 */
export async function readResolutions(
  deps: { kv: Deno.Kv; pool: Pool },
  q: { topic: string; symbols: readonly string[]; progress?: { windows?: number[] } | null },
): Promise<number[]> {
  const fromProgress = q.progress?.windows;
  if (fromProgress && fromProgress.length > 0) return [...fromProgress].sort((a, b) => a - b);
  const cp = (await deps.kv.get<StoredPointerValue>(checkpointKey(q.topic))).value;
  if (cp !== null) {
    return isPointerV2(cp) ? [...cp.engine.windows].sort((a, b) => a - b) : [
      DEFAULT_RESOLUTION_MS,
    ];
  }
  if (q.symbols.length > 0) {
    const { rows } = await deps.pool.query(
      `SELECT DISTINCT round(extract(epoch FROM window_length) * 1000)::float8 AS ms
         FROM price_windows WHERE topic = $1 AND symbol = ANY($2::text[]) ORDER BY 1`,
      [q.topic, [...q.symbols]],
    );
    if (rows.length > 0) return rows.map((r) => Number(r.ms));
  }
  return [DEFAULT_RESOLUTION_MS];
}

/**
 * The charts of `symbols` at `resolutions` from the rows of the two queries (pure): a series
 * per resolution in order (empty when the symbol has no window at it), the last close at the
 * smallest resolution, late ticks within each chart's range.
 */
export function buildSymbols(
  symbols: readonly string[],
  resolutions: readonly number[],
  rows: {
    candles: readonly CandleRow[];
    late: readonly LateRow[];
    lateTotals: Map<string, number>;
  },
): SymbolView[] {
  const key = (symbol: string, ms: number) => `${ms}\u0000${symbol}`;
  const candles = new Map<string, CandleView[]>();
  for (const r of rows.candles) {
    const k = key(r.symbol, r.windowMs);
    const list = candles.get(k) ?? [];
    list.push(r.candle);
    candles.set(k, list);
  }
  const late = new Map<string, LateBucket[]>();
  for (const r of rows.late) {
    const k = key(r.symbol, r.windowMs);
    const list = late.get(k) ?? [];
    list.push([r.t, r.n]);
    late.set(k, list);
  }
  return symbols.map((symbol) => {
    const series = resolutions.map((windowMs) => {
      const cs = (candles.get(key(symbol, windowMs)) ?? []).sort((a, b) => a.t - b.t);
      const buckets = (late.get(key(symbol, windowMs)) ?? []).sort((a, b) => a[0] - b[0]);
      const first = cs.length > 0 ? cs[0].t : Infinity;
      return {
        windowMs,
        candles: cs,
        late: buckets.reduce((n, [, c]) => n + c, 0),
        lateByWindow: buckets.filter(([t]) => t >= first),
      };
    });
    // The latest real window (not a filled gap) at the smallest resolution that has one.
    let lastClose: number | null = null;
    let lastStart: number | null = null;
    for (const s of series) {
      const real = s.candles.findLast((c) => !c.filled);
      if (real) {
        lastClose = real.c;
        lastStart = real.t;
        break;
      }
    }
    return { symbol, lastClose, lastStart, late: rows.lateTotals.get(symbol) ?? 0, series };
  });
}

/** Partitions, totals and the aggregator from a status record (pure). */
export function pipelineParts(
  status: PipelineStatus,
  options: { now: number; previous?: DashboardSnapshot | null },
): { partitions: PartitionView[]; pipeline: PipelineView; aggregator: ProcessView } {
  const prev = options.previous;
  const at = Date.parse(status.at);
  const p = status.progress;
  const rate = prev && at > prev.at && status.kafka.reachable && prev.pipeline.kafka.reachable
    ? Math.max(
      0,
      Math.round(
        ((status.ticksInTopic - prev.pipeline.ticksInTopic) * 1000) /
          (at - prev.at),
      ),
    )
    : null;
  return {
    partitions: status.partitions.map((x) => ({
      partition: x.partition,
      endOffset: x.endOffset,
      storedOffset: x.storedOffset,
      lag: x.lag,
      watermark: x.watermark,
    })),
    pipeline: {
      ticksInTopic: status.ticksInTopic,
      ratePerSec: rate,
      deadLetters: status.deadLetters,
      totalLag: status.totalLag,
      lastTrigger: p
        ? {
          batchId: p.batchId,
          at: Date.parse(p.timestamp),
          reason: p.reason,
          inputRows: p.inputRows,
          windowsUpdated: p.windowsUpdated,
          windowsFinalized: p.windowsFinalized,
          lateDropped: p.lateDropped,
          openWindows: p.openWindows,
        }
        : null,
      checkpointAt: status.checkpoint ? Date.parse(status.checkpoint.committedAt) : null,
      kafka: { reachable: status.kafka.reachable, error: status.kafka.error ?? null },
      postgres: { reachable: status.postgres.reachable, error: status.postgres.error ?? null },
    },
    aggregator: aggregatorView(status, options.now),
  };
}

/** Edges of {@linkcode collectDashboard}. */
export interface DashboardDeps {
  /** Kafka client. */
  kafka: Kafka;
  /** PostgreSQL pool. */
  pool: Pool;
  /** Deno KV. */
  kv: Deno.Kv;
  /** Clock (default Date.now). */
  now?: () => number;
}

/** Options of {@linkcode collectDashboard}. */
export interface CollectOptions {
  /** Symbols to chart (default: the most recently written in the topic). */
  symbols?: readonly string[];
  /** Candles per chart (default 120). */
  bars?: number;
  /** The supervised processes (start/demo), shown before the aggregator. */
  processes?: readonly ProcessView[];
  /** The previous snapshot (for the arrival rate). */
  previous?: DashboardSnapshot | null;
}

/**
 * Collects one snapshot. PostgreSQL or Kafka being down is shown, not thrown: the charts of a
 * failed query stay empty and `pipeline.postgres.error` says why.
 */
export async function collectDashboard(
  config: BaseConfig,
  deps: DashboardDeps,
  options: CollectOptions = {},
): Promise<DashboardSnapshot> {
  const now = deps.now ?? Date.now;
  const topic = config.topic;
  let dbError: string | null = null;
  const guard = async <T>(p: Promise<T>, fallback: T): Promise<T> => {
    try {
      return await p;
    } catch (e) {
      dbError ??= redact((e as Error).message);
      return fallback;
    }
  };
  const symbols = options.symbols?.length
    ? [...options.symbols]
    : await guard(discoverSymbols(deps.pool, { topic }), []);
  const status = await collectStatus(config, { ...deps, now }, { symbols, newest: 0 });
  const resolutions = await guard(
    readResolutions(deps, { topic, symbols, progress: status.progress }),
    [DEFAULT_RESOLUTION_MS],
  );
  const [candles, late] = await Promise.all([
    guard(readCandles(deps.pool, { topic, symbols, resolutions, bars: options.bars }), []),
    guard(readLateTicks(deps.pool, { topic, symbols }), { rows: [], totals: new Map() }),
  ]);
  const parts = pipelineParts(status, { now: now(), previous: options.previous });
  if (dbError !== null && parts.pipeline.postgres.reachable) {
    parts.pipeline.postgres = { reachable: true, error: dbError };
  }
  return {
    v: 1,
    at: Date.parse(status.at),
    topic,
    resolutions,
    symbols: buildSymbols(symbols, resolutions, {
      candles,
      late: late.rows,
      lateTotals: late.totals,
    }),
    partitions: parts.partitions,
    processes: [...(options.processes ?? []), parts.aggregator],
    pipeline: parts.pipeline,
  };
}
