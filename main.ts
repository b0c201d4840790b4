/**
 * tickpipe: the one CLI. `deno task <command>` runs `main.ts <command>` under
 * that command's own permission set (see deno.json); each command lives in
 * its part's entry module and is imported only when chosen.
 * @module
 */

import { ConfigError, readEnv } from "./common/config.ts";
import { redact } from "./common/log.ts";

/** A command's entry point: takes its arguments, returns an exit code. */
export type CommandMain = (args: string[]) => Promise<number>;

/** Commands by name: a one-line summary and a lazy loader of the entry module. */
export const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandMain> }> = {
  services: {
    summary: "start/stop/inspect the local Kafka broker and PostgreSQL server",
    load: async () => (await import("./services/services_main.ts")).main,
  },
  migrate: {
    summary: "apply the SQL migrations in sql/",
    load: async () => (await import("./sql/migrate_main.ts")).main,
  },
};

const USAGE = () =>
  `tickpipe: live 5-minute price windows from a market-data WebSocket into PostgreSQL.

Usage: deno task <command> [flags]    (or: deno run -P=<command> main.ts <command> [flags])

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
  try {
    const main = await command.load();
    return await main(rest);
  } catch (e) {
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
