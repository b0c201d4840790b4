/**
 * The one description of tickpipe's Deno KV layout: every key, the value stored under it, and the
 * one lease-liveness rule. Pure (no I/O): the aggregator, the sensor, `offsets` and `status` read
 * and write through these names instead of spelling keys or rules themselves.
 *
 * Keys (per topic, prefix `["tickpipe", topic]`):
 * - `lease` → {@linkcode LeaseRecord}: the aggregator holding the topic; live iff `expiresAt > now`.
 * - `checkpoint` → {@linkcode CheckpointPointer} (v2; a v1 {@linkcode LegacyCheckpointPointer} is
 *   still read): offsets, watermarks and the state segments (base + deltas).
 * - `state`, generation, i → one chunk (<= 60 KiB) of the segment of that generation: binary
 *   `StateRecord`s (aggregate/state_codec.ts), or v1 JSON for a `json-v1` segment.
 * - `progress` → the latest aggregator progress record (aggregate/progress.ts).
 * - `identity` → {@linkcode IdentityMismatch}: a topic identity mismatch found by the aggregator.
 * - `sensor`, `launches` → the sensor's launch history; `sensor`, `crash` → its crash-loop state.
 * @module
 */

/** Every tickpipe key starts with this prefix, then the topic. */
export const KV_PREFIX = "tickpipe" as const;

/** KV key of the aggregator lease of `topic`. */
export function leaseKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "lease"];
}

/** KV key of the checkpoint pointer of `topic`. */
export function checkpointKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "checkpoint"];
}

/** KV key prefix of the state chunks of `topic`, or of one generation's chunks. */
export function statePrefix(topic: string, generation?: number): Deno.KvKey {
  return generation === undefined
    ? [KV_PREFIX, topic, "state"]
    : [KV_PREFIX, topic, "state", generation];
}

/** KV key of chunk `index` of the state segment of `generation`. */
export function stateChunkKey(topic: string, generation: number, index: number): Deno.KvKey {
  return [KV_PREFIX, topic, "state", generation, index];
}

/** KV key of the latest aggregator progress of `topic`. */
export function progressKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "progress"];
}

/** KV key of the topic identity mismatch record of `topic`. */
export function identityKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "identity"];
}

/** KV key of the sensor's launch history of `topic`. */
export function launchesKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "sensor", "launches"];
}

/** KV key of the sensor's crash-loop state of `topic`. */
export function crashKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "sensor", "crash"];
}

/** The lease value stored at `["tickpipe", topic, "lease"]`. */
export interface LeaseRecord {
  /** Holder id (a UUID per aggregator run). */
  holder: string;
  /** Process id of the holder. */
  pid: number;
  /** Host name of the holder. */
  hostname: string;
  /** When the holder first acquired the lease (epoch ms). */
  acquiredAt: number;
  /** The lease is live while `expiresAt > now` (epoch ms), free from `now >= expiresAt` on. */
  expiresAt: number;
  /** The holder also holds the host-local process lock (so its death is detectable). */
  processLocked?: boolean;
}

/** THE lease-liveness rule: live iff `expiresAt > now` (free at the instant it expires). */
export function isLeaseLive(lease: Pick<LeaseRecord, "expiresAt">, now: number): boolean {
  return lease.expiresAt > now;
}

/** One state segment: the chunks `["tickpipe", topic, "state", generation, 0..chunks-1]`. */
export interface Segment {
  /** Generation number (unique per topic, never reused once flipped). */
  generation: number;
  /** Number of chunks (keys 0..chunks-1). */
  chunks: number;
  /** Total bytes of the chunks. */
  bytes: number;
  /** Records encoded (0 when unknown, for a `json-v1` segment). */
  records: number;
  /** Absent: binary StateRecords. `json-v1`: a v1 engine snapshot (JSON), from an upgrade. */
  format?: "json-v1";
}

/** The engine settings a state was built with. */
export interface EngineConfig {
  /** Window resolutions in ms. */
  windows: number[];
  /** Watermark delay in ms. */
  watermarkDelayMs: number;
}

/** What a partition looked like at a checkpoint, to recognise the topic later. */
export interface Fingerprint {
  /** Offset of the fingerprinted record. */
  offset: number;
  /** Its Kafka timestamp (decimal string, as kafkajs gives it). */
  timestamp: string;
  /** Hash of its key (hex). */
  keyHash: string;
  /** Length of its value in bytes. */
  valueLength: number;
}

/** The topic a checkpoint was made against. */
export interface TopicIdentity {
  /** Partition count. */
  partitions: number;
  /** Per partition (decimal string keys): a record it held, or null when none was read. */
  fingerprints: Record<string, Fingerprint | null>;
}

/** The checkpoint pointer (v2) stored at `["tickpipe", topic, "checkpoint"]`. */
export interface CheckpointPointer {
  /** Format version. */
  version: 2;
  /** Run id of the aggregator that wrote it. */
  runId: string;
  /** Batch (trigger) id that wrote it. */
  batchId: number;
  /** When it was committed (epoch ms). */
  committedAt: number;
  /** Next offset to read per partition (decimal string keys). */
  offsets: Record<string, number>;
  /** Effective watermark per partition (epoch ms), null before any tick. */
  watermarks: Record<string, number | null>;
  /** The base segment (null: empty state). */
  base: Segment | null;
  /** Delta segments, oldest first: state = base + deltas in order (latest record wins). */
  deltas: Segment[];
  /** Next generation to allocate; chunks of generations >= this are orphans of a crash. */
  nextGeneration: number;
  /** Retired segments still to delete (by key), best-effort. */
  garbage: Segment[];
  /** Generation reserved by a compaction in progress (its chunks are orphans if it dies). */
  compacting: number | null;
  /** Engine settings of the state. */
  engine: EngineConfig;
  /** The topic the offsets belong to. */
  identity: TopicIdentity;
  /** Open windows in the state. */
  openWindows: number;
  /** When idle finalization next becomes possible (epoch ms), null when not pending. */
  finalizeDueAt: number | null;
  /**
   * True when open window rows were held back from PostgreSQL (aggregate/deferred.ts): a restart
   * from this pointer re-sends every restored window. Absent: nothing held back.
   */
  openRowsDeferred?: true;
}

/** The v1 pointer (before incremental checkpoints): one JSON snapshot in `chunks` chunks. */
export interface LegacyCheckpointPointer {
  /** State generation (increased by one per checkpoint). */
  generation: number;
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
  /** Chunks of the JSON snapshot. */
  chunks: number;
  /** Bytes of the JSON snapshot. */
  stateBytes: number;
}

/** Whatever may be stored at the checkpoint key (v2, or v1 from before an upgrade). */
export type StoredPointerValue = CheckpointPointer | LegacyCheckpointPointer;

/** True when `value` is a v2 pointer. */
export function isPointerV2(value: StoredPointerValue): value is CheckpointPointer {
  return (value as CheckpointPointer).version === 2;
}

/** A checkpoint as operators see it (offsets, status), for either pointer version. */
export interface CheckpointSummary {
  /** Pointer format version. */
  version: 1 | 2;
  /** Latest generation written (v2: nextGeneration - 1). */
  generation: number;
  /** Run id. */
  runId: string;
  /** Batch id. */
  batchId: number;
  /** Commit time (epoch ms). */
  committedAt: number;
  /** Chunks of the live state (base + deltas). */
  chunks: number;
  /** Bytes of the live state (base + deltas). */
  stateBytes: number;
  /** Delta segments on top of the base. */
  deltas: number;
}

/** Summarises a stored pointer of either version (pure). */
export function checkpointSummary(value: StoredPointerValue): CheckpointSummary {
  if (!isPointerV2(value)) {
    return {
      version: 1,
      generation: value.generation,
      runId: value.runId,
      batchId: value.batchId,
      committedAt: value.committedAt,
      chunks: value.chunks,
      stateBytes: value.stateBytes,
      deltas: 0,
    };
  }
  const live = liveSegments(value);
  return {
    version: 2,
    generation: value.nextGeneration - 1,
    runId: value.runId,
    batchId: value.batchId,
    committedAt: value.committedAt,
    chunks: live.reduce((n, s) => n + s.chunks, 0),
    stateBytes: live.reduce((n, s) => n + s.bytes, 0),
    deltas: value.deltas.length,
  };
}

/** The segments the state of `pointer` is made of: base (if any), then the deltas. */
export function liveSegments(pointer: CheckpointPointer): Segment[] {
  return pointer.base === null ? [...pointer.deltas] : [pointer.base, ...pointer.deltas];
}

/** Why the aggregator refused a topic as not the one its checkpoint was made against. */
export type IdentityMismatchReason =
  | "partition-count"
  | "offset-beyond-end"
  | "offset-below-start"
  | "fingerprint";

/** The record stored at `["tickpipe", topic, "identity"]` when the topic changed under KV. */
export interface IdentityMismatch {
  /** What did not match. */
  reason: IdentityMismatchReason;
  /** The partition concerned, null for a partition-count mismatch. */
  partition: number | null;
  /** What the checkpoint expected (offset, partition count or fingerprint). */
  expected: number | Fingerprint | null;
  /** What Kafka has now. */
  found: number | Fingerprint | null;
  /** Human-readable message (starts with a capital letter, names the values). */
  message: string;
  /** When it was found (epoch ms). */
  detectedAt: number;
  /** Run id of the aggregator that found it. */
  runId: string;
}
