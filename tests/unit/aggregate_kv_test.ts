// The aggregator's lease in KV (acquire, refuse, expire, renew, release, racers) and its record
// parser. Checkpoints are tested in checkpoint_test.ts and state_codec_test.ts.
import assert from "node:assert/strict";
import { openKv } from "../../common/kv.ts";
import {
  acquireLease,
  isLeaseLive,
  LeaseHeldError,
  LeaseLostError,
  readLease,
  releaseLease,
  renewLease,
} from "../../aggregate/lease.ts";
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

Deno.test("aggregate kv: a lease has no KV expiry: expired, it stays stored (not live) across a reopen, where Deno's collector would delete it", async () => {
  const path = await tempKvPath("agg-lease-expiry");
  try {
    const kv = await openKv(path);
    await acquireLease(kv, "t", { holder: "A", now: Date.now(), ttlMs: 1 });
    kv.close();
    await new Promise((r) => setTimeout(r, 50));
    // Opening runs Deno's expiry collector at once: a key set with expireIn would be gone (and
    // on a full disk that delete panics the process that opened the KV).
    const again = await openKv(path);
    try {
      const held = await readLease(again, "t");
      assert.ok(held !== null, "the expired lease is still stored");
      assert.equal(held.lease.holder, "A");
      assert.equal(isLeaseLive(held.lease, Date.now()), false, "and it is not live");
      // Its holder, back after the stall, renews it (nobody took it over).
      const r = await renewLease(again, "t", { holder: "A", now: Date.now(), ttlMs: 30_000 });
      assert.equal(isLeaseLive(r.lease, Date.now()), true);
    } finally {
      again.close();
    }
  } finally {
    for (const suffix of ["", "-wal", "-shm"]) await Deno.remove(path + suffix).catch(() => {});
  }
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
