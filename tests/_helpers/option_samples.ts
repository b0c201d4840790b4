/**
 * Random valid (and invalid) flag values for the option tables (common/options.ts), by kind, so
 * table-driven tests cover every flag, including ones added later: a flag with its own parser
 * needs a sample here, or {@linkcode sampleRaw} throws naming it.
 * @module
 */

import type { OptionSpec } from "../../common/options.ts";

/** A random number source in [0, 1). */
export type Rnd = () => number;

const int = (rnd: Rnd, lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));

/** Samples of the flags whose specs have their own parser, by flag name. */
const CUSTOM: Record<string, (rnd: Rnd) => string> = {
  source: (rnd) => `ws://127.0.0.1:${int(rnd, 1, 65535)}/?version=2`,
  symbols: (rnd) => ["A", "B,C", `X${int(rnd, 0, 99)},Y`][int(rnd, 0, 2)],
  "value-format": (rnd) => ["json", "tick-v1"][int(rnd, 0, 1)],
  schedule: (rnd) => ["* * * * *", "*/5 * * * *", "0 * * * *"][int(rnd, 0, 2)],
  "metrics-port": (rnd) => String(int(rnd, 1, 65532)),
  "aggregate-metrics-port": (rnd) => String(int(rnd, 1, 65535)),
  "metrics-host": (rnd) => ["127.0.0.1", "::1", "localhost"][int(rnd, 0, 2)],
  duration: (rnd) => String(int(rnd, 1, 500) / 10),
  rate: (rnd) => String(int(rnd, 1, 1000)),
  "dashboard-port": (rnd) => String(rnd() < 0.2 ? 0 : int(rnd, 1, 65535)),
  "dashboard-host": (rnd) => ["127.0.0.1", "::1", "localhost"][int(rnd, 0, 2)],
  "dashboard-token": (rnd) => `tok-${int(rnd, 0, 9999).toString().padStart(4, "0")}-abcdefghijkl`,
  speed: (rnd) => String(int(rnd, 1, 400) / 10),
  // ISO times only: a duration ago parses to the same value too, but its time depends on now.
  from: (rnd) =>
    new Date(Date.UTC(2025, int(rnd, 0, 11), int(rnd, 1, 28), int(rnd, 0, 23))).toISOString(),
};

/** A random duration text of at least `minMs`: `250ms`, `42s`, `7m` or plain seconds. */
function durationSample(rnd: Rnd, minMs = 1): string {
  const units: [string, number, number][] = [["ms", 1, 5000], ["s", 1000, 600], ["m", 60_000, 90], [
    "",
    1000,
    600,
  ]];
  for (;;) {
    const [unit, ms, most] = units[int(rnd, 0, units.length - 1)];
    const n = int(rnd, 1, most);
    if (n * ms >= minMs) return `${n}${unit}`;
  }
}

/** A random valid value of flag `name`, as typed on a command line (`true` for a boolean). */
export function sampleRaw(name: string, spec: OptionSpec, rnd: Rnd): string | true {
  if (spec.kind === "boolean") return true;
  if (spec.parse !== undefined) {
    const custom = CUSTOM[name];
    if (custom === undefined) {
      throw new Error(`No sample for --${name} (its own parser): add one to option_samples.ts`);
    }
    return custom(rnd);
  }
  switch (spec.kind) {
    case "string":
      // Now and then a value that starts with "-", which forwarding must keep a value.
      return rnd() < 0.2 ? `-v${int(rnd, 0, 999)}` : `v${int(rnd, 0, 99_999)}`;
    case "int": {
      const min = spec.min ?? (spec.zero ? 0 : 1);
      const max = spec.max ?? min + 1_000_000;
      return String(int(rnd, min, max));
    }
    case "number": {
      const min = spec.min ?? -1000;
      const max = spec.max ?? min + 1000;
      return String(min + Math.round(rnd() * (max - min) * 1000) / 1000);
    }
    case "duration":
      return spec.zero && rnd() < 0.2 ? "0" : durationSample(rnd, spec.min ?? 1);
    case "durations": {
      const n = int(rnd, 1, Math.min(4, spec.maxItems ?? 4));
      const seen = new Set<string>();
      while (seen.size < n) seen.add(`${int(rnd, 1, 120)}m`);
      return [...seen].join(",");
    }
  }
  throw new Error(`No sample for --${name} of kind ${spec.kind}`);
}

/**
 * A value `name` must reject (it names the flag in its ConfigError), or null when every text is
 * valid (free strings).
 */
export function invalidRaw(name: string, spec: OptionSpec): string | null {
  if (spec.kind === "boolean") return null;
  if (spec.parse !== undefined) {
    return {
      source: "http://x/",
      symbols: " , ",
      "value-format": "avro",
      schedule: "often",
      "metrics-port": "70000",
      "aggregate-metrics-port": "x",
      "metrics-host": "not a host!",
      duration: "0",
      rate: "-1",
      "dashboard-port": "70000",
      "dashboard-host": "not a host!",
      // A weak token is refused without being named (a secret): tests/unit/web_dashboard_test.ts.
      speed: "0",
      from: "soon",
    }[name] ?? null;
  }
  switch (spec.kind) {
    case "string":
      return null;
    case "int":
    case "number":
      return "many";
    case "duration":
      return "soon";
    case "durations":
      return "1m,1m";
  }
  return null;
}
