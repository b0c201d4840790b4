/**
 * The sensor's flags, declared once. The sensor accepts every aggregator flag too
 * (aggregate/options.ts) and passes on exactly the ones that were set to each aggregator it
 * launches ({@linkcode aggregatorArgs}); `start` and `demo` accept the same flags and forward
 * them to the sensor. No imports that need a permission.
 * @module
 */

import { CONNECTION_FLAGS, HELP_FLAG } from "../common/cli.ts";
import { ConfigError } from "../common/config.ts";
import { metricsFlags, parseMetricsPort } from "../common/metrics_flags.ts";
import { forwardArgs, type OptionsTable, type RawValues } from "../common/options.ts";
import { AGGREGATOR_FLAGS } from "../aggregate/options.ts";

/** Default check schedule: every minute. */
export const DEFAULT_SCHEDULE = "* * * * *";

/** Parses a `--schedule` value: a 5-field cron expression. */
export function parseSchedule(raw: string, flag = "--schedule"): string {
  if (raw.trim().split(/\s+/).length !== 5) {
    throw new ConfigError(
      `${flag} "${raw}" is not a cron expression: expected 5 fields like "* * * * *"`,
    );
  }
  return raw;
}

/** The sensor's tuning flags, which `start` and `demo` forward to it. */
export const SENSOR_FLAGS = {
  schedule: {
    kind: "string",
    arg: "CRON",
    help: "Deno.cron schedule of the checks",
    default: DEFAULT_SCHEDULE,
    shown: `"${DEFAULT_SCHEDULE}"`,
    parse: parseSchedule,
  },
  every: {
    kind: "duration",
    arg: "DURATION",
    help: "also check at this interval (e.g. 5s), for demos and tests where a minute between " +
      "cron ticks is too coarse",
  },
  "min-new": { kind: "int", arg: "N", help: "launch when at least N ticks are unread", default: 1 },
  "backoff-base": {
    kind: "duration",
    arg: "DURATION",
    help: "pause after the first failed run",
    default: 60_000,
  },
  "backoff-max": {
    kind: "duration",
    arg: "DURATION",
    help: "longest pause after repeated failures",
    default: 1_800_000,
  },
  rebuild: {
    kind: "boolean",
    help: "when the checkpoint was made with other --windows/--watermark, launch the " +
      "aggregator with --rebuild --yes (start over from the log start, final rows and " +
      "watermarks kept) instead of refusing (exit 2)",
  },
} as const satisfies OptionsTable;

/** The flags of one sensor run (not forwarded: `start` runs the sensor in cron mode). */
export const SENSOR_RUN_FLAGS = {
  once: {
    kind: "boolean",
    help: "one check (and launch) then exit; for systemd timers / CronJobs",
  },
  wait: {
    kind: "boolean",
    help: "with --once: wait for the launched aggregator, exit with its code",
  },
  ...metricsFlags("sensor"),
  "aggregate-metrics-port": {
    kind: "string",
    arg: "PORT",
    help: "--metrics-port of the aggregators it launches (served on 127.0.0.1)",
    parse: (raw: string, flag: string): number => parseMetricsPort(raw, { flag })!,
  },
} as const satisfies OptionsTable;

/** Every flag of `sensor`: its own, the aggregator's (passed on), metrics, help, connection. */
export const SENSOR_COMMAND = {
  ...SENSOR_FLAGS,
  ...SENSOR_RUN_FLAGS,
  ...HELP_FLAG,
  ...AGGREGATOR_FLAGS,
  ...CONNECTION_FLAGS,
} as const satisfies OptionsTable;

/**
 * The aggregator flags set in `given` (the sensor's command line, as given), for the aggregators
 * the sensor launches: exactly what was set, so the aggregator applies its own defaults.
 */
export function aggregatorArgs(given: RawValues): string[] {
  return forwardArgs(AGGREGATOR_FLAGS, given);
}
