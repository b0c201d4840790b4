/**
 * Suite 2, ingest: ticks/s from a local WebSocket (a sender on its own thread) through
 * startIngest (parseFrame, batching idempotent producer) into Kafka, until every tick is
 * acknowledged; against a raw kafkajs sendBatch (plain producer, acks=all, batches of 5000) of
 * the same records. Target: ratio >= 0.7.
 * @module
 */

import type { Ingest, IngestOptions, OutRecord } from "../../ingest/mod.ts";
import { encodeFrame, parseFrame } from "../../ingest/frame.ts";
import { createLogger } from "../../common/log.ts";
import { perSecond } from "../_stats.ts";
import {
  importModule,
  interleave,
  requireFunction,
  type Row,
  rowOf,
  type Suite,
  type SuiteContext,
} from "../_suite.ts";
import { quotes, symbols } from "./_data.ts";
import { benchKafka, createTopic, waitFor } from "./_io.ts";
import { startSender } from "./_sender.ts";

type StartIngest = (options: IngestOptions) => Promise<Ingest>;
type TickRecord = (topic: string, tick: unknown, receivedMs: number) => OutRecord;

const SYMBOLS = 500; // 5 WebSocket connections of 100 symbols
const BATCH = 5000; // ingest's default batch size

/** The ingest suite. */
export const ingestSuite: Suite = {
  name: "ingest",
  title: "Ingest (WebSocket → Kafka)",
  requires: ["ingest/ingest.ts"],
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
    const oursTopic = await createTopic(ctx, admin, { name: "ingest" });
    const rawTopic = await createTopic(ctx, admin, { name: "ingest-raw" });
    await admin.disconnect();

    // The raw baseline sends exactly the records ingest builds for these frames.
    const records = frames.map(([, f]) => {
      const r = parseFrame(f, { nowMs: now });
      if (r.ok !== true) throw new Error(`Bench frame rejected: ${JSON.stringify(r)}`);
      return tickRecord(rawTopic, r.tick, now);
    });
    const messages = records.map((r) => ({
      key: r.key,
      value: r.value,
      timestamp: r.timestamp,
      headers: r.headers,
    }));

    const sender = await startSender(frames);
    const ingest = await startIngest({
      brokers: ctx.config.brokers,
      topic: oursTopic,
      symbols: names,
      source: sender.url,
      spoolDir: `${ctx.dataDir}/spool-ingest`,
      progressEveryMs: 0,
      print: () => {},
      logger: createLogger("bench.ingest", { level: "error" }),
    });
    const producer = kafka.producer();
    await producer.connect();
    try {
      await sender.subscribed(SYMBOLS, 30_000);
      const ours = async () => {
        const before = ingest.stats().ticksProduced;
        const t0 = performance.now();
        const sent = sender.send();
        await waitFor(
          () => ingest.stats().ticksProduced >= before + n,
          { timeoutMs: 300_000, what: `ingest to produce ${n} ticks`, everyMs: 2 },
        );
        const ms = performance.now() - t0;
        const s = await sent;
        if (s.n !== n) throw new Error(`Sender sent ${s.n} of ${n} frames`);
        return perSecond(n, ms);
      };
      const raw = async () => {
        const t0 = performance.now();
        for (let i = 0; i < messages.length; i += BATCH) {
          await producer.sendBatch({
            acks: -1,
            topicMessages: [{ topic: rawTopic, messages: messages.slice(i, i + BATCH) }],
          });
        }
        return perSecond(n, performance.now() - t0);
      };
      const r = await interleave(ours, raw, { runs: ctx.runs, log: ctx.log, label: "ingest" });
      const s = ingest.stats();
      if (s.dropped > 0 || Object.keys(s.dlq).length > 0) {
        throw new Error(`Ingest dropped ${s.dropped} and dead-lettered ${JSON.stringify(s.dlq)}`);
      }
      return [rowOf({
        suite: "ingest",
        metric: `${(n / 1000).toFixed(0)}k frames, ${SYMBOLS} symbols over ${
          Math.ceil(SYMBOLS / 100)
        } WebSockets, until acked by Kafka`,
        unit: "ticks/s",
        ours: r.ours,
        baseline: r.baseline,
        baselineLabel: "raw kafkajs sendBatch of the same records",
        target: { op: ">=", value: 0.7, on: "ratio" },
        note: "ingest: idempotent producer, 1 batch in flight; raw: plain producer, sequential",
      })];
    } finally {
      await ingest.stop({ flushTimeoutMs: 5000 }).catch(() => {});
      await producer.disconnect().catch(() => {});
      await sender.close().catch(() => {});
    }
  },
};
