/**
 * The aggregator's flags, declared once: `aggregate` parses them, and `sensor` and `start`
 * accept the same table and forward what was set (see common/options.ts).
 * @module
 */

import type { OptionsTable, ResolvedOptions } from "../common/options.ts";
import type { AggregatorOptions } from "./aggregator.ts";
import { AGGREGATOR_DEFAULTS as D, durationText } from "./defaults.ts";

/** The aggregator's tuning flags (defaults applied by the aggregator, shown here). */
export const AGGREGATOR_FLAGS = {
  trigger: {
    kind: "duration",
    arg: "DURATION",
    help: "trigger interval (earlier when --max-buffered records wait)",
    shown: durationText(D.triggerMs),
  },
  "idle-timeout": {
    kind: "duration",
    arg: "DURATION",
    help: "exit 0 after this long without new records",
    shown: durationText(D.idleTimeoutMs),
  },
  windows: {
    kind: "durations",
    arg: "LIST",
    help: "window resolutions, e.g. 1m,5m,1h (a change needs --rebuild)",
    shown: D.windows.map(durationText).join(","),
  },
  watermark: {
    kind: "duration",
    arg: "DURATION",
    help: "watermark delay: lateness allowed (a change needs --rebuild)",
    shown: durationText(D.watermarkDelayMs),
  },
  "idle-finalize": {
    kind: "duration",
    zero: true,
    arg: "DURATION",
    help: "a caught-up partition quiet this long finalizes its windows; 0 = off",
    shown: "the watermark delay",
  },
  "max-open-windows": {
    kind: "int",
    arg: "N",
    help: "open windows per partition before the oldest are finalized early",
    shown: String(D.maxOpenWindows),
  },
  "max-buffered": {
    kind: "int",
    arg: "N",
    help: "records read and not yet checkpointed that trigger at once",
    shown: String(D.maxBuffered),
  },
  "max-future": {
    kind: "duration",
    arg: "DURATION",
    help: "ticks further ahead of the clock are dead-lettered (future_time)",
    shown: durationText(D.maxFutureMs),
  },
  group: {
    kind: "string",
    arg: "ID",
    help: "stable consumer group Kafka tools see the offsets in",
    shown: D.groupId,
  },
  "lease-ttl": {
    kind: "duration",
    arg: "DURATION",
    help: "lease time-to-live, renewed every third",
    shown: durationText(D.leaseTtlMs),
  },
} as const satisfies OptionsTable;

/** Parsed aggregator flags. */
export type AggregatorFlags = ResolvedOptions<typeof AGGREGATOR_FLAGS>;

/** Maps parsed flags onto {@linkcode AggregatorOptions} (unset flags keep the defaults). */
export function aggregatorOptionsOf(
  topic: string,
  flags: AggregatorFlags,
): AggregatorOptions {
  return {
    topic,
    triggerMs: flags.trigger,
    idleTimeoutMs: flags["idle-timeout"],
    windows: flags.windows,
    watermarkDelayMs: flags.watermark,
    idleFinalizeMs: flags["idle-finalize"],
    maxOpenWindows: flags["max-open-windows"],
    maxBuffered: flags["max-buffered"],
    maxFutureMs: flags["max-future"],
    groupId: flags.group,
    leaseTtlMs: flags["lease-ttl"],
  };
}
