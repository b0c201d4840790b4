/**
 * `tickpipe sensor`: launches the aggregator when Kafka holds ticks it has
 * not read yet and no aggregator holds the lease. Runs as a Deno.cron job
 * (default every minute) or, with `--once`, a single check.
 * @module
 */

import {
  CONNECTION_FLAGS,
  CONNECTION_TITLE,
  HELP_FLAG,
  parseCommandLine,
  rejectPositionals,
  UsageError,
} from "../common/cli.ts";
import { ConfigError, loadBaseConfig, readEnv } from "../common/config.ts";
import { createLogger } from "../common/log.ts";
import { sectionsUsage } from "../common/options.ts";
import { AGGREGATOR_FLAGS } from "../aggregate/options.ts";
import { AGGREGATOR_DEFAULTS } from "../aggregate/defaults.ts";
import { aggregatorArgs, SENSOR_COMMAND, SENSOR_FLAGS, SENSOR_RUN_FLAGS } from "./options.ts";

export { DEFAULT_SCHEDULE } from "./options.ts";

const USAGE = `Usage: tickpipe sensor [flags]

Every check compares each partition's end offset in Kafka with the offset the
aggregator stored in Deno KV (none stored = the partition's earliest offset).
When at least --min-new ticks are unread, no aggregator holds the lease and no
child of this sensor runs, it launches the aggregator
(deno run -P=aggregate main.ts aggregate ...; DATABASE_URL passed in its env).
Aggregator exit 3 (lease held elsewhere) is not a failure; after consecutive
failures launches pause for --backoff-base, doubling up to --backoff-max.
Window resolutions and watermark delay that differ from the checkpoint's are refused
before any launch (exit 2, naming both), unless --rebuild; an aggregator that exits 2
(it refused its configuration) stops the sensor too (exit 2): no launch with the same
flags could succeed.

${
  sectionsUsage([
    { title: "Flags:", table: { ...SENSOR_FLAGS, ...SENSOR_RUN_FLAGS, ...HELP_FLAG } },
    {
      title: "Aggregator flags (passed on to every aggregator it launches, when set):",
      table: AGGREGATOR_FLAGS,
    },
    { title: CONNECTION_TITLE, table: CONNECTION_FLAGS },
  ])
}

SIGINT/SIGTERM stop the checks and the running aggregator (one SIGTERM; it checkpoints and
releases its lease), then exit 0. Copies of the signal within 3 s are one request; a later
request cuts the stop (SIGKILL to the aggregator, exit 130) only after 50 s.

Exit codes: 0 ok (with --once --wait: the aggregator's exit code), 1 error, 2 bad flags or
a configuration refused (see above), 130 stop cut short by a later stop request.`;

/** How long stopping may take before a later stop request cuts it: the aggregator's 40 s
 * deadline plus 10 s. */
const STOP_DEADLINE_MS = 50_000;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  // Every flag is parsed (and the aggregator's validated) here: a typo fails now, with exit 2,
  // not in an aggregator launched a minute later.
  const { options: o, given, positionals } = parseCommandLine(args, SENSOR_COMMAND);
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  rejectPositionals(positionals);
  const config = loadBaseConfig(o);
  const minNew = o["min-new"];
  const baseMs = o["backoff-base"];
  const maxMs = o["backoff-max"];
  const schedule = o.schedule;
  if (o.wait && !o.once) throw new UsageError(`--wait needs --once`);
  const everyMs = o.every;
  const metricsPort = o["metrics-port"];
  const metricsHost = o["metrics-host"];
  const aggregateMetricsPort = o["aggregate-metrics-port"];
  // The window resolutions and watermark delay the aggregators will run with (theirs when not
  // given), checked against the checkpoint's before each launch.
  const wantedEngine = {
    windows: o.windows ?? [...AGGREGATOR_DEFAULTS.windows],
    watermarkDelayMs: o.watermark ?? AGGREGATOR_DEFAULTS.watermarkDelayMs,
  };

  const log = createLogger("sensor");
  // One stop request, however many copies arrive (common/signals.ts), listened for from the
  // start. The sensor's flush is its aggregator's: it is asked to stop once (SIGTERM) and
  // awaited; a later request cuts only after the aggregator's own deadline has passed too, and
  // then kills it.
  const { EXIT_CUT, watchStopSignals } = await import("../common/signals.ts");
  let runningChild: () => import("./launcher.ts").RunningChild | null = () => null;
  let stopRequested = false;
  const stops = watchStopSignals({
    logger: log,
    deadlineMs: STOP_DEADLINE_MS,
    onCut: () => {
      runningChild()?.kill("SIGKILL");
      Deno.exit(EXIT_CUT);
    },
  });
  stops.requested.then(() => {
    stopRequested = true;
  });
  const stopChild = () => {
    const c = runningChild();
    if (c === null) return;
    log.info("stopping running aggregator", { pid: c.pid });
    c.kill("SIGTERM");
  };
  // A denied address (a broker the cluster advertises that this sensor may not reach) is a
  // configuration error: stop (exit 2, one message), never retried as an outage.
  const { accessDeniedOf } = await import("../common/permissions.ts");
  let denied: Error | undefined;
  const denial = Promise.withResolvers<never>();
  denial.promise.catch(() => {});
  const deny = (e: Error) => {
    if (denied !== undefined) return;
    denied = e;
    denial.reject(e);
    stops.begin("permission denied");
  };
  const { createKafka, connectAdmin } = await import("../common/kafka.ts");
  const { openKv } = await import("../common/kv.ts");
  const { buildAggregateCommand, projectPaths, spawnAggregator } = await import("./launcher.ts");
  const { createSensor } = await import("./run.ts");

  const command = buildAggregateCommand({
    brokers: config.brokers,
    databaseUrl: config.databaseUrl,
    topic: config.topic,
    kvPath: config.kvPath,
    aggregatorArgs: aggregatorArgs(given),
    metricsPort: aggregateMetricsPort,
    standalone: Deno.build.standalone ?? false,
    execPath: Deno.build.standalone ? Deno.execPath() : "",
    ...projectPaths(),
    env: readEnv,
  });
  let hostname = "unknown";
  try {
    hostname = Deno.hostname();
  } catch { /* not permitted */ }

  // Metrics: served before Kafka is reached, so a taken port fails fast (exit 2).
  const served = metricsPort === undefined
    ? undefined
    : (await import("../common/metrics.ts")).serveRegistry("sensor", {
      port: metricsPort,
      hostname: metricsHost,
      logger: log,
    });
  const kafka = createKafka(config.brokers, {
    clientId: "tickpipe-sensor",
    logger: log,
    onDenied: deny,
  });
  const admin = await Promise.race([connectAdmin(kafka, config.brokers), denial.promise]);
  const { withKvRetry } = await import("./_kv.ts");
  const kv = await withKvRetry(() => openKv(config.kvPath));
  const detached = o.once === true && o.wait !== true;
  // Launching cannot succeed with these flags (the checkpoint's windows/watermark differ, or the
  // aggregator refused its configuration): stop, exit 2 with the reason.
  let refused: string | undefined;
  const checks = createSensor({
    kv,
    admin,
    logger: log,
    launch: (cmd) => spawnAggregator(cmd, { logger: log, detached }),
    onRefused: (message) => {
      refused ??= message;
      if (!o.once) stops.begin("configuration refused");
    },
  }, {
    topic: config.topic,
    minNew,
    backoff: { baseMs, maxMs },
    command,
    identity: `${hostname}:${Deno.pid}`,
    engine: { wanted: wantedEngine, rebuild: o.rebuild },
  });
  const sensor = served === undefined
    ? checks
    : (await import("./metrics.ts")).createSensorMetrics(served.registry, { topic: config.topic })
      .instrument(checks);

  runningChild = () => sensor.child();
  const close = async () => {
    stops.dispose();
    kv.close();
    await admin.disconnect().catch(() => {});
    await served?.server.close();
  };

  if (o.once) {
    try {
      if (denied !== undefined) throw denied;
      if (stopRequested) return 0; // stopped before the check: launch nothing
      // A denied broker ends the check at once, not after kafkajs' retries.
      const { launched } = await Promise.race([sensor.check(), denial.promise]);
      if (refused !== undefined) throw new ConfigError(refused);
      // Without --wait the aggregator is detached and outlives the sensor: nothing to stop.
      if (launched === null || !o.wait) return 0;
      // Stop the child on a request, including one that came during the check.
      stops.requested.then(stopChild);
      const code = await sensor.settled();
      return code ?? 1;
    } finally {
      await close();
    }
  }

  // Deno.cron mode: runs until SIGINT/SIGTERM; a running child is stopped
  // with SIGTERM (it releases its lease) and awaited before exiting.
  const stop = new AbortController();
  const name = `tickpipe-sensor-${config.topic}`;
  log.info("sensor started", { topic: config.topic, schedule, cron: name, minNew });
  // Checks never overlap (the startup check and a cron tick could).
  let chain: Promise<unknown> = Promise.resolve();
  const checkSerial = () => {
    const run = chain.then(() => sensor.check());
    chain = run.catch(() => {});
    return run.catch((e) => {
      const d = accessDeniedOf(e);
      if (d !== null) deny(d);
      else log.error("check failed", { topic: config.topic, error: e });
      throw e;
    });
  };
  const cronDone = Deno.cron(name, schedule, {
    backoffSchedule: [5_000, 15_000, 30_000],
    signal: stop.signal,
  }, async () => {
    await checkSerial();
  });
  if (!stopRequested) checkSerial().catch(() => {}); // one check now, not only at the next tick
  const interval = everyMs === undefined
    ? undefined
    : setInterval(() => checkSerial().catch(() => {}), everyMs);
  const sig = await stops.requested;
  log.info("sensor stopping", { signal: sig });
  if (interval !== undefined) clearInterval(interval);
  stop.abort();
  await cronDone.catch(() => {});
  // A check already running may still launch an aggregator: wait for it, so that child is
  // stopped too instead of outliving the sensor.
  await chain;
  if (sensor.child() !== null) {
    stopChild();
    await sensor.settled();
  }
  await close();
  if (denied !== undefined) throw denied;
  if (refused !== undefined) throw new ConfigError(refused);
  return 0;
}
