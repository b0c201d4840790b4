/**
 * `tickpipe start`: ingest and the sensor (which launches the aggregator when
 * data arrives) as one supervised process tree.
 * @module
 */

import { BASE_OPTIONS, BASE_USAGE, parseFlags, UsageError } from "../common/cli.ts";
import { type BaseConfig, loadBaseConfig, parseDuration, parsePositive } from "../common/config.ts";
import { createLogger } from "../common/log.ts";

const USAGE = `Usage: tickpipe start [flags]

Runs ingest and the sensor as supervised children, each under its own permission set
(deno run -P=ingest / -P=sensor main.ts ...); the sensor launches the aggregator when
Kafka has unread ticks. A child that exits is restarted with exponential backoff (0.5 s
doubling to 30 s; reset after a minute of healthy running); a child that rejects its
flags (exit 2) stops everything with exit 1. The first SIGINT/SIGTERM stops the children
upstream first, one SIGTERM each: ingest flushes into Kafka, then the sensor stops its
aggregator, which runs a final trigger, checkpoints and releases its lease; exit 0.
Children get --brokers/--topic/--kv explicitly and DATABASE_URL only in the sensor's
environment (never on a command line).

Flags:
  --source URL         WebSocket source (default Yahoo's streamer)
  --symbols A,B,...    symbols to subscribe to
  --partitions N       partitions when creating the topic (default 3)
  --trigger DUR        aggregator trigger interval (default 60s)
  --idle-timeout DUR   aggregator idle shutdown (default 15m)
  --schedule CRON      sensor cron schedule (default "* * * * *")
  --every DUR          sensor: also check at this interval (e.g. 5s)
  --min-new N          unread ticks that justify a launch (default 1)

${BASE_USAGE}`;

/** Options of the pipeline children. */
export interface StartOptions {
  /** WebSocket source. */
  source?: string;
  /** Symbols (comma-separated). */
  symbols?: string;
  /** Topic partitions. */
  partitions?: string;
  /** Aggregator trigger. */
  trigger?: string;
  /** Aggregator idle timeout. */
  idleTimeout?: string;
  /** Sensor schedule. */
  schedule?: string;
  /** Sensor extra check interval. */
  every?: string;
  /** Sensor threshold. */
  minNew?: string;
}

/** A child of `start` as {@linkcode pipelineChildren} builds it. */
export interface PipelineChild {
  /** Output prefix and log name. */
  name: string;
  /** main.ts command (and permission set). */
  command: string;
  /** Arguments after the command. */
  args: string[];
  /** Extra environment. */
  env?: Record<string, string>;
}

/** Validates the `start` options the children would reject, so a typo fails fast with exit 2. */
export function validateStartOptions(options: StartOptions): void {
  if (options.source !== undefined && !/^wss?:\/\/[^\s]+$/.test(options.source)) {
    throw new UsageError(`--source "${options.source}" is not a ws:// or wss:// URL`);
  }
  if (options.symbols !== undefined && options.symbols.split(",").every((s) => s.trim() === "")) {
    throw new UsageError(`--symbols "${options.symbols}" names no symbol`);
  }
  parsePositive(options.partitions, "--partitions", { fallback: 3, integer: true, min: 1 });
  parsePositive(options.minNew, "--min-new", { fallback: 1, integer: true, min: 1 });
  parseDuration(options.trigger, "--trigger", { fallbackMs: 1 });
  parseDuration(options.idleTimeout, "--idle-timeout", { fallbackMs: 1 });
  parseDuration(options.every, "--every", { fallbackMs: 1 });
  if (options.schedule !== undefined && options.schedule.trim().split(/\s+/).length !== 5) {
    throw new UsageError(
      `--schedule "${options.schedule}" is not a cron expression: expected 5 fields like "* * * * *"`,
    );
  }
}

/** Builds the child specs for `start` (pure). */
export function pipelineChildren(config: BaseConfig, options: StartOptions): PipelineChild[] {
  const common = ["--brokers", config.brokers.join(","), "--topic", config.topic];
  const opt = (flag: string, v?: string) => (v === undefined ? [] : [flag, v]);
  return [
    {
      name: "ingest",
      command: "ingest",
      args: [
        ...common,
        ...opt("--source", options.source),
        ...opt("--symbols", options.symbols),
        ...opt("--partitions", options.partitions),
      ],
    },
    {
      name: "sensor",
      command: "sensor",
      args: [
        ...common,
        "--kv",
        config.kvPath,
        ...opt("--trigger", options.trigger),
        ...opt("--idle-timeout", options.idleTimeout),
        ...opt("--schedule", options.schedule),
        ...opt("--every", options.every),
        ...opt("--min-new", options.minNew),
      ],
      // The sensor hands DATABASE_URL to the aggregator through the environment, never argv.
      env: { DATABASE_URL: config.databaseUrl },
    },
  ];
}

/** Parses `start` flags. */
export function parseStartFlags(args: string[]) {
  return parseFlags(args, {
    ...BASE_OPTIONS,
    source: { type: "string" },
    symbols: { type: "string" },
    partitions: { type: "string" },
    trigger: { type: "string" },
    "idle-timeout": { type: "string" },
    schedule: { type: "string" },
    every: { type: "string" },
    "min-new": { type: "string" },
  });
}

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseStartFlags(args);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${positionals[0]}" (see --help)`);
  }
  const config = loadBaseConfig(values);
  const options: StartOptions = {
    source: values.source,
    symbols: values.symbols,
    partitions: values.partitions,
    trigger: values.trigger,
    idleTimeout: values["idle-timeout"],
    schedule: values.schedule,
    every: values.every,
    minNew: values["min-new"],
  };
  validateStartOptions(options);
  const { Supervisor, safeWriter } = await import("./supervisor.ts");
  const log = createLogger("start", { write: safeWriter(Deno.stderr) });
  const fatal = Promise.withResolvers<string>();
  const sup = new Supervisor({
    logger: log,
    onEvent: (e) => {
      if (e.kind === "fatal") fatal.resolve(e.reason);
    },
  });
  log.info("starting pipeline", { topic: config.topic, kv: config.kvPath, pid: Deno.pid });
  for (const spec of pipelineChildren(config, options)) sup.add(spec);
  const signals = watchSignals();
  const why = await Promise.race([
    signals.first.then((sig) => ({ sig, fatal: undefined })),
    fatal.promise.then((reason) => ({ sig: undefined, fatal: reason })),
  ]);
  if (why.sig) {
    log.info("stopping: signalling children (ingest flushes, the aggregator checkpoints)", {
      signal: why.sig,
    });
  } else log.error("stopping: a child cannot run", { reason: why.fatal });
  signals.onRepeat(() => log.warn("already stopping: waiting for the children to exit cleanly"));
  await sup.stop();
  signals.dispose();
  log.info("stopped", {
    exits: Object.fromEntries(sup.children.map((c) => [c.spec.name, c.lastExit ?? null])),
  });
  return why.fatal ? 1 : 0;
}

/** SIGINT/SIGTERM watcher: the first signal, then a hook for repeats. */
export interface SignalWatch {
  /** Resolves with the first signal. */
  first: Promise<Deno.Signal>;
  /** Calls `fn` on every later signal. */
  onRepeat(fn: () => void): void;
  /** Removes the listeners. */
  dispose(): void;
}

/** Watches SIGINT and SIGTERM until disposed (later signals do not kill the process). */
export function watchSignals(): SignalWatch {
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  let seen = false;
  let repeat: () => void = () => {};
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const h = () => {
      if (seen) repeat();
      else {
        seen = true;
        resolve(sig);
      }
    };
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  return {
    first: promise,
    onRepeat: (fn) => {
      repeat = fn;
    },
    dispose: () => {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    },
  };
}

/** Resolves on the first SIGINT or SIGTERM. */
export function waitForSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    const handlers: [Deno.Signal, () => void][] = [];
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const h = () => {
        for (const [s, f] of handlers) Deno.removeSignalListener(s, f);
        resolve(sig);
      };
      handlers.push([sig, h]);
      Deno.addSignalListener(sig, h);
    }
  });
}
