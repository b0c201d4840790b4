/**
 * The sensor's decision logic, pure: given Kafka's offsets, the offsets the
 * aggregator stored, the lease, a running child and the crash history, decide
 * whether to launch the aggregator. No I/O, no clock (the time is an input).
 * @module
 */

import { type EngineConfig, isLeaseLive, type LeaseRecord } from "../aggregate/kv_layout.ts";
import { durationText } from "../aggregate/defaults.ts";

/** One partition's offsets as the sensor sees them. */
export interface PartitionOffsets {
  /** Partition number. */
  partition: number;
  /** Kafka's earliest available offset (log start). */
  start: number;
  /** Kafka's end offset (next offset to be written). */
  end: number;
  /** Next offset the aggregator will read, from the KV checkpoint; null when none is stored. */
  stored: number | null;
}

/** The aggregator's lease as read from KV (the one lease type of aggregate/kv_layout.ts). */
export type LeaseInfo = LeaseRecord;

/** Consecutive failures of launched aggregators (exit codes other than 0 and 3). */
export interface CrashState {
  /** Number of consecutive failed runs (0 = healthy). */
  consecutiveFailures: number;
  /** When the last failed run ended (epoch ms), null if never. */
  lastFailureAt: number | null;
  /** Exit code of the last failed run, null if none. */
  lastExitCode: number | null;
}

/** The crash state of a sensor that has seen no failure. */
export const HEALTHY: CrashState = Object.freeze({
  consecutiveFailures: 0,
  lastFailureAt: null,
  lastExitCode: null,
});

/** Crash-loop backoff settings. */
export interface CrashBackoffOptions {
  /** Pause after the first failure in ms (default 60 s: one check at the default schedule). */
  baseMs?: number;
  /** Upper bound of the pause in ms (default 30 min). */
  maxMs?: number;
}

/** Everything {@linkcode decide} looks at. */
export interface DecideInput {
  /** Current time (epoch ms). */
  now: number;
  /** Offsets of every partition of the topic. */
  partitions: PartitionOffsets[];
  /** Launch only when at least this many ticks are unread (>= 1). */
  minNew: number;
  /** The lease stored in KV, or null when there is none. */
  lease: LeaseInfo | null;
  /** A child this sensor launched that is still running, or null. */
  child: { pid: number; startedAt: number } | null;
  /** Crash history of launched aggregators. */
  crash: CrashState;
  /** Crash-loop backoff settings. */
  backoff?: CrashBackoffOptions;
  /** A topic identity mismatch the aggregator recorded in KV, or null. */
  identityError?: string | null;
  /** When idle finalization can close open windows of the checkpoint (epoch ms), or null. */
  finalizeDueAt?: number | null;
  /** The checkpoint says a run held open rows back (aggregate/deferred.ts) and never wrote them. */
  openRowsDeferred?: boolean;
  /**
   * The engine settings of the checkpoint (null: none, or unknown) and those the aggregator
   * would be launched with; `rebuild`: a mismatch launches a rebuild instead of being refused.
   */
  engine?: { stored: EngineConfig | null; wanted: EngineConfig; rebuild: boolean };
}

/** What the sensor does this check. */
export type DecisionKind =
  | "launch"
  | "finalize"
  | "no-new-data"
  | "lease-held"
  | "backoff"
  | "child-running"
  | "identity-mismatch"
  | "config-mismatch"
  | "rebuild";

/** The outcome of {@linkcode decide}. */
export interface Decision {
  /** Machine-readable kind. */
  kind: DecisionKind;
  /** Human-readable action, e.g. `launch` or `skip: no new data`. */
  action: string;
  /** Total unread ticks over all partitions. */
  unread: number;
  /** Unread ticks per partition, in partition order. */
  perPartition: { partition: number; end: number; from: number; unread: number }[];
  /** Whether the lease is live at `now`. */
  leaseLive: boolean;
  /** When a backoff ends (epoch ms), for `backoff` decisions. */
  backoffUntil?: number;
}

/** Default first crash-loop pause (ms). */
export const DEFAULT_BACKOFF_BASE_MS = 60_000;
/** Default maximum crash-loop pause (ms). */
export const DEFAULT_BACKOFF_MAX_MS = 30 * 60_000;
/** Exit code of an aggregator that found another live lease. */
export const EXIT_LEASE_HELD = 3;
/**
 * Exit code of an aggregator that refused its configuration (bad flags, a denied address, or
 * windows/watermark that differ from the checkpoint's): the same command line is refused again,
 * so the sensor stops instead of retrying it.
 */
export const EXIT_CONFIG = 2;

/** Window resolutions and watermark delay as text: `windows 1m,5m watermark 15m` (pure). */
export function engineText(e: EngineConfig): string {
  return `windows ${e.windows.map(durationText).join(",")} watermark ${
    durationText(e.watermarkDelayMs)
  }`;
}

/**
 * Why an aggregator launched with `wanted` would refuse the checkpoint made with `stored`, or
 * null when they agree (or nothing is stored). Pure.
 */
export function engineMismatch(
  stored: EngineConfig | null,
  wanted: EngineConfig,
): string | null {
  if (stored === null) return null;
  const a = [...new Set(stored.windows)].sort((x, y) => x - y);
  const b = [...new Set(wanted.windows)].sort((x, y) => x - y);
  const same = a.length === b.length && a.every((v, i) => v === b[i]) &&
    stored.watermarkDelayMs === wanted.watermarkDelayMs;
  return same
    ? null
    : `the checkpoint was made with ${engineText(stored)}, not ${
      engineText({ windows: b, watermarkDelayMs: wanted.watermarkDelayMs })
    }`;
}

/** Where reading starts for a partition: the stored offset, never below the log start. */
export function readFrom(p: PartitionOffsets): number {
  return p.stored === null ? p.start : Math.max(p.stored, p.start);
}

/** Unread ticks of one partition (never negative). */
export function unreadOf(p: PartitionOffsets): number {
  return Math.max(0, p.end - readFrom(p));
}

/**
 * Why the stored offsets cannot belong to this topic, or null: a stored offset beyond the
 * partition's end (the topic was recreated or the broker wiped) or below its log start
 * (recreated, or retention deleted unread ticks). Pure.
 */
export function offsetsMismatch(partitions: readonly PartitionOffsets[]): string | null {
  for (const p of partitions) {
    if (p.stored === null) continue;
    if (p.stored > p.end) {
      return `partition ${p.partition}: stored offset ${p.stored} is beyond the end offset ${p.end}`;
    }
    if (p.stored < p.start) {
      return `partition ${p.partition}: stored offset ${p.stored} is below the log start ${p.start}`;
    }
  }
  return null;
}

/** Whether `lease` is live at `now`: the one rule of aggregate/kv_layout.ts, null-tolerant. */
export function leaseIsLive(lease: LeaseInfo | null, now: number): boolean {
  return lease !== null && isLeaseLive(lease, now);
}

/** Pause after `failures` consecutive failures: base * 2^(failures-1), capped; 0 when healthy. */
export function crashBackoffMs(failures: number, options: CrashBackoffOptions = {}): number {
  if (failures <= 0) return 0;
  const base = options.baseMs ?? DEFAULT_BACKOFF_BASE_MS;
  const max = options.maxMs ?? DEFAULT_BACKOFF_MAX_MS;
  return Math.min(max, base * Math.pow(2, Math.min(failures - 1, 40)));
}

/** Until when (epoch ms) launches are paused by `crash`; null when not paused at all. */
export function backoffUntil(crash: CrashState, options: CrashBackoffOptions = {}): number | null {
  if (crash.consecutiveFailures <= 0 || crash.lastFailureAt === null) return null;
  return crash.lastFailureAt + crashBackoffMs(crash.consecutiveFailures, options);
}

/**
 * The crash state after a launched aggregator exited with `exitCode` at `now` (exit 2 counts as
 * a failure too; the sensor also stops on it: see {@linkcode EXIT_CONFIG}).
 */
export function nextCrashState(crash: CrashState, exitCode: number, now: number): CrashState {
  if (exitCode === 0) return HEALTHY;
  // Exit 3: another aggregator holds the lease. Not a crash, and not a success either.
  if (exitCode === EXIT_LEASE_HELD) return crash;
  return {
    consecutiveFailures: crash.consecutiveFailures + 1,
    lastFailureAt: now,
    lastExitCode: exitCode,
  };
}

/** Decides whether to launch the aggregator. Pure. */
export function decide(input: DecideInput): Decision {
  const parts = [...input.partitions].sort((a, b) => a.partition - b.partition);
  const perPartition = parts.map((p) => ({
    partition: p.partition,
    end: p.end,
    from: readFrom(p),
    unread: unreadOf(p),
  }));
  const unread = perPartition.reduce((s, p) => s + p.unread, 0);
  const leaseLive = leaseIsLive(input.lease, input.now);
  const base = { unread, perPartition, leaseLive };
  if (input.child !== null) {
    return {
      ...base,
      kind: "child-running",
      action: `skip: child running (pid ${input.child.pid})`,
    };
  }
  const engineProblem = input.engine === undefined
    ? null
    : engineMismatch(input.engine.stored, input.engine.wanted);
  if (engineProblem !== null && !input.engine!.rebuild) {
    return {
      ...base,
      kind: "config-mismatch",
      action: `refuse: ${engineProblem}: run with the checkpoint's --windows/--watermark, or add ` +
        `--rebuild to start over from the log start with the new ones (final rows and ` +
        `watermarks are kept)`,
    };
  }
  if (leaseLive) {
    const l = input.lease!;
    return {
      ...base,
      kind: "lease-held",
      action: `skip: lease held by ${l.holder} (pid ${l.pid} on ${l.hostname}) until ${
        new Date(l.expiresAt).toISOString()
      }`,
    };
  }
  const until = backoffUntil(input.crash, input.backoff);
  const backingOff = until !== null && input.now < until;
  if (engineProblem !== null && !backingOff) {
    // A rebuild re-reads the whole log with the new settings (and needs no identity check).
    return {
      ...base,
      kind: "rebuild",
      action: `launch: rebuild (--rebuild): ${engineProblem}`,
    };
  }
  const mismatch = input.identityError ?? offsetsMismatch(parts);
  if (mismatch !== null && engineProblem === null) {
    return {
      ...base,
      kind: "identity-mismatch",
      action: `skip: the topic is not the log the checkpoint was made against (${mismatch}); ` +
        `"deno task offsets reset --to earliest --yes" starts over, keeping the watermarks`,
    };
  }
  const due = input.finalizeDueAt != null && input.finalizeDueAt <= input.now;
  // A run that held open rows back is gone (no live lease): a short run writes them.
  const finalize = unread < Math.max(1, input.minNew) && (due || input.openRowsDeferred === true);
  if (unread < Math.max(1, input.minNew) && !finalize && engineProblem === null) {
    return { ...base, kind: "no-new-data", action: "skip: no new data" };
  }
  if (backingOff) {
    const n = input.crash.consecutiveFailures;
    return {
      ...base,
      kind: "backoff",
      action: `skip: backoff after ${n} failure${n === 1 ? "" : "s"} (last exit code ${
        input.crash.lastExitCode ?? "?"
      }) until ${new Date(until!).toISOString()}`,
      backoffUntil: until!,
    };
  }
  if (finalize) {
    return {
      ...base,
      kind: "finalize",
      action: due
        ? `launch: open windows are due for idle finalization since ${
          new Date(input.finalizeDueAt!).toISOString()
        }`
        : "launch: the last run held open window rows back and stopped before writing them",
    };
  }
  return { ...base, kind: "launch", action: "launch" };
}

/** Log fields describing a decision (one log line with the action as message). */
export function decisionFields(
  input: DecideInput,
  decision: Decision,
): Record<string, string | number> {
  const sorted = [...input.partitions].sort((a, b) => a.partition - b.partition);
  return {
    partitions: sorted.map((p) => p.partition).join(",") || "none",
    end: sorted.map((p) => p.end).join(","),
    stored: sorted.map((p) => p.stored === null ? "-" : String(p.stored)).join(","),
    unread: decision.unread,
    minNew: input.minNew,
    lease: input.lease === null
      ? "none"
      : `${input.lease.holder}@${input.lease.hostname}:${input.lease.pid} ${
        decision.leaseLive ? "live" : "expired"
      } until ${new Date(input.lease.expiresAt).toISOString()}`,
    failures: input.crash.consecutiveFailures,
  };
}
