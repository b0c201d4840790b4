// Chaos 11: a broker that has just started is asked to create topics at once (ingest and the
// aggregator do this on their first connection, and `deno task start` may run right after the
// broker): every topic is created and usable, with no error. kafkajs' createTopics, waiting for
// the new topic's leaders, gives up on the fresh broker's "does not host this topic-partition"
// (only "leader not available" is retried there); common/kafka.ts ensureTopic waits itself.
import assert from "node:assert/strict";
import { ensureTopic, topicOffsets } from "../../common/kafka.ts";
import {
  chaosKafka,
  deleteTopics,
  ensureKafka,
  killKafka,
  pick,
  summary,
  testOpts,
  uniq,
} from "./_harness.ts";

Deno.test(
  "chaos 11: topics created on a broker that has just started are created and usable",
  testOpts,
  async () => {
    const restarts = pick(1, 3);
    const t0 = Date.now();
    const created: string[] = [];
    const kafka = chaosKafka();
    try {
      for (let round = 0; round < restarts; round++) {
        await ensureKafka();
        await killKafka();
        await ensureKafka(); // answers metadata: as soon as a client would try
        const admin = kafka.admin();
        await admin.connect();
        try {
          for (let i = 0; i < 3; i++) {
            const topic = uniq(`chaos-fresh-${round}-${i}`);
            created.push(topic);
            assert.equal(await ensureTopic(admin, topic, { partitions: 3 }), true, topic);
            const ranges = await topicOffsets(admin, topic);
            assert.deepEqual(ranges?.map((r) => r.partition), [0, 1, 2], topic);
            assert.equal(await ensureTopic(admin, topic, { partitions: 3 }), false, topic);
          }
        } finally {
          await admin.disconnect();
        }
      }
      await summary(
        `11 fresh-broker: restarts=${restarts} topics=${created.length} created and usable in ${
          ((Date.now() - t0) / 1000).toFixed(0)
        }s`,
      );
    } finally {
      await deleteTopics(kafka, created);
    }
  },
);
