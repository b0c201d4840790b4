// The aggregator with its Kafka consumer on a thread of its own (deps.consumerThread), against
// the real Kafka and PostgreSQL: exactly the oracle's rows, every record counted once, and the
// thread really ran (no fallback to the main thread).
import assert from "node:assert/strict";
import { openKv } from "../common/kv.ts";
import { createLogger } from "../common/log.ts";
import { createPool } from "../common/pg.ts";
import { migrate } from "../sql/migrate.ts";
import { readCheckpoint, runAggregator } from "../aggregate/mod.ts";
import { config, tempKvPath, testKafka, uniqueName } from "./_helpers/env.ts";
import {
  assertRowsEqual,
  cleanupRows,
  generateStream,
  oracle,
  produceStream,
  readLate,
  readRows,
} from "./_helpers/aggregate_stream.ts";

const WINDOW = 60_000;
const DELAY = 180_000;
const PARTS = 3;

Deno.test(
  "aggregate: consumer on its own thread gives exactly the oracle's rows",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const topic = uniqueName("agg-thread");
    const prefix = `THREAD${crypto.randomUUID().slice(0, 6)}_`;
    const kvPath = await tempKvPath("agg-thread");
    const kv = await openKv(kvPath);
    const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-test" });
    await migrate(pool);
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: PARTS, replicationFactor: 1 }],
    });
    const logs: string[] = [];
    const logger = createLogger("test", { level: "debug", write: (l) => logs.push(l) });
    try {
      const streams = generateStream({
        seed: 7,
        prefix,
        perPartition: 1200,
        partitions: PARTS,
        windowMs: WINDOW,
        watermarkDelayMs: DELAY,
      });
      await produceStream(kafka, topic, streams, { from: 0, to: 600 });
      const lines: string[] = [];
      const h = await runAggregator({
        kafka,
        pool,
        kv,
        logger,
        writeProgress: (l) => lines.push(l),
        consumerThread: { brokers: config.brokers },
      }, {
        topic,
        groupId: uniqueName("agg-thread-group"),
        triggerMs: 300,
        idleTimeoutMs: 60_000,
        windows: [WINDOW],
        watermarkDelayMs: DELAY,
        leaseTtlMs: 3000,
      });
      // The second half arrives while the first is being folded and committed.
      await produceStream(kafka, topic, streams, { from: 600, to: 1200 });
      for (const t0 = Date.now();;) {
        const offs = (await readCheckpoint(kv, topic))?.pointer.offsets ?? {};
        if ([0, 1, 2].every((p) => (offs[p] ?? 0) >= 1200)) break;
        if (Date.now() - t0 > 60_000) throw new Error(`Offsets stuck at ${JSON.stringify(offs)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const result = await h.stop();
      assert.equal(result.reason, "stopped", String(result.error?.message));
      assert.ok(
        !logs.some((l) => l.includes("could not start")),
        `the consumer thread ran: ${logs.filter((l) => l.includes("thread")).join(" | ")}`,
      );
      assert.ok(logs.some((l) => l.includes("partitions assigned")));
      const expected = oracle(streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
      assertRowsEqual(await readRows(pool, prefix), expected.rows, WINDOW);
      assert.deepEqual([...(await readLate(pool, topic))].sort(), [...expected.late].sort());
      const progress = lines.map((l) => JSON.parse(l));
      assert.equal(progress.reduce((n, p) => n + p.inputRows, 0), 1200 * PARTS);
      assert.equal(progress.reduce((n, p) => n + p.invalidRows, 0), 1);
      assert.deepEqual(progress.at(-1).offsets, { "0": 1200, "1": 1200, "2": 1200 });
    } finally {
      await cleanupRows(pool, prefix, topic).catch(() => {});
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
      await pool.end();
      kv.close();
      for (const s of ["", "-wal", "-shm"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
);
