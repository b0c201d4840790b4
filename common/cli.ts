/**
 * Flag parsing shared by every command (node:util parseArgs, strict), with
 * `--help` and usage errors that exit with code 2.
 * @module
 */

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { ConfigError } from "./config.ts";

/** Flags every command that talks to Kafka/PostgreSQL/KV accepts. */
export const BASE_OPTIONS = {
  brokers: { type: "string" },
  "database-url": { type: "string" },
  topic: { type: "string" },
  kv: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

/** Usage text of the shared flags, for help screens. */
export const BASE_USAGE = `Connection flags (override the environment):
  --brokers HOST:PORT[,..]   Kafka bootstrap servers   (env KAFKA_BROKERS, default 127.0.0.1:9092)
  --database-url URL         PostgreSQL URL            (env DATABASE_URL, default postgres://postgres:***@127.0.0.1:5432/tickpipe)
  --topic NAME               ticks topic               (env TICKS_TOPIC, default ticks)
  --kv PATH                  Deno KV file              (env TICKPIPE_KV, default .data/tickpipe.kv)`;

/** Thrown for bad command-line usage; exit code 2. */
export class UsageError extends ConfigError {
  /** Creates the error with a message naming the bad flag. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parsed flags: values by name plus positionals. */
export interface ParsedFlags<T extends ParseArgsOptionsConfig> {
  /** Flag values. */
  values: { [K in keyof T]?: T[K]["type"] extends "boolean" ? boolean : string };
  /** Positional arguments. */
  positionals: string[];
}

/** Parses `args` against `options`; throws UsageError naming an unknown or malformed flag. */
export function parseFlags<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
): ParsedFlags<T> {
  try {
    const r = parseArgs({ args, options, strict: true, allowPositionals: true });
    return r as unknown as ParsedFlags<T>;
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify a positional.*$/s, "");
    throw new UsageError(`${msg.charAt(0).toUpperCase()}${msg.slice(1)} (see --help)`);
  }
}

/** Prints `text` to stdout. */
export function printOut(text: string): void {
  console.log(text);
}
