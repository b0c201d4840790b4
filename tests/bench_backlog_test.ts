/**
 * The backlog suites' machinery against the real Kafka and PostgreSQL: the pre-filled backlog
 * keeps each partition in generation order, the raw drain and the aggregator run as measured
 * processes, and the aggregator's rows equal the oracle. The Spark job runs only with
 * TICKPIPE_TEST_SPARK=1 (it costs about 45 CPU-seconds and needs Maven Central once).
 */

import assert from "node:assert/strict";
import {
  prefillBacklog,
  readWindows,
  runAggregatorProcess,
  runRawDrainProcess,
} from "../bench/suites/_backlog.ts";
import { engineTicks } from "../bench/suites/_data.ts";
import {
  createTopic,
  deleteRows,
  deleteSparkRows,
  ensureSchema,
  recentStart,
  SPARK_TABLE,
  type TickMessage,
  tickMessage,
  topicSize,
} from "../bench/suites/_io.ts";
import { createWindowOracle, diffIsClean, diffWindows } from "../bench/suites/_oracle.ts";
import { prepareSparkJob, runSparkProcess, sparkBatches } from "../bench/suites/_spark.ts";
import type { SuiteContext } from "../bench/_suite.ts";
import { config, quietLogger, testKafka, testPool, uniqueName } from "./_helpers/env.ts";

const TOTAL = 6000;
const SYMBOLS = 12;
const TICK_MS = 250;

function contextOf(): SuiteContext {
  const id = uniqueName("tbl").replaceAll("-", "");
  return {
    quick: true,
    runs: 3,
    config,
    runId: `test-${id}`,
    symbolPrefix: `TBL_${id}_`,
    dataDir: `.data/test/${id}`,
    log: quietLogger,
  };
}

async function withBacklog(
  fn: (
    b: {
      ctx: SuiteContext;
      topic: string;
      oracle: ReturnType<typeof createWindowOracle>;
      keepAll: ReturnType<typeof createWindowOracle>;
      start: number;
      prefix: string;
    },
  ) => Promise<void>,
): Promise<void> {
  const ctx = contextOf();
  await Deno.mkdir(ctx.dataDir, { recursive: true });
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  const pool = testPool();
  const topic = await createTopic(ctx, admin, { name: "backlog" });
  const prefix = `${ctx.symbolPrefix}S`;
  const oracle = createWindowOracle();
  const keepAll = createWindowOracle({ watermarkDelayMs: null });
  const start = recentStart(3);
  try {
    await prefillBacklog(kafka, {
      topic,
      total: TOTAL,
      symbols: SYMBOLS,
      tickMs: TICK_MS,
      start,
      prefix,
    }, {
      oracles: [oracle, keepAll],
    });
    await fn({ ctx, topic, oracle, keepAll, start, prefix });
  } finally {
    await deleteRows(pool, ctx, { topics: [topic] }).catch(() => {});
    await pool.end();
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
    await Deno.remove(ctx.dataDir, { recursive: true }).catch(() => {});
  }
}

Deno.test("backlog: each partition holds the generated ticks in order; drain and aggregator are measured; rows equal the oracle", async () => {
  await withBacklog(async ({ ctx, topic, oracle, start, prefix }) => {
    const pool = testPool();
    try {
      await ensureSchema(pool);
      const admin = testKafka().admin();
      await admin.connect();
      assert.equal(await topicSize(admin, topic), TOTAL);
      await admin.disconnect();

      // Read the topic back: partition by partition, exactly the generated records, in order.
      const expected = new Map<number, TickMessage[]>();
      for (const t of engineTicks(TOTAL, SYMBOLS, { tickMs: TICK_MS, start, prefix })) {
        expected.set(t.partition, [...(expected.get(t.partition) ?? []), tickMessage(t)]);
      }
      const got = new Map<number, { value: string; offset: number }[]>();
      const consumer = testKafka().consumer({ groupId: uniqueName("tbl-read") });
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      let seen = 0;
      await consumer.run({
        eachMessage: ({ partition, message }) => {
          const list = got.get(partition) ?? [];
          list.push({ value: message.value!.toString(), offset: Number(message.offset) });
          got.set(partition, list);
          seen++;
          return Promise.resolve();
        },
      });
      const until = Date.now() + 60_000;
      while (seen < TOTAL && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      await consumer.disconnect();
      assert.equal(seen, TOTAL);
      for (const [p, list] of expected) {
        assert.deepEqual(
          got.get(p)!.map((m) => m.value),
          list.map((m) => m.value),
          `partition ${p}`,
        );
        assert.deepEqual(got.get(p)!.map((m) => m.offset), list.map((_, i) => i));
      }
      assert.ok(oracle.late > 0, "the backlog has late ticks");

      const raw = await runRawDrainProcess(ctx, {
        topic,
        total: TOTAL,
        timeoutMs: 60_000,
        name: "t",
      });
      assert.ok(raw.startupMs !== null && raw.startupMs <= raw.doneMs && raw.doneMs <= raw.wallMs);
      assert.ok(raw.cpuMs > 0 && raw.peakRssMb > 30, JSON.stringify({ ...raw, stdout: [] }));

      const agg = await runAggregatorProcess(ctx, {
        topic,
        total: TOTAL,
        flags: ["--trigger", "1s", "--idle-timeout", "3s"],
        timeoutMs: 90_000,
        name: "t",
      });
      assert.ok(agg.startupMs !== null, "the aggregator logged its partition assignment");
      assert.ok(agg.startupMs <= agg.doneMs && agg.doneMs <= agg.wallMs);
      assert.ok(agg.cpuMs > 0 && agg.peakRssMb > 30);
      const diff = diffWindows(
        oracle.windows,
        await readWindows(pool, { table: "price_windows", prefix }),
      );
      assert.ok(diffIsClean(diff), JSON.stringify(diff));
      assert.equal(diff.equal, oracle.windows.size);
    } finally {
      await pool.end();
    }
  });
});

const sparkWanted = Deno.env.get("TICKPIPE_TEST_SPARK") === "1";
if (!sparkWanted) {
  console.log(
    "Skipping the Spark job test: set TICKPIPE_TEST_SPARK=1 to run it (about 45 CPU-seconds; " +
      "the first build downloads Spark from Maven Central)",
  );
}

Deno.test({
  name: "spark job: drains the backlog, exits on idle, and keeps every late tick of its one batch",
  ignore: !sparkWanted,
  fn: async () => {
    await withBacklog(async ({ ctx, topic, oracle, keepAll, prefix }) => {
      const job = await prepareSparkJob(ctx);
      const pool = testPool();
      try {
        const run = await runSparkProcess(ctx, job, {
          topic,
          total: TOTAL,
          timeoutMs: 600_000,
          name: "t",
        });
        assert.ok(run.startupMs !== null && run.startupMs <= run.doneMs);
        const batches = sparkBatches(run.stdout).filter((b) => b.inputRows > 0);
        assert.equal(batches.reduce((a, b) => a + b.inputRows, 0), TOTAL);
        const rows = await readWindows(pool, { table: SPARK_TABLE, prefix });
        const vsKeepAll = diffWindows(keepAll.windows, rows);
        const vsOracle = diffWindows(oracle.windows, rows);
        if (batches.length === 1) {
          assert.ok(diffIsClean(vsKeepAll), JSON.stringify(vsKeepAll));
          assert.ok(!diffIsClean(vsOracle), "late ticks kept, so rows differ from the oracle");
        }
      } finally {
        await deleteSparkRows(pool, prefix);
        await pool.end();
      }
    });
  },
});
