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
  /** The engine cut (eviction pass, copy-on-write freeze). */
  triggerMs: number;
  /** PostgreSQL transaction (up to the progress insert; null until known). */
  sinkMs: number | null;
  /** Deno KV checkpoint (null inside the PostgreSQL row: it happens after the commit). */
  checkpointMs: number | null;
  /** Sending this trigger's dead letters to `<topic>.dlq`. */
  deadLetterMs?: number;
}

/** Why a trigger ran. */
export type TriggerReason = "interval" | "full" | "caught-up" | "final";

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
  /** Records that are not valid ticks (dead-lettered to `<topic>.dlq`). */
  invalidRows: number;
  /** Invalid records by reason. */
  invalidByReason?: Record<string, number>;
  /** Rows PostgreSQL refused for a data reason (in `rejected_rows`). */
  rowsRejected?: number;
  /** inputRows per second of wall time since the previous trigger. */
  rowsPerSecond: number;
  /** Watermark per partition, epoch ms (null before any tick). */
  watermarks: Record<string, number | null>;
  /** Non-final window versions changed since the previous trigger (a buffer-full trigger holds them back for the next one). */
  windowsUpdated: number;
  /** Window rows this trigger inserted or updated in price_windows (versions the guard skipped not counted). */
  windowsWritten?: number;
  /** Windows written final (and evicted from state). */
  windowsFinalized: number;
  /** Late ticks dropped (written to late_ticks). */
  lateDropped: number;
  /** Windows finalized early by the open-window bound. */
  forcedFinal?: number;
  /** Partitions whose watermark idle finalization advanced at this trigger. */
  idleAdvanced?: number[];
  /** Window resolutions (ms). */
  windows?: number[];
  /** Bytes of the checkpoint written by this trigger (delta, or base after a compaction). */
  checkpointBytes?: number | null;
  /** Windows still open in state after the trigger. */
  openWindows: number;
  /** Next offset per partition after this trigger. */
  offsets: Record<string, number>;
  /** End offset minus next offset per partition (null when Kafka did not answer). */
  lag: Record<string, number | null>;
  /** Phase durations. */
  durationsMs: ProgressDurations;
  /** Why this trigger ran: the interval, a full buffer, catching up after a start, or the last one. */
  reason: TriggerReason;
}

/** Reads the latest progress of `topic`, or null. */
export async function readProgress(
  kv: Deno.Kv,
  topic: string,
): Promise<AggregatorProgress | null> {
  return (await kv.get<AggregatorProgress>(progressKey(topic))).value;
}
