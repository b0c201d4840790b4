/**
 * Ingest wiring: WebSocket feed -> parseFrame -> batching producer (ticks to `<topic>`, bad
 * frames to `<topic>.dlq`), with a disk spool, an optional raw-frame recording and periodic
 * progress. Shutdown order: close the sockets, flush the producer, then disconnect from Kafka.
 * @module
 */

import { createKafka, ensureTopic, kafkaError } from "../common/kafka.ts";
import { createLogger, type Logger } from "../common/log.ts";
import { connectFeed, DEFAULT_SOURCE, type Feed, type FeedOptions } from "./client.ts";
import { DEFAULT_MAX_FUTURE_MS, parseFrame, type Tick } from "./frame.ts";
import {
  type Batcher,
  createBatcher,
  DEFAULT_MAX_RECORD_BYTES,
  kafkaSend,
  type OutRecord,
  recordBytes,
  type SendBatch,
  type SpooledRecord,
  type TooLargeHandler,
} from "./producer.ts";
import { encodeTick, FORMAT_HEADER, type ValueFormat } from "../proto/tick.ts";
import { Buffer } from "node:buffer";
import { createCachedPartitioner } from "./partitioner.ts";
import { percentile } from "../common/stats.ts";
import { DEFAULT_MAX_SPOOL_BYTES, openSpool } from "./spool.ts";
import { DEFAULT_PARTITIONS, DEFAULT_PROGRESS_EVERY_MS } from "./defaults.ts";
import { surelyWithin, truncateUtf8, utf8Length } from "./_utf8.ts";

/** Options for startIngest. */
export interface IngestOptions {
  /** Kafka bootstrap servers. */
  brokers: string[];
  /** Ticks topic; dead letters go to `<topic>.dlq`. */
  topic: string;
  /** Symbols to subscribe to. */
  symbols: string[];
  /** WebSocket source URL (default Yahoo's). */
  source?: string;
  /** Partitions of topics created here (default 3). */
  partitions?: number;
  /** Producer linger, ms (default 5). */
  lingerMs?: number;
  /** Max records per batch (default 5000). */
  batchSize?: number;
  /** Max bytes per batch, as recordBytes counts them (default 512 KiB). */
  maxBatchBytes?: number;
  /**
   * Record value of a tick (default "json"): `json` is JSON.stringify of the decoded quote,
   * without a `tp-format` header; `tick-v1` is the binary tickpipe.v1.Tick (proto/tick.proto)
   * with header `tp-format: tick-v1`.
   */
  valueFormat?: ValueFormat;
  /** Records held in memory before spooling to disk (default 100_000). */
  maxMemoryTicks?: number;
  /** Records over this many UTF-8 bytes go to the DLQ as too_large (default 1_000_000). */
  maxRecordBytes?: number;
  /** Kafka sends failing this long, ms, start spooling everything to disk (default 1000). */
  spoolAfterMs?: number;
  /** Spool bound in bytes (default 1 GiB). */
  maxSpoolBytes?: number;
  /** Spool directory (default `.data/spool/<topic>`). */
  spoolDir?: string;
  /** Append every raw frame received to this file, one per line. */
  recordFile?: string;
  /** Progress interval, ms; 0 = none (default 10_000). */
  progressEveryMs?: number;
  /** Reconnect after this long without frames, ms (default 60_000). */
  silenceMs?: number;
  /** Ticks further ahead of the receive time are rejected as future_time (default 5 min). */
  maxFutureMs?: number;
  /** Extra feed options (socket factory, timers, backoff). */
  feed?: Partial<Omit<FeedOptions, "onFrame" | "symbols" | "url">>;
  /** Wraps the kafkajs send (tests inject outages here). */
  wrapSend?: (send: SendBatch) => SendBatch;
  /** Where progress lines go (default console.log). */
  print?: (line: string) => void;
  /** Clock, epoch ms (default Date.now). */
  now?: () => number;
  /** Logger (default "ingest"). */
  logger?: Logger;
}

/** Counters of a running ingest. */
export interface IngestStats {
  /** Frames received. */
  frames: number;
  /** Valid ticks queued for the ticks topic. */
  ticks: number;
  /** Ticks acknowledged by Kafka. */
  ticksProduced: number;
  /** Dead letters queued, by reason. */
  dlq: Record<string, number>;
  /** Non-pricing envelopes ignored (heartbeats...). */
  ignored: number;
  /** Reconnects of the WebSocket feed. */
  reconnects: number;
  /** Records refused because memory and spool were full (or the disk refused the spool). */
  dropped: number;
  /** Spool writes the disk refused (full, I/O error); their records stayed in memory. */
  spoolErrors: number;
  /** Records in memory. */
  memory: number;
  /** Records in the spool. */
  spooled: number;
  /** Spool size, bytes. */
  spoolBytes: number;
  /** Failed send attempts. */
  sendFailures: number;
  /** Sends Kafka refused as too large (split, or their one record dead-lettered). */
  tooLargeRefusals: number;
}

/** A running ingest. */
export interface Ingest {
  /** Current counters. */
  stats(): IngestStats;
  /** The feed's symbol shards. */
  readonly shards: readonly string[][];
  /** Resolves once everything queued so far is in Kafka. */
  flush(): Promise<void>;
  /** Closes the sockets, flushes (up to `flushTimeoutMs`, then spools) and disconnects. */
  stop(options?: { flushTimeoutMs?: number }): Promise<IngestStats>;
  /**
   * Resolves with the first permission denial (the source, or a Kafka broker the cluster
   * advertises): a configuration error to stop on. Never resolves otherwise.
   */
  readonly denied: Promise<Error>;
}

/**
 * A tick's record. A class and not an object literal on purpose: V8 pretenures the objects of
 * a literal that it sees surviving young-generation GCs (records live one batch cycle, and kafkajs'
 * garbage brings a GC about once per batch), and pretenured records kept their young strings alive
 * until the next full GC; class instances are never pretenured. Peak RSS at 10k ticks/s fell in 3
 * of 3 paired runs (bench/README.md, "Ingest: where the time and memory go").
 */
class TickOutRecord implements OutRecord {
  constructor(
    public topic: string,
    public key: string | null,
    public value: string | Uint8Array,
    public timestamp: string,
    public headers: Record<string, string>,
  ) {}
}

/** Headers of a JSON tick record (a class for the same reason as TickOutRecord). */
class JsonHeaders {
  [name: string]: string;
  constructor(public ingest_ms: string) {}
}

/** Headers of a tick-v1 record. */
class TickV1Headers {
  [name: string]: string;
  "tp-format" = "tick-v1";
  constructor(public ingest_ms: string) {}
}

/**
 * Builds the Kafka record of a valid tick: key = symbol, timestamp = event time, header
 * `ingest_ms` = receive time; the value in `format` (default "json": JSON.stringify of the
 * tick and no `tp-format` header, which means JSON; "tick-v1": proto/tick.ts encodeTick and
 * header `tp-format: tick-v1`). `receivedText` is `String(receivedMs)` when the caller has it.
 */
export function tickRecord(
  topic: string,
  tick: Tick,
  receivedMs: number,
  options: { format?: ValueFormat; receivedText?: string } = {},
): OutRecord {
  const ingestMs = options.receivedText ?? String(receivedMs);
  if (options.format === "tick-v1") {
    return new TickOutRecord(
      topic,
      tick.id,
      asBuffer(encodeTick(tick)),
      String(tick.time),
      new TickV1Headers(ingestMs),
    );
  }
  return new TickOutRecord(
    topic,
    tick.id,
    JSON.stringify(tick),
    String(tick.time),
    new JsonHeaders(ingestMs),
  );
}

/** The bytes as a Buffer view (what kafkajs sends as raw bytes; no copy). */
function asBuffer(v: Uint8Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** DLQ values are cut to this many UTF-8 bytes (header `truncated` = original UTF-8 length). */
export const MAX_DLQ_VALUE_BYTES = 100_000;
/** The `detail` header is cut to this many UTF-8 bytes. */
const MAX_DETAIL_BYTES = 1000;
// Room for the `truncated` header itself when it is added.
const TRUNCATED_HEADER_BYTES = 40;

/** What dlqRecord needs to know about a rejection. */
export interface Rejection {
  /** Reason (FRAME_REASONS). */
  reason: string;
  /** Human-readable detail. */
  detail: string;
  /** Receive time, epoch ms. */
  receivedMs: number;
  /** Budget of the whole record in UTF-8 bytes (recordBytes); default 1_000_000. */
  maxBytes?: number;
  /** More headers of the dead letter (counted in its budget). */
  headers?: Record<string, string>;
}

/**
 * Builds the dead-letter record of a rejected frame. The value is the frame, cut to fit
 * MAX_DLQ_VALUE_BYTES and the record budget (then header `truncated` = its UTF-8 length); a cut
 * value is a copy, so the record never keeps the whole frame alive.
 */
export function dlqRecord(topic: string, raw: string, rejection: Rejection): OutRecord {
  const headers: Record<string, string> = {
    reason: rejection.reason,
    detail: surelyWithin(rejection.detail, MAX_DETAIL_BYTES)
      ? rejection.detail
      : truncateUtf8(rejection.detail, MAX_DETAIL_BYTES),
    ingest_ms: String(rejection.receivedMs),
    ...rejection.headers,
  };
  const record: OutRecord = {
    topic: `${topic}.dlq`,
    key: null,
    value: "",
    timestamp: String(rejection.receivedMs),
    headers,
  };
  const budget = Math.min(
    MAX_DLQ_VALUE_BYTES,
    (rejection.maxBytes ?? DEFAULT_MAX_RECORD_BYTES) - recordBytes(record) -
      TRUNCATED_HEADER_BYTES,
  );
  if (surelyWithin(raw, budget)) record.value = raw;
  else {
    const bytes = utf8Length(raw);
    if (bytes <= budget) record.value = raw;
    else {
      record.value = truncateUtf8(raw, budget);
      headers.truncated = String(bytes);
    }
  }
  return record;
}

/**
 * The tooLarge handler of ingest: a tick record becomes a `too_large` dead letter (its value
 * cut to fit); a dead letter is cut further (to half its value when Kafka refused it).
 */
export function tooLargeHandler(
  topic: string,
  options: { now: () => number; onDeadLetter?: (record: OutRecord) => void },
): TooLargeHandler {
  const dlqTopic = `${topic}.dlq`;
  return (record, info) => {
    if (record.topic === dlqTopic) {
      // Dead letters are text (ingest writes them so); bytes are cut as their base64 text.
      const text = typeof record.value === "string" ? record.value : record.value.toBase64();
      const bytes = utf8Length(text);
      if (bytes === 0) return null;
      const keep = info.cause === "broker"
        ? Math.floor(bytes / 2)
        : bytes - (info.bytes - info.limit) - TRUNCATED_HEADER_BYTES;
      return {
        ...record,
        value: truncateUtf8(text, keep),
        headers: { ...record.headers, truncated: record.headers.truncated ?? String(bytes) },
      };
    }
    const why = info.cause === "broker"
      ? `was refused by Kafka (${info.error ?? "too large"})`
      : `exceeds the record limit of ${info.limit} bytes`;
    const receivedMs = Number(record.headers.ingest_ms);
    // A binary value (tick-v1) is dead-lettered as its base64 text, marked by two headers.
    const binary = typeof record.value !== "string";
    const text = typeof record.value === "string" ? record.value : record.value.toBase64();
    const marks: Record<string, string> = {};
    if (binary) {
      marks.encoding = "base64";
      const format = record.headers[FORMAT_HEADER];
      if (format !== undefined) marks[FORMAT_HEADER] = format;
    }
    const dead = dlqRecord(topic, text, {
      reason: "too_large",
      detail: `Record of ${info.bytes} UTF-8 bytes for topic ${record.topic} key ${
        JSON.stringify(record.key)
      } ${why}`,
      receivedMs: Number.isFinite(receivedMs) && receivedMs > 0 ? receivedMs : options.now(),
      maxBytes: info.cause === "broker" ? Math.floor(info.bytes / 2) : info.limit,
      headers: marks,
    });
    options.onDeadLetter?.(dead);
    return dead;
  };
}

/** True for kafkajs errors that mean the idempotent producer's sequence/id is unusable. */
export function isProducerStateError(e: unknown): boolean {
  for (
    let x = e as { type?: string; message?: string; cause?: unknown } | undefined, i = 0;
    x && i < 4;
    x = x.cause as typeof x, i++
  ) {
    if (
      /^(OUT_OF_ORDER_SEQUENCE_NUMBER|UNKNOWN_PRODUCER_ID|INVALID_PRODUCER_EPOCH)$/.test(
        x.type ?? "",
      ) || /out of order sequence|unknown producer id|producer.*epoch/i.test(x.message ?? "")
    ) return true;
  }
  return false;
}

/** Formats one progress line from two snapshots `elapsedMs` apart. */
export function progressLine(
  cur: IngestStats,
  prev: IngestStats,
  info: { elapsedMs: number; latencies: number[] },
): string {
  const rate = ((cur.frames - prev.frames) * 1000) / Math.max(1, info.elapsedMs);
  const dlq = Object.entries(cur.dlq).map(([r, n]) => `${r}=${n}`).join(",") || "0";
  const p50 = info.latencies.length ? percentile(info.latencies, 50) : NaN;
  const max = info.latencies.length ? Math.max(...info.latencies) : NaN;
  const ms = (v: number) => (Number.isNaN(v) ? "-" : `${v.toFixed(1)}ms`);
  return `ingest: frames/s=${
    rate.toFixed(1)
  } frames=${cur.frames} ticks_produced=${cur.ticksProduced}` +
    ` dlq=${dlq} ignored=${cur.ignored} reconnects=${cur.reconnects}` +
    ` batch_p50=${ms(p50)} batch_max=${ms(max)} memory=${cur.memory}` +
    ` spool=${cur.spooled}/${cur.spoolBytes}B dropped=${cur.dropped}` +
    (cur.spoolErrors > 0 ? ` spool_errors=${cur.spoolErrors}` : "");
}

/** Connects to Kafka (creating the topics), opens the spool and the feed, and starts ingesting. */
export async function startIngest(options: IngestOptions): Promise<Ingest> {
  const log = options.logger ?? createLogger("ingest");
  const now = options.now ?? Date.now;
  const topic = options.topic;
  const dlqTopic = `${topic}.dlq`;
  const maxFutureMs = options.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS;
  const print = options.print ?? ((l: string) => console.log(l));

  const denial = Promise.withResolvers<Error>();
  const kafka = createKafka(options.brokers, {
    clientId: "tickpipe-ingest",
    logger: log.child("kafka"),
    onDenied: denial.resolve,
  });
  const admin = kafka.admin();
  // Same partitions as kafkajs' DefaultPartitioner, without its per-record BigInt murmur2.
  const createPartitioner = createCachedPartitioner();
  const newProducer = () =>
    kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner });
  let producer = newProducer();
  try {
    const connect = async () => {
      await admin.connect();
      for (const t of [topic, dlqTopic]) {
        if (await ensureTopic(admin, t, { partitions: options.partitions ?? DEFAULT_PARTITIONS })) {
          log.info("Created topic", {
            topic: t,
            partitions: options.partitions ?? DEFAULT_PARTITIONS,
          });
        }
      }
      await producer.connect();
    };
    // A denied broker fails the start at once instead of after kafkajs' retries.
    await Promise.race([connect(), denial.promise.then((e) => Promise.reject(e))]);
  } catch (e) {
    await producer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
    throw kafkaError(e, options.brokers);
  }
  await admin.disconnect();

  const spool = await openSpool<SpooledRecord>(options.spoolDir ?? `.data/spool/${topic}`, {
    maxBytes: options.maxSpoolBytes ?? DEFAULT_MAX_SPOOL_BYTES,
  });
  if (spool.count() > 0) {
    log.info("Spool from a previous run: delivering it first", {
      records: spool.count(),
      bytes: spool.bytes(),
    });
  }
  // After a broker crash kafkajs' idempotent producer can be left with sequence numbers the
  // broker rejects forever (OUT_OF_ORDER_SEQUENCE_NUMBER on every retry: ingest wedged until
  // restarted, found by tests/chaos/c2). Such a batch is retried on a NEW producer (new producer
  // id); the broker may already hold part of it, so those records can be duplicated
  // (at-least-once; measured in tests/chaos/README.md).
  let send = kafkaSend(producer);
  let reconnect = false;
  const baseSend: SendBatch = async (records) => {
    try {
      if (reconnect) {
        await producer.connect();
        reconnect = false;
      }
      await send(records);
    } catch (e) {
      if (isProducerStateError(e)) {
        log.warn("Idempotent producer state rejected by the broker: re-initializing the producer", {
          error: e as Error,
        });
        await producer.disconnect().catch(() => {});
        producer = newProducer();
        send = kafkaSend(producer);
        reconnect = true; // connected (new producer id) by the next attempt
      }
      throw e;
    }
  };
  const counts = { frames: 0, ticks: 0, ignored: 0 };
  const dlq: Record<string, number> = {};
  const maxRecordBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const batcher: Batcher = createBatcher({
    send: options.wrapSend ? options.wrapSend(baseSend) : baseSend,
    batchSize: options.batchSize,
    maxBatchBytes: options.maxBatchBytes,
    lingerMs: options.lingerMs,
    maxMemory: options.maxMemoryTicks,
    maxRecordBytes,
    tooLarge: tooLargeHandler(topic, {
      now,
      onDeadLetter: () => (dlq.too_large = (dlq.too_large ?? 0) + 1),
    }),
    spool,
    spoolAfterMs: options.spoolAfterMs,
    logger: log.child("producer"),
    now,
  });

  // Raw-frame recording, written in chunks.
  let recorder: Deno.FsFile | undefined;
  if (options.recordFile !== undefined) {
    const f = options.recordFile;
    try {
      const slash = Math.max(f.lastIndexOf("/"), f.lastIndexOf("\\"));
      if (slash > 0) await Deno.mkdir(f.slice(0, slash), { recursive: true });
      recorder = await Deno.open(f, { write: true, create: true, truncate: true });
    } catch (e) {
      await batcher.close({ timeoutMs: 10_000 });
      await producer.disconnect().catch(() => {});
      throw e;
    }
  }
  let recordBuf: string[] = [];
  const enc = new TextEncoder();
  const flushRecord = () => {
    if (!recorder || recordBuf.length === 0) return;
    const bytes = enc.encode(recordBuf.join(""));
    recordBuf = [];
    let off = 0;
    while (off < bytes.length) off += recorder.writeSync(bytes.subarray(off));
  };

  const deadLetter = (raw: string, reason: string, detail: string, receivedMs: number) => {
    dlq[reason] = (dlq[reason] ?? 0) + 1;
    batcher.enqueue(
      dlqRecord(topic, raw, { reason, detail, receivedMs, maxBytes: maxRecordBytes }),
    );
  };
  const format: ValueFormat = options.valueFormat ?? "json";
  const parseOptions = { nowMs: 0, maxFutureMs };
  // Frames arrive many per millisecond: the ingest_ms text is made once per millisecond.
  let lastMs = NaN;
  let lastMsText = "";
  const onFrame = (raw: string, receivedMs: number) => {
    counts.frames++;
    if (recorder) recordBuf.push(raw.replace(/\r?\n/g, " ") + "\n");
    parseOptions.nowMs = receivedMs;
    const r = parseFrame(raw, parseOptions);
    if (r.ok === true) {
      if (receivedMs !== lastMs) {
        lastMs = receivedMs;
        lastMsText = String(receivedMs);
      }
      let record: OutRecord;
      try {
        record = tickRecord(topic, r.tick, receivedMs, { format, receivedText: lastMsText });
      } catch (e) {
        // encodeTick refuses values tick-v1 cannot hold; validated ticks should never get here.
        deadLetter(
          raw,
          "bad_protobuf",
          `Tick ${JSON.stringify(r.tick.id)} cannot be written as ${format}: ${
            (e as Error).message
          }`,
          receivedMs,
        );
        return;
      }
      // Field caps keep ticks far below the limit: measure only when it could matter.
      const bound = (record.value.length + (record.key?.length ?? 0)) * 3 + 200;
      const bytes = bound > maxRecordBytes ? recordBytes(record) : 0;
      if (bytes > maxRecordBytes) {
        deadLetter(
          raw,
          "too_large",
          `Tick record of ${bytes} UTF-8 bytes for ${
            JSON.stringify(r.tick.id)
          } exceeds the record limit of ${maxRecordBytes} bytes`,
          receivedMs,
        );
        return;
      }
      counts.ticks++;
      batcher.enqueue(record);
    } else if (r.ok === false) deadLetter(raw, r.reason, r.detail, receivedMs);
    else counts.ignored++;
  };

  let feed: Feed;
  try {
    feed = connectFeed({
      ...options.feed,
      url: options.source ?? DEFAULT_SOURCE,
      symbols: options.symbols,
      silenceMs: options.silenceMs ?? options.feed?.silenceMs,
      onFrame,
      now,
      logger: log.child("client"),
      onDenied: denial.resolve,
    });
  } catch (e) {
    await batcher.close({ timeoutMs: 10_000 });
    await producer.disconnect().catch(() => {});
    recorder?.close();
    throw e;
  }
  log.info("Ingesting", {
    source: options.source ?? DEFAULT_SOURCE,
    symbols: options.symbols.length,
    connections: feed.shards.length,
    topic,
  });

  const stats = (): IngestStats => {
    const b = batcher.stats();
    return {
      ...counts,
      ticksProduced: b.deliveredByTopic[topic] ?? 0,
      dlq: { ...dlq },
      reconnects: feed.stats().reconnects,
      dropped: b.dropped,
      spoolErrors: b.spoolErrors,
      memory: b.memory,
      spooled: b.spooled,
      spoolBytes: b.spoolBytes,
      sendFailures: b.failures,
      tooLargeRefusals: b.tooLargeRefusals,
    };
  };

  const recordTimer = recorder ? setInterval(flushRecord, 200) : undefined;
  const progressEvery = options.progressEveryMs ?? DEFAULT_PROGRESS_EVERY_MS;
  let prev = stats();
  let prevAt = now();
  const progressTimer = progressEvery > 0
    ? setInterval(() => {
      const cur = stats();
      const t = now();
      print(progressLine(cur, prev, { elapsedMs: t - prevAt, latencies: batcher.takeLatencies() }));
      prev = cur;
      prevAt = t;
    }, progressEvery)
    : undefined;

  let stopping: Promise<IngestStats> | undefined;
  return {
    shards: feed.shards,
    denied: denial.promise,
    stats,
    flush: () => batcher.flush(),
    stop(opts = {}) {
      stopping ??= (async () => {
        clearInterval(progressTimer);
        await feed.close();
        clearInterval(recordTimer);
        flushRecord();
        recorder?.close();
        const left = await batcher.close({ timeoutMs: opts.flushTimeoutMs });
        if (left > 0) {
          log.warn("Kafka unavailable at shutdown: records kept in the spool for the next run", {
            records: left,
            dir: spool.dir,
          });
        }
        await producer.disconnect().catch(() => {});
        const s = stats();
        log.info("Stopped", { frames: s.frames, ticksProduced: s.ticksProduced, dlq: s.dlq });
        return s;
      })();
      return stopping;
    },
  };
}
