/**
 * What `tickpipe offsets` shows and changes: per partition the offset the
 * aggregator stored in KV, Kafka's end offset, the lag and the watermark,
 * plus checkpoint, lease, progress and the sensor's launches; and an
 * operator reset of the stored offsets (refused while a lease is live).
 * @module
 */

import { type Admin, topicOffsets } from "../common/kafka.ts";
import {
  checkpointKey,
  type CheckpointSummary,
  checkpointSummary,
  type EngineConfig,
  identityKey,
  type IdentityMismatch,
  isLeaseLive,
  isPointerV2,
  KV_PREFIX,
  leaseKey,
  progressKey,
  type StoredPointerValue,
} from "../aggregate/kv_layout.ts";
import {
  CheckpointConflictError,
  readCheckpoint,
  V1_DEFAULT_ENGINE,
  writeBase,
} from "../aggregate/checkpoint.ts";
import type { StateRecord } from "../aggregate/state_codec.ts";
import { durationText } from "../aggregate/defaults.ts";
import {
  type CrashState,
  type LaunchRecord,
  type LeaseInfo,
  offsetsMismatch,
  readCrash,
  readLaunches,
  unreadOf,
} from "../sensor/mod.ts";

/** One partition's line of the report. */
export interface PartitionReport {
  /** Partition number. */
  partition: number;
  /** Offset stored in the KV checkpoint (next to read), null when none. */
  stored: number | null;
  /** Kafka's earliest available offset. */
  start: number;
  /** Kafka's end offset. */
  end: number;
  /** Unread ticks: end - max(stored ?? start, start). */
  lag: number;
  /** Watermark stored for the partition (epoch ms), null when none. */
  watermark: number | null;
}

/** Everything `offsets` reports for one topic. */
export interface OffsetsReport {
  /** Topic name. */
  topic: string;
  /** Whether the topic exists in Kafka. */
  topicExists: boolean;
  /** Per-partition offsets. */
  partitions: PartitionReport[];
  /** Total lag. */
  lag: number;
  /** Checkpoint summary (either pointer version), null when none. */
  checkpoint: CheckpointSummary | null;
  /**
   * The engine settings the checkpoint's state was built with (window resolutions, watermark
   * delay: a run with others is refused unless it rebuilds), with its open windows and when
   * idle finalization is due; null without a v2 checkpoint.
   */
  engine: (EngineConfig & { openWindows: number; finalizeDueAt: number | null }) | null;
  /** Lease with liveness, null when none. */
  lease: (LeaseInfo & { live: boolean }) | null;
  /** Latest progress record of the aggregator, null when none. */
  progress: unknown;
  /** The sensor's recent launches, newest last. */
  launches: LaunchRecord[];
  /** The sensor's crash-loop state. */
  crash: CrashState;
  /** Why the stored offsets do not belong to this topic (recreated or wiped), or null. */
  identityMismatch: string | null;
}

/** Raised when a reset is refused because an aggregator holds the lease (exit 3). */
export class ResetLeaseHeldError extends Error {
  /** Creates the error naming the holder. */
  constructor(topic: string, lease: LeaseInfo) {
    super(
      `Refusing to reset offsets of topic "${topic}": an aggregator holds the lease ` +
        `(${lease.holder}, pid ${lease.pid} on ${lease.hostname}) until ` +
        `${new Date(lease.expiresAt).toISOString()}; stop it first`,
    );
    this.name = "ResetLeaseHeldError";
  }
}

/** Raised for a reset target that does not fit the topic (exit 2). */
export class ResetTargetError extends Error {
  /** Creates the error naming the bad target. */
  constructor(message: string) {
    super(message);
    this.name = "ResetTargetError";
  }
}

/** A reset target: a keyword or one offset for every partition. */
export type ResetTarget = "earliest" | "latest" | number;

/** Parses `--to`: earliest, latest or a non-negative integer; null when invalid. */
export function parseResetTarget(value: string): ResetTarget | null {
  if (value === "earliest" || value === "latest") return value;
  if (/^\d+$/.test(value) && Number.isSafeInteger(Number(value))) return Number(value);
  return null;
}

/** Builds the report of `topic` from Kafka (admin only) and KV. */
export async function inspectOffsets(
  admin: Admin,
  kv: Deno.Kv,
  options: { topic: string; now: number },
): Promise<OffsetsReport> {
  const { topic, now } = options;
  const [kafka, cpE, leaseE, progE, launches, crash, identityE] = await Promise.all([
    topicOffsets(admin, topic),
    kv.get<StoredPointerValue>(checkpointKey(topic)),
    kv.get<LeaseInfo>(leaseKey(topic)),
    kv.get(progressKey(topic)),
    readLaunches(kv, topic),
    readCrash(kv, topic),
    kv.get<IdentityMismatch>(identityKey(topic)),
  ]);
  const cp = cpE.value;
  const seen = new Set<number>();
  const partitions: PartitionReport[] = (kafka ?? []).map((k) => {
    seen.add(k.partition);
    const s = cp?.offsets?.[String(k.partition)];
    const stored = typeof s === "number" ? s : null;
    return {
      partition: k.partition,
      stored,
      start: k.start,
      end: k.end,
      lag: unreadOf({ partition: k.partition, start: k.start, end: k.end, stored }),
      watermark: cp?.watermarks?.[String(k.partition)] ?? null,
    };
  });
  // Partitions stored in KV that Kafka does not (or no longer) have.
  for (const [p, off] of Object.entries(cp?.offsets ?? {})) {
    if (seen.has(Number(p))) continue;
    partitions.push({
      partition: Number(p),
      stored: off,
      start: 0,
      end: 0,
      lag: 0,
      watermark: cp?.watermarks?.[p] ?? null,
    });
  }
  partitions.sort((a, b) => a.partition - b.partition);
  const lease = leaseE.value;
  const missing = partitions.find((p) => p.stored !== null && !seen.has(p.partition));
  const identityMismatch = identityE.value?.message ??
    (missing !== undefined && kafka !== null
      ? `partition ${missing.partition} is gone (the topic has ${kafka.length})`
      : offsetsMismatch(partitions));
  return {
    topic,
    topicExists: kafka !== null,
    partitions,
    lag: partitions.reduce((n, p) => n + p.lag, 0),
    checkpoint: cp === null ? null : checkpointSummary(cp),
    engine: cp === null || !isPointerV2(cp) ? null : {
      windows: [...cp.engine.windows],
      watermarkDelayMs: cp.engine.watermarkDelayMs,
      openWindows: cp.openWindows,
      finalizeDueAt: cp.finalizeDueAt,
    },
    lease: lease === null ? null : { ...lease, live: isLeaseLive(lease, now) },
    progress: progE.value ?? null,
    launches,
    crash,
    identityMismatch,
  };
}

/** Topics that have any tickpipe record in KV (checkpoint, lease, progress, sensor), sorted. */
export async function topicsInKv(kv: Deno.Kv): Promise<string[]> {
  const out = new Set<string>();
  for await (const e of kv.list({ prefix: [KV_PREFIX] })) {
    const [, topic, kind] = e.key;
    if (typeof topic === "string" && kind !== "state") out.add(topic);
  }
  return [...out].sort();
}

const iso = (ms: number | null | undefined) =>
  ms === null || ms === undefined ? "-" : new Date(ms).toISOString();

/** Renders a report as a human-readable table. Pure. */
export function formatReport(r: OffsetsReport): string {
  const lines = [`topic ${r.topic}${r.topicExists ? "" : " (not in Kafka)"}  lag ${r.lag}`];
  const head = ["partition", "stored", "start", "end", "lag", "watermark"];
  const rows = r.partitions.map((p) => [
    String(p.partition),
    p.stored === null ? "-" : String(p.stored),
    String(p.start),
    String(p.end),
    String(p.lag),
    iso(p.watermark),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (row: string[]) => "  " + row.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  lines.push(fmt(head), ...rows.map(fmt));
  if (r.identityMismatch !== null) {
    lines.push(
      `IDENTITY MISMATCH: the stored offsets are not this topic's log (${r.identityMismatch}); ` +
        `the aggregator stops (exit 4) and the sensor does not launch it. ` +
        `"offsets reset --to earliest --yes" starts over, keeping the watermarks`,
    );
  }
  const cp = r.checkpoint;
  lines.push(
    cp === null
      ? "checkpoint: none (the aggregator starts from the earliest offsets)"
      : `checkpoint: generation ${cp.generation}, batch ${cp.batchId}, run ${cp.runId}, ` +
        `committed ${iso(cp.committedAt)}, state ${cp.stateBytes} bytes in ${cp.chunks} chunks` +
        (cp.version === 1 ? " (v1 format)" : ` (base + ${cp.deltas} deltas)`),
  );
  if (r.engine !== null) {
    lines.push(
      `engine: windows ${r.engine.windows.map(durationText).join(",")}, watermark ${
        durationText(r.engine.watermarkDelayMs)
      }; ${r.engine.openWindows} open windows` +
        (r.engine.finalizeDueAt === null
          ? ""
          : `, idle finalization due ${iso(r.engine.finalizeDueAt)}`),
    );
  }
  lines.push(
    r.lease === null
      ? "lease: none"
      : `lease: ${
        r.lease.live ? "live" : "expired"
      }, held by ${r.lease.holder} (pid ${r.lease.pid} on ${r.lease.hostname}) until ${
        iso(r.lease.expiresAt)
      }`,
  );
  lines.push(`progress: ${r.progress === null ? "none" : JSON.stringify(r.progress)}`);
  const last = r.launches.at(-1);
  lines.push(
    last === undefined
      ? "sensor: no launches"
      : `sensor: ${r.launches.length} launches recorded, last ${
        iso(last.launchedAt)
      } pid ${last.pid} exit ${
        last.exitCode ?? "-"
      }; consecutive failures ${r.crash.consecutiveFailures}`,
  );
  return lines.join("\n");
}

/** Result of a reset. */
export interface ResetResult {
  /** Topic reset. */
  topic: string;
  /** Offsets before (null when there was no checkpoint). */
  before: Record<string, number> | null;
  /** Offsets now stored. */
  after: Record<string, number>;
  /** The new checkpoint generation (its state is empty). */
  generation: number;
  /** State chunks deleted. */
  deletedChunks: number;
  /** Watermarks kept as floors (what was late stays late, final rows stay final). */
  watermarks: Record<string, number | null>;
  /** The stored offsets did not belong to this topic (recreated or wiped): replays not suppressed. */
  identityReset: boolean;
}

/**
 * Rewrites the stored offsets of `topic` to `target` and drops the engine state (a new, empty
 * base: watermarks null), so the next aggregator starts clean from there. Atomic against an
 * aggregator starting meanwhile (the flip checks the lease entry and the pointer); throws
 * ResetLeaseHeldError while a lease is live. The old state's chunks are deleted by key.
 */
export async function resetOffsets(
  admin: Admin,
  kv: Deno.Kv,
  options: { topic: string; target: ResetTarget; now: number },
): Promise<ResetResult> {
  const { topic, target, now } = options;
  const kafka = await topicOffsets(admin, topic);
  if (kafka === null) throw new ResetTargetError(`Topic "${topic}" does not exist in Kafka`);
  const offsets: Record<string, number> = {};
  for (const k of kafka) {
    let o: number;
    if (target === "earliest") o = k.start;
    else if (target === "latest") o = k.end;
    else {
      if (target < k.start || target > k.end) {
        throw new ResetTargetError(
          `--to ${target} is outside partition ${k.partition} of topic "${topic}" ` +
            `(offsets ${k.start} to ${k.end})`,
        );
      }
      o = target;
    }
    offsets[String(k.partition)] = o;
  }
  const [leaseE, prev] = await Promise.all([
    kv.get<LeaseInfo>(leaseKey(topic)),
    readCheckpoint(kv, topic),
  ]);
  if (leaseE.value !== null && isLeaseLive(leaseE.value, now)) {
    throw new ResetLeaseHeldError(topic, leaseE.value);
  }
  const partitions = Object.keys(offsets);
  // The watermarks stay, as floors: a straggler read after the reset is late as it was before,
  // and final rows stay final. Ticks below the old stored offset that are late were handled by
  // the run that first read them: not reported again (replayBelow), unless the stored offsets
  // were not this topic's (a recreated topic: its offsets mean something else).
  const identity = (await kv.get(identityKey(topic))).value;
  const before = prev?.pointer.offsets ?? {};
  const mismatch = identity !== null || Object.entries(before).some(([p, o]) => {
    const k = kafka.find((r) => String(r.partition) === p);
    return k === undefined || o > k.end || o < k.start;
  });
  const watermarks: Record<string, number | null> = {};
  const records: StateRecord[] = [];
  for (const p of partitions) {
    const wm = prev?.pointer.watermarks[p] ?? null;
    watermarks[p] = wm;
    if (wm === null) continue;
    records.push({
      kind: "partition",
      partition: Number(p),
      maxEventTime: null,
      lastOffset: null,
      floor: wm,
      replayBelow: mismatch ? 0 : before[p] ?? 0,
      lastArrivalMs: null,
    });
  }
  records.sort((a, b) => a.partition - b.partition);
  let written;
  try {
    // The lease and the pointer must not change between our reads and this write.
    written = await writeBase(kv, topic, {
      runId: "offsets-reset",
      batchId: prev?.pointer.batchId ?? 0,
      committedAt: now,
      offsets,
      watermarks,
      engine: prev?.pointer.engine ??
        { ...V1_DEFAULT_ENGINE, windows: [...V1_DEFAULT_ENGINE.windows] },
      identity: {
        partitions: partitions.length,
        fingerprints: Object.fromEntries(partitions.map((p) => [p, null])),
      },
      openWindows: 0,
      finalizeDueAt: null,
      records,
    }, {
      previous: prev,
      guard: { key: leaseKey(topic), versionstamp: leaseE.versionstamp },
      sorted: true,
    });
  } catch (e) {
    if (!(e instanceof CheckpointConflictError)) throw e;
    const l = (await kv.get<LeaseInfo>(leaseKey(topic))).value;
    if (l !== null && isLeaseLive(l, Date.now())) throw new ResetLeaseHeldError(topic, l);
    throw new Error(`Checkpoint of topic "${topic}" changed during the reset: try again`);
  }
  if (identity !== null) await kv.delete(identityKey(topic));
  return {
    topic,
    before: prev?.pointer.offsets ?? null,
    after: offsets,
    generation: written.segment!.generation,
    deletedChunks: written.cleanup.deleted.reduce((n, s) => n + s.chunks, 0),
    watermarks,
    identityReset: mismatch,
  };
}
