// @ts-check
/**
 * The dashboard's pure model, shared by the server (diffs) and the page (applying them,
 * chart data): no DOM, no I/O, no clock.
 * @module
 */

/**
 * @typedef {import("../types.ts").CandleView} CandleView
 * @typedef {import("../types.ts").SeriesView} SeriesView
 * @typedef {import("../types.ts").SeriesPatch} SeriesPatch
 * @typedef {import("../types.ts").SymbolPatch} SymbolPatch
 * @typedef {import("../types.ts").DashboardSnapshot} DashboardSnapshot
 * @typedef {import("../types.ts").DashboardUpdate} DashboardUpdate
 */

/**
 * True when two candles are the same in every field.
 * @param {CandleView} a
 * @param {CandleView} b
 * @returns {boolean}
 */
export function sameCandle(a, b) {
  return a.t === b.t && a.o === b.o && a.h === b.h && a.l === b.l && a.c === b.c &&
    a.n === b.n && a.v === b.v && a.vwap === b.vwap && a.final === b.final &&
    a.filled === b.filled;
}

/**
 * The patch turning `prev` into `next` (same resolution), or null when it cannot say it (a
 * candle inside the new range disappeared: the page then needs a whole snapshot).
 * @param {SeriesView} prev
 * @param {SeriesView} next
 * @returns {SeriesPatch | null}
 */
export function diffSeries(prev, next) {
  const from = next.candles.length > 0 ? next.candles[0].t : null;
  const before = new Map(prev.candles.map((c) => [c.t, c]));
  const after = new Set(next.candles.map((c) => c.t));
  for (const c of prev.candles) {
    if ((from === null || c.t >= from) && !after.has(c.t)) return null;
  }
  const upsert = next.candles.filter((c) => {
    const old = before.get(c.t);
    return old === undefined || !sameCandle(old, c);
  });
  const drops = from !== null && prev.candles.some((c) => c.t < from);
  return {
    windowMs: next.windowMs,
    from: drops ? from : null,
    upsert,
    late: next.late,
    lateByWindow: next.lateByWindow,
  };
}

/**
 * The update turning snapshot `prev` into `next`, or null when the page needs `next` whole
 * (other symbols or resolutions, another topic, or a candle that disappeared).
 * @param {DashboardSnapshot} prev
 * @param {DashboardSnapshot} next
 * @returns {DashboardUpdate | null}
 */
export function diffSnapshots(prev, next) {
  if (
    prev.topic !== next.topic || prev.symbols.length !== next.symbols.length ||
    prev.resolutions.join() !== next.resolutions.join()
  ) return null;
  /** @type {SymbolPatch[]} */
  const symbols = [];
  for (let i = 0; i < next.symbols.length; i++) {
    const a = prev.symbols[i];
    const b = next.symbols[i];
    if (a.symbol !== b.symbol || a.series.length !== b.series.length) return null;
    /** @type {SeriesPatch[]} */
    const series = [];
    for (let j = 0; j < b.series.length; j++) {
      if (a.series[j].windowMs !== b.series[j].windowMs) return null;
      const patch = diffSeries(a.series[j], b.series[j]);
      if (patch === null) return null;
      series.push(patch);
    }
    symbols.push({
      symbol: b.symbol,
      lastClose: b.lastClose,
      lastStart: b.lastStart,
      late: b.late,
      series,
    });
  }
  return {
    at: next.at,
    base: prev.at,
    partitions: next.partitions,
    processes: next.processes,
    pipeline: next.pipeline,
    symbols,
  };
}

/**
 * Applies `patch` to `series` (a new object; `series` is left as it was).
 * @param {SeriesView} series
 * @param {SeriesPatch} patch
 * @returns {SeriesView}
 */
export function applySeriesPatch(series, patch) {
  const byStart = new Map();
  for (const c of series.candles) {
    if (patch.from === null || c.t >= patch.from) byStart.set(c.t, c);
  }
  for (const c of patch.upsert) byStart.set(c.t, c);
  return {
    windowMs: series.windowMs,
    candles: [...byStart.values()].sort((a, b) => a.t - b.t),
    late: patch.late,
    lateByWindow: patch.lateByWindow,
  };
}

/** Raised when an update does not fit the snapshot it is applied to. */
export class UpdateMismatchError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "UpdateMismatchError";
  }
}

/**
 * Applies `update` to `snapshot` (a new object). Throws UpdateMismatchError when it was made
 * for another snapshot: the page then reconnects for a whole one.
 * @param {DashboardSnapshot} snapshot
 * @param {DashboardUpdate} update
 * @returns {DashboardSnapshot}
 */
export function applyUpdate(snapshot, update) {
  if (update.base !== snapshot.at) {
    throw new UpdateMismatchError(
      `Update for snapshot ${update.base} applied to snapshot ${snapshot.at}`,
    );
  }
  if (update.symbols.length !== snapshot.symbols.length) {
    throw new UpdateMismatchError(
      `Update has ${update.symbols.length} symbols, the snapshot ${snapshot.symbols.length}`,
    );
  }
  const symbols = snapshot.symbols.map((s, i) => {
    const p = update.symbols[i];
    if (p.symbol !== s.symbol || p.series.length !== s.series.length) {
      throw new UpdateMismatchError(`Update for symbol "${p.symbol}" applied to "${s.symbol}"`);
    }
    return {
      symbol: s.symbol,
      lastClose: p.lastClose,
      lastStart: p.lastStart,
      late: p.late,
      series: s.series.map((x, j) => applySeriesPatch(x, p.series[j])),
    };
  });
  return {
    v: snapshot.v,
    at: update.at,
    topic: snapshot.topic,
    resolutions: snapshot.resolutions,
    symbols,
    partitions: update.partitions,
    processes: update.processes,
    pipeline: update.pipeline,
  };
}

/** Chart colours: rising and falling candles, gaps, VWAP, late-tick markers. */
export const COLORS = Object.freeze({
  up: "#26a69a",
  down: "#ef5350",
  gap: "#9aa0a6",
  hollow: "rgba(0, 0, 0, 0)",
  vwap: "#2962ff",
  late: "#f59e0b",
  upVolume: "rgba(38, 166, 154, 0.35)",
  downVolume: "rgba(239, 83, 80, 0.35)",
});

/**
 * The data of one chart for lightweight-charts (times in seconds): candles (final ones solid,
 * open ones hollow, filled gaps grey), the VWAP line (gaps where there is none), volume bars,
 * and a marker per window with late ticks.
 * @param {SeriesView} series
 */
export function chartData(series) {
  const candles = series.candles.map((c) => {
    const time = c.t / 1000;
    const color = c.filled ? COLORS.gap : c.c >= c.o ? COLORS.up : COLORS.down;
    return {
      time,
      open: c.o,
      high: c.h,
      low: c.l,
      close: c.c,
      color: c.final && !c.filled ? color : COLORS.hollow,
      borderColor: color,
      wickColor: color,
    };
  });
  const vwap = series.candles.map((c) =>
    c.vwap === null ? { time: c.t / 1000 } : { time: c.t / 1000, value: c.vwap }
  );
  const volume = series.candles.map((c) => ({
    time: c.t / 1000,
    value: c.v,
    color: c.c >= c.o ? COLORS.upVolume : COLORS.downVolume,
  }));
  const first = series.candles.length > 0 ? series.candles[0].t : Infinity;
  const markers = series.lateByWindow.filter(([t]) => t >= first).map(([t, n]) => ({
    time: t / 1000,
    position: /** @type {const} */ ("aboveBar"),
    shape: /** @type {const} */ ("circle"),
    color: COLORS.late,
    size: 0.5,
    text: String(n),
  }));
  return { candles, vwap, volume, markers };
}

/**
 * A price with up to 6 significant digits (2 decimals at and above 1000).
 * @param {number | null} n
 * @returns {string}
 */
export function fmtPrice(n) {
  if (n === null || !Number.isFinite(n)) return "-";
  if (Math.abs(n) >= 1000) return n.toFixed(2);
  return n.toPrecision(6).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

/**
 * A duration as "850ms", "12.3s", "4m05s" or "2h03m".
 * @param {number | null} ms
 * @returns {string}
 */
export function fmtAge(ms) {
  if (ms === null || !Number.isFinite(ms)) return "-";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

/**
 * A resolution as "1m", "5m", "1h", "30s" or "250ms".
 * @param {number} ms
 * @returns {string}
 */
export function fmtResolution(ms) {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/**
 * An epoch-ms time as "HH:MM:SS" (UTC), or "-".
 * @param {number | null} ms
 * @returns {string}
 */
export function fmtClock(ms) {
  return ms === null ? "-" : new Date(ms).toISOString().slice(11, 19);
}
