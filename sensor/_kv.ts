/**
 * The sensor's view of the KV layout the aggregator writes (lease,
 * checkpoint, progress) plus the sensor's own records (launches, crash
 * state). A thin adapter over the documented contract.
 * @module
 */

import { isKvBusy, withKvRetry } from "../common/kv.ts";
import {
  checkpointKey,
  crashKey,
  identityKey,
  type IdentityMismatch,
  KV_PREFIX,
  launchesKey,
  leaseKey,
  progressKey,
  type StoredPointerValue,
} from "../aggregate/kv_layout.ts";
import type { CrashState, LeaseInfo } from "./sensor.ts";
import { HEALTHY } from "./sensor.ts";

// One KV layout (aggregate/kv_layout.ts) for the aggregator, the sensor, offsets and status.
export {
  checkpointKey,
  crashKey,
  isKvBusy,
  KV_PREFIX,
  launchesKey,
  leaseKey,
  progressKey,
  type StoredPointerValue,
  withKvRetry,
};

/** One launch of the aggregator by a sensor. */
export interface LaunchRecord {
  /** Launch time (epoch ms). */
  launchedAt: number;
  /** Child process id. */
  pid: number;
  /** Sensor that launched it (`hostname:pid`). */
  sensor: string;
  /** Exit code, null while running or when not awaited. */
  exitCode: number | null;
  /** Exit time (epoch ms), null while running or when not awaited. */
  exitedAt: number | null;
}

/** Launch records kept in KV. */
export const MAX_LAUNCHES = 20;

/** Reads the lease (live or not yet purged); null when absent. */
export async function readLeaseEntry(kv: Deno.Kv, topic: string): Promise<LeaseInfo | null> {
  return (await withKvRetry(() => kv.get<LeaseInfo>(leaseKey(topic)))).value ?? null;
}

/** Reads the checkpoint pointer as stored (v2, or v1 before an upgrade); null when none. */
export async function readCheckpointEntry(
  kv: Deno.Kv,
  topic: string,
): Promise<StoredPointerValue | null> {
  return (await withKvRetry(() => kv.get<StoredPointerValue>(checkpointKey(topic)))).value ??
    null;
}

/** Reads the topic identity mismatch the aggregator recorded, or null. */
export async function readIdentityMismatch(
  kv: Deno.Kv,
  topic: string,
): Promise<IdentityMismatch | null> {
  return (await withKvRetry(() => kv.get<IdentityMismatch>(identityKey(topic)))).value ?? null;
}

/** Reads the crash state (healthy when absent). */
export async function readCrash(kv: Deno.Kv, topic: string): Promise<CrashState> {
  return (await withKvRetry(() => kv.get<CrashState>(crashKey(topic)))).value ?? HEALTHY;
}

/** Reads the launch history, newest last. */
export async function readLaunches(kv: Deno.Kv, topic: string): Promise<LaunchRecord[]> {
  return (await withKvRetry(() => kv.get<LaunchRecord[]>(launchesKey(topic)))).value ?? [];
}

/** Applies `update` to the launch history atomically (retries on conflicts), keeping the last N. */
export async function updateLaunches(
  kv: Deno.Kv,
  topic: string,
  update: (list: LaunchRecord[]) => LaunchRecord[],
): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const cur = await withKvRetry(() => kv.get<LaunchRecord[]>(launchesKey(topic)));
    const next = update([...(cur.value ?? [])]).slice(-MAX_LAUNCHES);
    const r = await withKvRetry(() =>
      kv.atomic().check(cur).set(launchesKey(topic), next).commit()
    );
    if (r.ok) return;
  }
  throw new Error(`Cannot update launch history of topic "${topic}": too many conflicts`);
}

/** Applies `update` to the crash state atomically (retries on conflicts). */
export async function updateCrash(
  kv: Deno.Kv,
  topic: string,
  update: (s: CrashState) => CrashState,
): Promise<CrashState> {
  for (let i = 0; i < 20; i++) {
    const cur = await withKvRetry(() => kv.get<CrashState>(crashKey(topic)));
    const next = update(cur.value ?? HEALTHY);
    const r = await withKvRetry(() => kv.atomic().check(cur).set(crashKey(topic), next).commit());
    if (r.ok) return next;
  }
  throw new Error(`Cannot update crash state of topic "${topic}": too many conflicts`);
}
