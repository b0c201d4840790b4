/**
 * A small structured logger: one line per event on stderr, human-readable by
 * default (`LOG_FORMAT=json` for JSON lines). Secrets are redacted from every
 * field whose value looks like a URL with a password.
 * @module
 */

/** Log severities, in increasing order. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Key/value fields attached to a log line. */
export type LogFields = Record<string, unknown>;

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Minimum level printed; defaults to `info`. */
  level?: LogLevel;
  /** `text` (default) or `json`. */
  format?: "text" | "json";
  /** Where lines go; defaults to stderr. */
  write?: (line: string) => void;
  /** Clock for timestamps; defaults to `Date.now`. */
  now?: () => number;
}

/** A logger bound to a component name. */
export interface Logger {
  /** Log at debug level. */
  debug(msg: string, fields?: LogFields): void;
  /** Log at info level. */
  info(msg: string, fields?: LogFields): void;
  /** Log at warn level. */
  warn(msg: string, fields?: LogFields): void;
  /** Log at error level. */
  error(msg: string, fields?: LogFields): void;
  /** A logger for a sub-component (`parent.child`). */
  child(name: string): Logger;
}

const encoder = new TextEncoder();

function defaultWrite(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#\s@]*:)([^@/\s]*)(@)/gi;

/** Replaces the password of every `scheme://user:password@host` in `text` by `***`. */
export function redact(text: string): string {
  return text.replace(URL_PASSWORD, "$1***$3");
}

function formatValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(redact(v.message));
  if (typeof v === "string") return /[\s="]/.test(v) || v === "" ? JSON.stringify(v) : v;
  if (typeof v === "object" && v !== null) return JSON.stringify(v, errorReplacer);
  return String(v);
}

function errorReplacer(_k: string, v: unknown): unknown {
  if (v instanceof Error) return v.message;
  if (typeof v === "bigint") return v.toString();
  return v;
}

function envLevel(): LogLevel | undefined {
  try {
    const v = Deno.env.get("LOG_LEVEL");
    return v && v in ORDER ? v as LogLevel : undefined;
  } catch {
    return undefined;
  }
}

function envFormat(): "text" | "json" | undefined {
  try {
    const v = Deno.env.get("LOG_FORMAT");
    return v === "json" || v === "text" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Creates a logger for component `name`. */
export function createLogger(name: string, options: LoggerOptions = {}): Logger {
  const level = options.level ?? envLevel() ?? "info";
  const format = options.format ?? envFormat() ?? "text";
  const write = options.write ?? defaultWrite;
  const now = options.now ?? Date.now;
  const min = ORDER[level];
  const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    if (ORDER[lvl] < min) return;
    const ts = new Date(now()).toISOString();
    let line: string;
    if (format === "json") {
      line = JSON.stringify({ ts, level: lvl, component: name, msg, ...fields }, errorReplacer);
    } else {
      line = `${ts} ${lvl.toUpperCase().padEnd(5)} [${name}] ${msg}`;
      if (fields) {
        for (const [k, v] of Object.entries(fields)) {
          if (v !== undefined) line += ` ${k}=${formatValue(v)}`;
        }
      }
    }
    write(redact(line));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (child) => createLogger(`${name}.${child}`, { level, format, write, now }),
  };
}
