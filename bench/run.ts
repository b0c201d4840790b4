/**
 * The benchmark harness: `deno task bench [--quick] [--only a,b] [--runs N]`.
 *
 * Runs every suite (bench/suites/*.ts), each benchmark at least 3 times interleaved with its raw
 * baseline, prints the machine and a markdown table on stdout, and writes
 * `bench/results/<timestamp>.json`. Progress goes to stderr.
 * @module
 */

import { parseFlags, UsageError } from "../common/cli.ts";
import { type BaseConfig, loadBaseConfig } from "../common/config.ts";
import { createLogger, type Logger, redact } from "../common/log.ts";
import { formatSummary, formatTarget } from "./_stats.ts";
import {
  moduleExists,
  NotMeasuredError,
  type Suite,
  type SuiteContext,
  type SuiteResult,
} from "./_suite.ts";
import type { MachineInfo } from "./suites/_io.ts";

/** The default suites, in the order of issue 8 (then issue 13's backlog). */
export const SUITE_NAMES = [
  "decode",
  "ingest",
  "aggregator",
  "engine",
  "sink",
  "freshness",
  "memory",
  "recovery",
  "checkpoint",
  "backlog",
] as const;

/** Suites that run only when asked for (`--vs-spark`, or by name in `--only`). */
export const OPT_IN_SUITES = ["vs-spark"] as const;

const ALL_SUITES: readonly string[] = [...SUITE_NAMES, ...OPT_IN_SUITES];

/** Loads the suites (after flag parsing, so --help needs no permission). */
async function loadSuites(): Promise<Suite[]> {
  return await Promise.all([
    import("./suites/decode.ts").then((m) => m.decodeSuite),
    import("./suites/ingest.ts").then((m) => m.ingestSuite),
    import("./suites/aggregator.ts").then((m) => m.aggregatorSuite),
    import("./suites/engine.ts").then((m) => m.engineSuite),
    import("./suites/sink.ts").then((m) => m.sinkSuite),
    import("./suites/freshness.ts").then((m) => m.freshnessSuite),
    import("./suites/memory.ts").then((m) => m.memorySuite),
    import("./suites/recovery.ts").then((m) => m.recoverySuite),
    import("./suites/checkpoint.ts").then((m) => m.checkpointSuite),
    import("./suites/backlog.ts").then((m) => m.backlogSuite),
    import("./suites/vs_spark.ts").then((m) => m.vsSparkSuite),
  ]);
}

const USAGE = `Usage: deno task bench [--quick] [--only SUITE,..] [--vs-spark [--vs-spark-ticks N]]
                       [--runs N] [--out DIR] [--no-write] [--cleanup]

Runs the tickpipe benchmarks against the local Kafka and PostgreSQL (KAFKA_BROKERS, DATABASE_URL)
and prints a markdown table; every figure comes with a raw baseline measured in the same run.

  --quick          short run (about 5 minutes), smaller inputs
  --only LIST      comma-separated suites: ${ALL_SUITES.join(", ")}
  --vs-spark       also run the opt-in vs-spark suite: tickpipe's aggregator, the seed's Spark
                   Structured Streaming job (bench/spark, built with Maven) and a raw drain on
                   one backlog (never part of the default set or of --quick)
  --vs-spark-ticks N
                   backlog size of vs-spark (default 4850000; smaller for trials)
  --runs N         measured repetitions per benchmark (default 3, minimum 3)
  --out DIR        where the JSON result goes (default bench/results)
  --no-write       do not write the JSON result
  --cleanup        only delete what interrupted runs left behind (every topic named bench-*,
                   price_windows/late_ticks rows of symbols BENCH_*, .data/bench/), then exit;
                   do not use while another benchmark runs
  -h, --help       this help`;

const OPTIONS = {
  quick: { type: "boolean" },
  only: { type: "string" },
  runs: { type: "string" },
  out: { type: "string" },
  "no-write": { type: "boolean" },
  cleanup: { type: "boolean" },
  "vs-spark": { type: "boolean" },
  "vs-spark-ticks": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** The whole result file. */
export interface BenchReport {
  /** Start time, ISO. */
  startedAt: string;
  /** End time, ISO. */
  finishedAt: string;
  /** --quick run. */
  quick: boolean;
  /** Repetitions per benchmark. */
  runs: number;
  /** Unique run id (topics, KV, symbols). */
  runId: string;
  /** The machine. */
  machine: MachineInfo;
  /** Per-suite outcomes. */
  suites: SuiteResult[];
}

function suiteTimeoutMs(suite: Suite, quick: boolean): number {
  return suite.timeoutMs?.(quick) ?? (quick ? 240_000 : 900_000);
}

async function runSuite(suite: Suite, ctx: SuiteContext): Promise<SuiteResult> {
  const t0 = performance.now();
  const base = { suite: suite.name, title: suite.title };
  for (const path of suite.requires ?? []) {
    if (!(await moduleExists(path))) {
      return {
        ...base,
        status: "not measured",
        reason: `${path} has not landed`,
        rows: [],
        durationMs: 0,
      };
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = suiteTimeoutMs(suite, ctx.quick);
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Suite timed out after ${limit / 1000} s`)), limit);
    });
    const rows = await Promise.race([suite.run(ctx), timeout]);
    return { ...base, status: "measured", rows, durationMs: performance.now() - t0 };
  } catch (e) {
    const err = e as Error;
    const notMeasured = e instanceof NotMeasuredError;
    if (!notMeasured) ctx.log.error(`Suite ${suite.name} failed`, { error: err, stack: err.stack });
    return {
      ...base,
      status: notMeasured ? "not measured" : "failed",
      reason: redact(err.message),
      rows: [],
      durationMs: performance.now() - t0,
    };
  } finally {
    clearTimeout(timer);
  }
}

function cell(s: string): string {
  return s.replaceAll("|", "\\|");
}

/** The markdown table of a report (machine line, table, notes). */
export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const lines: string[] = [];
  lines.push(
    `Machine: ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB RAM, load ${m.loadavg}; ` +
      `Deno ${m.deno} (V8 ${m.v8}); Kafka ${m.kafka}; PostgreSQL ${m.postgres}; ${m.os}.`,
  );
  lines.push(
    `Run: ${report.quick ? "--quick" : "full"}, ${report.runs} runs per benchmark, ` +
      `interleaved with the baseline; figures are median (min–max); ratio = ours / baseline per ` +
      `run pair (for latency and memory: baseline / ours, so > 1 is better for both). ` +
      `${report.startedAt}.`,
  );
  lines.push("");
  lines.push("| # | Suite | Metric | Ours | Baseline | Ratio | Target | Met |");
  lines.push("| -: | --- | --- | --- | --- | --- | --- | --- |");
  report.suites.forEach((s, i) => {
    const n = ALL_SUITES.findIndex((x) => x === s.suite) + 1 || i + 1;
    if (s.status !== "measured") {
      lines.push(
        `| ${n} | ${cell(s.title)} | **${s.status}**: ${cell(s.reason ?? "")} | | | | | |`,
      );
      return;
    }
    for (const r of s.rows) {
      const ours = `${formatSummary(r.ours)} ${r.unit}`;
      const baseline = r.baseline
        ? `${formatSummary(r.baseline)} ${r.unit} (${r.baselineLabel ?? "baseline"})`
        : "n/a";
      const ratio = r.ratio ? formatSummary(r.ratio) : "n/a";
      const target = r.target ? formatTarget(r.target, r.unit) : "";
      const met = r.target === undefined ? "" : r.met ? "yes" : "**NO (missed)**";
      const metric = r.note ? `${r.metric}; ${r.note}` : r.metric;
      lines.push(
        `| ${n} | ${cell(s.title)} | ${cell(metric)} | ${cell(ours)} | ${cell(baseline)} | ` +
          `${ratio} | ${cell(target)} | ${met} |`,
      );
    }
  });
  return lines.join("\n");
}

/** Parses flags, runs the selected suites, prints the table, writes the JSON; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { values } = parseFlags(args, OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const runs = values.runs === undefined ? 3 : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 3) {
    throw new UsageError(`--runs "${values.runs}" is invalid: expected an integer >= 3`);
  }
  let names: string[] = [...SUITE_NAMES];
  if (values.only !== undefined) {
    names = values.only.split(",").map((s) => s.trim()).filter((s) => s !== "");
    for (const name of names) {
      if (!ALL_SUITES.includes(name)) {
        throw new UsageError(
          `--only names unknown suite "${name}": expected ${ALL_SUITES.join(", ")}`,
        );
      }
    }
  }
  if (values["vs-spark"] && !names.includes("vs-spark")) names.push("vs-spark");
  let vsSparkTicks: number | undefined;
  if (values["vs-spark-ticks"] !== undefined) {
    vsSparkTicks = Number(values["vs-spark-ticks"]);
    if (!Number.isSafeInteger(vsSparkTicks) || vsSparkTicks < 1000) {
      throw new UsageError(
        `--vs-spark-ticks "${values["vs-spark-ticks"]}" is invalid: expected an integer >= 1000`,
      );
    }
    if (!names.includes("vs-spark")) {
      throw new UsageError("--vs-spark-ticks needs --vs-spark (or vs-spark in --only)");
    }
  }
  const quick = values.quick ?? false;
  const config: BaseConfig = loadBaseConfig();
  const log: Logger = createLogger("bench");
  const { cleanupRun, cleanupStale, delay, killChildren, machineInfo } = await import(
    "./suites/_io.ts"
  );
  if (values.cleanup) {
    const r = await cleanupStale(config);
    log.info("Deleted leftovers of earlier runs", { ...r });
    return 0;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const id = `${Date.now().toString(36)}${crypto.randomUUID().slice(0, 4)}`;
  const runId = `bench-${id}`;
  const dataDir = `.data/bench/${runId}`;
  await Deno.mkdir(dataDir, { recursive: true });
  const ctx: SuiteContext = {
    quick,
    runs,
    config,
    runId,
    symbolPrefix: `BENCH_${id}_`,
    dataDir,
    log,
    vsSparkTicks,
  };

  const selected = (await loadSuites()).filter((s) => names.includes(s.name));
  const startedAt = new Date().toISOString();
  const machine = await machineInfo(config);
  log.info("Benchmark run", { runId, quick, runs, suites: selected.map((s) => s.name).join(",") });
  const results: SuiteResult[] = [];
  // Interrupted: still delete the run's topics, rows and files, and stop its children.
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) Deno.exit(130);
    interrupted = true;
    log.warn("Interrupted: cleaning up (signal again to skip)");
    // Stop the children, give in-flight statements a moment to land, then delete.
    killChildren();
    delay(2000).then(() => cleanupRun(ctx)).finally(() => Deno.exit(130));
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, onSignal);
  try {
    for (const suite of selected) {
      log.info(`Suite ${suite.name}: start`);
      const r = await runSuite(suite, ctx);
      log.info(`Suite ${suite.name}: ${r.status}`, {
        seconds: Math.round(r.durationMs / 100) / 10,
        reason: r.reason,
      });
      results.push(r);
    }
  } finally {
    await cleanupRun(ctx).catch((e) => log.warn("Cleanup failed", { error: e as Error }));
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(sig, onSignal);
  }
  const report: BenchReport = {
    startedAt,
    finishedAt: new Date().toISOString(),
    quick,
    runs,
    runId,
    machine,
    suites: results,
  };
  console.log(renderMarkdown(report));
  if (!values["no-write"]) {
    const dir = values.out ?? "bench/results";
    await Deno.mkdir(dir, { recursive: true });
    const path = `${dir}/${stamp}${quick ? "-quick" : ""}.json`;
    await Deno.writeTextFile(path, JSON.stringify(report, null, 2) + "\n");
    log.info("Wrote results", { path });
  }
  return results.some((r) => r.status === "failed") ? 1 : 0;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(e.message);
      code = 2;
    } else if ((e as Error).name === "ConfigError") {
      console.error((e as Error).message);
      code = 2;
    } else {
      console.error(e);
      code = 1;
    }
  }
  // kafkajs and pg leave timers and sockets behind in failed suites: exit explicitly.
  Deno.exit(code);
}
