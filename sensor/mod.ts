/**
 * The sensor's public surface: the pure launch decision and crash-loop
 * backoff, the aggregator launcher and one sensor check over Kafka and KV.
 * @module
 */

export {
  backoffUntil,
  crashBackoffMs,
  type CrashBackoffOptions,
  type CrashState,
  decide,
  type DecideInput,
  type Decision,
  decisionFields,
  type DecisionKind,
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  EXIT_LEASE_HELD,
  HEALTHY,
  type LeaseInfo,
  leaseIsLive,
  nextCrashState,
  offsetsMismatch,
  type PartitionOffsets,
  readFrom,
  unreadOf,
} from "./sensor.ts";
export {
  AGGREGATE_BINARY,
  type AggregateCommand,
  type AggregateCommandOptions,
  buildAggregateCommand,
  projectPaths,
  type RunningChild,
  spawnAggregator,
  type SpawnOptions,
} from "./launcher.ts";
export {
  type CheckResult,
  createSensor,
  readPartitions,
  type Sensor,
  type SensorDeps,
  type SensorOptions,
} from "./run.ts";
export {
  crashKey,
  launchesKey,
  type LaunchRecord,
  MAX_LAUNCHES,
  readCrash,
  readIdentityMismatch,
  readLaunches,
  type StoredPointerValue,
} from "./_kv.ts";
