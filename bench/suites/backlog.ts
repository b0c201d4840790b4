/**
 * Suite 9, backlog: what the sensor-launched aggregator faces after an outage. The aggregator
 * process at its DEFAULT flags (only `--idle-timeout 10s`, plus its own topic, KV file and group)
 * drains a pre-filled backlog (1M ticks, 300k with --quick; 1,000 symbols, 3 partitions, a 1k
 * ticks/s feed's event time, 2% out of order, 0.1% an hour late), cold, from launch to exit.
 * Baseline: the raw kafkajs drain process of the same topic, launch to exit. Reports ticks/s
 * (launch → backlog committed), wall time launch → exit, ticks per CPU-second, and whether the rows
 * equal an oracle of the backlog.
 * @module
 */

import { formatNumber, median } from "../_stats.ts";
import { interleave, type Row, rowOf, type Suite, type SuiteContext } from "../_suite.ts";
import {
  prefillBacklog,
  type ProcessRun,
  readWindows,
  runAggregatorProcess,
  runRawDrainProcess,
} from "./_backlog.ts";
import {
  benchKafka,
  benchPool,
  createTopic,
  deleteRows,
  ensureSchema,
  recentStart,
  topicSize,
} from "./_io.ts";
import { createWindowOracle, diffIsClean, diffWindows, type WindowDiff } from "./_oracle.ts";

const SYMBOLS = 1000;
/** 1 ms between ticks: a 1k ticks/s feed, the example of a day's backlog. */
const TICK_MS = 1;

function triggersOf(stdout: readonly string[]): number {
  return stdout.filter((l) => l.startsWith("{") && l.includes('"offsets"')).length;
}

/** The backlog suite. */
export const backlogSuite: Suite = {
  name: "backlog",
  title: "Backlog catch-up (default flags)",
  requires: ["aggregate/aggregate_main.ts"],
  // Today's aggregator drains about 3.3k ticks/s at its defaults: 1M ticks take ~5 min a run.
  timeoutMs: (quick) => (quick ? 15 * 60_000 : 45 * 60_000),
  async run(ctx: SuiteContext): Promise<Row[]> {
    const total = ctx.quick ? 300_000 : 1_000_000;
    const kafka = benchKafka(ctx.config);
    const admin = kafka.admin();
    await admin.connect();
    const topic = await createTopic(ctx, admin, { name: "backlog", partitions: 3 });
    const prefix = `${ctx.symbolPrefix}BL`;
    const oracle = createWindowOracle();
    const seconds = await prefillBacklog(kafka, {
      topic,
      total,
      symbols: SYMBOLS,
      tickMs: TICK_MS,
      start: recentStart(2),
      prefix,
    }, { oracles: [oracle] });
    const size = await topicSize(admin, topic);
    await admin.disconnect();
    if (size !== total) throw new Error(`Backlog topic holds ${size} records, expected ${total}`);
    ctx.log.info("Backlog ready", { topic, ticks: total, seconds: Math.round(seconds) });

    const pool = benchPool(ctx.config, 2);
    await ensureSchema(pool);
    const limit = Math.max(600_000, total); // 1k ticks/s at the very least
    const ours: ProcessRun[] = [];
    const raw: ProcessRun[] = [];
    const diffs: WindowDiff[] = [];
    try {
      await interleave(
        async (i) => {
          const run = await runAggregatorProcess(ctx, {
            topic,
            total,
            flags: ["--idle-timeout", "10s"],
            timeoutMs: limit,
            name: `backlog${i}`,
          });
          const diff = diffWindows(
            oracle.windows,
            await readWindows(pool, { table: "price_windows", prefix }),
          );
          await deleteRows(pool, ctx, { topics: [topic] });
          ours.push(run);
          diffs.push(diff);
          if (!diffIsClean(diff)) {
            ctx.log.warn("Aggregator rows differ from the oracle", {
              ...diff,
              examples: diff.examples.join(" ; "),
            });
          }
          return run.wallMs / 1000;
        },
        async (i) => {
          const run = await runRawDrainProcess(ctx, {
            topic,
            total,
            timeoutMs: limit,
            name: `backlog${i}`,
          });
          raw.push(run);
          return run.wallMs / 1000;
        },
        { runs: ctx.runs, warmup: false, log: ctx.log, label: "backlog (s, launch → exit)" },
      );
    } finally {
      await pool.end().catch(() => {});
    }
    const rate = (runs: ProcessRun[]) => runs.map((r) => total / (r.doneMs / 1000));
    const perCpu = (runs: ProcessRun[]) => runs.map((r) => total / (r.cpuMs / 1000));
    const clean = diffs.filter(diffIsClean).length;
    const workload = `${(total / 1e6).toFixed(2)}M-tick backlog, ${SYMBOLS} symbols, ` +
      `3 partitions; aggregator at its default flags (--idle-timeout 10s only)`;
    return [
      rowOf({
        suite: "backlog",
        metric: `${workload}; ticks/s from launch until the progress offsets cover the topic`,
        unit: "ticks/s",
        ours: rate(ours),
        baseline: rate(raw),
        baselineLabel: "raw kafkajs drain process, launch → last record",
        note: `triggers per run: ${ours.map((r) => triggersOf(r.stdout)).join("/")}; rows equal ` +
          `to an oracle of the backlog in ${clean}/${diffs.length} runs ` +
          `(${formatNumber(oracle.windows.size)} windows, ${oracle.late} late ticks)`,
      }),
      rowOf({
        suite: "backlog",
        metric: "wall time, launch → exit (aggregator: includes its 10 s idle timeout)",
        unit: "s",
        ours: ours.map((r) => r.wallMs / 1000),
        baseline: raw.map((r) => r.wallMs / 1000),
        baselineLabel: "raw kafkajs drain process (exits at the last record)",
        lowerIsBetter: true,
      }),
      rowOf({
        suite: "backlog",
        metric: "ticks per CPU-second (user + system time of the process, launch → exit)",
        unit: "ticks/CPU-s",
        ours: perCpu(ours),
        baseline: perCpu(raw),
        baselineLabel: "raw kafkajs drain process",
        note: `peak RSS: aggregator ${formatNumber(median(ours.map((r) => r.peakRssMb)))} MB, ` +
          `raw drain ${formatNumber(median(raw.map((r) => r.peakRssMb)))} MB`,
      }),
    ];
  },
};
