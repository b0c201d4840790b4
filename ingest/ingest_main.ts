/**
 * CLI entry of `deno task ingest`: stream a Yahoo-protocol WebSocket feed into Kafka.
 * Statically imports only common/cli.ts, common/config.ts, common/log.ts and common/signals.ts
 * so --help needs no permission; the rest is loaded after the flags are parsed.
 * @module
 */

import { parseFlags, printOut, UsageError } from "../common/cli.ts";
import {
  DEFAULT_BROKERS,
  DEFAULT_TOPIC,
  parseBrokers,
  parseDuration,
  parsePositive,
  parseTopic,
  readEnv,
} from "../common/config.ts";
import { createLogger } from "../common/log.ts";
import { watchStopSignals } from "../common/signals.ts";
import { DEFAULT_SOURCE } from "./client.ts";
import { defaultSpoolDir } from "./spool.ts";
import {
  METRICS_OPTIONS,
  metricsUsage,
  parseMetricsHost,
  parseMetricsPort,
} from "../common/metrics_flags.ts";

const DEFAULT_SYMBOLS = "AAPL,MSFT,NVDA,BTC-USD,ETH-USD";
/** Time allowed for spooling what Kafka did not take, after the --flush-timeout wait. */
const SPOOL_GRACE_MS = 10_000;

/** Default of --max-record-bytes: below Kafka's default message.max.bytes of 1,048,588. */
const DEFAULT_MAX_RECORD_BYTES = 1_000_000;

const OPTIONS = {
  brokers: { type: "string" },
  topic: { type: "string" },
  help: { type: "boolean", short: "h" },
  source: { type: "string" },
  symbols: { type: "string" },
  partitions: { type: "string" },
  linger: { type: "string" },
  "batch-size": { type: "string" },
  "max-memory-ticks": { type: "string" },
  "max-spool-bytes": { type: "string" },
  "max-record-bytes": { type: "string" },
  "spool-dir": { type: "string" },
  "progress-every": { type: "string" },
  record: { type: "string" },
  duration: { type: "string" },
  "silence-timeout": { type: "string" },
  "max-future": { type: "string" },
  "flush-timeout": { type: "string" },
  ...METRICS_OPTIONS,
} as const;

const USAGE = `Usage: tickpipe ingest [flags]

Streams a Yahoo Finance streamer WebSocket (or the simulator) into Kafka: valid ticks to <topic>
(key = symbol, timestamp = event time, header ingest_ms), bad frames to <topic>.dlq (headers
reason, detail, ingest_ms). Once Kafka sends have been failing for a second, ticks are spooled to
disk (--spool-dir) and delivered in order when it returns. SIGINT/SIGTERM flush everything
before exiting: copies of the signal within 3 s are one request, and a later one cuts the flush
(exit 130) only after --flush-timeout plus 10 s. Ingest reads no database settings; through
"deno task ingest" it may reach exactly its Kafka brokers and --source, and write only its
spool and the --record file's folder. A denied address exits 2.

Flags:
  --source URL               WebSocket URL (default ${DEFAULT_SOURCE})
  --symbols A,B,...          symbols to subscribe to, sharded 100 per connection
                             (default ${DEFAULT_SYMBOLS})
  --partitions N             partitions of topics created here (default 3)
  --linger DURATION          max wait for a batch to fill (default 5ms)
  --batch-size N             max records per Kafka batch (default 5000)
  --max-memory-ticks N       records held in memory before the oldest are spooled (default 100000);
                             after 1 s of failing Kafka sends everything is spooled anyway
  --max-spool-bytes N        disk spool bound; past it new ticks are dropped and counted (default 1073741824)
  --max-record-bytes N       records over this many UTF-8 bytes go to <topic>.dlq as too_large
                             (default ${DEFAULT_MAX_RECORD_BYTES}; Kafka's default limit is 1048588)
  --spool-dir DIR            spool directory (default ${defaultSpoolDir("<topic>")})
  --progress-every DURATION  progress line interval, 0 = none (default 10s)
  --record FILE              save every raw frame received, one per line (replay with
                             "deno task simulate --replay FILE")
  --duration DURATION        stop after this long (default: until SIGINT/SIGTERM)
  --silence-timeout DURATION reconnect after this long without frames (default 60s)
  --max-future DURATION      reject ticks further ahead of the receive time (default 5m)
  --flush-timeout DURATION   at shutdown, wait this long for Kafka before spooling (default 30s)
${metricsUsage("ingest")}
  -h, --help                 show this help

Connection flags (override the environment):
  --brokers HOST:PORT[,..]   Kafka bootstrap servers   (env KAFKA_BROKERS, default ${DEFAULT_BROKERS})
  --topic NAME               ticks topic               (env TICKS_TOPIC, default ${DEFAULT_TOPIC})`;

/** Ingest's settings from flags and environment: Kafka only, never a database setting. */
export function loadIngestConfig(
  flags: { brokers?: string; topic?: string },
  options: { env?: (name: string) => string | undefined } = {},
): { brokers: string[]; topic: string } {
  const env = options.env ?? readEnv;
  return {
    brokers: parseBrokers(
      flags.brokers ?? env("KAFKA_BROKERS") ?? DEFAULT_BROKERS,
      flags.brokers !== undefined ? "--brokers" : "KAFKA_BROKERS",
    ),
    topic: parseTopic(
      flags.topic ?? env("TICKS_TOPIC") ?? DEFAULT_TOPIC,
      flags.topic !== undefined ? "--topic" : "TICKS_TOPIC",
    ),
  };
}

/** Runs `ingest` with `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, OPTIONS);
  if (values.help) {
    printOut(USAGE);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${positionals[0]}" (see --help)`);
  }
  const base = loadIngestConfig(values);
  const source = values.source ?? DEFAULT_SOURCE;
  if (!/^wss?:\/\/[^\s]+$/.test(source)) {
    throw new UsageError(`--source "${source}" is not a ws:// or wss:// URL`);
  }
  const symbols = (values.symbols ?? DEFAULT_SYMBOLS).split(",").map((s) => s.trim()).filter(
    (s) => s !== "",
  );
  if (symbols.length === 0) throw new UsageError(`--symbols "${values.symbols}" names no symbol`);
  const int = (name: keyof typeof values, fallback: number, min = 1) =>
    parsePositive(values[name] as string | undefined, `--${String(name)}`, {
      fallback,
      integer: true,
      min,
    });
  const partitions = int("partitions", 3);
  const batchSize = int("batch-size", 5000);
  const maxMemoryTicks = int("max-memory-ticks", 100_000);
  const maxSpoolBytes = int("max-spool-bytes", 1024 ** 3);
  const maxRecordBytes = int("max-record-bytes", DEFAULT_MAX_RECORD_BYTES, 1024);
  const lingerMs = values.linger === "0"
    ? 0
    : parseDuration(values.linger, "--linger", { fallbackMs: 5 });
  const progressEveryMs = values["progress-every"] === "0"
    ? 0
    : parseDuration(values["progress-every"], "--progress-every", { fallbackMs: 10_000 });
  const durationMs = values.duration === undefined
    ? undefined
    : parseDuration(values.duration, "--duration", { fallbackMs: 0 });
  const silenceMs = parseDuration(values["silence-timeout"], "--silence-timeout", {
    fallbackMs: 60_000,
  });
  const maxFutureMs = parseDuration(values["max-future"], "--max-future", {
    fallbackMs: 300_000,
  });
  const flushTimeoutMs = parseDuration(values["flush-timeout"], "--flush-timeout", {
    fallbackMs: 30_000,
  });

  // Run through the launcher (deno task ingest), this process may read and write exactly these
  // paths; main.ts checked that before this command started.
  const spoolDir = values["spool-dir"] ?? defaultSpoolDir(base.topic);
  const metricsPort = parseMetricsPort(values["metrics-port"]);
  const metricsHost = parseMetricsHost(values["metrics-host"]);

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
    maxMemoryTicks,
    maxSpoolBytes,
    maxRecordBytes,
    spoolDir,
    recordFile: values.record,
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
