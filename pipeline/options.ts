/**
 * The flags of the pipeline commands (`start`, `demo`, `status`, `offsets`, `compile`, and the
 * small `services` / `migrate`), and {@linkcode COMMAND_OPTIONS}: every command's table by name,
 * which the launcher parses a command line with (common/permissions.ts) exactly as the command
 * will. `start` accepts ingest's, the sensor's and the aggregator's flags and forwards what was
 * set ({@linkcode pipelineArgs}); `demo` the same, with its own presets. No imports that need a
 * permission.
 * @module
 */

import { BASE_COMMAND, CONNECTION_FLAGS, HELP_FLAG } from "../common/cli.ts";
import { type BaseConfig, ConfigError } from "../common/config.ts";
import {
  DEFAULT_METRICS_HOST,
  METRICS_PORTS,
  parseMetricsHost,
  parseMetricsPort,
} from "../common/metrics_flags.ts";
import {
  forwardArgs,
  omitOptions,
  type OptionsTable,
  type RawValues,
  withPresets,
} from "../common/options.ts";
import {
  DASHBOARD_FLAGS,
  DASHBOARD_TOKEN_ENV,
  type DashboardSettings,
} from "../common/dashboard_flags.ts";
import { AGGREGATE_COMMAND, AGGREGATOR_FLAGS } from "../aggregate/options.ts";
import {
  INGEST_COMMAND,
  INGEST_FLAGS,
  parseSymbols,
  SIMULATE_COMMAND,
  SIMULATE_FLAGS,
} from "../ingest/options.ts";
import { SENSOR_COMMAND, SENSOR_FLAGS } from "../sensor/options.ts";
import { SERVICES_COMMAND } from "../services/options.ts";

/** Parses start's `--metrics-port`: a port with room for the children's (P+1..P+3), 0 = none. */
export function parseTreeMetricsPort(raw: string, flag = "--metrics-port"): number {
  const port = parseMetricsPort(raw, { flag, allowZero: true })!;
  if (port > 65532) {
    throw new ConfigError(
      `${flag} "${port}" leaves no room for the children's ports (P+1..P+3): expected at most ` +
        `65532`,
    );
  }
  return port;
}

/**
 * The web dashboard's flags, served by `start` and `demo` (`--dashboard-port`, `--dashboard-host`,
 * `--dashboard-token`): declared by the dashboard (common/dashboard_flags.ts), spread into their
 * tables below and the `dashboard` command's, so that parsing, help and the launcher's
 * permissions pick them up.
 */
export { DASHBOARD_FLAGS };

/** `start`'s own flags: the tree's metrics endpoint. */
export const START_OWN_FLAGS = {
  "metrics-port": {
    kind: "string",
    arg: "P",
    help: "serve the tree's metrics on P, the children's on P+1..P+3; 0 = no metrics",
    default: METRICS_PORTS.start,
    parse: parseTreeMetricsPort,
  },
  "metrics-host": {
    kind: "string",
    arg: "HOST",
    help: "address of start's metrics endpoint (children always bind 127.0.0.1)",
    default: DEFAULT_METRICS_HOST,
    parse: (raw: string, flag: string): string => parseMetricsHost(raw, flag),
  },
} as const satisfies OptionsTable;

/** The ingest flags `start` forwards: all but `--duration` (its ingest runs until stopped). */
export const START_INGEST_FLAGS = omitOptions(INGEST_FLAGS, ["duration"]);

/** The flags `start` forwards to the sensor: the sensor's and the aggregator's. */
export const START_SENSOR_FLAGS = { ...SENSOR_FLAGS, ...AGGREGATOR_FLAGS } as const;

/**
 * Every flag of `start`. A flag both ingest and the aggregator take (`--max-future`) goes to
 * both (a unit test checks that such flags have the same kind).
 */
export const START_COMMAND = {
  ...START_OWN_FLAGS,
  ...DASHBOARD_FLAGS,
  ...HELP_FLAG,
  ...START_INGEST_FLAGS,
  ...START_SENSOR_FLAGS,
  ...CONNECTION_FLAGS,
} as const satisfies OptionsTable;

/** A child of `start` (or `demo`) as {@linkcode pipelineChildren} builds it. */
export interface PipelineChild {
  /** Output prefix and log name. */
  name: string;
  /** main.ts command (and permission set). */
  command: string;
  /** Arguments after the command. */
  args: string[];
  /** Extra environment. */
  env?: Record<string, string>;
  /** "piped" for the dashboard, which reads its siblings' states on stdin. */
  stdin?: "piped";
}

/** The forwarded flags of each child: exactly the ones set in `given`, as given (pure). */
export function pipelineArgs(given: RawValues): { ingest: string[]; sensor: string[] } {
  return {
    ingest: forwardArgs(START_INGEST_FLAGS, given),
    sensor: forwardArgs(START_SENSOR_FLAGS, given),
  };
}

/** Options of {@linkcode pipelineChildren}. */
export interface PipelineChildrenOptions {
  /** Start's metrics port P: the children serve theirs on P+1..P+3 (undefined or 0: none). */
  metricsPort?: number;
  /** The web dashboard child (absent or port 0: none); `refresh`: its `--refresh`. */
  dashboard?: DashboardSettings & { refresh?: string };
}

/**
 * Builds the children of `start` (pure): ingest and the sensor, with the connection settings
 * explicit and the flags of `given` forwarded, and the web dashboard when one is configured.
 * With `metricsPort` P > 0 they serve metrics on P+1 (ingest), P+2 (sensor) and P+3 (the
 * sensor's aggregator).
 */
export function pipelineChildren(
  config: BaseConfig,
  given: RawValues,
  options: PipelineChildrenOptions = {},
): PipelineChild[] {
  const common = ["--brokers", config.brokers.join(","), "--topic", config.topic];
  const p = options.metricsPort ?? 0;
  const port = (flag: string, offset: number) => (p > 0 ? [flag, String(p + offset)] : []);
  const forwarded = pipelineArgs(given);
  return [
    {
      name: "ingest",
      command: "ingest",
      args: [...common, ...forwarded.ingest, ...port("--metrics-port", 1)],
    },
    {
      name: "sensor",
      command: "sensor",
      args: [
        ...common,
        "--kv",
        config.kvPath,
        ...forwarded.sensor,
        ...port("--metrics-port", 2),
        ...port("--aggregate-metrics-port", 3),
      ],
      // The sensor hands DATABASE_URL to the aggregator through the environment, never argv.
      env: { DATABASE_URL: config.databaseUrl },
    },
    ...dashboardChild(config, given, options.dashboard),
  ];
}

/** The dashboard child, when one is configured (pure): secrets in its environment only. */
function dashboardChild(
  config: BaseConfig,
  given: RawValues,
  d: PipelineChildrenOptions["dashboard"],
): PipelineChild[] {
  if (d === undefined || d.port === 0) return [];
  const env: Record<string, string> = { DATABASE_URL: config.databaseUrl };
  if (d.token !== null) env[DASHBOARD_TOKEN_ENV] = d.token;
  const symbols = typeof given.symbols === "string" ? given.symbols : undefined;
  return [{
    name: "dashboard",
    command: "dashboard",
    args: [
      "--brokers",
      config.brokers.join(","),
      "--topic",
      config.topic,
      "--kv",
      config.kvPath,
      "--dashboard-port",
      String(d.port),
      "--dashboard-host",
      d.hostname,
      "--supervised",
      ...(symbols === undefined ? [] : ["--symbols", symbols]),
      ...(d.refresh === undefined ? [] : ["--refresh", d.refresh]),
    ],
    env,
    stdin: "piped",
  }];
}

/** Demo symbols: stocks and crypto pairs (with volume) and an FX pair (without). */
export const DEMO_SYMBOLS = "AAPL,MSFT,NVDA,TSLA,BTC-USD,ETH-USD,EURUSD=X";

/** The demo's own topic, emptied at every start (with its checkpoint and rows). */
export const DEMO_TOPIC = "tickpipe-demo";

/** Where the demo's simulator listens (its children are allowed it from --source / --port). */
export const DEMO_SOURCE = "ws://127.0.0.1:8765/?version=2";

/**
 * The settings `demo` forwards unless they are given: at 20x event time a 1m window lasts 3 s of
 * wall time and the 2 min watermark 6 s, so windows turn final within seconds.
 */
export const DEMO_SETTINGS = {
  trigger: "2s",
  "idle-timeout": "2m",
  every: "2s",
  windows: "1m,5m",
  watermark: "2m",
} as const;

/** Event time runs this many times faster than the wall clock (until it catches up). */
export const DEMO_SPEED = 20;

/** How far the event clock starts in the past without --duration (then: duration x (N-1)). */
export const DEMO_REPLAY_MS = 3_600_000;

/**
 * What `demo` forwards to its pipeline (pure): its settings, overridden by the flags given, then
 * its simulator as the source and its symbols.
 */
export function demoForwarded(given: RawValues, symbols: readonly string[]): RawValues {
  const set = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  return { ...DEMO_SETTINGS, ...set, source: DEMO_SOURCE, symbols: symbols.join(",") };
}

function positiveNumber(raw: string, flag: string): number {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new ConfigError(`${flag} "${raw}" is invalid: expected a number > 0`);
  }
  return n;
}

/** `demo`'s own flags. */
export const DEMO_OWN_FLAGS = {
  duration: {
    kind: "duration",
    arg: "DURATION",
    help: "run this long (e.g. 60 or 90s), then stop everything and print a summary; exit 0 " +
      "when windows were written",
    shown: "until Ctrl-C",
  },
  rate: {
    kind: "number",
    arg: "N",
    help: "simulator ticks per second",
    default: 50,
    parse: positiveNumber,
  },
  speed: {
    ...SIMULATE_FLAGS.speed,
    help: "the simulator's event time runs N times faster than the wall clock until it " +
      "catches up",
    default: DEMO_SPEED,
    shown: String(DEMO_SPEED),
  },
  symbols: { ...INGEST_FLAGS.symbols, default: DEMO_SYMBOLS.split(","), shown: DEMO_SYMBOLS },
  refresh: {
    kind: "duration",
    arg: "DURATION",
    help: "dashboard refresh",
    shown: "2s in a terminal, 5s when piped",
  },
} as const satisfies OptionsTable;

/** The ingest flags `demo` forwards (the source is its simulator, the symbols its own flag). */
export const DEMO_INGEST_FLAGS = omitOptions(START_INGEST_FLAGS, ["source", "symbols"]);

/** The sensor's flags `demo` forwards: not `--rebuild`, since the demo's topic starts empty. */
export const DEMO_OWN_SENSOR_FLAGS = omitOptions(SENSOR_FLAGS, ["rebuild"]);

/** The sensor and aggregator flags `demo` forwards, with its presets shown as the defaults. */
export const DEMO_SENSOR_FLAGS = withPresets(
  { ...DEMO_OWN_SENSOR_FLAGS, ...AGGREGATOR_FLAGS },
  DEMO_SETTINGS,
);

/**
 * The demo's `--topic`: its own (not TICKS_TOPIC), which it empties at start; `demo` refuses a
 * name without "demo" in it ({@linkcode checkDemoTopic}).
 */
export const DEMO_TOPIC_FLAG = {
  topic: {
    kind: CONNECTION_FLAGS.topic.kind,
    arg: CONNECTION_FLAGS.topic.arg,
    help: 'the demo\'s topic, emptied at every start: its name must contain "demo"',
    default: DEMO_TOPIC,
    shown: DEMO_TOPIC,
  },
} as const satisfies OptionsTable;

/** Throws a ConfigError unless `topic` is one the demo may empty (its name contains "demo"). */
export function checkDemoTopic(topic: string, flag = "--topic"): string {
  if (!topic.includes("demo")) {
    throw new ConfigError(
      `${flag} "${topic}" does not contain "demo": the demo empties its topic at start, so it ` +
        `only runs on a topic named for it (default ${DEMO_TOPIC})`,
    );
  }
  return topic;
}

/** Every flag of `demo`. */
export const DEMO_COMMAND = {
  ...DEMO_OWN_FLAGS,
  ...DASHBOARD_FLAGS,
  ...HELP_FLAG,
  ...DEMO_INGEST_FLAGS,
  ...DEMO_SENSOR_FLAGS,
  ...CONNECTION_FLAGS,
  ...DEMO_TOPIC_FLAG,
} as const satisfies OptionsTable;

/** Most symbols the dashboard charts when `--symbols` is not given (pipeline/web/data.ts). */
export const DASHBOARD_DISCOVERED_SYMBOLS = 12;

/** The `dashboard` command's own flags (the web dashboard, which `start` and `demo` run). */
export const DASHBOARD_OWN_FLAGS = {
  symbols: {
    kind: "string",
    arg: "A,B,...",
    help: "symbols to chart",
    shown: `the ${DASHBOARD_DISCOVERED_SYMBOLS} most recently written`,
    parse: parseSymbols,
  },
  refresh: {
    kind: "duration",
    arg: "DURATION",
    help: "refresh interval while a page is open",
    default: 2000,
  },
  bars: { kind: "int", arg: "N", help: "candles per chart", default: 120 },
  supervised: {
    kind: "boolean",
    help: "read process states from stdin (start/demo); exit when it closes",
  },
} as const satisfies OptionsTable;

/** Every flag of `dashboard`. */
export const DASHBOARD_COMMAND = {
  ...DASHBOARD_FLAGS,
  ...DASHBOARD_OWN_FLAGS,
  ...HELP_FLAG,
  ...CONNECTION_FLAGS,
} as const satisfies OptionsTable;

/** `status`'s own flags. */
export const STATUS_FLAGS = {
  json: { kind: "boolean", help: "print one JSON object" },
  newest: {
    kind: "int",
    zero: true,
    arg: "N",
    help: "how many newest windows to show",
    default: 10,
  },
  "no-rate": { kind: "boolean", help: "skip the 1 s sampling of the ingest rate" },
  ...HELP_FLAG,
} as const satisfies OptionsTable;

/** Every flag of `status`. */
export const STATUS_COMMAND = { ...STATUS_FLAGS, ...CONNECTION_FLAGS } as const;

/** `offsets`' own flags. */
export const OFFSETS_FLAGS = {
  json: { kind: "boolean", help: "machine-readable output (one JSON document)" },
  all: { kind: "boolean", help: "every topic found in KV instead of --topic" },
  to: { kind: "string", arg: "TARGET", help: "reset target: earliest, latest or an offset N" },
  yes: { kind: "boolean", help: "confirm the reset" },
  ...HELP_FLAG,
} as const satisfies OptionsTable;

/** Every flag of `offsets`. */
export const OFFSETS_COMMAND = { ...OFFSETS_FLAGS, ...CONNECTION_FLAGS } as const;

/** `compile`'s flags. */
export const COMPILE_COMMAND = {
  "out-dir": { kind: "string", arg: "DIR", help: "output folder", default: "dist" },
  target: {
    kind: "string",
    arg: "TRIPLE",
    help: "cross-compile target (e.g. x86_64-unknown-linux-gnu)",
  },
  ...HELP_FLAG,
} as const satisfies OptionsTable;

/** Every command's table, by name (`launch` has none: it passes its arguments on). */
export const COMMAND_OPTIONS: Readonly<Record<string, OptionsTable>> = {
  services: SERVICES_COMMAND,
  migrate: BASE_COMMAND,
  ingest: INGEST_COMMAND,
  simulate: SIMULATE_COMMAND,
  aggregate: AGGREGATE_COMMAND,
  sensor: SENSOR_COMMAND,
  offsets: OFFSETS_COMMAND,
  status: STATUS_COMMAND,
  start: START_COMMAND,
  demo: DEMO_COMMAND,
  dashboard: DASHBOARD_COMMAND,
  compile: COMPILE_COMMAND,
};
