/**
 * Checkpoints in Deno KV: a pointer `["tickpipe", topic, "checkpoint"]` with offsets and
 * watermarks, and the engine state as byte chunks `["tickpipe", topic, "state", generation, i]`.
 * A new generation's chunks are written first, then ONE atomic op flips the pointer (checking the
 * old pointer's versionstamp, and optionally the lease's), then the old chunks are deleted. A crash
 * at any step leaves the previous generation valid.
 * @module
 */

import { KV_PREFIX } from "./lease.ts";

/** Max bytes of one state chunk (Deno KV values are limited to 64 KiB). */
export const CHUNK_BYTES = 60 * 1024;
/** Budget of one atomic op: Deno KV allows 1000 mutations and 800 KiB per op. */
const OP_MAX_MUTATIONS = 1000;
const OP_MAX_BYTES = 780 * 1024;

/** The checkpoint pointer stored at `["tickpipe", topic, "checkpoint"]`. */
export interface CheckpointPointer {
  /** State generation the pointer refers to (increases by one per checkpoint). */
  generation: number;
  /** Run id of the aggregator that wrote it. */
  runId: string;
  /** Batch (trigger) id that wrote it. */
  batchId: number;
  /** When it was committed (epoch ms). */
  committedAt: number;
  /** Next offset to read per partition (decimal string keys). */
  offsets: Record<string, number>;
  /** Watermark per partition (epoch ms), null before any tick. */
  watermarks: Record<string, number | null>;
  /** Number of state chunks. */
  chunks: number;
  /** Total state size in bytes. */
  stateBytes: number;
}

/** A pointer as read back, with its KV versionstamp. */
export interface StoredCheckpoint {
  /** The pointer. */
  pointer: CheckpointPointer;
  /** Versionstamp of the pointer entry. */
  versionstamp: string;
}

/** What to write: everything but the generation and chunk counts, plus the state bytes. */
export interface CheckpointInput {
  /** Run id. */
  runId: string;
  /** Batch id. */
  batchId: number;
  /** Commit time (epoch ms). */
  committedAt: number;
  /** Next offset per partition. */
  offsets: Record<string, number>;
  /** Watermark per partition. */
  watermarks: Record<string, number | null>;
  /** Serialized state (any bytes; JSON in practice). */
  state: Uint8Array;
}

/** Options for {@linkcode writeCheckpoint}. */
export interface WriteCheckpointOptions {
  /** The pointer read before (null when there is none); the flip fails if it changed. */
  previous: StoredCheckpoint | null;
  /** Extra check in the flip (e.g. the lease entry and our versionstamp of it). */
  guard?: Deno.AtomicCheck;
  /** Extra key/value set in the same flip (e.g. the latest progress). */
  alsoSet?: { key: Deno.KvKey; value: unknown };
  /** Chunk size (default 60 KiB; for tests). */
  chunkBytes?: number;
  /** Test hook: called after the chunks are written and before the flip. */
  beforeFlip?: () => Promise<void> | void;
}

/** Raised when the pointer (or the guard) changed under us: someone else checkpointed. */
export class CheckpointConflictError extends Error {
  /** Creates the error naming the topic. */
  constructor(topic: string) {
    super(`Checkpoint of topic "${topic}" changed concurrently (or the lease was lost)`);
    this.name = "CheckpointConflictError";
  }
}

/** Raised when the state chunks of a pointer are missing or inconsistent. */
export class CheckpointCorruptError extends Error {
  /** Creates the error naming the generation. */
  constructor(message: string) {
    super(message);
    this.name = "CheckpointCorruptError";
  }
}

/** KV key of the checkpoint pointer of `topic`. */
export function checkpointKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "checkpoint"];
}

/** KV key prefix of the state chunks of `topic` (optionally of one generation). */
export function statePrefix(topic: string, generation?: number): Deno.KvKey {
  return generation === undefined
    ? [KV_PREFIX, topic, "state"]
    : [KV_PREFIX, topic, "state", generation];
}

/** Reads the checkpoint pointer of `topic`, or null when there is none. */
export async function readCheckpoint(kv: Deno.Kv, topic: string): Promise<StoredCheckpoint | null> {
  const e = await kv.get<CheckpointPointer>(checkpointKey(topic));
  if (e.value === null || e.versionstamp === null) return null;
  return { pointer: e.value, versionstamp: e.versionstamp };
}

/**
 * Reads the pointer and the state bytes it points to. Retries when the chunks vanish under a
 * concurrent checkpoint; throws CheckpointCorruptError when they stay inconsistent.
 */
export async function readCheckpointState(
  kv: Deno.Kv,
  topic: string,
): Promise<{ checkpoint: StoredCheckpoint; state: Uint8Array } | null> {
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const cp = await readCheckpoint(kv, topic);
    if (cp === null) return null;
    const { generation, chunks, stateBytes } = cp.pointer;
    const parts: Uint8Array[] = [];
    for await (const e of kv.list<Uint8Array>({ prefix: statePrefix(topic, generation) })) {
      parts.push(e.value);
    }
    // list() returns keys in order: [.., generation, 0], [.., generation, 1], ...
    const total = parts.reduce((n, p) => n + p.byteLength, 0);
    if (parts.length === chunks && total === stateBytes) {
      const state = new Uint8Array(total);
      let at = 0;
      for (const p of parts) {
        state.set(p, at);
        at += p.byteLength;
      }
      return { checkpoint: cp, state };
    }
    lastError = new CheckpointCorruptError(
      `Checkpoint generation ${generation} of topic "${topic}" has ${parts.length} chunks ` +
        `(${total} bytes), expected ${chunks} (${stateBytes} bytes)`,
    );
  }
  throw lastError!;
}

/** Splits `bytes` into chunks of at most `size` bytes (at least one chunk, maybe empty). */
export function splitChunks(bytes: Uint8Array, size = CHUNK_BYTES): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength; at += size) out.push(bytes.slice(at, at + size));
  return out;
}

/**
 * Writes a new checkpoint generation and flips the pointer to it atomically, then deletes the
 * other generations. Throws CheckpointConflictError when the pointer or guard changed.
 */
export async function writeCheckpoint(
  kv: Deno.Kv,
  topic: string,
  input: CheckpointInput,
  options: WriteCheckpointOptions,
): Promise<StoredCheckpoint> {
  const previous = options.previous;
  const generation = (previous?.pointer.generation ?? 0) + 1;
  const chunks = splitChunks(input.state, options.chunkBytes ?? CHUNK_BYTES);
  // 1. The new generation's chunks, in as few atomic ops as the limits allow. Every op checks
  // that the pointer (and the guard) did not move: a stale writer must not overwrite the chunks
  // of the live generation (which may be its previous + 1).
  const fence = (o: Deno.AtomicOperation) => {
    o.check({ key: checkpointKey(topic), versionstamp: previous?.versionstamp ?? null });
    if (options.guard) o.check(options.guard);
    return o;
  };
  let op = fence(kv.atomic());
  let n = 0;
  let bytes = 0;
  for (const [i, chunk] of chunks.entries()) {
    const size = chunk.byteLength + 128;
    if (n > 0 && (n + 1 > OP_MAX_MUTATIONS || bytes + size > OP_MAX_BYTES)) {
      await commitOrThrow(op, topic, "state chunks");
      op = fence(kv.atomic());
      n = 0;
      bytes = 0;
    }
    op.set([...statePrefix(topic, generation), i], chunk);
    n++;
    bytes += size;
  }
  if (n > 0) await commitOrThrow(op, topic, "state chunks");
  await options.beforeFlip?.();
  // 2. One atomic op flips the pointer (with offsets and watermarks).
  const pointer: CheckpointPointer = {
    generation,
    runId: input.runId,
    batchId: input.batchId,
    committedAt: input.committedAt,
    offsets: input.offsets,
    watermarks: input.watermarks,
    chunks: chunks.length,
    stateBytes: input.state.byteLength,
  };
  const flip = fence(kv.atomic());
  flip.set(checkpointKey(topic), pointer);
  if (options.alsoSet) flip.set(options.alsoSet.key, options.alsoSet.value);
  const res = await flip.commit();
  if (!res.ok) throw new CheckpointConflictError(topic);
  // 3. Old (and any unflipped garbage) generations go.
  await deleteStaleGenerations(kv, topic, generation);
  return { pointer, versionstamp: res.versionstamp };
}

/** Deletes every state chunk of `topic` not in generation `keep`; returns how many were deleted. */
export async function deleteStaleGenerations(
  kv: Deno.Kv,
  topic: string,
  keep: number | null,
): Promise<number> {
  let op = kv.atomic();
  let n = 0;
  let deleted = 0;
  for await (const e of kv.list({ prefix: statePrefix(topic) })) {
    if (e.key[3] === keep) continue;
    op.delete(e.key);
    n++;
    if (n >= 500) {
      await op.commit();
      deleted += n;
      op = kv.atomic();
      n = 0;
    }
  }
  if (n > 0) {
    await op.commit();
    deleted += n;
  }
  return deleted;
}

/** Deletes the checkpoint pointer and all state chunks of `topic` (for --from-beginning). */
export async function deleteCheckpoint(kv: Deno.Kv, topic: string): Promise<void> {
  await kv.delete(checkpointKey(topic));
  await deleteStaleGenerations(kv, topic, null);
}

async function commitOrThrow(op: Deno.AtomicOperation, topic: string, _what: string) {
  const res = await op.commit();
  if (!res.ok) throw new CheckpointConflictError(topic);
}
