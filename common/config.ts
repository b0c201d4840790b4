/**
 * The one place configuration is read: environment variables with flags
 * taking precedence, validated, with errors that name the bad value.
 * @module
 */

import { redact } from "./log.ts";

/** Default Kafka bootstrap servers. */
export const DEFAULT_BROKERS = "127.0.0.1:9092";
/** Default PostgreSQL connection URL (the project-local cluster). */
export const DEFAULT_DATABASE_URL = "postgres://postgres:postgres@127.0.0.1:5432/tickpipe";
/** Default Kafka topic for ticks. */
export const DEFAULT_TOPIC = "ticks";
/** Default path of the Deno KV database. */
export const DEFAULT_KV_PATH = ".data/tickpipe.kv";

/** Raised for invalid configuration; the CLI turns it into exit code 2. */
export class ConfigError extends Error {
  /** Creates the error; `message` names the bad value and what was expected. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** Settings shared by every command. */
export interface BaseConfig {
  /** Kafka bootstrap servers as `host:port`. */
  brokers: string[];
  /** PostgreSQL connection URL (contains the password: never log it unredacted). */
  databaseUrl: string;
  /** Kafka topic for ticks. */
  topic: string;
  /** Deno KV file path. */
  kvPath: string;
}

/** Flag values that override the environment. */
export interface BaseFlags {
  /** `--brokers` */
  brokers?: string;
  /** `--database-url` */
  "database-url"?: string;
  /** `--topic` */
  topic?: string;
  /** `--kv` */
  kv?: string;
}

/** Reads an environment variable; returns undefined when unset or not permitted. */
export function readEnv(name: string): string | undefined {
  try {
    const state = Deno.permissions.querySync({ name: "env", variable: name }).state;
    if (state !== "granted") return undefined;
    const v = Deno.env.get(name);
    return v === undefined || v === "" ? undefined : v;
  } catch {
    return undefined;
  }
}

/** Parses and validates a comma-separated `host:port` list named `what`. */
export function parseBrokers(value: string, what = "KAFKA_BROKERS"): string[] {
  const parts = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (parts.length === 0) {
    throw new ConfigError(`${what} is empty: expected host:port[,host:port...]`);
  }
  for (const p of parts) {
    const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(p);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) {
      throw new ConfigError(
        `${what} has an invalid broker "${p}": expected host:port with a port from 1 to 65535`,
      );
    }
  }
  return parts;
}

/** Validates a PostgreSQL URL named `what`; returns it unchanged. */
export function parseDatabaseUrl(value: string, what = "DATABASE_URL"): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(
      `${what} "${
        redact(value)
      }" is not a URL: expected postgres://user:password@host:port/database`,
    );
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ConfigError(
      `${what} "${
        redact(value)
      }" has scheme "${url.protocol}": expected postgres:// or postgresql://`,
    );
  }
  if (url.hostname === "") {
    throw new ConfigError(
      `${what} "${redact(value)}" has no host: expected postgres://user@host/db`,
    );
  }
  if (url.pathname.length <= 1) {
    throw new ConfigError(
      `${what} "${redact(value)}" names no database: expected postgres://user@host:port/database`,
    );
  }
  return value;
}

/** Validates a Kafka topic name named `what`. */
export function parseTopic(value: string, what = "TICKS_TOPIC"): string {
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(value) || value === "." || value === "..") {
    throw new ConfigError(
      `${what} "${value}" is not a valid Kafka topic: expected 1-249 characters of [A-Za-z0-9._-]`,
    );
  }
  return value;
}

/** Validates a Deno KV path named `what` (any non-blank path). */
export function parseKvPath(value: string, what = "TICKPIPE_KV"): string {
  if (value.trim() === "") throw new ConfigError(`${what} is empty: expected a file path`);
  return value;
}

/**
 * The shared settings: flag, environment variable, default and parser of each. The one place
 * their defaults are applied is {@linkcode resolveSetting} (used by every command through
 * {@linkcode loadBaseConfig}, and by the launcher when it derives permissions).
 */
export const BASE_SETTINGS = {
  brokers: { env: "KAFKA_BROKERS", fallback: DEFAULT_BROKERS, parse: parseBrokers },
  "database-url": {
    env: "DATABASE_URL",
    fallback: DEFAULT_DATABASE_URL,
    parse: parseDatabaseUrl,
  },
  topic: { env: "TICKS_TOPIC", fallback: DEFAULT_TOPIC, parse: parseTopic },
  kv: { env: "TICKPIPE_KV", fallback: DEFAULT_KV_PATH, parse: parseKvPath },
} as const;

/** The name of a shared setting (its flag without `--`). */
export type BaseSettingName = keyof typeof BASE_SETTINGS;

/** A shared setting resolved: its value, the text it came from, and where that was set. */
export interface ResolvedSetting<V> {
  /** Parsed value. */
  value: V;
  /** The text, as given (or the default). */
  raw: string;
  /** Where it was set: the flag (`--brokers`) or the environment variable (also for defaults). */
  source: string;
}

/** Resolves one shared setting: the flag, else the environment variable, else the default. */
export function resolveSetting<N extends BaseSettingName>(
  flags: BaseFlags,
  name: N,
  options: { env?: (name: string) => string | undefined } = {},
): ResolvedSetting<ReturnType<(typeof BASE_SETTINGS)[N]["parse"]>> {
  const s = BASE_SETTINGS[name];
  const flag = flags[name];
  const fromEnv = (options.env ?? readEnv)(s.env);
  const [raw, source] = flag !== undefined
    ? [flag, `--${name}`]
    : fromEnv !== undefined && fromEnv !== ""
    ? [fromEnv, s.env]
    : [s.fallback, s.env];
  const value = s.parse(raw, source) as ReturnType<(typeof BASE_SETTINGS)[N]["parse"]>;
  return { value, raw, source };
}

/** Reads the shared settings: flags win over env, env over defaults. */
export function loadBaseConfig(
  flags: BaseFlags = {},
  options: { env?: (name: string) => string | undefined } = {},
): BaseConfig {
  return {
    brokers: resolveSetting(flags, "brokers", options).value,
    databaseUrl: resolveSetting(flags, "database-url", options).value,
    topic: resolveSetting(flags, "topic", options).value,
    kvPath: resolveSetting(flags, "kv", options).value,
  };
}

/** Formats `ms` the way {@linkcode parseDuration} reads it: `300000` → `5m`, `1500` → `1500ms`. */
export function durationText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** Parses a duration such as `500ms`, `5s`, `15m`, `1h` or plain seconds into ms. */
export function parseDuration(
  value: string | undefined,
  name: string,
  options: { fallbackMs: number },
): number {
  if (value === undefined) return options.fallbackMs;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) {
    throw new ConfigError(
      `${name} "${value}" is not a duration: expected e.g. 500ms, 5s, 15m, 1h or seconds`,
    );
  }
  const unit = m[2] ?? "s";
  const mult = unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000;
  const ms = Math.round(Number(m[1]) * mult);
  if (ms <= 0) throw new ConfigError(`${name} "${value}" must be greater than zero`);
  return ms;
}
