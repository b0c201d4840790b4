/**
 * The tick source: the only kafkajs consumer code of the aggregator.
 *
 * - It consumes in a consumer group of its own run (`<group>.run-<id>`), so a restart after
 *   `kill -9` never waits for the dead member's session timeout; the offsets that matter are
 *   the aggregator's (Deno KV), and it seeks every assigned partition to them.
 * - The consumer runs on a thread of its own (a Worker, `_source_worker.ts`) when the broker
 *   list is given: kafkajs' decoding of fetch responses is most of the cost of reading a record,
 *   and on its own core it overlaps with the aggregator's parsing, folding and triggers. Each
 *   batch crosses over as a few typed arrays (the keys and values copied into one buffer,
 *   offsets, timestamps, format codes), transferred, not cloned. Without a broker list, or when
 *   the worker cannot start (a compiled binary built without it), the same consumer code runs
 *   on the main thread.
 * - `eachBatch` only encodes and queues the batch and returns, so kafkajs fetches the next batch
 *   while the aggregator folds this one (one `resolveOffset` per batch). Backpressure pauses the
 *   consumer while more than `maxQueuedBytes` are read and not yet taken (counted on the
 *   consumer's side, so the bound holds across threads), and whenever the aggregator asks.
 * - Topic identity: when a partition resumes from a stored offset `n`, the source starts at
 *   `n - 1` and compares that record with the fingerprint the checkpoint kept; a different
 *   record means the topic was deleted and recreated (or the broker wiped) under the stored
 *   offsets.
 * @module
 */

import type { Consumer, KafkaMessage } from "kafkajs";
// Every kafkajs client of the process (consumer, admin, dead-letter producer) without the idle
// busy loop of kafkajs 2.2.4.
import "../common/kafkajs_idle_fix.ts";
import type { Kafka } from "../common/kafka.ts";
import type { LogFields, Logger } from "../common/log.ts";
import { backoffDelay } from "../common/backoff.ts";
import { kafkaRefusalReason } from "../common/kafka_security.ts";
import type { Fingerprint, IdentityMismatchReason } from "./kv_layout.ts";
import { formatCodeOf, type FormatHeader } from "./record.ts";

export type { Fingerprint, KafkaMessage };

/** FNV-1a (32-bit) of `bytes[start, end)` as 8 hex digits. */
function fnv1a(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) {
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

/** Format codes of {@linkcode SourceBatch.formats} (see record.ts formatCodeOf). */
export const FORMAT_CODE = { json: 0, tickV1: 1, other: 2 } as const;

/**
 * One partition's batch handed to the aggregator, in offset order, as columns: message `i` has
 * offset `offsets[i]`, timestamp `timestamps[i]`, value `data[spans[4i], spans[4i+1])` and key
 * `data[spans[4i+2], spans[4i+3])` (start -1: null), and `tp-format` header code `formats[i]`.
 */
export interface SourceBatch {
  /** Partition. */
  partition: number;
  /** Number of messages. */
  count: number;
  /** Offsets, increasing. */
  offsets: Float64Array;
  /** Record timestamps (epoch ms). */
  timestamps: Float64Array;
  /** The keys and values, back to back. */
  data: Uint8Array;
  /** Per message: value start, value end, key start, key end in `data` (start -1 = null). */
  spans: Int32Array;
  /** Per message: 0 json (or no header), 1 tick-v1, 2 another value (in `otherFormats`). */
  formats: Uint8Array;
  /** The `tp-format` headers of the messages with format code 2, by message index. */
  otherFormats: Map<number, FormatHeader> | null;
  /** The `ingest_ms` header of the last message as a number (NaN when absent or bad). */
  lastIngestMs: number;
  /** Fingerprint of the last message. */
  last: Fingerprint;
  /** The offset the fetch asked for: a first message past it means the log skips offsets there. */
  fetchedOffset: number;
  /** The partition's end offset when the batch was fetched. */
  highWatermark: number;
}

/** The value of message `i` of `b` (a view into `b.data`), or null. */
export function valueAt(b: SourceBatch, i: number): Uint8Array | null {
  const s = b.spans[4 * i];
  return s < 0 ? null : b.data.subarray(s, b.spans[4 * i + 1]);
}

/** The key of message `i` of `b` (a view into `b.data`), or null. */
export function keyAt(b: SourceBatch, i: number): Uint8Array | null {
  const s = b.spans[4 * i + 2];
  return s < 0 ? null : b.data.subarray(s, b.spans[4 * i + 3]);
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
  /**
   * Pause the consumer while batches of more than this many bytes (values, keys and 33 bytes
   * of columns per message) are read and not yet taken (default 2 MiB).
   */
  maxQueuedBytes?: number;
  /** kafkajs session timeout (default 10 000 ms: a per-run group never waits for it). */
  sessionTimeoutMs?: number;
  /**
   * Max bytes per partition per fetch (default 256 KiB; 4 MiB per fetch). Smaller fetches than
   * kafkajs' default 1 MiB: same throughput here, and about 60 MB less peak RSS (bench/README.md).
   */
  maxBytesPerPartition?: number;
  /**
   * The broker list: the consumer then runs on its own thread with a kafkajs client of its own
   * (same brokers, same permission checks). Without it, it uses `kafka` on the main thread.
   */
  brokers?: readonly string[];
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
  /** Whether the consumer runs on a thread of its own. */
  threaded: boolean;
  /** Settles with an error that stops the aggregator (identity mismatch, consumer gave up). */
  failed: Promise<Error>;
  /** Stops consuming and leaves the group (queued batches can still be taken). */
  stop(): Promise<void>;
}

// ------------------------------------------------------------------------------------------------
// The consumer side (on the worker thread, or on the main thread as a fallback)

/** An error as it crosses threads. */
export interface ErrorData {
  /** Error name (kafkajs' class names are kept: the CLI maps them to messages). */
  name: string;
  /** Message. */
  message: string;
}

/** Messages from the consumer to the source. */
export type ConsumerEvent =
  | { type: "ready" }
  | { type: "start-failed"; error: ErrorData }
  | { type: "batch"; batch: SourceBatch }
  | { type: "assigned"; partitions: number[] }
  | { type: "up"; up: boolean }
  | { type: "failed"; identity: IdentityProblem | null; error: ErrorData }
  | { type: "log"; level: "debug" | "info" | "warn" | "error"; msg: string; fields?: LogFields }
  | { type: "stopped" };

/** Messages from the source to the consumer. */
export type ConsumerCommand =
  | { type: "hold"; held: boolean }
  | { type: "taken"; bytes: number }
  | { type: "stop" };

/** What {@linkcode runConsumer} needs besides the kafkajs client. */
export type ConsumerSettings = Omit<SourceOptions, "logger" | "brokers">;

/** Handle of a running consumer. */
export interface ConsumerControl {
  /** Holds or releases fetching (the source's hold()). */
  setHeld(held: boolean): void;
  /** The source took batches of this many bytes (see {@linkcode batchBytes}). */
  taken(bytes: number): void;
  /** Disconnects (leaves the group); emits "stopped" when done. */
  stop(): Promise<void>;
}

/** An error as data (name and message). */
export function errorData(e: unknown): ErrorData {
  const err = e instanceof Error ? e : new Error(String(e));
  return { name: err.name, message: err.message };
}

/** Encodes a kafkajs batch's messages as a {@linkcode SourceBatch}. */
export function encodeBatch(
  partition: number,
  messages: readonly KafkaMessage[],
  where: { fetchedOffset: number; highWatermark: number },
): SourceBatch {
  const n = messages.length;
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const m = messages[i];
    bytes += (m.value?.byteLength ?? 0) + (m.key?.byteLength ?? 0);
  }
  const data = new Uint8Array(bytes);
  const offsets = new Float64Array(n);
  const timestamps = new Float64Array(n);
  const spans = new Int32Array(4 * n);
  const formats = new Uint8Array(n);
  let otherFormats: Map<number, FormatHeader> | null = null;
  let pos = 0;
  for (let i = 0; i < n; i++) {
    const m = messages[i];
    offsets[i] = Number(m.offset);
    timestamps[i] = Number(m.timestamp);
    const v = m.value;
    const j = 4 * i;
    if (v === null) spans[j] = spans[j + 1] = -1;
    else {
      data.set(v, pos);
      spans[j] = pos;
      pos += v.byteLength;
      spans[j + 1] = pos;
    }
    const k = m.key;
    if (k === null || k === undefined) spans[j + 2] = spans[j + 3] = -1;
    else {
      data.set(k, pos);
      spans[j + 2] = pos;
      pos += k.byteLength;
      spans[j + 3] = pos;
    }
    const h = m.headers?.["tp-format"] as FormatHeader;
    if (h !== undefined) {
      const code = formatCodeOf(h);
      formats[i] = code;
      if (code === FORMAT_CODE.other) {
        (otherFormats ??= new Map()).set(i, copyHeader(h));
      }
    }
  }
  const last = messages[n - 1];
  const h = last?.headers?.["ingest_ms"];
  const ingest = h === undefined ? NaN : Number(String(h));
  return {
    partition,
    count: n,
    offsets,
    timestamps,
    data,
    spans,
    formats,
    otherFormats,
    lastIngestMs: Number.isFinite(ingest) ? ingest : NaN,
    last: last === undefined
      ? { offset: -1, timestamp: "", keyHash: "", valueLength: -1 }
      : fingerprintOf(last),
    fetchedOffset: where.fetchedOffset,
    highWatermark: where.highWatermark,
  };
}

/** What a batch counts for in the queue bound: its bytes plus 33 bytes of columns a message. */
export function batchBytes(b: SourceBatch): number {
  return b.data.byteLength + 33 * b.count;
}

/** A header value detached from kafkajs' fetch buffer (plain Uint8Array copies). */
function copyHeader(h: FormatHeader): FormatHeader {
  if (h instanceof Uint8Array) return Uint8Array.prototype.slice.call(h);
  if (Array.isArray(h)) return h.map((x) => x instanceof Uint8Array ? x.slice() : x);
  return h;
}

/** The arrays a batch is made of (to transfer them between threads). */
export function transferablesOf(b: SourceBatch): ArrayBuffer[] {
  return [
    b.data.buffer as ArrayBuffer,
    b.offsets.buffer as ArrayBuffer,
    b.timestamps.buffer as ArrayBuffer,
    b.spans.buffer as ArrayBuffer,
    b.formats.buffer as ArrayBuffer,
  ];
}

/**
 * Runs the kafkajs consumer of a source and reports to `emit`: batches (encoded), the assigned
 * partitions, Kafka up/down, an identity mismatch, log lines. Resolves once the consumer runs.
 */
export async function runConsumer(
  kafka: Kafka,
  settings: ConsumerSettings,
  emit: (event: ConsumerEvent, transfer?: ArrayBuffer[]) => void,
): Promise<ConsumerControl> {
  const { topic } = settings;
  const log = (level: "debug" | "info" | "warn" | "error", msg: string, fields?: LogFields) =>
    emit({ type: "log", level, msg, fields });
  const consumer: Consumer = kafka.consumer({
    groupId: settings.groupId,
    sessionTimeout: settings.sessionTimeoutMs ?? 10_000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 250,
    maxBytesPerPartition: settings.maxBytesPerPartition ?? 256 * 1024,
    maxBytes: 4 * 1024 * 1024,
    retry: { retries: 8, initialRetryTime: 300, maxRetryTime: 5000 },
  });
  let stopped = false;
  let kafkaUp = true;
  let held = false;
  // Bytes posted and not yet taken: the queue bound holds across threads, whatever the latency
  // of the messages between them.
  const maxQueuedBytes = settings.maxQueuedBytes ?? 2 * 1024 * 1024;
  let inFlight = 0;
  let queueFull = false;
  let consumerPaused = false;
  let failedOnce = false;
  // Refused credentials or certificates while running (revoked, rotating): said once per outage
  // as what it is, then retried like any outage (the settings may be accepted again).
  let refusalReported = false;
  const setUp = (up: boolean) => {
    kafkaUp = up;
    if (up) refusalReported = false;
    emit({ type: "up", up });
  };
  const reportedRefusal = (error: unknown): boolean => {
    const reason = kafkaRefusalReason(error);
    if (reason === undefined) return false;
    if (!refusalReported) {
      refusalReported = true;
      log("warn", "kafka refused this process' TLS or SASL settings: retrying with backoff", {
        reason,
      });
    }
    return true;
  };
  const fail = (problem: IdentityProblem) => {
    if (failedOnce) return;
    failedOnce = true;
    stopped = true;
    emit({
      type: "failed",
      identity: problem,
      error: errorData(new TopicIdentityError(topic, problem)),
    });
  };
  // Next offset to fetch per partition = one past the last message queued (or the resume point).
  const position = new Map<number, number>();
  // Partitions whose record at resume - 1 is still to be checked.
  const pendingVerify = new Map<number, { offset: number; fp: Fingerprint }>();
  for (const [p, next] of settings.resume) {
    const fp = settings.verify?.get(p);
    const low = settings.logStart.get(p) ?? 0;
    if (fp !== undefined && fp.offset === next - 1 && next - 1 >= low) {
      pendingVerify.set(p, { offset: next - 1, fp });
      position.set(p, next - 1);
    } else position.set(p, next);
  }

  const applyPause = () => {
    const paused = held || queueFull;
    if (paused === consumerPaused || stopped) return;
    consumerPaused = paused;
    if (paused) consumer.pause([{ topic }]);
    else consumer.resume([{ topic }]);
  };

  const seekAll = (partitions: number[]) => {
    for (const p of partitions) {
      const off = position.get(p) ?? settings.logStart.get(p) ?? 0;
      consumer.seek({ topic, partition: p, offset: String(off) });
    }
  };

  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const assigned = (e.payload.memberAssignment[topic] ?? []).slice().sort((a, b) => a - b);
    emit({ type: "assigned", partitions: assigned });
    try {
      seekAll(assigned);
    } catch (err) {
      log("warn", "seek after the group join failed", { error: err as Error });
    }
    if (!kafkaUp) {
      setUp(true);
      log("info", "kafka up: consumer rejoined", { partitions: assigned });
    } else log("info", "partitions assigned", { partitions: assigned });
  });
  consumer.on(consumer.events.FETCH, () => {
    if (!kafkaUp) {
      setUp(true);
      log("info", "kafka up: fetching again");
    }
  });
  consumer.on(consumer.events.CRASH, (e) => {
    if (kafkaUp) {
      setUp(false);
      if (!reportedRefusal(e.payload.error)) {
        log("warn", "kafka down: the consumer lost the broker; kafkajs reconnects", {
          error: e.payload.error,
          restart: e.payload.restart,
        });
      }
    } else reportedRefusal(e.payload.error);
    if (!e.payload.restart && !stopped) {
      // kafkajs gave up. Rather than exit (and crash-loop under the sensor), start over: a new
      // consumer in the same group, after a pause. The positions are kept.
      log("warn", "the consumer stopped for good: restarting it", { error: e.payload.error });
      restartLoop();
    }
  });

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
              fail({
                reason: "fingerprint",
                partition: p,
                expected: check.fp,
                found,
                what: `the record at offset ${off} differs from the one read before`,
              });
              return Promise.resolve();
            }
            messages = messages.slice(1);
          } else {
            log("debug", "identity record not in the log any more: not verified", {
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
          const b = encodeBatch(p, messages, {
            fetchedOffset: Number((batch as unknown as { fetchedOffset: string }).fetchedOffset),
            highWatermark: Number(batch.highWatermark),
          });
          inFlight += batchBytes(b);
          emit({ type: "batch", batch: b }, transferablesOf(b));
          if (inFlight > maxQueuedBytes && !queueFull) {
            queueFull = true;
            applyPause();
          }
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
        applyPause();
        return;
      } catch (err) {
        if (!reportedRefusal(err)) {
          log("debug", "consumer restart failed; retrying", { error: err as Error });
        }
      }
    }
  };

  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await run();

  return {
    setHeld(h) {
      held = h;
      applyPause();
    },
    taken(bytes) {
      inFlight -= bytes;
      if (queueFull && inFlight <= maxQueuedBytes / 2) {
        queueFull = false;
        applyPause();
      }
    },
    async stop() {
      stopped = true;
      await Promise.race([consumer.disconnect(), new Promise((r) => setTimeout(r, 10_000))])
        .catch(() => {});
      emit({ type: "stopped" });
    },
  };
}

// ------------------------------------------------------------------------------------------------
// The source (main thread)

/** Rebuilds an error that crossed threads (same name and message). */
function errorOf(d: ErrorData): Error {
  const e = new Error(d.message);
  e.name = d.name;
  return e;
}

/** Starts consuming `options.topic`; resolves once the consumer runs (the join is async). */
export async function startSource(kafka: Kafka, options: SourceOptions): Promise<TickSource> {
  const { topic, logger: log } = options;
  const settings: ConsumerSettings = {
    topic,
    groupId: options.groupId,
    resume: options.resume,
    logStart: options.logStart,
    verify: options.verify,
    maxQueuedBytes: options.maxQueuedBytes,
    sessionTimeoutMs: options.sessionTimeoutMs,
    maxBytesPerPartition: options.maxBytesPerPartition,
  };

  const queue: SourceBatch[] = [];
  let queuedMessages = 0;
  let waiter: ((b: SourceBatch | null) => void) | undefined;
  let stopped = false;
  let kafkaUp = true;
  let held = false;
  let sentHeld = false;
  let assigned: number[] = [];
  const failed = Promise.withResolvers<Error>();
  let failedOnce = false;
  const stoppedSignal = Promise.withResolvers<void>();
  let send: (c: ConsumerCommand) => void = () => {};
  let stopSent = false;

  const sendHeld = () => {
    if (held === sentHeld || stopped) return;
    sentHeld = held;
    send({ type: "hold", held });
  };
  const wakeNull = () => {
    const w = waiter;
    waiter = undefined;
    w?.(null);
  };
  const onEvent = (ev: ConsumerEvent) => {
    switch (ev.type) {
      case "batch": {
        if (stopped && failedOnce) return;
        const b = ev.batch;
        if (waiter !== undefined) {
          const w = waiter;
          waiter = undefined;
          send({ type: "taken", bytes: batchBytes(b) });
          w(b);
          return;
        }
        queue.push(b);
        queuedMessages += b.count;
        return;
      }
      case "assigned":
        assigned = ev.partitions;
        return;
      case "up":
        kafkaUp = ev.up;
        return;
      case "failed":
        if (failedOnce) return;
        failedOnce = true;
        stopped = true;
        wakeNull();
        failed.resolve(
          ev.identity !== null ? new TopicIdentityError(topic, ev.identity) : errorOf(ev.error),
        );
        return;
      case "log":
        log[ev.level](ev.msg, ev.fields);
        return;
      case "stopped":
        stoppedSignal.resolve();
        return;
    }
  };

  // The consumer on its own thread, or (fallback) here.
  let worker: Worker | undefined;
  let local: ConsumerControl | undefined;
  if (options.brokers !== undefined && options.brokers.length > 0) {
    worker = await startWorker(options.brokers, settings, onEvent, log).catch((e) => {
      if (e instanceof WorkerUnavailableError) {
        log.warn("the consumer thread could not start: consuming on the main thread", {
          error: e,
        });
        return undefined;
      }
      throw e;
    });
  }
  if (worker !== undefined) {
    const w = worker;
    send = (c) => w.postMessage(c);
  } else {
    local = await runConsumer(kafka, settings, onEvent);
    const l = local;
    send = (c) => {
      if (c.type === "hold") l.setHeld(c.held);
      else if (c.type === "taken") l.taken(c.bytes);
      else l.stop();
    };
  }

  return {
    take() {
      const b = queue.shift();
      if (b !== undefined) {
        queuedMessages -= b.count;
        send({ type: "taken", bytes: batchBytes(b) });
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
      sendHeld();
    },
    release() {
      held = false;
      sendHeld();
    },
    up: () => kafkaUp,
    threaded: worker !== undefined,
    failed: failed.promise,
    async stop() {
      if (!stopSent) {
        stopSent = true;
        send({ type: "stop" });
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        stoppedSignal.promise,
        new Promise((r) => timer = setTimeout(r, 12_000)),
      ]);
      clearTimeout(timer);
      stopped = true;
      wakeNull();
      worker?.terminate();
    },
  };
}

/** The consumer thread could not be started (e.g. a compiled binary without the worker module). */
class WorkerUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WorkerUnavailableError";
  }
}

/**
 * Starts the consumer thread and waits for it to run. Rejects with the consumer's start error
 * (kafkajs' name kept), or with WorkerUnavailableError when the module cannot load.
 */
function startWorker(
  brokers: readonly string[],
  settings: ConsumerSettings,
  onEvent: (ev: ConsumerEvent) => void,
  log: Logger,
): Promise<Worker> {
  let worker: Worker;
  try {
    worker = new Worker(new URL("./_source_worker.ts", import.meta.url).href, { type: "module" });
  } catch (e) {
    return Promise.reject(new WorkerUnavailableError((e as Error).message));
  }
  const ready = Promise.withResolvers<Worker>();
  let started = false;
  worker.onmessage = (e: MessageEvent<ConsumerEvent>) => {
    const ev = e.data;
    if (!started) {
      if (ev.type === "ready") {
        started = true;
        ready.resolve(worker);
        return;
      }
      if (ev.type === "start-failed") {
        worker.terminate();
        ready.reject(errorOf(ev.error));
        return;
      }
    }
    onEvent(ev);
  };
  worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    if (!started) {
      worker.terminate();
      ready.reject(new WorkerUnavailableError(e.message));
      return;
    }
    log.error("the consumer thread failed", { error: e.message });
    onEvent({ type: "failed", identity: null, error: { name: "Error", message: e.message } });
  };
  worker.postMessage({ type: "start", brokers: [...brokers], settings });
  return ready.promise;
}
