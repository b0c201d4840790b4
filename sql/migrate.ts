/**
 * Ordered SQL migrations (`sql/NNN_name.sql`), applied once each and
 * recorded in `schema_migrations`, under an advisory lock so concurrent
 * commands do not race.
 * @module
 */

import type { Pool, PoolClient } from "../common/pg.ts";
import type { Logger } from "../common/log.ts";
import { ConfigError } from "../common/config.ts";

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

/**
 * Raised when migrations are pending and the configured user may not change the schema (a user
 * with data rights only): a configuration error (exit 2) naming the user and the fix.
 */
export class MigrationPrivilegeError extends ConfigError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MigrationPrivilegeError";
  }
}

/** SQLSTATE 42501 insufficient_privilege. */
function isPrivilegeError(e: unknown): boolean {
  return (e as { code?: unknown })?.code === "42501";
}

async function privilegeError(
  client: PoolClient,
  pending: string[],
  e: unknown,
): Promise<MigrationPrivilegeError> {
  const who = await client.query<{ u: string }>("SELECT current_user AS u")
    .then((r) => r.rows[0].u, () => "?");
  return new MigrationPrivilegeError(
    `User "${who}" may not change the database's schema (${(e as Error).message}, SQLSTATE ` +
      `42501), and ${pending.length === 1 ? "migration" : "migrations"} ${pending.join(", ")} ` +
      `${pending.length === 1 ? "is" : "are"} pending: apply ${
        pending.length === 1 ? "it" : "them"
      } as the database's owner ("deno task migrate" with the owner's DATABASE_URL), then start ` +
      `again`,
    { cause: e },
  );
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

/**
 * Applies pending migrations to `pool`; returns the versions applied now. Nothing pending
 * changes nothing (a user with data rights only may run every command on a migrated database);
 * pending migrations the user may not apply are a MigrationPrivilegeError.
 */
export async function migrate(
  pool: Pool,
  options: { migrations?: Migration[]; logger?: Logger } = {},
): Promise<string[]> {
  const migrations = options.migrations ?? await loadMigrations();
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query("SELECT pg_advisory_lock($1)", [LOCK_KEY]);
    const exists = await client.query<{ t: string | null }>(
      "SELECT to_regclass('schema_migrations')::text AS t",
    );
    const done = new Set<string>();
    if (exists.rows[0].t !== null) {
      const { rows } = await client.query<{ version: string }>(
        "SELECT version FROM schema_migrations",
      );
      for (const r of rows) done.add(r.version);
    }
    const pending = migrations.filter((m) => !done.has(m.version)).map((m) => m.version);
    if (pending.length === 0) return applied;
    try {
      await client.query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (
           version text PRIMARY KEY,
           applied_at timestamptz NOT NULL DEFAULT now())`,
      );
    } catch (e) {
      if (isPrivilegeError(e)) throw await privilegeError(client, pending, e);
      throw e;
    }
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      try {
        await client.query("BEGIN");
        await client.query(m.sql);
        await client.query("INSERT INTO schema_migrations (version) VALUES ($1)", [m.version]);
        await client.query("COMMIT");
      } catch (e) {
        await client.query("ROLLBACK").catch(() => {});
        if (isPrivilegeError(e)) {
          throw await privilegeError(client, pending.slice(pending.indexOf(m.version)), e);
        }
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
