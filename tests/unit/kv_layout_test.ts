// The one KV layout: one lease-liveness rule everywhere, the same keys from every module that
// re-exports them, and a checkpoint summary for v1 and v2 pointers.
import assert from "node:assert/strict";
import * as layout from "../../aggregate/kv_layout.ts";
import * as lease from "../../aggregate/lease.ts";
import * as checkpoint from "../../aggregate/checkpoint.ts";
import * as progress from "../../aggregate/progress.ts";
import * as sensorKv from "../../sensor/_kv.ts";
import { leaseIsLive } from "../../sensor/sensor.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

Deno.test("kv layout: one lease-liveness rule (expiresAt > now) for aggregate and sensor", () => {
  const l = { holder: "h", pid: 1, hostname: "x", acquiredAt: 0, expiresAt: 1000 };
  assert.equal(layout.isLeaseLive(l, 999), true);
  assert.equal(layout.isLeaseLive(l, 1000), false, "free at the instant it expires");
  assert.equal(layout.isLeaseLive(l, 1001), false);
  const rnd = prng(1);
  for (let i = 0; i < 1000; i++) {
    const now = Math.floor(rnd() * 2000);
    const e = { ...l, expiresAt: Math.floor(rnd() * 2000) };
    const live = layout.isLeaseLive(e, now);
    assert.equal(lease.isLeaseLive(e, now), live);
    assert.equal(leaseIsLive(e, now), live);
  }
  assert.equal(leaseIsLive(null, 0), false);
});

Deno.test("kv layout: every module spells the keys the same way", () => {
  for (const topic of ["ticks", "a/b", "\u00e9"]) {
    assert.deepEqual(layout.leaseKey(topic), ["tickpipe", topic, "lease"]);
    assert.deepEqual(layout.checkpointKey(topic), ["tickpipe", topic, "checkpoint"]);
    assert.deepEqual(layout.progressKey(topic), ["tickpipe", topic, "progress"]);
    assert.deepEqual(layout.identityKey(topic), ["tickpipe", topic, "identity"]);
    assert.deepEqual(layout.statePrefix(topic, 3), ["tickpipe", topic, "state", 3]);
    assert.deepEqual(layout.stateChunkKey(topic, 3, 7), ["tickpipe", topic, "state", 3, 7]);
    assert.deepEqual(layout.launchesKey(topic), ["tickpipe", topic, "sensor", "launches"]);
    assert.deepEqual(layout.crashKey(topic), ["tickpipe", topic, "sensor", "crash"]);
    assert.deepEqual(lease.leaseKey(topic), layout.leaseKey(topic));
    assert.deepEqual(sensorKv.leaseKey(topic), layout.leaseKey(topic));
    assert.deepEqual(checkpoint.checkpointKey(topic), layout.checkpointKey(topic));
    assert.deepEqual(sensorKv.checkpointKey(topic), layout.checkpointKey(topic));
    assert.deepEqual(checkpoint.statePrefix(topic), layout.statePrefix(topic));
    assert.deepEqual(progress.progressKey(topic), layout.progressKey(topic));
    assert.deepEqual(sensorKv.progressKey(topic), layout.progressKey(topic));
    assert.deepEqual(sensorKv.launchesKey(topic), layout.launchesKey(topic));
    assert.deepEqual(sensorKv.crashKey(topic), layout.crashKey(topic));
  }
  assert.equal(lease.KV_PREFIX, layout.KV_PREFIX);
  assert.equal(sensorKv.KV_PREFIX, layout.KV_PREFIX);
});

Deno.test("kv layout: checkpoint summary of a v1 and of a v2 pointer", () => {
  const v1: layout.LegacyCheckpointPointer = {
    generation: 4,
    runId: "r",
    batchId: 9,
    committedAt: 5,
    offsets: { "0": 1 },
    watermarks: { "0": null },
    chunks: 2,
    stateBytes: 70_000,
  };
  assert.deepEqual(layout.checkpointSummary(v1), {
    version: 1,
    generation: 4,
    runId: "r",
    batchId: 9,
    committedAt: 5,
    chunks: 2,
    stateBytes: 70_000,
    deltas: 0,
  });
  const v2 = checkpoint.convertLegacyPointer(v1, { windows: [300_000], watermarkDelayMs: 1 });
  v2.deltas = [{ generation: 5, chunks: 1, bytes: 100, records: 3 }];
  v2.nextGeneration = 6;
  v2.garbage = [{ generation: 2, chunks: 9, bytes: 9, records: 9 }];
  const s = layout.checkpointSummary(v2);
  assert.equal(s.version, 2);
  assert.equal(s.generation, 5);
  assert.equal(s.chunks, 3);
  assert.equal(s.stateBytes, 70_100);
  assert.equal(s.deltas, 1);
  assert.deepEqual(layout.liveSegments(v2).map((x) => x.generation), [4, 5]);
});
