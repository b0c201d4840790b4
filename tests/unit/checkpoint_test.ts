// Incremental checkpoints in a real Deno KV file: deltas, bases and compactions restore what a
// Map oracle holds; stale writers and compactions are fenced; cleanup is best-effort and by key;
// crashes (in-process and kill -9 of a writer process) leave the last flipped state intact; a v1
// pointer upgrades; and a 1M-window base writes and restores.
import assert from "node:assert/strict";
import { openKv } from "../../common/kv.ts";
import { faultyKv } from "../_helpers/faulty_kv.ts";
import {
  CheckpointConflictError,
  type CheckpointInput,
  cleanupOrphans,
  compact,
  deleteCheckpoint,
  readCheckpoint,
  readState,
  shouldCompact,
  type StoredCheckpoint,
  writeBase,
  writeCheckpoint,
  writeDelta,
} from "../../aggregate/checkpoint.ts";
import {
  checkpointKey,
  type CheckpointPointer,
  checkpointSummary,
  leaseKey,
  liveSegments,
  stateChunkKey,
  statePrefix,
} from "../../aggregate/kv_layout.ts";
import { stateKey, type StateRecord } from "../../aggregate/state_codec.ts";
import { tempKvPath } from "../_helpers/env.ts";
import {
  applyRecords,
  HOSTILE_STRINGS,
  randomRecords,
  type RecordSpace,
  shuffled,
  sortedState,
} from "../_helpers/state_records.ts";
import { mulberry32 as prng } from "../../common/prng.ts";
import { deltaFor, WRITER_OPTIONS, writerMeta } from "../_helpers/checkpoint_writer.ts";
import { serialQueue } from "../../common/serial.ts";

async function withKv(fn: (kv: Deno.Kv, path: string) => Promise<void>) {
  const path = await tempKvPath("ckpt");
  const kv = await openKv(path);
  try {
    await fn(kv, path);
  } finally {
    kv.close();
    for (const suffix of ["", "-wal", "-shm"]) await Deno.remove(path + suffix).catch(() => {});
  }
}

const SPACE: RecordSpace = {
  partitions: 3,
  // Hostile symbols short enough for the 1 KiB chunks some tests use.
  symbols: [
    ...HOSTILE_STRINGS.filter((s) => s.length <= 100),
    ...Array.from({ length: 80 }, (_, i) => `SYM${i}`),
  ],
  windows: [60_000, 300_000],
  starts: 6,
};

function meta(batchId: number, runId = "run-a"): Omit<CheckpointInput, "records"> {
  return {
    runId,
    batchId,
    committedAt: 1_700_000_000_000 + batchId,
    offsets: { "0": batchId * 3, "1": batchId },
    watermarks: { "0": batchId * 1000, "1": null },
    engine: { windows: [60_000, 300_000], watermarkDelayMs: 900_000 },
    identity: { partitions: 2, fingerprints: { "0": null, "1": null } },
    openWindows: batchId,
    finalizeDueAt: null,
  };
}

/** A random delta: updates, new records, deletes of existing and of unknown windows. */
function randomDelta(rnd: () => number, oracle: Map<string, StateRecord>, max = 300) {
  const recs = randomRecords(rnd, SPACE, Math.floor(rnd() * max), { deletes: true });
  const windows = [...oracle.values()].filter((r) => r.kind === "window");
  for (let i = 0; i < 15 && windows.length > 0; i++) {
    const w = windows[Math.floor(rnd() * windows.length)] as Extract<
      StateRecord,
      { kind: "window" }
    >;
    recs.push({
      kind: "window-deleted",
      partition: w.partition,
      windowMs: w.windowMs,
      symbol: w.symbol,
      start: w.start,
    });
  }
  return recs;
}

async function restored(kv: Deno.Kv, topic: string): Promise<StateRecord[]> {
  const s = await readState(kv, topic);
  return s === null ? [] : [...s.records];
}

/** Generations that have chunks in KV. */
async function chunkGenerations(kv: Deno.Kv, topic: string): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for await (const e of kv.list({ prefix: statePrefix(topic) })) {
    const g = e.key[3] as number;
    out.set(g, (out.get(g) ?? 0) + 1);
  }
  return out;
}

/** Every chunk in KV belongs to a live or garbage segment of the pointer, with the right count. */
async function assertChunkHygiene(kv: Deno.Kv, topic: string) {
  const cp = (await readCheckpoint(kv, topic))!;
  const known = new Map<number, number>();
  for (const s of [...liveSegments(cp.pointer), ...cp.pointer.garbage]) {
    known.set(s.generation, s.chunks);
  }
  for (const [g, n] of await chunkGenerations(kv, topic)) {
    assert.ok(known.has(g), `generation ${g} has ${n} chunks but is not in the pointer`);
    assert.equal(n, known.get(g), `generation ${g}: ${n} chunks, pointer says ${known.get(g)}`);
  }
  for (const s of liveSegments(cp.pointer)) {
    assert.equal((await chunkGenerations(kv, topic)).get(s.generation) ?? 0, s.chunks);
  }
}

Deno.test("checkpoint: random deltas, bases and compactions restore exactly the Map oracle", async () => {
  await withKv(async (kv) => {
    for (const seed of [1, 2]) {
      const topic = `t${seed}`;
      const rnd = prng(seed);
      const oracle = new Map<string, StateRecord>();
      let prev: StoredCheckpoint | null = null;
      let compactions = 0;
      let bases = 0;
      for (let b = 1; b <= 45; b++) {
        const delta = randomDelta(rnd, oracle);
        const r = await writeDelta(kv, topic, { ...meta(b), records: delta }, {
          previous: prev,
          chunkBytes: rnd() < 0.5 ? 1024 : undefined,
          opBytes: rnd() < 0.3 ? 4096 : undefined,
        });
        applyRecords(oracle, delta);
        prev = r.checkpoint;
        assert.equal(prev.pointer.batchId, b);
        assert.deepEqual(prev.pointer.offsets, meta(b).offsets);
        if (rnd() < 0.08) {
          // A whole base from an unsorted state (sorted in compact memory by writeBase).
          const base = await writeBase(kv, topic, {
            ...meta(b),
            records: shuffled(rnd, [...oracle.values()]),
          }, { previous: prev, chunkBytes: 2048 });
          prev = base.checkpoint;
          assert.equal(prev.pointer.deltas.length, 0);
          bases++;
        } else if (shouldCompact(prev.pointer, { maxDeltas: 6, minDeltaBytes: 30_000 })) {
          // `prev` is now stale: the next writeDelta must retry on the compacted pointer.
          const c = await compact(kv, topic, { chunkBytes: rnd() < 0.5 ? 1024 : undefined });
          assert.ok(c !== null);
          assert.equal(c.base.records, oracle.size);
          compactions++;
        }
        assert.deepEqual(await restored(kv, topic), sortedState(oracle), `seed ${seed} batch ${b}`);
        await assertChunkHygiene(kv, topic);
      }
      assert.ok(compactions >= 2, `${compactions} compactions`);
      assert.ok(bases >= 1 || seed === 2, `${bases} bases`);
    }
  });
});

Deno.test("checkpoint: a trigger's first checkpoint over an empty state is the base, later ones are deltas; each restores the oracle", async () => {
  await withKv(async (kv) => {
    for (const seed of [3, 4, 5]) {
      const topic = `first${seed}`;
      const rnd = prng(seed);
      const oracle = new Map<string, StateRecord>();
      let prev: StoredCheckpoint | null = null;
      if (seed !== 3) {
        // An empty delta over no state writes no segment: the pointer holds no state still.
        const empty = await writeCheckpoint(kv, topic, { ...meta(1), records: [] }, {
          previous: null,
        });
        assert.equal(empty.segment, null);
        assert.equal(empty.checkpoint.pointer.base, null);
        assert.deepEqual(empty.checkpoint.pointer.deltas, []);
        prev = empty.checkpoint;
      }
      // Unsorted, with repeated keys and deletes (of windows that were never there).
      const first = randomDelta(rnd, oracle, 2000);
      const r1 = await writeCheckpoint(kv, topic, { ...meta(2), records: first }, {
        previous: prev,
        chunkBytes: 2048,
      });
      applyRecords(oracle, first);
      const base = r1.checkpoint.pointer.base;
      assert.ok(base !== null, `seed ${seed}: the first delta over an empty state is the base`);
      assert.deepEqual(r1.checkpoint.pointer.deltas, []);
      assert.equal(base.records, oracle.size, "deletes and repeated keys are not in the base");
      assert.equal(shouldCompact(r1.checkpoint.pointer), false);
      assert.deepEqual(await restored(kv, topic), sortedState(oracle));
      assert.deepEqual(r1.checkpoint.pointer.offsets, meta(2).offsets);
      prev = r1.checkpoint;
      for (let b = 3; b <= 7; b++) {
        const delta = randomDelta(rnd, oracle);
        const r = await writeCheckpoint(kv, topic, { ...meta(b), records: delta }, {
          previous: prev,
        });
        applyRecords(oracle, delta);
        prev = r.checkpoint;
        assert.equal(prev.pointer.base?.generation, base.generation, `batch ${b}: same base`);
        assert.equal(prev.pointer.deltas.length, b - 2);
        assert.deepEqual(await restored(kv, topic), sortedState(oracle), `seed ${seed} batch ${b}`);
        await assertChunkHygiene(kv, topic);
      }
    }
    // A pointer with deltas and no base (as writeDelta alone, and earlier versions, leave a
    // topic's first checkpoints) holds state: the next write appends to it.
    const oracle = new Map<string, StateRecord>();
    const rnd = prng(6);
    const first = randomDelta(rnd, oracle, 500);
    let prev = (await writeDelta(kv, "old", { ...meta(1), records: first }, { previous: null }))
      .checkpoint;
    applyRecords(oracle, first);
    assert.equal(prev.pointer.base, null);
    const delta = randomDelta(rnd, oracle);
    prev = (await writeCheckpoint(kv, "old", { ...meta(2), records: delta }, { previous: prev }))
      .checkpoint;
    applyRecords(oracle, delta);
    assert.equal(prev.pointer.base, null);
    assert.equal(prev.pointer.deltas.length, 2);
    assert.deepEqual(await restored(kv, "old"), sortedState(oracle));
  });
});

Deno.test("checkpoint: a whole state (a backlog's cut) replaces the base and deltas; deltas follow it; an unsorted one is refused", async () => {
  await withKv(async (kv) => {
    const topic = "whole";
    const rnd = prng(11);
    const oracle = new Map<string, StateRecord>();
    let prev: StoredCheckpoint | null = null;
    for (let b = 1; b <= 4; b++) {
      const delta = randomDelta(rnd, oracle, 800);
      prev = (await writeCheckpoint(kv, topic, { ...meta(b), records: delta }, {
        previous: prev,
        chunkBytes: 2048,
      })).checkpoint;
      applyRecords(oracle, delta);
    }
    assert.ok(prev !== null && prev.pointer.deltas.length === 3, "a base and three deltas");
    const before = new Set(liveSegments(prev.pointer).map((s) => s.generation));
    // The state changes as a backlog's does (most windows), then is written whole.
    applyRecords(oracle, randomDelta(rnd, oracle, 800));
    const whole = sortedState(oracle);
    const r = await writeCheckpoint(kv, topic, { ...meta(5), records: whole }, {
      previous: prev,
      chunkBytes: 2048,
      wholeState: true,
    });
    const base = r.checkpoint.pointer.base!;
    assert.ok(!before.has(base.generation), "a new generation");
    assert.deepEqual(r.checkpoint.pointer.deltas, []);
    assert.equal(base.records, oracle.size);
    assert.equal(shouldCompact(r.checkpoint.pointer), false, "nothing left to compact");
    assert.deepEqual(r.checkpoint.pointer.offsets, meta(5).offsets);
    assert.deepEqual(await restored(kv, topic), sortedState(oracle));
    // The retired base and deltas are deleted by key after the flip.
    assert.deepEqual([...(await chunkGenerations(kv, topic)).keys()], [base.generation]);
    await assertChunkHygiene(kv, topic);
    // Deltas go on from the new base.
    prev = r.checkpoint;
    for (let b = 6; b <= 8; b++) {
      const delta = randomDelta(rnd, oracle);
      prev = (await writeCheckpoint(kv, topic, { ...meta(b), records: delta }, {
        previous: prev,
      })).checkpoint;
      applyRecords(oracle, delta);
      assert.equal(prev.pointer.base?.generation, base.generation, `batch ${b}: same base`);
      assert.deepEqual(await restored(kv, topic), sortedState(oracle), `batch ${b}`);
    }
    // A whole state out of order is a bug in the caller: refused before the flip, nothing lost.
    const unsorted = [...sortedState(oracle)].reverse();
    await assert.rejects(
      writeCheckpoint(kv, topic, { ...meta(9), records: unsorted }, {
        previous: prev,
        chunkBytes: 2048,
        wholeState: true,
      }),
      /order/i,
    );
    const after = (await readCheckpoint(kv, topic))!;
    assert.equal(after.pointer.batchId, 8);
    assert.deepEqual(await restored(kv, topic), sortedState(oracle));
    await assertChunkHygiene(kv, topic);
  });
});

Deno.test("checkpoint: a small delta is one atomic op; a large one is chunked under the op limits", async () => {
  await withKv(async (kv) => {
    const rnd = prng(4);
    const small = await writeDelta(
      kv,
      "t",
      { ...meta(1), records: randomRecords(rnd, SPACE, 300) },
      {
        previous: null,
      },
    );
    assert.equal(small.ops, 1);
    assert.ok(small.segment!.bytes > 10_000);
    // 20k records (~2 MB): several ops of <= 800 KiB, chunks <= 60 KiB.
    const many = randomRecords(prng(5), { ...SPACE, starts: 2000, hostile: false }, 20_000);
    const big = await writeDelta(kv, "t", { ...meta(2), records: many }, {
      previous: small.checkpoint,
    });
    assert.ok(big.ops >= 3, `${big.ops} ops`);
    for await (
      const e of kv.list<Uint8Array>({ prefix: statePrefix("t", big.segment!.generation) })
    ) {
      assert.ok(e.value.byteLength <= 60 * 1024);
    }
    const want = sortedState(
      applyRecords(applyRecords(new Map(), randomRecords(prng(4), SPACE, 300)), many),
    );
    assert.deepEqual(await restored(kv, "t"), want);
    // An empty delta moves the offsets and writes no segment.
    const empty = await writeDelta(kv, "t", { ...meta(3), records: [] }, {
      previous: big.checkpoint,
    });
    assert.equal(empty.segment, null);
    assert.equal(empty.checkpoint.pointer.deltas.length, 2);
    assert.deepEqual((await readCheckpoint(kv, "t"))!.pointer.offsets, meta(3).offsets);
  });
});

Deno.test("checkpoint: deltas written while a compaction runs are kept", async () => {
  await withKv(async (kv) => {
    const rnd = prng(8);
    const oracle = new Map<string, StateRecord>();
    const big = randomRecords(rnd, { ...SPACE, starts: 300, hostile: false }, 6000);
    let prev =
      (await writeDelta(kv, "t", { ...meta(1), records: big }, { previous: null })).checkpoint;
    applyRecords(oracle, big);
    for (let b = 2; b <= 4; b++) {
      const d = randomDelta(rnd, oracle);
      prev = (await writeDelta(kv, "t", { ...meta(b), records: d }, { previous: prev })).checkpoint;
      applyRecords(oracle, d);
    }
    // The aggregator runs its pointer steps and its writes in one queue (`serialize`), as here:
    // without it, back-to-back writes could starve the reservation until the loop ends.
    const serialize = serialQueue();
    // Small chunks and ops: the compaction takes many ops and yields between them.
    const running = compact(kv, "t", {
      chunkBytes: 1024,
      opBytes: 6 * 1024,
      yieldMs: 2,
      serialize,
    });
    let b = 5;
    let result: unknown = null;
    running.then((r) => (result = r), (e) => (result = e));
    while (result === null && b < 200) {
      const d = randomDelta(rnd, oracle, 60);
      const previous = prev;
      prev = (await serialize(() =>
        writeDelta(kv, "t", { ...meta(b), records: d }, { previous })
      )).checkpoint;
      applyRecords(oracle, d);
      b++;
    }
    const c = (await running)!;
    const now = (await readCheckpoint(kv, "t"))!;
    // Deltas 1..4 at least (the first loop delta may land before the reservation).
    assert.ok(c.merged >= 4, `${c.merged} merged`);
    assert.equal(c.merged + now.pointer.deltas.length, b - 1);
    assert.ok(b > 6, "deltas were written while compacting");
    assert.equal(now.pointer.base!.generation, c.base.generation);
    assert.equal(now.pointer.compacting, null);
    assert.ok(now.pointer.deltas.length >= 1, "the deltas appended meanwhile stay");
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    // One more delta after it: retries onto the compacted pointer, then state still exact.
    const d = randomDelta(rnd, oracle);
    await writeDelta(kv, "t", { ...meta(b), records: d }, { previous: prev });
    applyRecords(oracle, d);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    await assertChunkHygiene(kv, "t");
  });
});

Deno.test("checkpoint: a stale writer or compaction is refused and never damages the live state", async () => {
  await withKv(async (kv) => {
    const rnd = prng(9);
    const oracle = new Map<string, StateRecord>();
    const d1 = randomDelta(rnd, oracle);
    const p1 =
      (await writeDelta(kv, "t", { ...meta(1, "A"), records: d1 }, { previous: null })).checkpoint;
    applyRecords(oracle, d1);
    // B takes over from the same pointer and writes generation g.
    const d2 = randomDelta(rnd, oracle);
    const p2 =
      (await writeDelta(kv, "t", { ...meta(2, "B"), records: d2 }, { previous: p1 })).checkpoint;
    applyRecords(oracle, d2);
    // A, stale, would write the same generation g in several ops: fenced on the pointer.
    const stale = randomRecords(rnd, SPACE, 400);
    await assert.rejects(
      writeDelta(kv, "t", { ...meta(2, "A"), records: stale }, {
        previous: p1,
        chunkBytes: 1024,
        opBytes: 4096,
      }),
      CheckpointConflictError,
    );
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    assert.equal((await readCheckpoint(kv, "t"))!.versionstamp, p2.versionstamp);
    await assertChunkHygiene(kv, "t");
    // A guard on the lease: once the lease moves, the holder's writes are refused.
    const lease = await kv.set(leaseKey("t"), { holder: "B" });
    const guard = { key: leaseKey("t"), versionstamp: lease.versionstamp };
    const d3 = randomDelta(rnd, oracle);
    const p3 =
      (await writeDelta(kv, "t", { ...meta(3, "B"), records: d3 }, { previous: p2, guard }))
        .checkpoint;
    applyRecords(oracle, d3);
    await kv.set(leaseKey("t"), { holder: "C" });
    await assert.rejects(
      writeDelta(kv, "t", { ...meta(4, "B"), records: randomDelta(rnd, oracle) }, {
        previous: p3,
        guard,
      }),
      /lease lost/,
    );
    await assert.rejects(compact(kv, "t", { guard }), CheckpointConflictError);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    // A compaction whose lease is taken while it streams: refused, its chunks removed.
    const lease2 = await kv.set(leaseKey("t"), { holder: "D" });
    const g2 = { key: leaseKey("t"), versionstamp: lease2.versionstamp };
    const big = randomRecords(rnd, { ...SPACE, starts: 200, hostile: false }, 3000);
    assert.equal(
      (await readCheckpoint(kv, "t"))!.versionstamp,
      p3.versionstamp,
      "refused writes changed nothing",
    );
    await writeDelta(kv, "t", { ...meta(5, "D"), records: big }, { previous: p3, guard: g2 });
    applyRecords(oracle, big);
    const running = compact(kv, "t", { guard: g2, chunkBytes: 1024, opBytes: 4096, yieldMs: 1 });
    setTimeout(() => kv.set(leaseKey("t"), { holder: "E" }), 20);
    await assert.rejects(running, CheckpointConflictError);
    const after = (await readCheckpoint(kv, "t"))!;
    assert.notEqual(after.pointer.compacting, null, "the reservation stays for the next holder");
    assert.equal((await chunkGenerations(kv, "t")).get(after.pointer.compacting!) ?? 0, 0);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    // A compaction that loses the lease just before its flip: refused as well.
    const lease3 = await kv.set(leaseKey("t"), { holder: "F" });
    const g3 = { key: leaseKey("t"), versionstamp: lease3.versionstamp };
    await assert.rejects(
      compact(kv, "t", {
        guard: g3,
        beforeFlip: async () => void await kv.set(leaseKey("t"), { holder: "G" }),
      }),
      CheckpointConflictError,
    );
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    // The next holder's startup cleanup clears the reservation.
    const lease4 = await kv.set(leaseKey("t"), { holder: "H" });
    const cleaned = await cleanupOrphans(kv, "t", {
      guard: { key: leaseKey("t"), versionstamp: lease4.versionstamp },
    });
    assert.equal(cleaned.checkpoint!.pointer.compacting, null);
    await assertChunkHygiene(kv, "t");
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
  });
});

Deno.test("checkpoint: a guard function follows the holder's own lease renewals", async () => {
  await withKv(async (kv) => {
    const rnd = prng(21);
    const oracle = new Map<string, StateRecord>();
    let vs = (await kv.set(leaseKey("t"), { holder: "A", n: 0 })).versionstamp;
    const guard = () => ({ key: leaseKey("t"), versionstamp: vs });
    const big = randomRecords(rnd, { ...SPACE, starts: 200, hostile: false }, 3000);
    let prev = (await writeDelta(kv, "t", { ...meta(1), records: big }, { previous: null, guard }))
      .checkpoint;
    applyRecords(oracle, big);
    // Renew every 25 ms (the aggregator: every 10 s) while compacting and writing.
    let renewing = true;
    let renewals = 0;
    const renew = (async () => {
      while (renewing) {
        vs = (await kv.set(leaseKey("t"), { holder: "A", n: ++renewals })).versionstamp;
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    let c;
    try {
      const running = compact(kv, "t", { guard, chunkBytes: 1024, opBytes: 4096, yieldMs: 1 });
      let done = false;
      running.finally(() => (done = true)).catch(() => {});
      for (let b = 2; !done && b < 100; b++) {
        const d = randomDelta(rnd, oracle, 50);
        prev = (await writeDelta(kv, "t", { ...meta(b), records: d }, {
          previous: prev,
          guard,
          chunkBytes: 1024,
          opBytes: 4096,
        })).checkpoint;
        applyRecords(oracle, d);
      }
      c = await running;
    } finally {
      renewing = false;
      await renew;
    }
    assert.ok(c !== null && c.merged >= 1);
    assert.ok(renewals > 3, `${renewals} renewals`);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    await assertChunkHygiene(kv, "t");
  });
});

Deno.test("checkpoint: cleanup after the flip is best-effort, by key, and retried by the next write", async () => {
  await withKv(async (raw) => {
    const failing = { on: false };
    const { kv, state } = faultyKv(
      raw,
      (c) => failing.on && c.deletes ? new Error("Injected KV delete failure") : null,
    );
    const rnd = prng(10);
    const oracle = new Map<string, StateRecord>();
    let prev: StoredCheckpoint | null = null;
    for (let b = 1; b <= 4; b++) {
      const d = randomDelta(rnd, oracle);
      prev = (await writeDelta(kv, "t", { ...meta(b), records: d }, { previous: prev })).checkpoint;
      applyRecords(oracle, d);
    }
    failing.on = true;
    const c = (await compact(kv, "t"))!; // must not throw
    assert.match(String(c.cleanup.error), /Injected KV delete failure/);
    assert.equal(c.cleanup.failed.length, 4);
    const retired = c.checkpoint.pointer.garbage.map((s) => s.generation).sort();
    assert.deepEqual(retired, prev!.pointer.deltas.map((s) => s.generation).sort());
    const gens = await chunkGenerations(raw, "t");
    for (const g of retired) assert.ok(gens.has(g), `garbage generation ${g} still there`);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    // A failing cleanup in a delta write does not throw either.
    const d5 = randomDelta(rnd, oracle);
    const w5 = await writeDelta(kv, "t", { ...meta(5), records: d5 }, { previous: prev });
    applyRecords(oracle, d5);
    assert.ok(w5.cleanup.error !== null);
    // Deletes work again: the next write deletes the garbage by key, without listing anything.
    failing.on = false;
    state.lists = 0;
    const d6 = randomDelta(rnd, oracle);
    const w6 = await writeDelta(kv, "t", { ...meta(6), records: d6 }, { previous: w5.checkpoint });
    applyRecords(oracle, d6);
    assert.equal(state.lists, 0, "deletion by key: no list()");
    assert.deepEqual(w6.cleanup.deleted.map((s) => s.generation).sort(), retired);
    const gens2 = await chunkGenerations(raw, "t");
    for (const g of retired) assert.ok(!gens2.has(g), `garbage generation ${g} deleted`);
    const w7 = await writeDelta(kv, "t", { ...meta(7), records: [] }, { previous: w6.checkpoint });
    assert.deepEqual(w7.checkpoint.pointer.garbage, []);
    assert.deepEqual((await readCheckpoint(raw, "t"))!.pointer.garbage, []);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    await assertChunkHygiene(raw, "t");
  });
});

Deno.test("checkpoint: a crash before a flip leaves orphans that the startup cleanup removes", async () => {
  await withKv(async (kv) => {
    const rnd = prng(12);
    const oracle = new Map<string, StateRecord>();
    const d1 = randomDelta(rnd, oracle);
    const p1 =
      (await writeDelta(kv, "t", { ...meta(1), records: d1 }, { previous: null })).checkpoint;
    applyRecords(oracle, d1);
    // A multi-op delta fails between its chunk ops and the flip: it removes what it wrote.
    await assert.rejects(
      writeDelta(kv, "t", { ...meta(2), records: randomRecords(rnd, SPACE, 500) }, {
        previous: p1,
        chunkBytes: 1024,
        opBytes: 4096,
        beforeFlip: () => {
          throw new Error("crash");
        },
      }),
      /crash/,
    );
    assert.equal((await chunkGenerations(kv, "t")).get(p1.pointer.nextGeneration), undefined);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    // A process that died there leaves its chunks at generation >= nextGeneration: the next
    // one's startup cleanup removes them (before it writes that generation itself).
    for (let i = 0; i < 6; i++) {
      await kv.set(stateChunkKey("t", p1.pointer.nextGeneration, i), new Uint8Array(100));
    }
    await kv.set(stateChunkKey("t", p1.pointer.nextGeneration + 3, 0), new Uint8Array(10));
    const c1 = await cleanupOrphans(kv, "t");
    assert.equal(c1.removedChunks, 7);
    await assertChunkHygiene(kv, "t");
    // A compaction dies before its flip: its generation is reserved in the pointer.
    const d2 = randomDelta(rnd, oracle);
    await writeDelta(kv, "t", { ...meta(2), records: d2 }, { previous: c1.checkpoint });
    applyRecords(oracle, d2);
    await assert.rejects(
      compact(kv, "t", {
        chunkBytes: 1024,
        opBytes: 4096,
        beforeFlip: () => {
          throw new Error("crash");
        },
      }),
      /crash/,
    );
    const mid = (await readCheckpoint(kv, "t"))!;
    assert.notEqual(mid.pointer.compacting, null);
    const reserved = (await chunkGenerations(kv, "t")).get(mid.pointer.compacting!) ?? 0;
    assert.ok(reserved > 0);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    const c = await cleanupOrphans(kv, "t");
    assert.equal(c.removedChunks, reserved);
    assert.equal(c.checkpoint!.pointer.compacting, null);
    await assertChunkHygiene(kv, "t");
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    // And a writer continues from there; a compaction now works.
    const d3 = randomDelta(rnd, oracle);
    await writeDelta(kv, "t", { ...meta(3), records: d3 }, { previous: c.checkpoint });
    applyRecords(oracle, d3);
    assert.ok(await compact(kv, "t"));
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    await assertChunkHygiene(kv, "t");
    // --from-beginning: everything goes.
    const n = await deleteCheckpoint(kv, "t");
    assert.ok(n > 0);
    assert.equal(await readCheckpoint(kv, "t"), null);
    assert.equal((await chunkGenerations(kv, "t")).size, 0);
  });
});

/** A v1 engine snapshot in the documented format (README "State and snapshots"). */
function v1Snapshot(rnd: () => number, windows: number) {
  const partitions: Record<string, unknown> = {};
  const expected: StateRecord[] = [];
  for (const p of [0, 1]) {
    const tuples: unknown[] = [];
    for (let i = 0; i < windows; i++) {
      const symbol = `V${String(i).padStart(5, "0")}${i % 5 === 0 ? "\ud800" : ""}`;
      const start = 1_700_000_100_000 + (i % 3) * 300_000;
      const price = Math.round(rnd() * 1e5) / 100;
      const t = [
        symbol,
        start,
        3,
        price * 3 + 0.1,
        1e-13,
        price,
        price + 1,
        price - 1,
        price + 0.5,
        start + 1,
        start + 299_000,
        1000 + i,
        0,
      ];
      tuples.push(t);
      expected.push({
        kind: "window",
        partition: p,
        windowMs: 300_000,
        symbol,
        start,
        count: 3,
        sum: t[3] as number,
        comp: 1e-13,
        open: price,
        high: price + 1,
        low: price - 1,
        close: price + 0.5,
        first: start + 1,
        last: start + 299_000,
        lastOffset: 1000 + i,
        volume: 0,
        volumeComp: 0,
        pv: 0,
        pvComp: 0,
      });
    }
    partitions[String(p)] = {
      maxEventTime: 1_700_001_000_000,
      lastOffset: 5000 + p,
      windows: tuples,
      late: [],
    };
    expected.push({
      kind: "partition",
      partition: p,
      maxEventTime: 1_700_001_000_000,
      lastOffset: 5000 + p,
      floor: null,
      replayBelow: 0,
      lastArrivalMs: null,
    });
  }
  return {
    snapshot: { version: 1, windowMs: 300_000, watermarkDelayMs: 600_000, partitions },
    expected,
  };
}

Deno.test("checkpoint: a v1 pointer is read, converted, extended by deltas and compacted to v2", async () => {
  await withKv(async (kv) => {
    const rnd = prng(13);
    const { snapshot, expected } = v1Snapshot(rnd, 800);
    const bytes = new TextEncoder().encode(JSON.stringify(snapshot));
    const chunks = Math.ceil(bytes.byteLength / (60 * 1024));
    assert.ok(chunks >= 2);
    for (let i = 0; i < chunks; i++) {
      await kv.set(stateChunkKey("t", 7, i), bytes.slice(i * 60 * 1024, (i + 1) * 60 * 1024));
    }
    await kv.set(checkpointKey("t"), {
      generation: 7,
      runId: "v1-run",
      batchId: 41,
      committedAt: 1,
      offsets: { "0": 5001, "1": 5002 },
      watermarks: { "0": 1_700_000_400_000, "1": null },
      chunks,
      stateBytes: bytes.byteLength,
    });
    const cp = (await readCheckpoint(kv, "t"))!;
    assert.equal(cp.storedVersion, 1);
    assert.deepEqual(cp.pointer.engine, { windows: [300_000], watermarkDelayMs: 600_000 });
    assert.equal(cp.pointer.base!.format, "json-v1");
    assert.equal(cp.pointer.batchId, 41);
    assert.ok(shouldCompact(cp.pointer));
    const oracle = applyRecords(new Map(), expected);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    // The first v2 write keeps the v1 snapshot as its base.
    const d = randomRecords(
      rnd,
      { partitions: 2, symbols: ["V00000\ud800", "V00001", "NEW"], windows: [300_000], starts: 3 },
      200,
      { deletes: true },
    );
    const w = await writeDelta(kv, "t", { ...meta(42), records: d }, { previous: cp });
    applyRecords(oracle, d);
    assert.equal(w.checkpoint.storedVersion, 2);
    assert.equal((await kv.get<{ version: number }>(checkpointKey("t"))).value!.version, 2);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    assert.equal(checkpointSummary((await kv.get(checkpointKey("t"))).value as never).version, 2);
    // Compaction rewrites it in binary and deletes the v1 chunks by key.
    const c = (await compact(kv, "t"))!;
    assert.equal(c.base.format, undefined);
    assert.equal((await chunkGenerations(kv, "t")).get(7), undefined);
    assert.deepEqual(await restored(kv, "t"), sortedState(oracle));
    await assertChunkHygiene(kv, "t");
  });
});

Deno.test({
  name: "checkpoint: kill -9 of a writer process between delta writes keeps the last flipped state",
  sanitizeResources: false,
  async fn() {
    await withKv(async (kv, path) => {
      const topic = "killed";
      const rnd = prng(99);
      let lastBatch = 0;
      let compactions = 0;
      const script = new URL("../_helpers/checkpoint_writer.ts", import.meta.url).pathname;
      for (let round = 0; round < 6; round++) {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--no-prompt", script, path, topic],
          stdout: "piped",
          // Inherited: reading a second pipe next to stdout stalled the test's event loop.
          stderr: "inherit",
        }).spawn();
        const lines: string[] = [];
        const reader = (async () => {
          const dec = new TextDecoderStream();
          let buf = "";
          for await (const t of child.stdout.pipeThrough(dec)) {
            buf += t;
            const parts = buf.split("\n");
            buf = parts.pop()!;
            lines.push(...parts);
          }
        })();
        // Wait for the first flip of this run, then a random moment (mid-delta, mid-compaction).
        const t0 = Date.now();
        while (!lines.some((l) => l.startsWith("flipped ")) && Date.now() - t0 < 30_000) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.ok(
          lines.some((l) => l.startsWith("flipped ")),
          "writer produced no flip (its stderr is above)",
        );
        await new Promise((r) => setTimeout(r, 100 + Math.floor(rnd() * 1500)));
        child.kill("SIGKILL");
        const status = await child.status;
        await reader;
        assert.equal(status.signal, "SIGKILL", "writer exited by itself (its stderr is above)");
        const flips = lines.filter((l) => l.startsWith("flipped "));
        compactions += lines.filter((l) => l.startsWith("compacted ")).length;
        const printed = Math.max(...flips.map((l) => Number(l.split(" ")[1])));
        const cp = (await readCheckpoint(kv, topic))!;
        const b = cp.pointer.batchId;
        assert.ok(b >= printed && b <= printed + 1, `pointer batch ${b}, last printed ${printed}`);
        assert.ok(b > lastBatch, `round ${round}: the new writer continued (${lastBatch} -> ${b})`);
        assert.deepEqual(cp.pointer.offsets, writerMeta(b).offsets);
        const oracle = new Map<string, StateRecord>();
        for (let i = 1; i <= b; i++) applyRecords(oracle, deltaFor(i));
        assert.deepEqual(
          await restored(kv, topic),
          sortedState(oracle),
          `round ${round} batch ${b}`,
        );
        console.log(
          `round ${round}: killed after batch ${b} (${cp.pointer.deltas.length} deltas, compacting ${cp.pointer.compacting})`,
        );
        lastBatch = b;
      }
      assert.ok(compactions >= 2, `${compactions} compactions completed`);
      // The last writer's leftovers are cleaned by the next startup.
      await cleanupOrphans(kv, topic);
      await assertChunkHygiene(kv, topic);
      void WRITER_OPTIONS;
    });
  },
});

Deno.test("checkpoint: a 1M-window base writes and restores (time and peak RSS printed)", async () => {
  await withKv(async (kv) => {
    const N_SYMBOLS = 200_000;
    const PER = 5;
    function* state(): Generator<StateRecord> {
      for (let p = 0; p < 2; p++) {
        yield {
          kind: "partition",
          partition: p,
          maxEventTime: 1.7e12,
          lastOffset: 1e6,
          floor: null,
          replayBelow: 0,
          lastArrivalMs: null,
        };
        for (let s = p; s < N_SYMBOLS; s += 2) {
          const symbol = `S${String(s).padStart(6, "0")}`;
          for (let k = 0; k < PER; k++) {
            const start = 1_700_000_000_000 + k * 300_000;
            yield {
              kind: "window",
              partition: p,
              windowMs: 300_000,
              symbol,
              start,
              count: 1 + (s % 50),
              sum: s + 0.25,
              comp: 0,
              open: 100.5,
              high: 101.25,
              low: 99.75,
              close: 100 + k / 8,
              first: start + 1,
              last: start + 299_000,
              lastOffset: s * PER + k,
              volume: s * 10,
              volumeComp: 0,
              pv: s * 1005.5,
              pvComp: 0,
            };
          }
        }
      }
    }
    const rss = () => Math.round(Deno.memoryUsage().rss / 1e6);
    const hwm = async () => {
      const m = /VmHWM:\s+(\d+) kB/.exec(await Deno.readTextFile("/proc/self/status"));
      return m ? Math.round(Number(m[1]) / 1000) : NaN;
    };
    const rss0 = rss();
    let t = performance.now();
    const w = await writeBase(kv, "big", { ...meta(1), records: state() }, {
      previous: null,
      sorted: true,
    });
    const writeMs = performance.now() - t;
    assert.equal(w.segment!.records, N_SYMBOLS * PER + 2);
    const rss1 = rss();
    t = performance.now();
    const read = (await readState(kv, "big"))!;
    const readMs = performance.now() - t;
    let n = 0;
    const expect = state();
    for (const r of read.records) {
      const e = expect.next().value as StateRecord;
      if (n % 997 === 0) assert.deepEqual(r, e);
      else assert.equal(stateKey(r), stateKey(e));
      n++;
    }
    const restoreMs = performance.now() - t;
    assert.equal(n, N_SYMBOLS * PER + 2);
    console.log(
      `1M windows: base ${(w.segment!.bytes / 1e6).toFixed(1)} MB in ${
        w.segment!.chunks
      } chunks, ` +
        `${w.ops} ops; write ${(writeMs / 1000).toFixed(1)} s; read ${
          (readMs / 1000).toFixed(1)
        } s, ` +
        `read + decode + merge ${
          (restoreMs / 1000).toFixed(1)
        } s; RSS ${rss0} -> ${rss1} -> ${rss()} MB, ` +
        `peak ${await hwm()} MB (whole test process)`,
    );
  });
});

Deno.test("checkpoint: compaction is asked for at twice the base's bytes in deltas, past a floor, or past the delta count", () => {
  const seg = (bytes: number, generation = 1) => ({ generation, chunks: 1, bytes, records: 1 });
  const pointer = (base: number | null, deltas: number[]) =>
    ({
      base: base === null ? null : seg(base),
      deltas: deltas.map((b, i) => seg(b, i + 2)),
    }) as unknown as CheckpointPointer;
  const MiB = 1024 * 1024;
  assert.equal(shouldCompact(pointer(null, [])), false);
  assert.equal(shouldCompact(pointer(null, [MiB - 1])), false, "below the 1 MiB floor");
  assert.equal(shouldCompact(pointer(null, [MiB])), true);
  assert.equal(shouldCompact(pointer(4 * MiB, [4 * MiB, 4 * MiB - 1])), false, "under 2x base");
  assert.equal(shouldCompact(pointer(4 * MiB, [4 * MiB, 4 * MiB])), true, "2x base");
  assert.equal(shouldCompact(pointer(100, [MiB / 2, MiB / 2 - 1])), false, "floor over 2x base");
  assert.equal(shouldCompact(pointer(10 * MiB, Array(64).fill(1))), false, "64 deltas");
  assert.equal(shouldCompact(pointer(10 * MiB, Array(65).fill(1))), true, "65 deltas");
  assert.equal(shouldCompact(pointer(4 * MiB, [5 * MiB]), { ratio: 1 }), true, "ratio 1");
  assert.equal(shouldCompact(pointer(0, [10]), { minDeltaBytes: 10 }), true, "floor option");
  assert.equal(shouldCompact(pointer(MiB, [10]), { maxDeltas: 0 }), true, "count option");
  const upgrade = { base: { ...seg(10), format: "json-v1" }, deltas: [] };
  assert.equal(shouldCompact(upgrade as unknown as CheckpointPointer), true, "json-v1 base");
});
