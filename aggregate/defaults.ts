/**
 * The aggregator's defaults, in one place, importing only modules without side effects (the
 * validation rules shared with ingest, the duration formatter), so that help screens and option
 * tables can show them without loading Kafka or PostgreSQL clients.
 * @module
 */

import { DEFAULT_MAX_FUTURE_MS } from "../proto/validate.ts";

/** `300000` → `5m`, for messages (the one formatter, from common/config.ts). */
export { durationText } from "../common/config.ts";

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
  maxFutureMs: DEFAULT_MAX_FUTURE_MS,
  leaseTtlMs: 30_000,
  finalFlushTimeoutMs: 30_000,
  statementTimeoutMs: 60_000,
  offsetsCopyEveryMs: 30_000,
} as const;
