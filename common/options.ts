/**
 * Typed option tables (in the style of Fresh's `Options` → `ResolvedOptions`): a command
 * declares its flags once (kind, help, default), and the same table parses them
 * ({@linkcode parseArgsConfig}, {@linkcode resolveOptions}), prints the help
 * ({@linkcode optionsUsage}), tells the launcher what the command will reach
 * (common/permissions.ts), and rebuilds the flags a parent forwards to a child
 * ({@linkcode forwardArgs}: `start` → `ingest`/`sensor` → `aggregate`, `demo` → all).
 *
 * Defaults: a spec's `default` is applied by {@linkcode resolveOptions}, the one place; a default
 * applied elsewhere (the aggregator applies its own, see aggregate/defaults.ts) is only `shown`.
 * Forwarding passes only what the user set, as given, so a child applies its own defaults.
 * @module
 */

import { ConfigError, durationText, parseDuration } from "./config.ts";

/** How a flag's text becomes a value. */
export type OptionKind = "string" | "duration" | "durations" | "int" | "number" | "boolean";

/** One flag. */
export interface OptionSpec {
  /** Value kind. */
  kind: OptionKind;
  /** Help text (a `\n` starts a continuation line). */
  help: string;
  /** Placeholder in the help (e.g. DURATION). */
  arg?: string;
  /** One-letter alias (`-h`). */
  short?: string;
  /** The default, applied by {@linkcode resolveOptions} (as a parsed value) and shown in help. */
  default?: unknown;
  /** The default as the help shows it, when applied elsewhere or better said in words. */
  shown?: string;
  /** Environment variable the setting falls back to (shown in help; resolved by its reader). */
  env?: string;
  /** Smallest accepted value (int, number; durations in ms). */
  min?: number;
  /** Largest accepted value (int, number). */
  max?: number;
  /** Accepts 0 (int: `min` 0; durations: "0" = off). */
  zero?: boolean;
  /** Most items of a `durations` list. */
  maxItems?: number;
  /** Parses a string flag (instead of the kind's parser); throws ConfigError naming `flag`. */
  parse?: (raw: string, flag: string) => unknown;
}

/** A command's flags by name. */
export type OptionsTable = Record<string, OptionSpec>;

/** The value type of a spec. */
export type ValueOf<S extends OptionSpec> = S extends
  { parse: (raw: string, flag: string) => infer R } ? R
  : S["kind"] extends "boolean" ? boolean
  : S["kind"] extends "string" ? string
  : S["kind"] extends "durations" ? number[]
  : number;

/** Specs that always resolve to a value: with a default, or booleans (false when not given). */
type Settled<S> = S extends { default: unknown } ? true : S extends { kind: "boolean" } ? true
: false;

/** The flags as given on a command line (parseArgs values): what a parent forwards. */
export type Options<T extends OptionsTable> = {
  [K in keyof T]?: T[K]["kind"] extends "boolean" ? boolean : string;
};

/** Parsed values with the table's defaults applied: unset flags without a default stay optional. */
export type ResolvedOptions<T extends OptionsTable> =
  & { [K in keyof T as Settled<T[K]> extends true ? K : never]: ValueOf<T[K]> }
  & { [K in keyof T as Settled<T[K]> extends true ? never : K]?: ValueOf<T[K]> };

/** Raw flag values, as node:util parseArgs returns them. */
export type RawValues = Readonly<Record<string, string | boolean | undefined>>;

/** The node:util parseArgs configuration of a table. */
export function parseArgsConfig<T extends OptionsTable>(
  table: T,
): { [K in keyof T]: { type: T[K]["kind"] extends "boolean" ? "boolean" : "string" } } {
  return Object.fromEntries(
    Object.entries(table).map(([name, s]) => [
      name,
      {
        type: s.kind === "boolean" ? "boolean" : "string",
        ...(s.short === undefined ? {} : { short: s.short }),
      },
    ]),
  ) as never;
}

/** Parses one flag's raw value; throws ConfigError naming the flag and the bad value. */
export function parseOptionValue(name: string, spec: OptionSpec, raw: string | boolean): unknown {
  const flag = `--${name}`;
  if (spec.kind === "boolean") return raw === true;
  const text = String(raw);
  if (spec.parse !== undefined) return spec.parse(text, flag);
  switch (spec.kind) {
    case "string":
      return text;
    case "int": {
      const n = Number(text);
      const min = spec.min ?? (spec.zero ? 0 : 1);
      const max = spec.max ?? Number.MAX_SAFE_INTEGER;
      if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
        throw new ConfigError(
          `${flag} "${raw}" is invalid: expected an integer ${
            spec.max === undefined ? `>= ${min}` : `from ${min} to ${max}`
          }`,
        );
      }
      return n;
    }
    case "number": {
      const n = Number(text);
      const min = spec.min ?? -Infinity;
      const max = spec.max ?? Infinity;
      if (text.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
        const range = spec.min !== undefined && spec.max !== undefined
          ? ` from ${min} to ${max}`
          : spec.min !== undefined
          ? ` >= ${min}`
          : spec.max !== undefined
          ? ` <= ${max}`
          : "";
        throw new ConfigError(`${flag} "${raw}" is invalid: expected a number${range}`);
      }
      return n;
    }
    case "duration": {
      if (spec.zero && text.trim() === "0") return 0;
      const ms = parseDuration(text, flag, { fallbackMs: 0 });
      if (spec.min !== undefined && ms < spec.min) {
        throw new ConfigError(`${flag} "${raw}" is too short: expected at least ${spec.min} ms`);
      }
      return ms;
    }
    case "durations": {
      const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
      if (parts.length === 0) {
        throw new ConfigError(`${flag} "${raw}" names no duration: expected e.g. 1m,5m,1h`);
      }
      if (spec.maxItems !== undefined && parts.length > spec.maxItems) {
        throw new ConfigError(
          `${flag} "${raw}" names ${parts.length} durations: expected at most ${spec.maxItems}`,
        );
      }
      const list = parts.map((p) => parseDuration(p, flag, { fallbackMs: 0 }));
      if (new Set(list).size !== list.length) {
        throw new ConfigError(`${flag} "${raw}" repeats a duration`);
      }
      return list.sort((a, b) => a - b);
    }
  }
}

/**
 * Parses every flag of `table` set in `values` and applies the table's defaults (the one place
 * they are applied); flags without a default that were not given stay undefined, booleans false.
 * Throws ConfigError naming the first bad flag.
 */
export function resolveOptions<T extends OptionsTable>(
  table: T,
  values: RawValues,
): ResolvedOptions<T> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table)) {
    const raw = values[name];
    if (raw === undefined) {
      if (Object.hasOwn(spec, "default")) {
        const d = spec.default;
        out[name] = Array.isArray(d) ? [...d] : d;
      } else if (spec.kind === "boolean") out[name] = false;
      continue;
    }
    out[name] = parseOptionValue(name, spec, raw);
  }
  return out as ResolvedOptions<T>;
}

/**
 * The flags to forward to a child for the options of `table` set in `values`, as given (the
 * child applies its own defaults). A value that starts with `-` is passed as `--name=value`, so
 * the child's parser cannot take it for a flag.
 */
export function forwardArgs(table: OptionsTable, values: RawValues): string[] {
  const args: string[] = [];
  for (const [name, spec] of Object.entries(table)) {
    const raw = values[name];
    if (raw === undefined || raw === false) continue;
    if (spec.kind === "boolean") args.push(`--${name}`);
    else if (String(raw).startsWith("-")) args.push(`--${name}=${raw}`);
    else args.push(`--${name}`, String(raw));
  }
  return args;
}

/** `table` without the flags `names` (e.g. the ones a parent sets itself). */
export function omitOptions<T extends OptionsTable, K extends keyof T & string>(
  table: T,
  names: readonly K[],
): Omit<T, K> {
  const out: Record<string, OptionSpec> = { ...table };
  for (const n of names) delete out[n];
  return out as Omit<T, K>;
}

/**
 * `table` with the help showing `presets` as the defaults: the values a parent forwards unless
 * the user sets them (demo's settings, for example). Presets of other flags are ignored.
 */
export function withPresets<T extends OptionsTable>(
  table: T,
  presets: Readonly<Record<string, string | undefined>>,
): T {
  const out: Record<string, OptionSpec> = { ...table };
  for (const [name, value] of Object.entries(presets)) {
    if (value !== undefined && out[name] !== undefined) out[name] = { ...out[name], shown: value };
  }
  return out as T;
}

/** The default as the help shows it, or undefined when the spec has none. */
export function shownDefault(spec: OptionSpec): string | undefined {
  if (spec.shown !== undefined) return spec.shown;
  if (!Object.hasOwn(spec, "default")) return undefined;
  const d = spec.default;
  if (spec.kind === "duration" && typeof d === "number") return d === 0 ? "0" : durationText(d);
  if (spec.kind === "durations" && Array.isArray(d)) return d.map(durationText).join(",");
  if (Array.isArray(d)) return d.join(",");
  return String(d);
}

/** Options of {@linkcode optionsUsage}. */
export interface UsageOptions {
  /** Column of the descriptions (default: the longest flag + 2, at most 30). */
  column?: number;
  /** Line width to wrap descriptions at (default 100). */
  width?: number;
}

function usageLeft(name: string, s: OptionSpec): string {
  const short = s.short === undefined ? "" : `-${s.short}, `;
  return `  ${short}--${name}${s.arg ? ` ${s.arg}` : s.kind === "boolean" ? "" : " VALUE"}`;
}

/** The description column that fits the flags of `tables` (at most 30). */
export function usageColumn(...tables: OptionsTable[]): number {
  const lefts = tables.flatMap((t) => Object.entries(t).map(([n, s]) => usageLeft(n, s).length));
  return Math.min(30, Math.max(0, ...lefts) + 2);
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  for (const para of text.split("\n")) {
    let line = "";
    for (const word of para.split(" ")) {
      if (line !== "" && line.length + 1 + word.length > width) {
        out.push(line);
        line = word;
      } else line = line === "" ? word : `${line} ${word}`;
    }
    out.push(line);
  }
  return out;
}

/** Help lines of a table: flag, placeholder, help, environment variable and default, aligned. */
export function optionsUsage(table: OptionsTable, options: UsageOptions = {}): string {
  const col = options.column ?? usageColumn(table);
  const width = Math.max(col + 20, options.width ?? 100);
  const lines: string[] = [];
  for (const [name, s] of Object.entries(table)) {
    const left = usageLeft(name, s);
    const shown = shownDefault(s);
    const extra = [s.env === undefined ? "" : `env ${s.env}`, shown ? `default ${shown}` : ""]
      .filter((x) => x !== "").join(", ");
    // The "(env X, default Y)" note is kept whole on one line when it fits on one.
    const whole = `(${extra})`.length <= width - col;
    const note = extra === "" ? "" : ` ${`(${extra})`.replaceAll(" ", whole ? "\u00a0" : " ")}`;
    const text = wrap(s.help + note, width - col).map((l) => l.replaceAll("\u00a0", " "));
    const pad = " ".repeat(col);
    if (left.length + 1 < col) lines.push(left.padEnd(col) + text[0]);
    else lines.push(left, pad + text[0]);
    for (const more of text.slice(1)) lines.push(pad + more);
  }
  return lines.join("\n");
}

/** One titled section of a help screen. */
export interface UsageSection {
  /** Title line, e.g. `Flags:`. */
  title: string;
  /** Its flags. */
  table: OptionsTable;
  /** A line under the title (e.g. where the flags go). */
  note?: string;
}

/** Help sections with one description column for all of them. */
export function sectionsUsage(
  sections: readonly UsageSection[],
  options: UsageOptions = {},
): string {
  const column = options.column ?? usageColumn(...sections.map((s) => s.table));
  return sections.filter((s) => Object.keys(s.table).length > 0).map((s) =>
    [s.title, ...(s.note ? [s.note] : []), optionsUsage(s.table, { ...options, column })].join(
      "\n",
    )
  ).join("\n\n");
}
