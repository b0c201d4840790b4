// Chaos 7: the permission sets hold when the commands actually run (tests/permissions_test.ts and
// tests/sensor_permissions_test.ts probe the sets; here the real aggregator and ingest are pointed
// at paths and hosts outside their sets and must fail with exit 2 and one clear message naming
// the address or path, its setting and the fix, touching nothing; tests/launcher_test.ts shows
// the same commands run through their launcher). Only loopback addresses are used; denied
// connections never leave the process.
import assert from "node:assert/strict";
import { DB_URL, ensurePostgres, PG_PORT, spawnCli, summary, testOpts } from "./_harness.ts";

async function run(set: string, args: string[], o: { net?: string; env?: Record<string, string> }) {
  const p = await spawnCli(set, args, { name: `c7-${set}`, net: o.net ?? "", env: o.env });
  const code = await p.status;
  return { code, text: p.lines.join("\n") };
}

Deno.test(
  "chaos 7: aggregator and ingest cannot leave their permission sets at run time",
  testOpts,
  async () => {
    const t0 = Date.now();
    await ensurePostgres();
    const results: string[] = [];
    // 1. KV path outside .data
    const kvFile = `/tmp/tickpipe-chaos-${crypto.randomUUID().slice(0, 8)}.kv`;
    const kv = await run("aggregate", ["aggregate", "--kv", kvFile, "--idle-timeout", "1s"], {});
    assert.equal(kv.code, 2, kv.text);
    // tickpipe's message names the path, the setting and the fix.
    assert.match(
      kv.text,
      new RegExp(
        `Deno KV folder /tmp \\(--kv ${
          kvFile.replaceAll(".", "\\.")
        }\\) is not in this command's allowed read paths: run it through "deno task aggregate"`,
      ),
      kv.text,
    );
    await assert.rejects(Deno.stat(kvFile), "no file was created");
    results.push(`kv_outside=exit${kv.code}`);
    // 2. Kafka host outside the set (PostgreSQL allowed so the run gets as far as Kafka)
    const brk = await run("aggregate", [
      "aggregate",
      "--brokers",
      "127.0.0.2:9092",
      "--kv",
      ".data/chaos/c7-brokers.kv",
      "--idle-timeout",
      "1s",
    ], { net: `127.0.0.1:${PG_PORT}`, env: { DATABASE_URL: DB_URL } });
    assert.equal(brk.code, 2, brk.text);
    assert.match(
      brk.text,
      /Kafka at 127\.0\.0\.2:9092 \(--brokers 127\.0\.0\.2:9092\) is not in this command's allowed hosts/,
      brk.text,
    );
    results.push(`broker_outside=exit${brk.code}`);
    // 3. PostgreSQL host outside the set
    const db = await run("aggregate", [
      "aggregate",
      "--kv",
      ".data/chaos/c7-db.kv",
      "--database-url",
      "postgres://postgres:postgres@127.0.0.1:1/tickpipe",
    ], {});
    assert.equal(db.code, 2, db.text);
    assert.match(
      db.text,
      /PostgreSQL at 127\.0\.0\.1:1 \(--database-url postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/tickpipe\) is not in this command's allowed hosts/,
      db.text,
    );
    results.push(`db_outside=exit${db.code}`);
    // 4. ingest pointed at PostgreSQL's port as if it were Kafka: denied, not connected
    const ing = await run("ingest", [
      "ingest",
      "--brokers",
      "127.0.0.1:5432",
      "--source",
      "ws://127.0.0.1:8765/?version=2",
      "--spool-dir",
      ".data/spool/chaos-c7",
    ], {});
    assert.equal(ing.code, 2, ing.text);
    assert.match(
      ing.text,
      /Kafka at 127\.0\.0\.1:5432 \(--brokers 127\.0\.0\.1:5432\) is not in this command's allowed hosts/,
      ing.text,
    );
    results.push(`ingest_to_pg=exit${ing.code}`);
    // 5. ingest may not read DATABASE_URL's server either through a source URL
    const ws = await run("ingest", [
      "ingest",
      "--source",
      "ws://127.0.0.1:5432/",
      "--brokers",
      "127.0.0.1:9092",
      "--duration",
      "3s",
      "--spool-dir",
      ".data/spool/chaos-c7",
      "--topic",
      "chaos-c7-unused",
    ], { net: "127.0.0.1:9092" }); // its Kafka allowed (never contacted): the source is denied
    assert.equal(ws.code, 2, ws.text);
    assert.match(
      ws.text,
      /WebSocket source at 127\.0\.0\.1:5432 \(--source ws:\/\/127\.0\.0\.1:5432\/\) is not in this command's allowed hosts/,
      ws.text,
    );
    results.push(`ingest_ws_to_pg=exit${ws.code}`);
    await Deno.remove(".data/spool/chaos-c7", { recursive: true }).catch(() => {});
    for (const f of ["c7-brokers.kv", "c7-db.kv"]) {
      for (const s of ["", "-wal", "-shm"]) {
        await Deno.remove(`.data/chaos/${f}${s}`).catch(
          () => {},
        );
      }
    }
    await summary(
      `7 permissions: all denied with a clear message: ${results.join(" ")} ` +
        `in ${((Date.now() - t0) / 1000).toFixed(0)}s`,
    );
  },
);
