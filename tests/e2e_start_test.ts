// End to end: simulator -> `tickpipe start` (ingest + sensor + aggregator, each under its own
// permission set) -> Kafka -> PostgreSQL, against the real broker and database. Checks, on one
// run: a crashed (here: stopped) child is restarted and the new aggregator resumes from the
// checkpoint; SIGTERM to start stops the whole tree (no process left behind) and loses no tick
// the simulator sent; price_windows equals an independent oracle over the ticks in Kafka; and
// `status --json` agrees with Kafka and KV.
import assert from "node:assert/strict";
import { openKv } from "../common/kv.ts";
import { checkpointSummary, readCheckpoint, readProgress } from "../aggregate/mod.ts";
import { startSimulator } from "../ingest/simulator.ts";
import { runCli, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";
import { assertRowsEqual, cleanupRows, oracle, readRows } from "./_helpers/aggregate_stream.ts";
import {
  asStream,
  descendants,
  missingFrom,
  type Proc,
  randomPrefix,
  readTopic,
  simulatorLog,
  stillRunning,
  tickId,
  waitFor,
} from "./_helpers/e2e_pipeline.ts";

const WINDOW_MS = 300_000;
const WATERMARK_MS = 900_000;

Deno.test({
  name: "e2e start: restart, SIGTERM without leftovers or lost ticks, windows equal the oracle",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("t-e2e-start");
    const kvPath = await tempKvPath("e2e-start");
    const prefix = randomPrefix();
    const symbols = [`${prefix}A`, `${prefix}B`, `${prefix}C-USD`, `${prefix}D-USD`];
    const simLog = `.data/test/${topic}.sim.jsonl`;
    const kafka = testKafka();
    const pool = testPool();
    await cleanupRows(pool, prefix, topic);
    // Port 8765: the only one the ingest permission set lets `start`'s ingest child reach.
    const sim = await startSimulator({
      port: 8765,
      rate: 80,
      seed: 7,
      outOfOrderFraction: 0.1,
      lateFraction: 0.02,
      malformedFraction: 0.01,
      heartbeatMs: 1000,
      logFile: simLog,
    }).catch(async (e) => {
      await Deno.remove(simLog).catch(() => {});
      await pool.end();
      throw new Error(`Cannot start the simulator on 127.0.0.1:8765 (in use?): ${e.message}`);
    });
    let simClosed = false;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "-P=start",
        "main.ts",
        "start",
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--source",
        "ws://127.0.0.1:8765/?version=2",
        "--symbols",
        symbols.join(","),
        "--every",
        "2s",
        "--trigger",
        "1s",
        "--idle-timeout",
        "10s",
      ],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let output = "";
    const dec = new TextDecoder();
    const pump = (s: ReadableStream<Uint8Array>) =>
      s.pipeTo(
        new WritableStream({
          write(chunk) {
            output += dec.decode(chunk, { stream: true });
          },
        }),
      ).catch(() => {});
    const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
    // Every process of the tree seen while it ran (children restart, aggregators come and go).
    const seen = new Map<number, Proc>();
    const watch = setInterval(() => {
      for (const p of descendants(child.pid)) seen.set(p.pid, p);
    }, 200);
    const kv = await openKv(kvPath);
    let exited = false;
    try {
      const tree = () => descendants(child.pid);
      const findSensor = () => tree().find((p) => /main\.ts sensor /.test(p.cmdline));
      const sensor1 = await waitFor("the sensor", findSensor, { timeoutMs: 30_000 });
      assert.ok(tree().some((p) => /main\.ts ingest /.test(p.cmdline)), "ingest runs");

      // The sensor launches an aggregator, which writes windows and checkpoints.
      const first = await waitFor("a first progress record", async () => {
        const p = await readProgress(kv, topic);
        return p && p.batchId >= 2 ? p : null;
      }, { timeoutMs: 60_000 });
      assert.ok(
        tree().some((p) => /main\.ts aggregate /.test(p.cmdline)),
        "the aggregator runs in start's tree (a child of the sensor)",
      );

      // A child that exits is restarted; the new sensor launches a new aggregator, which
      // resumes from the checkpoint (verified by the oracle below).
      Deno.kill(sensor1.pid, "SIGTERM");
      const sensor2 = await waitFor("a restarted sensor", () => {
        const s = findSensor();
        return s && s.pid !== sensor1.pid ? s : null;
      }, { timeoutMs: 30_000 });
      assert.ok(sensor2.pid > 0);
      const second = await waitFor("progress from a second aggregator run", async () => {
        const p = await readProgress(kv, topic);
        return p && p.runId !== first.runId && p.batchId > first.batchId + 1 ? p : null;
      }, { timeoutMs: 60_000 });
      assert.ok(second.batchId > first.batchId, "batch ids continue across runs");
      assert.match(output, /child exited unexpectedly: restarting after backoff.*child=sensor/);

      // Stop the feed, then SIGTERM start right away: ingest still holds in-flight ticks.
      await sim.close();
      simClosed = true;
      const live = tree();
      assert.ok(live.length >= 3, `ingest, sensor and aggregator run: ${JSON.stringify(live)}`);
      child.kill("SIGTERM");
      const status = await child.status;
      exited = true;
      await pumps;
      assert.equal(status.code, 0, output.slice(-4000));
      clearInterval(watch);
      const leftovers = [...seen.values()].filter(stillRunning);
      assert.deepEqual(leftovers, [], "no process of start's tree outlives it");
      assert.ok(
        [...seen.values()].filter((p) => /main\.ts aggregate /.test(p.cmdline)).length >= 2,
        "two aggregator runs were seen",
      );
      assert.match(output, /aggregator stopped reason=stopped/);
      assert.match(output, /ingest stopped \(SIGTERM\)/);

      // No tick lost: every frame the simulator sent as valid is in Kafka, exactly once; every
      // rejected frame is in the dead-letter topic.
      const records = await readTopic(kafka, topic);
      const inKafka = records.flat().map((r) => tickId(JSON.parse(r.value)));
      const logged = await simulatorLog(simLog, new Set(symbols));
      assert.ok(logged.valid.length > 200, `enough ticks: ${logged.valid.length}`);
      assert.deepEqual(missingFrom(logged.valid, inKafka), [], "every valid frame is in Kafka");
      assert.equal(inKafka.length, logged.valid.length, "and nothing else");
      const dlq = (await readTopic(kafka, `${topic}.dlq`)).flat();
      assert.equal(dlq.length, logged.rejected, "every rejected frame is a dead letter");

      // price_windows equals the oracle over the ticks the last checkpoint covers.
      const cp = await readCheckpoint(kv, topic);
      assert.ok(cp, "a final checkpoint");
      const covered = Object.values(cp.pointer.offsets).reduce((a, b) => a + b, 0);
      assert.ok(covered > 0.9 * inKafka.length, `checkpoint covers ${covered}/${inKafka.length}`);
      const expected = oracle(asStream(records, cp.pointer.offsets), {
        windowMs: WINDOW_MS,
        watermarkDelayMs: WATERMARK_MS,
      });
      const stored = await readRows(pool, prefix);
      assert.ok(expected.rows.size >= symbols.length, "windows for every symbol");
      assertRowsEqual(stored, expected.rows, WINDOW_MS);
      assert.equal(
        [...stored.values()].reduce((n, r) => n + r.count, 0),
        [...expected.rows.values()].reduce((n, r) => n + r.count, 0),
        "exact tick counts",
      );

      // status --json agrees with Kafka and KV.
      const r = await runCli("status", [
        "status",
        "--json",
        "--no-rate",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout);
      assert.equal(s.ticksInTopic, inKafka.length);
      assert.equal(s.deadLetters, dlq.length);
      assert.equal(s.totalLag, inKafka.length - covered);
      assert.equal(s.lease, null, "the aggregator released its lease");
      assert.equal(s.progress.reason, "final");
      assert.equal(s.checkpoint.generation, checkpointSummary(cp.pointer).generation);
      assert.ok(s.sensor.launches >= 2);
    } finally {
      clearInterval(watch);
      if (!exited) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        for (const p of descendants(child.pid)) {
          try {
            Deno.kill(p.pid, "SIGKILL");
          } catch { /* gone */ }
        }
      }
      if (!simClosed) await sim.close();
      kv.close();
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      await cleanupRows(pool, prefix, topic);
      await pool.end();
      for (const f of [kvPath, `${kvPath}-shm`, `${kvPath}-wal`, simLog]) {
        await Deno.remove(f).catch(() => {});
      }
      await Deno.remove(`.data/spool/${topic}`, { recursive: true }).catch(() => {});
    }
  },
});
