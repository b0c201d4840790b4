/**
 * The local Apache Kafka broker: KRaft mode, one node (broker + controller),
 * jars from Maven Central via services/kafka/<version>/pom.xml, run with the
 * machine's Java 17. 4.4.0 by default, 3.9.1 selectable (`KAFKA_VERSION`).
 * State and logs live under `.data/kafka/` (private folders, files replaced
 * without following links); the data folder records which version wrote it,
 * and a broker of another version is never started on it unasked (an upgrade
 * is opt-in, a downgrade is refused).
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
import { currentOwner, ensurePrivateDir, isEmptyDir, replaceFile } from "./_fs.ts";
import { ConfigError } from "../common/config.ts";
import type { Logger } from "../common/log.ts";

/** Broker versions `services` can run, newest first (each has services/kafka/<v>/pom.xml). */
export const KAFKA_VERSIONS = ["4.4.0", "3.9.1"] as const;
/** A broker version `services` can run. */
export type KafkaVersion = typeof KAFKA_VERSIONS[number];
/** The version `services` runs when KAFKA_VERSION is unset. */
export const DEFAULT_KAFKA_VERSION: KafkaVersion = "4.4.0";

/** Logging backend of each version: 3.x logs through reload4j, 4.x through log4j 2. */
const LOGGING: Record<KafkaVersion, "log4j" | "log4j2"> = { "4.4.0": "log4j2", "3.9.1": "log4j" };

/** Validates KAFKA_VERSION (`what` names the source); unset means the default. */
export function parseKafkaVersion(
  value: string | undefined,
  what = "KAFKA_VERSION",
): KafkaVersion {
  if (value === undefined || value === "") return DEFAULT_KAFKA_VERSION;
  const v = value.trim();
  if ((KAFKA_VERSIONS as readonly string[]).includes(v)) return v as KafkaVersion;
  throw new ConfigError(
    `${what}="${value}" is not a supported Kafka version: expected one of ` +
      KAFKA_VERSIONS.map((k) => k === DEFAULT_KAFKA_VERSION ? `${k} (the default)` : k).join(
        ", ",
      ),
  );
}

/** Compares dotted numeric versions: negative when `a` is older than `b`. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Where the local broker keeps its files. */
export interface KafkaPaths {
  /** Root, e.g. `.data/kafka` (a private folder). */
  root: string;
  /** Jars, one folder per version (`lib/<version>`). */
  lib: string;
  /** Log segments and KRaft metadata. */
  data: string;
  /** The file in `data` naming the Kafka version that formatted (or last upgraded) it. */
  dataVersion: string;
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
    dataVersion: `${root}/data/tickpipe-kafka-version`,
    log: `${root}/kafka.log`,
    pid: `${root}/kafka.pid`,
  };
}

/** Options for the local broker. */
export interface KafkaServiceOptions {
  /** Absolute `.data` folder. */
  dataDir: string;
  /** Absolute path of services/kafka (holds `<version>/pom.xml`). */
  serviceDir: string;
  /** Client port (default 9092); the controller uses port + 1. */
  port?: number;
  /** Broker version (default {@linkcode DEFAULT_KAFKA_VERSION}). */
  version?: KafkaVersion;
  /**
   * Allow starting a newer broker on data formatted by an older one (an in-place upgrade,
   * one-way: tickpipe then refuses the older version on it). Default false: refused.
   */
  upgrade?: boolean;
  /** Logger. */
  logger: Logger;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Downloads the broker jars of `options.version` with Maven into `lib/<version>` when missing. */
export async function ensureKafkaJars(options: KafkaServiceOptions): Promise<string> {
  const version = options.version ?? DEFAULT_KAFKA_VERSION;
  const lib = `${kafkaPaths(options.dataDir).lib}/${version}`;
  const mainJar = `${lib}/kafka_2.13-${version}.jar`;
  if (await exists(mainJar)) return lib;
  options.logger.info("resolving Kafka jars from Maven Central", { version });
  await Deno.mkdir(lib, { recursive: true });
  let r;
  try {
    r = await run("mvn", [
      "-q",
      "-B",
      "-f",
      `${options.serviceDir}/${version}/pom.xml`,
      "dependency:copy-dependencies",
      `-DoutputDirectory=${lib}`,
      "-DincludeScope=runtime",
    ]);
  } catch (e) {
    throw new ServiceError(
      `Maven ("mvn") is needed to fetch Kafka's jars: install it (apt-get install maven) and retry`,
      { cause: e },
    );
  }
  if (r.code !== 0 || !(await exists(mainJar))) {
    throw new ServiceError(
      `Maven could not resolve org.apache.kafka:kafka_2.13:${version} from Maven Central ` +
        `(exit ${r.code}): ${(r.stdout + r.stderr).trim().split("\n").slice(-5).join(" | ")}`,
    );
  }
  return lib;
}

/** Which Kafka version last wrote a data folder (formatted or upgraded it), and how that is known. */
export interface FormattedBy {
  /** The version. */
  version: string;
  /**
   * `marker`: the file services writes after formatting or upgrading; `log`: the broker log's last
   * "Kafka version: x" line (data from before the marker existed); `assumed`: neither exists, so
   * 3.9.1, the only version tickpipe ran before it recorded one.
   */
  source: "marker" | "log" | "assumed";
}

/** Reads the last "Kafka version: x" line the broker logged in `logPath` (its own statement). */
export async function loggedKafkaVersion(logPath: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(logPath);
  } catch {
    return undefined;
  }
  let version: string | undefined;
  for (const m of text.matchAll(/Kafka version: (\d+\.\d+\.\d+\S*)/g)) version = m[1];
  return version;
}

/** Which version last wrote the local data folder; undefined when it is not formatted. */
export async function formattedKafkaVersion(dataDir: string): Promise<FormattedBy | undefined> {
  const p = kafkaPaths(dataDir);
  if (!(await exists(`${p.data}/meta.properties`))) return undefined;
  try {
    const v = (await Deno.readTextFile(p.dataVersion)).trim();
    if (/^\d+\.\d+\.\d+$/.test(v)) return { version: v, source: "marker" };
  } catch {
    // no marker: data from before services recorded the version
  }
  const logged = await loggedKafkaVersion(p.log);
  if (logged !== undefined) return { version: logged, source: "log" };
  return { version: "3.9.1", source: "assumed" };
}

/** Raised when the data folder was written by another Kafka version; nothing was changed. */
export class KafkaDataVersionError extends ServiceError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "KafkaDataVersionError";
  }
}

/**
 * Decides whether broker `selected` may start on data written by `found` (pure): `"same"`,
 * `"upgrade"` (newer broker, `upgrade` allowed), or a KafkaDataVersionError saying what to do.
 */
export function checkDataVersion(
  found: FormattedBy,
  selected: KafkaVersion,
  options: { dataDir: string; upgrade?: boolean },
): "same" | "upgrade" {
  const cmp = compareVersions(found.version, selected);
  if (cmp === 0) return "same";
  const dir = kafkaPaths(options.dataDir).data;
  const how = found.source === "marker"
    ? ""
    : found.source === "log"
    ? " (according to the broker log)"
    : " (assumed: the data has no version record, and 3.9.1 was the only version tickpipe ran then)";
  const head = `The Kafka data in ${dir} was written by Kafka ${found.version}${how}, but ` +
    `Kafka ${selected} is selected (KAFKA_VERSION${
      selected === DEFAULT_KAFKA_VERSION ? " unset or " + selected : "=" + selected
    }). Nothing was started or changed.`;
  const moveAway = `start an empty ${selected} broker by moving the folder away yourself ` +
    `(mv ${dir} ${dir}-${found.version}; topics and their offsets stay in the old folder)`;
  if (cmp < 0) {
    if (options.upgrade) return "upgrade";
    throw new KafkaDataVersionError(
      `${head} Choose one: keep ${found.version} (KAFKA_VERSION=${found.version} deno task ` +
        `services); upgrade this data in place to ${selected} (deno task services up ` +
        `--upgrade-kafka; one-way: tickpipe will then refuse ${found.version} on it); or ${moveAway}`,
    );
  }
  throw new KafkaDataVersionError(
    `${head} tickpipe never starts an older broker on data a newer one has written ` +
      `(Kafka does not support that downgrade): run KAFKA_VERSION=${found.version} deno task ` +
      `services, or ${moveAway}`,
  );
}

function serverProperties(p: KafkaPaths, port: number): string {
  return [
    "process.roles=broker,controller",
    "node.id=1",
    // A static quorum: 4.x prefers controller.quorum.bootstrap.servers + format --standalone
    // (a dynamic quorum, KIP-853), but keeps the static one, which both 3.9.1 and 4.4.0 run
    // and which data formatted by 3.9.1 was formatted for (so it can be upgraded in place).
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

/** The logging configuration file and JVM flag for `version`. */
function logging(
  p: KafkaPaths,
  version: KafkaVersion,
): { file: string; text: string; flag: string } {
  if (LOGGING[version] === "log4j2") {
    const file = `${p.root}/log4j2.properties`;
    const text = [
      "rootLogger.level = INFO",
      "rootLogger.appenderRef.file.ref = file",
      "appender.file.type = RollingFile",
      "appender.file.name = file",
      `appender.file.fileName = ${p.log}`,
      `appender.file.filePattern = ${p.log}.%i`,
      "appender.file.layout.type = PatternLayout",
      "appender.file.layout.pattern = [%d] %p %m (%c)%n",
      "appender.file.policies.type = Policies",
      "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
      "appender.file.policies.size.size = 20MB",
      "appender.file.strategy.type = DefaultRolloverStrategy",
      "appender.file.strategy.max = 2",
      "",
    ].join("\n");
    return { file, text, flag: `-Dlog4j2.configurationFile=file:${file}` };
  }
  const file = `${p.root}/log4j.properties`;
  const text = [
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
  return { file, text, flag: `-Dlog4j.configuration=file:${file}` };
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

/**
 * Starts the local broker unless the port already answers; resolves once it accepts
 * connections. Refuses (KafkaDataVersionError, nothing changed) when the data folder was
 * written by another version, unless that one is older and `upgrade` is set.
 */
export async function startKafka(
  options: KafkaServiceOptions & { probe?: () => Promise<boolean> },
): Promise<"started" | "running"> {
  const port = options.port ?? 9092;
  const version = options.version ?? DEFAULT_KAFKA_VERSION;
  const log = options.logger;
  const p = kafkaPaths(options.dataDir);
  if (await portOpen("127.0.0.1", port)) {
    if (!options.probe || await options.probe()) return "running";
    throw new ServiceError(
      `Port 127.0.0.1:${port} is in use but does not answer as a Kafka broker: stop what listens ` +
        `there or set KAFKA_BROKERS to your broker`,
    );
  }
  const formatted = await formattedKafkaVersion(options.dataDir);
  const decision = formatted === undefined
    ? "format"
    : checkDataVersion(formatted, version, { dataDir: options.dataDir, upgrade: options.upgrade });
  const me = currentOwner();
  await Deno.mkdir(options.dataDir, { recursive: true });
  await ensurePrivateDir(p.root, me);
  if (await ensurePrivateDir(p.data, me) === false && decision === "format") {
    if (!(await isEmptyDir(p.data))) {
      throw new ServiceError(
        `${p.data} holds files but no Kafka metadata (no meta.properties). tickpipe never ` +
          `deletes it: move it away and run again`,
      );
    }
  }
  const java = await run("java", ["-version"]).catch(() => undefined);
  const javaMajor = Number(/version "(\d+)/.exec(java?.stderr ?? "")?.[1] ?? NaN);
  if (!java || java.code !== 0 || !(javaMajor >= 17)) {
    throw new ServiceError(
      `Java 17+ is needed to run the Kafka ${version} broker` +
        (java?.code === 0 ? ` (found: ${java.stderr.split("\n")[0].trim()})` : "") +
        `: install it (apt-get install openjdk-17-jre-headless)`,
    );
  }
  const lib = await ensureKafkaJars({ ...options, version });
  const props = `${p.root}/server.properties`;
  await replaceFile(props, serverProperties(p, port));
  const logConf = logging(p, version);
  await replaceFile(logConf.file, logConf.text);
  const cp = `${lib}/*`;
  if (decision === "format") {
    const id = clusterId();
    const r = await run("java", [
      "-cp",
      cp,
      logConf.flag,
      "kafka.tools.StorageTool",
      "format",
      "-t",
      id,
      "-c",
      props,
    ]);
    if (r.code !== 0) {
      throw new ServiceError(
        `Formatting Kafka storage in ${p.data} failed: ${r.stdout}${r.stderr}`,
      );
    }
    await replaceFile(p.dataVersion, `${version}\n`);
    log.info("formatted Kafka KRaft storage", { dir: p.data, clusterId: id, version });
  } else if (decision === "upgrade") {
    log.warn("upgrading the Kafka data in place (--upgrade-kafka)", {
      dir: p.data,
      from: formatted?.version,
      to: version,
    });
  }
  const pid = spawnDetached("java", [
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-Djava.awt.headless=true",
    logConf.flag,
    `-Dkafka.logs.dir=${p.root}`,
    "-cp",
    cp,
    "kafka.Kafka",
    props,
  ]);
  await replaceFile(p.pid, `${pid}\n`);
  const up = await waitFor(async () => {
    if (!(await pidAlive(pid))) return false;
    return await portOpen("127.0.0.1", port) && (!options.probe || await options.probe());
  }, { timeoutMs: 90_000, intervalMs: 300 });
  if (!up) {
    throw new ServiceError(
      `Kafka ${version} did not come up on 127.0.0.1:${port} within 90 s; last lines of ${p.log}:\n${await tail(
        p.log,
      )}`,
    );
  }
  if (decision === "upgrade" || formatted?.source !== "marker") {
    // Record the version now serving this data (also for data formatted before the record).
    await replaceFile(p.dataVersion, `${version}\n`);
  }
  return "started";
}

/**
 * The version of the running local broker (pid file in `dataDir`), as the broker itself logged
 * it ("Kafka version: x"), else from the jar folder on its command line; undefined when none runs.
 */
export async function localKafkaVersion(dataDir: string): Promise<string | undefined> {
  const p = kafkaPaths(dataDir);
  const pid = await javaPid(p);
  if (pid === undefined) return undefined;
  const logged = await loggedKafkaVersion(p.log);
  if (logged !== undefined) return logged;
  const r = await run("ps", ["-o", "args=", "-p", String(pid)]).catch(() => undefined);
  return /\/lib\/(\d+\.\d+\.\d+)\/\*/.exec(r?.stdout ?? "")?.[1];
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
