/**
 * The aggregator's flags, declared once: `aggregate` parses them, and `sensor`, `start` and
 * `demo` accept the same table and forward what was set (see common/options.ts), so every
 * aggregator flag works on each of them and is validated before anything starts.
 * @module
 */

import { CONNECTION_FLAGS, HELP_FLAG } from "../common/cli.ts";
import { metricsFlags } from "../common/metrics_flags.ts";
import type { OptionsTable, ResolvedOptions } from "../common/options.ts";
import type { AggregatorOptions } from "./aggregator.ts";
import { AGGREGATOR_DEFAULTS as D, durationText } from "./defaults.ts";

/** Most window resolutions one aggregator runs (the engine's MAX_RESOLUTIONS; a test keeps them equal). */
export const MAX_WINDOWS = 16;

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
    maxItems: MAX_WINDOWS,
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

/**
 * The {@linkcode AggregatorOptions} field each aggregator flag sets: every flag must have one
 * (the type says so), and a unit test proves each reaches it through `sensor` and `start`.
 */
export const AGGREGATOR_OPTION_KEYS = {
  trigger: "triggerMs",
  "idle-timeout": "idleTimeoutMs",
  windows: "windows",
  watermark: "watermarkDelayMs",
  "idle-finalize": "idleFinalizeMs",
  "max-open-windows": "maxOpenWindows",
  "max-buffered": "maxBuffered",
  "max-future": "maxFutureMs",
  group: "groupId",
  "lease-ttl": "leaseTtlMs",
} as const satisfies Record<keyof typeof AGGREGATOR_FLAGS, keyof AggregatorOptions>;

/** Maps parsed flags onto {@linkcode AggregatorOptions} (unset flags keep the defaults). */
export function aggregatorOptionsOf(
  topic: string,
  flags: AggregatorFlags,
): AggregatorOptions {
  const out: Record<string, unknown> = { topic };
  for (const [flag, key] of Object.entries(AGGREGATOR_OPTION_KEYS)) {
    const v = flags[flag as keyof AggregatorFlags];
    if (v !== undefined) out[key] = v;
  }
  return out as unknown as AggregatorOptions;
}

/** The `aggregate` command's own flags (not forwarded: a rebuild is asked for on purpose). */
export const AGGREGATE_OWN_FLAGS = {
  rebuild: {
    kind: "boolean",
    help: "start over from the log start: window state dropped, watermarks kept (final rows " +
      "stay final, late stays late); needed to change --windows or --watermark (requires --yes)",
  },
  "from-beginning": { kind: "boolean", help: "the same as --rebuild (requires --yes)" },
  yes: { kind: "boolean", help: "confirm --rebuild" },
} as const satisfies OptionsTable;

/** Every flag of `aggregate`. */
export const AGGREGATE_COMMAND = {
  ...AGGREGATOR_FLAGS,
  ...AGGREGATE_OWN_FLAGS,
  ...metricsFlags("aggregate"),
  ...HELP_FLAG,
  ...CONNECTION_FLAGS,
} as const satisfies OptionsTable;
