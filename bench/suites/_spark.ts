/**
 * The Spark side of the vs-spark suite: building bench/spark (the seed's Structured Streaming
 * query, Java) with Maven, the JVM command line for Java 17, and one measured run of the job.
 * @module
 */

import type { SuiteContext } from "../_suite.ts";
import { NotMeasuredError } from "../_suite.ts";
import { measureProcess, type ProcessRun } from "./_backlog.ts";
import { SPARK_TABLE, tail } from "./_io.ts";

/** The Maven project of the Spark job (repo-relative). */
export const SPARK_PROJECT = "bench/spark";
/** The job's main class. */
export const SPARK_MAIN = "tickpipe.bench.SparkWindows";
/** Spark version the pom depends on (for labels). */
export const SPARK_VERSION = "3.5.4";
/** spark.sql.shuffle.partitions for local[2] (Spark's default of 200 is sized for clusters). */
export const SPARK_SHUFFLE_PARTITIONS = 4;

/**
 * JVM flags: the driver heap spark-submit gives by default (spark.driver.memory = 1g), UTC, and
 * the module options Spark's launcher adds on Java 17 (JavaModuleOptions of spark-launcher
 * 3.5.4), which a plain `java` command must pass itself.
 */
export const SPARK_JVM_FLAGS: readonly string[] = [
  "-Xmx1g",
  "-Duser.timezone=UTC",
  "-XX:+IgnoreUnrecognizedVMOptions",
  "--add-opens=java.base/java.lang=ALL-UNNAMED",
  "--add-opens=java.base/java.lang.invoke=ALL-UNNAMED",
  "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
  "--add-opens=java.base/java.io=ALL-UNNAMED",
  "--add-opens=java.base/java.net=ALL-UNNAMED",
  "--add-opens=java.base/java.nio=ALL-UNNAMED",
  "--add-opens=java.base/java.util=ALL-UNNAMED",
  "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
  "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
  "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
  "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
  "--add-opens=java.base/sun.nio.cs=ALL-UNNAMED",
  "--add-opens=java.base/sun.security.action=ALL-UNNAMED",
  "--add-opens=java.base/sun.util.calendar=ALL-UNNAMED",
  "--add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
  "-Djdk.reflect.useDirectMethodHandle=false",
];

/** A built job: the classpath to run it with. */
export interface SparkJob {
  /** target/classes plus every dependency jar. */
  classpath: string;
  /** `java -version` first line. */
  java: string;
}

/** JDBC settings derived from a postgres:// URL. */
export interface JdbcSettings {
  /** jdbc:postgresql://host:port/db?reWriteBatchedInserts=true */
  url: string;
  /** User name. */
  user: string;
  /** Password ("" when the URL has none and PGPASSWORD is unset). */
  password: string;
}

/** The JDBC URL, user and password of a `postgres://user:password@host:port/db` URL. */
export function jdbcOf(databaseUrl: string, env: { PGPASSWORD?: string } = {}): JdbcSettings {
  let u: URL;
  try {
    u = new URL(databaseUrl);
  } catch {
    throw new Error(`DATABASE_URL is not a URL: expected postgres://user:password@host:port/db`);
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") {
    throw new Error(`DATABASE_URL scheme "${u.protocol}" is not postgres:`);
  }
  const user = decodeURIComponent(u.username) || "postgres";
  const db = decodeURIComponent(u.pathname.replace(/^\//, "")) || user;
  const host = u.hostname.includes(":") && !u.hostname.startsWith("[")
    ? `[${u.hostname}]`
    : u.hostname || "127.0.0.1";
  return {
    // Multi-row INSERTs from JDBC batches (pgjdbc rewrites them; ON CONFLICT is kept).
    url: `jdbc:postgresql://${host}:${u.port || "5432"}/${encodeURIComponent(db)}` +
      `?reWriteBatchedInserts=true&ApplicationName=tickpipe-bench-spark`,
    user,
    password: u.password !== "" ? decodeURIComponent(u.password) : env.PGPASSWORD ?? "",
  };
}

async function output(
  command: string,
  args: string[],
  options: { cwd?: string; timeoutMs: number },
): Promise<{ ok: boolean; code: number; text: string }> {
  const cmd = new Deno.Command(command, {
    args,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeoutMs),
  });
  const out = await cmd.output();
  const dec = new TextDecoder();
  return {
    ok: out.success,
    code: out.code,
    text: dec.decode(out.stdout) + dec.decode(out.stderr),
  };
}

async function newestMtime(path: string): Promise<number> {
  const st = await Deno.stat(path);
  if (!st.isDirectory) return st.mtime?.getTime() ?? 0;
  let newest = 0;
  for await (const e of Deno.readDir(path)) {
    newest = Math.max(newest, await newestMtime(`${path}/${e.name}`));
  }
  return newest;
}

/**
 * Checks Java (>= 17) and builds the job with `mvn -q -B package` when target/classpath.txt is
 * missing or older than the sources. Throws NotMeasuredError with the reason when Java or Maven
 * is missing or the build fails (e.g. Maven Central unreachable).
 */
export async function prepareSparkJob(ctx: SuiteContext): Promise<SparkJob> {
  let java: string;
  try {
    const v = await output("java", ["-version"], { timeoutMs: 30_000 });
    java = v.text.split("\n")[0].trim();
    const major = Number(/version "(\d+)/.exec(java)?.[1]);
    if (!v.ok || !(major >= 17)) {
      throw new NotMeasuredError(`Spark ${SPARK_VERSION} needs Java 17 here; found: ${java}`);
    }
  } catch (e) {
    if (e instanceof NotMeasuredError) throw e;
    throw new NotMeasuredError(`java is not runnable: ${(e as Error).message}`);
  }
  const cpFile = `${SPARK_PROJECT}/target/classpath.txt`;
  const built = await Deno.stat(cpFile).then((s) => s.mtime?.getTime() ?? 0, () => 0);
  const sources = Math.max(
    await newestMtime(`${SPARK_PROJECT}/pom.xml`),
    await newestMtime(`${SPARK_PROJECT}/src`),
  );
  if (built === 0 || built < sources) {
    ctx.log.info("Building the Spark job with Maven (the first build downloads Spark)", {
      project: SPARK_PROJECT,
    });
    let r;
    try {
      r = await output("mvn", ["-q", "-B", "-Dstyle.color=never", "package"], {
        cwd: SPARK_PROJECT,
        timeoutMs: 30 * 60_000,
      });
    } catch (e) {
      throw new NotMeasuredError(`mvn is not runnable: ${(e as Error).message}`);
    }
    if (!r.ok) {
      // deno-lint-ignore no-control-regex
      const lines = r.text.replace(/\x1b\[[0-9;]*m/g, "").trim().split("\n");
      const last = lines.filter((l) => /ERROR|FATAL/.test(l)).slice(0, 3);
      throw new NotMeasuredError(
        `Maven could not build ${SPARK_PROJECT} (exit ${r.code}): ` +
          (last.join(" | ") || tail(lines, 3)).slice(0, 600),
      );
    }
  }
  const jars = (await Deno.readTextFile(cpFile)).trim().split(":").filter((s) => s !== "");
  for (const jar of jars) {
    try {
      await Deno.stat(jar);
    } catch {
      throw new NotMeasuredError(`${jar} is on the job's classpath but missing: rebuild it`);
    }
  }
  return { classpath: [`${SPARK_PROJECT}/target/classes`, ...jars].join(":"), java };
}

/** Reads every jar of the classpath once, so the first measured JVM does not pay for the disk. */
export async function warmClasspath(job: SparkJob): Promise<void> {
  for (const path of job.classpath.split(":")) {
    if (!path.endsWith(".jar")) continue;
    await Deno.readFile(path).catch(() => {});
  }
}

/** One progress event of the job (stdout `{"event":"batch",...}`). */
export interface SparkBatch {
  /** Micro-batch id. */
  batchId: number;
  /** Records read by this batch. */
  inputRows: number;
  /** Records read by the query so far. */
  totalInputRows: number;
  /** Spark's phase durations of the batch, ms. */
  durationMs: Record<string, number>;
}

/** The batch events of a run's stdout. */
export function sparkBatches(stdout: readonly string[]): SparkBatch[] {
  const out: SparkBatch[] = [];
  for (const line of stdout) {
    if (!line.startsWith('{"event":"batch"')) continue;
    try {
      out.push(JSON.parse(line) as SparkBatch);
    } catch { /* partial line */ }
  }
  return out;
}

function eventOf(line: string): { event?: string; totalInputRows?: number } | null {
  if (!line.startsWith('{"event":')) return null;
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

/**
 * Runs the job once on `topic` with a fresh checkpoint under the run's data folder: local[2],
 * 5 s trigger, exits 10 s after its last batch with input. Startup: launch → the first task of
 * the first micro-batch (its first Kafka read); done: launch → the end of the batch that brought
 * the rows read to `total` (its upsert committed).
 */
export async function runSparkProcess(
  ctx: SuiteContext,
  job: SparkJob,
  options: { topic: string; total: number; timeoutMs: number; name: string },
): Promise<ProcessRun> {
  const dir = `${ctx.dataDir}/${options.name}-${crypto.randomUUID().slice(0, 6)}`;
  const jdbc = jdbcOf(ctx.config.databaseUrl, { PGPASSWORD: Deno.env.get("PGPASSWORD") });
  try {
    return await measureProcess({
      command: "java",
      args: [
        ...SPARK_JVM_FLAGS,
        "-cp",
        job.classpath,
        SPARK_MAIN,
        "--topic",
        options.topic,
        "--checkpoint",
        `${dir}/checkpoint`,
        "--local-dir",
        `${dir}/local`,
        "--brokers",
        ctx.config.brokers.join(","),
        "--master",
        "local[2]",
        "--trigger",
        "5 seconds",
        "--idle-ms",
        "10000",
        "--shuffle-partitions",
        String(SPARK_SHUFFLE_PARTITIONS),
        "--table",
        SPARK_TABLE,
      ],
      env: {
        SPARK_LOCAL_IP: "127.0.0.1",
        SPARK_BENCH_JDBC_URL: jdbc.url,
        SPARK_BENCH_DB_USER: jdbc.user,
        SPARK_BENCH_DB_PASSWORD: jdbc.password,
      },
      isStartup: (line, stream) => stream === "stdout" && eventOf(line)?.event === "first-task",
      isDone: (line, stream) => {
        if (stream !== "stdout") return false;
        const e = eventOf(line);
        return e?.event === "batch" && (e.totalInputRows ?? 0) >= options.total;
      },
      timeoutMs: options.timeoutMs,
      what: "The Spark job",
    });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
