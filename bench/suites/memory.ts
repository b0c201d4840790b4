/**
 * Suite 7, memory: peak RSS (VmHWM from /proc/<pid>/status, sampled every 200 ms) of
 *
 * - `main.ts aggregate` holding 10k symbols x 5 open windows (50k; `--watermark 30m` so that five
 *   5-minute windows stay open), consuming a pre-filled topic of 5 ticks per window until the
 *   whole topic is checkpointed, plus one more trigger. Baseline: a raw kafkajs eachBatch drain
 *   process of the same topic. Target: at most 1.3x the baseline's peak (issue 13).
 * - `main.ts ingest` fed by `main.ts simulate` at 10k ticks/s over 1,000 symbols. Target: at most
 *   1.3x the baseline, a raw process forwarding the same WebSocket frames to Kafka without parsing.
 *
 * Ratio = baseline / ours (> 1 would mean we use less than the raw process).
 * @module
 */

import { denoRunArgs } from "../../common/child.ts";
import type { Tick } from "../../aggregate/engine.ts";
import { type Row, rowOf, type Suite, type SuiteContext } from "../_suite.ts";
import { symbols, windowFillTicks } from "./_data.ts";
import {
  benchKafka,
  benchPool,
  createTopic,
  delay,
  deleteRows,
  produceAll,
  recentStart,
  sampleRss,
  spawnDeno,
  tail,
  tickMessage,
  uniqueOf,
} from "./_io.ts";
import { childEnv, startSimulatorChild, stopChild } from "./freshness.ts";

const AGG_SYMBOLS = 10_000;
const AGG_WINDOWS = 5;
const TICKS_PER_WINDOW = 5;
const INGEST_RATE = 10_000;

/** Progress line committed offsets and open windows (or null if not a progress line). */
function progressOf(line: string): { committed: number; open: number } | null {
  if (!line.startsWith("{")) return null;
  try {
    const p = JSON.parse(line) as { offsets?: Record<string, number>; openWindows?: number };
    if (p.offsets === undefined) return null;
    return {
      committed: Object.values(p.offsets).reduce((a, b) => a + b, 0),
      open: p.openWindows ?? 0,
    };
  } catch {
    return null;
  }
}

async function aggregatorPeak(ctx: SuiteContext, topic: string, total: number): Promise<number> {
  const child = spawnDeno(
    denoRunArgs("aggregate", [
      "--topic",
      topic,
      "--kv",
      `${ctx.dataDir}/${uniqueOf(ctx, "mem")}.kv`,
      "--group",
      uniqueOf(ctx, "mem-group"),
      "--trigger",
      "1s",
      "--watermark",
      "30m",
    ]),
    childEnv(ctx),
  );
  const rss = sampleRss(child.pid);
  try {
    const line = await child.waitLine((l) => {
      const p = progressOf(l);
      return p !== null && p.committed >= total;
    }, ctx.quick ? 90_000 : 300_000);
    const open = progressOf(line)!.open;
    if (open !== AGG_SYMBOLS * AGG_WINDOWS) {
      throw new Error(
        `Aggregator holds ${open} open windows, expected ${AGG_SYMBOLS * AGG_WINDOWS}`,
      );
    }
    const n = child.stdout.length;
    await child.waitLine((l) => progressOf(l) !== null && child.stdout.indexOf(l) >= n, 30_000)
      .catch(() => {});
    return await rss.stop();
  } catch (e) {
    await rss.stop();
    throw new Error(
      `${(e as Error).message}; last stdout: ${tail(child.stdout, 2)}; stderr: ${
        tail(child.stderr)
      }`,
    );
  } finally {
    await stopChild(child);
  }
}

async function drainPeak(ctx: SuiteContext, topic: string, total: number): Promise<number> {
  const child = spawnDeno([
    "run",
    "-A",
    "bench/suites/_raw_child.ts",
    "drain",
    topic,
    uniqueOf(ctx, "mem-raw"),
    String(total),
  ], childEnv(ctx));
  const rss = sampleRss(child.pid);
  try {
    await child.waitLine((l) => l.startsWith("done"), 300_000);
    await delay(1000);
    return await rss.stop();
  } catch (e) {
    await rss.stop();
    throw e;
  } finally {
    await stopChild(child);
  }
}

/** Ticks/s ingest produced in each of its runs (from its shutdown line). */
const producedRates: number[] = [];

async function ingestPeak(
  ctx: SuiteContext,
  raw: boolean,
  names: string[],
  seconds: number,
): Promise<number> {
  const kafka = benchKafka(ctx.config);
  const admin = kafka.admin();
  await admin.connect();
  const topic = await createTopic(ctx, admin, { name: raw ? "mem-fwd" : "mem-ingest" });
  await admin.disconnect();
  const sim = await startSimulatorChild(ctx, { rate: INGEST_RATE });
  let child;
  try {
    if (raw) {
      const file = `${ctx.dataDir}/mem-symbols.txt`;
      await Deno.writeTextFile(file, names.join("\n"));
      child = spawnDeno(
        ["run", "-A", "bench/suites/_raw_child.ts", "forward", sim.url, topic, file],
        childEnv(ctx),
      );
    } else {
      child = spawnDeno(
        denoRunArgs("ingest", [
          "--source",
          sim.url,
          "--symbols",
          names.join(","),
          "--topic",
          topic,
          "--spool-dir",
          `${ctx.dataDir}/${uniqueOf(ctx, "spool-mem")}`,
          "--progress-every",
          "0",
        ], { allowAll: true }),
        childEnv(ctx),
      );
    }
    const rss = sampleRss(child.pid);
    await delay(seconds * 1000);
    const s = await Promise.race([child.status, delay(0).then(() => null)]);
    const peak = await rss.stop();
    if (s !== null) throw new Error(`Ingest process exited early: ${tail(child.stderr)}`);
    return peak;
  } finally {
    if (child) {
      await stopChild(child);
      const m = /ticks_produced=(\d+)/.exec(child.stdout.join("\n"));
      if (!raw && m) producedRates.push(Number(m[1]) / seconds);
    }
    await stopChild(sim.child);
  }
}

/** The memory suite. */
export const memorySuite: Suite = {
  name: "memory",
  title: "Memory (peak RSS)",
  requires: ["aggregate/aggregate_main.ts", "ingest/ingest_main.ts", "ingest/simulate_main.ts"],
  timeoutMs: (quick) => (quick ? 480_000 : 1_200_000),
  async run(ctx: SuiteContext): Promise<Row[]> {
    const rows: Row[] = [];
    // --- aggregator ---
    const kafka = benchKafka(ctx.config);
    const admin = kafka.admin();
    await admin.connect();
    const topic = await createTopic(ctx, admin, { name: "mem-agg" });
    await admin.disconnect();
    const ticks: Tick[] = [];
    const start = recentStart(1);
    for (let r = 0; r < TICKS_PER_WINDOW; r++) {
      for (
        const t of windowFillTicks(AGG_SYMBOLS, AGG_WINDOWS, {
          prefix: `${ctx.symbolPrefix}M`,
          start,
        })
      ) {
        ticks.push({ ...t, eventTime: t.eventTime + r * 1000, price: t.price + r / 100 });
      }
    }
    // ingest_ms = now: the windows stay open (idle finalization counts from the arrival time,
    // so arrival stamps an hour old would finalize them all at the first caught-up cut).
    const receivedMs = Date.now();
    await produceAll(kafka, { topic, messages: ticks.map((t) => tickMessage(t, receivedMs)) });
    const total = ticks.length;
    const pool = benchPool(ctx.config, 1);
    try {
      const ours: number[] = [];
      const base: number[] = [];
      for (let i = 0; i < ctx.runs; i++) {
        // Alternate the order (ABBA); rows are deleted between runs so each run upserts them all.
        if (i % 2 === 0) {
          ours.push(await aggregatorPeak(ctx, topic, total));
          base.push(await drainPeak(ctx, topic, total));
        } else {
          base.push(await drainPeak(ctx, topic, total));
          ours.push(await aggregatorPeak(ctx, topic, total));
        }
        await deleteRows(pool, ctx, { topics: [topic] });
        ctx.log.info(`memory aggregator ${i + 1}/${ctx.runs}`, {
          ours: ours[i],
          baseline: base[i],
        });
      }
      rows.push(rowOf({
        suite: "memory",
        metric: `aggregate process, ${AGG_SYMBOLS / 1000}k symbols × ${AGG_WINDOWS} open windows ` +
          `(${total / 1000}k ticks consumed)`,
        unit: "MB",
        ours,
        baseline: base,
        baselineLabel: "raw kafkajs drain process",
        lowerIsBetter: true,
        // Issue 13: ours <= 1.3x the raw drain's peak, i.e. baseline / ours >= 1 / 1.3.
        target: { op: ">=", value: 0.77, on: "ratio" },
        note: "target: at most 1.3× the raw drain's peak RSS (ratio = raw / ours ≥ 0.77)",
      }));
    } finally {
      await pool.end().catch(() => {});
    }
    // --- ingest ---
    const seconds = ctx.quick ? 6 : 30;
    const names = symbols(1000, `${ctx.symbolPrefix}I`);
    const ours: number[] = [];
    const base: number[] = [];
    producedRates.length = 0;
    for (let i = 0; i < ctx.runs; i++) {
      if (i % 2 === 0) {
        ours.push(await ingestPeak(ctx, false, names, seconds));
        base.push(await ingestPeak(ctx, true, names, seconds));
      } else {
        base.push(await ingestPeak(ctx, true, names, seconds));
        ours.push(await ingestPeak(ctx, false, names, seconds));
      }
      ctx.log.info(`memory ingest ${i + 1}/${ctx.runs}`, { ours: ours[i], baseline: base[i] });
    }
    rows.push(rowOf({
      suite: "memory",
      metric: `ingest process at ${INGEST_RATE / 1000}k ticks/s, 1000 symbols, ${seconds} s`,
      note: `ingest produced ${producedRates.map((r) => Math.round(r)).join("/")} ticks/s ` +
        `(including its startup); target: ours ≤ 1.3× the forwarder (issue 13), i.e. ratio ≥ 0.77`,
      unit: "MB",
      ours,
      baseline: base,
      baselineLabel: "raw WebSocket → sendBatch forwarder process",
      lowerIsBetter: true,
      target: { op: ">=", value: 0.77, on: "ratio" },
    }));
    return rows;
  },
};
