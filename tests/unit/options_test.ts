// Settings resolved once (common/options.ts and the tables of every command): parsing against a
// simple oracle, forwarding as given (parse → forward → parse is the identity), defaults applied
// from the table alone, and, flag by flag, every aggregator flag set on `sensor`, `start` or
// `demo` reaching the aggregator (and ingest's and the sensor's flags reaching theirs), while a
// bad value fails in the parent naming the flag. Table-driven over the tables themselves, so a
// flag added later is covered (a flag with its own parser needs a sample in option_samples.ts).
import assert from "node:assert/strict";
import { parseCommandLine } from "../../common/cli.ts";
import {
  BASE_SETTINGS,
  ConfigError,
  durationText,
  loadBaseConfig,
  parseDuration,
  resolveSetting,
} from "../../common/config.ts";
import {
  forwardArgs,
  type OptionSpec,
  type OptionsTable,
  optionsUsage,
  parseOptionValue,
  type RawValues,
  resolveOptions,
} from "../../common/options.ts";
import {
  AGGREGATE_COMMAND,
  AGGREGATOR_FLAGS,
  AGGREGATOR_OPTION_KEYS,
  aggregatorOptionsOf,
  MAX_WINDOWS,
} from "../../aggregate/options.ts";
import { AGGREGATOR_DEFAULTS } from "../../aggregate/defaults.ts";
import {
  DEFAULT_MAX_OPEN_WINDOWS,
  DEFAULT_WATERMARK_DELAY_MS,
  DEFAULT_WINDOWS,
  MAX_RESOLUTIONS,
} from "../../aggregate/engine.ts";
import {
  eventStartAt,
  INGEST_COMMAND,
  INGEST_FLAGS,
  parseEventStart,
  SIMULATE_COMMAND,
  SIMULATE_FLAGS,
  SIMULATOR_LISTEN,
} from "../../ingest/options.ts";
import { DEFAULT_HOSTNAME, DEFAULT_PORT, DEFAULT_REPLAY_MS } from "../../ingest/simulator.ts";
import { aggregatorArgs, SENSOR_COMMAND, SENSOR_FLAGS } from "../../sensor/options.ts";
import { buildAggregateCommand, projectPaths } from "../../sensor/launcher.ts";
import {
  COMMAND_OPTIONS,
  DEMO_COMMAND,
  DEMO_SETTINGS,
  DEMO_SOURCE,
  demoForwarded,
  pipelineChildren,
  START_COMMAND,
  START_INGEST_FLAGS,
} from "../../pipeline/options.ts";
import { COMMANDS } from "../../main.ts";
import { mulberry32 as prng } from "../../common/prng.ts";
import { invalidRaw, type Rnd, sampleRaw } from "../_helpers/option_samples.ts";

const config = loadBaseConfig({
  brokers: "127.0.0.1:9092",
  "database-url": "postgres://u:secret@127.0.0.1:5432/db",
  topic: "t-options",
  kv: ".data/test/options.kv",
}, { env: () => undefined });

/** An independent reading of a flag's text (the kinds without their own parser). */
function oracle(spec: OptionSpec, raw: string | true): unknown {
  if (raw === true) return true;
  const duration = (t: string) => {
    const m = /^(\d+)(ms|s|m|h)?$/.exec(t.trim())!;
    return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? "s"]!;
  };
  switch (spec.kind) {
    case "string":
      return raw;
    case "int":
    case "number":
      return Number(raw);
    case "duration":
      return raw === "0" ? 0 : duration(raw);
    case "durations":
      return raw.split(",").map(duration).sort((a, b) => a - b);
  }
  throw new Error(`no oracle for ${spec.kind}`);
}

/** Random flags of `table` (never help) with random valid values, as parseArgs would give them. */
function randomGiven(table: OptionsTable, rnd: Rnd, p = 0.4): Record<string, string | true> {
  const given: Record<string, string | true> = {};
  for (const [name, spec] of Object.entries(table)) {
    if (name !== "help" && rnd() < p) given[name] = sampleRaw(name, spec, rnd);
  }
  return given;
}

/** `given` as a command line. */
function argv(table: OptionsTable, given: RawValues): string[] {
  return forwardArgs(table, given);
}

/** The arguments of `args` after `command` (a child's deno command line). */
function after(command: string, args: readonly string[]): string[] {
  return args.slice(args.indexOf(command) + 1);
}

/** The options of the aggregator a sensor run with `sensorArgs` launches, as it parses them. */
function aggregatorOf(sensorArgs: readonly string[]) {
  const sensor = parseCommandLine(sensorArgs, SENSOR_COMMAND);
  const cmd = buildAggregateCommand({
    brokers: ["127.0.0.1:9092"],
    databaseUrl: config.databaseUrl,
    topic: config.topic,
    kvPath: config.kvPath,
    aggregatorArgs: aggregatorArgs(sensor.given),
    standalone: false,
    execPath: "",
    ...projectPaths(),
  });
  assert.equal(cmd.command, "deno");
  return parseCommandLine(after("aggregate", cmd.args), AGGREGATE_COMMAND);
}

/** The child named `name` of start's (or demo's) pipeline for the flags `given`. */
function child(given: RawValues, name: "ingest" | "sensor"): string[] {
  return pipelineChildren(config, given).find((c) => c.name === name)!.args;
}

Deno.test("options: each kind parses as a simple oracle reads it, for random values", () => {
  const rnd = prng(11);
  const kinds: OptionSpec[] = [
    { kind: "int", help: "" },
    { kind: "int", help: "", zero: true, max: 65535 },
    { kind: "number", help: "", min: 0, max: 1 },
    { kind: "duration", help: "" },
    { kind: "duration", help: "", zero: true },
    { kind: "durations", help: "", maxItems: 16 },
    { kind: "string", help: "" },
    { kind: "boolean", help: "" },
  ];
  for (let i = 0; i < 4000; i++) {
    const spec = kinds[i % kinds.length];
    const raw = sampleRaw("x", spec, rnd);
    assert.deepEqual(parseOptionValue("x", spec, raw), oracle(spec, raw), `${spec.kind} ${raw}`);
  }
  const bad: [OptionSpec, string, RegExp][] = [
    [{ kind: "int", help: "" }, "0", /--x "0" is invalid: expected an integer >= 1/],
    [{ kind: "int", help: "", max: 9 }, "10", /expected an integer from 1 to 9/],
    [{ kind: "int", help: "" }, "1.5", /--x "1.5"/],
    [{ kind: "number", help: "", min: 0, max: 1 }, "2", /expected a number from 0 to 1/],
    [{ kind: "duration", help: "" }, "0", /--x "0" must be greater than zero/],
    [{ kind: "duration", help: "", min: 1000 }, "5ms", /--x "5ms" is too short/],
    [{ kind: "durations", help: "" }, "1m,60s", /--x "1m,60s" repeats a duration/],
    [
      { kind: "durations", help: "", maxItems: 2 },
      "1m,2m,3m",
      /names 3 durations: expected at most 2/,
    ],
    [{ kind: "durations", help: "" }, " , ", /names no duration/],
  ];
  for (const [spec, raw, re] of bad) {
    assert.throws(
      () => parseOptionValue("x", spec, raw),
      (e) => e instanceof ConfigError && re.test(e.message),
      raw,
    );
  }
});

Deno.test("options: parse → forward → parse gives the same options, for every command's table", () => {
  const rnd = prng(12);
  for (const [command, table] of Object.entries(COMMAND_OPTIONS)) {
    for (let i = 0; i < 200; i++) {
      const given = randomGiven(table, rnd);
      const line = parseCommandLine(argv(table, given), table);
      assert.deepEqual(line.given, given, `${command}: forwarded as given`);
      const again = parseCommandLine(forwardArgs(table, line.given), table);
      assert.deepEqual(again.options, line.options, `${command}: ${JSON.stringify(given)}`);
      for (const [name, raw] of Object.entries(given)) {
        const spec = table[name];
        const want = spec.parse === undefined ? oracle(spec, raw) : spec.parse(raw as string, "");
        assert.deepEqual(
          (line.options as Record<string, unknown>)[name],
          want,
          `${command} --${name}`,
        );
      }
    }
  }
});

Deno.test("options: defaults are the table's, applied by resolveOptions alone", () => {
  for (const [command, table] of Object.entries(COMMAND_OPTIONS)) {
    const o = resolveOptions(table, {}) as Record<string, unknown>;
    for (const [name, spec] of Object.entries(table)) {
      const want = Object.hasOwn(spec, "default")
        ? spec.default
        : spec.kind === "boolean"
        ? false
        : undefined;
      assert.deepEqual(o[name], want, `${command} --${name}`);
      if (Array.isArray(o[name])) {
        (o[name] as unknown[]).push("changed");
        assert.notDeepEqual(resolveOptions(table, {})[name], o[name], "a copy, not the table's");
      }
    }
  }
  // Nothing given, nothing forwarded: a child applies its own defaults.
  for (const table of Object.values(COMMAND_OPTIONS)) assert.deepEqual(forwardArgs(table, {}), []);
  assert.deepEqual(aggregatorOf([]).given, {
    brokers: "127.0.0.1:9092",
    topic: config.topic,
    kv: config.kvPath,
  });
  // The defaults written in two places agree: the aggregator's (aggregate/defaults.ts) and the
  // engine's, which the aggregator always overrides; the simulator's and its table's.
  assert.deepEqual([...AGGREGATOR_DEFAULTS.windows], [...DEFAULT_WINDOWS]);
  assert.equal(AGGREGATOR_DEFAULTS.watermarkDelayMs, DEFAULT_WATERMARK_DELAY_MS);
  assert.equal(AGGREGATOR_DEFAULTS.maxOpenWindows, DEFAULT_MAX_OPEN_WINDOWS);
  assert.equal(MAX_WINDOWS, MAX_RESOLUTIONS);
  assert.deepEqual(SIMULATOR_LISTEN, { hostname: DEFAULT_HOSTNAME, port: DEFAULT_PORT });
});

Deno.test("options: a flag two tables share has one kind and one parser, wherever it is accepted", () => {
  const owners: [string, OptionsTable][] = [
    ["ingest", INGEST_COMMAND],
    ["sensor", SENSOR_COMMAND],
    ["aggregate", AGGREGATE_COMMAND],
  ];
  for (const [parent, table] of [["start", START_COMMAND], ["demo", DEMO_COMMAND]] as const) {
    for (const [name, spec] of Object.entries(table)) {
      for (const [owner, own] of owners) {
        const o = (own as OptionsTable)[name];
        if (o === undefined || name === "help" || name.startsWith("metrics-")) continue;
        assert.equal(spec.kind, o.kind, `${parent} --${name} vs ${owner}`);
        assert.equal(spec.parse, o.parse, `${parent} --${name} parses as ${owner} does`);
      }
    }
  }
  // --max-future is ingest's and the aggregator's: the same kind, and start passes it to both.
  assert.equal(INGEST_FLAGS["max-future"].kind, AGGREGATOR_FLAGS["max-future"].kind);
  const given = parseCommandLine(["--max-future", "7m"], START_COMMAND).given;
  assert.equal(
    parseCommandLine(after("", child(given, "ingest")), INGEST_COMMAND).options["max-future"],
    420_000,
  );
  assert.equal(aggregatorOf(child(given, "sensor")).options["max-future"], 420_000);
});

Deno.test("options: every aggregator flag set on sensor, start or demo reaches the aggregator, flag by flag", () => {
  const rnd = prng(13);
  const names = Object.keys(AGGREGATOR_FLAGS) as (keyof typeof AGGREGATOR_FLAGS)[];
  assert.ok(names.length >= 10, "the aggregator's flags");
  const routes: [string, (flag: string[]) => string[]][] = [
    ["sensor", (flag) => flag],
    ["start", (flag) => child(parseCommandLine(flag, START_COMMAND).given, "sensor")],
    [
      "demo",
      (flag) => {
        const line = parseCommandLine(flag, DEMO_COMMAND);
        return child(demoForwarded(line.given, line.options.symbols), "sensor");
      },
    ],
  ];
  for (const name of names) {
    const spec: OptionSpec = AGGREGATOR_FLAGS[name];
    for (let i = 0; i < 20; i++) {
      const raw = sampleRaw(name, spec, rnd) as string;
      const flag = raw.startsWith("-") ? [`--${name}=${raw}`] : [`--${name}`, raw];
      const want = oracle(spec, raw);
      for (const [parent, sensorArgs] of routes) {
        const agg = aggregatorOf(sensorArgs(flag));
        const got = agg.options as Record<string, unknown>;
        assert.deepEqual(got[name], want, `${parent} --${name} ${raw}`);
        // ... into the aggregator's settings (a flag mapped nowhere would be lost here) ...
        const options = aggregatorOptionsOf("t", agg.options) as unknown as Record<string, unknown>;
        assert.deepEqual(options[AGGREGATOR_OPTION_KEYS[name]], want, `${parent} --${name}`);
        // ... and nothing else was set: the others keep the aggregator's defaults (demo's presets
        // excepted, which it passes on unless they are given).
        for (const other of names) {
          if (other === name) continue;
          const preset = parent === "demo"
            ? (DEMO_SETTINGS as Record<string, string>)[other]
            : undefined;
          assert.deepEqual(
            agg.given[other],
            preset,
            `${parent} --${name}: --${other} ${preset === undefined ? "not passed on" : "preset"}`,
          );
        }
      }
    }
  }
});

Deno.test("options: ingest's and the sensor's flags set on start or demo reach their child, flag by flag", () => {
  const rnd = prng(14);
  const cases: [string, OptionsTable, "ingest" | "sensor", OptionsTable][] = [
    ["ingest", START_INGEST_FLAGS, "ingest", INGEST_COMMAND],
    ["sensor", SENSOR_FLAGS, "sensor", SENSOR_COMMAND],
  ];
  for (const [what, table, childName, childTable] of cases) {
    for (const [name, spec] of Object.entries(table)) {
      for (let i = 0; i < 10; i++) {
        const raw = sampleRaw(name, spec, rnd);
        const flag = raw === true
          ? [`--${name}`]
          : raw.startsWith("-")
          ? [`--${name}=${raw}`]
          : [`--${name}`, raw];
        const want = spec.parse === undefined || raw === true
          ? oracle(spec, raw)
          : spec.parse(raw, "");
        const start = child(parseCommandLine(flag, START_COMMAND).given, childName);
        const got = parseCommandLine(start, childTable).options as Record<string, unknown>;
        assert.deepEqual(got[name], want, `start → ${what} --${name} ${raw}`);
        if (Object.hasOwn(DEMO_COMMAND, name)) {
          const line = parseCommandLine(flag, DEMO_COMMAND);
          const demo = child(demoForwarded(line.given, line.options.symbols), childName);
          const d = parseCommandLine(demo, childTable).options as Record<string, unknown>;
          assert.deepEqual(d[name], name === "symbols" ? want : want, `demo → ${what} --${name}`);
        }
      }
    }
  }
  // Demo's own choices: its simulator, its symbols, its presets unless given.
  const line = parseCommandLine(["--trigger", "9s", "--symbols", "Q,R"], DEMO_COMMAND);
  const ingest = parseCommandLine(
    child(demoForwarded(line.given, line.options.symbols), "ingest"),
    INGEST_COMMAND,
  );
  assert.equal(ingest.options.source, DEMO_SOURCE);
  assert.deepEqual(ingest.options.symbols, ["Q", "R"]);
  const sensor = child(demoForwarded(line.given, line.options.symbols), "sensor");
  const preset = (name: keyof typeof DEMO_SETTINGS) =>
    parseDuration(DEMO_SETTINGS[name], `--${name}`, { fallbackMs: 0 });
  assert.equal(parseCommandLine(sensor, SENSOR_COMMAND).options.every, preset("every"), "preset");
  assert.equal(aggregatorOf(sensor).options.trigger, 9000, "given wins over the preset");
  assert.equal(aggregatorOf(sensor).options["idle-timeout"], preset("idle-timeout"), "preset");
  assert.deepEqual(aggregatorOf(sensor).options.windows, [60_000, 300_000], "preset 1m,5m");
  assert.equal(aggregatorOf(sensor).options.watermark, preset("watermark"), "preset");
  // --rebuild reaches start's sensor (which launches `--rebuild --yes` only while the
  // checkpoint's settings differ), never the aggregator as given; demo has none (its topic
  // starts empty).
  const rebuilt = child(parseCommandLine(["--rebuild"], START_COMMAND).given, "sensor");
  assert.equal(parseCommandLine(rebuilt, SENSOR_COMMAND).options.rebuild, true);
  assert.equal(aggregatorOf(rebuilt).options.rebuild, false);
  assert.throws(() => parseCommandLine(["--rebuild"], DEMO_COMMAND), /Unknown option '--rebuild'/);
});

Deno.test("options: a bad value of any flag a parent passes on fails in the parent, naming it", () => {
  const parents: [string, OptionsTable][] = [
    ["sensor", SENSOR_COMMAND],
    ["start", START_COMMAND],
    ["demo", DEMO_COMMAND],
  ];
  let checked = 0;
  for (const [parent, table] of parents) {
    for (const [name, spec] of Object.entries(table)) {
      const bad = invalidRaw(name, spec);
      if (bad === null) continue;
      assert.throws(
        () => parseCommandLine([`--${name}=${bad}`], table),
        (e) => e instanceof ConfigError && e.message.includes(`--${name} "${bad}"`),
        `${parent} --${name} ${bad}`,
      );
      checked++;
    }
    assert.throws(() => parseCommandLine(["--tigger", "5s"], table), /Unknown option '--tigger'/);
  }
  assert.ok(checked > 3 * Object.keys(AGGREGATOR_FLAGS).length - 3, `${checked} checked`);
});

Deno.test("options: --help of every command lists each of its flags, from its table", async () => {
  for (const [command, table] of Object.entries(COMMAND_OPTIONS)) {
    const lines: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => lines.push(a.join(" "));
    try {
      assert.equal(await (await COMMANDS[command].load())(["--help"]), 0, command);
    } finally {
      console.log = log;
    }
    const help = lines.join("\n");
    for (const [name, spec] of Object.entries(table)) {
      assert.match(
        help,
        new RegExp(`^  (-\\w, )?--${name}\\b`, "m"),
        `${command} --help: --${name}`,
      );
      const shown = spec.shown ?? (Object.hasOwn(spec, "default") ? "" : undefined);
      if (shown) {
        assert.ok(
          help.replace(/\s+/g, " ").includes(`default ${shown}`),
          `${command} --${name} default`,
        );
      }
    }
    for (const l of help.split("\n").filter((l) => /^ {2}-/.test(l))) {
      assert.ok(l.length <= 100, `${command}: ${l}`);
    }
  }
  const usage = optionsUsage({
    a: { kind: "int", help: "x".repeat(30) + " y".repeat(60), default: 3 },
  });
  assert.ok(usage.split("\n").every((l) => l.length <= 100), usage);
  assert.match(usage, /\(default 3\)$/);
});

Deno.test("shared settings: flag over environment over default, one resolver, the source named", () => {
  const rnd = prng(15);
  const values: Record<string, string[]> = {
    brokers: ["a:1", "b:2,c:3", "[::1]:9"],
    "database-url": ["postgres://u:p@h:5/d", "postgresql://x@y/z"],
    topic: ["t1", "prices.x"],
    kv: ["a.kv", "/tmp/k/x.kv"],
  };
  for (let i = 0; i < 500; i++) {
    for (const name of Object.keys(BASE_SETTINGS) as (keyof typeof BASE_SETTINGS)[]) {
      const s = BASE_SETTINGS[name];
      const pick = () => values[name][Math.floor(rnd() * values[name].length)];
      const flag = rnd() < 0.4 ? pick() : undefined;
      const env = rnd() < 0.5 ? pick() : rnd() < 0.2 ? "" : undefined;
      const r = resolveSetting({ [name]: flag }, name, {
        env: (n) => (n === s.env ? env : undefined),
      });
      const [raw, source] = flag !== undefined
        ? [flag, `--${name}`]
        : env !== undefined && env !== ""
        ? [env, s.env]
        : [s.fallback, s.env];
      assert.deepEqual([r.raw, r.source], [raw, source], `${name} ${flag} ${env}`);
      assert.deepEqual(r.value, s.parse(raw, source));
    }
  }
  assert.throws(() => resolveSetting({ kv: " " }, "kv"), /--kv is empty/);
  assert.throws(
    () => loadBaseConfig({}, { env: (n) => (n === "KAFKA_BROKERS" ? "nope" : undefined) }),
    /KAFKA_BROKERS has an invalid broker "nope"/,
  );
});

Deno.test("durations: durationText is what parseDuration reads back", () => {
  const rnd = prng(16);
  for (let i = 0; i < 2000; i++) {
    const ms = 1 + Math.floor(rnd() * 10 ** (1 + Math.floor(rnd() * 8)));
    assert.equal(parseDuration(durationText(ms), "--x", { fallbackMs: 0 }), ms, String(ms));
  }
  assert.deepEqual([300_000, 1500, 3_600_000, 45_000].map(durationText), [
    "5m",
    "1500ms",
    "1h",
    "45s",
  ]);
});

Deno.test("options: the simulator's event clock flags (--speed, --from, --late-by, --session)", () => {
  const parse = (...args: string[]) => parseCommandLine(args, SIMULATE_COMMAND).options;
  const o = parse("--speed", "20", "--late-by", "90s", "--session", "6h");
  assert.equal(o.speed, 20);
  assert.equal(o["late-by"], 90_000);
  assert.equal(o.session, 21_600_000);
  assert.equal(o.from, undefined, "the simulator applies its own default");
  for (const bad of ["0", "-2", "fast", "Infinity"]) {
    assert.throws(
      () => parse(`--speed=${bad}`),
      (e) => e instanceof ConfigError && e.message.includes(`--speed "${bad}"`),
      bad,
    );
  }
  assert.throws(() => parse("--late-by", "0"), /--late-by "0"/);
  assert.throws(() => parse("--session", "daily"), /--session "daily"/);
  // --from: an ISO time at or before now, or a duration ago (placed at the run's start).
  const rnd = prng(17);
  const now = Date.UTC(2026, 0, 2, 12);
  for (let i = 0; i < 500; i++) {
    const ago = 1 + Math.floor(rnd() * 86_400_000);
    const iso = new Date(now - ago).toISOString();
    assert.deepEqual(parseEventStart(iso, { now }), { at: now - ago });
    assert.equal(eventStartAt(parseEventStart(iso, { now }), now + 5000), now - ago);
    const future = new Date(now + ago).toISOString();
    assert.throws(() => parseEventStart(future, { now }), /--from ".*" is in the future/);
    const minutes = 1 + Math.floor(rnd() * 600);
    const start = parseEventStart(`${minutes}m`, { now });
    assert.deepEqual(start, { agoMs: minutes * 60_000 });
    assert.equal(eventStartAt(start, now), now - minutes * 60_000);
  }
  assert.throws(() => parse("--from", "soon"), /--from "soon" is neither an ISO time/);
  assert.throws(() => parse("--from", "2026-13-45T00:00:00Z"), /is not an ISO time/);
  assert.throws(
    () => parse("--from", new Date(Date.now() + 3_600_000).toISOString()),
    /is in the future/,
  );
  // The help shows the simulator's own default head start.
  assert.match(SIMULATE_FLAGS.from.shown, new RegExp(`${DEFAULT_REPLAY_MS / 60_000} min ago`));
});

Deno.test("cli: a command that takes no argument names the first one it was given (exit 2)", async () => {
  const { rejectPositionals, UsageError } = await import("../../common/cli.ts");
  rejectPositionals([]);
  assert.throws(
    () => rejectPositionals(["reset", "now"]),
    (e: unknown) => e instanceof UsageError && /Unexpected argument "reset"/.test(e.message),
  );
});
