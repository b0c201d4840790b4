/**
 * tickpipe: the one CLI. `deno task <command>` runs the launcher (`main.ts launch <command>`),
 * which starts `main.ts <command>` under that command's permission set (see deno.json) with the
 * hosts and paths it may reach derived from its configuration (common/permissions.ts). Each
 * command lives in its part's entry module and is imported only when chosen. Before it runs,
 * its configured addresses and paths are checked against the permissions it got: a denied one
 * exits 2 with one message naming it and the fix.
 * @module
 */

import { ConfigError, readEnv } from "./common/config.ts";
import { redact } from "./common/log.ts";
import {
  accessDeniedOf,
  checkAccess,
  commandAccess,
  setCommandName,
} from "./common/permissions.ts";

/** A command's entry point: takes its arguments, returns an exit code. */
export type CommandMain = (args: string[]) => Promise<number>;

/** Commands by name: a one-line summary and a lazy loader of the entry module. */
export const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandMain> }> = {
  services: {
    summary: "start/stop/inspect the local Kafka broker and PostgreSQL server",
    load: async () => (await import("./services/services_main.ts")).main,
  },
  ingest: {
    summary: "stream the Yahoo WebSocket feed (or the simulator) into Kafka",
    load: async () => (await import("./ingest/ingest_main.ts")).main,
  },
  simulate: {
    summary: "a local WebSocket server speaking Yahoo's streamer protocol",
    load: async () => (await import("./ingest/simulate_main.ts")).main,
  },
  aggregate: {
    summary: "fold ticks into tumbling windows (1m,5m,...) and upsert them into PostgreSQL",
    load: async () => (await import("./aggregate/aggregate_main.ts")).main,
  },
  sensor: {
    summary: "launch the aggregator when Kafka has unread ticks (Deno.cron or --once)",
    load: async () => (await import("./sensor/sensor_main.ts")).main,
  },
  offsets: {
    summary: "inspect or reset the offsets, watermarks and lease stored in Deno KV",
    load: async () => (await import("./pipeline/offsets_main.ts")).main,
  },
  status: {
    summary: "one screen (or --json) with the state of every part of the pipeline",
    load: async () => (await import("./pipeline/status_main.ts")).main,
  },
  start: {
    summary: "run ingest + sensor (+ aggregator on demand) as one supervised process tree",
    load: async () => (await import("./pipeline/start_main.ts")).main,
  },
  dashboard: {
    summary: "the live web dashboard: candles, partitions and processes (start/demo run it)",
    load: async () => (await import("./pipeline/web/dashboard_main.ts")).main,
  },
  demo: {
    summary: "set up everything and run the whole pipeline against the simulator, live",
    load: async () => (await import("./pipeline/demo_main.ts")).main,
  },
  launch: {
    summary: "run <command> with the hosts and paths its configuration names (what deno task does)",
    load: async () => (await import("./pipeline/launch_main.ts")).main,
  },
  compile: {
    summary: "build dist/ executables (sensor, aggregator) with their permissions baked in",
    load: async () => (await import("./pipeline/compile_main.ts")).main,
  },
  migrate: {
    summary: "apply the SQL migrations in sql/",
    load: async () => (await import("./sql/migrate_main.ts")).main,
  },
};

const USAGE = () =>
  `tickpipe: live 5-minute price windows from a market-data WebSocket into PostgreSQL.

Usage: deno task <command> [flags]    (or: deno run -P=launch main.ts launch <command> [flags])

Commands:
${Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`).join("\n")}

Run "<command> --help" for its flags.`;

/** Runs the CLI with `args`; returns the process exit code. */
export async function run(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(USAGE());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`Unknown command "${name}": expected one of ${Object.keys(COMMANDS).join(", ")}`);
    return 2;
  }
  setCommandName(name);
  try {
    if (!rest.includes("--help") && !rest.includes("-h")) {
      // Every configured address and path must be allowed: fail fast, naming it.
      checkAccess(commandAccess(name, rest, { env: readEnv }));
    }
    const main = await command.load();
    return await main(rest);
  } catch (e) {
    let needs;
    try {
      needs = commandAccess(name, rest, { env: readEnv });
    } catch { /* reported as what it is below */ }
    const denied = accessDeniedOf(e, { needs });
    if (denied !== null) {
      console.error(`tickpipe ${name}: ${redact(denied.message)}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      console.error(`tickpipe ${name}: ${redact(e.message)}`);
      return 2;
    }
    const err = e as Error;
    console.error(`tickpipe ${name}: ${redact(err?.message ?? String(e))}`);
    if (readEnv("LOG_LEVEL") === "debug" && err?.stack) console.error(redact(err.stack));
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await run(Deno.args));
}
