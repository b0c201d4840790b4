/**
 * In-process drains of a pre-filled topic, the aggregator suite's baselines from the bare client
 * up to the engine, each timed from its start call (group join included) to the last record:
 *
 * - `raw`: a kafkajs `eachBatch` consumer that only counts the records;
 * - `parse`: the same, and every record value goes through the aggregator's record parser
 *   (`aggregate/record.ts`: the JSON scanner or the tick-v1 decoder, validation, interning);
 * - `fold`: the same, and every valid tick is folded into a `WindowEngine` (no cut, no sink, no
 *   checkpoint);
 * - `platformatic`: an `npm:@platformatic/kafka` consumer in a fresh group, counting records
 *   (the other client's ceiling; for scale, not used by the aggregator).
 * @module
 */

import type { Kafka } from "../../common/kafka.ts";
// Like the aggregator (source.ts), the baselines run without kafkajs 2.2.4's idle busy loop.
import "../../common/kafkajs_idle_fix.ts";
import { RecordParser } from "../../aggregate/record.ts";
import { WindowEngine } from "../../aggregate/engine.ts";

/** Which drain. */
export type DrainMode = "raw" | "parse" | "fold";

/** Options of the drains. */
export interface DrainOptions {
  /** Topic. */
  topic: string;
  /** Records in the topic: the drain ends at the last one. */
  total: number;
  /** A fresh consumer group id. */
  groupId: string;
  /** Engine resolutions for `fold` (default 5 minutes). */
  windows?: readonly number[];
  /** Give up after this long (default 10 minutes). */
  timeoutMs?: number;
}

/** What a drain saw. */
export interface DrainResult {
  /** Start call → last record, ms. */
  ms: number;
  /** Records seen. */
  records: number;
  /** Records the parser accepted (parse, fold). */
  valid: number;
}

/** Drains `options.topic` with kafkajs in `mode`; resolves at the last record. */
export async function drainKafkajs(
  kafka: Kafka,
  mode: DrainMode,
  options: DrainOptions,
): Promise<DrainResult> {
  const { topic, total } = options;
  const parser = new RecordParser();
  const engine = mode === "fold"
    ? new WindowEngine({ windows: [...(options.windows ?? [300_000])] })
    : null;
  const consumer = kafka.consumer({ groupId: options.groupId, maxWaitTimeInMs: 250 });
  let seen = 0;
  let valid = 0;
  const done = Promise.withResolvers<void>();
  const start = performance.now();
  let end = 0;
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachBatch: ({ batch }) => {
        const msgs = batch.messages;
        if (mode !== "raw") {
          const nowMs = Date.now();
          const p = batch.partition;
          for (let i = 0; i < msgs.length; i++) {
            const m = msgs[i];
            if (!parser.parse(m.value, m.headers?.["tp-format"], nowMs)) continue;
            valid++;
            engine?.fold({
              symbol: parser.symbol,
              eventTime: parser.time,
              price: parser.price,
              dayVolume: parser.hasDayVolume ? parser.dayVolume : undefined,
              partition: p,
              offset: Number(m.offset),
            });
          }
        }
        seen += msgs.length;
        if (seen >= total && end === 0) {
          end = performance.now();
          done.resolve();
        }
        return Promise.resolve();
      },
    });
    await deadline(done.promise, options.timeoutMs ?? 600_000, `the ${mode} drain of ${total}`);
    return { ms: end - start, records: seen, valid };
  } finally {
    await consumer.disconnect().catch(() => {});
  }
}

/** Drains `options.topic` with `npm:@platformatic/kafka`; resolves at the last record. */
export async function drainPlatformatic(
  brokers: readonly string[],
  options: DrainOptions,
): Promise<DrainResult> {
  const { Consumer, MessagesStreamModes } = await import("@platformatic/kafka");
  const consumer = new Consumer({
    clientId: "tickpipe-bench-platformatic",
    bootstrapBrokers: [...brokers],
    groupId: options.groupId,
    maxWaitTime: 250,
  });
  let seen = 0;
  const start = performance.now();
  try {
    const stream = await consumer.consume({
      topics: [options.topic],
      mode: MessagesStreamModes.EARLIEST,
      autocommit: false,
    });
    const read = new Promise<void>((resolve, reject) => {
      stream.on("data", () => {
        if (++seen === options.total) resolve();
      });
      stream.on("error", reject);
    });
    await deadline(
      read,
      options.timeoutMs ?? 600_000,
      `the platformatic drain of ${options.total}`,
    );
    const ms = performance.now() - start;
    await stream.close().catch(() => {});
    return { ms, records: seen, valid: 0 };
  } finally {
    await consumer.close(true).catch(() => {});
  }
}

async function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
