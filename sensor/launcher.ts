/**
 * Launching the aggregator as a child process: the command line (pure) and
 * the spawn with its output relayed line by line (I/O; common/child.ts).
 * @module
 */

import { denoRunArgs, projectFiles, relayOutput } from "../common/child.ts";
import type { LogFormat, Logger } from "../common/log.ts";
import { launchFlags } from "../common/permissions.ts";

/** What the aggregator is launched with. */
export interface AggregateCommandOptions {
  /** Kafka bootstrap servers. */
  brokers: string[];
  /** PostgreSQL URL: passed in the child's environment, never on its command line. */
  databaseUrl: string;
  /** Ticks topic. */
  topic: string;
  /** KV file path. */
  kvPath: string;
  /**
   * Aggregator flags to pass on, as given to the sensor (sensor/options.ts `aggregatorArgs`:
   * every aggregator flag that was set, and only those).
   */
  aggregatorArgs?: readonly string[];
  /** `--metrics-port` for the aggregator (it then serves metrics on 127.0.0.1), if set. */
  metricsPort?: number;
  /** True when the sensor runs as a `deno compile`d binary. */
  standalone: boolean;
  /** The sensor binary's path (used when standalone, to find `tickpipe-aggregate` beside it). */
  execPath: string;
  /** Absolute path of deno.json (used when not standalone). */
  configPath: string;
  /** Absolute path of main.ts (used when not standalone). */
  mainPath: string;
  /**
   * Environment the aggregator's permissions are derived from besides its flags and
   * DATABASE_URL (TICKPIPE_KAFKA_HOSTS, PGPORT); default none.
   */
  env?: (name: string) => string | undefined;
}

/** A fully resolved child command. */
export interface AggregateCommand {
  /** Executable: `deno` (resolved on PATH) or the compiled aggregator. */
  command: string;
  /** Arguments (never contain the database URL). */
  args: string[];
  /** Extra environment for the child. */
  env: Record<string, string>;
}

/** Name of the compiled aggregator binary, next to the compiled sensor. */
export const AGGREGATE_BINARY = "tickpipe-aggregate";

/** Absolute paths of the project's deno.json and main.ts. */
export function projectPaths(): { configPath: string; mainPath: string } {
  const { configPath, mainPath } = projectFiles();
  return { configPath, mainPath };
}

/**
 * Builds the aggregator's command line: the compiled binary beside a compiled sensor (its
 * permissions were baked in), else `deno run -P=aggregate` with the hosts and paths derived from
 * its configuration. Pure.
 */
export function buildAggregateCommand(options: AggregateCommandOptions): AggregateCommand {
  const flags = [
    "--brokers",
    options.brokers.join(","),
    "--topic",
    options.topic,
    "--kv",
    options.kvPath,
  ];
  flags.push(...(options.aggregatorArgs ?? []));
  if (options.metricsPort !== undefined) flags.push("--metrics-port", String(options.metricsPort));
  const env = { DATABASE_URL: options.databaseUrl };
  if (options.standalone) {
    const slash = options.execPath.lastIndexOf("/");
    const dir = slash >= 0 ? options.execPath.slice(0, slash) : ".";
    return { command: `${dir}/${AGGREGATE_BINARY}`, args: ["aggregate", ...flags], env };
  }
  // Exactly what the aggregator's configuration names, as the launcher derives it.
  const denoFlags = launchFlags("aggregate", flags, {
    env: (name) => name === "DATABASE_URL" ? options.databaseUrl : options.env?.(name),
    root: options.configPath.slice(0, options.configPath.lastIndexOf("/") + 1),
  });
  return {
    // By name: the sensor's permission set allows running "deno", which
    // Deno.execPath()'s resolved path would not match.
    command: "deno",
    args: denoRunArgs("aggregate", flags, {
      configPath: options.configPath,
      mainPath: options.mainPath,
      denoFlags,
    }),
    env,
  };
}

/** A launched aggregator. */
export interface RunningChild {
  /** Process id. */
  pid: number;
  /** Launch time (epoch ms). */
  startedAt: number;
  /** Resolves to the exit code once the child and its output streams are done. */
  status: Promise<number>;
  /** Sends `signal` to the child (ignored when it already exited). */
  kill(signal?: Deno.Signal): void;
}

/** Options for {@linkcode spawnAggregator}. */
export interface SpawnOptions {
  /** Logger for the launch line. */
  logger: Logger;
  /** Name the relayed output lines carry (default `aggregate`: `[aggregate] line`). */
  name?: string;
  /** Format of the relayed lines (default: LOG_FORMAT). */
  format?: LogFormat;
  /** Where relayed stdout lines go (default: this process's stdout). */
  writeOut?: (line: string) => void;
  /** Where relayed stderr lines go (default: this process's stderr). */
  writeErr?: (line: string) => void;
  /** Do not stream: the child inherits stdout/stderr and outlives the sensor (`--once` without `--wait`). */
  detached?: boolean;
  /** Clock (default Date.now). */
  now?: () => number;
}

const encoder = new TextEncoder();

/** Spawns the aggregator and relays its output line by line (`[aggregate] line`, or JSON). */
export function spawnAggregator(cmd: AggregateCommand, options: SpawnOptions): RunningChild {
  const name = options.name ?? "aggregate";
  const format = options.format;
  const writeOut = options.writeOut ?? ((l) => Deno.stdout.writeSync(encoder.encode(l + "\n")));
  const writeErr = options.writeErr ?? ((l) => Deno.stderr.writeSync(encoder.encode(l + "\n")));
  const detached = options.detached ?? false;
  const now = options.now ?? Date.now;
  const child = new Deno.Command(cmd.command, {
    args: cmd.args,
    env: cmd.env,
    stdin: "null",
    stdout: detached ? "inherit" : "piped",
    stderr: detached ? "inherit" : "piped",
  }).spawn();
  const startedAt = now();
  let status: Promise<number>;
  if (detached) {
    child.unref();
    status = child.status.then((s) => s.code);
  } else {
    const pumps = Promise.all([
      relayOutput(child.stdout, name, { write: writeOut, format }),
      relayOutput(child.stderr, name, { write: writeErr, format, stream: "stderr" }),
    ]);
    status = Promise.all([child.status, pumps.catch(() => {})]).then(([s]) => s.code);
  }
  return {
    pid: child.pid,
    startedAt,
    status,
    kill(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
    },
  };
}
