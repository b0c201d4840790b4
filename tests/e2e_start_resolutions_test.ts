// Several resolutions through `deno task start`, on the real services: simulator (20x event clock)
// -> `start --windows 1m,5m --watermark 2m` (ingest + sensor + the aggregator it launches) ->
// Kafka -> PostgreSQL. After SIGTERM, price_windows holds 1m and 5m rows equal to an independent
// oracle over the ticks the final checkpoint covers (finality, volume and VWAP included), the late
// ticks are the oracle's, and `status --json` and `offsets --json` report the resolutions. Then
// `start` with another set of windows is refused at once (exit 1, the sensor naming both sets)
// without launching an aggregator, and the checkpoint is untouched.
import assert from "node:assert/strict";
import { openKv } from "../common/kv.ts";
import { readCheckpoint } from "../aggregate/mod.ts";
import { startSimulator } from "../ingest/simulator.ts";
import { runCli, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";
import {
  assertRowsEqual,
  cleanupRows,
  oracle,
  readLate,
  readRows,
} from "./_helpers/aggregate_stream.ts";
import {
  asStream,
  descendants,
  randomPrefix,
  readTopic,
  waitFor,
} from "./_helpers/e2e_pipeline.ts";

const WINDOWS = [60_000, 300_000];
const WATERMARK_MS = 120_000;

function startArgs(topic: string, kvPath: string, symbols: string[], extra: string[]) {
  return [
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
    "1s",
    "--trigger",
    "1s",
    "--idle-timeout",
    "30s",
    "--metrics-port",
    "0",
    ...extra,
  ];
}

function spawnStart(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = { text: "" };
  const dec = new TextDecoder();
  const pump = (s: ReadableStream<Uint8Array>) =>
    s.pipeTo(
      new WritableStream({
        write(chunk) {
          out.text += dec.decode(chunk, { stream: true });
        },
      }),
    ).catch(() => {});
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  return { child, out, pumps };
}

Deno.test({
  name: "e2e start --windows 1m,5m: both resolutions equal the oracle; another set is refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("t-e2e-res");
    const kvPath = await tempKvPath("e2e-res");
    const prefix = randomPrefix();
    const symbols = [`${prefix}A`, `${prefix}B`, `${prefix}C-USD`, `${prefix}D=X`];
    const kafka = testKafka();
    const pool = testPool();
    await cleanupRows(pool, prefix, topic);
    // 20x: 30 s of wall time are 10 min of event time, so 1m and 5m windows turn final.
    const sim = await startSimulator({
      port: 8765,
      rate: 40,
      seed: 14,
      speed: 20,
      eventStart: Date.now() - 20 * 60_000,
      outOfOrderFraction: 0.1,
      lateFraction: 0.02,
      heartbeatMs: 1000,
      keepSent: false,
    }).catch(async (e) => {
      await pool.end();
      throw new Error(`Cannot start the simulator on 127.0.0.1:8765 (in use?): ${e.message}`);
    });
    let simClosed = false;
    const run = spawnStart(
      startArgs(topic, kvPath, symbols, ["--windows", "1m,5m", "--watermark", "2m"]),
    );
    let exited = false;
    try {
      const kv = await openKv(kvPath);
      try {
        await waitFor("final 5m windows", async () => {
          const { rows } = await pool.query(
            `SELECT count(*)::int AS n FROM price_windows
              WHERE topic = $1 AND window_length = interval '5 minutes' AND is_final`,
            [topic],
          );
          return rows[0].n >= symbols.length;
        }, { timeoutMs: 90_000, everyMs: 1000 });
      } finally {
        kv.close();
      }
      await sim.close();
      simClosed = true;
      run.child.kill("SIGTERM");
      const status = await run.child.status;
      exited = true;
      await run.pumps;
      assert.equal(status.code, 0, run.out.text.slice(-4000));
      assert.match(run.out.text, /launched aggregator .*--windows 1m,5m --watermark 2m/);

      // price_windows equals the oracle, at both resolutions, over the checkpointed ticks.
      const kv2 = await openKv(kvPath);
      const cp = (await readCheckpoint(kv2, topic))!;
      kv2.close();
      assert.deepEqual(cp.pointer.engine, { windows: WINDOWS, watermarkDelayMs: WATERMARK_MS });
      const records = await readTopic(kafka, topic);
      const expected = oracle(asStream(records, cp.pointer.offsets), {
        windows: WINDOWS,
        watermarkDelayMs: WATERMARK_MS,
      });
      const stored = await readRows(pool, prefix, { topic });
      assertRowsEqual(stored, expected.rows);
      assert.deepEqual([...await readLate(pool, topic)].sort(), [...expected.late].sort());
      const byLength = Map.groupBy(stored.values(), (r) => r.windowMs);
      for (const w of WINDOWS) {
        const rows = byLength.get(w) ?? [];
        assert.ok(rows.filter((r) => r.isFinal).length >= symbols.length, `${w}: final rows`);
      }
      assert.ok([...stored.values()].some((r) => r.vwap !== null), "VWAP where there is volume");
      assert.ok(
        [...stored.values()].filter((r) => r.symbol.endsWith("=X")).every((r) => r.vwap === null),
        "no VWAP for the FX pair",
      );

      // status and offsets know the resolutions.
      const st = await runCli("status", [
        "status",
        "--json",
        "--no-rate",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(st.code, 0, st.stderr);
      const s = JSON.parse(st.stdout);
      assert.deepEqual(s.checkpoint.windows, WINDOWS);
      assert.deepEqual(
        s.windows.byResolution.map((r: { windowMs: number; total: number }) => [
          r.windowMs,
          r.total,
        ]),
        WINDOWS.map((w) => [w, byLength.get(w)?.length ?? 0]),
      );
      assert.equal(s.lateTicks.total, expected.late.size);
      const off = await runCli("offsets", ["offsets", "--json", "--topic", topic, "--kv", kvPath]);
      assert.equal(off.code, 0, off.stderr);
      assert.deepEqual(JSON.parse(off.stdout).engine.windows, WINDOWS);

      // Another set of windows: refused at once, naming both; no aggregator launched.
      const batchBefore = cp.pointer.batchId;
      const again = spawnStart(startArgs(topic, kvPath, symbols, ["--windows", "5m"]));
      const seen = new Set<string>();
      const watch = setInterval(() => {
        for (const p of descendants(again.child.pid)) seen.add(p.cmdline);
      }, 100);
      const refused = await Promise.race([
        again.child.status,
        new Promise<null>((r) => setTimeout(() => r(null), 60_000)),
      ]);
      clearInterval(watch);
      if (refused === null) again.child.kill("SIGKILL");
      await again.pumps;
      assert.equal(refused?.code, 1, again.out.text.slice(-3000));
      assert.match(
        again.out.text,
        /\[sensor\] .*the checkpoint was made with windows 1m,5m watermark 2m, not windows 5m watermark 15m: run with the checkpoint's --windows\/--watermark, or add --rebuild/,
      );
      assert.match(again.out.text, /sensor rejected its flags \(exit 2\)/);
      assert.ok(![...seen].some((c) => / aggregate /.test(c)), "no aggregator was launched");
      const kv3 = await openKv(kvPath);
      const cp3 = (await readCheckpoint(kv3, topic))!;
      kv3.close();
      assert.equal(cp3.pointer.batchId, batchBefore, "the checkpoint is untouched");
    } finally {
      if (!exited) {
        try {
          run.child.kill("SIGKILL");
        } catch { /* gone */ }
        for (const p of descendants(run.child.pid)) {
          try {
            Deno.kill(p.pid, "SIGKILL");
          } catch { /* gone */ }
        }
      }
      if (!simClosed) await sim.close();
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      await cleanupRows(pool, prefix, topic);
      await pool.end();
      for (const f of [kvPath, `${kvPath}-shm`, `${kvPath}-wal`]) {
        await Deno.remove(f).catch(() => {});
      }
      await Deno.remove(`.data/spool/${topic}`, { recursive: true }).catch(() => {});
    }
  },
});
