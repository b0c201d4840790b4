// `tickpipe offsets` against the real Kafka broker and a KV file laid out as
// the aggregator writes it: the report agrees with Kafka's end offsets and
// the stored checkpoint; `reset` needs --yes, is refused while a lease is
// live, and rewrites offsets while dropping the engine state.
import assert from "node:assert/strict";
import { endOffsets, ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { runCli, tempKvPath, testKafka, uniqueName } from "./_helpers/env.ts";

function offsets(args: string[]) {
  return runCli("offsets", ["offsets", ...args]);
}

Deno.test({
  name: "offsets: --json report, text report, reset guarded by --yes and the lease",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    const topic = uniqueName("t-offsets");
    const kvPath = await tempKvPath("offsets");
    const kv = await openKv(kvPath);
    try {
      await ensureTopic(admin, topic, { partitions: 2 });
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: 10 }, (_, i) => ({
          key: `S${i}`,
          partition: i < 6 ? 0 : 1,
          value: JSON.stringify({ id: `S${i}`, price: 1.5, time: 1_700_000_000_000 + i }),
          headers: { ingest_ms: String(Date.now()) },
        })),
      });
      await producer.disconnect();
      const ends = await endOffsets(admin, topic);
      assert.deepEqual([...ends.values()], [6, 4]);

      // Before any checkpoint: everything is lag, read from the earliest offsets.
      const r0 = await offsets(["--json", "--topic", topic, "--kv", kvPath]);
      assert.equal(r0.code, 0, r0.stderr);
      const j0 = JSON.parse(r0.stdout);
      assert.equal(j0.lag, 10);
      assert.equal(j0.checkpoint, null);

      // A checkpoint and a live lease as the aggregator writes them.
      const now = Date.now();
      const wm = 1_700_000_000_000;
      await kv.set(["tickpipe", topic, "checkpoint"], {
        generation: 4,
        runId: "run-x",
        batchId: 9,
        committedAt: now - 1000,
        offsets: { "0": 5, "1": 4 },
        watermarks: { "0": wm, "1": null },
        chunks: 2,
        stateBytes: 7,
      });
      await kv.set(["tickpipe", topic, "state", 4, 0], new Uint8Array([1, 2, 3, 4]));
      await kv.set(["tickpipe", topic, "state", 4, 1], new Uint8Array([5, 6, 7]));
      await kv.set(["tickpipe", topic, "progress"], { batchId: 9, numInputRows: 9 });
      const lease = {
        holder: "agg-1",
        pid: 4242,
        hostname: "box",
        acquiredAt: now,
        expiresAt: now + 60_000,
      };
      await kv.set(["tickpipe", topic, "lease"], lease, { expireIn: 60_000 });

      const r1 = await offsets(["--json", "--topic", topic, "--kv", kvPath]);
      assert.equal(r1.code, 0, r1.stderr);
      const j1 = JSON.parse(r1.stdout);
      assert.deepEqual(
        j1.partitions.map((p: Record<string, unknown>) => [p.partition, p.stored, p.end, p.lag]),
        [[0, 5, ends.get(0), 1], [1, 4, ends.get(1), 0]],
      );
      assert.equal(j1.partitions[0].watermark, wm);
      assert.equal(j1.lag, 1);
      assert.equal(j1.checkpoint.generation, 4);
      assert.equal(j1.checkpoint.committedAt, now - 1000);
      assert.equal(j1.lease.holder, "agg-1");
      assert.equal(j1.lease.live, true);
      assert.equal(j1.progress.numInputRows, 9);

      const text = await offsets(["--topic", topic, "--kv", kvPath]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /lag 1/);
      assert.match(text.stdout, /checkpoint: generation 4, batch 9/);
      assert.match(text.stdout, /lease: live, held by agg-1 \(pid 4242 on box\)/);

      const all = await offsets(["--json", "--all", "--kv", kvPath]);
      assert.equal(all.code, 0, all.stderr);
      assert.deepEqual(JSON.parse(all.stdout).map((r: { topic: string }) => r.topic), [topic]);

      // Reset: --yes required; refused while the lease is live.
      const noYes = await offsets(["reset", "--to", "earliest", "--topic", topic, "--kv", kvPath]);
      assert.equal(noYes.code, 2);
      assert.match(noYes.stderr, /add --yes/);
      const held = await offsets([
        "reset",
        "--to",
        "earliest",
        "--yes",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(held.code, 3, held.stderr);
      assert.match(held.stderr, /holds the lease \(agg-1, pid 4242 on box\)/);
      assert.equal((await kv.get(["tickpipe", topic, "state", 4, 0])).value !== null, true);
      const badTo = await offsets(["reset", "--to", "soon", "--yes", "--topic", topic]);
      assert.equal(badTo.code, 2);
      assert.match(badTo.stderr, /--to "soon"/);

      // Lease gone (expired or released): the reset goes through.
      await kv.delete(["tickpipe", topic, "lease"]);
      const outside = await offsets([
        "reset",
        "--to",
        "5",
        "--yes",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(outside.code, 2, outside.stderr);
      assert.match(outside.stderr, /--to 5 is outside partition 1/);
      const ok = await offsets([
        "reset",
        "--to",
        "earliest",
        "--yes",
        "--json",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual(JSON.parse(ok.stdout).after, { "0": 0, "1": 0 });
      const cp = (await kv.get<Record<string, unknown>>(["tickpipe", topic, "checkpoint"])).value!;
      assert.deepEqual(cp.offsets, { "0": 0, "1": 0 });
      assert.deepEqual(cp.watermarks, { "0": null, "1": null });
      // The reset writes a v2 pointer: an empty base as generation 5, the v1 state deleted.
      assert.equal(cp.version, 2);
      assert.deepEqual(cp.base, { generation: 5, chunks: 0, bytes: 0, records: 0 });
      assert.deepEqual(cp.deltas, []);
      assert.deepEqual(cp.garbage, []);
      assert.equal(cp.nextGeneration, 6);
      assert.equal(cp.batchId, 9);
      let chunks = 0;
      for await (const _ of kv.list({ prefix: ["tickpipe", topic, "state"] })) chunks++;
      assert.equal(chunks, 0, "engine state dropped");

      const latest = await offsets([
        "reset",
        "--to",
        "latest",
        "--yes",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(latest.code, 0, latest.stderr);
      const j2 = JSON.parse((await offsets(["--json", "--topic", topic, "--kv", kvPath])).stdout);
      assert.equal(j2.lag, 0);
      assert.equal(j2.checkpoint.generation, 6);
    } finally {
      kv.close();
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
      for (const s of ["", "-shm", "-wal"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
});
