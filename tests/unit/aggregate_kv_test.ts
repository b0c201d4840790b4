// The aggregator's KV layout: chunked checkpoints (round trip over 64 KiB and 800 KiB, atomic
// pointer flip, stale generation cleanup) and the lease (acquire, refuse, expire, renew, release,
// racers).
import assert from "node:assert/strict";
import { openKv } from "../../common/kv.ts";
import {
  acquireLease,
  CheckpointConflictError,
  checkpointKey,
  deleteStaleGenerations,
  LeaseHeldError,
  leaseKey,
  LeaseLostError,
  parseTickRecord,
  readCheckpoint,
  readCheckpointState,
  readLease,
  releaseLease,
  renewLease,
  statePrefix,
  writeCheckpoint,
} from "../../aggregate/mod.ts";
import { tempKvPath } from "../_helpers/env.ts";

async function withKv(fn: (kv: Deno.Kv) => Promise<void>) {
  const path = await tempKvPath("agg-unit");
  const kv = await openKv(path);
  try {
    await fn(kv);
  } finally {
    kv.close();
    for (const suffix of ["", "-wal", "-shm"]) await Deno.remove(path + suffix).catch(() => {});
  }
}

function bytesOf(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

async function countChunks(kv: Deno.Kv, topic: string): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for await (const e of kv.list({ prefix: statePrefix(topic) })) {
    const g = e.key[3] as number;
    out.set(g, (out.get(g) ?? 0) + 1);
  }
  return out;
}

const base = { runId: "r1", committedAt: 1, offsets: { "0": 5 }, watermarks: { "0": 100 } };

Deno.test("aggregate kv: checkpoint state > 64 KiB and > 800 KiB round-trips across chunks", async () => {
  await withKv(async (kv) => {
    const topic = "t";
    let prev = null;
    for (const [i, size] of [100, 70_000, 900_000, 2_500_000, 10].entries()) {
      const state = bytesOf(size, i + 1);
      prev = await writeCheckpoint(kv, topic, { ...base, batchId: i, state }, { previous: prev });
      const back = await readCheckpointState(kv, topic);
      assert.ok(back);
      assert.equal(back.checkpoint.pointer.generation, i + 1);
      assert.equal(back.checkpoint.pointer.stateBytes, size);
      assert.equal(back.checkpoint.pointer.chunks, Math.ceil(size / (60 * 1024)));
      assert.deepEqual(back.state, state);
      // Only the current generation's chunks remain.
      assert.deepEqual([...(await countChunks(kv, topic)).keys()], [i + 1]);
    }
  });
});

Deno.test("aggregate kv: pointer flip is atomic and checks the previous versionstamp", async () => {
  await withKv(async (kv) => {
    const topic = "t";
    const a = await writeCheckpoint(kv, topic, { ...base, batchId: 0, state: bytesOf(10, 1) }, {
      previous: null,
    });
    // A crash before the flip: chunks of generation 2 written, pointer untouched.
    await assert.rejects(
      writeCheckpoint(kv, topic, { ...base, batchId: 1, state: bytesOf(200_000, 2) }, {
        previous: a,
        beforeFlip: () => {
          throw new Error("crash");
        },
      }),
      /crash/,
    );
    const still = await readCheckpointState(kv, topic);
    assert.equal(still!.checkpoint.pointer.generation, 1);
    assert.deepEqual(still!.state, bytesOf(10, 1));
    assert.deepEqual((await countChunks(kv, topic)).get(2), 4, "garbage of the unflipped gen");
    // Next start: stale chunks cleaned up.
    assert.equal(await deleteStaleGenerations(kv, topic, 1), 4);
    assert.deepEqual([...(await countChunks(kv, topic)).keys()], [1]);
    // A writer holding an outdated pointer loses.
    const b = await writeCheckpoint(kv, topic, { ...base, batchId: 2, state: bytesOf(5, 3) }, {
      previous: a,
    });
    await assert.rejects(
      writeCheckpoint(kv, topic, { ...base, batchId: 3, state: bytesOf(5, 4) }, { previous: a }),
      CheckpointConflictError,
    );
    assert.equal((await readCheckpoint(kv, topic))!.versionstamp, b.versionstamp);
    // A guard on the lease fences a writer that lost it.
    await kv.set(leaseKey(topic), { holder: "x" });
    await assert.rejects(
      writeCheckpoint(kv, topic, { ...base, batchId: 4, state: bytesOf(5, 5) }, {
        previous: b,
        guard: { key: leaseKey(topic), versionstamp: "00000000000000000000" },
      }),
      CheckpointConflictError,
    );
    const final = await readCheckpointState(kv, topic);
    assert.deepEqual(final!.state, bytesOf(5, 3));
    assert.ok((await kv.get(checkpointKey(topic))).value);
  });
});

Deno.test("aggregate kv: lease acquire, refuse, expire, renew, release", async () => {
  await withKv(async (kv) => {
    const topic = "t";
    const a = await acquireLease(kv, topic, { holder: "A", now: 1000, ttlMs: 30_000, pid: 1 });
    assert.equal(a.lease.expiresAt, 31_000);
    await assert.rejects(
      acquireLease(kv, topic, { holder: "B", now: 2000, ttlMs: 30_000 }),
      (e: unknown) => e instanceof LeaseHeldError && /leased by A/.test(e.message),
    );
    // Renew extends.
    const r = await renewLease(kv, topic, { holder: "A", now: 20_000, ttlMs: 30_000 });
    assert.equal(r.lease.expiresAt, 50_000);
    assert.equal(r.lease.acquiredAt, 1000);
    await assert.rejects(
      acquireLease(kv, topic, { holder: "B", now: 40_000, ttlMs: 30_000 }),
      LeaseHeldError,
    );
    // Expired: B takes it; A's renewal then fails.
    const b = await acquireLease(kv, topic, { holder: "B", now: 50_001, ttlMs: 30_000 });
    assert.equal(b.lease.holder, "B");
    await assert.rejects(
      renewLease(kv, topic, { holder: "A", now: 50_002, ttlMs: 30_000 }),
      LeaseLostError,
    );
    // Release only by the holder.
    assert.equal(await releaseLease(kv, topic, "A"), false);
    assert.equal((await readLease(kv, topic))!.lease.holder, "B");
    assert.equal(await releaseLease(kv, topic, "B"), true);
    assert.equal(await readLease(kv, topic), null);
    const c = await acquireLease(kv, topic, { holder: "C", now: 50_003, ttlMs: 30_000 });
    assert.equal(c.lease.holder, "C");
  });
});

Deno.test("aggregate kv: of many racers for a free lease exactly one wins", async () => {
  await withKv(async (kv) => {
    for (let round = 0; round < 5; round++) {
      const topic = `race-${round}`;
      const results = await Promise.allSettled(
        Array.from(
          { length: 8 },
          (_, i) => acquireLease(kv, topic, { holder: `H${i}`, now: 1000, ttlMs: 30_000 }),
        ),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, `round ${round}`);
      for (const r of results) {
        if (r.status === "rejected") assert.ok(r.reason instanceof LeaseHeldError);
      }
      const holder = (won[0] as PromiseFulfilledResult<{ lease: { holder: string } }>).value
        .lease.holder;
      assert.equal((await readLease(kv, topic))!.lease.holder, holder);
    }
  });
});

Deno.test("aggregate: parseTickRecord maps valid ticks and rejects bad records", () => {
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  const ok = parseTickRecord(enc({ id: "AAPL", price: 1.5, time: 1700000000123, x: 1 }), {
    partition: 2,
    offset: 7,
  });
  assert.deepEqual(ok, {
    ok: true,
    tick: { symbol: "AAPL", eventTime: 1700000000123, price: 1.5, partition: 2, offset: 7 },
  });
  for (
    const bad of [
      null,
      new TextEncoder().encode("{nope"),
      enc(42),
      enc({ id: "", price: 1, time: 1 }),
      enc({ id: "A", price: "1", time: 1 }),
      enc({ id: "A", price: 1, time: 1.5 }),
      enc({ id: "A", price: Infinity, time: 1 }),
    ]
  ) {
    assert.equal(parseTickRecord(bad, { partition: 0, offset: 0 }).ok, false);
  }
});
