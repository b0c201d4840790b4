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

const DEFAULT_SOURCE = "wss://streamer.finance.yahoo.com/?version=2";
const DEFAULT_SYMBOLS = "AAPL,MSFT,NVDA,BTC-USD,ETH-USD";
/** Time allowed for spooling what Kafka did not take, after the --flush-timeout wait. */
const SPOOL_GRACE_MS = 10_000;

/** Where the ingest permission set (deno.json) lets it write its spool. */
export const SPOOL_ROOT = ".data/spool";
/** Where the ingest permission set (deno.json) lets it write --record files. */
export const RECORDINGS_ROOT = ".data/recordings";
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
  "value-format": { type: "string" },
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
} as const;

const USAGE = `Usage: tickpipe ingest [flags]

Streams a Yahoo Finance streamer WebSocket (or the simulator) into Kafka: valid ticks to <topic>
(key = symbol, timestamp = event time, header ingest_ms), bad frames to <topic>.dlq (headers
reason, detail, ingest_ms). Once Kafka sends have been failing for a second, ticks are spooled to
disk (under .data/spool/) and delivered in order when it returns. SIGINT/SIGTERM flush everything
before exiting: copies of the signal within 3 s are one request, and a later one cuts the flush
(exit 130) only after --flush-timeout plus 10 s. Ingest reads no database settings and writes
only its spool and recordings.

Flags:
  --source URL               WebSocket URL (default ${DEFAULT_SOURCE})
  --symbols A,B,...          symbols to subscribe to, sharded 100 per connection
                             (default ${DEFAULT_SYMBOLS})
  --partitions N             partitions of topics created here (default 3)
  --linger DURATION          max wait for a batch to fill (default 5ms)
  --batch-size N             max records per Kafka batch (default 5000)
  --value-format FORMAT      record value of a tick: json (JSON of the decoded quote, readable by
                             any tool) or tick-v1 (binary tickpipe.v1.Tick, header tp-format:
                             tick-v1; about 6x smaller, cheaper for the aggregator) (default json)
  --max-memory-ticks N       records held in memory before the oldest are spooled (default 100000);
                             after 1 s of failing Kafka sends everything is spooled anyway
  --max-spool-bytes N        disk spool bound; past it new ticks are dropped and counted (default 1073741824)
  --max-record-bytes N       records over this many UTF-8 bytes go to <topic>.dlq as too_large
                             (default ${DEFAULT_MAX_RECORD_BYTES}; Kafka's default limit is 1048588)
  --spool-dir DIR            spool directory, under ${SPOOL_ROOT}/ (default ${SPOOL_ROOT}/<topic>)
  --progress-every DURATION  progress line interval, 0 = none (default 10s)
  --record FILE              save every raw frame received, one per line (replay with
                             "deno task simulate --replay FILE"); under ${RECORDINGS_ROOT}/
  --duration DURATION        stop after this long (default: until SIGINT/SIGTERM)
  --silence-timeout DURATION reconnect after this long without frames (default 60s)
  --max-future DURATION      reject ticks further ahead of the receive time (default 5m)
  --flush-timeout DURATION   at shutdown, wait this long for Kafka before spooling (default 30s)
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

/** True when this process may write (and, with `read`, read) `path`. */
function mayAccess(path: string, read: boolean): boolean {
  const granted = (name: "read" | "write") =>
    Deno.permissions.querySync({ name, path }).state === "granted";
  return granted("write") && (!read || granted("read"));
}

/**
 * Checks, before anything starts, that the spool directory and the record file are where this
 * process may write: under the ingest permission set that is only .data/spool/ and
 * .data/recordings/. Throws UsageError (exit 2) naming the path and the rule.
 */
export function checkIngestPaths(
  paths: { spoolDir: string; recordFile?: string },
  options: { mayAccess?: (path: string, read: boolean) => boolean } = {},
): void {
  const may = options.mayAccess ?? mayAccess;
  if (!may(paths.spoolDir, true)) {
    throw new UsageError(
      `--spool-dir "${paths.spoolDir}" is outside what this command may read and write: ` +
        `ingest keeps its spool under ${SPOOL_ROOT}/ (e.g. --spool-dir ${SPOOL_ROOT}/mine)`,
    );
  }
  if (paths.recordFile !== undefined && !may(paths.recordFile, false)) {
    throw new UsageError(
      `--record "${paths.recordFile}" is outside what this command may write: ` +
        `recordings go under ${RECORDINGS_ROOT}/ (e.g. --record ${RECORDINGS_ROOT}/feed.txt)`,
    );
  }
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
  const valueFormat = values["value-format"] ?? "json";
  if (valueFormat !== "json" && valueFormat !== "tick-v1") {
    throw new UsageError(
      `--value-format "${valueFormat}" is not a value format: expected json or tick-v1`,
    );
  }
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

  const spoolDir = values["spool-dir"] ?? `${SPOOL_ROOT}/${base.topic}`;
  checkIngestPaths({ spoolDir, recordFile: values.record });

  const log = createLogger("ingest");
  // One stop request, however many copies arrive (a group kill plus deno task's forwarded copy):
  // it always flushes; a later request cuts only a flush past its deadline (Kafka wait + spool).
  // Listening from the start: a request during startup stops right after it.
  const stops = watchStopSignals({ logger: log, deadlineMs: flushTimeoutMs + SPOOL_GRACE_MS });
  const { startIngest } = await import("./ingest.ts");
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
    recordFile: values.record,
    progressEveryMs,
    silenceMs,
    maxFutureMs,
    logger: log,
  });

  const timer = durationMs === undefined
    ? undefined
    : setTimeout(() => stops.begin("duration"), durationMs);
  const why = await stops.requested;
  clearTimeout(timer);
  log.info("Stopping: closing sockets, then flushing to Kafka", { why });
  const s = await ingest.stop({ flushTimeoutMs });
  stops.dispose();
  printOut(
    `ingest stopped (${why}): frames=${s.frames} ticks_produced=${s.ticksProduced} ` +
      `dlq=${JSON.stringify(s.dlq)} spooled=${s.spooled} dropped=${s.dropped}`,
  );
  return s.dropped > 0 ? 1 : 0;
}
