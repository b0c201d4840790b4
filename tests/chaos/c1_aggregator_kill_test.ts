// Chaos 1: the aggregator is kill -9'd at random moments during a replay and restarted each
// time by the real sensor (cron mode with --every 1s): price_windows equals the oracle, no
// window's tick_count ever decreases (polled), late_ticks has no duplicates.
import assert from "node:assert/strict";
import { openKv } from "../../common/kv.ts";
import { readCheckpoint, readLease } from "../../aggregate/mod.ts";
import {
  assertRowsEqual,
  generateStream,
  oracle,
  produceStream,
  readLate,
  readRows,
} from "../_helpers/aggregate_stream.ts";
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
import { mulberry32 as rng } from "../../common/prng.ts";

const WINDOWS = [60_000, 300_000]; // the sensor launches the aggregator with --windows 1m,5m
const WINDOW = WINDOWS[0];
const DELAY = 900_000; // and the default 15 min watermark delay
const PARTS = 3;

async function parentOf(pid: number): Promise<number | undefined> {
  const out = await new Deno.Command("ps", { args: ["-o", "ppid=", "-p", String(pid)] }).output();
  const n = Number(new TextDecoder().decode(out.stdout).trim());
  return out.code === 0 && n > 0 ? n : undefined;
}

Deno.test(
  "chaos 1: aggregator kill -9 at random moments, restarted by the sensor",
  testOpts,
  async () => {
    const total = pick(20_000, 200_000);
    const kills = pick(5, 20);
    const t0 = Date.now();
    await ensureKafka();
    await ensurePostgres();
    await ensureDenoShim();
    const kafka = chaosKafka();
    const pool = chaosPool();
    const topic = uniq("chaos-agg");
    const prefix = `C1${crypto.randomUUID().slice(0, 6)}_`;
    const kvPath = `${CHAOS_DIR}/${topic}.kv`;
    const kv = await openKv(kvPath);
    await createTopics(kafka, [topic], PARTS);
    const per = Math.ceil(total / PARTS);
    const streams = generateStream({
      seed: 1701,
      prefix,
      perPartition: per,
      partitions: PARTS,
      windowMs: WINDOW,
      watermarkDelayMs: DELAY,
    });
    const seen = new Map<string, number>();
    const violations: string[] = [];
    let polls = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const rows = await readRows(pool, prefix).catch(() => null);
        if (rows) {
          polls++;
          for (const [k, r] of rows) {
            const prev = seen.get(k);
            if (prev !== undefined && r.count < prev) {
              violations.push(
                `${k}: ${prev} -> ${r.count}`,
              );
            }
            seen.set(k, r.count);
          }
        }
        await sleep(200);
      }
    })();
    const sensor = await spawnCli("sensor", [
      "sensor",
      "--every",
      "1s",
      "--brokers",
      BROKER,
      "--topic",
      topic,
      "--kv",
      kvPath,
      "--trigger",
      "500ms",
      "--idle-timeout",
      "4s",
      "--windows",
      "1m,5m",
      "--backoff-base",
      "1s",
      "--backoff-max",
      "2s",
    ], {
      name: `c1-sensor-${topic}`,
      net: BROKER, // the sensor's own set reaches Kafka only
      env: { DATABASE_URL: DB_URL, CHAOS_AGG_EXTRA: "--lease-ttl 2s", LOG_LEVEL: "info" },
      path: SHIM_DIR,
    });
    const killed: { pid: number; holder: string }[] = [];
    try {
      const rnd = rng(4242);
      const chunks = kills + 1;
      const step = Math.ceil(per / chunks);
      for (let i = 0; i < chunks; i++) {
        await produceStream(kafka, topic, streams, {
          from: i * step,
          to: Math.min(per, (i + 1) * step),
        });
        if (i === kills) break;
        // Wait for a live aggregator launched by the sensor (a new lease holder), let it run a
        // random moment (mid-fetch, mid-fold, mid-PG-transaction or mid-KV-checkpoint), kill -9.
        let target: { pid: number; holder: string } | undefined;
        await until(
          async () => {
            const l = (await readLease(kv, topic))?.lease;
            if (!l || l.expiresAt <= Date.now() || killed.some((k) => k.holder === l.holder)) {
              return false;
            }
            if ((await parentOf(l.pid)) !== sensor.pid) return false; // only the sensor's child
            target = { pid: l.pid, holder: l.holder };
            return true;
          },
          `aggregator #${i + 1} launched by the sensor`,
          90_000,
          100,
        );
        await sleep(300 + Math.floor(rnd() * 2500));
        await kill9(target!.pid);
        killed.push(target!);
      }
      // The sensor restarts the aggregator once more; it catches up and exits 0 when idle.
      await until(
        async () => {
          const cp = await readCheckpoint(kv, topic);
          const offs = cp?.pointer.offsets ?? {};
          const done = Array.from({ length: PARTS }, (_, p) => offs[p] ?? 0).every((o) => o >= per);
          return done && (await readLease(kv, topic)) === null;
        },
        "the last aggregator to catch up and exit idle",
        240_000,
        250,
      );
      sensor.kill("SIGTERM");
      assert.equal(await sensor.status, 0, sensor.lines.slice(-20).join("\n"));
      polling = false;
      await poller;
      const expected = oracle(streams, { windows: WINDOWS, watermarkDelayMs: DELAY });
      const stored = await readRows(pool, prefix);
      assertRowsEqual(stored, expected.rows, WINDOW);
      const late = await readLate(pool, topic);
      // The rows of late_ticks (not a set: one row per record) equal the oracle's late ticks.
      const { rows: lateRows } = await pool.query(
        "SELECT count(*)::int AS n FROM late_ticks WHERE topic = $1",
        [topic],
      );
      assert.equal(lateRows[0].n, expected.late.size, "one late_ticks row per late tick");
      assert.deepEqual([...late].sort(), [...expected.late].sort(), "late ticks = oracle");
      assert.deepEqual(violations, [], "no window's tick_count ever decreased");
      const launches = sensor.lines.filter((l) => /launch/i.test(l) && /aggregat/i.test(l)).length;
      const exits137 = sensor.lines.filter((l) => /exit(ed)?.*137|code=137|137/.test(l)).length;
      assert.equal(killed.length, kills);
      await summary(
        `1 aggregator-kill: ticks=${
          per * PARTS
        } kills=${killed.length} sensor_launch_lines=${launches} ` +
          `exit137_lines=${exits137} rows=${stored.size} (= oracle) late=${late.size} (= oracle, rows=${
            lateRows[0].n
          }) ` +
          `polls=${polls} count_decreases=${violations.length} in ${
            ((Date.now() - t0) / 1000).toFixed(0)
          }s`,
      );
    } finally {
      polling = false;
      await poller.catch(() => {});
      if (!sensor.exited()) {
        sensor.kill("SIGTERM");
        await Promise.race([sensor.status, sleep(15_000)]);
        if (!sensor.exited()) sensor.kill("SIGKILL");
      }
      await pool.query("DELETE FROM price_windows WHERE starts_with(symbol, $1)", [prefix]).catch(
        () => {},
      );
      await pool.query("DELETE FROM late_ticks WHERE topic = $1", [topic]).catch(() => {});
      await pool.end();
      kv.close();
      await removeKv(kvPath, topic);
      await deleteTopics(kafka, [topic]);
    }
  },
);
