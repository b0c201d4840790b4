/**
 * The aggregator's public surface: the run loop, its KV layout (lease, checkpoint, progress)
 * with read helpers for the sensor and the `offsets` command, and the PostgreSQL sink.
 *
 * KV layout (per topic):
 * - `["tickpipe", topic, "lease"]` → {@linkcode LeaseRecord}
 * - `["tickpipe", topic, "checkpoint"]` → {@linkcode CheckpointPointer}
 * - `["tickpipe", topic, "state", generation, i]` → state chunk bytes (≤ 60 KiB)
 * - `["tickpipe", topic, "progress"]` → latest {@linkcode AggregatorProgress}
 * @module
 */

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
  type CheckpointInput,
  checkpointKey,
  type CheckpointPointer,
  CHUNK_BYTES,
  deleteCheckpoint,
  deleteStaleGenerations,
  readCheckpoint,
  readCheckpointState,
  statePrefix,
  type StoredCheckpoint,
  writeCheckpoint,
  type WriteCheckpointOptions,
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
  type AggregatorDeps,
  type AggregatorHandle,
  type AggregatorOptions,
  DEFAULT_GROUP_ID,
  type ExitReason,
  parseTickRecord,
  runAggregator,
} from "./aggregator.ts";
