/**
 * The aggregator's defaults, in one place and with no imports, so that help screens and option
 * tables can show them without loading Kafka or PostgreSQL clients.
 * @module
 */

/** Default stable consumer group (tooling sees the aggregator's offsets there). */
export const DEFAULT_GROUP_ID = "tickpipe-aggregator";

/** Every aggregator setting with its default: the one place defaults are applied. */
export const AGGREGATOR_DEFAULTS = {
  groupId: DEFAULT_GROUP_ID,
  triggerMs: 60_000,
  idleTimeoutMs: 15 * 60_000,
  windows: [300_000] as readonly number[],
  watermarkDelayMs: 900_000,
  /** null = the watermark delay. */
  idleFinalizeMs: null as number | null,
  maxOpenWindows: 1_000_000,
  maxBuffered: 200_000,
  maxFutureMs: 300_000,
  leaseTtlMs: 30_000,
  finalFlushTimeoutMs: 30_000,
  statementTimeoutMs: 60_000,
  offsetsCopyEveryMs: 30_000,
} as const;

/** `300000` → `5m`, for messages. */
export function durationText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
