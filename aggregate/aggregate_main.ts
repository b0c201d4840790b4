/**
 * `tickpipe aggregate`: the CLI shell around runAggregator (flags, migrations, signals, exit codes).
 * Exit codes: 0 idle timeout or SIGINT/SIGTERM, 1 error, 2 bad usage, 3 another aggregator holds
 * the lease.
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
import { loadBaseConfig } from "../common/config.ts";
import { isKvStorageError } from "../common/kv.ts";
import { createLogger } from "../common/log.ts";
import { metricsFlags } from "../common/metrics_flags.ts";
import { sectionsUsage } from "../common/options.ts";
import {
  AGGREGATE_COMMAND,
  AGGREGATE_OWN_FLAGS,
  AGGREGATOR_FLAGS,
  AGGREGATOR_OPTION_KEYS,
  aggregatorOptionsOf,
} from "./options.ts";

/** Exit code when another aggregator holds the topic's lease. */
export const EXIT_LEASE_HELD = 3;
/** Exit code when the topic is not the log the checkpoint was made against. */
export const EXIT_TOPIC_IDENTITY = 4;

const USAGE = `Usage: tickpipe aggregate [flags]

Consumes the ticks topic, folds ticks into tumbling event-time windows (one or several
resolutions) and upserts them into PostgreSQL (price_windows, late_ticks,
aggregator_progress) every trigger, checkpointing offsets and window state to Deno KV.
Records that are not valid ticks go to <topic>.dlq. One aggregator per topic (a lease in KV).
The aggregator flags work on "sensor", "start" and "demo" too, which pass them on.

${
  sectionsUsage([
    { title: "Aggregator flags:", table: AGGREGATOR_FLAGS },
    {
      title: "Flags:",
      table: { ...AGGREGATE_OWN_FLAGS, ...metricsFlags("aggregate"), ...HELP_FLAG },
    },
    { title: CONNECTION_TITLE, table: CONNECTION_FLAGS },
  ])
}

Exit codes: 0 idle timeout or SIGINT/SIGTERM (after a final checkpoint), 1 error,
2 bad usage (or --windows/--watermark differ from the checkpoint's), 3 another aggregator
holds the lease, 4 the topic is not the log the checkpoint was made against (recreated or
wiped: see "deno task offsets").
Durations: 500ms, 5s, 15m, 1h or plain seconds.`;

/** Runs `aggregate` with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { options: o, positionals } = parseCommandLine(args, AGGREGATE_COMMAND);
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  rejectPositionals(positionals);
  const rebuild = o.rebuild || o["from-beginning"];
  if (rebuild && !o.yes) {
    throw new UsageError(
      `--${o.rebuild ? "rebuild" : "from-beginning"} drops the window state and re-reads ` +
        "the topic from its log start (final rows and watermarks are kept): add --yes to confirm",
    );
  }
  const config = loadBaseConfig(o);
  const metricsPort = o["metrics-port"];
  const metricsHost = o["metrics-host"];
  const log = createLogger("aggregate");
  // Listen from the start: a SIGTERM while the consumer is still joining must not kill the
  // process before it can release its lease (it stops right after startup instead).
  // One stop request, however many copies arrive (common/signals.ts): a later request cuts
  // the final flush only after 40 s (the runner's 30 s final-flush timeout plus the lease
  // release); the checkpoint is atomic, so a cut run's records are re-read by the next one.
  let handle: Awaited<ReturnType<typeof import("./mod.ts").runAggregator>> | undefined;
  let stopRequested = false;
  let denied: Error | undefined;
  const denial = Promise.withResolvers<never>();
  denial.promise.catch(() => {});
  const { watchStopSignals } = await import("../common/signals.ts");
  const stops = watchStopSignals({ logger: log, deadlineMs: 40_000 });
  stops.requested.then((signal) => {
    log.info("signal received: final trigger, checkpoint, lease release", { signal });
    stopRequested = true;
    handle?.stop();
  });

  const { createKafka, kafkaError } = await import("../common/kafka.ts");
  const { createPool, checkDatabase } = await import("../common/pg.ts");
  const { openKv } = await import("../common/kv.ts");
  const { migrate } = await import("../sql/migrate.ts");
  const {
    runAggregator,
    LeaseHeldError,
    EngineConfigMismatchError,
    TopicIdentityError,
    resolveAggregatorOptions,
  } = await import("./mod.ts");
  const aggregatorOptions = {
    ...aggregatorOptionsOf(config.topic, o),
    holdsProcessLock: true,
    rebuild,
  };
  // The settings of this run by flag, defaults applied: one line that shows what the flags given
  // here (or passed on by sensor/start/demo) resolved to. Durations in ms.
  const resolved = resolveAggregatorOptions(aggregatorOptions);
  log.info(
    "settings",
    Object.fromEntries(
      Object.entries(AGGREGATOR_OPTION_KEYS).map(([flag, key]) => [flag, resolved[key]]),
    ),
  );

  const { processLockPath, readLease, tryProcessLock } = await import("./lease.ts");
  const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-aggregate" });
  const kv = await openKv(config.kvPath);
  // One aggregator per topic and KV on this host: the OS lock is released even by kill -9,
  // so a restart takes a dead holder's lease over at once instead of waiting for its expiry.
  const processLock = await tryProcessLock(processLockPath(config.kvPath, config.topic));
  if (processLock === null) {
    const held = await readLease(kv, config.topic);
    console.error(
      `tickpipe aggregate: ${
        held
          ? new LeaseHeldError(config.topic, held.lease).message
          : `another aggregator of topic "${config.topic}" runs on this host (it holds ${
            processLockPath(config.kvPath, config.topic)
          })`
      }`,
    );
    kv.close();
    await pool.end().catch(() => {});
    stops.dispose();
    return EXIT_LEASE_HELD;
  }
  // Metrics (after the process lock: a second aggregator of this topic exits 3, not 2 for the
  // port), fed by the per-trigger progress lines.
  let served: import("../common/metrics.ts").ServedRegistry | undefined;
  let writeProgress: ((line: string) => void) | undefined;
  try {
    if (metricsPort !== undefined) {
      served = (await import("../common/metrics.ts")).serveRegistry("aggregate", {
        port: metricsPort,
        hostname: metricsHost,
        logger: log,
      });
      const { createAggregatorMetrics, meteredProgressWriter } = await import("./metrics.ts");
      writeProgress = meteredProgressWriter(createAggregatorMetrics(served.registry));
    }
    await checkDatabase(pool, config.databaseUrl);
    await migrate(pool, { logger: log });
    const kafka = createKafka(config.brokers, {
      clientId: "tickpipe-aggregate",
      logger: log.child("kafka"),
      // A broker the cluster advertises that this process may not reach: a configuration
      // error (exit 2, one message), not an outage to wait out.
      onDenied: (e) => {
        denied ??= e;
        stopRequested = true;
        handle?.stop();
        denial.reject(e);
      },
    });
    let hostname = "unknown";
    try {
      hostname = Deno.hostname();
    } catch { /* no sys permission */ }
    try {
      // A denial during the start ends it at once, not after kafkajs' retries (the lease then
      // expires; the process lock goes with the process).
      handle = await Promise.race([
        denial.promise,
        runAggregator(
          { kafka, pool, kv, logger: log, hostname, writeProgress },
          aggregatorOptions,
        ),
      ]);
    } catch (e) {
      stops.dispose();
      if (denied !== undefined) throw denied;
      if (e instanceof LeaseHeldError) {
        console.error(`tickpipe aggregate: ${e.message}`);
        return EXIT_LEASE_HELD;
      }
      if (e instanceof TopicIdentityError) {
        console.error(`tickpipe aggregate: ${e.message}`);
        return EXIT_TOPIC_IDENTITY;
      }
      if (e instanceof EngineConfigMismatchError) {
        console.error(`tickpipe aggregate: ${e.message}`);
        return 2;
      }
      if (isKvStorageError(e)) {
        // Nothing was read yet; the sensor launches the aggregator again at its next check.
        console.error(
          `tickpipe aggregate: Deno KV at ${config.kvPath} refused a write: ${
            (e as Error).message
          } (free space on that disk; nothing was processed)`,
        );
        return 1;
      }
      if ((e as Error)?.name?.startsWith("KafkaJS")) throw kafkaError(e, config.brokers);
      throw e;
    }
    if (stopRequested) handle.stop();
    const result = await handle.done;
    stops.dispose();
    if (denied !== undefined) throw denied; // main.ts: one message naming it, exit 2
    if (result.reason === "idle" || result.reason === "stopped") return 0;
    if (result.reason === "identity") {
      console.error(`tickpipe aggregate: ${result.error?.message}`);
      return EXIT_TOPIC_IDENTITY;
    }
    console.error(
      `tickpipe aggregate: stopped (${result.reason}): ${result.error?.message ?? "unknown error"}`,
    );
    return 1;
  } finally {
    await served?.server.close();
    await pool.end().catch(() => {});
    kv.close();
    processLock.release();
  }
}
