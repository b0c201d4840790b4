/**
 * Shared parts of the backlog suites (backlog, vs-spark): a pre-filled backlog topic with its
 * oracle, whole processes measured from launch to exit (wall time, CPU time of the process tree,
 * peak RSS, startup), the tickpipe aggregator and the raw kafkajs drain as such processes, and the
 * window rows read back from PostgreSQL.
 * @module
 */

import type { Tick } from "../../aggregate/engine.ts";
import type { Kafka } from "../../common/kafka.ts";
import type { Pool } from "../../common/pg.ts";
import type { SuiteContext } from "../_suite.ts";
import { engineTickChunks } from "./_data.ts";
import { sampleRss, spawnCommand, tail, type TickMessage, tickMessage, uniqueOf } from "./_io.ts";
import type { ActualWindow, WindowOracle } from "./_oracle.ts";

// ------------------------------------------------------------------------------------------------
// CPU time from /proc

/** CPU times of a /proc/<pid>/stat line, in clock ticks. */
export interface ProcCpu {
  /** User time of the process (all its threads). */
  utime: number;
  /** System time of the process. */
  stime: number;
  /** User time of its waited-for children (and theirs). */
  cutime: number;
  /** System time of its waited-for children. */
  cstime: number;
}

/** Parses utime, stime, cutime and cstime (fields 14–17) of a /proc/<pid>/stat line. */
export function parseProcStat(text: string): ProcCpu {
  // The command name (field 2) is in parentheses and may hold spaces or ')': split after the last.
  const close = text.lastIndexOf(")");
  if (close < 0) throw new Error(`Not a /proc/<pid>/stat line: "${text.slice(0, 80)}"`);
  const f = text.slice(close + 2).trim().split(/\s+/);
  // f[0] is field 3 (state), so field k is f[k - 3].
  const num = (k: number) => {
    const v = Number(f[k - 3]);
    if (!Number.isFinite(v)) throw new Error(`Field ${k} of /proc/<pid>/stat is "${f[k - 3]}"`);
    return v;
  };
  return { utime: num(14), stime: num(15), cutime: num(16), cstime: num(17) };
}

let clockTicks: number | undefined;

/** Clock ticks per second of /proc times (`getconf CLK_TCK`, 100 if that fails). */
export async function clockTicksPerSecond(): Promise<number> {
  if (clockTicks !== undefined) return clockTicks;
  try {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output();
    const v = Number(new TextDecoder().decode(out.stdout).trim());
    clockTicks = out.success && v > 0 ? v : 100;
  } catch {
    clockTicks = 100;
  }
  return clockTicks;
}

/**
 * CPU time (user + system, ms) of this process's waited-for children so far. A child's share is
 * the difference across its run: the kernel adds a child's times (and those of the children it
 * waited for) when it is reaped, so this counts the whole process tree, every thread included.
 */
export async function childrenCpuMs(): Promise<number> {
  const cpu = parseProcStat(await Deno.readTextFile("/proc/self/stat"));
  return ((cpu.cutime + cpu.cstime) * 1000) / (await clockTicksPerSecond());
}

// ------------------------------------------------------------------------------------------------
// Whole-process measurement

/** One contender process, measured from launch to exit. */
export interface ProcessRun {
  /** Launch → exit, ms. */
  wallMs: number;
  /** User + system CPU time of the process tree, ms. */
  cpuMs: number;
  /** Peak resident set (VmHWM, sampled every 100 ms), MB. */
  peakRssMb: number;
  /** Launch → its first-record signal, ms (null if it never printed one). */
  startupMs: number | null;
  /** Launch → its "whole backlog processed" signal, ms. */
  doneMs: number;
  /** Exit code. */
  code: number;
  /** Stdout lines. */
  stdout: string[];
  /** Last stderr lines. */
  stderr: string[];
}

/** How measureProcess recognizes a contender's milestones. */
export interface ProcessSpec {
  /** Executable. */
  command: string;
  /** Arguments. */
  args: string[];
  /** Environment added to the inherited one. */
  env: Record<string, string>;
  /** True for the line that shows the first records were read. */
  isStartup: (line: string, stream: "stdout" | "stderr") => boolean;
  /** True for the line that shows the whole backlog was processed. */
  isDone: (line: string, stream: "stdout" | "stderr") => boolean;
  /** Kill (SIGKILL) and fail after this long. */
  timeoutMs: number;
  /** Name for errors. */
  what: string;
}

/**
 * Runs one process to its exit and measures it. Contenders must run one at a time: the CPU time
 * is this process's children-time delta across the run. Throws if it exits non-zero, times out,
 * or exits without its done signal.
 */
export async function measureProcess(spec: ProcessSpec): Promise<ProcessRun> {
  const cpu0 = await childrenCpuMs();
  let startupMs: number | null = null;
  let doneMs: number | null = null;
  const t0 = performance.now();
  const child = spawnCommand(spec.command, spec.args, {
    env: spec.env,
    onLine: (line, stream) => {
      const t = performance.now() - t0;
      if (startupMs === null && spec.isStartup(line, stream)) startupMs = t;
      if (doneMs === null && spec.isDone(line, stream)) doneMs = t;
    },
  });
  const rss = sampleRss(child.pid, 100);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), spec.timeoutMs);
  });
  const status = await Promise.race([child.status, timedOut]);
  const wallMs = performance.now() - t0;
  clearTimeout(timer);
  const peakRssMb = await rss.stop();
  if (status === "timeout") {
    child.kill("SIGKILL");
    await child.status.catch(() => {});
    throw new Error(
      `${spec.what} did not exit within ${spec.timeoutMs / 1000} s; stdout: ` +
        `${tail(child.stdout, 2)}; stderr: ${tail(child.stderr)}`,
    );
  }
  const cpuMs = (await childrenCpuMs()) - cpu0;
  if (status.code !== 0) {
    throw new Error(
      `${spec.what} exited with code ${status.code}; stderr: ${tail(child.stderr, 8)}`,
    );
  }
  if (doneMs === null) {
    throw new Error(
      `${spec.what} exited before it signalled the whole backlog done; stdout: ` +
        `${tail(child.stdout, 3)}; stderr: ${tail(child.stderr, 5)}`,
    );
  }
  return {
    wallMs,
    cpuMs,
    peakRssMb,
    startupMs,
    doneMs,
    code: status.code,
    stdout: child.stdout,
    stderr: child.stderr,
  };
}

// ------------------------------------------------------------------------------------------------
// The backlog

/** The pre-filled backlog's shape. */
export interface BacklogSpec {
  /** Topic (3 partitions). */
  topic: string;
  /** Ticks. */
  total: number;
  /** Symbols (symbol i in partition i % 3). */
  symbols: number;
  /** Event-time step between ticks, ms. */
  tickMs: number;
  /** Event time of the first tick. */
  start: number;
  /** Symbol prefix. */
  prefix: string;
}

/**
 * Writes the backlog (engineTickChunks: 2% out of order by up to 30 s, 0.1% an hour late), each
 * record to its tick's partition, and folds every tick into `oracles` in the same order. One plain
 * producer (acks=all); the partitions are written concurrently, each by one sequential loop of
 * 2,000-record batches (under the broker's 1 MB batch limit), so a partition's records land in
 * generation order even if a request is retried. Returns the seconds it took.
 */
export async function prefillBacklog(
  kafka: Kafka,
  spec: BacklogSpec,
  options: { oracles: WindowOracle[]; onProgress?: (written: number) => void },
): Promise<number> {
  const t0 = performance.now();
  const producer = kafka.producer();
  await producer.connect();
  let written = 0;
  try {
    const chunks = engineTickChunks(spec.total, spec.symbols, {
      partitions: 3,
      tickMs: spec.tickMs,
      start: spec.start,
      prefix: spec.prefix,
      chunkSize: 60_000,
    });
    for (const chunk of chunks) {
      const byPartition: TickMessage[][] = [[], [], []];
      for (const t of chunk as Tick[]) {
        for (const o of options.oracles) o.fold(t);
        byPartition[t.partition].push({ ...tickMessage(t), partition: t.partition });
      }
      await Promise.all(byPartition.map(async (messages) => {
        for (let i = 0; i < messages.length; i += 2000) {
          await producer.sendBatch({
            acks: -1,
            topicMessages: [{ topic: spec.topic, messages: messages.slice(i, i + 2000) }],
          });
        }
      }));
      written += chunk.length;
      options.onProgress?.(written);
    }
  } finally {
    await producer.disconnect().catch(() => {});
  }
  return (performance.now() - t0) / 1000;
}

// ------------------------------------------------------------------------------------------------
// Contenders

/** Environment added to the inherited one for Deno children: the run's Kafka and PostgreSQL. */
export function denoEnv(
  ctx: SuiteContext,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    NO_COLOR: "1",
    KAFKA_BROKERS: ctx.config.brokers.join(","),
    DATABASE_URL: ctx.config.databaseUrl,
    ...extra,
  };
}

/** Sum of the checkpointed next offsets of a progress JSON line (0 for other lines). */
export function committedOf(line: string): number {
  if (!line.startsWith("{")) return 0;
  try {
    const p = JSON.parse(line) as { offsets?: Record<string, number> };
    return Object.values(p.offsets ?? {}).reduce((a, b) => a + b, 0);
  } catch {
    return 0;
  }
}

/** Stderr log lines of the aggregator that show its consumer got its partitions (then fetches). */
export const AGGREGATOR_ASSIGNED = /partitions assigned|consumer (re)?joined|assigned partitions/i;

/**
 * `deno run -P=aggregate main.ts aggregate` on `topic` with a fresh KV file and consumer group,
 * `flags` added (the suites pass only --trigger and --idle-timeout), at LOG_LEVEL=info so that its
 * partition assignment is visible. Startup: launch → that log line; done: launch → the progress
 * line whose offsets cover the `total` records.
 */
export async function runAggregatorProcess(
  ctx: SuiteContext,
  options: { topic: string; total: number; flags: string[]; timeoutMs: number; name: string },
): Promise<ProcessRun> {
  const { topic, total } = options;
  const kv = `${ctx.dataDir}/${uniqueOf(ctx, `${options.name}-kv`)}.kv`;
  return await measureProcess({
    command: Deno.execPath(),
    args: [
      "run",
      "-P=aggregate",
      "main.ts",
      "aggregate",
      "--topic",
      topic,
      "--kv",
      kv,
      "--group",
      uniqueOf(ctx, `${options.name}-group`),
      ...options.flags,
    ],
    env: denoEnv(ctx, { LOG_LEVEL: "info", LOG_FORMAT: "text" }),
    isStartup: (line, stream) => stream === "stderr" && AGGREGATOR_ASSIGNED.test(line),
    isDone: (line, stream) => stream === "stdout" && committedOf(line) >= total,
    timeoutMs: options.timeoutMs,
    what: "The aggregator",
  });
}

/**
 * The raw baseline: `bench/suites/_raw_child.ts drain <topic> <group> <total> exit`, a plain
 * kafkajs eachBatch consumer in a fresh group that counts records and exits once it has seen
 * `total`. Startup: launch → its first batch; done: launch → the last record.
 */
export async function runRawDrainProcess(
  ctx: SuiteContext,
  options: { topic: string; total: number; timeoutMs: number; name: string },
): Promise<ProcessRun> {
  return await measureProcess({
    command: Deno.execPath(),
    args: [
      "run",
      "-A",
      "bench/suites/_raw_child.ts",
      "drain",
      options.topic,
      uniqueOf(ctx, `${options.name}-raw`),
      String(options.total),
      "exit",
    ],
    env: denoEnv(ctx, { LOG_LEVEL: "warn" }),
    isStartup: (line, stream) => stream === "stdout" && line.startsWith("first"),
    isDone: (line, stream) => stream === "stdout" && line.startsWith("done"),
    timeoutMs: options.timeoutMs,
    what: "The raw drain",
  });
}

// ------------------------------------------------------------------------------------------------
// Rows written

interface WindowRowDb {
  symbol: string;
  start_ms: string;
  tick_count: string;
  avg_price: number;
  open_price: number;
  high_price: number;
  low_price: number;
  close_price: number;
}

function toActual(r: WindowRowDb): ActualWindow {
  return {
    symbol: r.symbol,
    start: Number(r.start_ms),
    count: Number(r.tick_count),
    avg: r.avg_price,
    open: r.open_price,
    high: r.high_price,
    low: r.low_price,
    close: r.close_price,
  };
}

const COLUMNS = "symbol, (extract(epoch FROM window_start) * 1000)::bigint::text AS start_ms, " +
  "tick_count::text, avg_price, open_price, high_price, low_price, close_price";

/** The 5-minute rows of `table` (price_windows or the Spark job's) for symbols with `prefix`. */
export async function readWindows(
  pool: Pool,
  options: { table: string; prefix: string },
): Promise<ActualWindow[]> {
  const r = await pool.query<WindowRowDb>(
    `SELECT ${COLUMNS} FROM ${options.table} WHERE left(symbol, length($1)) = $1 ` +
      `AND window_end - window_start = interval '5 minutes'`,
    [options.prefix],
  );
  return r.rows.map(toActual);
}
