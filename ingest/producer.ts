/**
 * Batching, ordered, loss-averse producer core. Records are buffered in memory and handed to an
 * injected `send` (the kafkajs edge: see kafkaSend) in batches of at most `batchSize`, every
 * `lingerMs`, with exactly one batch in flight: a failed batch is retried as-is (same records,
 * same order) with exponential backoff, so per-key order is kept and kafkajs' idempotent producer
 * can de-duplicate a retry of a batch the broker had already written.
 *
 * While sends fail, records stay in memory up to `maxMemory`; beyond that the oldest are moved
 * to the disk spool (if any), and when the spool is full too, new records are refused (dropped,
 * counted, logged). Delivery order is always: the batch in flight, the spool, memory.
 * @module
 */

import { backoffDelay, type BackoffOptions } from "../common/backoff.ts";
import { createLogger, type Logger } from "../common/log.ts";
import type { Spool } from "./spool.ts";

/** One outgoing Kafka record (JSON-serializable, as stored in the spool). */
export interface OutRecord {
  /** Destination topic. */
  topic: string;
  /** Message key (the symbol), or null. */
  key: string | null;
  /** Message value. */
  value: string;
  /** Record timestamp, epoch ms as a string. */
  timestamp: string;
  /** Headers (string values). */
  headers: Record<string, string>;
}

/** Delivers one batch; resolves once every record is acknowledged, rejects otherwise. */
export type SendBatch = (records: OutRecord[]) => Promise<void>;

/** Options for createBatcher. */
export interface BatcherOptions {
  /** Delivers a batch (kafkaSend in production, a wrapper in tests). */
  send: SendBatch;
  /** Max records per batch (default 5000). */
  batchSize?: number;
  /** Max approximate bytes per batch, below the broker's message.max.bytes (default 512 KiB). */
  maxBatchBytes?: number;
  /** Max time a record waits for a batch to fill, ms (default 5). */
  lingerMs?: number;
  /** Records held in memory before spilling to the spool (default 100_000). */
  maxMemory?: number;
  /** Disk spool for overflow; without one, records beyond maxMemory are refused. */
  spool?: Spool<OutRecord>;
  /** Backoff between failed sends (default 100 ms .. 5 s). */
  backoff?: BackoffOptions;
  /** Logger (default "ingest.producer"). */
  logger?: Logger;
  /** Clock, epoch ms (default Date.now). */
  now?: () => number;
}

/** Counters of a Batcher. */
export interface BatcherStats {
  /** Records acknowledged by send. */
  delivered: number;
  /** Records acknowledged, by topic. */
  deliveredByTopic: Record<string, number>;
  /** Batches acknowledged. */
  batches: number;
  /** Failed send attempts. */
  failures: number;
  /** Records refused because memory and spool were full. */
  dropped: number;
  /** Records in memory (including a batch in flight taken from memory). */
  memory: number;
  /** Records in the spool not yet delivered. */
  spooled: number;
  /** Bytes of spool segment files. */
  spoolBytes: number;
  /** Durations of acknowledged sends since the last takeLatencies(), ms. */
  latencies: number[];
}

/** The buffering producer. */
export interface Batcher {
  /** Queues a record (never blocks); false when refused because everything is full. */
  enqueue(record: OutRecord): boolean;
  /** Current counters. */
  stats(): BatcherStats;
  /** Returns and clears the send latencies collected so far. */
  takeLatencies(): number[];
  /** Resolves once everything queued so far is delivered (or `signal` aborts). */
  flush(signal?: AbortSignal): Promise<void>;
  /**
   * Delivers everything, waiting up to `timeoutMs` (default: forever); what is still not
   * delivered then is written to the spool for the next run. Resolves to records left over.
   */
  close(options?: { timeoutMs?: number }): Promise<number>;
}

/** Creates a Batcher and starts its delivery loop. */
export function createBatcher(options: BatcherOptions): Batcher {
  const send = options.send;
  const batchSize = options.batchSize ?? 5000;
  const lingerMs = options.lingerMs ?? 5;
  const maxBatchBytes = options.maxBatchBytes ?? 512 * 1024;
  const maxMemory = options.maxMemory ?? 100_000;
  const spool = options.spool;
  const log = options.logger ?? createLogger("ingest.producer");
  const now = options.now ?? Date.now;
  const backoff = { initialMs: 100, maxMs: 5000, ...options.backoff };

  let memory: OutRecord[] = [];
  let memHead = 0; // index of the first live record in `memory` (amortized shift)
  let firstQueuedAt = 0;
  let inflightFromMemory = 0;
  let closing = false;
  let stopped = false;
  let spoolFull = false;
  let attempt = 0;
  let lastDropLog = 0;
  let latencies: number[] = [];
  const stats = {
    delivered: 0,
    deliveredByTopic: {} as Record<string, number>,
    batches: 0,
    failures: 0,
    dropped: 0,
  };
  let wake: (() => void) | undefined;
  let idleWaiters: (() => void)[] = [];
  const memCount = () => memory.length - memHead;

  function notify(): void {
    const w = wake;
    wake = undefined;
    w?.();
  }

  function waitWake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** How many of `records` (from `from`) fit in one batch by count and bytes (at least 1). */
  function fit(records: readonly OutRecord[], from: number, max: number): number {
    let bytes = 0;
    let n = 0;
    for (let i = from; i < records.length && n < max; i++, n++) {
      const r = records[i];
      bytes += r.value.length + (r.key?.length ?? 0) + 64;
      for (const k in r.headers) bytes += k.length + r.headers[k].length;
      if (bytes > maxBatchBytes && n > 0) break;
    }
    return n;
  }

  function take(n: number): OutRecord[] {
    const out = memory.slice(memHead, memHead + fit(memory, memHead, n));
    memHead += out.length;
    if (memHead > 4096 && memHead * 2 > memory.length) {
      memory = memory.slice(memHead);
      memHead = 0;
    }
    return out;
  }

  function unshift(batch: OutRecord[]): void {
    memory = batch.concat(memory.slice(memHead));
    memHead = 0;
  }

  function pendingTotal(): number {
    return memCount() + inflightFromMemory + (spool?.count() ?? 0);
  }

  async function spill(): Promise<void> {
    if (!spool || memCount() <= maxMemory) return;
    // Move the oldest records down to half the memory bound, as many as the spool takes.
    const n = memCount() - Math.floor(maxMemory / 2);
    const chunk = memory.slice(memHead, memHead + n);
    const r = await spool.append(chunk);
    memHead += r.written;
    if (r.refused > 0 && !spoolFull) {
      spoolFull = true;
      log.error("Spool is full: new records will be dropped until Kafka catches up", {
        dir: spool.dir,
        bytes: spool.bytes(),
      });
    } else if (r.refused === 0) spoolFull = false;
  }

  /** Sends one batch; on failure returns the backoff delay to wait (after re-queueing). */
  async function deliver(batch: OutRecord[]): Promise<number> {
    const t0 = performance.now();
    try {
      await send(batch);
    } catch (e) {
      stats.failures++;
      const delay = backoffDelay(attempt++, backoff);
      log.warn("Send failed; retrying", {
        records: batch.length,
        attempt,
        retryInMs: delay,
        error: e as Error,
      });
      return delay;
    }
    latencies.push(performance.now() - t0);
    if (attempt > 0) log.info("Kafka send recovered", { afterAttempts: attempt });
    attempt = 0;
    stats.delivered += batch.length;
    stats.batches++;
    for (const r of batch) {
      stats.deliveredByTopic[r.topic] = (stats.deliveredByTopic[r.topic] ?? 0) + 1;
    }
    return 0;
  }

  /** Waits `ms` while spilling memory to the spool whenever it overflows. */
  async function waitOrSpill(ms: number): Promise<void> {
    const until = now() + ms;
    while (!stopped) {
      await spill();
      const left = until - now();
      if (left <= 0) return;
      await waitWake(left);
    }
  }

  async function loop(): Promise<void> {
    while (!stopped) {
      await spill();
      if (spool && spool.count() > 0) {
        const peeked = await spool.peek(batchSize);
        const batch = peeked.slice(0, fit(peeked, 0, batchSize));
        if (batch.length === 0) {
          // Counted but unreadable (should not happen): avoid a busy loop.
          await waitWake(100);
          continue;
        }
        const delay = await deliver(batch);
        if (delay === 0) {
          await spool.ack(batch.length);
          spoolFull = false; // space was freed
        } else await waitOrSpill(delay);
        continue;
      }
      if (memCount() === 0) {
        for (const w of idleWaiters) w();
        idleWaiters = [];
        if (closing) return;
        await waitWake(1000);
        continue;
      }
      const age = now() - firstQueuedAt;
      if (memCount() < batchSize && age < lingerMs && !closing) {
        await waitWake(lingerMs - age);
        continue;
      }
      const batch = take(batchSize);
      inflightFromMemory = batch.length;
      firstQueuedAt = now();
      const delay = await deliver(batch);
      inflightFromMemory = 0;
      if (delay > 0) {
        // Back at the head of memory (the spool was empty when it was taken), then wait.
        unshift(batch);
        await waitOrSpill(delay);
      }
    }
  }

  const running = loop().catch((e) => {
    log.error("Producer loop crashed", { error: e as Error });
    stopped = true;
    for (const w of idleWaiters) w();
  });

  return {
    enqueue(record) {
      if (memCount() >= maxMemory && (!spool || spoolFull)) {
        stats.dropped++;
        if (now() - lastDropLog > 10_000) {
          lastDropLog = now();
          log.error("Memory buffer and spool are full: dropping new records", {
            dropped: stats.dropped,
          });
        }
        return false;
      }
      if (memCount() === 0) firstQueuedAt = now();
      memory.push(record);
      if (memCount() >= batchSize || memCount() > maxMemory) notify();
      else if (memCount() === 1) notify();
      return true;
    },
    stats: () => ({
      ...stats,
      deliveredByTopic: { ...stats.deliveredByTopic },
      memory: memCount() + inflightFromMemory,
      spooled: spool?.count() ?? 0,
      spoolBytes: spool?.bytes() ?? 0,
      latencies: latencies.slice(),
    }),
    takeLatencies() {
      const l = latencies;
      latencies = [];
      return l;
    },
    flush(signal) {
      if (pendingTotal() === 0) return Promise.resolve();
      return new Promise((resolve) => {
        idleWaiters.push(resolve);
        signal?.addEventListener("abort", () => resolve(), { once: true });
        notify();
      });
    },
    async close(opts = {}) {
      closing = true;
      notify();
      const ac = new AbortController();
      const timer = opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => ac.abort(), opts.timeoutMs);
      await this.flush(ac.signal);
      clearTimeout(timer);
      stopped = true;
      notify();
      await running;
      // Whatever is left (Kafka down): keep it on disk for the next run, in order.
      const left = memCount();
      if (left > 0 && spool) {
        const r = await spool.append(memory.slice(memHead));
        memHead += r.written;
        stats.dropped += r.refused;
        if (r.refused > 0) log.error("Spool full at shutdown: records lost", { lost: r.refused });
      }
      const remaining = pendingTotal();
      await spool?.close();
      return remaining;
    },
  };
}

/** The minimal kafkajs producer surface kafkaSend needs. */
export interface KafkaBatchProducer {
  /** kafkajs Producer.sendBatch. */
  sendBatch(batch: {
    acks: number;
    topicMessages: {
      topic: string;
      messages: {
        key: string | null;
        value: string;
        timestamp: string;
        headers: Record<string, string>;
      }[];
    }[];
  }): Promise<unknown>;
}

/** A SendBatch over a kafkajs producer: one sendBatch per batch, acks=all. */
export function kafkaSend(producer: KafkaBatchProducer): SendBatch {
  return async (records) => {
    const byTopic = new Map<string, OutRecord[]>();
    for (const r of records) {
      let list = byTopic.get(r.topic);
      if (!list) byTopic.set(r.topic, list = []);
      list.push(r);
    }
    await producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, list]) => ({
        topic,
        messages: list.map((r) => ({
          key: r.key,
          value: r.value,
          timestamp: r.timestamp,
          headers: r.headers,
        })),
      })),
    });
  };
}
