/**
 * Suite 3, aggregator: ticks/s consumed, folded, upserted and checkpointed by runAggregator
 * (in process, 1 s trigger) from a pre-filled topic (1,000 symbols, 3 partitions), measured from
 * the start call to the progress record whose checkpointed offsets cover the whole topic; against
 * a raw kafkajs eachBatch drain (fresh group, counting messages) of the same topic, measured from
 * connect to the last message. Both include the consumer group join. Target: ratio >= 0.8.
 * @module
 */

import type { AggregatorDeps, AggregatorHandle, AggregatorOptions } from "../../aggregate/mod.ts";
import { openKv } from "../../common/kv.ts";
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
import { engineTicks } from "./_data.ts";
import {
  benchKafka,
  benchPool,
  createTopic,
  deleteRows,
  ensureSchema,
  produceAll,
  recentStart,
  tickMessage,
  topicSize,
  uniqueOf,
  waitFor,
} from "./_io.ts";

type RunAggregator = (
  deps: AggregatorDeps,
  options: AggregatorOptions,
) => Promise<AggregatorHandle>;

/** Sum of the checkpointed next offsets in a progress JSON line. */
function committedOf(line: string): number {
  try {
    const p = JSON.parse(line) as { offsets?: Record<string, number> };
    return Object.values(p.offsets ?? {}).reduce((a, b) => a + b, 0);
  } catch {
    return 0;
  }
}

/** Sums of the per-trigger durations of progress lines (ms by phase). */
function addDurations(into: Record<string, number>, line: string): void {
  try {
    const d = (JSON.parse(line) as { durationsMs?: Record<string, number | null> }).durationsMs;
    for (const [k, v] of Object.entries(d ?? {})) into[k] = (into[k] ?? 0) + (v ?? 0);
  } catch { /* not a progress line */ }
}

/** The aggregator suite. */
export const aggregatorSuite: Suite = {
  name: "aggregator",
  title: "Aggregator (Kafka → engine → PostgreSQL)",
  requires: ["aggregate/aggregator.ts"],
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
    const topic = await createTopic(ctx, admin, { name: "agg" });
    const pool = benchPool(ctx.config, 4);
    await ensureSchema(pool);
    // ~1 h of event time whatever the count, 2% out of order, 0.1% late.
    const ticks = engineTicks(total, 1000, {
      prefix: ctx.symbolPrefix,
      tickMs: Math.max(1, Math.round(3_600_000 / total)),
      start: recentStart(2),
    });
    const t0 = performance.now();
    await produceAll(kafka, { topic, messages: ticks.map((t) => tickMessage(t)) });
    ticks.length = 0;
    const size = await topicSize(admin, topic);
    await admin.disconnect();
    if (size !== total) {
      throw new Error(`Pre-filled topic holds ${size} records, expected ${total}`);
    }
    ctx.log.info("Pre-filled topic", {
      topic,
      records: total,
      seconds: (performance.now() - t0) / 1000,
    });
    const quiet = createLogger("bench.aggregate", { level: "error" });

    let phases: Record<string, number> = {};
    const ours = async (i: number) => {
      phases = {};
      const kv = await openKv(`${ctx.dataDir}/${uniqueOf(ctx, `agg${i}`)}.kv`);
      let committed = 0;
      let handle: AggregatorHandle | undefined;
      try {
        const start = performance.now();
        handle = await runAggregator({
          kafka,
          pool,
          kv,
          logger: quiet,
          writeProgress: (line) => {
            committed = Math.max(committed, committedOf(line));
            addDurations(phases, line);
          },
        }, {
          topic,
          groupId: uniqueOf(ctx, "agg-group"),
          triggerMs: 1000,
          idleTimeoutMs: 600_000,
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
    const raw = async () => {
      const consumer = kafka.consumer({
        groupId: uniqueOf(ctx, "raw-group"),
        maxWaitTimeInMs: 250,
      });
      let seen = 0;
      const start = performance.now();
      try {
        await consumer.connect();
        await consumer.subscribe({ topics: [topic], fromBeginning: true });
        await consumer.run({
          eachBatch: ({ batch }) => {
            seen += batch.messages.length;
            return Promise.resolve();
          },
        });
        await waitFor(() => seen >= total, {
          timeoutMs: 600_000,
          what: `the raw drain of ${total}`,
          everyMs: 5,
        });
        return perSecond(total, performance.now() - start);
      } finally {
        await consumer.disconnect().catch(() => {});
      }
    };
    try {
      const r = await interleave(ours, raw, { runs: ctx.runs, log: ctx.log, label: "aggregator" });
      return [rowOf({
        suite: "aggregator",
        metric: `${(total / 1e6).toFixed(2)}M ticks, 1000 symbols, 3 partitions, 1 s trigger, ` +
          `until checkpointed`,
        unit: "ticks/s",
        ours: r.ours,
        baseline: r.baseline,
        baselineLabel: "raw kafkajs eachBatch drain",
        target: { op: ">=", value: 0.8, on: "ratio" },
        note: "both timed from start, group join included; last run's time by phase (s): " +
          Object.entries(phases).map(([k, v]) => `${k.replace(/Ms$/, "")} ${(v / 1000).toFixed(2)}`)
            .join(", "),
      })];
    } finally {
      await pool.end().catch(() => {});
    }
  },
};
