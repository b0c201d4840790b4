/**
 * The tick source: the only kafkajs consumer code of the aggregator.
 *
 * - It consumes in a consumer group of its own run (`<group>.run-<id>`), so a restart after
 *   `kill -9` never waits for the dead member's session timeout; the offsets that matter are
 *   the aggregator's (Deno KV), and it seeks every assigned partition to them.
 * - `eachBatch` only queues the batch and returns, so kafkajs fetches the next batch while the
 *   aggregator folds this one (one `resolveOffset` per batch). Backpressure pauses the consumer
 *   when too many messages wait in the queue, and whenever the aggregator asks.
 * - Topic identity: when a partition resumes from a stored offset `n`, the source starts at
 *   `n - 1` and compares that record with the fingerprint the checkpoint kept; a different
 *   record means the topic was deleted and recreated (or the broker wiped) under the stored
 *   offsets.
 * @module
 */

import type { Consumer, KafkaMessage } from "kafkajs";
import type { Kafka } from "../common/kafka.ts";
import type { Logger } from "../common/log.ts";
import { backoffDelay } from "../common/backoff.ts";
import type { Fingerprint, IdentityMismatchReason } from "./kv_layout.ts";

export type { Fingerprint, KafkaMessage };

/** FNV-1a (32-bit) of `bytes` as 8 hex digits. */
function fnv1a(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** The fingerprint of a kafkajs message. */
export function fingerprintOf(m: KafkaMessage): Fingerprint {
  return {
    offset: Number(m.offset),
    timestamp: String(m.timestamp),
    keyHash: m.key ? fnv1a(m.key) : "",
    valueLength: m.value ? m.value.byteLength : -1,
  };
}

/** Whether two fingerprints name the same record. */
export function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  return a.offset === b.offset && a.timestamp === b.timestamp && a.keyHash === b.keyHash &&
    a.valueLength === b.valueLength;
}

/** One partition's batch handed to the aggregator, in offset order. */
export interface SourceBatch {
  /** Partition. */
  partition: number;
  /** Messages, offsets increasing (kafkajs objects). */
  messages: KafkaMessage[];
  /** The offset the fetch asked for: a first message past it means the log skips offsets there. */
  fetchedOffset: number;
  /** The partition's end offset when the batch was fetched. */
  highWatermark: number;
}

/** What does not match between the topic and the checkpoint. */
export interface IdentityProblem {
  /** Which check failed. */
  reason: IdentityMismatchReason;
  /** The partition concerned. */
  partition: number;
  /** What the checkpoint expected. */
  expected: number | Fingerprint | null;
  /** What Kafka has. */
  found: number | Fingerprint | null;
  /** What differed, in words. */
  what: string;
}

/** Raised when the topic does not match what the checkpoint was made against. */
export class TopicIdentityError extends Error {
  /** Which check failed. */
  readonly reason: IdentityMismatchReason;
  /** The partition where it was found. */
  readonly partition: number;
  /** What the checkpoint expected. */
  readonly expected: number | Fingerprint | null;
  /** What Kafka has. */
  readonly found: number | Fingerprint | null;
  /** Creates the error naming the topic, partition and what differed. */
  constructor(topic: string, problem: IdentityProblem) {
    super(
      `Topic "${topic}" partition ${problem.partition} is not the log the checkpoint was made ` +
        `against (${problem.what}): it was deleted and recreated, or the broker was wiped. ` +
        `Nothing was read. Run "deno task offsets reset --to earliest --yes" (watermarks are ` +
        `kept) to start over`,
    );
    this.name = "TopicIdentityError";
    this.reason = problem.reason;
    this.partition = problem.partition;
    this.expected = problem.expected;
    this.found = problem.found;
  }
}

/** Options of {@linkcode startSource}. */
export interface SourceOptions {
  /** The ticks topic. */
  topic: string;
  /** The run's consumer group id. */
  groupId: string;
  /** Where each partition resumes (next offset to read); others start at their log start. */
  resume: ReadonlyMap<number, number>;
  /** Log start offset per partition (where partitions without a stored offset start). */
  logStart: ReadonlyMap<number, number>;
  /** Fingerprint of the record at `resume - 1` per partition, checked before reading on. */
  verify?: ReadonlyMap<number, Fingerprint>;
  /** Pause the consumer while more messages than this wait in the queue (default 50 000). */
  maxQueued?: number;
  /** kafkajs session timeout (default 10 000 ms: a per-run group never waits for it). */
  sessionTimeoutMs?: number;
  /** Max bytes per partition per fetch (default 4 MiB). */
  maxBytesPerPartition?: number;
  /** Logger. */
  logger: Logger;
}

/** A running source. */
export interface TickSource {
  /** The next queued batch; resolves to null once the source stopped and the queue is empty. */
  take(): Promise<SourceBatch | null>;
  /** Messages queued and not yet taken. */
  queued(): number;
  /** Partitions assigned at the last group join. */
  assigned(): readonly number[];
  /** Holds consumption (idempotent; e.g. while unsaved ticks are at their bound). */
  hold(): void;
  /** Lifts {@linkcode hold}. */
  release(): void;
  /** Whether Kafka is reachable as far as the consumer knows. */
  up(): boolean;
  /** Settles with an error that stops the aggregator (identity mismatch, consumer gave up). */
  failed: Promise<Error>;
  /** Stops consuming and leaves the group (queued batches can still be taken). */
  stop(): Promise<void>;
}

/** Starts consuming `options.topic`; resolves once the consumer runs (the join is async). */
export async function startSource(kafka: Kafka, options: SourceOptions): Promise<TickSource> {
  const { topic, logger: log } = options;
  const maxQueued = options.maxQueued ?? 50_000;
  const consumer: Consumer = kafka.consumer({
    groupId: options.groupId,
    sessionTimeout: options.sessionTimeoutMs ?? 10_000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 250,
    maxBytesPerPartition: options.maxBytesPerPartition ?? 4 * 1024 * 1024,
    maxBytes: 16 * 1024 * 1024,
    retry: { retries: 8, initialRetryTime: 300, maxRetryTime: 5000 },
  });

  const queue: SourceBatch[] = [];
  let queuedMessages = 0;
  let waiter: ((b: SourceBatch | null) => void) | undefined;
  let stopped = false;
  let kafkaUp = true;
  let held = false;
  let queuePaused = false;
  let consumerPaused = false;
  let assigned: number[] = [];
  const failed = Promise.withResolvers<Error>();
  let failedOnce = false;
  const fail = (e: Error) => {
    if (failedOnce) return;
    failedOnce = true;
    stopped = true;
    const w = waiter;
    waiter = undefined;
    w?.(null);
    failed.resolve(e);
  };
  // Next offset to fetch per partition = one past the last message queued (or the resume point).
  const position = new Map<number, number>();
  // Partitions whose record at resume - 1 is still to be checked.
  const pendingVerify = new Map<number, { offset: number; fp: Fingerprint }>();
  for (const [p, next] of options.resume) {
    const fp = options.verify?.get(p);
    const low = options.logStart.get(p) ?? 0;
    if (fp !== undefined && fp.offset === next - 1 && next - 1 >= low) {
      pendingVerify.set(p, { offset: next - 1, fp });
      position.set(p, next - 1);
    } else position.set(p, next);
  }

  const setPaused = () => {
    const want = held || queuePaused;
    if (want === consumerPaused || stopped) return;
    consumerPaused = want;
    if (want) consumer.pause([{ topic }]);
    else consumer.resume([{ topic }]);
  };

  const seekAll = (partitions: number[]) => {
    for (const p of partitions) {
      const off = position.get(p) ?? options.logStart.get(p) ?? 0;
      consumer.seek({ topic, partition: p, offset: String(off) });
    }
  };

  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    assigned = (e.payload.memberAssignment[topic] ?? []).slice().sort((a, b) => a - b);
    try {
      seekAll(assigned);
    } catch (err) {
      log.warn("seek after the group join failed", { error: err as Error });
    }
    if (!kafkaUp) {
      kafkaUp = true;
      log.info("kafka up: consumer rejoined", { partitions: assigned });
    } else log.info("partitions assigned", { partitions: assigned });
  });
  consumer.on(consumer.events.FETCH, () => {
    if (!kafkaUp) {
      kafkaUp = true;
      log.info("kafka up: fetching again");
    }
  });
  consumer.on(consumer.events.CRASH, (e) => {
    if (kafkaUp) {
      kafkaUp = false;
      log.warn("kafka down: the consumer lost the broker; kafkajs reconnects", {
        error: e.payload.error,
        restart: e.payload.restart,
      });
    }
    if (!e.payload.restart && !stopped) {
      // kafkajs gave up. Rather than exit (and crash-loop under the sensor), start over: a new
      // consumer in the same group, after a pause. The queue and positions are kept.
      log.warn("the consumer stopped for good: restarting it", { error: e.payload.error });
      restartLoop();
    }
  });

  const push = (b: SourceBatch) => {
    if (waiter !== undefined) {
      const w = waiter;
      waiter = undefined;
      w(b);
      return;
    }
    queue.push(b);
    queuedMessages += b.messages.length;
    if (queuedMessages > maxQueued && !queuePaused) {
      queuePaused = true;
      setPaused();
    }
  };

  const run = () =>
    consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: ({ batch, resolveOffset }) => {
        if (batch.topic !== topic || stopped) return Promise.resolve();
        const p = batch.partition;
        let messages = batch.messages;
        const check = pendingVerify.get(p);
        if (check !== undefined && messages.length > 0) {
          const first = messages[0];
          const off = Number(first.offset);
          if (off === check.offset) {
            const found = fingerprintOf(first);
            if (!sameFingerprint(found, check.fp)) {
              fail(
                new TopicIdentityError(topic, {
                  reason: "fingerprint",
                  partition: p,
                  expected: check.fp,
                  found,
                  what: `the record at offset ${off} differs from the one read before`,
                }),
              );
              return Promise.resolve();
            }
            messages = messages.slice(1);
          } else {
            log.debug("identity record not in the log any more: not verified", {
              partition: p,
              offset: check.offset,
            });
          }
          pendingVerify.delete(p);
        }
        const last = batch.messages[batch.messages.length - 1];
        if (last !== undefined) {
          position.set(p, Number(last.offset) + 1);
          resolveOffset(last.offset);
        }
        if (messages.length > 0) {
          push({
            partition: p,
            messages,
            fetchedOffset: Number((batch as unknown as { fetchedOffset: string }).fetchedOffset),
            highWatermark: Number(batch.highWatermark),
          });
        }
        return Promise.resolve();
      },
    });

  // Restarts the consumer until it runs again (never gives up: Kafka outages are waited out).
  const restartLoop = async () => {
    for (let attempt = 0; !stopped; attempt++) {
      await new Promise((r) =>
        setTimeout(r, backoffDelay(attempt, { initialMs: 1000, maxMs: 15_000 }))
      );
      if (stopped) return;
      try {
        await consumer.stop().catch(() => {});
        await consumer.connect();
        await run();
        consumerPaused = false;
        setPaused();
        return;
      } catch (err) {
        log.debug("consumer restart failed; retrying", { error: err as Error });
      }
    }
  };

  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await run();

  return {
    take() {
      const b = queue.shift();
      if (b !== undefined) {
        queuedMessages -= b.messages.length;
        if (queuePaused && queuedMessages <= maxQueued / 2) {
          queuePaused = false;
          setPaused();
        }
        return Promise.resolve(b);
      }
      if (stopped) return Promise.resolve(null);
      return new Promise((resolve) => {
        waiter = resolve;
      });
    },
    queued: () => queuedMessages,
    assigned: () => assigned,
    hold() {
      held = true;
      setPaused();
    },
    release() {
      held = false;
      setPaused();
    },
    up: () => kafkaUp,
    failed: failed.promise,
    async stop() {
      stopped = true;
      const w = waiter;
      waiter = undefined;
      w?.(null);
      await Promise.race([consumer.disconnect(), new Promise((r) => setTimeout(r, 10_000))])
        .catch(() => {});
    },
  };
}
