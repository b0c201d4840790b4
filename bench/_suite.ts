/**
 * The contract between the harness (bench/run.ts) and the suites (bench/suites/*.ts), plus
 * helpers the suites share: interleaved ours/baseline runs, row building, module probing.
 * @module
 */

import type { BaseConfig } from "../common/config.ts";
import type { Logger } from "../common/log.ts";
import { meets, pairedRatio, summarize, type Summary, type Target } from "./_stats.ts";

/** What a suite gets from the harness. */
export interface SuiteContext {
  /** Short run (about two minutes for everything). */
  quick: boolean;
  /** Measured repetitions per benchmark (at least 3). */
  runs: number;
  /** Kafka and PostgreSQL settings (env or defaults). */
  config: BaseConfig;
  /** Unique id of this run: prefix of topics, consumer groups and KV files. */
  runId: string;
  /** Unique symbol prefix of this run (`BENCH_<id>_`): the only price_windows rows we delete. */
  symbolPrefix: string;
  /** Folder for this run's KV files and spools (under .data/bench/). */
  dataDir: string;
  /** Progress logger (stderr). */
  log: Logger;
  /** Backlog size of the opt-in vs-spark suite (`--vs-spark-ticks`; default: the suite's). */
  vsSparkTicks?: number;
}

/** One line of the results table. */
export interface Row {
  /** Suite name. */
  suite: string;
  /** What is measured, e.g. "ticks/s through ingest". */
  metric: string;
  /** Unit of `ours` and `baseline`, e.g. "ticks/s". */
  unit: string;
  /** Our figure over the runs. */
  ours: Summary;
  /** What the baseline is, e.g. "raw kafkajs sendBatch". */
  baselineLabel?: string;
  /** Baseline figure over the runs (same unit). */
  baseline?: Summary;
  /** Paired ratios ours/baseline. */
  ratio?: Summary;
  /** Target, if any. */
  target?: Target;
  /** Whether the median meets the target (undefined without a target). */
  met?: boolean;
  /** Free-form note (workload, caveats). */
  note?: string;
}

/** Outcome of one suite. */
export interface SuiteResult {
  /** Suite name. */
  suite: string;
  /** Title for the table. */
  title: string;
  /** measured; not measured (a dependency is missing); failed (it threw). */
  status: "measured" | "not measured" | "failed";
  /** Why it is not measured or failed. */
  reason?: string;
  /** Result rows. */
  rows: Row[];
  /** Wall time of the suite, ms. */
  durationMs: number;
}

/** A benchmark suite. */
export interface Suite {
  /** Name used by --only. */
  name: string;
  /** Title for the table. */
  title: string;
  /** Modules (repo-relative) that must exist; otherwise the suite is "not measured". */
  requires?: string[];
  /** Suite time limit in ms (default 4 min with --quick, 15 min otherwise). */
  timeoutMs?: (quick: boolean) => number;
  /** Runs the benchmarks and returns the rows. Throw NotMeasuredError to skip with a reason. */
  run(ctx: SuiteContext): Promise<Row[]>;
}

/** Thrown by a suite that cannot measure (missing module or API); not a failure. */
export class NotMeasuredError extends Error {
  /** Creates the error; the message is the reason shown in the table. */
  constructor(message: string) {
    super(message);
    this.name = "NotMeasuredError";
  }
}

/** Options for rowOf. */
export interface RowSpec {
  /** Suite name. */
  suite: string;
  /** Metric description. */
  metric: string;
  /** Unit. */
  unit: string;
  /** Our samples. */
  ours: number[];
  /** Baseline samples, paired by index with `ours`. */
  baseline?: number[];
  /** Baseline label. */
  baselineLabel?: string;
  /** Target. */
  target?: Target;
  /** Note. */
  note?: string;
  /** True when lower is better (ratio is then baseline/ours so that > 1 is still "better"). */
  lowerIsBetter?: boolean;
}

/** Builds a row: summaries, paired ratio and the target check. */
export function rowOf(spec: RowSpec): Row {
  const ours = summarize(spec.ours);
  const row: Row = { suite: spec.suite, metric: spec.metric, unit: spec.unit, ours };
  if (spec.baseline !== undefined) {
    row.baseline = summarize(spec.baseline);
    row.baselineLabel = spec.baselineLabel;
    row.ratio = spec.lowerIsBetter
      ? pairedRatio(spec.baseline, spec.ours)
      : pairedRatio(spec.ours, spec.baseline);
  }
  if (spec.target !== undefined) {
    row.target = spec.target;
    const value = spec.target.on === "ratio" ? row.ratio?.median : ours.median;
    row.met = value === undefined ? false : meets(value, spec.target);
  }
  if (spec.note !== undefined) row.note = spec.note;
  return row;
}

/**
 * Runs `ours` and `baseline` `options.runs` times each, interleaved ABBA (ours first on even runs,
 * baseline first on odd ones) after one unmeasured warm-up of each. Each function returns its
 * figure for that run. Returns the paired samples.
 */
export async function interleave(
  ours: (i: number) => Promise<number> | number,
  baseline: (i: number) => Promise<number> | number,
  options: { runs: number; warmup?: boolean; log?: Logger; label?: string },
): Promise<{ ours: number[]; baseline: number[] }> {
  const runs = options.runs;
  if (options.warmup ?? true) {
    await ours(-1);
    await baseline(-1);
  }
  const o: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < runs; i++) {
    if (i % 2 === 0) {
      o.push(await ours(i));
      b.push(await baseline(i));
    } else {
      b.push(await baseline(i));
      o.push(await ours(i));
    }
    options.log?.info(`${options.label ?? "run"} ${i + 1}/${runs}`, {
      ours: Math.round(o[i] * 1000) / 1000,
      baseline: Math.round(b[i] * 1000) / 1000,
    });
  }
  return { ours: o, baseline: b };
}

/** True when the repo-relative module exists. */
export async function moduleExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(new URL(`../${path}`, import.meta.url));
    return true;
  } catch {
    return false;
  }
}

/** Imports a repo-relative module, turning a failure into NotMeasuredError. */
export async function importModule<T = Record<string, unknown>>(path: string): Promise<T> {
  if (!(await moduleExists(path))) throw new NotMeasuredError(`${path} has not landed`);
  try {
    return await import(new URL(`../${path}`, import.meta.url).href) as T;
  } catch (e) {
    throw new NotMeasuredError(`${path} does not load: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** Throws NotMeasuredError unless `mod[name]` is a function; returns it. */
export function requireFunction<F>(
  mod: Record<string, unknown>,
  name: string,
  options: { path: string },
): F {
  const path = options.path;
  const f = mod[name];
  if (typeof f !== "function") {
    throw new NotMeasuredError(`${path} exports no function ${name}()`);
  }
  return f as F;
}

/** Forces a garbage collection when the runtime exposes one (--v8-flags=--expose-gc). */
export function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === "function") g();
}
