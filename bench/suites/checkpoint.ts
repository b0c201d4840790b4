/**
 * Suite checkpoint: incremental checkpoints in Deno KV (issue 13).
 *
 * - Per trigger, 50k open windows (10k symbols x 5, 3 partitions) with 1k of them changed:
 *   bytes written by writeDelta (chunks + pointer, as stored) against the changed windows' own
 *   encoded size (target <= 3x), and the same amortized over a whole compaction cycle (deltas up to
 *   and including the compaction that `shouldCompact` asks for; the compaction's base counted).
 *   CPU per trigger (whole process, KV's SQLite thread included) against one raw atomic write of
 *   the same bytes (no sort, no encoding).
 * - A 1M-window state (200k symbols x 5): restore (readState, every record decoded and merged)
 *   time and peak RSS in a child process, against a child that only reads the same chunks; and the
 *   time to write that base.
 * @module
 */

import process from "node:process";
import { serialize } from "node:v8";
import { openKv } from "../../common/kv.ts";
import {
  compact,
  shouldCompact,
  type StoredCheckpoint,
  writeBase,
  writeDelta,
} from "../../aggregate/checkpoint.ts";
import { checkpointKey, stateChunkKey } from "../../aggregate/kv_layout.ts";
import { ChunkEncoder, sortDelta, type StateRecord } from "../../aggregate/state_codec.ts";
import { type Row, rowOf, type Suite, type SuiteContext } from "../_suite.ts";
import { spawnDeno, tail, uniqueOf } from "./_io.ts";

const SYMBOLS = 10_000;
const PER_SYMBOL = 5;
const PARTITIONS = 3;
const CHANGED = 1_000;

type Win = Extract<StateRecord, { kind: "window" }>;

function baseState(): { windows: Win[]; parts: StateRecord[] } {
  const windows: Win[] = [];
  for (let s = 0; s < SYMBOLS; s++) {
    const symbol = `SYM${String(s).padStart(5, "0")}`;
    for (let k = 0; k < PER_SYMBOL; k++) {
      const start = 1_700_000_000_000 + k * 300_000;
      const price = 100 + (s % 997) / 3;
      windows.push({
        kind: "window",
        partition: s % PARTITIONS,
        windowMs: 300_000,
        symbol,
        start,
        count: 5,
        sum: price * 5 + 0.1,
        comp: 1e-14,
        open: price,
        high: price + 0.5,
        low: price - 0.5,
        close: price + 0.25,
        first: start + 11,
        last: start + 290_000,
        lastOffset: s * PER_SYMBOL + k,
        volume: 1200,
        volumeComp: 0,
        pv: price * 1200,
        pvComp: 0,
      });
    }
  }
  const parts: StateRecord[] = Array.from({ length: PARTITIONS }, (_, p) => ({
    kind: "partition",
    partition: p,
    maxEventTime: 1_700_001_500_000,
    lastOffset: SYMBOLS * PER_SYMBOL,
    floor: null,
    replayBelow: 0,
    lastArrivalMs: 1_700_001_500_000,
  }));
  return { windows, parts };
}

function meta(batchId: number, openWindows: number) {
  return {
    runId: "bench",
    batchId,
    committedAt: 1_700_000_000_000 + batchId,
    offsets: Object.fromEntries(Array.from({ length: PARTITIONS }, (_, p) => [p, batchId * 1000])),
    watermarks: Object.fromEntries(Array.from({ length: PARTITIONS }, (_, p) => [p, batchId])),
    engine: { windows: [300_000], watermarkDelayMs: 900_000 },
    identity: {
      partitions: PARTITIONS,
      fingerprints: Object.fromEntries(Array.from({ length: PARTITIONS }, (_, p) => [p, null])),
    },
    openWindows,
    finalizeDueAt: null,
  };
}

/** Bytes KV stores for a key (approximation: its JSON) and a value (V8 serialization or bytes). */
function stored(key: Deno.KvKey, value: unknown): number {
  const v = value instanceof Uint8Array ? value.byteLength : serialize(value).byteLength;
  return JSON.stringify(key).length + v;
}

function cpuMs(since: { user: number; system: number }): number {
  const c = process.cpuUsage(since);
  return (c.user + c.system) / 1000;
}

/** A seeded LCG for picking the changed windows. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 4294967296;
  };
}

interface TriggerRun {
  /** Mean bytes written per delta trigger. */
  deltaBytes: number;
  /** Mean changed windows' encoded size. */
  changedBytes: number;
  /** Mean bytes per trigger over a compaction cycle, compaction included. */
  amortizedBytes: number;
  /** Mean CPU ms per writeDelta. */
  cpuMs: number;
  /** Mean CPU ms per raw atomic write of the same bytes. */
  rawCpuMs: number;
  /** Triggers in the compaction cycle. */
  cycle: number;
  /** Bytes of the compacted base. */
  baseBytes: number;
}

async function triggerRun(ctx: SuiteContext, run: number): Promise<TriggerRun> {
  const path = `${ctx.dataDir}/${uniqueOf(ctx, "ckpt")}.kv`;
  const kv = await openKv(path);
  const topic = "bench";
  try {
    const { windows, parts } = baseState();
    let prev: StoredCheckpoint = (await writeBase(kv, topic, {
      ...meta(0, windows.length),
      records: [...parts, ...windows],
    }, { previous: null })).checkpoint;
    const rnd = lcg(run + 1);
    let deltaBytes = 0;
    let changedBytes = 0;
    let cpu = 0;
    let rawCpu = 0;
    let triggers = 0;
    let compactedBytes = 0;
    let baseBytes = 0;
    for (let b = 1; b <= 200; b++) {
      // 1k distinct windows change (a tick each), and the partition records.
      const picked = new Set<number>();
      while (picked.size < CHANGED) picked.add(Math.floor(rnd() * windows.length));
      const changed: Win[] = [];
      for (const i of picked) {
        const w = windows[i];
        const price = w.close + (rnd() - 0.5);
        windows[i] = {
          ...w,
          count: w.count + 1,
          sum: w.sum + price,
          close: price,
          high: Math.max(w.high, price),
          low: Math.min(w.low, price),
          last: w.last + 1,
          lastOffset: w.lastOffset + 1_000_000,
          volume: w.volume + 100,
          pv: w.pv + price * 100,
        };
        changed.push(windows[i]);
      }
      const delta: StateRecord[] = [...parts, ...changed];
      // The baseline: the changed windows' encoded size.
      const enc = new ChunkEncoder();
      let encBytes = 0;
      for (const r of sortDelta(changed)) encBytes += enc.add(r)?.byteLength ?? 0;
      encBytes += enc.finish()?.byteLength ?? 0;
      const c0 = process.cpuUsage();
      const w = await writeDelta(kv, topic, { ...meta(b, windows.length), records: delta }, {
        previous: prev,
      });
      cpu += cpuMs(c0);
      prev = w.checkpoint;
      const seg = w.segment!;
      let bytes = stored(checkpointKey(topic), prev.pointer);
      for (let i = 0; i < seg.chunks; i++) {
        bytes += JSON.stringify(stateChunkKey(topic, seg.generation, i)).length;
      }
      bytes += seg.bytes;
      deltaBytes += bytes;
      changedBytes += encBytes;
      triggers++;
      // The raw baseline: the same bytes in one atomic op, already encoded.
      const chunks: Uint8Array[] = [];
      const enc2 = new ChunkEncoder();
      for (const r of sortDelta(delta)) {
        const c = enc2.add(r);
        if (c) chunks.push(c);
      }
      chunks.push(enc2.finish()!);
      const r0 = process.cpuUsage();
      const op = kv.atomic();
      chunks.forEach((c, i) => op.set(["raw", b, i], c));
      op.set(["raw", b, "pointer"], prev.pointer);
      await op.commit();
      rawCpu += cpuMs(r0);
      await kv.delete(["raw", b, "pointer"]);
      for (let i = 0; i < chunks.length; i++) await kv.delete(["raw", b, i]);
      if (shouldCompact(prev.pointer)) {
        const c = (await compact(kv, topic))!;
        compactedBytes += c.base.bytes + stored(checkpointKey(topic), c.checkpoint.pointer);
        baseBytes = c.base.bytes;
        break;
      }
    }
    if (baseBytes === 0) throw new Error(`No compaction within ${triggers} triggers`);
    return {
      deltaBytes: deltaBytes / triggers,
      changedBytes: changedBytes / triggers,
      amortizedBytes: (deltaBytes + compactedBytes) / triggers,
      cpuMs: cpu / triggers,
      rawCpuMs: rawCpu / triggers,
      cycle: triggers,
      baseBytes,
    };
  } finally {
    kv.close();
    for (const s of ["", "-wal", "-shm"]) await Deno.remove(path + s).catch(() => {});
  }
}

interface ChildResult {
  ms: number;
  cpuMs: number;
  peakMb: number;
  records?: number;
  bytes?: number;
  chunks?: number;
}

async function child(args: string[]): Promise<ChildResult> {
  const c = spawnDeno(["run", "-A", "bench/suites/_checkpoint_child.ts", ...args]);
  const status = await c.status;
  const line = c.stdout.find((l) => l.startsWith("{"));
  if (!status.success || line === undefined) {
    throw new Error(`Checkpoint child ${args[0]} failed (${status.code}): ${tail(c.stderr)}`);
  }
  return JSON.parse(line) as ChildResult;
}

/** The checkpoint suite. */
export const checkpointSuite: Suite = {
  name: "checkpoint",
  title: "Checkpoint (incremental, Deno KV)",
  timeoutMs: (quick) => (quick ? 300_000 : 900_000),
  async run(ctx: SuiteContext): Promise<Row[]> {
    const runs: TriggerRun[] = [];
    for (let i = 0; i < ctx.runs; i++) {
      runs.push(await triggerRun(ctx, i));
      ctx.log.info(`checkpoint triggers ${i + 1}/${ctx.runs}`, {
        deltaBytes: Math.round(runs[i].deltaBytes),
        changedBytes: Math.round(runs[i].changedBytes),
        cycle: runs[i].cycle,
      });
    }
    // 1M windows: one base, then restores and raw reads interleaved.
    const path = `${ctx.dataDir}/${uniqueOf(ctx, "ckpt-1m")}.kv`;
    const symbols = 200_000;
    const written = await child(["write", path, "big", String(symbols), "5"]);
    const restore: ChildResult[] = [];
    const raw: ChildResult[] = [];
    try {
      for (let i = 0; i < ctx.runs; i++) {
        const pair = i % 2 === 0
          ? [await child(["restore", path, "big"]), await child(["raw", path, "big"])]
          : [await child(["raw", path, "big"]), await child(["restore", path, "big"])].reverse();
        if (pair[0].records !== symbols * 5 + 2) {
          throw new Error(`Restore read ${pair[0].records} records, expected ${symbols * 5 + 2}`);
        }
        restore.push(pair[0]);
        raw.push(pair[1]);
        ctx.log.info(`checkpoint 1M restore ${i + 1}/${ctx.runs}`, {
          ms: Math.round(pair[0].ms),
          peakMb: Math.round(pair[0].peakMb),
          rawMs: Math.round(pair[1].ms),
          rawPeakMb: Math.round(pair[1].peakMb),
        });
      }
    } finally {
      for (const s of ["", "-wal", "-shm"]) await Deno.remove(path + s).catch(() => {});
    }
    const cycle = runs.map((r) => r.cycle);
    const mb = (written.bytes ?? 0) / 1e6;
    return [
      rowOf({
        suite: "checkpoint",
        metric: "bytes written per trigger (delta + pointer), 50k open windows, 1k changed",
        unit: "bytes",
        ours: runs.map((r) => r.deltaBytes),
        baseline: runs.map((r) => r.changedBytes),
        baselineLabel: "the 1k changed windows' encoded size",
        target: { op: "<=", value: 3, on: "ratio" },
      }),
      rowOf({
        suite: "checkpoint",
        metric: "bytes written per trigger, amortized over a compaction cycle",
        unit: "bytes",
        ours: runs.map((r) => r.amortizedBytes),
        baseline: runs.map((r) => r.changedBytes),
        baselineLabel: "the 1k changed windows' encoded size",
        target: { op: "<=", value: 3, on: "ratio" },
        note: `a compaction every ${Math.min(...cycle)}-${Math.max(...cycle)} triggers, base ${
          (runs[0].baseBytes / 1e6).toFixed(1)
        } MB`,
      }),
      rowOf({
        suite: "checkpoint",
        metric: "CPU per trigger (sort, encode, KV commit), 1k changed windows",
        unit: "ms",
        ours: runs.map((r) => r.cpuMs),
        baseline: runs.map((r) => r.rawCpuMs),
        baselineLabel: "one atomic set of the same bytes, pre-encoded",
        lowerIsBetter: true,
      }),
      rowOf({
        suite: "checkpoint",
        metric: "1M-window restore: readState, every record decoded",
        unit: "ms",
        ours: restore.map((r) => r.ms),
        baseline: raw.map((r) => r.ms),
        baselineLabel: "kv.list of the same chunks, no decoding",
        lowerIsBetter: true,
        note: `base ${mb.toFixed(1)} MB in ${written.chunks} chunks, written in ${
          (written.ms / 1000).toFixed(1)
        } s (${(written.cpuMs / 1000).toFixed(1)} s CPU, peak RSS ${
          Math.round(written.peakMb)
        } MB)`,
      }),
      rowOf({
        suite: "checkpoint",
        metric: "1M-window restore: peak RSS of the process",
        unit: "MB",
        ours: restore.map((r) => r.peakMb),
        baseline: raw.map((r) => r.peakMb),
        baselineLabel: "kv.list of the same chunks, bytes held",
        lowerIsBetter: true,
      }),
    ];
  },
};
