/**
 * A small structured logger: one line per event on stderr, human-readable by
 * default (`LOG_FORMAT=json` for JSON lines). Secrets are redacted from the message and every
 * field value before the line is encoded (so JSON lines stay valid JSON): URL passwords, secret
 * query parameters and registered literal secrets such as PGPASSWORD's value.
 * @module
 */

/** Log severities, in increasing order. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Output formats: human-readable text or one JSON object per line. */
export type LogFormat = "text" | "json";

/** Key/value fields attached to a log line. */
export type LogFields = Record<string, unknown>;

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Minimum level printed; defaults to `info`. */
  level?: LogLevel;
  /** `text` (default) or `json`. */
  format?: LogFormat;
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

/** Shortest literal secret that is redacted (shorter ones would blank ordinary text). */
export const MIN_SECRET_LENGTH = 4;

/** Query parameter names whose values are secrets (after percent-decoding, any case). */
const SECRET_PARAM = /^(?:ssl)?pass(?:word)?$|^pwd$|secret|token|^api[-_]?key$/i;

const URL_START = /\b([a-z][a-z0-9+.-]*:\/\/)(\S*)/gi;
const QUERY_PARAM = /([?&])([^=&#\s]+)=([^&#\s]*)/g;

const literalSecrets = new Set<string>();
let secretsLongestFirst: string[] = [];
let envSecretsLoaded = false;

/**
 * Registers `value` as a secret: {@linkcode redact} replaces it (and its percent-encoded and
 * JSON-escaped forms) wherever it appears. Values shorter than {@linkcode MIN_SECRET_LENGTH}
 * are ignored.
 */
export function addSecret(value: string): void {
  if (value.length < MIN_SECRET_LENGTH) return;
  for (const form of [value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)]) {
    if (form.length >= MIN_SECRET_LENGTH) literalSecrets.add(form);
  }
  secretsLongestFirst = [...literalSecrets].sort((a, b) => b.length - a.length);
}

/** Registers the environment's passwords (PostgreSQL's, Kafka's SASL and key ones) as secrets. */
function loadEnvSecrets(): void {
  if (envSecretsLoaded) return;
  envSecretsLoaded = true;
  for (const variable of ["PGPASSWORD", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD"]) {
    try {
      const state = Deno.permissions.querySync({ name: "env", variable }).state;
      if (state !== "granted") continue;
      const v = Deno.env.get(variable);
      if (v) addSecret(v);
    } catch { /* no env access: nothing to register */ }
  }
}

function decodeParam(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, " "));
  } catch {
    return name;
  }
}

/**
 * Redacts the userinfo password of one `scheme://rest` (rest: up to white space). The password
 * runs from the first ":" of `user:` to the token's last "@", so unencoded @ / ? # in it are
 * covered (an "@" later in the path or query makes it redact too much, never too little).
 * `host:port/...` has no password.
 */
function redactUrl(scheme: string, rest: string): string {
  const m = /^[^:/?#@]*:([^/?#@]*)/.exec(rest);
  if (m === null) return scheme + rest; // no `user:` before any / ? # @
  if (/^\d{1,5}$/.test(m[1]) && rest[m[0].length] !== "@") return scheme + rest; // a port
  const colon = rest.indexOf(":");
  const at = rest.lastIndexOf("@");
  if (at < colon) return scheme + rest;
  return `${scheme}${rest.slice(0, colon + 1)}***${rest.slice(at)}`;
}

/**
 * Redacts secrets from raw (not JSON-encoded) `text`: the password of every
 * `scheme://user:password@host`, the value of secret query parameters (`?password=`,
 * `&sslpassword=`, `token`, `secret`, `api_key`, ...), and every registered literal secret
 * (PGPASSWORD's value when this process may read it; see {@linkcode addSecret}).
 */
export function redact(text: string): string {
  loadEnvSecrets();
  let out = text.replace(URL_START, (_m, scheme: string, rest: string) => redactUrl(scheme, rest))
    .replace(
      QUERY_PARAM,
      (m, sep: string, name: string, value: string) =>
        SECRET_PARAM.test(decodeParam(name)) && value !== "" ? `${sep}${name}=***` : m,
    );
  for (const secret of secretsLongestFirst) out = out.split(secret).join("***");
  return out;
}

/**
 * A copy of `value` with {@linkcode redact} applied to every string in it (arrays and plain
 * objects are copied deeply; an Error becomes its redacted message; other values are kept).
 * For records that leave the process: progress rows, KV values, status output.
 */
export function redactValue<T>(value: T): T {
  return redactDeep(value, new WeakMap()) as T;
}

function redactDeep(v: unknown, copies: WeakMap<object, unknown>): unknown {
  if (typeof v === "string") return redact(v);
  if (v instanceof Error) return redact(v.message);
  if (v === null || typeof v !== "object") return v;
  if (copies.has(v)) return copies.get(v); // a cycle: the copy, never the unredacted original
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    copies.set(v, out);
    for (const x of v) out.push(redactDeep(x, copies));
    return out;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return v;
  const out: Record<string, unknown> = {};
  copies.set(v, out);
  for (const [k, x] of Object.entries(v)) out[redact(k)] = redactDeep(x, copies);
  return out;
}

/** JSON.stringify replacer that redacts strings and turns errors into redacted messages. */
function redactingReplacer(_k: string, v: unknown): unknown {
  if (typeof v === "string") return redact(v);
  if (v instanceof Error) return redact(v.message);
  if (typeof v === "bigint") return v.toString();
  return v;
}

function formatValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(redact(v.message));
  if (typeof v === "string") {
    const r = redact(v);
    return /[\s="]/.test(r) || r === "" ? JSON.stringify(r) : r;
  }
  if (typeof v === "object" && v !== null) return JSON.stringify(v, redactingReplacer);
  return String(v);
}

function envLevel(): LogLevel | undefined {
  try {
    const v = Deno.env.get("LOG_LEVEL");
    return v && v in ORDER ? v as LogLevel : undefined;
  } catch {
    return undefined;
  }
}

function envFormat(): LogFormat | undefined {
  try {
    const v = Deno.env.get("LOG_FORMAT");
    return v === "json" || v === "text" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The log format this process uses: `LOG_FORMAT` (`text` or `json`), default `text`. */
export function logFormat(): LogFormat {
  return envFormat() ?? "text";
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
      line = JSON.stringify({ ts, level: lvl, component: name, msg, ...fields }, redactingReplacer);
    } else {
      line = `${ts} ${lvl.toUpperCase().padEnd(5)} [${name}] ${redact(msg)}`;
      if (fields) {
        for (const [k, v] of Object.entries(fields)) {
          if (v !== undefined) line += ` ${k}=${formatValue(v)}`;
        }
      }
    }
    write(line);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (child) => createLogger(`${name}.${child}`, { level, format, write, now }),
  };
}
