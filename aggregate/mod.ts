/**
 * The aggregator's public surface: the run loop, its KV layout (aggregate/kv_layout.ts: lease,
 * checkpoint, state segments, progress, identity) with read helpers for the sensor, `offsets`
 * and `status`, the incremental checkpoints and their state codec, and the PostgreSQL sink.
 *
 * KV layout (per topic):
 * - `["tickpipe", topic, "lease"]` → {@linkcode LeaseRecord}
 * - `["tickpipe", topic, "checkpoint"]` → {@linkcode CheckpointPointer} (base + deltas)
 * - `["tickpipe", topic, "state", generation, i]` → state segment chunk (≤ 60 KiB)
 * - `["tickpipe", topic, "progress"]` → latest {@linkcode AggregatorProgress}
 * - `["tickpipe", topic, "identity"]` → {@linkcode IdentityMismatch}
 * @module
 */

export {
  type CheckpointPointer,
  type CheckpointSummary,
  checkpointSummary,
  crashKey,
  type EngineConfig,
  type Fingerprint,
  identityKey,
  type IdentityMismatch,
  type IdentityMismatchReason,
  isPointerV2,
  launchesKey,
  type LegacyCheckpointPointer,
  liveSegments,
  type Segment,
  stateChunkKey,
  type StoredPointerValue,
  type TopicIdentity,
} from "./kv_layout.ts";
export {
  ChunkEncoder,
  type ChunkEncoderOptions,
  compareRecords,
  decodeChunk,
  decodeChunks,
  encodeRecords,
  kindRank,
  MAX_CHUNK_BYTES,
  MergeCursor,
  mergeSorted,
  sortDelta,
  sortRecords,
  STATE_CODEC_VERSION,
  StateCodecError,
  stateKey,
  StateOrderError,
  type StateRecord,
} from "./state_codec.ts";
export {
  acquireLease,
  DEFAULT_LEASE_TTL_MS,
  type HeldLease,
  isLeaseLive,
  KV_PREFIX,
  LeaseHeldError,
  leaseKey,
  LeaseLostError,
  type LeaseRecord,
  type LeaseRequest,
  type ProcessLock,
  processLockPath,
  readLease,
  releaseLease,
  renewLease,
  tryProcessLock,
} from "./lease.ts";
export {
  CheckpointConflictError,
  CheckpointCorruptError,
  type CheckpointGuard,
  type CheckpointInput,
  checkpointKey,
  type CheckpointMeta,
  CHUNK_BYTES,
  cleanupOrphans,
  type CleanupResult,
  compact,
  type CompactOptions,
  type CompactPolicy,
  type CompactResult,
  convertLegacyPointer,
  deleteCheckpoint,
  deleteSegments,
  type OrphanCleanup,
  readCheckpoint,
  readState,
  recordsFromV1Snapshot,
  shouldCompact,
  statePrefix,
  type StateRead,
  type StoredCheckpoint,
  V1_DEFAULT_ENGINE,
  writeBase,
  type WriteBaseOptions,
  writeCheckpoint,
  writeDelta,
  type WriteOptions,
  type WriteResult,
} from "./checkpoint.ts";
export {
  type AggregatorProgress,
  type ProgressDurations,
  progressKey,
  readProgress,
} from "./progress.ts";
export {
  classifyDbError,
  compareVersions,
  type DbErrorClass,
  type Rejection,
  type SinkBatch,
  SinkError,
  type SinkResult,
  SinkUnavailableError,
  writeBatch,
  type WriteBatchOptions,
} from "./sink.ts";
export {
  AGGREGATOR_DEFAULTS,
  type AggregatorDeps,
  type AggregatorHandle,
  type AggregatorOptions,
  DEFAULT_GROUP_ID,
  durationText,
  EngineConfigMismatchError,
  type ExitReason,
  type ExitResult,
  identityProblem,
  resolveAggregatorOptions,
  runAggregator,
} from "./aggregator.ts";
export { type IdentityProblem, startSource, TopicIdentityError } from "./source.ts";
export { RecordParser } from "./record.ts";
export { AGGREGATOR_FLAGS, type AggregatorFlags, aggregatorOptionsOf } from "./options.ts";
