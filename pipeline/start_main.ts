/**
 * `tickpipe start`: ingest and the sensor (which launches the aggregator when
 * data arrives) as one supervised process tree.
 * @module
 */

import { BASE_OPTIONS, BASE_USAGE, parseFlags, UsageError } from "../common/cli.ts";
import {
  type BaseConfig,
  loadBaseConfig,
  parseDuration,
  parsePositive,
  readEnv,
} from "../common/config.ts";
import {
  DASHBOARD_OPTIONS,
  DASHBOARD_TOKEN_ENV,
  type DashboardSettings,
  dashboardUsage,
  resolveDashboardSettings,
} from "../common/dashboard_flags.ts";
import { addSecret, createLogger } from "../common/log.ts";
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
  --schedule CRON      sensor cron schedule (default "* * * * *")
  --every DUR          sensor: also check at this interval (e.g. 5s)
  --min-new N          unread ticks that justify a launch (default 1)
  --metrics-port P     serve the tree's metrics on P, children on P+1..P+3
                       (default ${METRICS_PORTS.start}; 0 = no metrics)
  --metrics-host HOST  address of start's metrics endpoint (default ${DEFAULT_METRICS_HOST}; children
                       always bind 127.0.0.1)
${dashboardUsage({ column: 23 })}
                       The dashboard is a child of its own ("dashboard" permission set: Kafka,
                       PostgreSQL and KV to read, its address to listen on); start sends it
                       the state of its children.

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
  /** Sensor schedule. */
  schedule?: string;
  /** Sensor extra check interval. */
  every?: string;
  /** Sensor threshold. */
  minNew?: string;
  /** Start's metrics port P (children get P+1..P+3); undefined or 0: no metrics. */
  metricsPort?: number;
  /** The web dashboard child (absent or port 0: none). */
  dashboard?: DashboardSettings & { refresh?: string };
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
  /** "piped" for the dashboard, which reads its siblings' states on stdin. */
  stdin?: "piped";
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
        ...opt("--schedule", options.schedule),
        ...opt("--every", options.every),
        ...opt("--min-new", options.minNew),
        ...port("--metrics-port", 2),
        ...port("--aggregate-metrics-port", 3),
      ],
      // The sensor hands DATABASE_URL to the aggregator through the environment, never argv.
      env: { DATABASE_URL: config.databaseUrl },
    },
    ...dashboardChild(config, options),
  ];
}

/** The dashboard child, when one is configured (pure): secrets in its environment only. */
function dashboardChild(config: BaseConfig, options: StartOptions): PipelineChild[] {
  const d = options.dashboard;
  if (d === undefined || d.port === 0) return [];
  const env: Record<string, string> = { DATABASE_URL: config.databaseUrl };
  if (d.token !== null) env[DASHBOARD_TOKEN_ENV] = d.token;
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
      ...(options.symbols === undefined ? [] : ["--symbols", options.symbols]),
      ...(d.refresh === undefined ? [] : ["--refresh", d.refresh]),
    ],
    env,
    stdin: "piped",
  }];
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
    schedule: { type: "string" },
    every: { type: "string" },
    "min-new": { type: "string" },
    ...METRICS_OPTIONS,
    ...DASHBOARD_OPTIONS,
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
    schedule: values.schedule,
    every: values.every,
    minNew: values["min-new"],
    metricsPort: parseMetricsPort(values["metrics-port"] ?? String(METRICS_PORTS.start), {
      allowZero: true,
    }),
    dashboard: resolveDashboardSettings(values, { env: readEnv }),
  };
  // The access token is redacted from every line start writes or relays.
  if (options.dashboard?.token) addSecret(options.dashboard.token);
  validateStartOptions(options);
  const metricsHost = parseMetricsHost(values["metrics-host"]);
  const { Supervisor, safeWriter } = await import("./supervisor.ts");
  const log = createLogger("start", { write: safeWriter(Deno.stderr) });
  const board = await dashboardBoard(options.dashboard!, "start");
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
  const sup: InstanceType<typeof Supervisor> = new Supervisor({
    logger: log,
    onEvent: (e) => {
      board.event(e, (line) => sup.send("dashboard", line));
      if (e.kind === "fatal") fatal.resolve(e.reason);
      if (e.kind === "started" && e.start > 1) metrics?.childRestarted(e.child);
    },
  });
  log.info("starting pipeline", { topic: config.topic, kv: config.kvPath, pid: Deno.pid });
  for (const spec of children) {
    board.track(spec.name, { restart: true });
    sup.add(spec);
  }
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
  board.stopping((line) => sup.send("dashboard", line));
  await sup.stop();
  await metrics?.close();
  stops.dispose();
  log.info("stopped", {
    exits: Object.fromEntries(sup.children.map((c) => [c.spec.name, c.lastExit ?? null])),
  });
  return why.fatal ? 1 : 0;
}

/** What start and demo do for their dashboard child: track their children, send it the states. */
export interface DashboardBoard {
  /** Registers a child. */
  track(name: string, options: { restart: boolean }): void;
  /** Applies a supervisor event and sends the states through `send`. */
  event(e: import("./supervisor.ts").SupervisorEvent, send: (line: string) => void): void;
  /** Marks the children as stopping and sends the states through `send`. */
  stopping(send: (line: string) => void): void;
}

/**
 * Checks that the dashboard's address can be bound (a taken port fails fast with exit 2, before
 * any child starts) and returns the process board feeding it (a no-op without a dashboard).
 */
export async function dashboardBoard(
  settings: DashboardSettings,
  permissionSet: string,
): Promise<DashboardBoard> {
  if (settings.port === 0) return { track() {}, event() {}, stopping() {} };
  const { checkDashboardAddress } = await import("./web/server.ts");
  checkDashboardAddress(settings, { permissionSet });
  const { ProcessTracker, processLine } = await import("./web/processes.ts");
  const tracker = new ProcessTracker();
  return {
    track: (name, o) => tracker.track(name, o),
    event(e, send) {
      tracker.apply(e, Date.now());
      send(processLine(tracker.list()));
    },
    stopping(send) {
      tracker.stopping(Date.now());
      send(processLine(tracker.list()));
    },
  };
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
