/**
 * Per-trigger progress records, like Spark's StreamingQueryProgress: logged as one JSON line on
 * stdout, inserted into `aggregator_progress`, and the latest kept at
 * `["tickpipe", topic, "progress"]` in Deno KV.
 * @module
 */

import { progressKey } from "./kv_layout.ts";

export { progressKey };

/** Durations of one trigger's phases, in ms (null when not measured yet). */
export interface ProgressDurations {
  /** Kafka fetch time since the previous trigger (sum of kafkajs FETCH durations). */
  fetchMs: number;
  /** Time spent parsing and folding records since the previous trigger. */
  foldMs: number;
  /** engine.trigger() plus snapshot serialization. */
  triggerMs: number;
  /** PostgreSQL transaction (up to the progress insert; null until known). */
  sinkMs: number | null;
  /** Deno KV checkpoint (null inside the PostgreSQL row: it happens after the commit). */
  checkpointMs: number | null;
}

/** One trigger's progress. */
export interface AggregatorProgress {
  /** Aggregator run id (UUID, new per process). */
  runId: string;
  /** Trigger number; continues across runs (checkpoint batchId + 1). */
  batchId: number;
  /** Topic read. */
  topic: string;
  /** Trigger time, ISO 8601. */
  timestamp: string;
  /** Records read since the previous trigger (valid and invalid). */
  inputRows: number;
  /** Records that did not parse into a tick (skipped). */
  invalidRows: number;
  /** inputRows per second of wall time since the previous trigger. */
  rowsPerSecond: number;
  /** Watermark per partition, epoch ms (null before any tick). */
  watermarks: Record<string, number | null>;
  /** Non-final window versions written. */
  windowsUpdated: number;
  /** Windows written final (and evicted from state). */
  windowsFinalized: number;
  /** Late ticks dropped (written to late_ticks). */
  lateDropped: number;
  /** Windows still open in state after the trigger. */
  openWindows: number;
  /** Next offset per partition after this trigger. */
  offsets: Record<string, number>;
  /** End offset minus next offset per partition (null when Kafka did not answer). */
  lag: Record<string, number | null>;
  /** Phase durations. */
  durationsMs: ProgressDurations;
  /** Why this trigger ran: "interval", or "final" for the last one of a run. */
  reason: "interval" | "final";
}

/** Reads the latest progress of `topic`, or null. */
export async function readProgress(
  kv: Deno.Kv,
  topic: string,
): Promise<AggregatorProgress | null> {
  return (await kv.get<AggregatorProgress>(progressKey(topic))).value;
}
