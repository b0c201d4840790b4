/**
 * Batching, ordered, loss-averse producer core. Records are buffered in memory and handed to an
 * injected `send` (the kafkajs edge: see kafkaSend) in batches of at most `batchSize` records
 * and `maxBatchBytes` UTF-8 bytes (recordBytes), every `lingerMs`, with exactly one send in
 * flight: a failed send is retried as-is (same records, same order) with exponential backoff,
 * so per-key order is kept and kafkajs' idempotent producer can de-duplicate a retry of a batch
 * the broker had already written.
 *
 * Too large: a record over `maxRecordBytes` is never sent; `tooLarge` replaces it (ingest makes
 * it a dead letter) or it is dropped (counted, logged). A batch Kafka refuses as too large
 * (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE) is split in halves and the halves sent, never the
 * same batch again; later batches use at most half the refused size; a single record Kafka
 * still refuses goes to `tooLarge` (each replacement must be smaller, so this ends).
 *
 * Outages: once sends have been failing or hanging for `spoolAfterMs`, the undelivered rest of
 * the batch in flight and everything in memory go to the disk spool (fsync'd), and new records
 * follow every `outageCheckMs`: a crash during an outage loses about the last second. Without
 * an outage, records beyond `maxMemory` in memory are spooled too (the oldest first). When the
 * spool is full, new records are refused (dropped, counted, logged). A spool write the disk
 * refuses (full, an I/O error) writes none of its records: they stay in memory, the write is
 * tried again with backoff, and meanwhile the spool counts as full.
 *
 * Delivery order is always: the batch in flight, the spool, memory.
 * @module
 */

import { TOO_LARGE_ERRORS, tooLargeError } from "../common/kafka_errors.ts";
import { backoffDelay, type BackoffOptions } from "../common/backoff.ts";
import { createLogger, type Logger } from "../common/log.ts";
import { Buffer } from "node:buffer";
import type { AppendResult, Spool } from "./spool.ts";
import { utf8Length } from "./_utf8.ts";
import {
  DEFAULT_BATCH_SIZE,
  DEFAULT_LINGER_MS,
  DEFAULT_MAX_MEMORY_TICKS,
  DEFAULT_MAX_RECORD_BYTES,
} from "./defaults.ts";
import { serialQueue } from "../common/serial.ts";

export { DEFAULT_MAX_RECORD_BYTES };

/** One outgoing Kafka record. */
export interface OutRecord {
  /** Destination topic. */
  topic: string;
  /** Message key (the symbol), or null. */
  key: string | null;
  /** Message value: text (sent as UTF-8) or bytes (e.g. a tick-v1 value). */
  value: string | Uint8Array;
  /** Record timestamp, epoch ms as a string. */
  timestamp: string;
  /** Headers (string values). */
  headers: Record<string, string>;
}

/**
 * An OutRecord as one spool line holds it (JSON): a binary value is stored as base64 text with
 * `valueEncoding: "base64"`; a text value as it is (so spools of earlier versions still read).
 */
export interface SpooledRecord {
  /** Destination topic. */
  topic: string;
  /** Message key, or null. */
  key: string | null;
  /** The value text, or the base64 of a binary value. */
  value: string;
  /** "base64" for a binary value; absent for text. */
  valueEncoding?: "base64";
  /** Record timestamp, epoch ms as a string. */
  timestamp: string;
  /** Headers (string values). */
  headers: Record<string, string>;
}

/** The spool form of a record (binary values as base64). */
export function toSpooled(r: OutRecord): SpooledRecord {
  if (typeof r.value === "string") return r as SpooledRecord;
  return {
    topic: r.topic,
    key: r.key,
    value: r.value.toBase64(),
    valueEncoding: "base64",
    timestamp: r.timestamp,
    headers: r.headers,
  };
}

/** The record a spool line holds, or null when the line is not one (not written by us). */
export function fromSpooled(x: unknown): OutRecord | null {
  const r = x as SpooledRecord;
  if (typeof r !== "object" || r === null || typeof r.topic !== "string") return null;
  if (typeof r.value !== "string" || typeof r.timestamp !== "string") return null;
  if (r.key !== null && typeof r.key !== "string") return null;
  if (typeof r.headers !== "object" || r.headers === null) return null;
  for (const k in r.headers) if (typeof r.headers[k] !== "string") return null;
  if (r.valueEncoding === undefined) {
    return {
      topic: r.topic,
      key: r.key,
      value: r.value,
      timestamp: r.timestamp,
      headers: r.headers,
    };
  }
  if (r.valueEncoding !== "base64") return null;
  let value: Uint8Array;
  try {
    value = Uint8Array.fromBase64(r.value);
  } catch {
    return null;
  }
  return { topic: r.topic, key: r.key, value, timestamp: r.timestamp, headers: r.headers };
}

/** UTF-8 bytes of a text value, or the length of a binary one. */
export function valueBytes(value: string | Uint8Array): number {
  return typeof value === "string" ? utf8Length(value) : value.byteLength;
}

/** Delivers one batch; resolves once every record is acknowledged, rejects otherwise. */
export type SendBatch = (records: OutRecord[]) => Promise<void>;

/** Why a record must be replaced by a smaller one (see BatcherOptions.tooLarge). */
export interface TooLargeInfo {
  /** The record's size, recordBytes. */
  bytes: number;
  /** "limit": over maxRecordBytes; "broker": Kafka refused it in a batch of its own. */
  cause: "limit" | "broker";
  /** The configured maxRecordBytes. */
  limit: number;
  /** Kafka's error type (e.g. MESSAGE_TOO_LARGE) when cause is "broker". */
  error?: string;
}

/** A smaller replacement (e.g. a dead letter) for a record Kafka cannot take, or null to drop it. */
export type TooLargeHandler = (record: OutRecord, info: TooLargeInfo) => OutRecord | null;

/** Per-record allowance on top of key, value and header bytes (Kafka's varint framing). */
export const RECORD_OVERHEAD_BYTES = 40;
/** Default BatcherOptions.maxBatchBytes (512 KiB). */
export const DEFAULT_MAX_BATCH_BYTES = 512 * 1024;
/** Default BatcherOptions.spoolAfterMs. */
export const DEFAULT_SPOOL_AFTER_MS = 1000;
export { TOO_LARGE_ERRORS, tooLargeError };

/** Size of a record as Kafka counts it: UTF-8 bytes of key, value and headers, plus framing. */
export function recordBytes(r: OutRecord): number {
  let n = RECORD_OVERHEAD_BYTES + valueBytes(r.value) + (r.key === null ? 0 : utf8Length(r.key));
  for (const k in r.headers) n += 10 + utf8Length(k) + utf8Length(r.headers[k]);
  return n;
}

/** Options for createBatcher. */
export interface BatcherOptions {
  /** Delivers a batch (kafkaSend in production, a wrapper in tests). */
  send: SendBatch;
  /** Max records per batch (default 5000). */
  batchSize?: number;
  /** Max UTF-8 bytes per batch (sum of recordBytes), below the broker's limit (default 512 KiB). */
  maxBatchBytes?: number;
  /** Records larger than this (recordBytes) are never sent, see tooLarge (default 1_000_000). */
  maxRecordBytes?: number;
  /** Replaces a record that is too large for Kafka (default: drop it, counted and logged). */
  tooLarge?: TooLargeHandler;
  /** Max time a record waits for a batch to fill, ms (default 5). */
  lingerMs?: number;
  /** Records held in memory before spilling the oldest to the spool (default 100_000). */
  maxMemory?: number;
  /**
   * Disk spool for outages and overflow (records in their spool form, see toSpooled); without
   * one, records beyond maxMemory are refused.
   */
  spool?: Spool<SpooledRecord>;
  /** Sends failing or hanging this long, ms, mean an outage: memory goes to the spool (default 1000). */
  spoolAfterMs?: number;
  /** During an outage, new records are spooled this often, ms (default 100). */
  outageCheckMs?: number;
  /** Backoff between failed sends, and between spool writes the disk refused (100 ms .. 5 s). */
  backoff?: BackoffOptions;
  /** Logger (default "ingest.producer"). */
  logger?: Logger;
  /** Clock of the outage rule (spoolAfterMs) and of log throttling, ms (default Date.now). */
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
  /** Failed send attempts (not counting refusals as too large). */
  failures: number;
  /** Sends Kafka refused as too large (each was split or its record replaced). */
  tooLargeRefusals: number;
  /** Records replaced by tooLarge. */
  tooLargeReplaced: number;
  /** Records refused because memory and spool were full, or too large and not replaceable. */
  dropped: number;
  /** Spool writes the disk refused (full, I/O error); their records stayed in memory. */
  spoolErrors: number;
  /** Records in memory (including the part of a batch in flight that is not in the spool). */
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

/**
 * The records being delivered: `records[done..]` are not delivered yet, and
 * `records[done..spooledTo)` are also the first records of the spool (acknowledged there as
 * they are delivered). A batch read from the spool is spooled whole; one taken from memory is
 * spooled (the rest of it) when an outage starts.
 */
interface Inflight {
  records: OutRecord[];
  done: number;
  spooledTo: number;
}

// Stands in for a spooled line that is not a record (not written by us): dropped, logged.
const BROKEN: OutRecord = Object.freeze({
  topic: "",
  key: null,
  value: "",
  timestamp: "0",
  headers: {},
}) as OutRecord;

// Fills the consumed slots of the memory queue (never read: they are before its head).
const RELEASED = BROKEN;

function isOutRecord(r: unknown): r is OutRecord {
  const x = r as OutRecord;
  if (typeof x !== "object" || x === null || typeof x.topic !== "string") return false;
  if (typeof x.value !== "string" && !(x.value instanceof Uint8Array)) return false;
  if (typeof x.timestamp !== "string") return false;
  if (x.key !== null && typeof x.key !== "string") return false;
  if (typeof x.headers !== "object" || x.headers === null) return false;
  for (const k in x.headers) if (typeof x.headers[k] !== "string") return false;
  return true;
}

/** Creates a Batcher and starts its delivery loop. */
export function createBatcher(options: BatcherOptions): Batcher {
  const send = options.send;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
  const maxBatchBytes = options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  const maxRecordBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const tooLarge = options.tooLarge ?? (() => null);
  const maxMemory = options.maxMemory ?? DEFAULT_MAX_MEMORY_TICKS;
  const spool = options.spool;
  const spoolAfterMs = options.spoolAfterMs ?? DEFAULT_SPOOL_AFTER_MS;
  const outageCheckMs = options.outageCheckMs ?? 100;
  const log = options.logger ?? createLogger("ingest.producer");
  const now = options.now ?? Date.now;
  const backoff = { initialMs: 100, maxMs: 5000, ...options.backoff };

  let memory: OutRecord[] = [];
  let memHead = 0; // index of the first live record in `memory` (amortized shift)
  let firstQueuedAt = 0;
  let inflight: Inflight | undefined;
  let closing = false;
  let stopped = false;
  let spoolFull = false;
  // The disk refused the last spool write: retried from `retryAt` (backoff), counted as full.
  let spoolDown: { error: Error; retryAt: number; attempt: number; loggedAt: number } | undefined;
  let attempt = 0;
  let lastDropLog = 0;
  let latencies: number[] = [];
  // Lowered when Kafka refuses a batch as too large (its limit for a topic is below ours).
  let batchBytesCap = maxBatchBytes;
  // Start of the current run of failing/hanging sends (undefined while Kafka acknowledges).
  let stalledSince: number | undefined;
  let watchdog: ReturnType<typeof setInterval> | undefined;
  let outageSpill: Promise<void> | undefined;
  let outageLogged = false;
  const stats = {
    delivered: 0,
    deliveredByTopic: {} as Record<string, number>,
    batches: 0,
    failures: 0,
    tooLargeRefusals: 0,
    tooLargeReplaced: 0,
    dropped: 0,
    spoolErrors: 0,
  };
  let wake: (() => void) | undefined;
  let idleWaiters: (() => void)[] = [];
  const memCount = () => memory.length - memHead;
  const inflightUnspooled = () =>
    inflight ? inflight.records.length - Math.max(inflight.done, inflight.spooledTo) : 0;

  // Moves between memory, the batch in flight and the spool happen one at a time.
  const locked = serialQueue();

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

  /**
   * Drops the `n` oldest records of memory (taken into a batch or spooled). Every slot a record
   * leaves is overwritten at once, also in an array that is being abandoned: the queue array
   * lives long, so V8 moves it to the old generation, and a record still referenced from a
   * slot there (even of a dead array) survives every young-generation GC until the next full
   * one, which grew the heap by the whole stream (bench/README.md, "Ingest: where the time and
   * memory go").
   */
  function release(n: number): void {
    const end = memHead + n;
    for (let i = memHead; i < end; i++) memory[i] = RELEASED;
    memHead = end;
    if (memHead >= memory.length) {
      memory = [];
      memHead = 0;
    } else if (memHead > 4096 && memHead * 2 > memory.length) {
      const old = memory;
      memory = memory.slice(memHead);
      old.fill(RELEASED, memHead);
      memHead = 0;
    }
  }

  function pendingTotal(): number {
    return memCount() + inflightUnspooled() + (spool?.count() ?? 0);
  }

  /**
   * Appends to the spool; a write the disk refuses (it throws, having written none of them) is
   * counted and logged, the records stay where they are, and no spool write is tried again
   * before the backoff's next time (the sends' backoff) unless `force`. Null when nothing was
   * written.
   */
  async function appendOrHold(
    records: readonly OutRecord[],
    force: boolean,
  ): Promise<AppendResult | null> {
    if (spoolDown && !force && now() < spoolDown.retryAt) return null;
    try {
      const r = await spool!.append(records.map(toSpooled));
      if (spoolDown) {
        log.info("The disk spool is writable again", {
          dir: spool!.dir,
          failedWrites: spoolDown.attempt,
        });
        spoolDown = undefined;
      }
      return r;
    } catch (e) {
      stats.spoolErrors++;
      const attempt = (spoolDown?.attempt ?? 0) + 1;
      const t = now();
      const logIt = !spoolDown || t - spoolDown.loggedAt >= 10_000;
      spoolDown = {
        error: e as Error,
        attempt,
        retryAt: t + backoffDelay(attempt - 1, backoff),
        loggedAt: logIt ? t : spoolDown!.loggedAt,
      };
      if (logIt) {
        log.error(
          "Cannot write to the disk spool: its records stay in memory, and new ones are " +
            "dropped (counted) while memory is full, until the disk takes writes again",
          { dir: spool!.dir, records: records.length, failedWrites: attempt, error: e as Error },
        );
      }
      return null;
    }
  }

  let cursorLogged = false;
  /** Logs when the spool's read position cannot be saved, and when it is saved again. */
  function noteCursor(): void {
    const e = spool!.cursorError();
    if (e && !cursorLogged) {
      cursorLogged = true;
      log.warn(
        "Cannot save the spool's read position: records delivered since would be sent again " +
          "after a restart",
        { dir: spool!.dir, error: e },
      );
    } else if (!e && cursorLogged) {
      cursorLogged = false;
      log.info("The spool's read position is saved again", { dir: spool!.dir });
    }
  }

  function noteSpooled(r: AppendResult): void {
    if (r.refused > 0 && !spoolFull) {
      spoolFull = true;
      log.error("Spool is full: new records will be dropped until Kafka catches up", {
        dir: spool!.dir,
        bytes: spool!.bytes(),
      });
    } else if (r.refused === 0) spoolFull = false;
  }

  /**
   * Moves records to the spool, oldest first: the undelivered rest of the batch in flight, then
   * memory (all of it, or the oldest down to half of maxMemory when `all` is false and memory
   * overflows). A write the disk refuses leaves everything in place (`appendOrHold`); `force`
   * tries even while the spool is backing off. Call under `locked`.
   */
  async function spill(all: boolean, force = false): Promise<void> {
    if (!spool) return;
    if (!all && memCount() <= maxMemory) return;
    const b = inflight;
    if (b) {
      const from = Math.max(b.done, b.spooledTo);
      if (from < b.records.length) {
        const r = await appendOrHold(b.records.slice(from), force);
        if (r === null) return;
        b.spooledTo = from + r.written;
        noteSpooled(r);
        // The rest of that batch stays in memory's place (requeue): memory cannot pass it.
        if (r.refused > 0) return;
      }
    }
    const n = all ? memCount() : memCount() - Math.floor(maxMemory / 2);
    if (n <= 0) return;
    const r = await appendOrHold(memory.slice(memHead, memHead + n), force);
    if (r === null) return;
    release(r.written);
    noteSpooled(r);
  }

  function stall(): void {
    if (stalledSince !== undefined) return;
    stalledSince = now();
    if (spool) watchdog = setInterval(onWatchdog, outageCheckMs);
  }

  function unstall(): void {
    stalledSince = undefined;
    outageLogged = false;
    clearInterval(watchdog);
    watchdog = undefined;
  }

  function onWatchdog(): void {
    if (stalledSince === undefined || outageSpill || now() - stalledSince < spoolAfterMs) return;
    if (memCount() === 0 && inflightUnspooled() === 0) return;
    if (!outageLogged) {
      outageLogged = true;
      log.warn("Kafka sends failing: spooling to disk until they succeed again", {
        forMs: now() - stalledSince,
        dir: spool!.dir,
      });
    }
    outageSpill = locked(() => spill(true))
      .catch((e) => log.error("Spooling during the outage failed", { error: e as Error }))
      .finally(() => (outageSpill = undefined));
  }

  /** The next batch to deliver, a linger delay to wait, or "idle". Call under `locked`. */
  async function pick(): Promise<Inflight | number | "idle"> {
    if (spool && spool.count() > 0) {
      const peeked = await spool.peek(batchSize);
      // Counted but unreadable (should not happen): avoid a busy loop.
      if (peeked.length === 0) return 100;
      const records = peeked.map((r) => fromSpooled(r) ?? BROKEN);
      return inflight = { records, done: 0, spooledTo: records.length };
    }
    if (memCount() === 0) return "idle";
    const age = performance.now() - firstQueuedAt;
    if (memCount() < batchSize && age < lingerMs && !closing) return lingerMs - age;
    const records = memory.slice(memHead, memHead + Math.min(batchSize, memCount()));
    release(records.length);
    firstQueuedAt = performance.now();
    return inflight = { records, done: 0, spooledTo: 0 };
  }

  /** Marks `n` more records of `b` delivered, acknowledging its spooled ones. Under `locked`. */
  async function advance(b: Inflight, n: number): Promise<void> {
    const ack = Math.max(0, Math.min(b.done + n, b.spooledTo) - b.done);
    b.done += n;
    if (ack > 0) {
      await spool!.ack(ack);
      spoolFull = false; // space was freed
      if (spoolDown) spoolDown.retryAt = 0; // and the disk may take writes again
      noteCursor();
    }
    if (b.done >= b.records.length) inflight = undefined;
  }

  /** Puts the undelivered, unspooled rest of `b` back at the head of memory. Under `locked`. */
  function requeue(b: Inflight): void {
    const from = Math.max(b.done, b.spooledTo);
    if (from < b.records.length) {
      const old = memory;
      memory = b.records.slice(from).concat(memory.slice(memHead));
      old.fill(RELEASED);
      memHead = 0;
    }
    inflight = undefined;
  }

  /** How many records of `b` from `b.done` (whose size is `headBytes`) go into one send. */
  function fit(b: Inflight, maxCount: number, headBytes: number): number {
    let bytes = headBytes;
    let n = 1;
    const budget = batchBytesCap;
    for (let i = b.done + 1; i < b.records.length && n < maxCount; i++) {
      const r = b.records[i];
      if (r === BROKEN) break;
      const rb = recordBytes(r);
      if (rb > maxRecordBytes || bytes + rb > budget) break;
      bytes += rb;
      n++;
    }
    return n;
  }

  /** Replaces the head record of `b` (too large) by a smaller one, or drops it. */
  async function replaceHead(b: Inflight, info: TooLargeInfo): Promise<void> {
    const old = b.records[b.done];
    let rep: OutRecord | null = null;
    try {
      rep = tooLarge(old, info);
    } catch (e) {
      log.error("Replacing a record too large for Kafka failed", { error: e as Error });
    }
    if (rep !== null && isOutRecord(rep) && recordBytes(rep) < info.bytes) {
      stats.tooLargeReplaced++;
      b.records[b.done] = rep;
      return;
    }
    stats.dropped++;
    log.error("Record too large for Kafka and not replaceable by a smaller one: dropped", {
      topic: old.topic,
      key: old.key ?? undefined,
      bytes: info.bytes,
      cause: info.cause,
    });
    await locked(() => advance(b, 1));
  }

  /**
   * Delivers `b` in sends of at most maxBatchBytes; resolves to 0 once done (or stopped), or to
   * the backoff delay after a failed send (the rest of `b` is then requeued).
   */
  async function deliver(b: Inflight): Promise<number> {
    let countCap = b.records.length;
    while (b.done < b.records.length) {
      if (stopped) {
        await locked(() => requeue(b));
        return 0;
      }
      const head = b.records[b.done];
      if (head === BROKEN) {
        stats.dropped++;
        log.error("Spooled line is not a record: dropped", { dir: spool?.dir });
        await locked(() => advance(b, 1));
        continue;
      }
      const headBytes = recordBytes(head);
      if (headBytes > maxRecordBytes) {
        await replaceHead(b, { bytes: headBytes, cause: "limit", limit: maxRecordBytes });
        continue;
      }
      const n = fit(b, countCap, headBytes);
      const piece = n === b.records.length ? b.records : b.records.slice(b.done, b.done + n);
      stall();
      const t0 = performance.now();
      try {
        await send(piece);
      } catch (e) {
        const type = tooLargeError(e);
        if (type !== undefined) {
          stats.tooLargeRefusals++;
          if (n > 1) {
            let bytes = 0;
            for (const r of piece) bytes += recordBytes(r);
            batchBytesCap = Math.min(batchBytesCap, Math.max(1, Math.floor(bytes / 2)));
            countCap = Math.ceil(n / 2);
            log.warn("Kafka refused a batch as too large: sending it in halves", {
              records: n,
              bytes,
              error: type,
              batchBytesCap,
            });
          } else {
            await replaceHead(b, {
              bytes: headBytes,
              cause: "broker",
              limit: maxRecordBytes,
              error: type,
            });
          }
          continue;
        }
        stats.failures++;
        const delay = backoffDelay(attempt++, backoff);
        log.warn("Send failed; retrying", {
          records: n,
          attempt,
          retryInMs: delay,
          error: e as Error,
        });
        await locked(() => requeue(b));
        return delay;
      }
      unstall();
      latencies.push(performance.now() - t0);
      if (attempt > 0) log.info("Kafka send recovered", { afterAttempts: attempt });
      attempt = 0;
      stats.delivered += n;
      stats.batches++;
      for (const r of piece) {
        stats.deliveredByTopic[r.topic] = (stats.deliveredByTopic[r.topic] ?? 0) + 1;
      }
      await locked(() => advance(b, n));
    }
    return 0;
  }

  /** Waits `ms` while spilling memory to the spool whenever it overflows. */
  async function waitOrSpill(ms: number): Promise<void> {
    const until = performance.now() + ms;
    while (!stopped) {
      await locked(() => spill(false));
      const left = until - performance.now();
      if (left <= 0) return;
      await waitWake(left);
    }
  }

  async function loop(): Promise<void> {
    while (!stopped) {
      await locked(() => spill(false));
      const next = await locked(pick);
      if (next === "idle") {
        for (const w of idleWaiters) w();
        idleWaiters = [];
        if (closing) return;
        await waitWake(1000);
        continue;
      }
      if (typeof next === "number") {
        await waitWake(next);
        continue;
      }
      const delay = await deliver(next);
      if (delay > 0) await waitOrSpill(delay);
    }
  }

  const running = loop().catch((e) => {
    log.error("Producer loop crashed", { error: e as Error });
    stopped = true;
    for (const w of idleWaiters) w();
  });

  return {
    enqueue(record) {
      if (memCount() >= maxMemory && (!spool || spoolFull || spoolDown)) {
        stats.dropped++;
        if (now() - lastDropLog > 10_000) {
          lastDropLog = now();
          if (spool && !spoolFull && spoolDown) {
            log.error(
              "Memory buffer is full and the disk refuses the spool: dropping new records",
              { dropped: stats.dropped, error: spoolDown.error },
            );
          } else {
            log.error("Memory buffer and spool are full: dropping new records", {
              dropped: stats.dropped,
            });
          }
        }
        return false;
      }
      if (memCount() === 0) firstQueuedAt = performance.now();
      memory.push(record);
      if (memCount() >= batchSize || memCount() > maxMemory) notify();
      else if (memCount() === 1) notify();
      return true;
    },
    stats: () => ({
      ...stats,
      deliveredByTopic: { ...stats.deliveredByTopic },
      memory: memCount() + inflightUnspooled(),
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
      // Timed out (Kafka down): put what is not on disk there now, before waiting for a send
      // that may still hang, so a hard exit from here on loses nothing.
      if (ac.signal.aborted && spool) await locked(() => spill(true, true));
      await running;
      unstall();
      // Whatever is left (Kafka down): keep it on disk for the next run, in order.
      if (spool && memCount() > 0) {
        const left = memCount();
        await locked(() => spill(true, true));
        const lost = memCount();
        if (lost > 0) {
          stats.dropped += lost;
          release(lost);
          if (spoolDown) {
            log.error("Cannot write to the disk spool at shutdown: records lost", {
              lost,
              of: left,
              dir: spool.dir,
              error: spoolDown.error,
            });
          } else log.error("Spool full at shutdown: records lost", { lost, of: left });
        }
      }
      const remaining = pendingTotal();
      await locked(() => spool?.close());
      return remaining;
    },
  };
}

/** A record as kafkaSend hands it to kafkajs. */
export interface KafkaMessage {
  /** Message key, or null. */
  key: string | null;
  /** Text or bytes. */
  value: string | Buffer;
  /** Epoch ms as a string. */
  timestamp: string;
  /** Headers. */
  headers: Record<string, string>;
}

/** The minimal kafkajs producer surface kafkaSend needs. */
export interface KafkaBatchProducer {
  /** kafkajs Producer.sendBatch. */
  sendBatch(batch: {
    acks: number;
    topicMessages: { topic: string; messages: KafkaMessage[] }[];
  }): Promise<unknown>;
}

/** Buffer of a binary value: the value itself when it is one, else a view of its bytes. */
function asBuffer(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * A SendBatch over a kafkajs producer: one sendBatch per batch, acks=all. A binary value goes
 * as a Buffer (kafkajs writes anything that is not a Buffer as a string). Records already in
 * kafkajs' shape (one topic, text or Buffer values: what ingest builds) are handed over as they
 * are, without a copy per record: kafkajs reads only key, value, timestamp, headers and
 * partition.
 */
export function kafkaSend(producer: KafkaBatchProducer): SendBatch {
  return async (records) => {
    const first = records[0]?.topic;
    let asIs = true;
    for (const r of records) {
      if (r.topic !== first || (typeof r.value !== "string" && !Buffer.isBuffer(r.value))) {
        asIs = false;
        break;
      }
    }
    if (asIs) {
      if (records.length === 0) return;
      await producer.sendBatch({
        acks: -1,
        topicMessages: [{ topic: first, messages: records as KafkaMessage[] }],
      });
      return;
    }
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
          value: typeof r.value === "string" ? r.value : asBuffer(r.value),
          timestamp: r.timestamp,
          headers: r.headers,
        })),
      })),
    });
  };
}
