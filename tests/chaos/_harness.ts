/**
 * Chaos harness: a private Kafka broker (127.0.0.1:19092, controller 19093) and a private
 * PostgreSQL cluster (127.0.0.1:15432, password CHAOS_PASSWORD) under `.data/chaos`, so scenarios
 * can kill and stop them without touching the shared services on 9092/5432. Components run as
 * real subprocesses under their own permission set with only the net list replaced
 * (`deno run -P=<set> --allow-net=<chaos hosts> main.ts <cmd>`); every output line is kept in
 * memory and appended to `.data/chaos/logs/<name>.log` (scenario 8 greps all of them for the
 * database password).
 * @module
 */

import { denoRunArgs, pumpLines } from "../../common/child.ts";
import { killPid, portOpen } from "../../services/_process.ts";
import { startKafka, stopKafka } from "../../services/kafka.ts";
import { startPostgres, stopPostgres } from "../../services/postgres.ts";
import { createKafka, ensureTopic, type Kafka } from "../../common/kafka.ts";
import { createLogger } from "../../common/log.ts";
import { createPool, type Pool } from "../../common/pg.ts";
import { migrate } from "../../sql/migrate.ts";
import { processLockPath } from "../../aggregate/lease.ts";

/** "short" (default, runs inside `deno task test`) or "full" (CHAOS_PROFILE=full). */
export const PROFILE: "short" | "full" = Deno.env.get("CHAOS_PROFILE") === "full"
  ? "full"
  : "short";
/** Picks the short or the full value of a scenario parameter. */
export const pick = <T>(short: T, full: T): T => PROFILE === "full" ? full : short;

/** Absolute project root (with a trailing slash). */
export const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
/** Absolute data dir of the chaos services. */
export const CHAOS_DIR = `${ROOT}.data/chaos`;
/** Chaos broker port. */
export const KAFKA_PORT = 19092;
/** Chaos broker address. */
export const BROKER = `127.0.0.1:${KAFKA_PORT}`;
/** Chaos PostgreSQL port. */
export const PG_PORT = 15432;
/** The chaos cluster's postgres password: must never appear in any output. */
export const CHAOS_PASSWORD = "s3cr3t-pw-XYZ";
/** DATABASE_URL of the chaos cluster. */
export const DB_URL = `postgres://postgres:${CHAOS_PASSWORD}@127.0.0.1:${PG_PORT}/tickpipe`;
/** Net list of the chaos services (replaces the permission sets' net lists). */
export const CHAOS_NET = `${BROKER},127.0.0.1:${PG_PORT}`;
/** Folder of every component's output during chaos runs. */
export const LOG_DIR = `${CHAOS_DIR}/logs`;
/** Folder holding the `deno` shim the sensor launches (adds --allow-net, see ensureDenoShim). */
export const SHIM_DIR = `${CHAOS_DIR}/bin`;

/** Test options for kafkajs/pg tests. */
export const testOpts = { sanitizeOps: false, sanitizeResources: false };

/** A quiet logger. */
export const quiet = createLogger("chaos", { level: "error" });

/** Sleeps `ms`. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A unique name for a topic / prefix. */
export function uniq(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}`;
}

/** Waits until `cond` holds (polling), or throws naming `what`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 60_000,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(intervalMs);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** A kafkajs client for the chaos broker. */
export function chaosKafka(): Kafka {
  return createKafka([BROKER], { clientId: "tickpipe-chaos", logger: quiet });
}

async function kafkaAnswers(): Promise<boolean> {
  const admin = createKafka([BROKER], {
    clientId: "tickpipe-chaos-probe",
    logger: quiet,
  }).admin();
  try {
    await Promise.race([
      (async () => {
        await admin.connect();
        await admin.listTopics();
      })(),
      sleep(5000).then(() => {
        throw new Error("probe timeout");
      }),
    ]);
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** Starts (or reuses) the chaos broker; its jars are linked from the shared `.data/kafka/lib`. */
export async function ensureKafka(): Promise<"started" | "running"> {
  await Deno.mkdir(`${CHAOS_DIR}/kafka`, { recursive: true });
  const lib = `${CHAOS_DIR}/kafka/lib`;
  if (!(await exists(lib)) && (await exists(`${ROOT}.data/kafka/lib`))) {
    await Deno.symlink(`${ROOT}.data/kafka/lib`, lib);
  }
  const r = await startKafka({
    dataDir: CHAOS_DIR,
    serviceDir: `${ROOT}services/kafka`,
    port: KAFKA_PORT,
    logger: quiet,
    probe: kafkaAnswers,
  });
  // The port can open before the broker serves metadata: wait for a real answer.
  await until(kafkaAnswers, "the chaos broker to answer", 90_000, 500);
  return r;
}

/** kill -9 of the chaos broker (never the shared one: it is found by the chaos pid file). */
export async function killKafka(): Promise<boolean> {
  return await stopKafka(CHAOS_DIR, { kill: true });
}

/** Starts (or reuses) the chaos PostgreSQL cluster and applies the migrations. */
export async function ensurePostgres(): Promise<void> {
  await startPostgres({ dataDir: CHAOS_DIR, databaseUrl: DB_URL, logger: quiet, install: false });
  const pool = chaosPool();
  try {
    await migrate(pool, { logger: quiet });
  } finally {
    await pool.end();
  }
}

/** Stops the chaos PostgreSQL cluster (pg_ctl fast shutdown). */
export async function stopChaosPostgres(): Promise<boolean> {
  return await stopPostgres(CHAOS_DIR);
}

/** Stops both chaos services (used by the teardown file). */
export async function stopAll(): Promise<void> {
  await stopKafka(CHAOS_DIR).catch(() => {});
  if (await portOpen("127.0.0.1", PG_PORT)) await stopPostgres(CHAOS_DIR).catch(() => {});
}

/** A pg pool on the chaos cluster. */
export function chaosPool(): Pool {
  return createPool(DB_URL, { applicationName: "tickpipe-chaos-test" });
}

/**
 * The sensor launches the aggregator as `deno run -P=aggregate ...` by name from PATH. Under
 * chaos that child must reach the chaos ports, so the sensor runs with PATH starting with
 * SHIM_DIR, whose `deno` execs the real deno with `--allow-net=<chaos hosts>` (replacing the
 * set's net list, nothing else) and appends $CHAOS_AGG_EXTRA to the aggregator's flags (e.g. a
 * short --lease-ttl so a kill -9'd run's lease expires in seconds, not 30 s).
 */
export async function ensureDenoShim(): Promise<string> {
  await Deno.mkdir(SHIM_DIR, { recursive: true });
  const shim = `${SHIM_DIR}/deno`;
  const script = `#!/bin/sh
# tickpipe chaos test shim: see tests/chaos/_harness.ts ensureDenoShim
if [ "$1" = "run" ]; then
  shift
  exec "${Deno.execPath()}" run --allow-net=${CHAOS_NET} "$@" $CHAOS_AGG_EXTRA
fi
exec "${Deno.execPath()}" "$@"
`;
  await Deno.writeTextFile(shim, script, { mode: 0o755 });
  await Deno.chmod(shim, 0o755);
  return shim;
}

/** A component subprocess with its output lines. */
export interface Proc {
  /** Process id. */
  pid: number;
  /** Every stdout and stderr line so far. */
  lines: string[];
  /** Resolves to the exit code once the output is drained. */
  status: Promise<number>;
  /** Sends a signal (ignored once exited). */
  kill(signal?: Deno.Signal): void;
  /** True once exited. */
  exited(): boolean;
}

/**
 * Runs `main.ts <args>` under permission set `set` with the net list replaced by `net`
 * (default: the chaos services). Output lines are collected and appended to LOG_DIR/<name>.log.
 */
export async function spawnCli(
  set: string,
  args: string[],
  options: { name: string; net?: string; env?: Record<string, string>; path?: string },
): Promise<Proc> {
  await Deno.mkdir(LOG_DIR, { recursive: true });
  const log = await Deno.open(`${LOG_DIR}/${options.name}.log`, {
    write: true,
    create: true,
    append: true,
  });
  const net = options.net === "" ? [] : [`--allow-net=${options.net ?? CHAOS_NET}`];
  const env: Record<string, string> = { NO_COLOR: "1", ...options.env };
  if (options.path) env.PATH = `${options.path}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`;
  const [command, ...rest] = args;
  const child = new Deno.Command(Deno.execPath(), {
    args: denoRunArgs(command, rest, { permissionSet: set, denoFlags: net }),
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const enc = new TextEncoder();
  const pump = (s: ReadableStream<Uint8Array>) =>
    pumpLines(s, (l) => {
      lines.push(l);
      log.writeSync(enc.encode(l + "\n"));
    });
  let done = false;
  const status = Promise.all([child.status, pump(child.stdout), pump(child.stderr)]).then(
    ([s]) => {
      done = true;
      log.close();
      return s.code;
    },
  );
  return {
    pid: child.pid,
    lines,
    status,
    exited: () => done,
    kill(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch { /* exited */ }
    },
  };
}

/** kill -9 of one pid we started (or that our sensor started). */
export async function kill9(pid: number): Promise<void> {
  await killPid(pid, "KILL").catch(() => {});
}

/** A Kafka record read back. */
export interface Msg {
  /** Partition. */
  partition: number;
  /** Offset. */
  offset: number;
  /** Key. */
  key: string | null;
  /** Value (UTF-8). */
  value: string;
  /** Headers. */
  headers: Record<string, string>;
}

/** Reads every record of `topic` up to its end offsets at call time. */
export async function readTopic(kafka: Kafka, topic: string, timeoutMs = 120_000): Promise<Msg[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const want = new Map(ends.map((e) => [e.partition, Number(e.high)]));
  const total = [...want.values()].reduce((a, b) => a + b, 0);
  const out: Msg[] = [];
  if (total === 0) return out;
  const consumer = kafka.consumer({ groupId: uniq("chaos-read"), maxBytes: 50 * 1024 * 1024 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const dec = new TextDecoder();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`Timed out reading ${topic}: ${out.length}/${total}`)),
        timeoutMs,
      );
      consumer.run({
        eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
          for (const m of batch.messages) {
            const headers: Record<string, string> = {};
            for (const [k, v] of Object.entries(m.headers ?? {})) headers[k] = String(v);
            out.push({
              partition: batch.partition,
              offset: Number(m.offset),
              key: m.key ? dec.decode(m.key) : null,
              value: m.value ? dec.decode(m.value) : "",
              headers,
            });
            resolveOffset(m.offset);
          }
          await heartbeat();
          if (out.length >= total) {
            clearTimeout(timer);
            resolve();
          }
        },
      }).catch(reject);
    });
  } finally {
    await consumer.disconnect().catch(() => {});
  }
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

/** Creates `topic` (and optionally its DLQ) with `partitions` partitions on the chaos broker. */
export async function createTopics(kafka: Kafka, topics: string[], partitions = 3) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    // The same creation path as ingest (tick topic configuration: no time-based retention,
    // since the replayed streams carry event times far in the past).
    for (const topic of topics) await ensureTopic(admin, topic, { partitions });
  } finally {
    await admin.disconnect();
  }
}

/** Deletes topics (best effort). */
export async function deleteTopics(kafka: Kafka, topics: string[]) {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.deleteTopics({ topics, timeout: 10_000 }).catch(() => {});
  } catch {
    /* broker gone */
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** Removes a KV file, its -wal/-shm and the process lock `topic`'s aggregators left beside it. */
export async function removeKv(path: string, topic: string): Promise<void> {
  for (const s of ["", "-wal", "-shm"]) await Deno.remove(path + s).catch(() => {});
  await Deno.remove(processLockPath(path, topic)).catch(() => {});
}

/** Prints the scenario's one-line summary (also appended to LOG_DIR/summary.log). */
export async function summary(line: string): Promise<void> {
  const text = `CHAOS[${PROFILE}] ${line}`;
  console.log(text);
  await Deno.mkdir(LOG_DIR, { recursive: true });
  await Deno.writeTextFile(`${LOG_DIR}/summary.log`, `${new Date().toISOString()} ${text}\n`, {
    append: true,
  });
}

/** Graceful stop (SIGTERM) of the chaos broker. */
export async function stopKafkaGracefully(): Promise<boolean> {
  return await stopKafka(CHAOS_DIR);
}

/** Total size in bytes of the spool segment files (*.jsonl) in `dir` (0 when missing). */
export async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.endsWith(".jsonl")) continue;
      n += (await Deno.stat(`${dir}/${e.name}`).catch(() => ({ size: 0 }))).size;
    }
  } catch { /* missing */ }
  return n;
}
