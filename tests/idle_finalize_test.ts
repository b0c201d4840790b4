// Idle finalization end to end (issue 14 §1, "the outcome to prove"), on the real Kafka,
// PostgreSQL and KV, through the sensor and the aggregators it launches, with the settings scaled
// down: 5s and 15s windows, a 14 s watermark delay and idle finalization after 14 s, 1 s
// triggers, a 3 s idle timeout, a sensor check every second.
//
// A feed writes ticks for ~12 s (event time = arrival time, some out of order, some late, day
// volumes with a session reset, one symbol without volume), then stops for good. The aggregator
// the sensor launched exits on its idle timeout with windows still open (they are due later than
// another idle timeout: 14 s after the last tick against 3 + 3 s, so the run could lag 8 s); the
// sensor launches a finalization run when the checkpoint's finalizeDueAt passes; that run waits
// for the windows due soon and exits idle. Within delay + window + a couple of triggers of the
// last tick (14 + 15 s + slack) every window is final in
// PostgreSQL, equal to the pure event-time oracle (idle finalization changes when a window turns
// final, not what it holds: no tick arrives after it, so none is late because of it), the late
// ticks are exactly the oracle's, and the checkpoint holds no open window.
import assert from "node:assert/strict";
import { denoRunArgs } from "../common/child.ts";
import { ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { readCheckpoint } from "../aggregate/mod.ts";
import { config, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";
import {
  assertRowsEqual,
  cleanupRows,
  oracle,
  readLate,
  readRows,
  type StreamRecord,
} from "./_helpers/aggregate_stream.ts";
import { mulberry32 as prng } from "../common/prng.ts";
import { randomPrefix, waitFor } from "./_helpers/e2e_pipeline.ts";

const WINDOWS = [5_000, 15_000];
const LONGEST = Math.max(...WINDOWS);
const DELAY_MS = 14_000;
const FLAGS = [
  "--windows",
  "5s,15s",
  "--watermark",
  "14s",
  "--idle-finalize",
  "14s",
  "--trigger",
  "1s",
  "--idle-timeout",
  "3s",
];
/** Allowed beyond delay + the longest window: triggers, the sensor's cadence, a loaded machine. */
const SLACK_MS = 12_000;

Deno.test({
  name: "idle finalization e2e: every window final within delay + window after the last tick",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const pool = testPool();
    const topic = uniqueName("t-idle-final");
    const kvPath = await tempKvPath("idle-final");
    const prefix = randomPrefix();
    const symbols = [[`${prefix}A`, `${prefix}B`], [`${prefix}C`, `${prefix}D=X`]];
    const admin = kafka.admin();
    await admin.connect();
    let sensor: Deno.ChildProcess | undefined;
    let output = "";
    let pumps: Promise<unknown> = Promise.resolve();
    try {
      await ensureTopic(admin, topic, { partitions: 2 });
      sensor = new Deno.Command(Deno.execPath(), {
        args: denoRunArgs("sensor", [
          "--topic",
          topic,
          "--kv",
          kvPath,
          "--every",
          "1s",
          ...FLAGS,
        ]),
        env: { NO_COLOR: "1", DATABASE_URL: config.databaseUrl },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const dec = new TextDecoder();
      const pump = (s: ReadableStream<Uint8Array>) =>
        s.pipeTo(
          new WritableStream({
            write(chunk) {
              output += dec.decode(chunk, { stream: true });
            },
          }),
        ).catch(() => {});
      pumps = Promise.all([pump(sensor.stdout), pump(sensor.stderr)]);

      // The feed: rounds every 400 ms for ~12 s, a few ticks per partition each round.
      const rnd = prng(20261201);
      const streams: StreamRecord[][] = [[], []];
      const volume = new Map<string, number>();
      const producer = kafka.producer({ allowAutoTopicCreation: false, maxInFlightRequests: 1 });
      await producer.connect();
      let lastArrival = 0;
      try {
        for (let round = 0; round < 30; round++) {
          const now = Date.now();
          const messages = [];
          for (let p = 0; p < 2; p++) {
            for (let k = 0; k < 3; k++) {
              const id = symbols[p][Math.floor(rnd() * 2)];
              const r = rnd();
              const time = r < 0.08 && round > 3
                ? now - 60_000 // late for both resolutions (watermark = newest - 14 s)
                : r < 0.3
                ? now - 1000 - Math.floor(rnd() * 4000) // out of order, accepted
                : now;
              const tick: NonNullable<StreamRecord["tick"]> = {
                id,
                price: Math.round((100 + p * 50 + rnd() * 5) * 100) / 100,
                time,
              };
              if (!id.endsWith("=X")) {
                // Cumulative day volume, with one new session halfway through.
                const v = round === 15 && k === 0 ? 0 : volume.get(id) ?? 1000;
                tick.dayVolume = v + 1 + Math.floor(rnd() * 300);
                volume.set(id, tick.dayVolume);
              }
              streams[p].push({ symbol: id, tick });
              messages.push({
                partition: p,
                key: id,
                value: JSON.stringify(tick),
                timestamp: String(time),
                headers: { ingest_ms: String(now) },
              });
            }
          }
          await producer.send({ topic, acks: -1, messages });
          lastArrival = now;
          await new Promise((r) => setTimeout(r, 400));
        }
      } finally {
        await producer.disconnect();
      }
      const lastTick = Math.max(...streams.flat().map((r) => r.tick!.time));

      // Every window final in PostgreSQL, through the idle exit and the finalization run.
      const expected = oracle(streams, { windows: WINDOWS, watermarkDelayMs: DELAY_MS });
      const deadline = lastArrival + DELAY_MS + LONGEST + SLACK_MS;
      const allFinalAt = await waitFor("every window final", async () => {
        const { rows } = await pool.query(
          `SELECT count(*)::int AS n, count(*) FILTER (WHERE is_final)::int AS f
             FROM price_windows WHERE topic = $1`,
          [topic],
        );
        return rows[0].n === expected.rows.size && rows[0].f === rows[0].n ? Date.now() : 0;
      }, { timeoutMs: deadline - Date.now() + 20_000, everyMs: 250 });
      const tookMs = allFinalAt - lastArrival;
      // The rule's time: quiet for the idle-finalize time, and the wall clock - delay past the
      // end of the last window.
      const lastEnd = Math.floor(lastTick / LONGEST) * LONGEST + LONGEST;
      const ruleAt = Math.max(lastArrival + DELAY_MS, lastEnd + DELAY_MS);
      console.log(
        `idle finalization: every window final ${(tookMs / 1000).toFixed(1)} s after the last ` +
          `tick (bound: delay + window = ${(DELAY_MS + LONGEST) / 1000} s; the rule's time for ` +
          `this feed ${((ruleAt - lastArrival) / 1000).toFixed(1)} s, reached +${
            ((allFinalAt - ruleAt) / 1000).toFixed(1)
          } s after it)`,
      );
      assert.ok(
        allFinalAt <= deadline,
        `final ${tookMs} ms after the last tick: more than delay + window + ${SLACK_MS} ms\n` +
          output.slice(-4000),
      );
      assert.ok(allFinalAt <= ruleAt + 8000, `${allFinalAt - ruleAt} ms after the rule's time`);
      // Not before the rule allows: the floor is the wall clock minus the delay.
      assert.ok(allFinalAt >= lastEnd + DELAY_MS, "no window final before its end + the delay");

      // The content is the pure event-time result; the finality is idle finalization's.
      for (const row of expected.rows.values()) row.isFinal = true;
      assertRowsEqual(await readRows(pool, prefix, { topic }), expected.rows);
      assert.ok([...expected.rows.values()].some((r) => r.volume > 0), "volume and VWAP");
      assert.deepEqual([...await readLate(pool, topic)].sort(), [...expected.late].sort());
      assert.ok(expected.late.size > 0, "the feed had late ticks");

      // The path: the first run exited idle with windows open, a finalization run closed them.
      await waitFor(
        "the finalization run's exit",
        () => (output.match(/aggregator exited normally/g) ?? []).length >= 2,
        { timeoutMs: 30_000 },
      );
      assert.match(output, /decision: launch: open windows are due for idle finalization since /);
      assert.ok((output.match(/idle timeout: no new records/g) ?? []).length >= 2, output);
      const kv = await openKv(kvPath);
      try {
        const cp = (await readCheckpoint(kv, topic))!;
        assert.equal(cp.pointer.openWindows, 0);
        assert.equal(cp.pointer.finalizeDueAt, null);
        assert.deepEqual(cp.pointer.engine, { windows: WINDOWS, watermarkDelayMs: DELAY_MS });
      } finally {
        kv.close();
      }
    } finally {
      try {
        sensor?.kill("SIGTERM");
      } catch { /* gone */ }
      const status = await sensor?.status;
      await pumps;
      if (status !== undefined && status.code !== 0) console.error(output.slice(-3000));
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      await cleanupRows(pool, prefix, topic);
      await pool.end();
      for (const s of ["", "-shm", "-wal"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
});
