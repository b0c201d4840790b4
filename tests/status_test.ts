// `tickpipe status --json` against the real Kafka, PostgreSQL and a KV file:
// end offsets, dead letters and lag agree with what was produced.
import assert from "node:assert/strict";
import { ensureTopic } from "../common/kafka.ts";
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
    } finally {
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      await Deno.remove(kvPath).catch(() => {});
    }
  },
});
