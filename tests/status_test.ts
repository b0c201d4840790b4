// `tickpipe status --json` against the real Kafka, PostgreSQL and a KV file:
// end offsets, dead letters and lag agree with what was produced.
import assert from "node:assert/strict";
import { ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { writeDelta } from "../aggregate/checkpoint.ts";
import { runCli, tempKvPath, testKafka, uniqueName } from "./_helpers/env.ts";

Deno.test({
  name: "status: --json reports end offsets, dead letters, lag and reachability",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    const topic = uniqueName("t-status");
    const kvPath = await tempKvPath("status");
    try {
      await ensureTopic(admin, topic, { partitions: 3 });
      await ensureTopic(admin, `${topic}.dlq`, { partitions: 1 });
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      await producer.sendBatch({
        acks: -1,
        topicMessages: [
          {
            topic,
            messages: Array.from({ length: 12 }, (_, i) => ({
              partition: i % 3,
              key: `S${i}`,
              value: JSON.stringify({ id: `S${i}`, price: 1 + i, time: 1_700_000_000_000 + i }),
            })),
          },
          {
            topic: `${topic}.dlq`,
            messages: [{ value: "garbage", headers: { reason: "bad_json" } }],
          },
        ],
      });
      await producer.disconnect();
      const r = await runCli("status", [
        "status",
        "--json",
        "--no-rate",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout);
      assert.equal(s.topic, topic);
      assert.equal(s.kafka.reachable, true);
      assert.equal(s.postgres.reachable, true);
      assert.ok(!r.stdout.includes(":postgres@"), "password redacted");
      assert.deepEqual(s.partitions.map((p: { endOffset: number }) => p.endOffset), [4, 4, 4]);
      assert.equal(s.ticksInTopic, 12);
      assert.equal(s.deadLetters, 1);
      assert.equal(s.totalLag, 12, "nothing stored yet: everything is unread");
      assert.equal(s.lease, null);
      assert.equal(typeof s.windows.total, "number");
      assert.equal(s.checkpoint, null);
      // A v2 checkpoint (base + deltas): stored offsets, lag and its summary.
      const kv = await openKv(kvPath);
      try {
        const meta = {
          runId: "r",
          batchId: 3,
          committedAt: Date.now(),
          offsets: { "0": 4, "1": 1, "2": 0 },
          watermarks: { "0": 1_700_000_000_000, "1": null, "2": null },
          engine: { windows: [300_000], watermarkDelayMs: 900_000 },
          identity: { partitions: 3, fingerprints: { "0": null, "1": null, "2": null } },
          openWindows: 1,
          finalizeDueAt: null,
        };
        const rec = {
          kind: "baseline" as const,
          partition: 0,
          symbol: "S0",
          dayVolume: 5,
        };
        const w1 = await writeDelta(kv, topic, { ...meta, records: [rec] }, { previous: null });
        await writeDelta(kv, topic, { ...meta, batchId: 4, records: [{ ...rec, symbol: "S3" }] }, {
          previous: w1.checkpoint,
        });
      } finally {
        kv.close();
      }
      const r2 = await runCli("status", [
        "status",
        "--json",
        "--no-rate",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(r2.code, 0, r2.stderr);
      const s2 = JSON.parse(r2.stdout);
      assert.deepEqual(
        s2.partitions.map((
          p: { storedOffset: number | null; lag: number },
        ) => [p.storedOffset, p.lag]),
        [[4, 0], [1, 3], [0, 4]],
      );
      assert.equal(s2.totalLag, 7);
      assert.equal(s2.checkpoint.generation, 2);
      assert.equal(s2.checkpoint.batchId, 4);
      assert.ok(s2.checkpoint.stateBytes > 0);
    } finally {
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      await Deno.remove(kvPath).catch(() => {});
    }
  },
});
