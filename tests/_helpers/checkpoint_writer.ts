/**
 * A checkpoint writer for the kill -9 test (tests/unit/checkpoint_test.ts): resumes from the
 * pointer in KV (after the startup cleanup), then writes deterministic deltas in a loop, each in
 * several atomic ops, with compactions running alongside, and prints `flipped <batchId>` after
 * every flip and `compacted <generation>` after every compaction. The test kills it at random moments and checks the state against the deltas.
 *
 * Usage: deno run -A tests/_helpers/checkpoint_writer.ts <kvPath> <topic>
 * @module
 */

import { openKv } from "../../common/kv.ts";
import {
  cleanupOrphans,
  compact,
  type CompactResult,
  readCheckpoint,
  shouldCompact,
  writeDelta,
} from "../../aggregate/checkpoint.ts";
import type { StateRecord } from "../../aggregate/state_codec.ts";
import { randomRecords, type RecordSpace } from "./state_records.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

/** The record space of the writer's deltas (fixed, so the test can replay them). */
export const WRITER_SPACE: RecordSpace = {
  partitions: 3,
  symbols: Array.from({ length: 150 }, (_, i) => `W${i}\ud800${i % 7}`),
  windows: [60_000, 300_000],
  starts: 8,
};

/** The delta of batch `batchId` (deterministic). */
export function deltaFor(batchId: number): StateRecord[] {
  const rnd = prng(batchId * 7919 + 17);
  return randomRecords(rnd, WRITER_SPACE, 200 + Math.floor(rnd() * 400), { deletes: true });
}

/** The pointer fields of batch `batchId`. */
export function writerMeta(batchId: number) {
  return {
    runId: "writer",
    batchId,
    committedAt: 1_700_000_000_000 + batchId,
    offsets: { "0": batchId * 10, "1": batchId * 10, "2": batchId * 10 },
    watermarks: { "0": batchId, "1": null, "2": batchId },
    engine: { windows: [60_000, 300_000], watermarkDelayMs: 900_000 },
    identity: { partitions: 3, fingerprints: { "0": null, "1": null, "2": null } },
    openWindows: 0,
    finalizeDueAt: null,
  };
}

/** Write options that make every delta take several atomic ops. */
export const WRITER_OPTIONS = { chunkBytes: 2048, opBytes: 12 * 1024 };

if (import.meta.main) {
  const [kvPath, topic] = Deno.args;
  const kv = await openKv(kvPath);
  await cleanupOrphans(kv, topic);
  let prev = await readCheckpoint(kv, topic);
  let batchId = (prev?.pointer.batchId ?? 0) + 1;
  let running: Promise<CompactResult | null> | null = null;
  for (;;) {
    const res = await writeDelta(
      kv,
      topic,
      { ...writerMeta(batchId), records: deltaFor(batchId) },
      {
        previous: prev,
        ...WRITER_OPTIONS,
      },
    );
    console.log(`flipped ${batchId}`);
    prev = res.checkpoint;
    batchId++;
    await new Promise((r) => setTimeout(r, 10)); // a trigger interval, so compactions can finish
    if (running === null && shouldCompact(prev.pointer, { maxDeltas: 5, minDeltaBytes: 40_000 })) {
      running = compact(kv, topic, { ...WRITER_OPTIONS, yieldMs: 1 }).then((c) => {
        console.log(`compacted ${c?.base.generation}`);
        return c;
      }, (e) => {
        console.error(`compaction failed: ${(e as Error).stack}`);
        Deno.exit(1);
      }).finally(() => {
        running = null;
      });
    }
  }
}
