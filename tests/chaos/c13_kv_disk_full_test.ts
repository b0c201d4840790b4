// Chaos 13: the disk under Deno KV fills up (the KV file is on a small tmpfs). An aggregator is
// kill -9'd, leaving its lease to expire; then the disk is full. No process that opens the KV
// afterwards may die of it: Deno's KV expiry collector panics its process when its delete fails
// ("KV collect expired failed: database or disk is full"), so the lease is stored without a KV
// expiry. `status` works; the sensor keeps running, and the aggregators it launches exit 1 with
// a message naming the KV and the disk's error; once space is back the next launch catches up
// and exits 0 on idle, and the rows and late ticks equal the oracle. Needs to mount a tmpfs
// (root); skipped with the reason otherwise.
import assert from "node:assert/strict";
import {
  assertRowsEqual,
  generateStream,
  oracle,
  produceStream,
  readLate,
  readRows,
} from "../_helpers/aggregate_stream.ts";
import { openKv } from "../../common/kv.ts";
import { readCheckpoint, readLease } from "../../aggregate/mod.ts";
import {
  BROKER,
  CHAOS_DIR,
  chaosKafka,
  chaosPool,
  createTopics,
  DB_URL,
  deleteTopics,
  ensureDenoShim,
  ensureKafka,
  ensurePostgres,
  kill9,
  pick,
  removeKv,
  SHIM_DIR,
  sleep,
  spawnCli,
  summary,
  testOpts,
  uniq,
  until,
} from "./_harness.ts";
import { mountTmpfs, tmpfsUnavailable, umount } from "./_tmpfs.ts";

const WINDOW = 60_000;
const DELAY = 180_000;
const PARTS = 3;

const reason = await tmpfsUnavailable();
if (reason) console.log(`skipping chaos 13 (disk full under Deno KV): ${reason}`);

Deno.test({
  name:
    "chaos 13: the disk under Deno KV fills up after an aggregator was killed; no process dies, the next one waits and catches up",
  ...testOpts,
  ignore: reason !== null,
  async fn() {
    const per = pick(2000, 20_000);
    const t0 = Date.now();
    await ensureKafka();
    await ensurePostgres();
    const kafka = chaosKafka();
    const topic = uniq("chaos-kvfull");
    const prefix = `C13${crypto.randomUUID().slice(0, 6)}_`;
    const dir = `${CHAOS_DIR}/kvfull-${topic}`;
    const kvPath = `${dir}/tickpipe.kv`;
    await createTopics(kafka, [topic], PARTS);
    await mountTmpfs(dir, "8m");
    const streams = generateStream({
      seed: 1313,
      prefix,
      perPartition: per,
      partitions: PARTS,
      windowMs: WINDOW,
      watermarkDelayMs: DELAY,
    });
    const half = Math.floor(per / 2);
    await produceStream(kafka, topic, streams, { from: 0, to: half });
    // What the killed run and the sensor's launches share: where, and the engine's settings.
    const common = [
      ...["--brokers", BROKER, "--topic", topic, "--kv", kvPath],
      ...["--trigger", "500ms", "--windows", "1m,5m", "--watermark", "3m"],
    ];
    const first = await spawnCli("aggregate", [
      "aggregate",
      ...common,
      ...["--idle-timeout", "60s", "--lease-ttl", "2s", "--group", uniq("chaos-kvfull-group")],
    ], { name: `c13-first-${topic}`, env: { DATABASE_URL: DB_URL, LOG_LEVEL: "info" } });
    let sensor: Awaited<ReturnType<typeof spawnCli>> | undefined;
    const filler = `${dir}/filler`;
    try {
      await until(
        () => first.lines.some((l) => l.includes('"batchId"')),
        "a first checkpoint",
        60_000,
      );
      await kill9(first.pid);
      await first.status;
      // Fill the disk to the last byte.
      const f = await Deno.open(filler, { write: true, create: true });
      const chunk = new Uint8Array(64 * 1024);
      let filled = "";
      try {
        for (;;) await f.write(chunk);
      } catch (e) {
        filled = (e as Error).message;
      } finally {
        f.close();
      }
      assert.match(filled, /No space left on device/);
      await sleep(2500); // the killed run's lease has expired
      await produceStream(kafka, topic, streams, { from: half, to: per });

      // A process that only opens the KV to read it: status.
      const status = await spawnCli("status", [
        "status",
        "--brokers",
        BROKER,
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--json",
        "--no-rate",
      ], { name: `c13-status-${topic}`, env: { DATABASE_URL: DB_URL } }); // never in argv
      const statusCode = await status.status;
      const panicked = (lines: string[]) =>
        lines.some((l) => /Deno has panicked|KV collect expired/.test(l));
      assert.ok(!panicked(status.lines), `status panicked:\n${status.lines.slice(-15).join("\n")}`);
      assert.equal(statusCode, 0, status.lines.slice(-15).join("\n"));

      // The sensor (as `deno task start` runs it) on the full disk: it must keep running; the
      // aggregators it launches exit 1 naming the KV and its error until there is space again.
      await ensureDenoShim();
      sensor = await spawnCli("sensor", [
        "sensor",
        ...common,
        ...["--every", "1s", "--idle-timeout", "4s", "--backoff-base", "1s", "--backoff-max", "2s"],
      ], {
        name: `c13-sensor-${topic}`,
        net: BROKER,
        env: { DATABASE_URL: DB_URL, CHAOS_AGG_EXTRA: "--lease-ttl 2s", LOG_LEVEL: "info" },
        path: SHIM_DIR,
      });
      const s = sensor;
      await until(
        () => s.lines.some((l) => /database or disk is full/.test(l)) || s.exited(),
        "the sensor or its aggregator to meet the full disk",
        30_000,
      );
      await sleep(pick(4000, 20_000));
      assert.ok(!s.exited(), `the sensor is still running:\n${s.lines.slice(-15).join("\n")}`);
      assert.ok(!panicked(s.lines), s.lines.slice(-15).join("\n"));
      const fullLines = s.lines.filter((l) => /database or disk is full/.test(l));
      const named = fullLines.filter((l) => l.includes(`Deno KV at ${kvPath} refused a write`));
      assert.ok(
        named.length > 0,
        `the aggregator's message names the KV:\n${fullLines.join("\n")}`,
      );

      // Space comes back: the next launch catches up and exits 0 on idle.
      await Deno.remove(filler);
      const back = Date.now();
      const done = async () => {
        const kv = await openKv(kvPath);
        try {
          const cp = await readCheckpoint(kv, topic);
          const offs = cp?.pointer.offsets ?? {};
          const caughtUp = Array.from({ length: PARTS }, (_, p) => offs[p] ?? 0).every((o) =>
            o >= per
          );
          return caughtUp && (await readLease(kv, topic)) === null;
        } finally {
          kv.close();
        }
      };
      await until(done, "an aggregator to catch up and exit idle", 120_000, 250);
      const catchUpMs = Date.now() - back;
      s.kill("SIGTERM");
      const code = await s.status;
      assert.ok(!panicked(s.lines), s.lines.slice(-15).join("\n"));
      assert.equal(code, 0, s.lines.slice(-30).join("\n"));
      const pool = chaosPool();
      try {
        const expected = oracle(streams, {
          windows: [WINDOW, 5 * WINDOW],
          watermarkDelayMs: DELAY,
        });
        const stored = await readRows(pool, prefix);
        assertRowsEqual(stored, expected.rows, WINDOW);
        const late = await readLate(pool, topic);
        assert.deepEqual([...late].sort(), [...expected.late].sort());
        await summary(
          `13 kv-disk-full: ticks=${per * PARTS} kill9=1 status_exit=${statusCode} ` +
            `full_disk_lines=${fullLines.length} named_kv=${named.length} panics=0 ` +
            `sensor_exit=${code} ` +
            `catch_up_ms=${catchUpMs} rows=${stored.size} (= oracle) late=${late.size} (= oracle) ` +
            `in ${((Date.now() - t0) / 1000).toFixed(0)}s`,
        );
        await pool.query("DELETE FROM price_windows WHERE starts_with(symbol, $1)", [prefix]);
        await pool.query("DELETE FROM late_ticks WHERE topic = $1", [topic]);
      } finally {
        await pool.end();
      }
    } finally {
      for (const p of [first, sensor]) {
        if (p && !p.exited()) {
          p.kill("SIGKILL");
          await p.status;
        }
      }
      await Deno.remove(filler).catch(() => {});
      await removeKv(kvPath, topic);
      await umount(dir);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await deleteTopics(chaosKafka(), [topic]);
    }
  },
});
