// `deno task demo --duration 60` on the real services: sets itself up, runs the whole pipeline
// against the simulator and exits 0 with a summary, leaving fresh rows in price_windows, the
// simulator's port free and the aggregator's lease released. Uses the default topic and KV.
import assert from "node:assert/strict";
import { openKv } from "../common/kv.ts";
import { readLease } from "../aggregate/mod.ts";
import { DEMO_SYMBOLS } from "../pipeline/demo_main.ts";
import { config, runCli, testPool } from "./_helpers/env.ts";

Deno.test({
  name: "e2e demo: --duration 60 exits 0 with a summary and writes windows",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const started = new Date();
    const r = await runCli("demo", ["demo", "--duration", "60"], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
    assert.match(r.stdout, /^tickpipe demo: simulator ws:\/\/127\.0\.0\.1:8765/m, "piped header");
    assert.match(
      r.stdout,
      /^t\+\d+s \| ticks \d+ \(\d+\/s\) \| dlq \d+ \| lag \d+/m,
      "progress lines",
    );
    assert.ok(!r.stdout.includes("\x1b["), "no escape sequences when piped");
    const summary = /summary: .* (\d+) windows of .* exit codes: simulate 0, ingest 0, sensor 0/
      .exec(r.stdout);
    assert.ok(summary, r.stdout.slice(-2000));
    assert.ok(Number(summary[1]) > 0);

    const pool = testPool();
    try {
      const { rows } = await pool.query(
        `SELECT symbol, sum(tick_count)::int AS ticks FROM price_windows
          WHERE symbol = ANY($1) AND updated_at >= $2 GROUP BY symbol`,
        [DEMO_SYMBOLS.split(","), started],
      );
      assert.equal(rows.length, DEMO_SYMBOLS.split(",").length, JSON.stringify(rows));
      for (const row of rows) assert.ok(row.ticks > 0, JSON.stringify(row));
    } finally {
      await pool.end();
    }
    // Everything stopped: the simulator's port is free, the aggregator released its lease.
    const l = Deno.listen({ hostname: "127.0.0.1", port: 8765 });
    l.close();
    const kv = await openKv(config.kvPath);
    try {
      assert.equal(await readLease(kv, config.topic), null);
    } finally {
      kv.close();
    }
  },
});
