/**
 * Suite 2, ingest: ticks/s from a local WebSocket (a sender on its own thread) through
 * startIngest (parseFrame, batching idempotent producer) into Kafka, until every tick is
 * acknowledged, for both record value formats (`--value-format json` and `tick-v1`); against raw
 * producers sending the records ingest builds for the same frames, in the batches ingest sends
 * (the records that fit its byte budget), acks=all, one batch at a time:
 *
 * - raw kafkajs `sendBatch`, plain producer, kafkajs' default partitioner (the target's
 *   baseline, ratio >= 0.8);
 * - the same with ingest's partitioner (ingest/partitioner.ts): ingest's own overhead alone;
 * - raw `npm:@platformatic/kafka` `send`: another client's ceiling, reported, not used.
 *
 * Plus the record size of both formats. Every variant runs once unmeasured, then `runs` times
 * in rotating order (each run starts with the next variant).
 * @module
 */

import { Buffer } from "node:buffer";
import type { Ingest, IngestOptions, OutRecord } from "../../ingest/mod.ts";
import { encodeFrame, parseFrame, type Tick } from "../../ingest/frame.ts";
import { createCachedPartitioner } from "../../ingest/partitioner.ts";
import { DEFAULT_MAX_BATCH_BYTES, recordBytes } from "../../ingest/producer.ts";
import type { ValueFormat } from "../../proto/tick.ts";
import { createLogger } from "../../common/log.ts";
import { median, perSecond } from "../_stats.ts";
import {
  importModule,
  requireFunction,
  type Row,
  rowOf,
  type Suite,
  type SuiteContext,
} from "../_suite.ts";
import { quotes, symbols } from "./_data.ts";
import { benchKafka, createTopic, waitFor } from "./_io.ts";
import { type Sender, startSender } from "./_sender.ts";

type StartIngest = (options: IngestOptions) => Promise<Ingest>;
type TickRecord = (
  topic: string,
  tick: Tick,
  receivedMs: number,
  options?: { format?: ValueFormat },
) => OutRecord;

const SYMBOLS = 500; // 5 WebSocket connections of 100 symbols
const BATCH_RECORDS = 5000; // ingest's default --batch-size

/**
 * How many records ingest puts in one send: its batch size, or fewer when the batch would pass
 * its byte budget (DEFAULT_MAX_BATCH_BYTES of recordBytes), as the batcher's fit() counts.
 */
export function ingestBatchSize(
  records: readonly OutRecord[],
  options: { batchSize?: number; maxBatchBytes?: number } = {},
): number {
  const max = options.batchSize ?? BATCH_RECORDS;
  const budget = options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  let bytes = 0;
  let n = 0;
  for (const r of records) {
    const b = recordBytes(r);
    if (n > 0 && bytes + b > budget) break;
    bytes += b;
    if (++n >= max) break;
  }
  return Math.max(1, n);
}

/** Kafka records of `records`, as kafkajs takes them (binary values as Buffers). */
function kafkajsMessages(records: readonly OutRecord[]) {
  return records.map((r) => ({
    key: r.key,
    value: typeof r.value === "string"
      ? r.value
      : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength),
    timestamp: r.timestamp,
    headers: r.headers,
  }));
}

/** A measured variant: returns ticks/s of one run. */
type Variant = () => Promise<number>;

/**
 * Runs every variant once unmeasured, then `runs` rounds; round i starts at variant i (mod
 * count), so each variant takes each position about equally. Returns the samples by name.
 */
async function rotate(
  variants: [string, Variant][],
  options: { runs: number; log: SuiteContext["log"] },
): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>(variants.map(([name]) => [name, []]));
  for (const [, v] of variants) await v();
  for (let i = 0; i < options.runs; i++) {
    const figures: Record<string, number> = {};
    for (let k = 0; k < variants.length; k++) {
      const [name, v] = variants[(i + k) % variants.length];
      const x = await v();
      out.get(name)!.push(x);
      figures[name] = Math.round(x);
    }
    options.log.info(`ingest ${i + 1}/${options.runs}`, figures);
  }
  return out;
}

/** The ingest suite. */
export const ingestSuite: Suite = {
  name: "ingest",
  title: "Ingest (WebSocket → Kafka)",
  requires: ["ingest/ingest.ts"],
  timeoutMs: (quick) => (quick ? 360_000 : 1_200_000),
  async run(ctx: SuiteContext): Promise<Row[]> {
    const mod = await importModule<Record<string, unknown>>("ingest/ingest.ts");
    const startIngest = requireFunction<StartIngest>(mod, "startIngest", {
      path: "ingest/ingest.ts",
    });
    const tickRecord = requireFunction<TickRecord>(mod, "tickRecord", { path: "ingest/ingest.ts" });
    const n = ctx.quick ? 60_000 : 300_000;
    const names = symbols(SYMBOLS, ctx.symbolPrefix);
    const now = Date.now();
    const data = quotes(n, SYMBOLS, { prefix: ctx.symbolPrefix, start: now - n, stepMs: 1 });
    const frames: [string, string][] = data.map((q) => [q.id!, encodeFrame(q)]);

    const kafka = benchKafka(ctx.config);
    const admin = kafka.admin();
    await admin.connect();
    const topics = {
      json: await createTopic(ctx, admin, { name: "ingest" }),
      tickV1: await createTopic(ctx, admin, { name: "ingest-v1" }),
      raw: await createTopic(ctx, admin, { name: "ingest-raw" }),
      rawPart: await createTopic(ctx, admin, { name: "ingest-rawp" }),
      platformatic: await createTopic(ctx, admin, { name: "ingest-pltf" }),
    };
    await admin.disconnect();

    // The raw producers send exactly the records ingest builds for these frames.
    const ticks = frames.map(([, f]) => {
      const r = parseFrame(f, { nowMs: now });
      if (r.ok !== true) throw new Error(`Bench frame rejected: ${JSON.stringify(r)}`);
      return r.tick;
    });
    const records = ticks.map((t) => tickRecord(topics.raw, t, now));
    const binary = ticks.map((t) => tickRecord(topics.raw, t, now, { format: "tick-v1" }));
    const messages = kafkajsMessages(records);
    const batch = ingestBatchSize(records);
    const mean = (rs: OutRecord[], f: (r: OutRecord) => number) =>
      rs.reduce((s, r) => s + f(r), 0) / rs.length;
    const valueSize = (r: OutRecord) =>
      typeof r.value === "string" ? new TextEncoder().encode(r.value).length : r.value.length;

    const senders: Sender[] = [];
    const ingests: Ingest[] = [];
    const producer = kafka.producer();
    const producerPart = kafka.producer({ createPartitioner: createCachedPartitioner() });
    const { Producer, stringSerializers } = await import("@platformatic/kafka");
    const platformatic = new Producer({
      clientId: "tickpipe-bench-platformatic",
      bootstrapBrokers: [...ctx.config.brokers],
      serializers: stringSerializers,
      acks: -1,
    });
    try {
      const start = async (format: ValueFormat, topic: string) => {
        const sender = await startSender(frames);
        senders.push(sender);
        const ingest = await startIngest({
          brokers: ctx.config.brokers,
          topic,
          symbols: names,
          source: sender.url,
          valueFormat: format,
          spoolDir: `${ctx.dataDir}/spool-ingest-${format}`,
          progressEveryMs: 0,
          print: () => {},
          logger: createLogger("bench.ingest", { level: "error" }),
        });
        ingests.push(ingest);
        await sender.subscribed(SYMBOLS, 30_000);
        return async () => {
          const before = ingest.stats().ticksProduced;
          const t0 = performance.now();
          const sent = sender.send();
          await waitFor(
            () => ingest.stats().ticksProduced >= before + n,
            { timeoutMs: 300_000, what: `ingest (${format}) to produce ${n} ticks`, everyMs: 2 },
          );
          const ms = performance.now() - t0;
          const s = await sent;
          if (s.n !== n) throw new Error(`Sender sent ${s.n} of ${n} frames`);
          return perSecond(n, ms);
        };
      };
      const oursJson = await start("json", topics.json);
      const oursTickV1 = await start("tick-v1", topics.tickV1);
      await producer.connect();
      await producerPart.connect();
      const kafkajsRaw = (p: typeof producer, topic: string) => async () => {
        const t0 = performance.now();
        for (let i = 0; i < messages.length; i += batch) {
          await p.sendBatch({
            acks: -1,
            topicMessages: [{ topic, messages: messages.slice(i, i + batch) }],
          });
        }
        return perSecond(n, performance.now() - t0);
      };
      const pltfMessages = records.map((r) => ({
        topic: topics.platformatic,
        key: r.key ?? undefined,
        value: r.value as string,
        headers: r.headers,
        timestamp: BigInt(r.timestamp),
      }));
      const platformaticRaw = async () => {
        const t0 = performance.now();
        for (let i = 0; i < pltfMessages.length; i += batch) {
          await platformatic.send({ messages: pltfMessages.slice(i, i + batch) });
        }
        return perSecond(n, performance.now() - t0);
      };
      const r = await rotate([
        ["json", oursJson],
        ["raw", kafkajsRaw(producer, topics.raw)],
        ["tick-v1", oursTickV1],
        ["rawPart", kafkajsRaw(producerPart, topics.rawPart)],
        ["platformatic", platformaticRaw],
      ], { runs: ctx.runs, log: ctx.log });
      for (const ingest of ingests) {
        const s = ingest.stats();
        if (s.dropped > 0 || Object.keys(s.dlq).length > 0) {
          throw new Error(`Ingest dropped ${s.dropped} and dead-lettered ${JSON.stringify(s.dlq)}`);
        }
      }
      const workload = `${(n / 1000).toFixed(0)}k frames, ${SYMBOLS} symbols over ${
        Math.ceil(SYMBOLS / 100)
      } WebSockets, until acked by Kafka`;
      const batches = `batches of ${batch} records (ingest's byte budget), acks=all, one in flight`;
      return [
        rowOf({
          suite: "ingest",
          metric: `${workload}; --value-format json`,
          unit: "ticks/s",
          ours: r.get("json")!,
          baseline: r.get("raw")!,
          baselineLabel: "raw kafkajs sendBatch of the same records",
          target: { op: ">=", value: 0.8, on: "ratio" },
          note: `${batches}; ingest: idempotent producer, its partitioner; raw: plain ` +
            "producer, kafkajs' default partitioner",
        }),
        rowOf({
          suite: "ingest",
          metric: "same, --value-format json, against the raw producer with ingest's partitioner",
          unit: "ticks/s",
          ours: r.get("json")!,
          baseline: r.get("rawPart")!,
          baselineLabel: "raw kafkajs sendBatch, ingest's partitioner",
          note:
            "diagnostic: ingest's own overhead (WebSocket, parse, record, batcher, idempotence)",
        }),
        rowOf({
          suite: "ingest",
          metric: "same, --value-format tick-v1, against ingest with json",
          unit: "ticks/s",
          ours: r.get("tick-v1")!,
          baseline: r.get("json")!,
          baselineLabel: "ingest --value-format json (same run)",
          note: "tick-v1 adds the tp-format header: one more header for kafkajs to encode",
        }),
        rowOf({
          suite: "ingest",
          metric: "same, --value-format json, against another client",
          unit: "ticks/s",
          ours: r.get("json")!,
          baseline: r.get("platformatic")!,
          baselineLabel: "raw npm:@platformatic/kafka send of the same records",
          note: `client ceilings: platformatic / kafkajs = ${
            (median(r.get("platformatic")!) / median(r.get("raw")!)).toFixed(2)
          } (medians); reported, not used`,
        }),
        rowOf({
          suite: "ingest",
          metric: "record value size, tick-v1 vs json (the bench's 15-field quotes)",
          unit: "bytes/record",
          ours: [mean(binary, valueSize)],
          baseline: [mean(records, valueSize)],
          baselineLabel: "JSON value",
          lowerIsBetter: true,
          note: `whole records as ingest counts them (recordBytes: key, value, headers, ` +
            `framing): ${mean(binary, recordBytes).toFixed(0)} vs ${
              mean(records, recordBytes).toFixed(0)
            } bytes; tick-v1 carries 9 of the 15 fields`,
        }),
      ];
    } finally {
      for (const ingest of ingests) await ingest.stop({ flushTimeoutMs: 5000 }).catch(() => {});
      await producer.disconnect().catch(() => {});
      await producerPart.disconnect().catch(() => {});
      await platformatic.close().catch(() => {});
      for (const sender of senders) await sender.close().catch(() => {});
    }
  },
};
