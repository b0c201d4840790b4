/**
 * CLI entry of `deno task ingest`: stream a Yahoo-protocol WebSocket feed into Kafka.
 * Statically imports only common/cli.ts, common/config.ts, common/log.ts and common/signals.ts
 * so --help needs no permission; the rest is loaded after the flags are parsed.
 * @module
 */

import {
  CONNECTION_TITLE,
  HELP_FLAG,
  parseCommandLine,
  printOut,
  rejectPositionals,
} from "../common/cli.ts";
import { readEnv, resolveSetting } from "../common/config.ts";
import { createLogger } from "../common/log.ts";
import { metricsFlags } from "../common/metrics_flags.ts";
import { sectionsUsage } from "../common/options.ts";
import { watchStopSignals } from "../common/signals.ts";
import { INGEST_COMMAND, INGEST_CONNECTION_FLAGS, INGEST_FLAGS, spoolDirOf } from "./options.ts";

/** Time allowed for spooling what Kafka did not take, after the --flush-timeout wait. */
const SPOOL_GRACE_MS = 10_000;

const USAGE = `Usage: tickpipe ingest [flags]

Streams a Yahoo Finance streamer WebSocket (or the simulator) into Kafka: valid ticks to <topic>
(key = symbol, timestamp = event time, header ingest_ms), bad frames to <topic>.dlq (headers
reason, detail, ingest_ms). Once Kafka sends have been failing for a second, ticks are spooled to
disk (--spool-dir) and delivered in order when it returns. SIGINT/SIGTERM flush everything
before exiting: copies of the signal within 3 s are one request, and a later one cuts the flush
(exit 130) only after --flush-timeout plus 10 s. Ingest reads no database settings; through
"deno task ingest" it may reach exactly its Kafka brokers and --source, and write only its
spool and the --record file's folder. A denied address exits 2.

${
  sectionsUsage([
    { title: "Flags:", table: { ...INGEST_FLAGS, ...metricsFlags("ingest"), ...HELP_FLAG } },
    { title: CONNECTION_TITLE, table: INGEST_CONNECTION_FLAGS },
  ])
}`;

/** Ingest's settings from flags and environment: Kafka only, never a database setting. */
export function loadIngestConfig(
  flags: { brokers?: string; topic?: string },
  options: { env?: (name: string) => string | undefined } = {},
): { brokers: string[]; topic: string } {
  const env = options.env ?? readEnv;
  return {
    brokers: resolveSetting(flags, "brokers", { env }).value,
    topic: resolveSetting(flags, "topic", { env }).value,
  };
}

/** Runs `ingest` with `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  const { options: o, positionals } = parseCommandLine(args, INGEST_COMMAND);
  if (o.help) {
    printOut(USAGE);
    return 0;
  }
  rejectPositionals(positionals);
  const base = loadIngestConfig(o);
  const source = o.source;
  const symbols = o.symbols;
  const partitions = o.partitions;
  const batchSize = o["batch-size"];
  const maxMemoryTicks = o["max-memory-ticks"];
  const maxSpoolBytes = o["max-spool-bytes"];
  const maxRecordBytes = o["max-record-bytes"];
  const lingerMs = o.linger;
  const progressEveryMs = o["progress-every"];
  const durationMs = o.duration;
  const silenceMs = o["silence-timeout"];
  const maxFutureMs = o["max-future"];
  const flushTimeoutMs = o["flush-timeout"];
  const valueFormat = o["value-format"];

  // Run through the launcher (deno task ingest), this process may read and write exactly these
  // paths; main.ts checked that before this command started.
  const spoolDir = spoolDirOf(o["spool-dir"], base.topic);
  const metricsPort = o["metrics-port"];
  const metricsHost = o["metrics-host"];

  const log = createLogger("ingest");
  // One stop request, however many copies arrive (a group kill plus deno task's forwarded copy):
  // it always flushes; a later request cuts only a flush past its deadline (Kafka wait + spool).
  // Listening from the start: a request during startup stops right after it.
  const stops = watchStopSignals({ logger: log, deadlineMs: flushTimeoutMs + SPOOL_GRACE_MS });
  const { startIngest } = await import("./ingest.ts");
  // Metrics: served before Kafka is reached (a taken port fails fast, exit 2), filled once
  // ingest runs.
  const served = metricsPort === undefined
    ? undefined
    : (await import("../common/metrics.ts")).serveRegistry("ingest", {
      port: metricsPort,
      hostname: metricsHost,
      logger: log,
    });
  const metrics = served && (await import("./metrics.ts")).createIngestMetrics(served.registry);
  const ingest = await startIngest({
    brokers: base.brokers,
    topic: base.topic,
    symbols,
    source,
    partitions,
    lingerMs,
    batchSize,
    valueFormat,
    maxMemoryTicks,
    maxSpoolBytes,
    maxRecordBytes,
    spoolDir,
    recordFile: o.record,
    progressEveryMs,
    silenceMs,
    maxFutureMs,
    logger: log,
    wrapSend: metrics?.wrapSend,
  }).catch(async (e) => {
    await served?.server.close();
    throw e;
  });
  metrics?.observe(() => ingest.stats());

  const timer = durationMs === undefined
    ? undefined
    : setTimeout(() => stops.begin("duration"), durationMs);
  // A denied address (the source, or a Kafka broker the cluster advertises) is a configuration
  // error: stop as for a signal (flush, spool), then exit 2 with its one message.
  let denied: Error | undefined;
  const why = await Promise.race([
    stops.requested,
    ingest.denied.then((e) => {
      denied = e;
      stops.begin("permission denied");
      return "permission denied";
    }),
  ]);
  clearTimeout(timer);
  log.info("Stopping: closing sockets, then flushing to Kafka", { why });
  const s = await ingest.stop({ flushTimeoutMs });
  await served?.server.close();
  stops.dispose();
  printOut(
    `ingest stopped (${why}): frames=${s.frames} ticks_produced=${s.ticksProduced} ` +
      `dlq=${JSON.stringify(s.dlq)} spooled=${s.spooled} dropped=${s.dropped}`,
  );
  if (denied !== undefined) throw denied; // main.ts: one message naming it, exit 2
  return s.dropped > 0 ? 1 : 0;
}
