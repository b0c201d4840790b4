/**
 * Opt-in suite `vs-spark` (`deno task bench --vs-spark`): the comparison the project exists for.
 * One backlog (4.85M ticks by default, `--vs-spark-ticks N`; 12 symbols, 3 partitions, 2% out of
 * order, 0.1% an hour late) is drained, cold and from launch to exit, by
 *
 * - tickpipe's aggregator process: `deno run -P=aggregate main.ts aggregate --trigger 5s
 *   --idle-timeout 10s`, every other flag at its default (fresh KV file and consumer group);
 * - the seed's Spark Structured Streaming query (bench/spark, Spark 3.5.4, local[2], 5 s trigger,
 *   exits 10 s after its last batch with input), upserting into `spark_price_windows`;
 * - the raw kafkajs drain process (the floor: reads and counts, then exits).
 *
 * Per contender: wall time, ticks per CPU-second (utime + stime of the process tree), peak RSS
 * (VmHWM), startup (launch → first record read), launch → whole backlog committed, and the rows
 * written against an oracle computed from the generated backlog.
 * Targets (issue 13): tickpipe drains >= 2x faster than Spark by the wall clock, with >= 4x its
 * ticks per CPU-second and <= 1/3 of its peak RSS.
 * @module
 */

import { formatNumber, median } from "../_stats.ts";
import { type Row, rowOf, type Suite, type SuiteContext } from "../_suite.ts";
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
  deleteSparkRows,
  ensureSchema,
  recentStart,
  SPARK_TABLE,
  topicSize,
} from "./_io.ts";
import { createWindowOracle, diffIsClean, diffWindows, type WindowDiff } from "./_oracle.ts";
import {
  prepareSparkJob,
  runSparkProcess,
  SPARK_SHUFFLE_PARTITIONS,
  SPARK_VERSION,
  sparkBatches,
  warmClasspath,
} from "./_spark.ts";

/** Backlog size when --vs-spark-ticks is not given (the side-by-side). */
export const VS_SPARK_DEFAULT_TICKS = 4_850_000;
const SYMBOLS = 12;
/** 250 ms between ticks: 4.85M ticks span 14 days of event time, ~48k windows. */
const TICK_MS = 250;

type Contender = "tickpipe" | "spark" | "raw";

interface Sample {
  run: ProcessRun;
  /** Rows vs the per-tick-watermark oracle (null for the raw drain). */
  diff: WindowDiff | null;
  /** Spark only: rows vs the oracle that keeps every late tick. */
  diffKeepAll?: WindowDiff;
}

function pct(d: WindowDiff): number {
  return (100 * d.equal) / Math.max(1, d.expected, d.actual);
}

/** The startup row, or none when a contender never printed its first-record signal. */
function startupRows(samples: Record<Contender, Sample[]>, sparkLabel: string): Row[] {
  const of = (s: Sample[]) => s.map((x) => x.run.startupMs);
  const [tp, sp, raw] = [of(samples.tickpipe), of(samples.spark), of(samples.raw)];
  const missing = [tp, sp, raw].some((xs) => xs.some((x) => x === null));
  if (missing) return []; // logged per run (startupS=null): e.g. a renamed log line
  const s = (xs: (number | null)[]) => xs.map((x) => x! / 1000);
  return [rowOf({
    suite: "vs-spark",
    metric: "startup, launch → first record read (tickpipe: its partitions assigned; " +
      "Spark: first task of the first micro-batch)",
    unit: "s",
    ours: s(tp),
    baseline: s(sp),
    baselineLabel: sparkLabel,
    lowerIsBetter: true,
    note: `raw drain (its first batch): ${formatNumber(median(s(raw)))} s`,
  })];
}

function describeDiff(d: WindowDiff): string {
  return `${formatNumber(d.equal)} of ${formatNumber(d.expected)} windows equal, ` +
    `${d.differing} differ, ${d.missing} missing, ${d.extra} extra`;
}

/** The vs-spark suite. */
export const vsSparkSuite: Suite = {
  name: "vs-spark",
  title: "tickpipe vs Spark (backlog drain)",
  requires: ["aggregate/aggregate_main.ts", "bench/spark/pom.xml"],
  timeoutMs: () => 120 * 60_000,
  async run(ctx: SuiteContext): Promise<Row[]> {
    const total = ctx.vsSparkTicks ?? VS_SPARK_DEFAULT_TICKS;
    const job = await prepareSparkJob(ctx);
    ctx.log.info("Spark job ready", { java: job.java });

    const kafka = benchKafka(ctx.config);
    const admin = kafka.admin();
    await admin.connect();
    const topic = await createTopic(ctx, admin, { name: "vs-spark", partitions: 3 });
    const prefix = `${ctx.symbolPrefix}VS`;
    const spanHours = Math.ceil((total * TICK_MS) / 3_600_000);
    const oracle = createWindowOracle();
    const keepAll = createWindowOracle({ watermarkDelayMs: null });
    let lastLog = 0;
    const producedIn = await prefillBacklog(kafka, {
      topic,
      total,
      symbols: SYMBOLS,
      tickMs: TICK_MS,
      start: recentStart(spanHours + 2),
      prefix,
    }, {
      oracles: [oracle, keepAll],
      onProgress: (n) => {
        if (performance.now() - lastLog > 10_000) {
          lastLog = performance.now();
          ctx.log.info("Pre-filling the backlog", { written: n, of: total });
        }
      },
    });
    const size = await topicSize(admin, topic);
    await admin.disconnect();
    if (size !== total) throw new Error(`Backlog topic holds ${size} records, expected ${total}`);
    ctx.log.info("Backlog ready", {
      topic,
      ticks: total,
      seconds: Math.round(producedIn),
      windows: oracle.windows.size,
      late: oracle.late,
    });

    const pool = benchPool(ctx.config, 2);
    await ensureSchema(pool);
    const samples: Record<Contender, Sample[]> = { tickpipe: [], spark: [], raw: [] };
    const limit = Math.max(300_000, total / 5); // >= 5k ticks/s, or it is failing
    const runOne = async (who: Contender, i: number): Promise<Sample> => {
      const name = `vs-${who}${i}`;
      if (who === "tickpipe") {
        const run = await runAggregatorProcess(ctx, {
          topic,
          total,
          flags: ["--trigger", "5s", "--idle-timeout", "10s"],
          timeoutMs: limit,
          name,
        });
        const diff = diffWindows(
          oracle.windows,
          await readWindows(pool, { table: "price_windows", prefix }),
        );
        await deleteRows(pool, ctx, { topics: [topic] });
        return { run, diff };
      }
      if (who === "spark") {
        const run = await runSparkProcess(ctx, job, { topic, total, timeoutMs: limit, name });
        const rows = await readWindows(pool, { table: SPARK_TABLE, prefix });
        await deleteSparkRows(pool, prefix);
        return {
          run,
          diff: diffWindows(oracle.windows, rows),
          diffKeepAll: diffWindows(keepAll.windows, rows),
        };
      }
      const run = await runRawDrainProcess(ctx, { topic, total, timeoutMs: limit, name });
      return { run, diff: null };
    };
    try {
      await warmClasspath(job);
      const order: Contender[] = ["tickpipe", "spark", "raw"];
      for (let i = 0; i < ctx.runs; i++) {
        // Rotate the order every run so that none always goes first (cold caches, drift).
        const rotated = [...order.slice(i % 3), ...order.slice(0, i % 3)];
        for (const who of rotated) {
          const s = await runOne(who, i);
          samples[who].push(s);
          ctx.log.info(`vs-spark ${who} ${i + 1}/${ctx.runs}`, {
            wallS: Math.round(s.run.wallMs) / 1000,
            cpuS: Math.round(s.run.cpuMs) / 1000,
            rssMb: Math.round(s.run.peakRssMb),
            startupS: s.run.startupMs === null ? null : Math.round(s.run.startupMs) / 1000,
            doneS: s.run.doneMs === null ? null : Math.round(s.run.doneMs) / 1000,
            rows: s.diff ? describeDiff(s.diff) : undefined,
            examples: s.diff && !diffIsClean(s.diff) ? s.diff.examples.join(" ; ") : undefined,
          });
        }
      }
    } finally {
      await deleteSparkRows(pool, prefix).catch(() => {});
      await pool.end().catch(() => {});
    }
    return rowsOf({ total, samples, oracleLate: oracle.late, windows: oracle.windows.size });
  },
};

function rowsOf(input: {
  total: number;
  samples: Record<Contender, Sample[]>;
  oracleLate: number;
  windows: number;
}): Row[] {
  const { total, samples } = input;
  const tp = samples.tickpipe;
  const sp = samples.spark;
  const raw = samples.raw;
  const wall = (s: Sample[]) => s.map((x) => x.run.wallMs / 1000);
  const perCpu = (s: Sample[]) => s.map((x) => total / (x.run.cpuMs / 1000));
  const rss = (s: Sample[]) => s.map((x) => x.run.peakRssMb);
  const cores = (s: Sample[]) =>
    median(s.map((x) => x.run.cpuMs / x.run.wallMs)).toFixed(2) + " cores";
  const sparkLabel = `Spark ${SPARK_VERSION} Structured Streaming, local[2]`;
  const workload = `${(total / 1e6).toFixed(2)}M ticks, ${SYMBOLS} symbols, 3 partitions, ` +
    `5 s triggers, exit after 10 s idle`;

  const tpClean = tp.filter((s) => s.diff && diffIsClean(s.diff)).length;
  const spBatches = sparkBatches(sp[sp.length - 1].run.stdout).filter((b) => b.inputRows > 0);
  const spKeepAllClean = sp.filter((s) => s.diffKeepAll && diffIsClean(s.diffKeepAll)).length;
  const spDiff = sp[sp.length - 1].diff!;
  const sparkWhy = spBatches.length === 1
    ? `it read the backlog in one micro-batch, and its watermark only applies from the next ` +
      `batch, so it kept the ${formatNumber(input.oracleLate)} late ticks tickpipe drops`
    : `it read the backlog in ${spBatches.length} micro-batches and judges each batch against ` +
      `the watermark the previous one left, so it kept late ticks that arrived in the same batch`;
  const correctness = `rows vs an oracle of the backlog (${formatNumber(input.windows)} ` +
    `windows, ${formatNumber(input.oracleLate)} late ticks): tickpipe equal in ${tpClean}/` +
    `${tp.length} runs; Spark (last run) ${describeDiff(spDiff)}, because ${sparkWhy}; ` +
    `Spark equals an oracle that keeps every late tick in ${spKeepAllClean}/${sp.length} runs`;

  return [
    rowOf({
      suite: "vs-spark",
      metric: `backlog drain, launch → exit (${workload}); tickpipe ` +
        `\`--trigger 5s --idle-timeout 10s\`, other flags default`,
      unit: "s",
      ours: wall(tp),
      baseline: wall(sp),
      baselineLabel: sparkLabel,
      lowerIsBetter: true,
      target: { op: ">=", value: 2, on: "ratio" },
      note: `both include their 10 s idle wait; raw kafkajs drain (exits at the last record): ` +
        `${formatNumber(median(wall(raw)))} s`,
    }),
    rowOf({
      suite: "vs-spark",
      metric: "ticks per CPU-second (user + system time of the process tree, launch → exit)",
      unit: "ticks/CPU-s",
      ours: perCpu(tp),
      baseline: perCpu(sp),
      baselineLabel: sparkLabel,
      target: { op: ">=", value: 4, on: "ratio" },
      note: `average cores used: tickpipe ${cores(tp)}, Spark ${cores(sp)}, raw drain ` +
        `${cores(raw)}; raw drain ${formatNumber(median(perCpu(raw)))} ticks/CPU-s`,
    }),
    rowOf({
      suite: "vs-spark",
      metric: "peak RSS (VmHWM of the process; Spark: the JVM, -Xmx1g as spark-submit's default)",
      unit: "MB",
      ours: rss(tp),
      baseline: rss(sp),
      baselineLabel: sparkLabel,
      lowerIsBetter: true,
      target: { op: ">=", value: 3, on: "ratio" },
      note: `ratio = Spark / tickpipe, so ≥ 3 means ≤ 1/3 of Spark's; raw drain ` +
        `${formatNumber(median(rss(raw)))} MB`,
    }),
    ...startupRows(samples, sparkLabel),
    rowOf({
      suite: "vs-spark",
      metric: "launch → whole backlog committed (tickpipe: progress offsets cover the topic; " +
        "Spark: end of the batch that read the last record)",
      unit: "s",
      ours: tp.map((s) => s.run.doneMs / 1000),
      baseline: sp.map((s) => s.run.doneMs / 1000),
      baselineLabel: sparkLabel,
      lowerIsBetter: true,
      note: `Spark batches with input (last run): ${spBatches.length}; shuffle partitions ` +
        `${SPARK_SHUFFLE_PARTITIONS}`,
    }),
    rowOf({
      suite: "vs-spark",
      metric: "rows equal to the oracle, % of windows",
      unit: "%",
      ours: tp.map((s) => pct(s.diff!)),
      baseline: sp.map((s) => pct(s.diff!)),
      baselineLabel: sparkLabel,
      target: { op: ">=", value: 100, on: "value" },
      note: correctness,
    }),
  ];
}
