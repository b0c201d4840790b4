/**
 * `tickpipe sensor`: launches the aggregator when Kafka holds ticks it has
 * not read yet and no aggregator holds the lease. Runs as a Deno.cron job
 * (default every minute) or, with `--once`, a single check.
 * @module
 */

import { BASE_OPTIONS, BASE_USAGE, parseFlags, UsageError } from "../common/cli.ts";
import {
  ConfigError,
  loadBaseConfig,
  parseDuration,
  parsePositive,
  readEnv,
} from "../common/config.ts";
import { createLogger } from "../common/log.ts";
import {
  METRICS_OPTIONS,
  metricsUsage,
  parseMetricsHost,
  parseMetricsPort,
} from "../common/metrics_flags.ts";

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

Flags:
  --schedule CRON        Deno.cron schedule of the checks (default "* * * * *")
  --every DURATION       also check at this interval (e.g. 5s), for demos and tests where
                         a minute between cron ticks is too coarse
  --min-new N            launch when at least N ticks are unread (default 1)
  --once                 one check (and launch) then exit; for systemd timers / CronJobs
  --wait                 with --once: wait for the launched aggregator, exit with its code
  --trigger DURATION     passed to the aggregator (e.g. 60s)
  --idle-timeout DUR     passed to the aggregator (e.g. 15m)
  --windows LIST         passed to the aggregator (e.g. 1m,5m; default 5m)
  --watermark DUR        passed to the aggregator (default 15m)
  --idle-finalize DUR    passed to the aggregator (default: the watermark delay; 0 = off)
  --rebuild              when the checkpoint was made with other --windows/--watermark,
                         launch the aggregator with --rebuild --yes (start over from the log
                         start, final rows and watermarks kept) instead of refusing (exit 2)
  --backoff-base DUR     pause after the first failed run (default 60s)
  --backoff-max DUR      longest pause after repeated failures (default 30m)
${metricsUsage("sensor", { column: 25 })}
  --aggregate-metrics-port PORT
                         --metrics-port of the aggregators it launches (served on 127.0.0.1)
  -h, --help             show this help

SIGINT/SIGTERM stop the checks and the running aggregator (one SIGTERM; it checkpoints and
releases its lease), then exit 0. Copies of the signal within 3 s are one request; a later
request cuts the stop (SIGKILL to the aggregator, exit 130) only after 50 s.

Exit codes: 0 ok (with --once --wait: the aggregator's exit code), 1 error, 2 bad flags,
130 stop cut short by a later stop request.

${BASE_USAGE}`;

const OPTIONS = {
  ...BASE_OPTIONS,
  schedule: { type: "string" },
  every: { type: "string" },
  "min-new": { type: "string" },
  once: { type: "boolean" },
  wait: { type: "boolean" },
  trigger: { type: "string" },
  "idle-timeout": { type: "string" },
  windows: { type: "string" },
  watermark: { type: "string" },
  "idle-finalize": { type: "string" },
  rebuild: { type: "boolean" },
  "backoff-base": { type: "string" },
  "backoff-max": { type: "string" },
  ...METRICS_OPTIONS,
  "aggregate-metrics-port": { type: "string" },
} as const;

/** How long stopping may take before a later stop request cuts it: the aggregator's 40 s
 * deadline plus 10 s. */
const STOP_DEADLINE_MS = 50_000;

/** Default check schedule: every minute. */
export const DEFAULT_SCHEDULE = "* * * * *";

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
  const config = loadBaseConfig(values);
  const minNew = parsePositive(values["min-new"], "--min-new", {
    fallback: 1,
    integer: true,
    min: 1,
  });
  if (values.trigger !== undefined) {
    parseDuration(values.trigger, "--trigger", { fallbackMs: 0 });
  }
  if (values["idle-timeout"] !== undefined) {
    parseDuration(values["idle-timeout"], "--idle-timeout", { fallbackMs: 0 });
  }
  // Engine flags, forwarded as given; the resolved windows and watermark are checked against the
  // checkpoint's before each launch.
  const { AGGREGATOR_FLAGS } = await import("../aggregate/options.ts");
  const { AGGREGATOR_DEFAULTS } = await import("../aggregate/defaults.ts");
  const { forwardArgs, resolveOptions } = await import("../common/options.ts");
  const engineFlags = {
    windows: AGGREGATOR_FLAGS.windows,
    watermark: AGGREGATOR_FLAGS.watermark,
    "idle-finalize": AGGREGATOR_FLAGS["idle-finalize"],
  };
  const engineValues = resolveOptions(engineFlags, values);
  const wantedEngine = {
    windows: engineValues.windows ?? [...AGGREGATOR_DEFAULTS.windows],
    watermarkDelayMs: engineValues.watermark ?? AGGREGATOR_DEFAULTS.watermarkDelayMs,
  };
  const baseMs = parseDuration(values["backoff-base"], "--backoff-base", { fallbackMs: 60_000 });
  const maxMs = parseDuration(values["backoff-max"], "--backoff-max", { fallbackMs: 1_800_000 });
  const schedule = values.schedule ?? DEFAULT_SCHEDULE;
  if (schedule.trim().split(/\s+/).length !== 5) {
    throw new UsageError(
      `--schedule "${schedule}" is not a cron expression: expected 5 fields like "* * * * *"`,
    );
  }
  if (values.wait && !values.once) throw new UsageError(`--wait needs --once`);
  const everyMs = values.every === undefined
    ? undefined
    : parseDuration(values.every, "--every", { fallbackMs: 0 });
  const metricsPort = parseMetricsPort(values["metrics-port"]);
  const metricsHost = parseMetricsHost(values["metrics-host"]);
  const aggregateMetricsPort = parseMetricsPort(values["aggregate-metrics-port"], {
    flag: "--aggregate-metrics-port",
  });

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
    trigger: values.trigger,
    idleTimeout: values["idle-timeout"],
    metricsPort: aggregateMetricsPort,
    extraFlags: forwardArgs(engineFlags, values),
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
  const detached = values.once === true && values.wait !== true;
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
      if (!values.once) stops.begin("configuration refused");
    },
  }, {
    topic: config.topic,
    minNew,
    backoff: { baseMs, maxMs },
    command,
    identity: `${hostname}:${Deno.pid}`,
    engine: { wanted: wantedEngine, rebuild: values.rebuild === true },
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

  if (values.once) {
    try {
      if (denied !== undefined) throw denied;
      if (stopRequested) return 0; // stopped before the check: launch nothing
      // A denied broker ends the check at once, not after kafkajs' retries.
      const { launched } = await Promise.race([sensor.check(), denial.promise]);
      if (refused !== undefined) throw new ConfigError(refused);
      // Without --wait the aggregator is detached and outlives the sensor: nothing to stop.
      if (launched === null || !values.wait) return 0;
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
