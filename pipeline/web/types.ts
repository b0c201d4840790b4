/**
 * What the web dashboard sends to the page: one {@linkcode DashboardSnapshot} when a page
 * connects (and whenever the set of charts changes), then a {@linkcode DashboardUpdate} per
 * refresh carrying only the candles that changed. Times are epoch ms, resolutions ms.
 * @module
 */

/** One window of `price_windows` (or a gap `candles()` filled) as a chart candle. */
export interface CandleView {
  /** Window start (epoch ms). */
  t: number;
  /** Open. */
  o: number;
  /** High. */
  h: number;
  /** Low. */
  l: number;
  /** Close. */
  c: number;
  /** Ticks in the window (0 for a filled gap). */
  n: number;
  /** Volume (sum of dayVolume deltas). */
  v: number;
  /** Volume-weighted average price, null without volume. */
  vwap: number | null;
  /** The watermark passed the window's end: it never changes again. */
  final: boolean;
  /** A gap: no tick, the previous close carried forward. */
  filled: boolean;
}

/** Late ticks of one window: `[window start, count]`. */
export type LateBucket = [number, number];

/** One chart: a symbol at one resolution. */
export interface SeriesView {
  /** Resolution (window length), ms. */
  windowMs: number;
  /** The latest candles, oldest first, gap-free (at most the dashboard's `bars`). */
  candles: CandleView[];
  /** Late ticks this resolution dropped, all time. */
  late: number;
  /** Late ticks per window, within the candles' range, oldest first. */
  lateByWindow: LateBucket[];
}

/** One symbol: a chart per resolution. */
export interface SymbolView {
  /** Symbol. */
  symbol: string;
  /** Close of its latest window at the smallest resolution, or null before any. */
  lastClose: number | null;
  /** Start of that window (epoch ms), or null. */
  lastStart: number | null;
  /** Late ticks of the symbol, all time (a tick late for several resolutions counts once). */
  late: number;
  /** One per resolution, in the order of the snapshot's `resolutions`. */
  series: SeriesView[];
}

/** One Kafka partition of the ticks topic. */
export interface PartitionView {
  /** Partition number. */
  partition: number;
  /** Kafka's end offset. */
  endOffset: number;
  /** The checkpoint's next offset to read, or null before the first checkpoint. */
  storedOffset: number | null;
  /** Unread records. */
  lag: number;
  /** The checkpoint's effective watermark (epoch ms), or null. */
  watermark: number | null;
}

/** State of one process of the pipeline. */
export type ProcessState =
  | "starting"
  | "running"
  | "restarting"
  | "exited"
  | "failed"
  | "stopping"
  | "stopped"
  | "idle"
  | "lease expired";

/** One process: a supervised child of start/demo, or the sensor's aggregator (from KV). */
export interface ProcessView {
  /** Name (`ingest`, `sensor`, `aggregator`, ...). */
  name: string;
  /** State. */
  state: ProcessState;
  /** Process id, when known. */
  pid: number | null;
  /** Since when it is in this state (epoch ms), when known. */
  since: number | null;
  /** Starts so far (supervised children). */
  starts: number;
  /** Last exit code, when it exited. */
  lastExit: number | null;
  /** One line of detail (restart reason, last trigger, launches). */
  detail: string;
}

/** The pipeline as a whole. */
export interface PipelineView {
  /** Records in the ticks topic. */
  ticksInTopic: number;
  /** Ticks per second arriving (between the last two refreshes), null on the first. */
  ratePerSec: number | null;
  /** Records in the dead-letter topic. */
  deadLetters: number;
  /** Unread records over all partitions. */
  totalLag: number;
  /** The latest aggregator trigger, or null. */
  lastTrigger: {
    batchId: number;
    at: number;
    reason: string;
    inputRows: number;
    windowsUpdated: number;
    windowsFinalized: number;
    lateDropped: number;
    openWindows: number;
  } | null;
  /** When the checkpoint was last committed (epoch ms), or null. */
  checkpointAt: number | null;
  /** Kafka reachability. */
  kafka: { reachable: boolean; error: string | null };
  /** PostgreSQL reachability. */
  postgres: { reachable: boolean; error: string | null };
}

/** Everything the page shows. */
export interface DashboardSnapshot {
  /** Format version. */
  v: 1;
  /** When collected (epoch ms). */
  at: number;
  /** Ticks topic. */
  topic: string;
  /** The resolutions charted, ms, ascending. */
  resolutions: number[];
  /** Charts, per symbol. */
  symbols: SymbolView[];
  /** Per partition lag and watermark. */
  partitions: PartitionView[];
  /** The processes. */
  processes: ProcessView[];
  /** Totals. */
  pipeline: PipelineView;
}

/** The change of one chart: candles to add or replace, and those to drop (before `from`). */
export interface SeriesPatch {
  /** Resolution, ms. */
  windowMs: number;
  /** Drop candles starting before this (the range slid), or null to keep all. */
  from: number | null;
  /** New or changed candles, oldest first. */
  upsert: CandleView[];
  /** As in {@linkcode SeriesView}. */
  late: number;
  /** As in {@linkcode SeriesView} (whole list). */
  lateByWindow: LateBucket[];
}

/** The change of one symbol. */
export interface SymbolPatch {
  /** Symbol. */
  symbol: string;
  /** As in {@linkcode SymbolView}. */
  lastClose: number | null;
  /** As in {@linkcode SymbolView}. */
  lastStart: number | null;
  /** As in {@linkcode SymbolView}. */
  late: number;
  /** One per resolution, in order. */
  series: SeriesPatch[];
}

/** A refresh: the small parts whole, the charts as patches (same symbols and resolutions). */
export interface DashboardUpdate {
  /** When collected (epoch ms). */
  at: number;
  /** The snapshot's `at` this applies to. */
  base: number;
  /** Partitions (whole). */
  partitions: PartitionView[];
  /** Processes (whole). */
  processes: ProcessView[];
  /** Totals (whole). */
  pipeline: PipelineView;
  /** One per symbol, in order. */
  symbols: SymbolPatch[];
}
