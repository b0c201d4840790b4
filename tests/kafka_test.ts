// The real Kafka broker (started by `deno task services`) works with kafkajs:
// admin (create topic, end offsets), idempotent produce, consume in a group
// with commits that a second consumer of the same group resumes from. And the
// broker is what we think it is: its version is read from the running broker
// process itself (the jars it has open), and the API versions kafkajs
// negotiates with it are asserted, so a broker that drops one fails loudly.
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

// --- Which broker runs, and what kafkajs speaks with it --------------------------------------

/** The local process listening on TCP `port` (from /proc/net/tcp* and /proc/<pid>/fd). */
async function listenerPid(port: number): Promise<number | undefined> {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = await Deno.readTextFile(table);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      // cols: sl local_address rem_address st ... inode (index 9); st 0A = LISTEN
      if (cols.length < 10 || cols[3] !== "0A") continue;
      if (parseInt(cols[1].split(":").at(-1)!, 16) === port) inodes.add(cols[9]);
    }
  }
  if (inodes.size === 0) return undefined;
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      for await (const fd of Deno.readDir(`/proc/${e.name}/fd`)) {
        const target = await Deno.readLink(`/proc/${e.name}/fd/${fd.name}`).catch(() => "");
        const m = /^socket:\[(\d+)\]$/.exec(target);
        if (m && inodes.has(m[1])) return Number(e.name);
      }
    } catch {
      // the process exited, or is not ours to inspect
    }
  }
  return undefined;
}

/** The Kafka jars process `pid` has open (what the JVM actually loaded), by artifact. */
async function openKafkaJars(pid: number): Promise<Map<string, string>> {
  const jars = new Map<string, string>();
  for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
    const target = await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "");
    const m = /\/(kafka_2\.13|kafka-clients|kafka-server)-(\d[^/]*)\.jar$/.exec(target);
    if (m) jars.set(m[1], m[2]);
  }
  return jars;
}

const brokerAddr = /^(127\.0\.0\.1|localhost):(\d+)$/.exec(config.brokers[0] ?? "");
const brokerPid = config.brokers.length === 1 && brokerAddr
  ? await listenerPid(Number(brokerAddr[2]))
  : undefined;
if (brokerPid === undefined) {
  console.log(
    `kafka: skipping "the running broker is the version services selects": ` +
      `KAFKA_BROKERS=${config.brokers.join(",")} is not one broker process on this machine ` +
      `(nothing local listens there), so its jars cannot be inspected`,
  );
}

Deno.test({
  name: "kafka: the running broker is the version services selects (asked from its process)",
  ignore: brokerPid === undefined,
  async fn() {
    const { parseKafkaVersion } = await import("../services/kafka.ts");
    const selected = parseKafkaVersion(Deno.env.get("KAFKA_VERSION"));
    const pid = brokerPid!;
    const cmdline = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
    assert.ok(
      cmdline.includes("kafka.Kafka"),
      `pid ${pid} listening on ${config.brokers[0]} is not a Kafka broker: ${cmdline.join(" ")}`,
    );
    const jars = await openKafkaJars(pid);
    assert.ok(jars.has("kafka_2.13"), `the broker (pid ${pid}) has no kafka_2.13 jar open`);
    assert.equal(
      jars.get("kafka_2.13"),
      selected,
      `the broker on ${config.brokers[0]} (pid ${pid}) runs Kafka ${jars.get("kafka_2.13")}, but ` +
        `services selects ${selected} (KAFKA_VERSION=${Deno.env.get("KAFKA_VERSION") ?? "unset"})`,
    );
    assert.equal(jars.get("kafka-clients"), selected, "kafka-clients matches the broker");
    assert.equal(jars.get("kafka-server"), selected, "kafka-server matches the broker");
  },
});

/**
 * The version of each API kafkajs 2.2.4 uses with Kafka 3.9.1 and 4.4.0 (its own newest
 * implementation of each, since both brokers serve newer ones). Kafka 4 raised the minimum of
 * several APIs (KIP-896); a broker that raises one above these breaks kafkajs.
 */
const EXPECTED_VERSIONS: Record<string, number> = {
  Produce: 7,
  Fetch: 11,
  ListOffsets: 3,
  Metadata: 6,
  JoinGroup: 5,
  SyncGroup: 3,
  OffsetCommit: 5,
  InitProducerId: 1,
  CreateTopics: 3,
};

Deno.test({
  name: "kafka: kafkajs negotiates the expected API versions, each inside the broker's range",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // 1. The ranges the broker advertised (ApiVersions), as kafkajs stored them for its
    //    connection, and the version kafkajs picks from each (src/protocol/requests/index.js
    //    lookup: its newest implemented version, capped by the broker's max; the broker's min is
    //    not consulted, so a raised min shows up only as a failed request).
    const { default: Cluster } = await import("kafkajs/src/cluster/index.js");
    const { default: loggers } = await import("kafkajs/src/loggers/index.js");
    const { default: socketFactory } = await import("kafkajs/src/network/socketFactory.js");
    const { default: apiKeys } = await import("kafkajs/src/protocol/requests/apiKeys.js");
    const { requests } = await import("kafkajs/src/protocol/requests/index.js");
    type Range = { minVersion: number; maxVersion: number };
    const cluster = new Cluster({
      logger: loggers.createLogger({ level: loggers.LEVELS.NOTHING, logCreator: () => () => {} }),
      socketFactory: socketFactory(),
      brokers: config.brokers,
      clientId: "tickpipe-test-versions",
      connectionTimeout: 5000,
      metadataMaxAge: 300_000,
      retry: { retries: 2 },
    });
    await cluster.connect();
    const ranges = cluster.brokerPool.versions as Record<string, Range>;
    await cluster.disconnect();
    const keyOf = apiKeys as Record<string, number>;
    const defs = requests as Record<string, { versions: string[] }>;
    const picked = (name: string): number => {
      const range = ranges[keyOf[name]];
      assert.ok(range, `the broker does not offer ${name} at all`);
      return Math.min(Math.max(...defs[name].versions.map(Number)), range.maxVersion);
    };
    for (const [name, v] of Object.entries(EXPECTED_VERSIONS)) {
      const r = ranges[keyOf[name]];
      assert.equal(picked(name), v, `kafkajs would pick ${name} v${picked(name)}, expected v${v}`);
      assert.ok(
        r.minVersion <= v && v <= r.maxVersion,
        `${name} v${v} (what kafkajs sends) is outside the broker's range ` +
          `v${r.minVersion}-v${r.maxVersion}: this broker cannot serve kafkajs`,
      );
    }

    // 2. What kafkajs actually sends in the pipeline's operations (instrumentation events).
    const sent = new Map<string, Set<number>>();
    const record = (e: { payload: { apiName: string; apiVersion: number } }) => {
      const set = sent.get(e.payload.apiName) ?? new Set<number>();
      set.add(e.payload.apiVersion);
      sent.set(e.payload.apiName, set);
    };
    const kafka = testKafka();
    const topic = uniqueName("t-versions");
    const groupId = uniqueName("g-versions");
    const admin = kafka.admin();
    admin.on(admin.events.REQUEST, record);
    await admin.connect();
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    producer.on(producer.events.REQUEST, record);
    const consumer = kafka.consumer({ groupId });
    consumer.on(consumer.events.REQUEST, record);
    try {
      await ensureTopic(admin, topic, { partitions: 2 });
      await producer.connect();
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: String(i) })),
      });
      assert.deepEqual([...(await endOffsets(admin, topic)).values()].reduce((a, b) => a + b), 10);
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      let seen = 0;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`Timed out after ${seen}/10`)), 30_000);
        consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            seen += batch.messages.length;
            await consumer.commitOffsets([{
              topic,
              partition: batch.partition,
              offset: String(Number(batch.lastOffset()) + 1),
            }]);
            if (seen >= 10) {
              clearTimeout(timer);
              resolve();
            }
          },
        }).catch(reject);
      });
      assert.equal(seen, 10);
    } finally {
      await consumer.disconnect().catch(() => {});
      await producer.disconnect().catch(() => {});
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    }
    for (const [name, v] of Object.entries(EXPECTED_VERSIONS)) {
      assert.deepEqual(
        [...(sent.get(name) ?? [])],
        [v],
        `kafkajs sent ${name} as ${
          [...(sent.get(name) ?? [])].map((x) => `v${x}`).join(", ") ||
          "nothing"
        }, expected v${v}`,
      );
    }
    for (const [name, versions] of sent) {
      const r = ranges[keyOf[name]];
      for (const v of versions) {
        assert.ok(
          r && r.minVersion <= v && v <= r.maxVersion,
          `kafkajs sent ${name} v${v}, outside the broker's range ${
            r ? `v${r.minVersion}-v${r.maxVersion}` : "(not offered)"
          }`,
        );
      }
    }
  },
});
