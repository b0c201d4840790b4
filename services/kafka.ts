/**
 * The local Apache Kafka broker: KRaft mode, one node (broker + controller),
 * jars from Maven Central via services/kafka/pom.xml, run with the machine's
 * Java 17. State and logs live under `.data/kafka/`.
 * @module
 */

import {
  killPid,
  pidAlive,
  portOpen,
  run,
  ServiceError,
  spawnDetached,
  tail,
  waitFor,
} from "./_process.ts";
import type { Logger } from "../common/log.ts";

/** Pinned broker version (must match services/kafka/pom.xml). */
export const KAFKA_VERSION = "3.9.1";

/** Where the local broker keeps its files. */
export interface KafkaPaths {
  /** Root, e.g. `.data/kafka`. */
  root: string;
  /** Jars. */
  lib: string;
  /** Log segments and KRaft metadata. */
  data: string;
  /** Broker log file. */
  log: string;
  /** Pid file. */
  pid: string;
}

/** Paths under `dataDir` (absolute). */
export function kafkaPaths(dataDir: string): KafkaPaths {
  const root = `${dataDir}/kafka`;
  return {
    root,
    lib: `${root}/lib`,
    data: `${root}/data`,
    log: `${root}/kafka.log`,
    pid: `${root}/kafka.pid`,
  };
}

/** Options for the local broker. */
export interface KafkaServiceOptions {
  /** Absolute `.data` folder. */
  dataDir: string;
  /** Absolute path of services/kafka (holds pom.xml). */
  serviceDir: string;
  /** Client port (default 9092); the controller uses port + 1. */
  port?: number;
  /** Logger. */
  logger: Logger;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Downloads the broker jars with Maven when missing. */
export async function ensureKafkaJars(options: KafkaServiceOptions): Promise<void> {
  const p = kafkaPaths(options.dataDir);
  if (await exists(`${p.lib}/kafka_2.13-${KAFKA_VERSION}.jar`)) return;
  options.logger.info("resolving Kafka jars from Maven Central", { version: KAFKA_VERSION });
  await Deno.mkdir(p.lib, { recursive: true });
  let r;
  try {
    r = await run("mvn", [
      "-q",
      "-B",
      "-f",
      `${options.serviceDir}/pom.xml`,
      "dependency:copy-dependencies",
      `-DoutputDirectory=${p.lib}`,
      "-DincludeScope=runtime",
    ]);
  } catch (e) {
    throw new ServiceError(
      `Maven ("mvn") is needed to fetch Kafka's jars: install it (apt-get install maven) and retry`,
      { cause: e },
    );
  }
  if (r.code !== 0 || !(await exists(`${p.lib}/kafka_2.13-${KAFKA_VERSION}.jar`))) {
    throw new ServiceError(
      `Maven could not resolve org.apache.kafka:kafka_2.13:${KAFKA_VERSION} from Maven Central ` +
        `(exit ${r.code}): ${(r.stdout + r.stderr).trim().split("\n").slice(-5).join(" | ")}`,
    );
  }
}

function serverProperties(p: KafkaPaths, port: number): string {
  return [
    "process.roles=broker,controller",
    "node.id=1",
    `controller.quorum.voters=1@127.0.0.1:${port + 1}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${port + 1}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    "controller.listener.names=CONTROLLER",
    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name=PLAINTEXT",
    `log.dirs=${p.data}`,
    "num.partitions=3",
    "auto.create.topics.enable=false",
    "offsets.topic.replication.factor=1",
    "offsets.topic.num.partitions=5",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "transaction.state.log.num.partitions=5",
    "group.initial.rebalance.delay.ms=0",
    "log.retention.hours=168",
    "",
  ].join("\n");
}

function log4jProperties(p: KafkaPaths): string {
  return [
    "log4j.rootLogger=INFO, file",
    "log4j.appender.file=org.apache.log4j.RollingFileAppender",
    `log4j.appender.file.File=${p.log}`,
    "log4j.appender.file.MaxFileSize=20MB",
    "log4j.appender.file.MaxBackupIndex=2",
    "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
    "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
    "log4j.logger.kafka=INFO",
    "log4j.logger.org.apache.kafka=INFO",
    "",
  ].join("\n");
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const n = Number((await Deno.readTextFile(path)).trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The running local broker's pid, if any. */
export async function kafkaPid(dataDir: string): Promise<number | undefined> {
  const pid = await readPid(kafkaPaths(dataDir).pid);
  return pid !== undefined && await pidAlive(pid) ? pid : undefined;
}

async function javaPid(p: KafkaPaths): Promise<number | undefined> {
  // setsid execs java, so the spawned pid is java's; confirm via /proc.
  const pid = await readPid(p.pid);
  if (pid === undefined) return undefined;
  const r = await run("ps", ["-o", "args=", "-p", String(pid)]).catch(() => undefined);
  return r?.stdout.includes("kafka.Kafka") ? pid : undefined;
}

/** Starts the local broker unless the port already answers; resolves once it accepts connections. */
export async function startKafka(
  options: KafkaServiceOptions & { probe?: () => Promise<boolean> },
): Promise<"started" | "running"> {
  const port = options.port ?? 9092;
  const p = kafkaPaths(options.dataDir);
  if (await portOpen("127.0.0.1", port)) {
    if (!options.probe || await options.probe()) return "running";
    throw new ServiceError(
      `Port 127.0.0.1:${port} is in use but does not answer as a Kafka broker: stop what listens ` +
        `there or set KAFKA_BROKERS to your broker`,
    );
  }
  const java = await run("java", ["-version"]).catch(() => undefined);
  if (!java || java.code !== 0) {
    throw new ServiceError(
      `Java 17+ is needed to run the Kafka broker: install it (apt-get install openjdk-17-jre-headless)`,
    );
  }
  await ensureKafkaJars(options);
  await Deno.mkdir(p.data, { recursive: true });
  await Deno.writeTextFile(`${p.root}/server.properties`, serverProperties(p, port));
  await Deno.writeTextFile(`${p.root}/log4j.properties`, log4jProperties(p));
  const cp = `${p.lib}/*`;
  const log4j = `-Dlog4j.configuration=file:${p.root}/log4j.properties`;
  if (!(await exists(`${p.data}/meta.properties`))) {
    const id = clusterId();
    const r = await run("java", [
      "-cp",
      cp,
      log4j,
      "kafka.tools.StorageTool",
      "format",
      "-t",
      id,
      "-c",
      `${p.root}/server.properties`,
    ]);
    if (r.code !== 0) {
      throw new ServiceError(
        `Formatting Kafka storage in ${p.data} failed: ${r.stdout}${r.stderr}`,
      );
    }
    options.logger.info("formatted Kafka KRaft storage", { dir: p.data, clusterId: id });
  }
  const pid = spawnDetached("java", [
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-Djava.awt.headless=true",
    log4j,
    `-Dkafka.logs.dir=${p.root}`,
    "-cp",
    cp,
    "kafka.Kafka",
    `${p.root}/server.properties`,
  ]);
  await Deno.writeTextFile(p.pid, `${pid}\n`);
  const up = await waitFor(async () => {
    if (!(await pidAlive(pid))) return false;
    return await portOpen("127.0.0.1", port) && (!options.probe || await options.probe());
  }, { timeoutMs: 90_000, intervalMs: 300 });
  if (!up) {
    throw new ServiceError(
      `Kafka did not come up on 127.0.0.1:${port} within 90 s; last lines of ${p.log}:\n${await tail(
        p.log,
      )}`,
    );
  }
  return "started";
}

/** Stops the local broker (SIGTERM, then SIGKILL after `timeoutMs`, or at once with `kill`). */
export async function stopKafka(
  dataDir: string,
  options: { kill?: boolean; timeoutMs?: number } = {},
): Promise<boolean> {
  const p = kafkaPaths(dataDir);
  const pid = await javaPid(p);
  if (pid === undefined) return false;
  await killPid(pid, options.kill ? "KILL" : "TERM");
  const gone = await waitFor(async () => !(await pidAlive(pid)), {
    timeoutMs: options.timeoutMs ?? 30_000,
    intervalMs: 200,
  });
  if (!gone) await killPid(pid, "KILL");
  await waitFor(async () => !(await pidAlive(pid)), { timeoutMs: 5000 });
  return true;
}

/** A random KRaft cluster id (16 random bytes, URL-safe base64 without padding). */
export function clusterId(): string {
  for (;;) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const id = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
      .replace(/=+$/, "");
    // kafka-storage's argument parser takes an id starting with "-" for an option.
    if (!id.startsWith("-")) return id;
  }
}
