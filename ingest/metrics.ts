/**
 * Ingest's Prometheus metrics. Counters and gauges are read from {@linkcode IngestStats} at scrape
 * time (nothing is added to the per-frame path); producer batch latency is timed by wrapping
 * the Kafka send (`IngestOptions.wrapSend`), once per batch.
 * @module
 */

import { Counter, durationBuckets, Gauge, Histogram, type Registry } from "../common/metrics.ts";
import { FRAME_REASONS } from "./frame.ts";
import type { IngestStats } from "./ingest.ts";
import type { SendBatch } from "./producer.ts";

/** Buckets of `tickpipe_ingest_producer_batch_duration_seconds`: 1 ms to 30 s. */
export const BATCH_DURATION_BUCKETS: readonly number[] = durationBuckets(0.001, 30);
/** Buckets of `tickpipe_ingest_producer_batch_records`. */
export const BATCH_RECORDS_BUCKETS = [1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000];

/** Ingest's instruments. */
export interface IngestMetrics {
  /** Wraps the Kafka send so that every acknowledged batch is timed and sized. */
  wrapSend(send: SendBatch): SendBatch;
  /** Reads counters and gauges from `stats` at every scrape (until then they stay 0). */
  observe(stats: () => IngestStats): void;
}

/** Registers ingest's metrics in `registry`. */
export function createIngestMetrics(registry: Registry): IngestMetrics {
  let read: (() => IngestStats) | null = null;
  // One snapshot per scrape: prom-client runs the collect() of a registry's metrics in the
  // order they were registered, synchronously at the start of a scrape, so the first metric
  // registered below takes the snapshot the others read.
  let snap: IngestStats | null = null;
  const current = (): IngestStats | null => snap;
  const registers = [registry];

  /** A counter mirroring a monotonic field of IngestStats. */
  const mirror = (
    name: string,
    help: string,
    field: (s: IngestStats) => number,
    first = false,
  ) => {
    let seen = 0;
    new Counter({
      name,
      help,
      registers,
      collect() {
        if (first) snap = read === null ? null : read();
        const s = current();
        const v = s === null ? seen : field(s);
        this.inc(Math.max(0, v - seen));
        seen = Math.max(seen, v);
      },
    });
  };
  const gauge = (name: string, help: string, field: (s: IngestStats) => number) => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const s = current();
        this.set(s === null ? 0 : field(s));
      },
    });
  };

  mirror("tickpipe_ingest_frames_total", "WebSocket frames received.", (s) => s.frames, true);
  mirror(
    "tickpipe_ingest_ignored_frames_total",
    "Frames that carry no tick (heartbeats, other envelopes), ignored.",
    (s) => s.ignored,
  );
  mirror(
    "tickpipe_ingest_valid_ticks_total",
    "Valid ticks queued for the ticks topic.",
    (s) => s.ticks,
  );
  mirror(
    "tickpipe_ingest_ticks_produced_total",
    "Ticks acknowledged by Kafka (acks=all) in the ticks topic.",
    (s) => s.ticksProduced,
  );
  mirror(
    "tickpipe_ingest_reconnects_total",
    "Reconnects of the WebSocket feed.",
    (s) => s.reconnects,
  );
  mirror(
    "tickpipe_ingest_send_failures_total",
    "Failed Kafka send attempts (retried; after a second of failures records are spooled).",
    (s) => s.sendFailures,
  );
  mirror(
    "tickpipe_ingest_too_large_refusals_total",
    "Sends Kafka refused as too large (split in halves, or their one record dead-lettered).",
    (s) => s.tooLargeRefusals,
  );
  mirror(
    "tickpipe_ingest_dropped_records_total",
    "Records lost because memory and the disk spool were full.",
    (s) => s.dropped,
  );
  mirror(
    "tickpipe_ingest_spool_write_errors_total",
    "Disk spool writes the disk refused (full, I/O error); their records stayed in memory.",
    (s) => s.spoolErrors,
  );
  const dlqSeen: Record<string, number> = {};
  const dlq = new Counter({
    name: "tickpipe_ingest_dead_letters_total",
    help: "Frames and records dead-lettered to <topic>.dlq, by reason.",
    labelNames: ["reason"],
    registers,
    collect() {
      const s = current();
      if (s === null) return;
      for (const [reason, n] of Object.entries(s.dlq)) {
        const seen = dlqSeen[reason] ?? 0;
        this.inc({ reason }, Math.max(0, n - seen));
        dlqSeen[reason] = Math.max(seen, n);
      }
    },
  });
  for (const reason of FRAME_REASONS) dlq.inc({ reason }, 0);

  gauge(
    "tickpipe_ingest_memory_records",
    "Records held in memory waiting for Kafka.",
    (s) => s.memory,
  );
  gauge(
    "tickpipe_ingest_spool_records",
    "Records in the disk spool waiting for Kafka.",
    (s) => s.spooled,
  );
  gauge("tickpipe_ingest_spool_bytes", "Size of the disk spool, in bytes.", (s) => s.spoolBytes);

  const duration = new Histogram({
    name: "tickpipe_ingest_producer_batch_duration_seconds",
    help: "Time from sending a batch to Kafka to its acknowledgement (acks=all), in seconds.",
    buckets: [...BATCH_DURATION_BUCKETS],
    registers,
  });
  const size = new Histogram({
    name: "tickpipe_ingest_producer_batch_records",
    help: "Records per batch acknowledged by Kafka.",
    buckets: BATCH_RECORDS_BUCKETS,
    registers,
  });

  return {
    wrapSend(send) {
      return async (records) => {
        const t0 = performance.now();
        await send(records);
        duration.observe((performance.now() - t0) / 1000);
        size.observe(records.length);
      };
    },
    observe(stats) {
      read = stats;
    },
  };
}
