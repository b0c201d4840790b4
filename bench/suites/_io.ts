/**
 * I/O helpers of the suites: Kafka and PostgreSQL clients, unique topics (tracked and deleted at
 * the end of the run), topic pre-filling, the run's cleanup, the machine description, and child
 * processes with peak-RSS sampling from /proc/<pid>/status.
 * @module
 */

import type { Tick } from "../../aggregate/engine.ts";
import { pumpLines } from "../../common/child.ts";
import type { BaseConfig } from "../../common/config.ts";
import { type Admin, createKafka, type Kafka } from "../../common/kafka.ts";
import { createLogger } from "../../common/log.ts";
import { createPool, type Pool } from "../../common/pg.ts";
import type { SuiteContext } from "../_suite.ts";
import { quote } from "./_data.ts";

const quiet = createLogger("bench.kafka", { level: "error" });
const createdTopics = new Set<string>();
const liveChildren = new Set<Deno.ChildProcess>();

/** A kafkajs client for benchmarks (errors only in the log). */
export function benchKafka(config: BaseConfig, clientId = "tickpipe-bench"): Kafka {
  return createKafka(config.brokers, { clientId, logger: quiet });
}

/** A pg pool for benchmarks. */
export function benchPool(config: BaseConfig, max = 4): Pool {
  return createPool(config.databaseUrl, { applicationName: "tickpipe-bench", max });
}

/** A unique topic `<runId>-<name>-<rand>` (default 3 partitions, no retention), tracked for cleanup. */
export async function createTopic(
  ctx: SuiteContext,
  admin: Admin,
  options: { name: string; partitions?: number },
): Promise<string> {
  const { name, partitions = 3 } = options;
  const topic = `${ctx.runId}-${name}-${crypto.randomUUID().slice(0, 6)}`;
  createdTopics.add(topic);
  createdTopics.add(`${topic}.dlq`); // ingest creates it
  // No time-based retention: pre-filled records must not be deleted while a suite reads them.
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{
      topic,
      numPartitions: partitions,
      replicationFactor: 1,
      configEntries: [{ name: "retention.ms", value: "-1" }],
    }],
  });
  return topic;
}

/** Event-time origin for pre-filled topics: a window boundary `hoursAgo` hours before now. */
export function recentStart(hoursAgo = 2, windowMs = 300_000): number {
  return Math.floor((Date.now() - hoursAgo * 3_600_000) / windowMs) * windowMs;
}

/** A unique name (consumer group, KV file) of this run. */
export function uniqueOf(ctx: SuiteContext, name: string): string {
  return `${ctx.runId}-${name}-${crypto.randomUUID().slice(0, 6)}`;
}

/** The Kafka record ingest writes for a tick (value = normalized tick JSON, header ingest_ms). */
export interface TickMessage {
  /** Symbol. */
  key: string;
  /** JSON of the normalized tick. */
  value: string;
  /** Event time, epoch ms as a string. */
  timestamp: string;
  /** ingest_ms header. */
  headers: Record<string, string>;
  /** Explicit partition (default: kafkajs' partitioner on the key). */
  partition?: number;
}

/**
 * Ingest's record for an engine tick (same shape as ingest/ingest.ts tickRecord: the value is the
 * JSON of a full decoded quote, 15 fields).
 */
export function tickMessage(t: Tick, receivedMs = t.eventTime): TickMessage {
  return {
    key: t.symbol,
    value: JSON.stringify(
      quote(t.symbol, { price: t.price, time: t.eventTime, volume: 1000 + t.offset }),
    ),
    timestamp: String(t.eventTime),
    headers: { ingest_ms: String(receivedMs) },
  };
}

/**
 * Writes `messages` to `topic` with a plain kafkajs producer (batches of 3000, acks=all),
 * partitioned by key like ingest. Returns the number written.
 */
export async function produceAll(
  kafka: Kafka,
  options: { topic: string; messages: readonly TickMessage[]; batchSize?: number },
): Promise<number> {
  const { topic, messages, batchSize = 3000 } = options;
  const producer = kafka.producer();
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += batchSize) {
      await producer.sendBatch({
        acks: -1,
        topicMessages: [{ topic, messages: messages.slice(i, i + batchSize) as TickMessage[] }],
      });
    }
  } finally {
    await producer.disconnect().catch(() => {});
  }
  return messages.length;
}

/** Total records in `topic` (sum of high - low over partitions). */
export async function topicSize(admin: Admin, topic: string): Promise<number> {
  let n = 0;
  for (const r of await admin.fetchTopicOffsets(topic)) n += Number(r.high) - Number(r.low);
  return n;
}

/** Deletes this run's rows (by symbol prefix / topic) from price_windows, late_ticks, progress. */
export async function deleteRows(
  pool: Pool,
  ctx: SuiteContext,
  options: { topics?: string[] } = {},
): Promise<void> {
  const topics = options.topics ?? [];
  const prefix = ctx.symbolPrefix;
  await pool.query("DELETE FROM price_windows WHERE left(symbol, length($1)) = $1", [prefix]);
  await pool.query("DELETE FROM late_ticks WHERE left(symbol, length($1)) = $1", [prefix]);
  await deleteSparkRows(pool, prefix);
  if (topics.length > 0) {
    await pool.query("DELETE FROM aggregator_progress WHERE topic = ANY($1::text[])", [topics]);
  }
}

/** Table the vs-spark suite's Spark job upserts into (created by the job, bench only). */
export const SPARK_TABLE = "spark_price_windows";

/** Deletes the rows of symbols starting with `prefix` from the Spark job's table, if it exists. */
export async function deleteSparkRows(pool: Pool, prefix: string): Promise<number> {
  const exists = await pool.query("SELECT to_regclass($1) IS NOT NULL AS ok", [SPARK_TABLE]);
  if (!exists.rows[0].ok) return 0;
  const r = await pool.query(
    `DELETE FROM ${SPARK_TABLE} WHERE left(symbol, length($1)) = $1`,
    [prefix],
  );
  return r.rowCount ?? 0;
}

/** Applies the migrations (idempotent) so in-process suites find the tables. */
export async function ensureSchema(pool: Pool): Promise<void> {
  const { migrate } = await import("../../sql/migrate.ts");
  await migrate(pool, { logger: createLogger("bench.migrate", { level: "warn" }) });
}

/** Kills (SIGKILL) every child process the suites started that is still running. */
export function killChildren(): void {
  for (const p of liveChildren) {
    try {
      p.kill("SIGKILL");
    } catch { /* exited */ }
  }
}

/** End-of-run cleanup: this run's children, topics, rows and KV/spool folder. */
export async function cleanupRun(ctx: SuiteContext): Promise<void> {
  killChildren();
  const topics = [...createdTopics];
  const kafka = benchKafka(ctx.config, "tickpipe-bench-cleanup");
  const admin = kafka.admin();
  try {
    await admin.connect();
    const existing = new Set(await admin.listTopics());
    const mine = topics.filter((t) => existing.has(t));
    if (mine.length > 0) await admin.deleteTopics({ topics: mine, timeout: 10_000 });
    ctx.log.info("Deleted topics", { count: mine.length });
  } catch (e) {
    ctx.log.warn("Could not delete topics", { error: e as Error, topics: topics.join(",") });
  } finally {
    await admin.disconnect().catch(() => {});
  }
  const pool = benchPool(ctx.config, 1);
  try {
    await deleteRows(pool, ctx, { topics: topics.filter((t) => !t.endsWith(".dlq")) });
  } catch (e) {
    ctx.log.warn("Could not delete rows", { error: e as Error });
  } finally {
    await pool.end().catch(() => {});
  }
  await Deno.remove(ctx.dataDir, { recursive: true }).catch(() => {});
}

/** What cleanupStale deleted. */
export interface StaleCleanup {
  /** Topics deleted. */
  topics: number;
  /** price_windows rows deleted. */
  windows: number;
  /** late_ticks rows deleted. */
  late: number;
}

/**
 * Deletes what interrupted runs left: every topic named `bench-*` (and the aggregator_progress
 * rows of those topics), price_windows and late_ticks rows of symbols `BENCH_*`, and .data/bench/.
 * Not for use while a benchmark runs.
 */
export async function cleanupStale(config: BaseConfig): Promise<StaleCleanup> {
  const kafka = benchKafka(config, "tickpipe-bench-cleanup");
  const admin = kafka.admin();
  let topics: string[] = [];
  try {
    await admin.connect();
    topics = (await admin.listTopics()).filter((t) => t.startsWith("bench-"));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 10_000 });
  } finally {
    await admin.disconnect().catch(() => {});
  }
  const pool = benchPool(config, 1);
  try {
    const prefix = ["BENCH_"];
    const w = await pool.query(
      "DELETE FROM price_windows WHERE left(symbol, length($1)) = $1",
      prefix,
    );
    const l = await pool.query(
      "DELETE FROM late_ticks WHERE left(symbol, length($1)) = $1",
      prefix,
    );
    await deleteSparkRows(pool, "BENCH_");
    await pool.query("DELETE FROM aggregator_progress WHERE topic LIKE 'bench-%'");
    await Deno.remove(".data/bench", { recursive: true }).catch(() => {});
    return { topics: topics.length, windows: w.rowCount ?? 0, late: l.rowCount ?? 0 };
  } finally {
    await pool.end().catch(() => {});
  }
}

/** The machine the run is on. */
export interface MachineInfo {
  /** Logical CPUs. */
  cpus: number;
  /** CPU model name. */
  cpuModel: string;
  /** Total memory, GiB. */
  memoryGiB: number;
  /** 1/5/15-minute load averages at the start. */
  loadavg: string;
  /** OS and kernel. */
  os: string;
  /** Deno version. */
  deno: string;
  /** V8 version. */
  v8: string;
  /** Kafka broker version (from its jars) or "unknown". */
  kafka: string;
  /** PostgreSQL server version or "unknown". */
  postgres: string;
}

async function tryOr<T>(fn: () => Promise<T> | T, fallback: T): Promise<T> {
  try {
    return await fn();
  } catch {
    return fallback;
  }
}

/** Describes the machine, Deno, Kafka and PostgreSQL (each part "unknown" when unavailable). */
export async function machineInfo(config: BaseConfig): Promise<MachineInfo> {
  const cpuModel = await tryOr(async () => {
    const text = await Deno.readTextFile("/proc/cpuinfo");
    return /model name\s*:\s*(.+)/.exec(text)?.[1]?.trim() ?? "unknown";
  }, "unknown");
  const memoryGiB = await tryOr(
    () => Math.round((Deno.systemMemoryInfo().total / 1024 ** 3) * 10) / 10,
    NaN,
  );
  const loadavg = await tryOr(() => Deno.loadavg().map((x) => x.toFixed(2)).join("/"), "unknown");
  const os = await tryOr(() => `${Deno.build.os} ${Deno.osRelease()}`, Deno.build.os);
  const kafka = await tryOr(async () => {
    for await (const e of Deno.readDir(".data/kafka/lib")) {
      const m = /^kafka-server-(\d[\w.-]*)\.jar$/.exec(e.name);
      if (m) return m[1];
    }
    return "unknown";
  }, "unknown");
  const postgres = await tryOr(async () => {
    const pool = benchPool(config, 1);
    try {
      const r = await pool.query("SHOW server_version");
      return String(r.rows[0].server_version).split(" ")[0];
    } finally {
      await pool.end().catch(() => {});
    }
  }, "unknown");
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel,
    memoryGiB,
    loadavg,
    os,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    kafka,
    postgres,
  };
}

// ------------------------------------------------------------------------------------------------
// Child processes

/** A spawned child with line-wise output and peak-RSS sampling. */
export interface Child {
  /** Process id. */
  pid: number;
  /** The Deno child process. */
  process: Deno.ChildProcess;
  /** Resolves with the exit status. */
  status: Promise<Deno.CommandStatus>;
  /** Lines of stdout so far. */
  stdout: string[];
  /** Lines of stderr so far (last 200). */
  stderr: string[];
  /** Resolves with the first stdout line matching `test` (rejects if the child exits first or after `timeoutMs`). */
  waitLine(test: (line: string) => boolean, timeoutMs: number): Promise<string>;
  /** Sends a signal (ignores an already exited child). */
  kill(signal?: Deno.Signal): void;
}

/** Spawns `deno <args>` with piped output (env adds to the inherited environment). */
export function spawnDeno(args: string[], env: Record<string, string> = {}): Child {
  return spawnCommand(Deno.execPath(), args, { env: { NO_COLOR: "1", LOG_LEVEL: "warn", ...env } });
}

/**
 * Spawns `command <args>` with piped output, tracked for killChildren (env adds to the inherited
 * environment). `onLine` sees every output line as it arrives, with its stream.
 */
export function spawnCommand(
  command: string,
  args: string[],
  options: {
    env?: Record<string, string>;
    onLine?: (line: string, stream: "stdout" | "stderr") => void;
  } = {},
): Child {
  const onLine = options.onLine;
  const cmd = new Deno.Command(command, {
    args,
    env: options.env ?? {},
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const process = cmd.spawn();
  liveChildren.add(process);
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters: { test: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  const outDone = pumpLines(process.stdout, (line) => {
    onLine?.(line, "stdout");
    stdout.push(line);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i].test(line)) {
        waiters[i].resolve(line);
        waiters.splice(i, 1);
      }
    }
  });
  const errDone = pumpLines(process.stderr, (line) => {
    onLine?.(line, "stderr");
    stderr.push(line);
    if (stderr.length > 200) stderr.shift();
  });
  const status = process.status.then(async (s) => {
    liveChildren.delete(process);
    await Promise.all([outDone, errDone]);
    return s;
  });
  return {
    pid: process.pid,
    process,
    status,
    stdout,
    stderr,
    waitLine(test, timeoutMs) {
      const seen = stdout.find(test);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`No matching output within ${timeoutMs} ms; stderr: ${tail(stderr)}`));
        }, timeoutMs);
        waiters.push({
          test,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        status.then((s) => {
          clearTimeout(timer);
          reject(new Error(`Child exited with code ${s.code} first; stderr: ${tail(stderr)}`));
        });
      });
    },
    kill(signal: Deno.Signal = "SIGTERM") {
      try {
        process.kill(signal);
      } catch { /* already exited */ }
    },
  };
}

/** The last lines of `lines`, joined, for error messages. */
export function tail(lines: readonly string[], n = 5): string {
  return lines.slice(-n).join(" | ").slice(-1500);
}

/** VmHWM (peak resident set) of `pid` in MB, or NaN if the process is gone. */
export async function peakRssMb(pid: number): Promise<number> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(text);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Samples VmHWM of `pid` every `everyMs` until stopped; `stop()` returns the highest seen (MB). */
export function sampleRss(pid: number, everyMs = 200): { stop(): Promise<number> } {
  let peak = NaN;
  let running = true;
  const loop = (async () => {
    while (running) {
      const v = await peakRssMb(pid);
      if (!Number.isNaN(v) && !(v <= peak)) peak = v;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      const v = await peakRssMb(pid);
      if (!Number.isNaN(v) && !(v <= peak)) peak = v;
      running = false;
      await loop;
      return peak;
    },
  };
}

/** Resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` every `everyMs` until it returns true or `timeoutMs` passes (then throws `what`). */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  options: { timeoutMs: number; what: string; everyMs?: number },
): Promise<void> {
  const { timeoutMs, what, everyMs = 10 } = options;
  const until = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > until) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await delay(everyMs);
  }
}
