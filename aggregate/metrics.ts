/**
 * The aggregator's Prometheus metrics, fed once per trigger from its progress record: pass each
 * completed AggregatorProgress to `trigger()` (directly, or through
 * {@linkcode meteredProgressWriter} around `deps.writeProgress`). Pure bookkeeping: no I/O.
 * @module
 */

import { Counter, durationBuckets, Gauge, Histogram, type Registry } from "../common/metrics.ts";
import { REJECT_REASONS } from "../proto/validate.ts";

/**
 * What a trigger reports: the fields of AggregatorProgress (aggregate/progress.ts) the metrics
 * read, so a progress record is passed as it is. Optional fields are those older records lack.
 */
export interface TriggerProgress {
  /** Topic read. */
  topic: string;
  /** Why the trigger ran (interval, full, caught-up, final). */
  reason: string;
  /** Trigger time, ISO 8601. */
  timestamp: string;
  /** Records read since the previous trigger (valid and invalid). */
  inputRows: number;
  /** Records that are not valid ticks. */
  invalidRows: number;
  /** Invalid records by reason (when absent, invalidRows count as reason "unknown"). */
  invalidByReason?: Record<string, number>;
  /** Rows PostgreSQL refused for a data reason (written to rejected_rows). */
  rowsRejected?: number;
  /** Window rows inserted or updated (absent in older records: updated + finalized are counted). */
  windowsWritten?: number;
  /** Non-final window versions changed. */
  windowsUpdated: number;
  /** Windows written final. */
  windowsFinalized: number;
  /** Windows finalized early by the open-window bound (part of windowsFinalized). */
  forcedFinal?: number;
  /** Late ticks dropped (written to late_ticks). */
  lateDropped: number;
  /** Windows open in state after the trigger. */
  openWindows: number;
  /** Effective watermark per partition, epoch ms (null before any tick). */
  watermarks: Record<string, number | null>;
  /** End offset minus next offset per partition (null when Kafka did not answer). */
  lag: Record<string, number | null>;
  /** Bytes of the checkpoint this trigger wrote (absent or null: none written). */
  checkpointBytes?: number | null;
  /** Phase durations, ms. */
  durationsMs: {
    /** Kafka fetch time since the previous trigger. */
    fetchMs: number;
    /** Parsing and folding since the previous trigger. */
    foldMs: number;
    /** The engine cut. */
    triggerMs: number;
    /** Dead letters to `<topic>.dlq`. */
    deadLetterMs?: number;
    /** PostgreSQL transaction (null: nothing written). */
    sinkMs: number | null;
    /** Deno KV checkpoint (null: nothing written). */
    checkpointMs: number | null;
  };
}

/** The aggregator's instruments. */
export interface AggregatorMetrics {
  /**
   * Records one trigger from its completed progress record. `durationMs`: the trigger's wall
   * time when measured by the caller; default the sum of its cut, dead-letter, sink and
   * checkpoint phases.
   */
  trigger(progress: TriggerProgress, options?: { durationMs?: number }): void;
}

/** Buckets of `tickpipe_aggregator_trigger_duration_seconds`: 5 ms to 100 s. */
export const TRIGGER_DURATION_BUCKETS: readonly number[] = durationBuckets(0.005, 100);
/** Buckets of `tickpipe_aggregator_checkpoint_size_bytes`: 1 KiB to 1 GiB, by 4. */
export const CHECKPOINT_BYTES_BUCKETS = Array.from({ length: 11 }, (_, i) => 1024 * 4 ** i);

const PHASES = [
  ["fetch", "fetchMs"],
  ["fold", "foldMs"],
  ["cut", "triggerMs"],
  ["dead_letters", "deadLetterMs"],
  ["sink", "sinkMs"],
  ["checkpoint", "checkpointMs"],
] as const;

/** Registers the aggregator's metrics in `registry`. */
export function createAggregatorMetrics(registry: Registry): AggregatorMetrics {
  const registers = [registry];
  const triggers = new Counter({
    name: "tickpipe_aggregator_triggers_total",
    help: "Triggers run, by reason (interval, full, caught-up, final).",
    labelNames: ["reason"],
    registers,
  });
  for (const reason of ["interval", "final"]) triggers.inc({ reason }, 0);
  const duration = new Histogram({
    name: "tickpipe_aggregator_trigger_duration_seconds",
    help: "Duration of a trigger (cut, dead letters, PostgreSQL upsert, KV checkpoint), " +
      "in seconds.",
    buckets: [...TRIGGER_DURATION_BUCKETS],
    registers,
  });
  const phases = new Counter({
    name: "tickpipe_aggregator_phase_seconds_total",
    help: "Time spent per phase (fetch, fold, cut, dead_letters, sink, checkpoint), in seconds.",
    labelNames: ["phase"],
    registers,
  });
  for (const [phase] of PHASES) phases.inc({ phase }, 0);
  const records = new Counter({
    name: "tickpipe_aggregator_records_total",
    help: "Kafka records read (valid and invalid).",
    registers,
  });
  const invalid = new Counter({
    name: "tickpipe_aggregator_invalid_records_total",
    help: "Records that are not valid ticks (dead-lettered to <topic>.dlq), by reason.",
    labelNames: ["reason"],
    registers,
  });
  for (const reason of REJECT_REASONS) invalid.inc({ reason }, 0);
  const upserted = new Counter({
    name: "tickpipe_aggregator_rows_upserted_total",
    help: "Window rows inserted or updated in PostgreSQL price_windows (open and final versions).",
    registers,
  });
  const rejected = new Counter({
    name: "tickpipe_aggregator_rows_rejected_total",
    help: "Rows PostgreSQL refused for a data reason (recorded in rejected_rows).",
    registers,
  });
  const finals = new Counter({
    name: "tickpipe_aggregator_final_windows_total",
    help: "Windows written final (and evicted from state).",
    registers,
  });
  const forced = new Counter({
    name: "tickpipe_aggregator_forced_final_windows_total",
    help: "Windows finalized early by the open-window bound (also in final_windows_total).",
    registers,
  });
  const late = new Counter({
    name: "tickpipe_aggregator_late_ticks_total",
    help: "Ticks behind the watermark, dropped and written to late_ticks.",
    registers,
  });
  const open = new Gauge({
    name: "tickpipe_aggregator_open_windows",
    help: "Windows open in state after the last trigger.",
    registers,
  });
  const checkpoint = new Histogram({
    name: "tickpipe_aggregator_checkpoint_size_bytes",
    help: "Bytes of each checkpoint written to Deno KV (delta, or base after a compaction).",
    buckets: CHECKPOINT_BYTES_BUCKETS,
    registers,
  });
  const lag = new Gauge({
    name: "tickpipe_aggregator_lag_records",
    help: "Records between the aggregator's next offset and the partition's end offset, at " +
      "the last trigger.",
    labelNames: ["topic", "partition"],
    registers,
  });
  const watermark = new Gauge({
    name: "tickpipe_aggregator_watermark_seconds",
    help: "Effective event-time watermark per partition, seconds since the Unix epoch.",
    labelNames: ["topic", "partition"],
    registers,
  });
  const lastTrigger = new Gauge({
    name: "tickpipe_aggregator_last_trigger_timestamp_seconds",
    help: "Time of the last trigger, seconds since the Unix epoch.",
    registers,
  });

  const perPartition = (
    gauge: Gauge,
    topic: string,
    values: Record<string, number | null>,
    scale: number,
  ) => {
    for (const [partition, v] of Object.entries(values)) {
      const labels = { topic, partition };
      if (v === null || !Number.isFinite(v)) gauge.remove(labels);
      else gauge.set(labels, v / scale);
    }
  };
  const count = (c: Counter, n: number | undefined) => {
    if (n !== undefined && Number.isFinite(n) && n > 0) c.inc(n);
  };

  return {
    trigger(p, options = {}) {
      triggers.inc({ reason: p.reason });
      const d = p.durationsMs;
      const ms = options.durationMs ??
        d.triggerMs + (d.deadLetterMs ?? 0) + (d.sinkMs ?? 0) + (d.checkpointMs ?? 0);
      duration.observe(Math.max(0, ms) / 1000);
      for (const [phase, key] of PHASES) {
        const v = d[key];
        if (typeof v === "number" && v > 0) phases.inc({ phase }, v / 1000);
      }
      count(records, p.inputRows);
      if (p.invalidByReason !== undefined) {
        for (const [reason, n] of Object.entries(p.invalidByReason)) {
          if (n > 0) invalid.inc({ reason }, n);
        }
      } else if (p.invalidRows > 0) invalid.inc({ reason: "unknown" }, p.invalidRows);
      count(upserted, p.windowsWritten ?? p.windowsUpdated + p.windowsFinalized);
      count(rejected, p.rowsRejected);
      count(finals, p.windowsFinalized);
      count(forced, p.forcedFinal);
      count(late, p.lateDropped);
      open.set(p.openWindows);
      if (typeof p.checkpointBytes === "number") checkpoint.observe(p.checkpointBytes);
      perPartition(lag, p.topic, p.lag, 1);
      perPartition(watermark, p.topic, p.watermarks, 1000);
      const at = Date.parse(p.timestamp);
      if (Number.isFinite(at)) lastTrigger.set(at / 1000);
    },
  };
}

/**
 * Wraps an aggregator's `writeProgress` (one JSON progress line per trigger) so that every line
 * also feeds `metrics`: the wiring that needs no change in the aggregator itself.
 */
export function meteredProgressWriter(
  metrics: AggregatorMetrics,
  write: (line: string) => void = (line) => console.log(line),
): (line: string) => void {
  return (line) => {
    write(line);
    // Metrics never stop a trigger: a line that is not a progress record is skipped.
    try {
      const progress = JSON.parse(line) as TriggerProgress;
      if (typeof progress?.durationsMs === "object" && progress.durationsMs !== null) {
        metrics.trigger(progress);
      }
    } catch { /* not a progress record */ }
  };
}
