/**
 * `tickpipe start`: ingest and the sensor (which launches the aggregator when
 * data arrives) as one supervised process tree.
 * @module
 */

import {
  CONNECTION_FLAGS,
  CONNECTION_TITLE,
  HELP_FLAG,
  parseCommandLine,
  rejectPositionals,
} from "../common/cli.ts";
import { loadBaseConfig, readEnv } from "../common/config.ts";
import { type DashboardSettings, resolveDashboardSettings } from "../common/dashboard_flags.ts";
import { addSecret, createLogger } from "../common/log.ts";
import { EXIT_CUT, watchStopSignals } from "../common/signals.ts";
import { METRICS_PORTS } from "../common/metrics_flags.ts";
import { sectionsUsage } from "../common/options.ts";
import { AGGREGATOR_FLAGS } from "../aggregate/options.ts";
import { SENSOR_FLAGS } from "../sensor/options.ts";
import {
  DASHBOARD_FLAGS,
  pipelineChildren,
  START_COMMAND,
  START_INGEST_FLAGS,
  START_OWN_FLAGS,
} from "./options.ts";

export { type PipelineChild, pipelineChildren } from "./options.ts";

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
aggregator, likewise, when Kafka has unread ticks. A child that exits is restarted with
exponential backoff (0.5 s doubling to 30 s; reset after a minute of healthy running); a child
that rejects its flags (exit 2) stops everything with exit 1. SIGINT/SIGTERM stops the children
upstream first, one SIGTERM each: ingest flushes into Kafka, then the sensor stops its
aggregator, which runs a final trigger, checkpoints and releases its lease; exit 0. Copies of
the signal within 3 s are the same request; a later request cuts the stop (SIGKILL to the
children, exit 130) only after 90 s.
Children get --brokers/--topic/--kv explicitly and DATABASE_URL only in the sensor's
environment (never on a command line). The ingest, sensor and aggregator flags below are
checked here and passed on, when set, to the child they belong to (--max-future to both ingest
and the aggregator). --windows/--watermark other than the checkpoint's are refused by the
sensor before any launch (it exits 2, so start stops with exit 1, naming both), unless
--rebuild: the aggregator then starts over from the log start while the settings differ.
Prometheus metrics of the whole tree are served at http://127.0.0.1:${METRICS_PORTS.start}/metrics: each process
serves its own on a loopback port (ingest P+1, sensor P+2, the aggregator P+3, P being
--metrics-port) and start merges them at every scrape (tickpipe_component_up says which answered).
The live web dashboard (candles per symbol and resolution, partitions, processes) is served at
http://127.0.0.1:8080/ unless --dashboard-port 0: it is a child of its own ("dashboard"
permission set: Kafka, PostgreSQL and KV to read, its address to listen on), which start sends
the state of its children.

${
  sectionsUsage([
    { title: "Flags:", table: { ...START_OWN_FLAGS, ...DASHBOARD_FLAGS, ...HELP_FLAG } },
    { title: "Ingest flags (passed on to ingest):", table: START_INGEST_FLAGS },
    { title: "Sensor flags (passed on to the sensor):", table: SENSOR_FLAGS },
    {
      title: "Aggregator flags (passed on to every aggregator the sensor launches):",
      table: AGGREGATOR_FLAGS,
    },
    { title: CONNECTION_TITLE, table: CONNECTION_FLAGS },
  ])
}`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  // Every flag is parsed here, the children's too: a typo fails now (exit 2), before any child.
  const { options: o, given, positionals } = parseCommandLine(args, START_COMMAND);
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  rejectPositionals(positionals);
  const config = loadBaseConfig(o);
  const metricsPort = o["metrics-port"];
  const metricsHost = o["metrics-host"];
  const dashboard = resolveDashboardSettings(o, { env: readEnv });
  // The access token is redacted from every line start writes or relays.
  if (dashboard.token !== null) addSecret(dashboard.token);
  const { Supervisor, safeWriter } = await import("./supervisor.ts");
  const log = createLogger("start", { write: safeWriter(Deno.stderr) });
  // A taken dashboard port fails fast (exit 2), before any child starts.
  const board = await dashboardBoard(dashboard, "start");
  const children = pipelineChildren(config, given, { metricsPort, dashboard });
  // Start's endpoint is up before any child starts: a taken port fails fast (exit 2).
  const metrics = metricsPort > 0
    ? await serveTreeMetrics(metricsPort, {
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
