/**
 * `tickpipe migrate`: applies the SQL migrations in `sql/`.
 * @module
 */

import {
  BASE_COMMAND,
  CONNECTION_FLAGS,
  CONNECTION_TITLE,
  HELP_FLAG,
  parseCommandLine,
} from "../common/cli.ts";
import { sectionsUsage } from "../common/options.ts";
import { loadBaseConfig } from "../common/config.ts";
import { createLogger } from "../common/log.ts";

const USAGE = `Usage: tickpipe migrate [flags]

Applies pending SQL migrations from sql/ (recorded in schema_migrations).

${
  sectionsUsage([
    { title: "Flags:", table: HELP_FLAG },
    { title: CONNECTION_TITLE, table: CONNECTION_FLAGS },
  ])
}`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { options: values } = parseCommandLine(args, BASE_COMMAND);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const config = loadBaseConfig(values);
  const log = createLogger("migrate");
  const { checkDatabase, createPool } = await import("../common/pg.ts");
  const { migrate } = await import("./migrate.ts");
  const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-migrate" });
  try {
    await checkDatabase(pool, config.databaseUrl);
    const applied = await migrate(pool, { logger: log });
    log.info(applied.length ? "schema up to date" : "schema already up to date", {
      applied: applied.length,
    });
    return 0;
  } finally {
    await pool.end();
  }
}
