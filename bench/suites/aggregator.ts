/**
 * Suite 3, aggregator: ticks/s consumed, folded, upserted and checkpointed by runAggregator
 * (in process, 1 s trigger) from a pre-filled topic (1,000 symbols, 3 partitions), measured from
 * the start call to the progress record whose checkpointed offsets cover the whole topic; against
 * a raw kafkajs eachBatch drain (fresh group, counting messages) of the same topic, measured from
 * connect to the last message. Both include the consumer group join. Target: ratio >= 0.8.
 *
 * The same run also measures where the time goes, each against the same raw drain: the drain
 * plus the record parser, the drain plus parser plus engine fold (`_drain.ts`), a raw
 * `npm:@platformatic/kafka` drain (the other client's ceiling, for scale), the aggregator on a
 * topic of tick-v1 values (against a raw drain of that topic), and the aggregator with four
 * resolutions against itself with one (target: at most 1.3x the time, ratio >= 0.77).
 *
 * Each run executes every contender once, in an order rotated from run to run; ratios pair the
 * contenders of one run.
 * @module
 */

import type { AggregatorDeps, AggregatorHandle, AggregatorOptions } from "../../aggregate/mod.ts";
import { openKv } from "../../common/kv.ts";
import { createLogger } from "../../common/log.ts";
import type { Kafka } from "../../common/kafka.ts";
import type { Pool } from "../../common/pg.ts";
import { Buffer } from "node:buffer";
import { encodeTickValue } from "../../proto/tick.ts";
import { perSecond } from "../_stats.ts";
import {
  importModule,
  requireFunction,
  type Row,
  rowOf,
  type Suite,
  type SuiteContext,
} from "../_suite.ts";
import { engineTicks, quote } from "./_data.ts";
import { drainKafkajs, drainPlatformatic } from "./_drain.ts";
import {
  benchKafka,
  benchPool,
  createTopic,
  deleteRows,
  ensureSchema,
  produceAll,
  recentStart,
  type TickMessage,
  tickMessage,
  topicSize,
  uniqueOf,
  waitFor,
} from "./_io.ts";

type RunAggregator = (
  deps: AggregatorDeps,
  options: AggregatorOptions,
) => Promise<AggregatorHandle>;

const FOUR = [60_000, 300_000, 900_000, 3_600_000];

/** Sum of the checkpointed next offsets in a progress JSON line. */
function committedOf(line: string): number {
  try {
    const p = JSON.parse(line) as { offsets?: Record<string, number> };
    return Object.values(p.offsets ?? {}).reduce((a, b) => a + b, 0);
  } catch {
    return 0;
  }
}

/** Sums of the per-trigger durations of progress lines (ms by phase), and the trigger count. */
function addDurations(into: Record<string, number>, line: string): void {
  try {
    const d = (JSON.parse(line) as { durationsMs?: Record<string, number | null> }).durationsMs;
    for (const [k, v] of Object.entries(d ?? {})) into[k] = (into[k] ?? 0) + (v ?? 0);
    into.triggers = (into.triggers ?? 0) + 1;
  } catch { /* not a progress line */ }
}

function phasesText(phases: Record<string, number>): string {
  return Object.entries(phases)
    .filter(([k, v]) => k !== "triggers" && v > 0)
    .map(([k, v]) => `${k.replace(/Ms$/, "")} ${(v / 1000).toFixed(2)}`)
    .join(", ") + `; ${phases.triggers ?? 0} triggers`;
}

/** Pre-fills `topic` with the suite's ticks in `format` (ingest's record shape). */
async function prefill(
  kafka: Kafka,
  options: { topic: string; total: number; prefix: string; format: "json" | "tick-v1" },
): Promise<void> {
  const { total, format } = options;
  // ~1 h of event time whatever the count, 2% out of order, 0.1% late.
  const ticks = engineTicks(total, 1000, {
    prefix: options.prefix,
    tickMs: Math.max(1, Math.round(3_600_000 / total)),
    start: recentStart(2),
  });
  const messages: TickMessage[] = ticks.map((t) => {
    const m = tickMessage(t);
    if (format === "json") return m;
    const q = quote(t.symbol, { price: t.price, time: t.eventTime, volume: 1000 + t.offset });
    const v = encodeTickValue(q, "tick-v1");
    // kafkajs takes binary values as Buffers (a plain Uint8Array is not one); TickMessage types
    // values as strings.
    return {
      ...m,
      value: Buffer.from(v.value) as unknown as string,
      headers: { ...m.headers, "tp-format": v.format },
    };
  });
  await produceAll(kafka, { topic: options.topic, messages });
}

/** The aggregator suite. */
export const aggregatorSuite: Suite = {
  name: "aggregator",
  title: "Aggregator (Kafka → engine → PostgreSQL)",
  requires: ["aggregate/aggregator.ts"],
  timeoutMs: (quick) => (quick ? 420_000 : 1_800_000),
  async run(ctx: SuiteContext): Promise<Row[]> {
    const mod = await importModule<Record<string, unknown>>("aggregate/aggregator.ts");
    const runAggregator = requireFunction<RunAggregator>(
      mod,
      "runAggregator",
      { path: "aggregate/aggregator.ts" },
    );
    const total = ctx.quick ? 150_000 : 1_000_000;
    const kafka = benchKafka(ctx.config);
    const admin = kafka.admin();
    await admin.connect();
    const json = await createTopic(ctx, admin, { name: "agg" });
    const bin = await createTopic(ctx, admin, { name: "agg-bin" });
    const pool = benchPool(ctx.config, 4);
    await ensureSchema(pool);
    const t0 = performance.now();
    await prefill(kafka, { topic: json, total, prefix: ctx.symbolPrefix, format: "json" });
    await prefill(kafka, { topic: bin, total, prefix: ctx.symbolPrefix, format: "tick-v1" });
    for (const topic of [json, bin]) {
      const size = await topicSize(admin, topic);
      if (size !== total) {
        throw new Error(`Pre-filled topic ${topic} holds ${size} records, expected ${total}`);
      }
    }
    await admin.disconnect();
    ctx.log.info("Pre-filled topics", {
      topics: `${json},${bin}`,
      records: total,
      seconds: (performance.now() - t0) / 1000,
    });

    const phases = new Map<string, Record<string, number>>();
    const contenders = contendersOf(ctx, { kafka, pool, runAggregator, json, bin, total, phases });
    const names = Object.keys(contenders);
    const samples = new Map<string, number[]>(names.map((n) => [n, []]));
    try {
      for (let i = -1; i < ctx.runs; i++) {
        // Run -1 warms up every contender; then each run rotates the order.
        const shift = i < 0 ? 0 : i % names.length;
        const order = [...names.slice(shift), ...names.slice(0, shift)];
        for (const name of order) {
          const v = await contenders[name](i);
          if (i >= 0) samples.get(name)!.push(v);
        }
        if (i >= 0) {
          ctx.log.info(`aggregator ${i + 1}/${ctx.runs}`, {
            ...Object.fromEntries(names.map((n) => [n, Math.round(samples.get(n)![i])])),
          });
        }
      }
    } finally {
      await pool.end().catch(() => {});
    }
    const s = (name: string) => samples.get(name)!;
    const workload = `${(total / 1e6).toFixed(2)}M ticks, 1000 symbols, 3 partitions`;
    const rawLabel = "raw kafkajs eachBatch drain";
    const common = { suite: "aggregator", unit: "ticks/s" };
    return [
      rowOf({
        ...common,
        metric: `${workload}, JSON values, 1 s trigger, until checkpointed`,
        ours: s("agg"),
        baseline: s("raw"),
        baselineLabel: rawLabel,
        target: { op: ">=", value: 0.8, on: "ratio" },
        note: "both timed from start, group join included; last run's time by phase (s): " +
          phasesText(phases.get("agg") ?? {}),
      }),
      rowOf({
        ...common,
        metric: `${workload}, JSON values, consumer on its own thread (opt-in), until checkpointed`,
        ours: s("agg-thread"),
        baseline: s("raw"),
        baselineLabel: rawLabel,
        note: "kafkajs in a Worker, batches transferred as typed arrays; last run's time by " +
          "phase (s): " + phasesText(phases.get("agg-thread") ?? {}),
      }),
      rowOf({
        ...common,
        metric: "where the time goes: raw drain + record parser (JSON scanner, validation)",
        ours: s("parse"),
        baseline: s("raw"),
        baselineLabel: rawLabel,
        note: "in eachBatch, one thread; no engine, no trigger",
      }),
      rowOf({
        ...common,
        metric: "where the time goes: raw drain + record parser + engine fold (1 resolution)",
        ours: s("fold"),
        baseline: s("raw"),
        baselineLabel: rawLabel,
        note: "in eachBatch, one thread; no cut, sink or checkpoint",
      }),
      rowOf({
        ...common,
        metric: "raw npm:@platformatic/kafka drain (for scale; the aggregator uses kafkajs)",
        ours: s("platformatic"),
        baseline: s("raw"),
        baselineLabel: rawLabel,
        note: "fresh group, earliest, message stream ('data' events), counting records",
      }),
      rowOf({
        ...common,
        metric: `${workload}, tick-v1 values, 1 s trigger, until checkpointed`,
        ours: s("agg-bin"),
        baseline: s("raw-bin"),
        baselineLabel: "raw kafkajs eachBatch drain of the tick-v1 topic",
        note: "last run's time by phase (s): " + phasesText(phases.get("agg-bin") ?? {}),
      }),
      rowOf({
        ...common,
        metric: "aggregator, 4 resolutions (1m, 5m, 15m, 1h), JSON values",
        ours: s("agg4"),
        baseline: s("agg"),
        baselineLabel: "the aggregator with 1 resolution (5m)",
        target: { op: ">=", value: 0.77, on: "ratio" },
        note: "target: at most 1.3× the time of one resolution (ratio ≥ 0.77); last run's time " +
          "by phase (s): " + phasesText(phases.get("agg4") ?? {}),
      }),
    ];
  },
};

interface ContenderDeps {
  kafka: Kafka;
  pool: Pool;
  runAggregator: RunAggregator;
  json: string;
  bin: string;
  total: number;
  phases: Map<string, Record<string, number>>;
}

/** Each contender drains a topic once and returns ticks/s. */
function contendersOf(
  ctx: SuiteContext,
  deps: ContenderDeps,
): Record<string, (i: number) => Promise<number>> {
  const { kafka, pool, runAggregator, json, bin, total } = deps;
  const quiet = createLogger("bench.aggregate", { level: "error" });
  const aggregator = (
    name: string,
    topic: string,
    options: { windows?: number[]; threaded?: boolean } = {},
  ) =>
  async (i: number) => {
    const { windows, threaded } = options;
    const phases: Record<string, number> = {};
    deps.phases.set(name, phases);
    const kv = await openKv(`${ctx.dataDir}/${uniqueOf(ctx, `${name}${i}`)}.kv`);
    let committed = 0;
    let handle: AggregatorHandle | undefined;
    try {
      const start = performance.now();
      handle = await runAggregator({
        kafka,
        pool,
        kv,
        logger: quiet,
        ...(threaded ? { consumerThread: { brokers: ctx.config.brokers } } : {}),
        writeProgress: (line) => {
          committed = Math.max(committed, committedOf(line));
          addDurations(phases, line);
        },
      }, {
        topic,
        groupId: uniqueOf(ctx, `${name}-group`),
        triggerMs: 1000,
        idleTimeoutMs: 600_000,
        ...(windows ? { windows } : {}),
      });
      await waitFor(() => committed >= total, {
        timeoutMs: 600_000,
        what: `the aggregator to commit ${total}`,
        everyMs: 5,
      });
      return perSecond(total, performance.now() - start);
    } finally {
      await handle?.stop();
      kv.close();
      // Untimed: the next run must upsert the same rows from scratch, not skip older versions.
      await deleteRows(pool, ctx, { topics: [topic] });
    }
  };
  const drain = (topic: string, mode: "raw" | "parse" | "fold") => async () => {
    const r = await drainKafkajs(kafka, mode, {
      topic,
      total,
      groupId: uniqueOf(ctx, `${mode}-group`),
    });
    if (mode !== "raw" && r.valid !== total) {
      throw new Error(`The ${mode} drain accepted ${r.valid} of ${total} records`);
    }
    return perSecond(total, r.ms);
  };
  return {
    agg: aggregator("agg", json),
    raw: drain(json, "raw"),
    parse: drain(json, "parse"),
    fold: drain(json, "fold"),
    platformatic: async () => {
      const r = await drainPlatformatic(ctx.config.brokers, {
        topic: json,
        total,
        groupId: uniqueOf(ctx, "platformatic-group"),
      });
      return perSecond(total, r.ms);
    },
    "agg-bin": aggregator("agg-bin", bin),
    "raw-bin": drain(bin, "raw"),
    agg4: aggregator("agg4", json, { windows: FOUR }),
    "agg-thread": aggregator("agg-thread", json, { threaded: true }),
  };
}
