/**
 * Ordered SQL migrations (`sql/NNN_name.sql`), applied once each and
 * recorded in `schema_migrations`, under an advisory lock so concurrent
 * commands do not race.
 * @module
 */

import type { Pool } from "../common/pg.ts";
import type { Logger } from "../common/log.ts";

/** A migration file. */
export interface Migration {
  /** Version, the file name without `.sql` (e.g. `001_price_windows`). */
  version: string;
  /** SQL text. */
  sql: string;
}

/** Raised when a migration fails; names the migration. */
export class MigrationError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MigrationError";
  }
}

const SQL_DIR = new URL("./", import.meta.url);
const LOCK_KEY = 7_412_001; // arbitrary, stable advisory lock id for migrations

/** Reads the migrations shipped in `sql/`, sorted by version. */
export async function loadMigrations(dir: URL = SQL_DIR): Promise<Migration[]> {
  const out: Migration[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && /^\d{3}_[a-z0-9_]+\.sql$/.test(entry.name)) {
      out.push({
        version: entry.name.slice(0, -4),
        sql: await Deno.readTextFile(new URL(entry.name, dir)),
      });
    }
  }
  return out.sort((a, b) => a.version.localeCompare(b.version));
}

/** Applies pending migrations to `pool`; returns the versions applied now. */
export async function migrate(
  pool: Pool,
  options: { migrations?: Migration[]; logger?: Logger } = {},
): Promise<string[]> {
  const migrations = options.migrations ?? await loadMigrations();
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query("SELECT pg_advisory_lock($1)", [LOCK_KEY]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version text PRIMARY KEY,
         applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const { rows } = await client.query<{ version: string }>(
      "SELECT version FROM schema_migrations",
    );
    const done = new Set(rows.map((r) => r.version));
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      try {
        await client.query("BEGIN");
        await client.query(m.sql);
        await client.query("INSERT INTO schema_migrations (version) VALUES ($1)", [m.version]);
        await client.query("COMMIT");
      } catch (e) {
        await client.query("ROLLBACK").catch(() => {});
        throw new MigrationError(`Migration ${m.version} failed: ${(e as Error).message}`, {
          cause: e,
        });
      }
      applied.push(m.version);
      options.logger?.info("applied migration", { version: m.version });
    }
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [LOCK_KEY]).catch(() => {});
    client.release();
  }
  return applied;
}
