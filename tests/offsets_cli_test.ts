// `tickpipe offsets` against the real Kafka broker and what a real aggregator run left in KV
// (its checkpoint, progress and lease, as it writes them): the report agrees with Kafka's end
// offsets and the checkpoint; `reset` needs --yes, is refused while a lease is live, and
// rewrites the offsets while dropping the window state and keeping the watermarks.
import assert from "node:assert/strict";
import { endOffsets, ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { acquireLease, readCheckpoint, readProgress, releaseLease } from "../aggregate/mod.ts";
import { runCli, tempKvPath, testKafka, uniqueName } from "./_helpers/env.ts";

function offsets(args: string[]) {
  return runCli("offsets", ["offsets", ...args]);
}

Deno.test({
  name: "offsets: --json and text reports of a real run; reset guarded by --yes and the lease",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    const topic = uniqueName("t-offsets");
    const kvPath = await tempKvPath("offsets");
    const send = async (from: number, count: number) => {
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: count }, (_, k) => {
          const i = from + k;
          return {
            key: `S${i}`,
            partition: i % 5 < 3 ? 0 : 1,
            value: JSON.stringify({
              id: `OFFS${i % 3}`,
              price: 1.5 + i,
              time: 1_700_000_000_000 + i * 60_000,
            }),
            headers: { ingest_ms: String(Date.now()) },
          };
        }),
      });
      await producer.disconnect();
    };
    try {
      await ensureTopic(admin, topic, { partitions: 2 });
      await send(0, 10);
      const ends = await endOffsets(admin, topic);
      assert.deepEqual([...ends.values()], [6, 4]);

      // Before any checkpoint: everything is lag, read from the earliest offsets.
      const r0 = await offsets(["--json", "--topic", topic, "--kv", kvPath]);
      assert.equal(r0.code, 0, r0.stderr);
      const j0 = JSON.parse(r0.stdout);
      assert.equal(j0.lag, 10);
      assert.equal(j0.checkpoint, null);
      assert.equal(j0.engine, null);
      assert.equal(j0.identityMismatch, null);

      // A real aggregator run reads them all and exits on idle.
      const agg = await runCli("aggregate", [
        "aggregate",
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--trigger",
        "300ms",
        "--idle-timeout",
        "2s",
        "--windows",
        "1m",
        "--watermark",
        "2m",
      ], { timeoutMs: 60_000 });
      assert.equal(agg.code, 0, agg.stderr.slice(-2000));
      await send(10, 5); // 3 on partition 0, 2 on partition 1: unread
      const kv = await openKv(kvPath);
      const cp = (await readCheckpoint(kv, topic))!;
      const progress = (await readProgress(kv, topic))!;
      kv.close();
      assert.deepEqual(cp.pointer.offsets, { "0": 6, "1": 4 });

      const r1 = await offsets(["--json", "--topic", topic, "--kv", kvPath]);
      assert.equal(r1.code, 0, r1.stderr);
      const j1 = JSON.parse(r1.stdout);
      assert.deepEqual(
        j1.partitions.map((p: Record<string, unknown>) => [p.partition, p.stored, p.end, p.lag]),
        [[0, 6, 9, 3], [1, 4, 6, 2]],
      );
      for (const p of j1.partitions) {
        assert.equal(p.watermark, cp.pointer.watermarks[String(p.partition)]);
        assert.equal(typeof p.watermark, "number", "the run set every watermark");
      }
      assert.equal(j1.lag, 5);
      assert.equal(j1.checkpoint.batchId, cp.pointer.batchId);
      assert.equal(j1.checkpoint.committedAt, cp.pointer.committedAt);
      assert.deepEqual(j1.progress, progress, "the run's last progress record, as written");
      assert.equal(j1.progress.reason, "final");
      assert.equal(j1.lease, null, "the run released its lease");
      assert.deepEqual(j1.engine.windows, [60_000], "the resolutions the state was built with");
      assert.equal(j1.engine.watermarkDelayMs, 120_000);
      assert.equal(j1.engine.openWindows, cp.pointer.openWindows);

      const text = await offsets(["--topic", topic, "--kv", kvPath]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /lag 5/);
      assert.match(
        text.stdout,
        new RegExp(`checkpoint: generation \\d+, batch ${cp.pointer.batchId}`),
      );
      assert.doesNotMatch(text.stdout, /IDENTITY MISMATCH/);
      assert.match(text.stdout, /engine: windows 1m, watermark 2m; \d+ open windows/);

      const all = await offsets(["--json", "--all", "--kv", kvPath]);
      assert.equal(all.code, 0, all.stderr);
      assert.deepEqual(JSON.parse(all.stdout).map((r: { topic: string }) => r.topic), [topic]);

      // Reset: --yes required; refused while a lease is live.
      const noYes = await offsets(["reset", "--to", "earliest", "--topic", topic, "--kv", kvPath]);
      assert.equal(noYes.code, 2);
      assert.match(noYes.stderr, /add --yes/);
      const kv2 = await openKv(kvPath);
      await acquireLease(kv2, topic, {
        holder: "agg-1",
        now: Date.now(),
        pid: 4242,
        hostname: "box",
        ttlMs: 60_000,
      });
      const reset = (to: string, json = false) =>
        offsets([
          "reset",
          "--to",
          to,
          "--yes",
          ...(json ? ["--json"] : []),
          "--topic",
          topic,
          "--kv",
          kvPath,
        ]);
      const held = await reset("earliest");
      assert.equal(held.code, 3, held.stderr);
      assert.match(held.stderr, /holds the lease \(agg-1, pid 4242 on box\)/);
      assert.deepEqual((await readCheckpoint(kv2, topic))!.pointer.offsets, { "0": 6, "1": 4 });
      const badTo = await offsets(["reset", "--to", "soon", "--yes", "--topic", topic]);
      assert.equal(badTo.code, 2);
      assert.match(badTo.stderr, /--to "soon"/);

      // Lease released: the reset goes through; the watermarks stay.
      assert.ok(await releaseLease(kv2, topic, "agg-1"));
      const outside = await reset("7");
      assert.equal(outside.code, 2, outside.stderr);
      assert.match(outside.stderr, /--to 7 is outside partition 1/);
      const ok = await reset("earliest", true);
      assert.equal(ok.code, 0, ok.stderr);
      const out = JSON.parse(ok.stdout);
      assert.deepEqual(out.after, { "0": 0, "1": 0 });
      assert.deepEqual(out.watermarks, cp.pointer.watermarks);
      assert.equal(out.identityReset, false);
      const after = (await readCheckpoint(kv2, topic))!.pointer;
      assert.deepEqual(after.offsets, { "0": 0, "1": 0 });
      assert.deepEqual(after.watermarks, cp.pointer.watermarks, "watermarks kept");
      assert.deepEqual(after.deltas, []);
      assert.equal(after.openWindows, 0, "window state dropped");
      assert.equal(after.batchId, cp.pointer.batchId);
      kv2.close();

      const latest = await reset("latest");
      assert.equal(latest.code, 0, latest.stderr);
      assert.match(latest.stdout, /watermarks kept/);
      const j2 = JSON.parse((await offsets(["--json", "--topic", topic, "--kv", kvPath])).stdout);
      assert.equal(j2.lag, 0);
    } finally {
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      for (const s of ["", "-shm", "-wal"]) await Deno.remove(kvPath + s).catch(() => {});
      for await (const e of Deno.readDir(".data/test")) {
        if (e.name.startsWith(kvPath.split("/").pop()!)) {
          await Deno.remove(`.data/test/${e.name}`).catch(() => {});
        }
      }
    }
  },
});
