/**
 * Dead letters of the aggregator: records of the ticks topic that are not valid ticks go to
 * `<topic>.dlq` with the reason, a detail and their source coordinates, before the trigger that
 * read them commits. Across a crash between that send and the checkpoint a record can be
 * dead-lettered twice; its `source_partition`/`source_offset` headers identify it.
 * @module
 */

import { Buffer } from "node:buffer";
import type { Kafka } from "../common/kafka.ts";
import { tooLargeError } from "../common/kafka_errors.ts";

/** What a dead letter is made from: a kafkajs message, or the same fields of a source batch. */
export interface DeadLetterSource {
  /** Offset (kafkajs' decimal string). */
  offset: string;
  /** Record timestamp (kafkajs' decimal string). */
  timestamp: string;
  /** Key bytes. */
  key: Uint8Array | null | undefined;
  /** Value bytes. */
  value: Uint8Array | null;
}

/** A rejected record, as queued for the dead-letter topic. */
export interface DeadLetter {
  /** Source partition. */
  partition: number;
  /** Source offset. */
  offset: number;
  /** Reject reason (a stable label, e.g. `bad_symbol`). */
  reason: string;
  /** What was wrong, naming the bad value. */
  detail: string;
  /** The record's key (copied). */
  key: Uint8Array | null;
  /** The record's value (copied, cut to the cap). */
  value: Uint8Array | null;
  /** The record's timestamp. */
  timestamp: string;
  /** The value's byte length before the cut, when it was cut. */
  truncatedFrom?: number;
}

/** Largest dead-letter value kept (the rest is cut; header `truncated` = original length). */
export const MAX_DEAD_LETTER_VALUE_BYTES = 900_000;
const MAX_DETAIL_CHARS = 500;

/** Builds the dead letter of `message` (copying its bytes, so the fetch buffer is not pinned). */
export function deadLetterOf(
  message: DeadLetterSource,
  where: { partition: number; reason: string; detail: string },
): DeadLetter {
  const v = message.value;
  const cut = v !== null && v.byteLength > MAX_DEAD_LETTER_VALUE_BYTES;
  return {
    partition: where.partition,
    offset: Number(message.offset),
    reason: where.reason,
    detail: where.detail.length > MAX_DETAIL_CHARS
      ? where.detail.slice(0, MAX_DETAIL_CHARS) + "…"
      : where.detail,
    key: message.key ? Uint8Array.prototype.slice.call(message.key) : null,
    value: v === null ? null : Uint8Array.prototype.slice.call(
      v,
      0,
      cut ? MAX_DEAD_LETTER_VALUE_BYTES : v.byteLength,
    ),
    timestamp: String(message.timestamp),
    ...(cut ? { truncatedFrom: v!.byteLength } : {}),
  };
}

/** A producer of dead letters for one topic. */
export interface DeadLetterSink {
  /** Sends `letters` to `<topic>.dlq` (acks=all); rejects when Kafka does not take them. */
  send(letters: readonly DeadLetter[]): Promise<void>;
  /** Disconnects. */
  close(): Promise<void>;
}

/** Bytes of one dead letter as Kafka counts them, about (key, value, headers, framing). */
export function deadLetterBytes(d: DeadLetter): number {
  return 200 + (d.key?.byteLength ?? 0) + (d.value?.byteLength ?? 0) + d.detail.length * 3;
}

/** Largest batch of dead letters sent at once (bytes), well under Kafka's 1 MB request limit. */
const MAX_BATCH_BYTES = 512 * 1024;

/** `d` with its value cut to half: for a record Kafka still refuses as too large. */
function halved(d: DeadLetter): DeadLetter | null {
  if (d.value === null || d.value.byteLength === 0) return null;
  const keep = Math.floor(d.value.byteLength / 2);
  return {
    ...d,
    value: d.value.slice(0, keep),
    truncatedFrom: d.truncatedFrom ?? d.value.byteLength,
  };
}

/** Creates the dead-letter producer of `topic` (connects lazily, on the first send). */
export function createDeadLetterSink(kafka: Kafka, options: { topic: string }): DeadLetterSink {
  const dlqTopic = `${options.topic}.dlq`;
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  let connected: Promise<void> | undefined;
  const sendBatch = (batch: readonly DeadLetter[]) =>
    producer.send({
      topic: dlqTopic,
      acks: -1,
      messages: batch.map((d) => ({
        key: d.key === null ? null : Buffer.from(d.key),
        value: d.value === null ? null : Buffer.from(d.value),
        timestamp: d.timestamp,
        headers: {
          reason: d.reason,
          detail: d.detail,
          stage: "aggregate",
          source_topic: options.topic,
          source_partition: String(d.partition),
          source_offset: String(d.offset),
          ...(d.truncatedFrom !== undefined ? { truncated: String(d.truncatedFrom) } : {}),
        },
      })),
    });
  // A batch Kafka refuses as too large is split in halves, never sent again as is; a single
  // letter still refused is cut further (header `truncated`), so one record never wedges a run.
  const deliver = async (batch: readonly DeadLetter[]): Promise<void> => {
    try {
      await sendBatch(batch);
    } catch (e) {
      if (tooLargeError(e) === undefined) throw e;
      if (batch.length > 1) {
        const mid = Math.ceil(batch.length / 2);
        await deliver(batch.slice(0, mid));
        await deliver(batch.slice(mid));
        return;
      }
      const smaller = halved(batch[0]);
      if (smaller === null) throw e;
      await deliver([smaller]);
    }
  };
  return {
    async send(letters) {
      if (letters.length === 0) return;
      connected ??= producer.connect().catch((e) => {
        connected = undefined;
        throw e;
      });
      await connected;
      let batch: DeadLetter[] = [];
      let bytes = 0;
      for (const d of letters) {
        const n = deadLetterBytes(d);
        if (batch.length > 0 && (bytes + n > MAX_BATCH_BYTES || batch.length >= 1000)) {
          await deliver(batch);
          batch = [];
          bytes = 0;
        }
        batch.push(d);
        bytes += n;
      }
      if (batch.length > 0) await deliver(batch);
    },
    async close() {
      if (connected) await producer.disconnect().catch(() => {});
    },
  };
}
