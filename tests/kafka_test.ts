// The real Kafka broker (started by `deno task services`) works with kafkajs:
// admin (create topic, end offsets), idempotent produce, consume in a group
// with commits that a second consumer of the same group resumes from.
import assert from "node:assert/strict";
import { endOffsets, ensureTopic } from "../common/kafka.ts";
import { config, testKafka, uniqueName } from "./_helpers/env.ts";

Deno.test({
  name: "kafka: admin creates a topic and lists end offsets; produce moves them",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    const topic = uniqueName("t-admin");
    try {
      assert.equal(await ensureTopic(admin, topic, { partitions: 3 }), true);
      assert.equal(
        await ensureTopic(admin, topic, { partitions: 3 }),
        false,
        "second create is a no-op",
      );
      assert.deepEqual([...(await endOffsets(admin, topic)).entries()], [[0, 0], [1, 0], [2, 0]]);
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      const messages = Array.from(
        { length: 30 },
        (_, i) => ({ key: `k${i % 7}`, value: String(i), partition: i % 3 }),
      );
      await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] });
      await producer.disconnect();
      const ends = await endOffsets(admin, topic);
      assert.deepEqual([...ends.values()], [10, 10, 10]);
    } finally {
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    }
  },
});

Deno.test({
  name: "kafka: consumer group commits offsets and a restarted member resumes after them",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    const topic = uniqueName("t-group");
    const groupId = uniqueName("g");
    await ensureTopic(admin, topic, { partitions: 2 });
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const send = (from: number, n: number) =>
      producer.send({
        topic,
        acks: -1,
        messages: Array.from(
          { length: n },
          (_, i) => ({ key: `s${(from + i) % 5}`, value: String(from + i) }),
        ),
      });
    const consumeAll = async (expected: number): Promise<number[]> => {
      const seen: number[] = [];
      const consumer = kafka.consumer({ groupId });
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`Timed out after ${seen.length}/${expected}`)),
          30_000,
        );
        consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch, resolveOffset }) => {
            for (const m of batch.messages) {
              seen.push(Number(m.value!.toString()));
              resolveOffset(m.offset);
            }
            await consumer.commitOffsets([{
              topic,
              partition: batch.partition,
              offset: String(Number(batch.lastOffset()) + 1),
            }]);
            if (seen.length >= expected) {
              clearTimeout(timer);
              resolve();
            }
          },
        }).catch(reject);
      });
      await consumer.disconnect();
      return seen;
    };
    try {
      await send(0, 20);
      const first = await consumeAll(20);
      assert.deepEqual([...first].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
      const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
      const sum = committed[0].partitions.reduce((s, p) => s + Number(p.offset), 0);
      assert.equal(sum, 20, "committed offsets cover all 20 records");
      await send(20, 10);
      const second = await consumeAll(10);
      assert.deepEqual(
        [...second].sort((a, b) => a - b),
        Array.from({ length: 10 }, (_, i) => 20 + i),
      );
    } finally {
      await producer.disconnect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    }
  },
});

Deno.test("kafka: the broker is the pinned Apache Kafka version", async () => {
  const { KAFKA_VERSION } = await import("../services/kafka.ts");
  const pom = await Deno.readTextFile("services/kafka/pom.xml");
  assert.match(
    pom,
    new RegExp(`<kafka.version>${KAFKA_VERSION.replaceAll(".", "\\.")}</kafka.version>`),
  );
  assert.ok(config.brokers.length > 0);
});
