// The real PostgreSQL server: migrations apply idempotently, concurrently and over a database
// with rows, and create the contract columns of price_windows.
import assert from "node:assert/strict";
import { writeBatch } from "../aggregate/sink.ts";
import { createPool, type Pool } from "../common/pg.ts";
import { loadMigrations, migrate } from "../sql/migrate.ts";
import { config, testPool } from "./_helpers/env.ts";

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
        topic: "text",
        window_length: "interval",
        volume: "double precision",
        pv_sum: "double precision",
        vwap: "double precision",
      };
      for (const [c, t] of Object.entries(want)) assert.equal(types[c], t, `column ${c}`);
      const pk = await pool.query<{ attname: string }>(
        `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = 'price_windows'::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`,
      );
      assert.deepEqual(pk.rows.map((r) => r.attname), [
        "topic",
        "symbol",
        "window_length",
        "window_start",
      ]);
      // sql/006: half of each page kept free, so updates of open windows are HOT updates.
      const opts = await pool.query<{ reloptions: string[] | null }>(
        "SELECT reloptions FROM pg_class WHERE oid = 'price_windows'::regclass",
      );
      assert.deepEqual(opts.rows[0].reloptions, ["fillfactor=50"]);
    } finally {
      await pool.end();
    }
  },
});

/** Runs `fn` against a fresh scratch database (dropped afterwards). */
async function withScratchDatabase(fn: (url: string) => Promise<void>): Promise<void> {
  const name = `tickpipe_scratch_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const adminUrl = new URL(config.databaseUrl);
  adminUrl.pathname = "/postgres";
  const admin = createPool(adminUrl.href, { max: 1 });
  try {
    await admin.query(`CREATE DATABASE ${name}`);
    const url = new URL(config.databaseUrl);
    url.pathname = `/${name}`;
    await fn(url.href);
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await admin.end();
  }
}

Deno.test({
  name: "postgres: two processes migrating a fresh database at once apply each migration once",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withScratchDatabase(async (url) => {
      const a = createPool(url);
      const b = createPool(url);
      try {
        const all = (await loadMigrations()).map((m) => m.version);
        const [ra, rb] = await Promise.all([migrate(a), migrate(b)]);
        assert.deepEqual([...ra, ...rb].sort(), all);
        const { rows } = await a.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM schema_migrations",
        );
        assert.equal(rows[0].n, all.length);
      } finally {
        await a.end();
        await b.end();
      }
    });
  },
});

Deno.test({
  name: "postgres: migrating a database at 003 keeps its rows (topic 'ticks', their window length)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withScratchDatabase(async (url) => {
      const pool: Pool = createPool(url);
      try {
        const all = await loadMigrations();
        const v1 = all.filter((m) => m.version < "004");
        assert.deepEqual(v1.map((m) => m.version.slice(0, 3)), ["001", "002", "003"]);
        await migrate(pool, { migrations: v1 });
        // v1 rows: 5-minute windows (the default), a 1-minute and a 1-day one (v1's --window).
        const v1Rows: [string, string, string, number, number][] = [
          ["AAPL", "2026-01-05T14:00:00Z", "2026-01-05T14:05:00Z", 100.5, 7],
          ["AAPL", "2026-01-05T14:05:00Z", "2026-01-05T14:10:00Z", 101.25, 9],
          ["MSFT", "2026-01-05T14:01:00Z", "2026-01-05T14:02:00Z", 300, 4],
          ["BTC-USD", "2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z", 90_000.5, 11],
        ];
        for (const [symbol, ws, we, price, offset] of v1Rows) {
          await pool.query(
            `INSERT INTO price_windows (symbol, window_start, window_end, avg_price, open_price,
               high_price, low_price, close_price, tick_count, is_final, kafka_partition,
               last_offset, price_sum, first_tick_at, last_tick_at)
             VALUES ($1, $2, $3, $4::float8, $4, $4, $4, $4, 2, true, 0, $5, $4::float8 * 2, $2, $2)`,
            [symbol, ws, we, price, offset],
          );
        }
        await pool.query(
          `INSERT INTO late_ticks (topic, symbol, event_time, price, kafka_partition, kafka_offset,
             watermark) VALUES ('ticks', 'AAPL', '2026-01-05T13:00:00Z', 99, 0, 3,
             '2026-01-05T13:50:00Z')`,
        );
        const applied = await migrate(pool);
        assert.deepEqual(applied, all.filter((m) => m.version >= "004").map((m) => m.version));
        const { rows } = await pool.query<
          {
            topic: string;
            symbol: string;
            len_s: number;
            len: string;
            start: Date;
            close_price: number;
            last_offset: string;
            volume: number;
            pv_sum: number;
            vwap: number | null;
            is_final: boolean;
          }
        >(
          `SELECT topic, symbol, extract(epoch FROM window_length)::float8 AS len_s,
                  window_length::text AS len, window_start AS start, close_price, last_offset,
                  volume, pv_sum, vwap, is_final
             FROM price_windows ORDER BY symbol, window_start`,
        );
        assert.deepEqual(
          rows.map((r) => [r.topic, r.symbol, r.len_s, r.len, r.start.toISOString()]),
          [
            ["ticks", "AAPL", 300, "00:05:00", "2026-01-05T14:00:00.000Z"],
            ["ticks", "AAPL", 300, "00:05:00", "2026-01-05T14:05:00.000Z"],
            ["ticks", "BTC-USD", 86_400, "24:00:00", "2026-01-05T00:00:00.000Z"],
            ["ticks", "MSFT", 60, "00:01:00", "2026-01-05T14:01:00.000Z"],
          ],
        );
        for (const r of rows) {
          assert.equal(r.volume, 0);
          assert.equal(r.pv_sum, 0);
          assert.equal(r.vwap, null);
        }
        assert.deepEqual(rows.map((r) => r.close_price), [100.5, 101.25, 90_000.5, 300]);
        const late = await pool.query("SELECT late_for FROM late_ticks");
        assert.deepEqual(late.rows, [{ late_for: null }]);
        // The v2 sink addresses the migrated rows by their new key: the final ones stay as they
        // are, a non-final one is updated in place (no second row).
        await pool.query("UPDATE price_windows SET is_final = false WHERE symbol = 'BTC-USD'");
        const day = 86_400_000;
        const base = {
          count: 3,
          sum: 3,
          avg: 1,
          open: 1,
          high: 1,
          low: 1,
          close: 1,
          partition: 0,
          lastOffset: 100,
          isFinal: false,
          volume: 5,
          pvSum: 5,
          vwap: 1,
        };
        const btcStart = Date.parse("2026-01-05T00:00:00Z");
        const aaplStart = Date.parse("2026-01-05T14:00:00Z");
        const res = await writeBatch(pool, {
          topic: "ticks",
          windows: [
            {
              ...base,
              symbol: "BTC-USD",
              windowMs: day,
              windowStart: btcStart,
              windowEnd: btcStart + day,
              firstEventTime: btcStart,
              lastEventTime: btcStart + 1,
            },
            {
              ...base,
              symbol: "AAPL",
              windowMs: 300_000,
              windowStart: aaplStart,
              windowEnd: aaplStart + 300_000,
              firstEventTime: aaplStart,
              lastEventTime: aaplStart + 1,
            },
          ],
        });
        assert.equal(res.windowsWritten, 1, "the final AAPL row is immutable");
        const after = await pool.query<{ symbol: string; n: number; close: number }>(
          `SELECT symbol, count(*)::int AS n, max(close_price) AS close FROM price_windows
            GROUP BY symbol ORDER BY symbol`,
        );
        assert.deepEqual(after.rows, [
          { symbol: "AAPL", n: 2, close: 101.25 },
          { symbol: "BTC-USD", n: 1, close: 1 },
          { symbol: "MSFT", n: 1, close: 300 },
        ]);
        const candles = await pool.query<{ close_price: number; filled: boolean }>(
          `SELECT close_price, filled FROM candles('ticks', 'AAPL', '5 minutes',
             '2026-01-05T14:00:00Z', '2026-01-05T14:15:00Z')`,
        );
        assert.deepEqual(candles.rows, [
          { close_price: 100.5, filled: false },
          { close_price: 101.25, filled: false },
          { close_price: 101.25, filled: true },
        ]);
      } finally {
        await pool.end();
      }
    });
  },
});
