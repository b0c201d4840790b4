/**
 * `tickpipe start`: ingest and the sensor (which launches the aggregator when
 * data arrives) as one supervised process tree.
 * @module
 */

import { BASE_OPTIONS, BASE_USAGE, parseFlags, UsageError } from "../common/cli.ts";
import { type BaseConfig, loadBaseConfig, parseDuration, parsePositive } from "../common/config.ts";
import { createLogger } from "../common/log.ts";
import { resolveOptions } from "../common/options.ts";
import { AGGREGATOR_FLAGS } from "../aggregate/options.ts";
import { EXIT_CUT, watchStopSignals } from "../common/signals.ts";
import {
  DEFAULT_METRICS_HOST,
  METRICS_OPTIONS,
  METRICS_PORTS,
  parseMetricsHost,
  parseMetricsPort,
} from "../common/metrics_flags.ts";

/**
 * How long stopping may take before a later stop request cuts it: the children are stopped one
 * after the other, ingest (40 s: its 30 s Kafka wait plus spooling) then the sensor (50 s: its
 * aggregator's final flush).
 */
export const STOP_DEADLINE_MS = 90_000;

const USAGE = `Usage: tickpipe start [flags]

Runs ingest and the sensor as supervised children, each under its own permission set
allowed exactly the hosts and paths its configuration names (deno run -P=ingest
--allow-net=... main.ts ingest ..., as "deno task ingest" would); the sensor launches the
aggregator, likewise, when Kafka has unread ticks. A child that exits is restarted with exponential backoff (0.5 s
doubling to 30 s; reset after a minute of healthy running); a child that rejects its
flags (exit 2) stops everything with exit 1. SIGINT/SIGTERM stops the children upstream
first, one SIGTERM each: ingest flushes into Kafka, then the sensor stops its aggregator,
which runs a final trigger, checkpoints and releases its lease; exit 0. Copies of the signal
within 3 s are the same request; a later request cuts the stop (SIGKILL to the children,
exit 130) only after 90 s.
Children get --brokers/--topic/--kv explicitly and DATABASE_URL only in the sensor's
environment (never on a command line).
Prometheus metrics of the whole tree are served at http://127.0.0.1:${METRICS_PORTS.start}/metrics: each process
serves its own on a loopback port (ingest P+1, sensor P+2, the aggregator P+3, P being
--metrics-port) and start merges them at every scrape (tickpipe_component_up says which answered).

Flags:
  --source URL         WebSocket source (default Yahoo's streamer)
  --symbols A,B,...    symbols to subscribe to
  --partitions N       partitions when creating the topic (default 3)
  --trigger DUR        aggregator trigger interval (default 60s)
  --idle-timeout DUR   aggregator idle shutdown (default 15m)
  --windows LIST       aggregator window resolutions, e.g. 1m,5m,1h (default 5m)
  --watermark DUR      aggregator watermark delay (default 15m)
  --idle-finalize DUR  aggregator idle finalization (default: the watermark delay; 0 = off)
  --rebuild            when the checkpoint was made with other --windows/--watermark, rebuild
                       from the log start instead of refusing (without it: exit 1, naming both)
  --schedule CRON      sensor cron schedule (default "* * * * *")
  --every DUR          sensor: also check at this interval (e.g. 5s)
  --min-new N          unread ticks that justify a launch (default 1)
  --metrics-port P     serve the tree's metrics on P, children on P+1..P+3
                       (default ${METRICS_PORTS.start}; 0 = no metrics)
  --metrics-host HOST  address of start's metrics endpoint (default ${DEFAULT_METRICS_HOST}; children
                       always bind 127.0.0.1)

${BASE_USAGE}`;

/** Options of the pipeline children. */
export interface StartOptions {
  /** WebSocket source. */
  source?: string;
  /** Symbols (comma-separated). */
  symbols?: string;
  /** Topic partitions. */
  partitions?: string;
  /** Aggregator trigger. */
  trigger?: string;
  /** Aggregator idle timeout. */
  idleTimeout?: string;
  /** Aggregator window resolutions (e.g. `1m,5m`). */
  windows?: string;
  /** Aggregator watermark delay. */
  watermark?: string;
  /** Aggregator idle finalization (`0` = off). */
  idleFinalize?: string;
  /** Rebuild when the checkpoint's windows/watermark differ (the sensor's --rebuild). */
  rebuild?: boolean;
  /** Sensor schedule. */
  schedule?: string;
  /** Sensor extra check interval. */
  every?: string;
  /** Sensor threshold. */
  minNew?: string;
  /** Start's metrics port P (children get P+1..P+3); undefined or 0: no metrics. */
  metricsPort?: number;
}

/** A child of `start` as {@linkcode pipelineChildren} builds it. */
export interface PipelineChild {
  /** Output prefix and log name. */
  name: string;
  /** main.ts command (and permission set). */
  command: string;
  /** Arguments after the command. */
  args: string[];
  /** Extra environment. */
  env?: Record<string, string>;
}

/** Validates the `start` options the children would reject, so a typo fails fast with exit 2. */
export function validateStartOptions(options: StartOptions): void {
  if (options.source !== undefined && !/^wss?:\/\/[^\s]+$/.test(options.source)) {
    throw new UsageError(`--source "${options.source}" is not a ws:// or wss:// URL`);
  }
  if (options.symbols !== undefined && options.symbols.split(",").every((s) => s.trim() === "")) {
    throw new UsageError(`--symbols "${options.symbols}" names no symbol`);
  }
  parsePositive(options.partitions, "--partitions", { fallback: 3, integer: true, min: 1 });
  parsePositive(options.minNew, "--min-new", { fallback: 1, integer: true, min: 1 });
  parseDuration(options.trigger, "--trigger", { fallbackMs: 1 });
  parseDuration(options.idleTimeout, "--idle-timeout", { fallbackMs: 1 });
  parseDuration(options.every, "--every", { fallbackMs: 1 });
  const { windows, watermark } = AGGREGATOR_FLAGS;
  resolveOptions({ windows, watermark, "idle-finalize": AGGREGATOR_FLAGS["idle-finalize"] }, {
    windows: options.windows,
    watermark: options.watermark,
    "idle-finalize": options.idleFinalize,
  });
  if (options.metricsPort !== undefined && options.metricsPort > 65532) {
    throw new UsageError(
      `--metrics-port "${options.metricsPort}" leaves no room for the children's ports ` +
        `(P+1..P+3): expected at most 65532`,
    );
  }
  if (options.schedule !== undefined && options.schedule.trim().split(/\s+/).length !== 5) {
    throw new UsageError(
      `--schedule "${options.schedule}" is not a cron expression: expected 5 fields like "* * * * *"`,
    );
  }
}

/** Builds the child specs for `start` (pure). */
export function pipelineChildren(config: BaseConfig, options: StartOptions): PipelineChild[] {
  const common = ["--brokers", config.brokers.join(","), "--topic", config.topic];
  const opt = (flag: string, v?: string) => (v === undefined ? [] : [flag, v]);
  const p = options.metricsPort ?? 0;
  const port = (flag: string, offset: number) => (p > 0 ? [flag, String(p + offset)] : []);
  return [
    {
      name: "ingest",
      command: "ingest",
      args: [
        ...common,
        ...opt("--source", options.source),
        ...opt("--symbols", options.symbols),
        ...opt("--partitions", options.partitions),
        ...port("--metrics-port", 1),
      ],
    },
    {
      name: "sensor",
      command: "sensor",
      args: [
        ...common,
        "--kv",
        config.kvPath,
        ...opt("--trigger", options.trigger),
        ...opt("--idle-timeout", options.idleTimeout),
        ...opt("--windows", options.windows),
        ...opt("--watermark", options.watermark),
        ...opt("--idle-finalize", options.idleFinalize),
        ...(options.rebuild ? ["--rebuild"] : []),
        ...opt("--schedule", options.schedule),
        ...opt("--every", options.every),
        ...opt("--min-new", options.minNew),
        ...port("--metrics-port", 2),
        ...port("--aggregate-metrics-port", 3),
      ],
      // The sensor hands DATABASE_URL to the aggregator through the environment, never argv.
      env: { DATABASE_URL: config.databaseUrl },
    },
  ];
}

/** Parses `start` flags. */
export function parseStartFlags(args: string[]) {
  return parseFlags(args, {
    ...BASE_OPTIONS,
    source: { type: "string" },
    symbols: { type: "string" },
    partitions: { type: "string" },
    trigger: { type: "string" },
    "idle-timeout": { type: "string" },
    windows: { type: "string" },
    watermark: { type: "string" },
    "idle-finalize": { type: "string" },
    rebuild: { type: "boolean" },
    schedule: { type: "string" },
    every: { type: "string" },
    "min-new": { type: "string" },
    ...METRICS_OPTIONS,
  });
}

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseStartFlags(args);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${positionals[0]}" (see --help)`);
  }
  const config = loadBaseConfig(values);
  const options: StartOptions = {
    source: values.source,
    symbols: values.symbols,
    partitions: values.partitions,
    trigger: values.trigger,
    idleTimeout: values["idle-timeout"],
    windows: values.windows,
    watermark: values.watermark,
    idleFinalize: values["idle-finalize"],
    rebuild: values.rebuild,
    schedule: values.schedule,
    every: values.every,
    minNew: values["min-new"],
    metricsPort: parseMetricsPort(values["metrics-port"] ?? String(METRICS_PORTS.start), {
      allowZero: true,
    }),
  };
  validateStartOptions(options);
  const metricsHost = parseMetricsHost(values["metrics-host"]);
  const { Supervisor, safeWriter } = await import("./supervisor.ts");
  const log = createLogger("start", { write: safeWriter(Deno.stderr) });
  const children = pipelineChildren(config, options);
  // Start's endpoint is up before any child starts: a taken port fails fast (exit 2).
  const metrics = options.metricsPort
    ? await serveTreeMetrics(options.metricsPort, {
      hostname: metricsHost,
      children: children.map((c) => c.name),
      logger: log,
    })
    : undefined;
  const fatal = Promise.withResolvers<string>();
  const sup = new Supervisor({
    logger: log,
    onEvent: (e) => {
      if (e.kind === "fatal") fatal.resolve(e.reason);
      if (e.kind === "started" && e.start > 1) metrics?.childRestarted(e.child);
    },
  });
  log.info("starting pipeline", { topic: config.topic, kv: config.kvPath, pid: Deno.pid });
  for (const spec of children) sup.add(spec);
  // One stop request, however many copies arrive (a group kill on `deno task start` delivers one
  // copy and deno task forwards another): the children get one SIGTERM each and are awaited; a
  // later request cuts only after STOP_DEADLINE_MS, by SIGKILLing every child's process group.
  const stops = watchStopSignals({
    logger: log,
    deadlineMs: STOP_DEADLINE_MS,
    onCut: () => {
      sup.kill().finally(() => Deno.exit(EXIT_CUT));
    },
  });
  const why = await Promise.race([
    stops.requested.then((sig) => ({ sig, fatal: undefined })),
    fatal.promise.then((reason) => ({ sig: undefined, fatal: reason })),
  ]);
  if (why.sig) {
    log.info("stopping: signalling children (ingest flushes, the aggregator checkpoints)", {
      signal: why.sig,
    });
  } else {
    stops.begin("fatal");
    log.error("stopping: a child cannot run", { reason: why.fatal });
  }
  await sup.stop();
  await metrics?.close();
  stops.dispose();
  log.info("stopped", {
    exits: Object.fromEntries(sup.children.map((c) => [c.spec.name, c.lastExit ?? null])),
  });
  return why.fatal ? 1 : 0;
}

/** Serves the merged metrics of start's tree on `port` (children at port+1..port+3). */
async function serveTreeMetrics(
  port: number,
  options: { hostname: string; children: string[]; logger: import("../common/log.ts").Logger },
): Promise<{ childRestarted(child: string): void; close(): Promise<void> }> {
  const { createRegistry, serveMetrics } = await import("../common/metrics.ts");
  const { childMetricsTargets, createStartMetrics, mergedMetricsSource } = await import(
    "./metrics.ts"
  );
  const registry = createRegistry("start");
  const own = createStartMetrics(registry, { children: options.children });
  const server = serveMetrics(mergedMetricsSource(registry, childMetricsTargets(port)), {
    port,
    hostname: options.hostname,
    permissionSet: "start",
    logger: options.logger,
  });
  return { childRestarted: own.childRestarted, close: () => server.close() };
}
