/**
 * Typed option tables (in the style of Fresh's `Options` → `ResolvedOptions`): a command
 * declares its flags once (kind, help, default), and the same table parses them, prints the
 * help, and rebuilds the flags a parent forwards to a child (`start` → `sensor` →
 * `aggregate`). Forwarding passes only what the user set, as given, so every default is
 * applied in one place: where the option is used.
 * @module
 */

import { ConfigError, parseDuration } from "./config.ts";

/** How a flag's text becomes a value. */
export type OptionKind = "string" | "duration" | "durations" | "int" | "boolean";

/** One flag. */
export interface OptionSpec {
  /** Value kind. */
  kind: OptionKind;
  /** One line of help. */
  help: string;
  /** Placeholder in the help (e.g. DURATION). */
  arg?: string;
  /** The default, as shown in the help (the value itself is applied where it is used). */
  shown?: string;
  /** Smallest accepted value (int; durations in ms). */
  min?: number;
  /** Accepts 0 (durations: "0" = off). */
  zero?: boolean;
}

/** A command's flags by name. */
export type OptionsTable = Record<string, OptionSpec>;

/** The value type of a kind. */
export type ValueOf<S extends OptionSpec> = S["kind"] extends "boolean" ? boolean
  : S["kind"] extends "string" ? string
  : S["kind"] extends "durations" ? number[]
  : number;

/** Parsed values: a key per flag, undefined when not given. */
export type ResolvedOptions<T extends OptionsTable> = { [K in keyof T]?: ValueOf<T[K]> };

/** The node:util parseArgs configuration of a table. */
export function parseArgsConfig(
  table: OptionsTable,
): Record<string, { type: "string" | "boolean" }> {
  return Object.fromEntries(
    Object.entries(table).map((
      [name, s],
    ) => [name, { type: s.kind === "boolean" ? "boolean" : "string" }]),
  );
}

/** Parses one flag's raw value; throws ConfigError naming the flag and the bad value. */
export function parseOptionValue(name: string, spec: OptionSpec, raw: string | boolean): unknown {
  const flag = `--${name}`;
  switch (spec.kind) {
    case "boolean":
      return raw === true;
    case "string":
      return String(raw);
    case "int": {
      const n = Number(raw);
      const min = spec.min ?? (spec.zero ? 0 : 1);
      if (!/^\d+$/.test(String(raw).trim()) || !Number.isSafeInteger(n) || n < min) {
        throw new ConfigError(`${flag} "${raw}" is invalid: expected an integer >= ${min}`);
      }
      return n;
    }
    case "duration": {
      if (spec.zero && String(raw).trim() === "0") return 0;
      const ms = parseDuration(String(raw), flag, { fallbackMs: 0 });
      if (spec.min !== undefined && ms < spec.min) {
        throw new ConfigError(`${flag} "${raw}" is too short: expected at least ${spec.min} ms`);
      }
      return ms;
    }
    case "durations": {
      const parts = String(raw).split(",").map((s) => s.trim()).filter((s) => s !== "");
      if (parts.length === 0) {
        throw new ConfigError(`${flag} "${raw}" names no duration: expected e.g. 1m,5m,1h`);
      }
      const list = parts.map((p) => parseDuration(p, flag, { fallbackMs: 0 }));
      if (new Set(list).size !== list.length) {
        throw new ConfigError(`${flag} "${raw}" repeats a duration`);
      }
      return list.sort((a, b) => a - b);
    }
  }
}

/** Parses the given flags of `table` from parseArgs values (absent flags stay undefined). */
export function resolveOptions<T extends OptionsTable>(
  table: T,
  values: Record<string, string | boolean | undefined>,
): ResolvedOptions<T> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table)) {
    const raw = values[name];
    if (raw === undefined) continue;
    out[name] = parseOptionValue(name, spec, raw);
  }
  return out as ResolvedOptions<T>;
}

/** The flags to forward to a child for the options of `table` set in `values`, as given. */
export function forwardArgs(
  table: OptionsTable,
  values: Record<string, string | boolean | undefined>,
): string[] {
  const args: string[] = [];
  for (const [name, spec] of Object.entries(table)) {
    const raw = values[name];
    if (raw === undefined || raw === false) continue;
    if (spec.kind === "boolean") args.push(`--${name}`);
    else args.push(`--${name}`, String(raw));
  }
  return args;
}

/** Help lines of a table, aligned. */
export function optionsUsage(table: OptionsTable): string {
  const rows = Object.entries(table).map(([name, s]) => {
    const left = `  --${name}${s.arg ? ` ${s.arg}` : s.kind === "boolean" ? "" : " VALUE"}`;
    return [left, s.help + (s.shown !== undefined ? ` (default ${s.shown})` : "")] as const;
  });
  const w = Math.max(...rows.map(([l]) => l.length)) + 2;
  return rows.map(([l, r]) => l.padEnd(w) + r).join("\n");
}
