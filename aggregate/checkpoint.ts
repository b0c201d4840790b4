/**
 * Incremental checkpoints in Deno KV (v2). The pointer `["tickpipe", topic, "checkpoint"]` holds
 * the offsets, watermarks and the list of state segments: a base and the deltas written since,
 * state = base + deltas in order (aggregate/state_codec.ts merges them). A segment's chunks live
 * at `["tickpipe", topic, "state", generation, i]` (aggregate/kv_layout.ts).
 *
 * Write discipline (a crash at any point leaves the last flipped pointer and its segments valid):
 * - {@linkcode writeDelta} (each trigger): the delta's chunks, in as few atomic ops as the KV limits
 *   allow (usually none apart from the flip: a small delta rides in the flip itself), each op
 *   fenced on the pointer's versionstamp and the guard (the lease); then ONE atomic flip that
 *   appends the delta and sets offsets, watermarks, identity and the rest.
 * - {@linkcode compact} (off the trigger path): reserves a generation in the pointer, streams the
 *   merge of the base and the deltas present at that moment into a new base (fenced on the guard,
 *   yielding to the event loop between ops), then flips base := new, deltas := those appended
 *   meanwhile. Deltas may be written while it runs: a delta writer whose fence fails because the
 *   compaction flipped re-reads the pointer and retries (same run and batch: same logical state).
 * - {@linkcode writeBase}: the whole state as a new base (upgrade, reset), deltas cleared.
 * - {@linkcode writeCheckpoint} (what a trigger calls): a delta, or over an empty state (no base,
 *   no deltas: a topic's first checkpoint) a base, since such a delta is the whole state; or the
 *   whole state as a base when the trigger's cut captured it because it is no larger than the
 *   delta (a backlog: `Cut.state`), which replaces the compaction such deltas would soon need.
 * - Retired segments go to `pointer.garbage` in the flip and are deleted by key (generation,
 *   0..chunks-1) after it, best-effort: a failure is returned in `cleanup`, never thrown, and the
 *   next flip retries. Chunks of a crashed writer (generations >= `nextGeneration`, or the
 *   generation `compacting` reserved) are removed at startup by {@linkcode cleanupOrphans} with a
 *   range delete bounded to those generations.
 * - A v1 pointer (one JSON snapshot of the v1 engine) is read as a v2 pointer whose base is a
 *   `json-v1` segment, converted to StateRecords on read; the next writes keep it as the base until
 *   a compaction (which {@linkcode shouldCompact} asks for at once) rewrites it in binary.
 * @module
 */

import {
  checkpointKey,
  type CheckpointPointer,
  type EngineConfig,
  isPointerV2,
  type LegacyCheckpointPointer,
  liveSegments,
  type Segment,
  stateChunkKey,
  statePrefix,
  type StoredPointerValue,
  type TopicIdentity,
} from "./kv_layout.ts";
import {
  ChunkEncoder,
  compareRecords,
  decodeChunk,
  MAX_CHUNK_BYTES,
  MergeCursor,
  mergeSorted,
  sortDelta,
  sortRecords,
  type StateRecord,
} from "./state_codec.ts";

export { checkpointKey, statePrefix };

/** Max bytes of one state chunk (Deno KV values are limited to 64 KiB). */
export const CHUNK_BYTES = MAX_CHUNK_BYTES;
/** Budget of one atomic op: Deno KV allows 1000 mutations and 800 KiB (keys + values) per op. */
const OP_MAX_MUTATIONS = 1000;
const OP_MAX_BYTES = 780 * 1024;

/** Engine settings assumed for a v1 snapshot whose header cannot be read (the v1 defaults). */
export const V1_DEFAULT_ENGINE: EngineConfig = Object.freeze({
  windows: [300_000],
  watermarkDelayMs: 900_000,
}) as EngineConfig;

/** A pointer as read back (a v1 entry converted to v2), with its KV versionstamp. */
export interface StoredCheckpoint {
  /** The pointer (v2 shape; for a v1 entry, converted: its base is a `json-v1` segment). */
  pointer: CheckpointPointer;
  /** Versionstamp of the pointer entry. */
  versionstamp: string;
  /** Version of the entry as stored (1: not yet rewritten since the upgrade). */
  storedVersion: 1 | 2;
  /** Generations of `pointer.garbage` already deleted after this flip (not stored). */
  collected?: readonly number[];
}

/** A check added to every op of a write: a fixed one, or a function giving the current one. */
export type CheckpointGuard = Deno.AtomicCheck | (() => Deno.AtomicCheck);

/** Everything a pointer says besides its segments. */
export interface CheckpointMeta {
  /** Run id of the writer. */
  runId: string;
  /** Batch (trigger) id. */
  batchId: number;
  /** Commit time (epoch ms). */
  committedAt: number;
  /** Next offset to read per partition. */
  offsets: Record<string, number>;
  /** Effective watermark per partition. */
  watermarks: Record<string, number | null>;
  /** Engine settings of the state. */
  engine: EngineConfig;
  /** The topic the offsets belong to. */
  identity: TopicIdentity;
  /** Open windows in the state. */
  openWindows: number;
  /** When idle finalization next becomes possible (epoch ms), or null. */
  finalizeDueAt: number | null;
  /** True when open window rows were held back from PostgreSQL (aggregate/deferred.ts). */
  openRowsDeferred?: boolean;
}

/** What to write: the pointer's fields and the state records (a delta or the whole state). */
export interface CheckpointInput extends CheckpointMeta {
  /** For writeDelta: the cut's delta (any order; latest per key wins). For writeBase: the state. */
  records: Iterable<StateRecord>;
}

/** Options of {@linkcode writeDelta} and {@linkcode writeBase}. */
export interface WriteOptions {
  /** The pointer this write follows (null: none yet); the flip fails if it changed. */
  previous: StoredCheckpoint | null;
  /** Checked in every op (e.g. the lease entry and our versionstamp of it). */
  guard?: CheckpointGuard;
  /** Extra entries set in the same flip (e.g. the latest progress). */
  alsoSet?: { key: Deno.KvKey; value: unknown }[];
  /** Chunk size (default 60 KiB; smaller in tests). */
  chunkBytes?: number;
  /** Byte budget of one atomic op (default 780 KiB; smaller in tests). */
  opBytes?: number;
  /** Test hook: runs after the chunks are written and before the flip. */
  beforeFlip?: () => Promise<void> | void;
}

/** Options of {@linkcode writeBase}. */
export interface WriteBaseOptions extends WriteOptions {
  /**
   * The records come sorted by key (compareRecords) and unique: they are streamed straight into
   * chunks. Otherwise they are sorted first in compact memory (state_codec `sortRecords`: about
   * the encoded size plus 41 bytes per record, never the record objects).
   */
  sorted?: boolean;
}

/** Options of {@linkcode writeCheckpoint}. */
export interface CheckpointWriteOptions extends WriteOptions {
  /**
   * The records are the whole state, sorted by key and unique (`Cut.state`): written as the new
   * base, the previous base and deltas retired. Not while a compaction of the topic runs.
   */
  wholeState?: boolean;
}

/** Outcome of a best-effort deletion of retired segments. */
export interface CleanupResult {
  /** Segments whose chunks are all deleted. */
  deleted: Segment[];
  /** Segments left for a later attempt (still listed in the pointer's garbage). */
  failed: Segment[];
  /** The first error met, or null. */
  error: Error | null;
}

/** Outcome of {@linkcode writeDelta} / {@linkcode writeBase}. */
export interface WriteResult {
  /** The new pointer: pass it as `previous` to the next write. */
  checkpoint: StoredCheckpoint;
  /** The segment written (null for an empty delta). */
  segment: Segment | null;
  /** Atomic ops committed, flip included. */
  ops: number;
  /** Bytes written: chunk values plus the pointer's (JSON-size estimate) and alsoSet's. */
  bytes: number;
  /** Deletion of retired segments after the flip. */
  cleanup: CleanupResult;
}

/** Options of {@linkcode compact}. */
export interface CompactOptions {
  /** Checked in every op (use the function form when the lease is renewed meanwhile). */
  guard?: CheckpointGuard;
  /** Chunk size (default 60 KiB). */
  chunkBytes?: number;
  /** Byte budget of one atomic op (default 780 KiB). */
  opBytes?: number;
  /** Pause between chunk ops, ms (default 0: one macrotask turn, so triggers run meanwhile). */
  yieldMs?: number;
  /** Test hook: runs after the new base is written and before the flip. */
  beforeFlip?: () => Promise<void> | void;
  /**
   * Runs each pointer step (the reservation, each flip attempt) in the writer's own queue of KV
   * writes, so a process that writes deltas back to back cannot starve its compaction.
   */
  serialize?: <T>(fn: () => Promise<T>) => Promise<T>;
}

/** Outcome of {@linkcode compact}. */
export interface CompactResult {
  /** The pointer after the flip. */
  checkpoint: StoredCheckpoint;
  /** The new base. */
  base: Segment;
  /** Deltas merged into it. */
  merged: number;
  /** Atomic ops committed. */
  ops: number;
  /** Wall time, ms. */
  ms: number;
  /** Deletion of the retired base and deltas. */
  cleanup: CleanupResult;
}

/** The state of a checkpoint: its pointer and the merged records. */
export interface StateRead {
  /** The pointer the records belong to. */
  checkpoint: StoredCheckpoint;
  /** Base + deltas merged, sorted by key, decoded lazily (read once). */
  records: Iterable<StateRecord>;
  /** Bytes of the segments read. */
  bytes: number;
  /** Chunks read. */
  chunks: number;
}

/** Outcome of {@linkcode cleanupOrphans}. */
export interface OrphanCleanup {
  /** The pointer after the cleanup (null when there is none). */
  checkpoint: StoredCheckpoint | null;
  /** Orphan chunks removed by range delete. */
  removedChunks: number;
  /** Deletion of the pointer's garbage. */
  cleanup: CleanupResult;
}

/** Raised when the pointer (or the guard) changed under us: someone else wrote, or the lease is lost. */
export class CheckpointConflictError extends Error {
  /** Creates the error naming the topic and what changed. */
  constructor(topic: string, detail = "") {
    super(
      `Checkpoint of topic "${topic}" changed concurrently (or the lease was lost)${
        detail ? `: ${detail}` : ""
      }`,
    );
    this.name = "CheckpointConflictError";
  }
}

/** Raised when the state chunks of a pointer are missing or inconsistent. */
export class CheckpointCorruptError extends Error {
  /** Creates the error; the message names the generation. */
  constructor(message: string) {
    super(message);
    this.name = "CheckpointCorruptError";
  }
}

// ---------------------------------------------------------------------------------------------
// Policy

/** Options of {@linkcode shouldCompact}. */
export interface CompactPolicy {
  /** Compact when there are more deltas than this (default 64). */
  maxDeltas?: number;
  /** Compact when the deltas' bytes reach `ratio` times the base's (default 2). */
  ratio?: number;
  /** No compaction (but for `maxDeltas`) while the deltas hold fewer bytes (default 1 MiB). */
  minDeltaBytes?: number;
}

/**
 * True when `pointer` should be compacted: a `json-v1` base (upgrade), more than `maxDeltas`
 * deltas, or delta bytes >= max(ratio × base bytes, minDeltaBytes). With the default ratio of 2,
 * a restore reads at most about three times the base plus `minDeltaBytes`, and a compaction
 * (which rewrites the state) comes once per about two states' worth of deltas. On a backlog, where
 * every delta is about as large as the state, the aggregator's triggers write the whole state as
 * the base instead (`Cut.state`), so deltas do not pile up there and no compaction is needed.
 */
export function shouldCompact(pointer: CheckpointPointer, policy: CompactPolicy = {}): boolean {
  if (pointer.base?.format === "json-v1") return true;
  if (pointer.deltas.length === 0) return false;
  if (pointer.deltas.length > (policy.maxDeltas ?? 64)) return true;
  const deltaBytes = pointer.deltas.reduce((n, s) => n + s.bytes, 0);
  const base = pointer.base?.bytes ?? 0;
  return deltaBytes >= Math.max((policy.ratio ?? 2) * base, policy.minDeltaBytes ?? 1024 * 1024);
}

// ---------------------------------------------------------------------------------------------
// Reading

const V1_HEADER = /^\{"version":1,"windowMs":(\d+),"watermarkDelayMs":(\d+)/;

async function legacyEngine(
  kv: Deno.Kv,
  topic: string,
  v1: LegacyCheckpointPointer,
): Promise<EngineConfig> {
  if (v1.chunks === 0) return { ...V1_DEFAULT_ENGINE, windows: [...V1_DEFAULT_ENGINE.windows] };
  const first = await kv.get<Uint8Array>(stateChunkKey(topic, v1.generation, 0));
  const head = first.value instanceof Uint8Array
    ? new TextDecoder().decode(first.value.subarray(0, 200))
    : "";
  const m = V1_HEADER.exec(head);
  return m
    ? { windows: [Number(m[1])], watermarkDelayMs: Number(m[2]) }
    : { ...V1_DEFAULT_ENGINE, windows: [...V1_DEFAULT_ENGINE.windows] };
}

/** The v2 view of a v1 pointer: its snapshot becomes a `json-v1` base. */
export function convertLegacyPointer(
  v1: LegacyCheckpointPointer,
  engine: EngineConfig,
): CheckpointPointer {
  return {
    version: 2,
    runId: v1.runId,
    batchId: v1.batchId,
    committedAt: v1.committedAt,
    offsets: { ...v1.offsets },
    watermarks: { ...v1.watermarks },
    base: v1.chunks > 0
      ? {
        generation: v1.generation,
        chunks: v1.chunks,
        bytes: v1.stateBytes,
        records: 0,
        format: "json-v1",
      }
      : null,
    deltas: [],
    nextGeneration: v1.generation + 1,
    garbage: [],
    compacting: null,
    engine,
    identity: {
      partitions: Object.keys(v1.offsets).length,
      fingerprints: Object.fromEntries(Object.keys(v1.offsets).map((p) => [p, null])),
    },
    openWindows: 0,
    finalizeDueAt: null,
  };
}

/** Reads the checkpoint pointer of `topic` (a v1 entry converted), or null when there is none. */
export async function readCheckpoint(kv: Deno.Kv, topic: string): Promise<StoredCheckpoint | null> {
  const e = await kv.get<StoredPointerValue>(checkpointKey(topic));
  if (e.value === null || e.versionstamp === null) return null;
  if (isPointerV2(e.value)) {
    return { pointer: e.value, versionstamp: e.versionstamp, storedVersion: 2 };
  }
  const engine = await legacyEngine(kv, topic, e.value);
  return {
    pointer: convertLegacyPointer(e.value, engine),
    versionstamp: e.versionstamp,
    storedVersion: 1,
  };
}

/**
 * Converts a v1 engine snapshot (`{ version: 1, windowMs, watermarkDelayMs, partitions }`, see
 * the README "State and snapshots") into sorted StateRecords: one partition record per partition
 * (no floor, replayBelow 0, no arrival time) and one window record per window (the snapshot's
 * windowMs, volume 0). Pending late ticks and dirty flags are not state in v2 (a v1 checkpoint is
 * written right after a trigger, so it has none).
 */
export function recordsFromV1Snapshot(snapshot: unknown): StateRecord[] {
  const bad = (what: string): never => {
    throw new CheckpointCorruptError(`Invalid v1 snapshot: ${what}`);
  };
  const s = snapshot as Record<string, unknown>;
  if (typeof s !== "object" || s === null || s.version !== 1) bad("version is not 1");
  const windowMs = s.windowMs;
  if (typeof windowMs !== "number") bad(`windowMs ${String(windowMs)}`);
  if (typeof s.partitions !== "object" || s.partitions === null) bad("no partitions");
  const out: StateRecord[] = [];
  for (const [key, raw] of Object.entries(s.partitions as Record<string, unknown>)) {
    const partition = Number(key);
    const p = raw as Record<string, unknown>;
    if (!Number.isSafeInteger(partition) || typeof p !== "object" || p === null) {
      bad(`partition ${JSON.stringify(key)}`);
    }
    out.push({
      kind: "partition",
      partition,
      maxEventTime: (p.maxEventTime as number | null) ?? null,
      lastOffset: (p.lastOffset as number | null) ?? null,
      floor: null,
      replayBelow: 0,
      lastArrivalMs: null,
    });
    if (!Array.isArray(p.windows)) bad(`windows of partition ${key}`);
    for (const t of p.windows as unknown[]) {
      if (!Array.isArray(t) || t.length < 12 || typeof t[0] !== "string") {
        bad(`window ${JSON.stringify(t)} of partition ${key}`);
      }
      const w = t as [string, ...number[]];
      out.push({
        kind: "window",
        partition,
        windowMs: windowMs as number,
        symbol: w[0],
        start: w[1],
        count: w[2],
        sum: w[3],
        comp: w[4],
        open: w[5],
        high: w[6],
        low: w[7],
        close: w[8],
        first: w[9],
        last: w[10],
        lastOffset: w[11],
        volume: 0,
        volumeComp: 0,
        pv: 0,
        pvComp: 0,
      });
    }
  }
  return out.sort(compareRecords);
}

/** Reads the chunks of `segment` in order, `batch` at a time; checks that none is missing. */
async function* segmentChunks(
  kv: Deno.Kv,
  topic: string,
  segment: Segment,
  batch = 8,
): AsyncGenerator<Uint8Array> {
  if (segment.chunks === 0) return;
  let i = 0;
  const it = kv.list<Uint8Array>({
    start: stateChunkKey(topic, segment.generation, 0),
    end: stateChunkKey(topic, segment.generation, segment.chunks),
  }, { batchSize: batch });
  for await (const e of it) {
    if (e.key[4] !== i || !(e.value instanceof Uint8Array)) break;
    yield e.value;
    i++;
  }
  if (i !== segment.chunks) {
    throw new CheckpointCorruptError(
      `State segment ${segment.generation} of topic "${topic}" is missing chunk ${i} of ` +
        `${segment.chunks}`,
    );
  }
}

async function readSegment(kv: Deno.Kv, topic: string, segment: Segment): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of segmentChunks(kv, topic, segment, 64)) out.push(c);
  const bytes = out.reduce((n, c) => n + c.byteLength, 0);
  if (bytes !== segment.bytes) {
    throw new CheckpointCorruptError(
      `State segment ${segment.generation} of topic "${topic}" has ${bytes} bytes, expected ` +
        `${segment.bytes}`,
    );
  }
  return out;
}

function legacyRecords(chunks: Uint8Array[], generation: number, topic: string): StateRecord[] {
  const total = chunks.reduce((n, c) => n + c.byteLength, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(all));
  } catch (e) {
    throw new CheckpointCorruptError(
      `v1 snapshot generation ${generation} of topic "${topic}" is not JSON: ${
        (e as Error).message
      }`,
    );
  }
  return recordsFromV1Snapshot(parsed);
}

function* decodeAll(chunks: Uint8Array[]): Generator<StateRecord> {
  for (const c of chunks) yield* decodeChunk(c);
}

/**
 * Reads the pointer and the state it points to: base + deltas merged into one sorted record
 * stream without deletes. The segments' bytes are read first (so a consumer that must be
 * synchronous, like `WindowEngine.restore`, can be fed; memory = the encoded size), then decoded
 * lazily while iterating. Retries when a concurrent compaction replaced the segments; throws
 * CheckpointCorruptError when they stay missing.
 */
export async function readState(
  kv: Deno.Kv,
  topic: string,
  options: { attempts?: number } = {},
): Promise<StateRead | null> {
  const attempts = options.attempts ?? 5;
  let lastError: Error | null = null;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const cp = await readCheckpoint(kv, topic);
    if (cp === null) return null;
    try {
      const sources: Iterable<StateRecord>[] = [];
      let bytes = 0;
      let chunks = 0;
      for (const seg of liveSegments(cp.pointer)) {
        const data = await readSegment(kv, topic, seg);
        bytes += seg.bytes;
        chunks += data.length;
        sources.push(
          seg.format === "json-v1" ? legacyRecords(data, seg.generation, topic) : decodeAll(data),
        );
      }
      return { checkpoint: cp, records: mergeSorted(sources), bytes, chunks };
    } catch (e) {
      if (!(e instanceof CheckpointCorruptError)) throw e;
      lastError = e;
      const now = await kv.get(checkpointKey(topic));
      if (now.versionstamp === cp.versionstamp && attempt >= 1) throw e;
    }
  }
  throw lastError!;
}

// ---------------------------------------------------------------------------------------------
// Writing

function guardOf(guard: CheckpointGuard | undefined): Deno.AtomicCheck | null {
  if (guard === undefined) return null;
  return typeof guard === "function" ? guard() : guard;
}

function fence(
  op: Deno.AtomicOperation,
  versionstamp: string | null | undefined,
  guard: CheckpointGuard | undefined,
  topic: string,
): Deno.AtomicOperation {
  if (versionstamp !== undefined) op.check({ key: checkpointKey(topic), versionstamp });
  const g = guardOf(guard);
  if (g !== null) op.check(g);
  return op;
}

function sizeOf(value: unknown): number {
  // An upper bound of the serialized size of a structured-clone value from its JSON length
  // (a value JSON cannot express, e.g. a BigInt, counts as a whole op's worth: alone in the flip).
  if (value instanceof Uint8Array) return value.byteLength + 16;
  try {
    return Math.ceil((JSON.stringify(value)?.length ?? 16) * 1.5) + 256;
  } catch {
    return OP_MAX_BYTES;
  }
}

function keySize(topic: string): number {
  return 64 + 3 * topic.length;
}

function pendingGarbage(prev: StoredCheckpoint | null): Segment[] {
  if (prev === null) return [];
  const done = new Set(prev.collected ?? []);
  return prev.pointer.garbage.filter((g) => !done.has(g.generation));
}

function pointerOf(
  meta: CheckpointMeta,
  parts: Pick<
    CheckpointPointer,
    "base" | "deltas" | "nextGeneration" | "garbage" | "compacting"
  >,
): CheckpointPointer {
  return {
    version: 2,
    runId: meta.runId,
    batchId: meta.batchId,
    committedAt: meta.committedAt,
    offsets: meta.offsets,
    watermarks: meta.watermarks,
    base: parts.base,
    deltas: parts.deltas,
    nextGeneration: parts.nextGeneration,
    garbage: parts.garbage,
    compacting: parts.compacting,
    engine: meta.engine,
    identity: meta.identity,
    openWindows: meta.openWindows,
    finalizeDueAt: meta.finalizeDueAt,
    ...(meta.openRowsDeferred ? { openRowsDeferred: true as const } : {}),
  };
}

async function commitOk(op: Deno.AtomicOperation): Promise<Deno.KvCommitResult | null> {
  const res = await op.commit();
  return res.ok ? res : null;
}

function sameTrigger(a: CheckpointPointer, b: CheckpointPointer): boolean {
  return a.runId === b.runId && a.batchId === b.batchId && a.committedAt === b.committedAt;
}

/**
 * After a failed fence: throws CheckpointConflictError unless only a compaction of the same
 * trigger's state moved the pointer (then returns the current pointer to retry on).
 */
async function diagnose(
  kv: Deno.Kv,
  topic: string,
  prev: StoredCheckpoint | null,
  guard: CheckpointGuard | undefined,
): Promise<StoredCheckpoint> {
  if (!(await guardHolds(kv, guard))) {
    throw new CheckpointConflictError(topic, "the guard entry changed (lease lost)");
  }
  const cur = await readCheckpoint(kv, topic);
  if (prev === null || cur === null) {
    throw new CheckpointConflictError(
      topic,
      cur === null ? "the pointer was deleted" : `run ${cur.pointer.runId} wrote one first`,
    );
  }
  if (cur.versionstamp !== prev.versionstamp && !sameTrigger(cur.pointer, prev.pointer)) {
    throw new CheckpointConflictError(
      topic,
      `run ${cur.pointer.runId} batch ${cur.pointer.batchId} wrote after batch ${prev.pointer.batchId}`,
    );
  }
  return cur;
}

interface ChunkBatcher {
  /** Adds a chunk; commits a full op first when needed. Resolves false when a fence failed. */
  add(chunk: Uint8Array): Promise<boolean>;
  /** Commits the rest together with `flip` when it fits, else separately; false on a fence failure. */
  finish(flip: {
    set: { key: Deno.KvKey; value: unknown }[];
    versionstamp: string | null | undefined;
    beforeFlip?: () => Promise<void> | void;
  }): Promise<Deno.KvCommitResult | null>;
  /** Chunks written (keys 0..written-1 of the generation). */
  readonly written: number;
  /** Ops committed. */
  readonly ops: number;
}

function chunkBatcher(
  kv: Deno.Kv,
  topic: string,
  spec: {
    generation: number;
    versionstamp: string | null | undefined;
    guard?: CheckpointGuard;
    opBytes: number;
    afterOp?: () => Promise<void>;
  },
): ChunkBatcher {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let written = 0;
  let ops = 0;
  const perKey = keySize(topic);
  const flush = async (): Promise<boolean> => {
    if (pending.length === 0) return true;
    for (let attempt = 0;; attempt++) {
      const op = fence(kv.atomic(), spec.versionstamp, spec.guard, topic);
      pending.forEach((c, i) => op.set(stateChunkKey(topic, spec.generation, written + i), c));
      if ((await commitOk(op)) !== null) break;
      // Our own lease renewal may have raced the op (a guard function gives the new
      // versionstamp): retry while the fence holds when re-read, else report the failure.
      if (attempt >= 3 || !(await guardHolds(kv, spec.guard))) return false;
      if (spec.versionstamp !== undefined) {
        const cur = await kv.get(checkpointKey(topic));
        if (cur.versionstamp !== spec.versionstamp) return false;
      }
    }
    written += pending.length;
    ops++;
    pending = [];
    pendingBytes = 0;
    await spec.afterOp?.();
    return true;
  };
  return {
    get written() {
      return written;
    },
    get ops() {
      return ops;
    },
    async add(chunk) {
      const size = chunk.byteLength + perKey;
      if (
        pending.length > 0 &&
        (pendingBytes + size > spec.opBytes || pending.length + 1 > OP_MAX_MUTATIONS - 8)
      ) {
        if (!(await flush())) return false;
      }
      pending.push(chunk);
      pendingBytes += size;
      return true;
    },
    async finish(flip) {
      const flipBytes = flip.set.reduce((n, e) => n + sizeOf(e.value) + perKey, 0);
      if (
        pendingBytes + flipBytes > spec.opBytes ||
        pending.length + flip.set.length > OP_MAX_MUTATIONS - 8
      ) {
        if (!(await flush())) return null;
      }
      await flip.beforeFlip?.();
      const op = fence(kv.atomic(), flip.versionstamp, spec.guard, topic);
      pending.forEach((c, i) => op.set(stateChunkKey(topic, spec.generation, written + i), c));
      for (const e of flip.set) op.set(e.key, e.value);
      const res = await commitOk(op);
      if (res === null) return null;
      written += pending.length;
      ops++;
      pending = [];
      pendingBytes = 0;
      return res;
    },
  };
}

/**
 * Deletes the chunks of `segments` by key (generation, 0..chunks-1), never reading them.
 * Best-effort: stops at the first failing op and reports it; never throws.
 */
export async function deleteSegments(
  kv: Deno.Kv,
  topic: string,
  segments: readonly Segment[],
): Promise<CleanupResult> {
  const deleted: Segment[] = [];
  const waiting: Segment[] = []; // every delete added, not all committed yet
  let error: Error | null = null;
  let op = kv.atomic();
  let n = 0;
  try {
    for (const s of segments) {
      for (let c = 0; c < s.chunks; c++) {
        op.delete(stateChunkKey(topic, s.generation, c));
        if (++n >= OP_MAX_MUTATIONS) {
          await op.commit();
          deleted.push(...waiting.splice(0));
          op = kv.atomic();
          n = 0;
        }
      }
      waiting.push(s);
    }
    if (n > 0) await op.commit();
    deleted.push(...waiting.splice(0));
  } catch (e) {
    error = e instanceof Error ? e : new Error(String(e));
  }
  const done = new Set(deleted);
  return { deleted, failed: segments.filter((s) => !done.has(s)), error };
}

function cleanupAfter(
  kv: Deno.Kv,
  topic: string,
  pointer: CheckpointPointer,
): Promise<CleanupResult> {
  return pointer.garbage.length === 0
    ? Promise.resolve({ deleted: [], failed: [], error: null })
    : deleteSegments(kv, topic, pointer.garbage);
}

/**
 * True when the guard (if any) still holds in KV. A guard function is asked up to three times, a
 * moment apart, so that a lease renewal that just committed has had time to publish its
 * versionstamp (renewals every few seconds never race it twice).
 */
async function guardHolds(kv: Deno.Kv, guard: CheckpointGuard | undefined): Promise<boolean> {
  for (let i = 0; i < 3; i++) {
    const g = guardOf(guard);
    if (g === null) return true;
    if ((await kv.get(g.key)).versionstamp === g.versionstamp) return true;
    if (typeof guard !== "function") return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

async function stored(
  pointer: CheckpointPointer,
  res: Deno.KvCommitResult,
  cleanup: Promise<CleanupResult>,
): Promise<{ checkpoint: StoredCheckpoint; cleanup: CleanupResult }> {
  const c = await cleanup;
  return {
    checkpoint: {
      pointer,
      versionstamp: res.versionstamp,
      storedVersion: 2,
      collected: c.deleted.map((s) => s.generation),
    },
    cleanup: c,
  };
}

/**
 * Writes one delta (the records changed since the previous checkpoint; sorted here, latest per
 * key wins) and flips the pointer to append it, with the offsets and the rest of `input`.
 * Throws CheckpointConflictError when another writer moved the pointer or the guard failed.
 */
export async function writeDelta(
  kv: Deno.Kv,
  topic: string,
  input: CheckpointInput,
  options: WriteOptions,
): Promise<WriteResult> {
  // sortDelta returns the records sorted with distinct keys: the encoder need not check again.
  const enc = new ChunkEncoder({ chunkBytes: options.chunkBytes, checkOrder: false });
  const chunks: Uint8Array[] = [];
  for (const r of sortDelta(input.records)) {
    const c = enc.add(r);
    if (c !== null) chunks.push(c);
  }
  const last = enc.finish();
  if (last !== null) chunks.push(last);
  const alsoSet = options.alsoSet ?? [];
  let prev = options.previous;
  let ops = 0;
  for (let attempt = 0;; attempt++) {
    const gen = prev?.pointer.nextGeneration ?? 1;
    const segment: Segment | null = chunks.length === 0
      ? null
      : { generation: gen, chunks: chunks.length, bytes: enc.bytes, records: enc.records };
    const pointer = pointerOf(input, {
      base: prev?.pointer.base ?? null,
      deltas: [...(prev?.pointer.deltas ?? []), ...(segment ? [segment] : [])],
      nextGeneration: segment ? gen + 1 : gen,
      garbage: pendingGarbage(prev),
      compacting: prev?.pointer.compacting ?? null,
    });
    const batcher = chunkBatcher(kv, topic, {
      generation: gen,
      versionstamp: prev?.versionstamp ?? null,
      guard: options.guard,
      opBytes: options.opBytes ?? OP_MAX_BYTES,
    });
    let res: Deno.KvCommitResult | null = null;
    try {
      let fenced = true;
      for (const c of chunks) {
        if (!(await batcher.add(c))) {
          fenced = false;
          break;
        }
      }
      if (fenced) {
        res = await batcher.finish({
          set: [{ key: checkpointKey(topic), value: pointer }, ...alsoSet],
          versionstamp: prev?.versionstamp ?? null,
          beforeFlip: options.beforeFlip,
        });
      }
    } catch (e) {
      await discardUnflipped(kv, topic, prev, gen, batcher.written);
      throw e;
    }
    ops += batcher.ops;
    if (res !== null) {
      const done = await stored(pointer, res, cleanupAfter(kv, topic, pointer));
      const bytes = enc.bytes + alsoSet.reduce((n, e) => n + sizeOf(e.value), 0) +
        JSON.stringify(pointer).length;
      return { ...done, segment, ops, bytes };
    }
    if (attempt >= 8) throw new CheckpointConflictError(topic, "too many concurrent compactions");
    prev = await diagnose(kv, topic, prev, options.guard);
  }
}

/**
 * Writes the whole state as a new base (streamed into chunks: never one big buffer) and flips
 * the pointer to it with no deltas; the previous base and deltas become garbage. Not to be run
 * concurrently with {@linkcode compact} on the same topic. Throws CheckpointConflictError when
 * another writer moved the pointer or the guard failed (the new chunks are then removed).
 */
export async function writeBase(
  kv: Deno.Kv,
  topic: string,
  input: CheckpointInput,
  options: WriteBaseOptions,
): Promise<WriteResult> {
  const prev = options.previous;
  const gen = prev?.pointer.nextGeneration ?? 1;
  const enc = new ChunkEncoder({ chunkBytes: options.chunkBytes });
  const batcher = chunkBatcher(kv, topic, {
    generation: gen,
    versionstamp: prev?.versionstamp ?? null,
    guard: options.guard,
    opBytes: options.opBytes ?? OP_MAX_BYTES,
  });
  const abort = async (): Promise<never> => {
    await discardUnflipped(kv, topic, prev, gen, batcher.written);
    throw new CheckpointConflictError(topic, "while writing a base");
  };
  const source = options.sorted ? input.records : sortRecords(input.records);
  try {
    for (const r of source) {
      if (r.kind === "window-deleted") continue;
      const c = enc.add(r);
      if (c !== null && !(await batcher.add(c))) await abort();
    }
    const last = enc.finish();
    if (last !== null && !(await batcher.add(last))) await abort();
  } catch (e) {
    if (!(e instanceof CheckpointConflictError)) {
      await discardUnflipped(kv, topic, prev, gen, batcher.written);
    }
    throw e;
  }
  const segment = segmentOf(gen, enc.chunks, enc.bytes, enc.records);
  const pointer = pointerOf(input, {
    base: segment,
    deltas: [],
    nextGeneration: gen + 1,
    garbage: [...pendingGarbage(prev), ...(prev ? liveSegments(prev.pointer) : [])],
    compacting: prev?.pointer.compacting ?? null,
  });
  const alsoSet = options.alsoSet ?? [];
  let res: Deno.KvCommitResult | null;
  try {
    res = await batcher.finish({
      set: [{ key: checkpointKey(topic), value: pointer }, ...alsoSet],
      versionstamp: prev?.versionstamp ?? null,
      beforeFlip: options.beforeFlip,
    });
  } catch (e) {
    await discardUnflipped(kv, topic, prev, gen, batcher.written);
    throw e;
  }
  if (res === null) await abort();
  const cleanup = await cleanupAfter(kv, topic, pointer);
  const flipped: StoredCheckpoint = { pointer, versionstamp: res!.versionstamp, storedVersion: 2 };
  const tidy = await tidyGarbage(kv, topic, flipped, cleanup, options.guard);
  const bytes = enc.bytes + alsoSet.reduce((n, e) => n + sizeOf(e.value), 0) +
    JSON.stringify(pointer).length;
  return { checkpoint: tidy.checkpoint, cleanup, segment, ops: batcher.ops + tidy.ops, bytes };
}

/**
 * Writes a trigger's checkpoint: {@linkcode writeDelta}, except over an empty state (no
 * checkpoint yet, or one with no base and no deltas), where a non-empty delta is the whole state:
 * it goes in as the base ({@linkcode writeBase}), so a large first checkpoint is not compacted
 * again at once. Records may come in any order, latest per key winning (as for `writeDelta`);
 * in `Cut.delta()`'s order (sorted, distinct keys) that costs one check. With `wholeState`, the
 * records are the whole state and go in as the new base.
 */
export async function writeCheckpoint(
  kv: Deno.Kv,
  topic: string,
  input: CheckpointInput,
  options: CheckpointWriteOptions,
): Promise<WriteResult> {
  if (options.wholeState === true) {
    return await writeBase(kv, topic, input, { ...options, sorted: true });
  }
  const prev = options.previous;
  if (prev !== null && liveSegments(prev.pointer).length > 0) {
    return await writeDelta(kv, topic, input, options);
  }
  const records = sortDelta(input.records);
  if (records.length === 0) return await writeDelta(kv, topic, { ...input, records }, options);
  // Over an empty state a `window-deleted` record deletes nothing (writeBase drops them).
  return await writeBase(kv, topic, { ...input, records }, { ...options, sorted: true });
}

/**
 * After a rare flip that retired segments (base, compaction): drops the deleted ones from the
 * pointer's garbage at once, fenced on the flip's versionstamp. Best-effort: when a delta flip
 * wins, the result says which were `collected` so the next write drops them.
 */
async function tidyGarbage(
  kv: Deno.Kv,
  topic: string,
  flipped: StoredCheckpoint,
  cleanup: CleanupResult,
  guard: CheckpointGuard | undefined,
): Promise<{ checkpoint: StoredCheckpoint; ops: number }> {
  if (cleanup.deleted.length === 0) return { checkpoint: flipped, ops: 0 };
  const gone = new Set(cleanup.deleted.map((s) => s.generation));
  const pointer: CheckpointPointer = {
    ...flipped.pointer,
    garbage: flipped.pointer.garbage.filter((g) => !gone.has(g.generation)),
  };
  const op = fence(kv.atomic(), flipped.versionstamp, guard, topic);
  const res = await commitOk(op.set(checkpointKey(topic), pointer)).catch(() => null);
  return res === null
    ? { checkpoint: { ...flipped, collected: [...gone] }, ops: 0 }
    : { checkpoint: { pointer, versionstamp: res.versionstamp, storedVersion: 2 }, ops: 1 };
}

/**
 * Best-effort removal of the chunks a failed write put at `generation`, in ops fenced on the
 * pointer still being `prev` (so they can never hit a generation someone reserved or flipped
 * since). What it cannot remove is an orphan for cleanupOrphans. Never throws.
 */
async function discardUnflipped(
  kv: Deno.Kv,
  topic: string,
  prev: StoredCheckpoint | null,
  generation: number,
  written: number,
): Promise<void> {
  try {
    for (let from = 0; from < written; from += OP_MAX_MUTATIONS - 1) {
      const op = fence(kv.atomic(), prev?.versionstamp ?? null, undefined, topic);
      for (let i = from; i < Math.min(written, from + OP_MAX_MUTATIONS - 1); i++) {
        op.delete(stateChunkKey(topic, generation, i));
      }
      if ((await commitOk(op)) === null) return;
    }
  } catch {
    // Left for cleanupOrphans.
  }
}

function segmentOf(generation: number, chunks: number, bytes: number, records: number): Segment {
  return { generation, chunks, bytes, records };
}

function sameSegment(a: Segment | null, b: Segment | null): boolean {
  return a === null || b === null ? a === b : a.generation === b.generation;
}

/** Async batches of records of one segment, one decoded chunk at a time. */
async function* segmentRecords(
  kv: Deno.Kv,
  topic: string,
  segment: Segment,
): AsyncGenerator<StateRecord[]> {
  if (segment.format === "json-v1") {
    yield legacyRecords(await readSegment(kv, topic, segment), segment.generation, topic);
    return;
  }
  for await (const c of segmentChunks(kv, topic, segment)) yield decodeChunk(c);
}

/**
 * Range-deletes every chunk under `prefix` from `start` on (bounded to that range, paged): for
 * orphans only, whose chunk counts are unknown. Returns the number deleted.
 */
async function rangeDelete(
  kv: Deno.Kv,
  selector: Deno.KvListSelector,
  limit = 500,
): Promise<number> {
  let deleted = 0;
  for (;;) {
    const keys: Deno.KvKey[] = [];
    for await (const e of kv.list(selector, { limit, batchSize: limit })) keys.push(e.key);
    if (keys.length === 0) return deleted;
    const op = kv.atomic();
    for (const k of keys) op.delete(k);
    await op.commit();
    deleted += keys.length;
    if (keys.length < limit) return deleted;
  }
}

/** The chunks of a generation that was reserved or written but never flipped. */
function generationSelector(topic: string, generation: number): Deno.KvListSelector {
  return { prefix: statePrefix(topic, generation) };
}

/**
 * Merges the base and the deltas present now into a new base, streaming (one chunk per source in
 * memory), and flips the pointer to it, keeping the deltas appended meanwhile. Fenced on the guard
 * and on the pointer (for the reservation and the flip); yields to the event loop between ops.
 * Returns null when there is nothing to compact. Throws CheckpointConflictError when the lease
 * (guard) is lost or another run rewrote the pointer; the live generation is never touched.
 */
export async function compact(
  kv: Deno.Kv,
  topic: string,
  options: CompactOptions = {},
): Promise<CompactResult | null> {
  const t0 = performance.now();
  let ops = 0;
  // 1. Reserve a generation (so concurrent deltas allocate after it).
  let start: StoredCheckpoint;
  let gen: number;
  const inQueue = options.serialize ?? (<T>(fn: () => Promise<T>) => fn());
  for (let attempt = 0;; attempt++) {
    const step = await inQueue(async () => {
      const cur = await readCheckpoint(kv, topic);
      if (cur === null) return null;
      const p = cur.pointer;
      if (p.deltas.length === 0 && p.base?.format !== "json-v1") return null;
      if (p.compacting !== null) await rangeDelete(kv, generationSelector(topic, p.compacting));
      const g = p.nextGeneration;
      const reserved: CheckpointPointer = { ...p, nextGeneration: g + 1, compacting: g };
      const op = fence(kv.atomic(), cur.versionstamp, options.guard, topic);
      const res = await commitOk(op.set(checkpointKey(topic), reserved));
      return { g, reserved, res };
    });
    if (step === null) return null;
    if (step.res !== null) {
      ops++;
      gen = step.g;
      start = { pointer: step.reserved, versionstamp: step.res.versionstamp, storedVersion: 2 };
      break;
    }
    if (attempt >= 20) throw new CheckpointConflictError(topic, "could not reserve a generation");
    // Another writer moved the pointer between our read and our commit: back off (with jitter)
    // so that its next write does not land in the same gap again.
    await new Promise((r) => setTimeout(r, Math.random() * Math.min(500, 5 * 2 ** attempt)));
    if (!(await guardHolds(kv, options.guard))) {
      throw new CheckpointConflictError(topic, "the guard entry changed (lease lost)");
    }
  }
  // A delta that raced the reservation may have written chunks at this generation: clear them.
  await rangeDelete(kv, generationSelector(topic, gen));
  const merged = start.pointer.deltas.length;
  const sources = liveSegments(start.pointer);
  const yieldMs = options.yieldMs ?? 0;
  const batcher = chunkBatcher(kv, topic, {
    generation: gen,
    versionstamp: undefined,
    guard: options.guard,
    opBytes: options.opBytes ?? OP_MAX_BYTES,
    afterOp: () => new Promise((r) => setTimeout(r, yieldMs)),
  });
  const abort = async (detail: string): Promise<never> => {
    await deleteSegments(kv, topic, [segmentOf(gen, batcher.written, 0, 0)]);
    throw new CheckpointConflictError(topic, detail);
  };
  // 2. Stream the merge into the new base.
  const its = sources.map((s) => segmentRecords(kv, topic, s));
  const cursor = new MergeCursor(its.length);
  const enc = new ChunkEncoder({ chunkBytes: options.chunkBytes });
  for (;;) {
    const r = cursor.next();
    if (r === null) break;
    if (typeof r === "number") {
      const n = await its[r].next();
      cursor.feed(r, n.done ? null : n.value);
      continue;
    }
    const c = enc.add(r);
    if (c !== null && !(await batcher.add(c))) await abort("guard failed during compaction");
  }
  const last = enc.finish();
  if (last !== null && !(await batcher.add(last))) await abort("guard failed during compaction");
  const base = segmentOf(gen, enc.chunks, enc.bytes, enc.records);
  // 3. Flip onto whatever the pointer is now (deltas may have been appended).
  let first = true;
  for (let attempt = 0;; attempt++) {
    const flip = await inQueue(async () => {
      const cur = await readCheckpoint(kv, topic);
      const p = cur?.pointer;
      if (
        cur === null || p === undefined || p.compacting !== gen ||
        !sameSegment(p.base, start.pointer.base) ||
        p.deltas.length < merged ||
        p.deltas.slice(0, merged).some((d, i) =>
          d.generation !== start.pointer.deltas[i].generation
        )
      ) {
        return await abort("the pointer was rewritten during compaction");
      }
      const flipped: CheckpointPointer = {
        ...p,
        base,
        deltas: p.deltas.slice(merged),
        garbage: [...p.garbage, ...sources],
        compacting: null,
      };
      const res = await batcher.finish({
        set: [{ key: checkpointKey(topic), value: flipped }],
        versionstamp: cur.versionstamp,
        beforeFlip: first ? options.beforeFlip : undefined,
      });
      return { flipped, res };
    });
    first = false;
    if (flip.res !== null) {
      ops += batcher.ops;
      let checkpoint: StoredCheckpoint = {
        pointer: flip.flipped,
        versionstamp: flip.res.versionstamp,
        storedVersion: 2,
      };
      const cleanup = await deleteSegments(kv, topic, flip.flipped.garbage);
      const tidy = await tidyGarbage(kv, topic, checkpoint, cleanup, options.guard);
      checkpoint = tidy.checkpoint;
      ops += tidy.ops;
      return { checkpoint, base, merged, ops, ms: performance.now() - t0, cleanup };
    }
    if (attempt >= 20) await abort("too many concurrent flips");
    if (!(await guardHolds(kv, options.guard))) await abort("guard failed during compaction");
    await new Promise((r) => setTimeout(r, Math.random() * Math.min(500, 5 * 2 ** attempt)));
  }
}

/**
 * Startup cleanup: removes the chunks a crashed writer left (generations >= nextGeneration, and a
 * reserved `compacting` generation) by a range delete bounded to those generations, and deletes
 * the pointer's garbage by key; clears both from the pointer (fenced on it and the guard). With
 * no pointer, every state chunk is an orphan. A v1 pointer keeps the v1 rule (every generation
 * but the live one goes). Garbage deletion is best-effort (returned, not thrown).
 */
export async function cleanupOrphans(
  kv: Deno.Kv,
  topic: string,
  options: { guard?: CheckpointGuard } = {},
): Promise<OrphanCleanup> {
  const cp = await readCheckpoint(kv, topic);
  const none: CleanupResult = { deleted: [], failed: [], error: null };
  if (cp === null) {
    const removed = await rangeDelete(kv, { prefix: statePrefix(topic) });
    return { checkpoint: null, removedChunks: removed, cleanup: none };
  }
  const p = cp.pointer;
  if (cp.storedVersion === 1) {
    let removed = await rangeDelete(kv, {
      prefix: statePrefix(topic),
      end: statePrefix(topic, p.nextGeneration - 1),
    });
    removed += await rangeDelete(kv, {
      prefix: statePrefix(topic),
      start: statePrefix(topic, p.nextGeneration),
    });
    return { checkpoint: cp, removedChunks: removed, cleanup: none };
  }
  let removed = await rangeDelete(kv, {
    prefix: statePrefix(topic),
    start: statePrefix(topic, p.nextGeneration),
  });
  if (p.compacting !== null) {
    removed += await rangeDelete(kv, generationSelector(topic, p.compacting));
  }
  const cleanup = p.garbage.length > 0 ? await deleteSegments(kv, topic, p.garbage) : none;
  if (p.compacting === null && cleanup.deleted.length === 0) {
    return { checkpoint: cp, removedChunks: removed, cleanup };
  }
  const gone = new Set(cleanup.deleted.map((s) => s.generation));
  const tidy: CheckpointPointer = {
    ...p,
    compacting: null,
    garbage: p.garbage.filter((g) => !gone.has(g.generation)),
  };
  const res = await commitOk(
    fence(kv.atomic(), cp.versionstamp, options.guard, topic).set(checkpointKey(topic), tidy),
  );
  if (res === null) throw new CheckpointConflictError(topic, "during the startup cleanup");
  return {
    checkpoint: { pointer: tidy, versionstamp: res.versionstamp, storedVersion: 2 },
    removedChunks: removed,
    cleanup,
  };
}

/**
 * Deletes the pointer of `topic` (fenced on `previous` and the guard when given), then its
 * segments by key and the orphan generations by bounded range delete (for --from-beginning).
 * Returns the number of chunks deleted.
 */
export async function deleteCheckpoint(
  kv: Deno.Kv,
  topic: string,
  options: { previous?: StoredCheckpoint | null; guard?: CheckpointGuard } = {},
): Promise<number> {
  const cp = options.previous === undefined ? await readCheckpoint(kv, topic) : options.previous;
  const op = fence(kv.atomic(), cp?.versionstamp ?? null, options.guard, topic);
  if ((await commitOk(op.delete(checkpointKey(topic)))) === null) {
    throw new CheckpointConflictError(topic, "while deleting it");
  }
  if (cp === null || cp.storedVersion === 1) {
    // No pointer before, or a v1 one: every chunk under the prefix is now unreferenced.
    return await rangeDelete(kv, { prefix: statePrefix(topic) });
  }
  const p = cp.pointer;
  const segments = [...liveSegments(p), ...p.garbage];
  const res = await deleteSegments(kv, topic, segments);
  if (res.error !== null) throw res.error;
  let n = res.deleted.reduce((k, s) => k + s.chunks, 0);
  n += await rangeDelete(kv, {
    prefix: statePrefix(topic),
    start: statePrefix(topic, p.nextGeneration),
  });
  if (p.compacting !== null) n += await rangeDelete(kv, generationSelector(topic, p.compacting));
  return n;
}
