// The demo's fresh start against the real Kafka, PostgreSQL and KV: its topic's records (and its
// dead letters') are deleted while the topics stay, every KV entry of the topic goes, its rows go
// (other topics' stay), its spool directory goes; refused while an aggregator holds the lease.
import assert from "node:assert/strict";
import { ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { DemoBusyError, resetDemoTopic } from "../pipeline/demo_reset.ts";
import { tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";

Deno.test({
  name:
    "demo reset: records, KV entries, rows and spool of the demo topic only; refused over a lease",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const pool = testPool();
    const topic = uniqueName("t-demo-reset");
    const other = `${topic}-other`;
    const kvPath = await tempKvPath("demo-reset");
    const kv = await openKv(kvPath);
    const spoolDir = `.data/test/${topic}.spool`;
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureTopic(admin, topic, { partitions: 2 });
      await ensureTopic(admin, `${topic}.dlq`, { partitions: 1 });
      const producer = kafka.producer();
      await producer.connect();
      await producer.sendBatch({
        acks: -1,
        topicMessages: [
          { topic, messages: Array.from({ length: 7 }, (_, i) => ({ key: `K${i}`, value: "x" })) },
          { topic: `${topic}.dlq`, messages: [{ value: "bad" }] },
        ],
      });
      await producer.disconnect();
      for (const t of [topic, other]) {
        await kv.set(["tickpipe", t, "checkpoint"], { version: 2 });
        await kv.set(["tickpipe", t, "state", 1, 0], new Uint8Array(3));
        await kv.set(["tickpipe", t, "sensor", "crash"], { consecutiveFailures: 2 });
        await pool.query(
          `INSERT INTO late_ticks (topic, symbol, event_time, price, kafka_partition,
                                   kafka_offset, watermark)
           VALUES ($1, 'DRX', now(), 1, 0, 1, now())`,
          [t],
        );
      }
      await Deno.mkdir(spoolDir, { recursive: true });
      await Deno.writeTextFile(`${spoolDir}/segment`, "old ticks");

      // A live lease: refused, nothing removed.
      await kv.set(["tickpipe", topic, "lease"], {
        holder: "h",
        pid: 42,
        hostname: "box",
        acquiredAt: Date.now(),
        expiresAt: Date.now() + 60_000,
      });
      await assert.rejects(
        resetDemoTopic(topic, { kafka, pool, kv, spoolDir }),
        (e) => e instanceof DemoBusyError && /pid 42 on box/.test(e.message),
      );
      assert.notEqual((await kv.get(["tickpipe", topic, "checkpoint"])).value, null);

      // An expired lease: reset.
      await kv.set(["tickpipe", topic, "lease"], {
        holder: "h",
        pid: 42,
        hostname: "box",
        acquiredAt: 0,
        expiresAt: Date.now() - 1,
      });
      const r = await resetDemoTopic(topic, { kafka, pool, kv, spoolDir });
      assert.deepEqual(r, { records: 8, rows: 1, kvKeys: 4 });
      for (const t of [topic, `${topic}.dlq`]) {
        const offsets = await admin.fetchTopicOffsets(t);
        assert.ok(offsets.every((o) => o.low === o.high), `${t}: ${JSON.stringify(offsets)}`);
      }
      assert.equal((await kv.list({ prefix: ["tickpipe", topic] }).next()).done, true);
      assert.notEqual((await kv.get(["tickpipe", other, "checkpoint"])).value, null);
      const { rows } = await pool.query(
        "SELECT topic FROM late_ticks WHERE topic = ANY($1)",
        [[topic, other]],
      );
      assert.deepEqual(rows.map((x) => x.topic), [other]);
      await assert.rejects(Deno.stat(spoolDir), Deno.errors.NotFound);
      // Again: nothing left to remove, no error.
      assert.deepEqual(await resetDemoTopic(topic, { kafka, pool, kv, spoolDir }), {
        records: 0,
        rows: 0,
        kvKeys: 0,
      });
    } finally {
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      await pool.query("DELETE FROM late_ticks WHERE topic = ANY($1)", [[topic, other]]);
      await pool.end();
      kv.close();
      for (const s of ["", "-shm", "-wal"]) await Deno.remove(kvPath + s).catch(() => {});
      await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
    }
  },
});
