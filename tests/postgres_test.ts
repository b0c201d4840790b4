// The real PostgreSQL server: migrations apply idempotently and create the
// contract columns of price_windows.
import assert from "node:assert/strict";
import { loadMigrations, migrate } from "../sql/migrate.ts";
import { testPool } from "./_helpers/env.ts";

Deno.test({
  name: "postgres: migrations are ordered, recorded, and idempotent",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const pool = testPool();
    try {
      const ms = await loadMigrations();
      assert.ok(ms.length >= 2);
      assert.deepEqual(ms.map((m) => m.version), [...ms.map((m) => m.version)].sort());
      await migrate(pool);
      assert.deepEqual(await migrate(pool), [], "second run applies nothing");
      const { rows } = await pool.query<{ version: string }>(
        "SELECT version FROM schema_migrations ORDER BY 1",
      );
      for (const m of ms) assert.ok(rows.some((r) => r.version === m.version), m.version);
      // Concurrent runs serialize on the advisory lock and both succeed.
      const r = await Promise.all([migrate(pool), migrate(pool)]);
      assert.deepEqual(r, [[], []]);
    } finally {
      await pool.end();
    }
  },
});

Deno.test({
  name: "postgres: price_windows has the contract columns and primary key",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const pool = testPool();
    try {
      await migrate(pool);
      const { rows } = await pool.query<{ column_name: string; data_type: string }>(
        `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'price_windows'`,
      );
      const types = Object.fromEntries(rows.map((r) => [r.column_name, r.data_type]));
      const want: Record<string, string> = {
        symbol: "text",
        window_start: "timestamp with time zone",
        window_end: "timestamp with time zone",
        avg_price: "double precision",
        open_price: "double precision",
        high_price: "double precision",
        low_price: "double precision",
        close_price: "double precision",
        tick_count: "bigint",
        is_final: "boolean",
        kafka_partition: "integer",
        last_offset: "bigint",
        updated_at: "timestamp with time zone",
      };
      for (const [c, t] of Object.entries(want)) assert.equal(types[c], t, `column ${c}`);
      const pk = await pool.query<{ attname: string }>(
        `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = 'price_windows'::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`,
      );
      assert.deepEqual(pk.rows.map((r) => r.attname), ["symbol", "window_start"]);
    } finally {
      await pool.end();
    }
  },
});
