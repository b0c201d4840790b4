/**
 * The flags of `ingest` and `simulate`, declared once: the commands parse them, `start` and
 * `demo` accept ingest's and forward what was set (common/options.ts), and the launcher reads the
 * addresses and paths from them (common/permissions.ts). No imports that need a permission.
 * @module
 */

import { CONNECTION_FLAGS, HELP_FLAG } from "../common/cli.ts";
import { ConfigError, parseDuration } from "../common/config.ts";
import { metricsFlags } from "../common/metrics_flags.ts";
import type { OptionsTable } from "../common/options.ts";
import { DEFAULT_MAX_FUTURE_MS } from "../proto/validate.ts";
import {
  DEFAULT_BATCH_SIZE,
  DEFAULT_FLUSH_TIMEOUT_MS,
  DEFAULT_LINGER_MS,
  DEFAULT_MAX_MEMORY_TICKS,
  DEFAULT_MAX_RECORD_BYTES,
  DEFAULT_MAX_SPOOL_BYTES,
  DEFAULT_PARTITIONS,
  DEFAULT_PROGRESS_EVERY_MS,
  DEFAULT_SILENCE_MS,
  DEFAULT_SOURCE,
  DEFAULT_SYMBOLS as SYMBOL_LIST,
} from "./defaults.ts";
import { defaultSpoolDir } from "./spool.ts";

/** Symbols ingest subscribes to when `--symbols` is not given, comma-separated. */
export const DEFAULT_SYMBOLS: string = SYMBOL_LIST.join(",");

export { DEFAULT_MAX_RECORD_BYTES };

/** Parses a `--source` value: a ws:// or wss:// URL. */
export function parseSource(raw: string, flag = "--source"): string {
  let ok = /^wss?:\/\/[^\s]+$/.test(raw);
  try {
    new URL(raw);
  } catch {
    ok = false;
  }
  if (!ok) throw new ConfigError(`${flag} "${raw}" is not a ws:// or wss:// URL`);
  return raw;
}

/** Parses a comma-separated symbol list (blank items dropped); at least one symbol. */
export function parseSymbols(raw: string, flag = "--symbols"): string[] {
  const symbols = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (symbols.length === 0) throw new ConfigError(`${flag} "${raw}" names no symbol`);
  return symbols;
}

/** Parses `--value-format`: json or tick-v1. */
export function parseValueFormat(raw: string, flag: string): "json" | "tick-v1" {
  if (raw === "json" || raw === "tick-v1") return raw;
  throw new ConfigError(`${flag} "${raw}" is not a value format: expected json or tick-v1`);
}

/** Ingest's tuning flags (defaults applied when they are parsed: common/options.ts). */
export const INGEST_FLAGS = {
  source: {
    kind: "string",
    arg: "URL",
    help: "WebSocket URL",
    default: DEFAULT_SOURCE,
    parse: parseSource,
  },
  symbols: {
    kind: "string",
    arg: "A,B,...",
    help: "symbols to subscribe to, sharded 100 per connection",
    default: DEFAULT_SYMBOLS.split(","),
    shown: DEFAULT_SYMBOLS,
    parse: parseSymbols,
  },
  partitions: {
    kind: "int",
    arg: "N",
    help: "partitions of topics created here",
    default: DEFAULT_PARTITIONS,
  },
  linger: {
    kind: "duration",
    zero: true,
    arg: "DURATION",
    help: "max wait for a batch to fill",
    default: DEFAULT_LINGER_MS,
  },
  "batch-size": {
    kind: "int",
    arg: "N",
    help: "max records per Kafka batch",
    default: DEFAULT_BATCH_SIZE,
  },
  "value-format": {
    kind: "string",
    arg: "FORMAT",
    help: "record value of a tick: json (the decoded quote as JSON, readable by any tool) or " +
      "tick-v1 (binary tickpipe.v1.Tick, header tp-format: tick-v1; about 5x smaller and 3x " +
      "cheaper for the aggregator to read)",
    default: "json",
    parse: parseValueFormat,
  },
  "max-memory-ticks": {
    kind: "int",
    arg: "N",
    help: "records held in memory before the oldest are spooled; after 1 s of failing Kafka " +
      "sends everything is spooled anyway",
    default: DEFAULT_MAX_MEMORY_TICKS,
  },
  "max-spool-bytes": {
    kind: "int",
    arg: "N",
    help: "disk spool bound; past it new ticks are dropped and counted",
    default: DEFAULT_MAX_SPOOL_BYTES,
  },
  "max-record-bytes": {
    kind: "int",
    arg: "N",
    min: 1024,
    help: "records over this many UTF-8 bytes go to <topic>.dlq as too_large; Kafka's default " +
      "limit is 1048588",
    default: DEFAULT_MAX_RECORD_BYTES,
  },
  "spool-dir": {
    kind: "string",
    arg: "DIR",
    help: "spool directory",
    shown: defaultSpoolDir("<topic>"),
  },
  "progress-every": {
    kind: "duration",
    zero: true,
    arg: "DURATION",
    help: "progress line interval, 0 = none",
    default: DEFAULT_PROGRESS_EVERY_MS,
  },
  record: {
    kind: "string",
    arg: "FILE",
    help: 'save every raw frame received, one per line (replay with "deno task simulate ' +
      '--replay FILE")',
  },
  duration: {
    kind: "duration",
    arg: "DURATION",
    help: "stop after this long",
    shown: "until SIGINT/SIGTERM",
  },
  "silence-timeout": {
    kind: "duration",
    arg: "DURATION",
    help: "reconnect after this long without frames",
    default: DEFAULT_SILENCE_MS,
  },
  "max-future": {
    kind: "duration",
    arg: "DURATION",
    help: "reject ticks further ahead of the receive time",
    default: DEFAULT_MAX_FUTURE_MS,
  },
  "flush-timeout": {
    kind: "duration",
    arg: "DURATION",
    help: "at shutdown, wait this long for Kafka before spooling",
    default: DEFAULT_FLUSH_TIMEOUT_MS,
  },
} as const satisfies OptionsTable;

/** The spool directory: `--spool-dir`, else the topic's folder under .data/spool. */
export function spoolDirOf(spoolDir: string | undefined, topic: string): string {
  return spoolDir ?? defaultSpoolDir(topic);
}

/** Ingest's connection flags: Kafka only (ingest reads no database or KV setting). */
export const INGEST_CONNECTION_FLAGS = {
  brokers: CONNECTION_FLAGS.brokers,
  topic: CONNECTION_FLAGS.topic,
} as const satisfies OptionsTable;

/** Every flag of `ingest`. */
export const INGEST_COMMAND = {
  ...INGEST_FLAGS,
  ...metricsFlags("ingest"),
  ...HELP_FLAG,
  ...INGEST_CONNECTION_FLAGS,
} as const satisfies OptionsTable;

/** Where the simulator listens by default (ingest/simulator.ts: a unit test keeps them equal). */
export const SIMULATOR_LISTEN = { hostname: "127.0.0.1", port: 8765 } as const;

/** Parses a `--speed` value: a finite number > 0 (event time per wall time). */
export function parseSpeed(raw: string, flag = "--speed"): number {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new ConfigError(`${flag} "${raw}" is invalid: expected a number > 0`);
  }
  return n;
}

/** Where an event clock starts, as `--from` gives it: a time, or a duration before the start. */
export type EventStart = { at: number } | { agoMs: number };

/**
 * Parses a `--from` value: an ISO time (`2026-01-02T10:00:00Z`), never after `now` (default
 * Date.now()), so no tick is in the future; or a duration ago (`30m`), which
 * {@linkcode eventStartAt} places before the run's start. Throws ConfigError naming the flag
 * and the value.
 */
export function parseEventStart(
  raw: string,
  options: { flag?: string; now?: number } = {},
): EventStart {
  const flag = options.flag ?? "--from";
  const text = raw.trim();
  if (/^\d{4}-\d\d-\d\dT/.test(text)) {
    const t = Date.parse(text);
    if (Number.isNaN(t)) throw new ConfigError(`${flag} "${raw}" is not an ISO time`);
    const now = options.now ?? Date.now();
    if (t > now) {
      throw new ConfigError(
        `${flag} "${raw}" is in the future: expected a time at or before now ` +
          `(${new Date(now).toISOString()})`,
      );
    }
    return { at: t };
  }
  try {
    return { agoMs: parseDuration(text, flag, { fallbackMs: 0 }) };
  } catch {
    throw new ConfigError(
      `${flag} "${raw}" is neither an ISO time nor a duration ago: expected e.g. ` +
        `2026-01-02T10:00:00Z or 30m`,
    );
  }
}

/** The epoch ms an {@linkcode EventStart} names for a run starting at `now` (pure). */
export function eventStartAt(start: EventStart, now: number): number {
  return "at" in start ? start.at : now - start.agoMs;
}

const fraction = (help: string) =>
  ({ kind: "number", min: 0, max: 1, arg: "F", help, shown: "0" }) as const;

/**
 * The simulator's flags. `--port` and `--hostname` are applied here (the launcher allows exactly
 * that address); the others are shown and applied by the simulator (ingest/simulator.ts).
 */
export const SIMULATE_FLAGS = {
  port: {
    kind: "int",
    zero: true,
    max: 65535,
    arg: "N",
    help: "TCP port, 0 = ephemeral",
    default: SIMULATOR_LISTEN.port,
  },
  hostname: {
    kind: "string",
    arg: "H",
    help: "interface to bind",
    default: SIMULATOR_LISTEN.hostname,
  },
  rate: { kind: "number", min: 0, arg: "N", help: "ticks per second in total", shown: "10" },
  seed: { kind: "int", zero: true, arg: "N", help: "PRNG seed", shown: "1" },
  "late-fraction": fraction("ticks with event time --late-by in the past"),
  "late-by": {
    kind: "duration",
    arg: "DURATION",
    help: "how far late ticks lag the event clock",
    shown: "20m",
  },
  "out-of-order-fraction": fraction(
    "ticks with event time 1-5 s in the past (times --speed while the clock is accelerated)",
  ),
  "malformed-fraction": fraction("garbage frames of various kinds"),
  "future-fraction": fraction("ticks with event time one day ahead"),
  "heartbeat-ms": {
    kind: "int",
    zero: true,
    arg: "N",
    help: "heartbeat envelope interval to v2 clients, 0 = none",
    shown: "5000",
  },
  "disconnect-every": {
    kind: "number",
    min: 0,
    arg: "S",
    help: "close all client sockets every S seconds",
    shown: "never",
  },
  replay: {
    kind: "string",
    arg: "FILE",
    help: "replay raw frames from FILE (one per line) at --rate, then exit",
  },
  duration: {
    kind: "number",
    arg: "S",
    help: "stop after S seconds",
    shown: "until Ctrl-C",
    parse: (raw: string, flag: string): number => {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n) || n <= 0) {
        throw new ConfigError(`${flag} "${raw}" is invalid: expected a number of seconds > 0`);
      }
      return n;
    },
  },
  speed: {
    kind: "number",
    arg: "N",
    help: "accelerated event clock: event time runs N times faster than the wall clock until " +
      "it catches up with it, then at wall-clock pace, so no tick is ever in the future",
    shown: "1",
    parse: parseSpeed,
  },
  from: {
    kind: "string",
    arg: "TIME",
    help: "event time at start: ISO time or a duration ago (e.g. 30m), not in the future",
    shown: "with --speed, --duration x (N - 1) ago, so the clock meets the wall clock when the " +
      "run ends; without --duration, 60 min ago",
    parse: (raw: string, flag: string): EventStart => parseEventStart(raw, { flag }),
  },
  session: {
    kind: "duration",
    arg: "DURATION",
    help: "cumulative day volumes restart every DURATION of event time (UTC-aligned); FX pairs " +
      "(EURUSD=X) carry none",
    shown: "24h",
  },
  log: { kind: "string", arg: "FILE", help: "write one JSON line per sent frame to FILE" },
} as const satisfies OptionsTable;

/** Every flag of `simulate`. */
export const SIMULATE_COMMAND = { ...SIMULATE_FLAGS, ...HELP_FLAG } as const satisfies OptionsTable;
