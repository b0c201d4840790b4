/**
 * Flag parsing shared by every command (node:util parseArgs, strict), with
 * `--help` and usage errors that exit with code 2.
 * @module
 */

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { BASE_SETTINGS, ConfigError } from "./config.ts";
import { redact } from "./log.ts";
import {
  type Options,
  type OptionsTable,
  optionsUsage,
  parseArgsConfig,
  type ResolvedOptions,
  resolveOptions,
} from "./options.ts";

/**
 * The connection flags of every command that talks to Kafka/PostgreSQL/KV. They override the
 * environment; {@linkcode loadBaseConfig} resolves them (flag, environment, default: see
 * BASE_SETTINGS in common/config.ts).
 */
export const CONNECTION_FLAGS = {
  brokers: {
    kind: "string",
    arg: "HOST:PORT[,..]",
    help: "Kafka bootstrap servers",
    env: BASE_SETTINGS.brokers.env,
    shown: BASE_SETTINGS.brokers.fallback,
  },
  "database-url": {
    kind: "string",
    arg: "URL",
    help: "PostgreSQL URL",
    env: BASE_SETTINGS["database-url"].env,
    shown: redact(BASE_SETTINGS["database-url"].fallback),
  },
  topic: {
    kind: "string",
    arg: "NAME",
    help: "ticks topic",
    env: BASE_SETTINGS.topic.env,
    shown: BASE_SETTINGS.topic.fallback,
  },
  kv: {
    kind: "string",
    arg: "PATH",
    help: "Deno KV file",
    env: BASE_SETTINGS.kv.env,
    shown: BASE_SETTINGS.kv.fallback,
  },
} as const satisfies OptionsTable;

/** `-h, --help`. */
export const HELP_FLAG = {
  help: { kind: "boolean", short: "h", help: "show this help" },
} as const satisfies OptionsTable;

/** The flags of a command with only connection flags (and help). */
export const BASE_COMMAND = { ...HELP_FLAG, ...CONNECTION_FLAGS } as const satisfies OptionsTable;

/** Title of the connection flags' help section. */
export const CONNECTION_TITLE = "Connection flags (override the environment):";

/** Usage text of the shared flags, for help screens. */
export const BASE_USAGE = `${CONNECTION_TITLE}\n${optionsUsage(CONNECTION_FLAGS)}`;

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

/** A command line parsed with a command's table. */
export interface CommandLine<T extends OptionsTable> {
  /** The flags as given (what a parent forwards to its children). */
  given: Options<T>;
  /** Every flag of the table parsed, defaults applied. */
  options: ResolvedOptions<T>;
  /** Positional arguments. */
  positionals: string[];
}

/**
 * Parses `args` with a command's table: unknown or malformed flags are a UsageError, bad values a
 * ConfigError naming the flag (both exit 2). With `--help` nothing but the help flag is resolved
 * (its `options` are the defaults), so help never fails on another flag.
 */
export function parseCommandLine<T extends OptionsTable>(
  args: readonly string[],
  table: T,
): CommandLine<T> {
  const { values, positionals } = parseFlags([...args], parseArgsConfig(table));
  const given = { ...values } as Options<T>;
  const options = resolveOptions(table, values.help === true ? { help: true } : given);
  return { given, options, positionals };
}

/** Throws a UsageError naming the first positional argument of a command that takes none. */
export function rejectPositionals(positionals: readonly string[]): void {
  if (positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${positionals[0]}" (see --help)`);
  }
}
