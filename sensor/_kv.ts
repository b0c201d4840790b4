/**
 * The sensor's view of the KV layout the aggregator writes (lease,
 * checkpoint, progress) plus the sensor's own records (launches, crash
 * state). A thin adapter over the documented contract.
 * @module
 */

import { backoffDelay, sleep } from "../common/backoff.ts";
import type { CrashState, LeaseInfo } from "./sensor.ts";
import { HEALTHY } from "./sensor.ts";

/** First element of every tickpipe KV key. */
export const KV_PREFIX = "tickpipe";

/** The aggregator's checkpoint as stored in KV. */
export interface StoredCheckpoint {
  /** Engine state generation. */
  generation: number;
  /** Run that wrote it. */
  runId: string;
  /** Batch number within the run. */
  batchId: number;
  /** Commit time (epoch ms). */
  committedAt: number;
  /** Next offset to read per partition. */
  offsets: Record<string, number>;
  /** Watermark per partition (epoch ms or null). */
  watermarks: Record<string, number | null>;
  /** Number of state chunks. */
  chunks: number;
  /** Total bytes of state. */
  stateBytes: number;
  /** Other fields the aggregator may add. */
  [extra: string]: unknown;
}

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

/** KV key of the aggregator's lease. */
export function leaseKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "lease"];
}

/** KV key of the aggregator's checkpoint. */
export function checkpointKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "checkpoint"];
}

/** KV key of the aggregator's latest progress record. */
export function progressKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "progress"];
}

/** KV key of the sensor's launch history. */
export function launchesKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "sensor", "launches"];
}

/** KV key of the sensor's crash-loop state. */
export function crashKey(topic: string): Deno.KvKey {
  return [KV_PREFIX, topic, "sensor", "crash"];
}

/** True for SQLite lock contention between processes sharing one KV file (transient). */
export function isKvBusy(e: unknown): boolean {
  return /database is locked|database table is locked|SQLITE_BUSY/i.test(
    String((e as Error)?.message),
  );
}

/** Runs `fn`, retrying with backoff while the KV file is locked by another process. */
export async function withKvRetry<T>(fn: () => Promise<T>, attempts = 30): Promise<T> {
  for (let i = 0;; i++) {
    try {
      return await fn();
    } catch (e) {
      if (!isKvBusy(e) || i + 1 >= attempts) throw e;
      await sleep(backoffDelay(i, { initialMs: 20, maxMs: 1000 }));
    }
  }
}

/** Reads the lease (live or not yet purged); null when absent. */
export async function readLeaseEntry(kv: Deno.Kv, topic: string): Promise<LeaseInfo | null> {
  return (await withKvRetry(() => kv.get<LeaseInfo>(leaseKey(topic)))).value ?? null;
}

/** Reads the checkpoint; null when the aggregator never committed. */
export async function readCheckpointEntry(
  kv: Deno.Kv,
  topic: string,
): Promise<StoredCheckpoint | null> {
  return (await withKvRetry(() => kv.get<StoredCheckpoint>(checkpointKey(topic)))).value ?? null;
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
