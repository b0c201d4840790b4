/**
 * Kafka client construction at the edge: kafkajs wired to our logger, with
 * connection errors that name the configured brokers.
 * @module
 */

import { type Admin, type ISocketFactory, Kafka, type LogEntry, logLevel } from "kafkajs";
// Every kafkajs client of ours (ingest's producer, the sensor's and start's admin clients) runs
// without kafkajs 2.2.4's idle busy loop (about half a core per idle connection).
import "./kafkajs_idle_fix.ts";
import net from "node:net";
import process from "node:process";
import tls from "node:tls";
import { ConfigError } from "./config.ts";
import {
  kafkajsSecurity,
  type KafkaSecurity,
  kafkaSecurityError,
  kafkaSecurityFromEnv,
} from "./kafka_security.ts";
import { tlsClientCertRefusal, tlsTrustCode } from "./tls_errors.ts";
import { createLogger, type Logger } from "./log.ts";
import {
  deniedTarget,
  isPermissionError,
  kafkaDenied,
  type PermissionQuery,
} from "./permissions.ts";

export { isPermissionError };

// kafkajs schedules timers with negative delays (its request queue computes
// "throttled until" in the past); Node treats them as 1 ms but Deno prints a
// TimeoutNegativeWarning for each. Drop only that warning.
const emitWarning = process.emitWarning.bind(process);
// deno-lint-ignore no-explicit-any
(process as any).emitWarning = (warning: any, ...rest: any[]) => {
  const type = typeof rest[0] === "string" ? rest[0] : rest[0]?.type;
  if (type === "TimeoutNegativeWarning" || warning?.name === "TimeoutNegativeWarning") return;
  return emitWarning(warning, ...rest);
};

export type { Admin, Kafka };

/** Raised when Kafka cannot be reached or answers with an error we cannot handle. */
export class KafkaUnavailableError extends Error {
  /** Creates the error; the message names the brokers. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KafkaUnavailableError";
  }
}

/** Options for {@linkcode createKafka}. */
export interface CreateKafkaOptions {
  /** Client id shown in broker logs. */
  clientId?: string;
  /** Logger for kafkajs' own messages (warn and above). */
  logger?: Logger;
  /** Retries kafkajs makes per request before failing (default 5). */
  retries?: number;
  /** TCP connect timeout in ms (default 3000). */
  connectionTimeout?: number;
  /**
   * Called once per address this process may not reach (a broker the cluster advertises that is
   * not in the allowed hosts; an AccessDeniedError), and once when a broker's TLS certificate is
   * not trusted (a KafkaSecurityError): a configuration error to stop on, not an outage to wait
   * out. The connection then fails as Deno or TLS refuses it.
   */
  onDenied?: (error: ConfigError) => void;
  /** Permission query (tests; default Deno.permissions.querySync). */
  query?: PermissionQuery;
  /** TLS and SASL settings (default: this process' environment, {@linkcode kafkaSecurityFromEnv}). */
  security?: KafkaSecurity;
}

const KEEP_ALIVE_DELAY_MS = 60_000;

/**
 * kafkajs' socket factory (plain or TLS, keep-alive) that first asks whether this process may
 * reach the broker, and reports a denied one to `onDenied` (once per address), and an untrusted
 * TLS certificate (once).
 */
function checkedSocketFactory(
  brokers: string[],
  security: KafkaSecurity,
  options: CreateKafkaOptions,
): ISocketFactory {
  const reported = new Set<string>();
  let untrusted = false;
  const query: PermissionQuery = options.query ??
    ((need) => Deno.permissions.querySync({ name: "net", host: need.target }).state === "granted");
  return ({ host, port, ssl, onConnect }) => {
    const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    if (options.onDenied && !reported.has(address) && !query({ kind: "net", target: address })) {
      reported.add(address);
      options.onDenied(kafkaDenied(address, brokers));
    }
    const socket = ssl
      ? tls.connect(
        Object.assign({ host, port }, !net.isIP(host) ? { servername: host } : {}, ssl),
        onConnect,
      )
      : net.connect({ host, port }, onConnect);
    const onDenied = options.onDenied;
    if (ssl && onDenied) {
      // An untrusted certificate fails every attempt the same way: report it at once instead
      // of after kafkajs' retries.
      socket.once("error", (e: Error) => {
        const error = untrusted ? undefined : kafkaSecurityError(e, brokers, security);
        if (error === undefined) return;
        untrusted = true;
        onDenied(error);
      });
    }
    socket.setKeepAlive(true, KEEP_ALIVE_DELAY_MS);
    return socket;
  };
}

const LEVELS: Record<number, "error" | "warn" | "info" | "debug"> = {
  [logLevel.ERROR]: "error",
  [logLevel.WARN]: "warn",
  [logLevel.INFO]: "info",
  [logLevel.DEBUG]: "debug",
};

// Messages kafkajs logs at ERROR level during normal operation (coordinator
// warming up, retried automatically); demoted to debug.
const TRANSIENT =
  /coordinator is (loading|not available)|not the correct coordinator|leader is not available|rebalanc/i;

// kafkajs' lines about one failed attempt to reach a broker (retried by kafkajs or by us).
const CONNECTION_ATTEMPT =
  /Connection error|Connection timeout|Failed to connect to seed broker|Closed connection|No broker available|Restarting the consumer in|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ETIMEDOUT|EPIPE/;

/** Creates a kafkajs client for `brokers`. */
export function createKafka(brokers: string[], options: CreateKafkaOptions = {}): Kafka {
  const log = options.logger ?? createLogger("kafka");
  const security = options.security ?? kafkaSecurityFromEnv();
  return new Kafka({
    clientId: options.clientId ?? "tickpipe",
    brokers,
    ...kafkajsSecurity(security),
    connectionTimeout: options.connectionTimeout ?? 3000,
    socketFactory: checkedSocketFactory(brokers, security, options),
    retry: { retries: options.retries ?? 5, initialRetryTime: 200, maxRetryTime: 5000 },
    logLevel: logLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { message, ...rest } = entry.log;
      let level = LEVELS[entry.level] ?? "info";
      if (level === "error" && TRANSIENT.test(String(rest.error ?? message))) level = "debug";
      // A denied address is reported once, as a configuration error, by whoever handles it
      // (onDenied, kafkaError): kafkajs' own lines about each attempt would repeat it.
      const text = `${message} ${rest.error ?? ""}`;
      if (/Requires net access to/.test(text)) level = "debug";
      // Refused TLS or SASL settings, likewise (kafkaSecurityError, onDenied): one message.
      if (
        /SASL|SaslAuthenticate/.test(text) || tlsTrustCode({ message: text }) !== undefined ||
        tlsClientCertRefusal({ message: text }) !== undefined
      ) {
        level = "debug";
      }
      // Each attempt to reach a broker that is down: the processes report the outage once
      // themselves (the aggregator's "kafka down", ingest's spooling, the sensor's failed
      // check), so kafkajs' line per attempt and per client would only repeat it, at ERROR.
      if (level === "error" && CONNECTION_ATTEMPT.test(text)) level = "debug";
      if (/switched default partitioner/.test(message)) return;
      // Our producers retry failed batches themselves (same records, same producer id and
      // sequence numbers, so the broker still de-duplicates): kafkajs' own retry limit is
      // not what bounds delivery, and its warning about it is noise here.
      if (/Limiting retries for the idempotent producer/.test(message)) level = "debug";
      const fields: Record<string, unknown> = {};
      for (const k of ["broker", "error", "groupId", "topic", "retryCount", "retryTime"]) {
        if (rest[k as keyof typeof rest] !== undefined) fields[k] = rest[k as keyof typeof rest];
      }
      log[level](`${entry.namespace}: ${message}`, fields);
    },
  });
}

/** Connects an admin client, failing fast with an error naming `brokers` when unreachable. */
export async function connectAdmin(kafka: Kafka, brokers: string[]): Promise<Admin> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
  } catch (e) {
    await admin.disconnect().catch(() => {});
    throw kafkaError(e, brokers);
  }
  return admin;
}

/**
 * Wraps any Kafka connection failure in a KafkaUnavailableError naming `brokers`; a permission
 * denial becomes an AccessDeniedError and refused TLS or SASL settings a KafkaSecurityError
 * (configuration errors, exit 2) naming the refused address or setting.
 */
export function kafkaError(e: unknown, brokers: string[]): Error {
  if (e instanceof KafkaUnavailableError || e instanceof ConfigError) return e;
  const refused = kafkaSecurityError(e, brokers);
  if (refused !== undefined) return refused;
  const err = e as Error;
  if (isPermissionError(e)) {
    // A configuration error (exit 2), naming the address Deno refused.
    return kafkaDenied(deniedTarget(e)?.target ?? brokers[0], brokers, { cause: e });
  }
  return new KafkaUnavailableError(
    `Cannot reach Kafka at KAFKA_BROKERS=${brokers.join(",")}: ${err?.message ?? e}. ` +
      `Start the local broker with "deno task services" or point KAFKA_BROKERS at a running one`,
    { cause: e },
  );
}

/**
 * Topic configuration for tick topics. Record timestamps are event times, which can be days
 * old (Yahoo's last close after subscribing, replays of recorded feeds, backfills); Kafka's
 * time-based retention and segment rolling judge records by that timestamp, so with the
 * broker defaults an unread backlog of old ticks would be deleted within minutes. Time-based
 * retention is therefore off and segments roll by size; the topic is bounded by size instead
 * (`retention.bytes` per partition, default 10 GiB).
 */
export function tickTopicConfig(options: { retentionBytes?: number } = {}): Record<string, string> {
  return {
    "message.timestamp.type": "CreateTime",
    "retention.ms": "-1",
    "retention.bytes": String(options.retentionBytes ?? 10 * 1024 ** 3),
    "segment.ms": String(10 * 365 * 24 * 3600 * 1000),
  };
}

/** Creates `topic` (tick topic configuration) when it does not exist; returns true if created. */
export async function ensureTopic(
  admin: Admin,
  topic: string,
  options: { partitions?: number; replicationFactor?: number; retentionBytes?: number } = {},
): Promise<boolean> {
  const existing = await admin.listTopics();
  if (existing.includes(topic)) return false;
  try {
    const created = await admin.createTopics({
      waitForLeaders: true,
      topics: [{
        topic,
        numPartitions: options.partitions ?? 3,
        replicationFactor: options.replicationFactor ?? 1,
        configEntries: Object.entries(tickTopicConfig(options)).map(([name, value]) => ({
          name,
          value,
        })),
      }],
    });
    if (created) await waitUsable(admin, topic);
    return created;
  } catch (e) {
    // Lost a race with another creator: fine.
    if (/already exists/i.test(String((e as Error).message))) return false;
    // kafkajs created the topic, then gave up waiting for its leaders: it retries only "leader
    // not available", and a broker that has just started answers "does not host this
    // topic-partition" for a while. The topic is there once it is listed and answers.
    const waiting = isLeadershipError(e) || /waiting for topic leaders/i.test(String(e));
    if (waiting && await waitUsable(admin, topic)) return true;
    throw e;
  }
}

/**
 * Waits until a topic just created is listed and its partitions answer offset requests (a fresh
 * broker can take tens of seconds): true when it does, false after about 15 s.
 */
async function waitUsable(admin: Admin, topic: string): Promise<boolean> {
  for (let attempt = 0; attempt < 20; attempt++) {
    if (await topicOffsets(admin, topic).catch(() => null) !== null) return true;
    await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
  }
  return false;
}

/** End offsets (next offset to be written) per partition of `topic` (empty when it does not exist). */
export async function endOffsets(admin: Admin, topic: string): Promise<Map<number, number>> {
  return new Map((await topicOffsets(admin, topic) ?? []).map((r) => [r.partition, r.end]));
}

/** The offsets range of one partition. */
export interface PartitionRange {
  /** Partition number. */
  partition: number;
  /** Log start offset (earliest available). */
  start: number;
  /** End offset (next offset to be written). */
  end: number;
}

/**
 * Start and end offsets of every partition of `topic`, sorted by partition; null when the topic
 * does not exist. With `timeoutMs`, rejects when Kafka does not answer in time.
 */
export async function topicOffsets(
  admin: Admin,
  topic: string,
  options: { timeoutMs?: number } = {},
): Promise<PartitionRange[] | null> {
  const read = async () => {
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) return null;
    // A topic just created (or a broker just started) answers "not the leader" / "does not host
    // this topic-partition" for a while: retried, briefly.
    for (let attempt = 0;; attempt++) {
      try {
        const rows = await admin.fetchTopicOffsets(topic);
        return rows.map((r) => ({
          partition: r.partition,
          start: Number(r.low),
          end: Number(r.high),
        })).sort((a, b) => a.partition - b.partition);
      } catch (e) {
        if (attempt >= 20 || !isLeadershipError(e)) throw e;
        await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
      }
    }
  };
  if (options.timeoutMs === undefined) return await read();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      read(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new KafkaUnavailableError(`Kafka did not answer in ${options.timeoutMs} ms`)),
          options.timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** True for the errors of a partition whose leader is not known yet (a new topic or broker). */
function isLeadershipError(e: unknown): boolean {
  for (let cur = e as { type?: string; cause?: unknown } | undefined, i = 0; cur && i < 5; i++) {
    if (
      /^(NOT_LEADER_FOR_PARTITION|NOT_LEADER_OR_FOLLOWER|UNKNOWN_TOPIC_OR_PARTITION|LEADER_NOT_AVAILABLE)$/
        .test(cur.type ?? "")
    ) return true;
    cur = cur.cause as typeof cur;
  }
  return /not the leader|does not host this topic-partition|leader is not available/i.test(
    String((e as Error)?.message ?? ""),
  );
}

// deno-lint-ignore no-explicit-any
type KafkaCluster = any;
const clusters = new WeakMap<Kafka, Promise<KafkaCluster>>();

/** kafkajs' own cluster client (for a request its public API does not offer), connected once. */
function clusterOf(kafka: Kafka): Promise<KafkaCluster> {
  let c = clusters.get(kafka);
  if (c === undefined) {
    const create = Object.getOwnPropertySymbols(kafka).find((s) =>
      s.description === "private:Kafka:createCluster"
    );
    if (create === undefined) {
      return Promise.reject(new Error("This kafkajs version has no private cluster factory"));
    }
    // deno-lint-ignore no-explicit-any
    const cluster = (kafka as any)[create]({});
    c = cluster.connect().then(() => cluster);
    c!.catch(() => clusters.delete(kafka));
    clusters.set(kafka, c!);
  }
  return c!;
}

/**
 * Commits `offsets` for `topic` to consumer group `groupId` without joining it (a standalone
 * OffsetCommit, generation -1, as Kafka allows for a group with no members). kafkajs'
 * `admin.setOffsets` joins the group with a temporary consumer instead, which costs seconds.
 */
export async function commitGroupOffsets(
  kafka: Kafka,
  options: { groupId: string; topic: string; offsets: Record<string, number> },
): Promise<void> {
  const cluster = await clusterOf(kafka);
  const coordinator = await cluster.findGroupCoordinator({ groupId: options.groupId });
  const res = await coordinator.offsetCommit({
    groupId: options.groupId,
    groupGenerationId: -1,
    memberId: "",
    topics: [{
      topic: options.topic,
      partitions: Object.entries(options.offsets).map(([p, o]) => ({
        partition: Number(p),
        offset: String(o),
      })),
    }],
  });
  for (const t of res.responses ?? []) {
    for (const p of t.partitions ?? []) {
      if (p.errorCode !== 0) {
        throw new Error(`OffsetCommit of ${options.groupId} failed with error code ${p.errorCode}`);
      }
    }
  }
}

/** Disconnects the cluster client {@linkcode commitGroupOffsets} may have opened. */
export async function closeKafkaExtras(kafka: Kafka): Promise<void> {
  const c = clusters.get(kafka);
  clusters.delete(kafka);
  if (c) await (await c.catch(() => null))?.disconnect().catch(() => {});
}

export { TOO_LARGE_ERRORS, tooLargeError } from "./kafka_errors.ts";
