/**
 * The aggregator: a tick source (source.ts, the only kafkajs consumer code), the pure engine
 * (engine.ts) folding what it hands over, and triggers that cut the engine and commit the cut
 * (commit.ts: dead letters to Kafka, then PostgreSQL, then a Deno KV delta checkpoint).
 *
 * Triggers run every `triggerMs`, at once when `maxBuffered` records are not yet checkpointed
 * (full speed on backlogs), as soon as a start has caught up with the log (a start on a backlog
 * skips interval triggers until then, for at most 30 s), and a last time on stop; an idle exit
 * happens at the idle deadline. A buffer-full trigger writes the final windows and holds the open
 * ones it changed back for the next trigger of another kind (deferred.ts, the engine's `hold`).
 * Folding goes on while a trigger commits (the cut is copy-on-write); above twice `maxBuffered`
 * unsaved records the source is held until a commit lands.
 *
 * Kafka, PostgreSQL, KV and the clock are passed in (`runAggregator(deps, options)`).
 * @module
 */

import {
  type Admin,
  closeKafkaExtras,
  commitGroupOffsets,
  ensureTopic,
  type Kafka,
  topicOffsets,
} from "../common/kafka.ts";
import type { Pool } from "../common/pg.ts";
import { createLogger, type Logger } from "../common/log.ts";
import { sleep } from "../common/backoff.ts";
import { type Tick, WindowEngine } from "./engine.ts";
import { HeldRows } from "./deferred.ts";
import { AGGREGATOR_DEFAULTS, DEFAULT_GROUP_ID, durationText } from "./defaults.ts";

export { AGGREGATOR_DEFAULTS, DEFAULT_GROUP_ID, durationText };
import { RecordParser } from "./record.ts";
import { acquireLease, keepLease, type KeptLease, leaseKey, releaseLease } from "./lease.ts";
import {
  CheckpointConflictError,
  cleanupOrphans,
  compact,
  readState,
  shouldCompact,
  type StoredCheckpoint,
  writeBase,
} from "./checkpoint.ts";
import { type CheckpointPointer, identityKey, type IdentityMismatch } from "./kv_layout.ts";
import {
  type Fingerprint,
  FORMAT_CODE,
  type IdentityProblem,
  keyAt,
  type SourceBatch,
  startSource,
  type TickSource,
  TopicIdentityError,
  valueAt,
} from "./source.ts";
import { createDeadLetterSink, type DeadLetter, deadLetterOf } from "./dead_letters.ts";
import { commitTrigger, FinalFlushTimeout, type Retrier, retrier } from "./commit.ts";
import { planTrigger } from "./trigger.ts";
import type { TriggerReason } from "./progress.ts";
import { serialQueue } from "../common/serial.ts";

/** What the aggregator talks to. */
export interface AggregatorDeps {
  /** kafkajs client (consumer, admin and dead-letter producer are created from it). */
  kafka: Kafka;
  /** PostgreSQL pool (migrations already applied). */
  pool: Pool;
  /** Deno KV. */
  kv: Deno.Kv;
  /** Clock, epoch ms (default Date.now). */
  now?: () => number;
  /** Logger (default createLogger("aggregate")). */
  logger?: Logger;
  /** Where the per-trigger progress JSON line goes (default: stdout). */
  writeProgress?: (line: string) => void;
  /** Host name recorded in the lease. */
  hostname?: string;
  /**
   * Run the Kafka consumer on a thread of its own (a Worker with a kafkajs client of its own on
   * `brokers`, the list `kafka` was made with; see source.ts). Opt-in: it needs read permission
   * for aggregate/_source_worker.ts (and `deno compile --include` of it) and costs a second V8
   * heap; without it, or when the thread cannot start, the consumer runs on the main thread.
   */
  consumerThread?: { brokers: readonly string[] };
}

/** Aggregator settings (defaults in {@linkcode AGGREGATOR_DEFAULTS}). */
export interface AggregatorOptions {
  /** Ticks topic. */
  topic: string;
  /** Stable consumer group: runs consume in `<group>.run-<id>` and copy offsets here. */
  groupId?: string;
  /** Trigger interval in ms. */
  triggerMs?: number;
  /** Exit after this long without new records, in ms (once idle finalization is done). */
  idleTimeoutMs?: number;
  /** Window resolutions in ms. */
  windows?: readonly number[];
  /** Watermark delay in ms. */
  watermarkDelayMs?: number;
  /** Wall-clock quiet time after which a caught-up partition's windows finalize; 0 = off. */
  idleFinalizeMs?: number | null;
  /** Open windows per partition before the oldest are finalized early. */
  maxOpenWindows?: number;
  /** Records read and not yet checkpointed that trigger at once. */
  maxBuffered?: number;
  /** Ticks further ahead of the wall clock are dead-lettered as future_time. */
  maxFutureMs?: number;
  /** Start over from the log start (state dropped, watermarks kept as floors). */
  rebuild?: boolean;
  /** Lease TTL in ms (renewed every third of it). */
  leaseTtlMs?: number;
  /** The caller holds the host-local process lock (tryProcessLock): same-host lease holders are dead. */
  holdsProcessLock?: boolean;
  /** On stop, how long to keep retrying the final write before giving up. */
  finalFlushTimeoutMs?: number;
  /** PostgreSQL statement timeout of the sink. */
  statementTimeoutMs?: number;
  /** How often offsets are copied to the stable group (for Kafka tools). */
  offsetsCopyEveryMs?: number;
}

/** Why the aggregator stopped. */
export type ExitReason = "idle" | "stopped" | "lease-lost" | "failed" | "identity" | "config";

/** How a run ended. */
export interface ExitResult {
  /** Why. */
  reason: ExitReason;
  /** The error for "failed", "lease-lost", "identity" and "config". */
  error?: Error;
}

/** A running aggregator. */
export interface AggregatorHandle {
  /** This run's id (also the lease holder). */
  runId: string;
  /** Settles when the aggregator has stopped (never rejects). */
  done: Promise<ExitResult>;
  /** Requests a graceful stop (final trigger, checkpoint, lease release); resolves like `done`. */
  stop(): Promise<ExitResult>;
}

/** Raised when the checkpoint was made with other windows or another watermark delay. */
export class EngineConfigMismatchError extends Error {
  /** Creates the error naming both settings. */
  constructor(
    topic: string,
    stored: CheckpointPointer["engine"],
    wanted: CheckpointPointer["engine"],
  ) {
    const fmt = (e: CheckpointPointer["engine"]) =>
      `windows ${e.windows.map(durationText).join(",")} watermark ${
        durationText(e.watermarkDelayMs)
      }`;
    super(
      `The checkpoint of topic "${topic}" was made with ${fmt(stored)}, not ${fmt(wanted)}: ` +
        `run with the same settings, or add --rebuild to start over from the log start ` +
        `(final rows stay as they are; watermarks are kept)`,
    );
    this.name = "EngineConfigMismatchError";
  }
}

/** Applies {@linkcode AGGREGATOR_DEFAULTS} to `options`. */
export function resolveAggregatorOptions(options: AggregatorOptions) {
  const d = AGGREGATOR_DEFAULTS;
  const watermarkDelayMs = options.watermarkDelayMs ?? d.watermarkDelayMs;
  const windows = [...new Set(options.windows ?? d.windows)].sort((a, b) => a - b);
  return {
    topic: options.topic,
    groupId: options.groupId ?? d.groupId,
    triggerMs: options.triggerMs ?? d.triggerMs,
    idleTimeoutMs: options.idleTimeoutMs ?? d.idleTimeoutMs,
    windows,
    watermarkDelayMs,
    idleFinalizeMs: options.idleFinalizeMs ?? d.idleFinalizeMs ?? watermarkDelayMs,
    maxOpenWindows: options.maxOpenWindows ?? d.maxOpenWindows,
    maxBuffered: options.maxBuffered ?? d.maxBuffered,
    maxFutureMs: options.maxFutureMs ?? d.maxFutureMs,
    rebuild: options.rebuild ?? false,
    leaseTtlMs: options.leaseTtlMs ?? d.leaseTtlMs,
    holdsProcessLock: options.holdsProcessLock ?? false,
    finalFlushTimeoutMs: options.finalFlushTimeoutMs ?? d.finalFlushTimeoutMs,
    statementTimeoutMs: options.statementTimeoutMs ?? d.statementTimeoutMs,
    offsetsCopyEveryMs: options.offsetsCopyEveryMs ?? d.offsetsCopyEveryMs,
  };
}

/** How long a start on a backlog skips interval triggers until it has caught up (ms). */
const FIRST_TRIGGER_DEFER_MS = 30_000;

const sameWindows = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Starts an aggregator: takes the lease (throws LeaseHeldError when another one runs), checks
 * the topic against the checkpoint, restores the state, and runs until idle, stopped, or the
 * lease is lost.
 */
export async function runAggregator(
  deps: AggregatorDeps,
  options: AggregatorOptions,
): Promise<AggregatorHandle> {
  const o = resolveAggregatorOptions(options);
  const { kafka, pool, kv } = deps;
  const now = deps.now ?? Date.now;
  const log = deps.logger ?? createLogger("aggregate");
  const writeProgress = deps.writeProgress ?? ((line: string) => console.log(line));
  const topic = o.topic;
  const runId = crypto.randomUUID();
  const engineSettings = { windows: o.windows, watermarkDelayMs: o.watermarkDelayMs };

  // One chain for every KV write of this process: lease renewals, checkpoint flips, compaction
  // flips. KV's atomic checks fence other processes; this keeps our own writes from failing them.
  const serialize = serialQueue();

  // --- lease (exit code 3 for the loser) -------------------------------------------------------
  const acquired = await acquireLease(kv, topic, {
    holder: runId,
    now: now(),
    ttlMs: o.leaseTtlMs,
    hostname: deps.hostname,
    processLocked: o.holdsProcessLock,
    // With the host's process lock in hand, a holder on this host that also took that lock
    // must be a dead process (the kernel released its lock).
    holderDead: o.holdsProcessLock && deps.hostname !== undefined
      ? (l) => l.processLocked === true && l.hostname === deps.hostname
      : undefined,
  });
  const lease: KeptLease = keepLease(kv, topic, acquired, {
    holder: runId,
    ttlMs: o.leaseTtlMs,
    hostname: deps.hostname,
    now,
    serialize,
    onRetry: (e) => log.warn("lease renewal failed; retrying", { error: e }),
  });
  const guard = (): Deno.AtomicCheck => ({
    key: leaseKey(topic),
    versionstamp: lease.current().versionstamp,
  });

  const admin: Admin = kafka.admin();
  let checkpoint: StoredCheckpoint | null = null;
  let engine: WindowEngine;
  // Open rows held back by buffer-full triggers (in the engine), written by the next other trigger.
  const held = new HeldRows();
  const next = new Map<number, number>(); // next offset to fold per partition
  const lastSeen = new Map<number, Fingerprint>(); // the last record folded per partition
  const logStart = new Map<number, number>();
  const ends = new Map<number, number>(); // end offsets: at start, then as batches report them
  let source: TickSource;
  let batchId = 0;
  const recordIdentityMismatch = (e: TopicIdentityError) => {
    const value: IdentityMismatch = {
      reason: e.reason,
      partition: e.partition,
      expected: e.expected,
      found: e.found,
      message: e.message,
      detectedAt: now(),
      runId,
    };
    return kv.set(identityKey(topic), value).catch(() => {});
  };
  const giveUp = async (e: unknown) => {
    lease.stop();
    await admin.disconnect().catch(() => {});
    await serialize(() => releaseLease(kv, topic, runId)).catch(() => {});
    throw e;
  };
  const startedAt = performance.now();
  const startup: Record<string, number> = {};
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      startup[what] = Math.round(performance.now() - t0);
    }
  };
  try {
    // Kafka (topic ranges, dead-letter topic) and KV (the checkpoint) at the same time: a
    // restart's first trigger waits for both.
    const [ranges, restored] = await Promise.all([
      timed("kafkaMs", async () => {
        await admin.connect();
        const ranges = await topicOffsets(admin, topic);
        if (ranges === null) {
          throw new Error(`Topic "${topic}" does not exist on Kafka: nothing to aggregate`);
        }
        // Records that are not valid ticks go to <topic>.dlq (ingest creates it; a topic
        // written by something else may not have one yet).
        if (await ensureTopic(admin, `${topic}.dlq`, { partitions: ranges.length })) {
          log.info("created the dead-letter topic", { topic: `${topic}.dlq` });
        }
        return ranges;
      }),
      timed("checkpointMs", async () => {
        const orphans = await cleanupOrphans(kv, topic, { guard });
        if (orphans.removedChunks > 0) {
          log.info("removed chunks of an interrupted checkpoint", {
            chunks: orphans.removedChunks,
          });
        }
        return await readState(kv, topic);
      }),
    ]);
    for (const r of ranges) {
      logStart.set(r.partition, r.start);
      ends.set(r.partition, r.end);
    }

    checkpoint = restored?.checkpoint ?? null;
    const pointer = checkpoint?.pointer ?? null;
    if (
      pointer !== null && !o.rebuild &&
      (!sameWindows(pointer.engine.windows, o.windows) ||
        pointer.engine.watermarkDelayMs !== o.watermarkDelayMs)
    ) {
      throw new EngineConfigMismatchError(topic, pointer.engine, engineSettings);
    }
    if (pointer !== null && !o.rebuild) {
      const problem = identityProblem(pointer, ranges);
      if (problem !== null) throw new TopicIdentityError(topic, problem);
    }
    const engineOptions = {
      windows: o.windows,
      watermarkDelayMs: o.watermarkDelayMs,
      idleFinalizeMs: o.idleFinalizeMs,
      maxOpenWindows: o.maxOpenWindows,
    };
    if (pointer !== null && o.rebuild) {
      // Start over from the log start with an empty state, keeping each partition's
      // watermark as a floor: final rows stay final and what was late stays late.
      engine = new WindowEngine(engineOptions);
      // Ticks below the old offsets were handled by the runs that read them: their late
      // reports are not repeated, unless those offsets were another log's (a recreated topic).
      const sameLog = identityProblem(pointer, ranges) === null;
      for (const [p, wm] of Object.entries(pointer.watermarks)) {
        const stored = sameLog ? pointer.offsets[p] ?? 0 : 0;
        engine.setFloor(Number(p), { watermark: wm, replayBelow: stored });
      }
      for (const r of ranges) next.set(r.partition, r.start);
      log.warn("rebuilding from the log start: state dropped, watermarks kept", {
        topic,
        watermarks: pointer.watermarks,
      });
      checkpoint = (await serialize(() =>
        writeBase(kv, topic, {
          runId,
          batchId: pointer.batchId + 1,
          committedAt: now(),
          offsets: Object.fromEntries(next),
          watermarks: pointer.watermarks,
          engine: engineSettings,
          identity: { partitions: ranges.length, fingerprints: {} },
          openWindows: 0,
          finalizeDueAt: null,
          records: engine.records(),
        }, { previous: checkpoint, guard })
      )).checkpoint;
    } else if (restored !== null) {
      const t0 = performance.now();
      engine = WindowEngine.restore(restored.records, engineOptions);
      startup.restoreMs = Math.round(performance.now() - t0);
      for (const [p, off] of Object.entries(pointer!.offsets)) next.set(Number(p), off);
      for (const [p, fp] of Object.entries(pointer!.identity?.fingerprints ?? {})) {
        if (fp !== null) lastSeen.set(Number(p), fp);
      }
      // The previous run held open rows back and may not have written them: re-send every
      // restored window at the first writing trigger (versions already stored are no-ops).
      if (pointer!.openRowsDeferred) held.restored(engine.resendRestored());
      log.info("restored checkpoint", {
        offsets: pointer!.offsets,
        openWindows: engine.openWindowCount,
        deltas: pointer!.deltas.length,
        ...(pointer!.openRowsDeferred ? { resent: held.pending } : {}),
      });
    } else {
      engine = new WindowEngine(engineOptions);
      log.info("no checkpoint: starting from the earliest offsets", { topic });
    }
    batchId = (pointer?.batchId ?? -1) + 1;

    // --- Kafka -------------------------------------------------------------------------------
    source = await timed("sourceMs", () =>
      startSource(kafka, {
        topic,
        groupId: `${o.groupId}.run-${runId.slice(0, 8)}`,
        resume: next,
        logStart,
        verify: lastSeen,
        brokers: deps.consumerThread?.brokers,
        logger: log,
      }));
  } catch (e) {
    if (e instanceof TopicIdentityError) await recordIdentityMismatch(e);
    return await giveUp(e);
  }

  // --- state shared by the fold loop and the triggers -------------------------------------------
  const parser = new RecordParser({ maxFutureMs: o.maxFutureMs });
  const deadLetters = createDeadLetterSink(kafka, { topic });
  let letters: DeadLetter[] = [];
  let buffered = 0; // records folded and not yet checkpointed
  let sinceCut = 0;
  let invalidSinceCut = 0;
  let invalidByReason: Record<string, number> = {};
  let foldMs = 0;
  let lastInputAt = now();
  let lastCutAt = now();
  let stopReason: ExitReason | null = null;
  let stopError: Error | undefined;
  const stopDeadline = { at: Infinity };
  const wake = { fn: undefined as (() => void) | undefined };
  let early: TriggerReason | null = null;
  let caughtUpPending = true; // the first trigger fires once the start has caught up
  let heldForBuffer = false;
  let invalidLogged = 0;

  const requestStop = (reason: ExitReason, error?: Error) => {
    if (stopReason !== null) return;
    stopReason = reason;
    stopError = error;
    stopDeadline.at = performance.now() + o.finalFlushTimeoutMs;
    wake.fn?.();
  };
  const triggerNow = (reason: TriggerReason) => {
    early ??= reason;
    wake.fn?.();
  };
  lease.lost.then((e) => {
    log.error("lease lost: stopping without a final checkpoint", { error: e });
    requestStop("lease-lost", e);
  });
  source.failed.then((e) => {
    if (e instanceof TopicIdentityError) {
      log.error("topic identity mismatch", { error: e });
      recordIdentityMismatch(e);
      requestStop("identity", e);
    } else requestStop("failed", e);
  });

  const fold = (b: SourceBatch) => {
    const t0 = performance.now();
    const p = b.partition;
    let expected = next.get(p) ?? logStart.get(p) ?? 0;
    const { offsets, formats, spans, data } = b;
    const n = b.count;
    const nowMs = now();
    const lastIdx = n - 1;
    let folded = 0;
    for (let i = 0; i <= lastIdx; i++) {
      const off = offsets[i];
      if (off < expected) continue; // delivered again after a seek or a rejoin: already folded
      if (off > expected && b.fetchedOffset > expected) {
        // The fetch started past our position: a seek went wrong. Never skip silently.
        log.error("fetch started past the stored offset: records skipped", {
          partition: p,
          expected,
          got: off,
        });
      }
      expected = off + 1;
      folded++;
      const vs = spans[4 * i];
      const value = vs < 0 ? null : data.subarray(vs, spans[4 * i + 1]);
      const code = formats[i];
      const format = code === FORMAT_CODE.json
        ? undefined
        : code === FORMAT_CODE.tickV1
        ? "tick-v1"
        : b.otherFormats?.get(i);
      if (parser.parse(value, format, nowMs)) {
        tick.symbol = parser.symbol;
        tick.eventTime = parser.time;
        tick.price = parser.price;
        tick.dayVolume = parser.hasDayVolume ? parser.dayVolume : undefined;
        tick.partition = p;
        tick.offset = off;
        tick.arrivalMs = i === lastIdx
          ? (Number.isFinite(b.lastIngestMs) ? b.lastIngestMs : nowMs)
          : undefined;
        try {
          engine.fold(tick);
        } catch (e) {
          reject(b, i, "engine", (e as Error).message);
        }
        continue;
      }
      reject(b, i, parser.reason, parser.detail);
    }
    if (folded > 0) {
      next.set(p, expected);
      lastSeen.set(p, b.last);
      sinceCut += folded;
      buffered += folded;
      lastInputAt = nowMs;
    }
    if (b.highWatermark > (ends.get(p) ?? -1)) ends.set(p, b.highWatermark);
    foldMs += performance.now() - t0;
  };
  // One tick object, refilled for every record (the engine copies what it keeps).
  const tick: Tick = {
    symbol: "",
    eventTime: 0,
    price: 0,
    partition: 0,
    offset: 0,
    dayVolume: undefined,
    arrivalMs: undefined,
  };
  const reject = (b: SourceBatch, i: number, reason: string, detail: string) => {
    const p = b.partition;
    const offset = b.offsets[i];
    invalidSinceCut++;
    invalidByReason[reason] = (invalidByReason[reason] ?? 0) + 1;
    letters.push(deadLetterOf({
      offset: String(offset),
      timestamp: String(b.timestamps[i]),
      key: keyAt(b, i),
      value: valueAt(b, i),
    }, { partition: p, reason, detail }));
    if (invalidLogged++ < 20) {
      log.warn("invalid record dead-lettered", { partition: p, offset, reason, detail });
    }
  };

  // --- the fold loop: takes what the source queued, as fast as it comes -------------------------
  const foldLoop = async () => {
    let sinceYield = 0;
    while (stopReason === null || stopReason === "stopped" || stopReason === "idle") {
      const b = await source.take();
      if (b === null) return;
      fold(b);
      if (buffered >= o.maxBuffered) {
        triggerNow("full");
        if (buffered >= 2 * o.maxBuffered && !heldForBuffer) {
          heldForBuffer = true;
          source.hold();
          log.warn("consumer paused: records read and not yet checkpointed at twice the bound", {
            buffered,
            maxBuffered: o.maxBuffered,
          });
        }
      }
      if (caughtUpPending && isCaughtUp()) triggerNow("caught-up");
      // Let kafkajs' sockets and the triggers in after a long run of batches.
      if ((sinceYield += b.count) >= 20_000) {
        sinceYield = 0;
        await sleep(0);
      }
    }
  };
  const isCaughtUp = () => {
    for (const p of source.assigned()) {
      const end = ends.get(p);
      if (end === undefined || (next.get(p) ?? logStart.get(p) ?? 0) < end) return false;
    }
    return source.assigned().length > 0;
  };

  // --- triggers ----------------------------------------------------------------------------------
  const retry: Retrier = retrier({
    logger: log,
    deadline: () => stopReason !== null ? stopDeadline.at : Infinity,
  });
  let compacting: Promise<void> | null = null;
  let lastOffsetsCopy = 0;

  /** Runs one trigger; returns when idle finalization will be done and whether all is read. */
  const trigger = async (
    reason: TriggerReason,
  ): Promise<{ allFinalAt: number | null; caughtUp: boolean }> => {
    const endsNow = await topicOffsets(admin, topic, { timeoutMs: 2000 }).catch(() => null);
    const endMap = endsNow === null
      ? null
      : new Map(endsNow.map((r) => [r.partition, r.end] as const));
    const nowMs = now();
    const caughtUp = endMap !== null &&
      [...endMap].every(([p, end]) => (next.get(p) ?? logStart.get(p) ?? 0) >= end);
    const t0 = performance.now();
    // A buffer-full trigger bounds what a crash replays; unless it has caught up with the log,
    // it holds its open rows back for the next trigger of another kind (deferred.ts).
    const hold = held.shouldHold({
      bufferFull: reason === "full" && !caughtUp,
      changed: engine.changedSinceCut,
    });
    const cut = engine.cut({
      nowMs,
      hold,
      caughtUp: (p) =>
        endMap !== null && (next.get(p) ?? logStart.get(p) ?? 0) >= (endMap.get(p) ?? Infinity),
      // A base replaces the pointer's segments: never while a compaction rewrites them.
      wholeState: compacting === null,
    });
    const plan = planTrigger({
      runId,
      batchId,
      topic,
      nowMs,
      reason,
      cut,
      windows: o.windows,
      offsets: Object.fromEntries(next),
      ends: endMap,
      records: sinceCut,
      invalid: invalidSinceCut,
      invalidByReason,
      lastCutAt,
      foldMs,
      cutMs: performance.now() - t0,
      openWindows: engine.openWindowCount,
      idleFinalizeMs: o.idleFinalizeMs,
      watermarkDelayMs: o.watermarkDelayMs,
    });
    const records = sinceCut;
    // Nothing read and nothing changed: nothing to write (the cost follows what changed). The
    // last trigger of a run always commits, so the run's end is on record.
    if (
      records === 0 && cut.stats.changed === 0 && cut.stats.finalized === 0 &&
      cut.late.length === 0 && cut.stats.idleAdvanced.length === 0 && reason !== "final" &&
      held.pending === 0
    ) {
      cut.release();
      return { allFinalAt: plan.allFinalAt, caughtUp };
    }
    const fps = Object.fromEntries([...lastSeen].map(([p, fp]) => [String(p), fp]));
    const myLetters = letters;
    letters = [];
    sinceCut = 0;
    invalidSinceCut = 0;
    invalidByReason = {};
    foldMs = 0;
    lastCutAt = nowMs;
    batchId++;
    const heldAfter = held.after(hold, cut.stats.changed);
    try {
      const result = await commitTrigger({
        pool,
        kv,
        deadLetters,
        serialize,
        retry,
        now,
      }, {
        topic,
        cut,
        rows: () => cut.rows(undefined, { born: "before" }),
        newRows: () => cut.rows(undefined, { born: "this-cut" }),
        letters: myLetters,
        progress: plan.progress,
        pointer: {
          runId,
          batchId: plan.progress.batchId,
          offsets: plan.progress.offsets,
          watermarks: plan.progress.watermarks,
          engine: engineSettings,
          identity: { partitions: logStart.size, fingerprints: fps },
          openWindows: plan.progress.openWindows,
          finalizeDueAt: plan.finalizeDueAt,
          ...(heldAfter > 0 ? { openRowsDeferred: true as const } : {}),
        },
        previous: checkpoint,
        guard,
        statementTimeoutMs: o.statementTimeoutMs,
      });
      checkpoint = result.checkpoint;
      held.committed(hold, cut.stats.changed);
      writeProgress(JSON.stringify(result.progress));
    } finally {
      cut.release();
    }
    buffered -= records;
    if (heldForBuffer && buffered < o.maxBuffered) {
      heldForBuffer = false;
      source.release();
      log.info("consumer resumed", { buffered });
    }
    maybeCompact();
    copyOffsets(false);
    return { allFinalAt: plan.allFinalAt, caughtUp };
  };

  const maybeCompact = () => {
    if (compacting !== null || checkpoint === null || !shouldCompact(checkpoint.pointer)) return;
    compacting = compact(kv, topic, { guard, serialize })
      .then((r) => {
        if (r === null) return;
        log.debug("checkpoint compacted", { records: r.merged, ms: Math.round(r.ms) });
        if (r.cleanup.error) log.warn("old segments not deleted yet", { error: r.cleanup.error });
        // The compaction's pointer is the newest unless a trigger flipped after it.
        if (
          checkpoint === null || r.checkpoint.pointer.batchId >= checkpoint.pointer.batchId
        ) checkpoint = r.checkpoint;
      })
      .catch((e) => {
        if (e instanceof CheckpointConflictError) log.debug("compaction lost a race", { error: e });
        else log.warn("compaction failed; retried later", { error: e as Error });
      })
      .finally(() => {
        compacting = null;
      });
  };

  // Kafka tools (kafka-consumer-groups.sh) see the stable group's offsets: copied now and then,
  // off the trigger path, with a standalone commit (no group membership).
  const copyOffsets = (force: boolean) => {
    if (!force && now() - lastOffsetsCopy < o.offsetsCopyEveryMs) return;
    lastOffsetsCopy = now();
    const offsets = checkpoint?.pointer.offsets;
    if (!offsets || Object.keys(offsets).length === 0) return;
    const done = commitGroupOffsetsSafe(kafka, o.groupId, topic, offsets, log);
    if (force) return done;
  };

  const loop = async (): Promise<ExitResult> => {
    const folding = foldLoop().catch((e) => requestStop("failed", e as Error));
    let lastTrigger = performance.now();
    const loopStart = performance.now();
    let last: { allFinalAt: number | null; caughtUp: boolean } = {
      allFinalAt: null,
      caughtUp: false,
    };
    let idleChecked = false; // the idle deadline was checked since the last trigger
    const checkIdle = () => {
      const quiet = now() - lastInputAt >= o.idleTimeoutMs;
      // Idle exit waits for windows that idle finalization closes within another idle
      // timeout (with the defaults: 15 min quiet, then every window of the session is final
      // 5 min later, before the exit); later ones are left to the finalization run the
      // sensor launches at the checkpoint's finalizeDueAt.
      const soon = now() + o.idleTimeoutMs;
      const { allFinalAt } = last;
      if (quiet && (allFinalAt === null || allFinalAt > soon || engine.openWindowCount === 0)) {
        log.info("idle timeout: no new records", { idleMs: now() - lastInputAt });
        requestStop("idle");
      }
    };
    try {
      while (stopReason === null) {
        const wait = Math.max(0, o.triggerMs - (performance.now() - lastTrigger));
        // Also wake at the idle deadline: an idle exit does not wait for the next trigger
        // (with the default 60 s trigger it would add up to a minute to every exit).
        const idleWait = last.caughtUp && !idleChecked
          ? Math.max(0, lastInputAt + o.idleTimeoutMs - now())
          : Infinity;
        const sleepMs = Math.min(wait, idleWait);
        if (early === null && sleepMs > 0) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, sleepMs);
            wake.fn = () => {
              clearTimeout(t);
              resolve();
            };
          });
          wake.fn = undefined;
        }
        if (stopReason !== null) break;
        if (early === null && performance.now() - lastTrigger < o.triggerMs) {
          // Woken at the idle deadline: no trigger is due (the last one committed everything
          // read before it, and nothing was read since, or the deadline would have moved).
          if (now() - lastInputAt >= o.idleTimeoutMs) {
            idleChecked = true;
            checkIdle();
          }
          continue;
        }
        let reason: TriggerReason = early ?? "interval";
        early = null;
        if (reason === "full" && sinceCut < o.maxBuffered) {
          // Asked while the previous commit still counted its records as unsaved: those not
          // yet checkpointed are under the bound now (the fold loop asks again when they are
          // not). Without this, every buffer-full commit on a backlog was followed at once by
          // a small one.
          if (performance.now() - lastTrigger < o.triggerMs) continue;
          reason = "interval";
        }
        if (reason === "interval" && caughtUpPending) {
          // A start on a backlog commits when it has caught up (or when maxBuffered records
          // wait), not at every interval on the way: a commit in the middle of a short catch-up
          // only delays the one that matters. Past FIRST_TRIGGER_DEFER_MS, intervals resume.
          if (isCaughtUp()) reason = "caught-up";
          else if (performance.now() - loopStart < FIRST_TRIGGER_DEFER_MS) {
            lastTrigger = performance.now();
            continue;
          }
        }
        if (reason === "caught-up") caughtUpPending = false;
        lastTrigger = performance.now();
        last = await trigger(reason);
        idleChecked = false;
        // Idle means nothing left to read: time without Kafka, or with unread records (a
        // consumer still reconnecting), is not idle time.
        if (!last.caughtUp) lastInputAt = now();
        checkIdle();
      }
      if (stopReason === "stopped" || stopReason === "idle") {
        // Fold what was already fetched, then the last trigger.
        source.hold();
        await source.stop();
        await folding;
        await trigger("final");
        await copyOffsets(true);
      }
    } catch (e) {
      if (e instanceof CheckpointConflictError) {
        stopReason = "lease-lost";
        stopError = e;
      } else if (e instanceof FinalFlushTimeout) {
        log.error("final flush gave up: records will be read again", { error: e });
      } else {
        stopReason = "failed";
        stopError = e as Error;
      }
      if (stopReason !== "stopped" && stopReason !== "idle") {
        log.error("aggregator stopping on error", { error: stopError });
      }
    }
    lease.stop();
    await source.stop();
    await compacting;
    await deadLetters.close();
    await closeKafkaExtras(kafka);
    await admin.deleteGroups([`${o.groupId}.run-${runId.slice(0, 8)}`]).catch(() => {});
    await Promise.race([admin.disconnect(), sleep(5000)]).catch(() => {});
    if (stopReason !== "lease-lost") {
      await serialize(() => releaseLease(kv, topic, runId)).catch((e) =>
        log.warn("lease release failed", { error: e as Error })
      );
    }
    const result: ExitResult = { reason: stopReason!, error: stopError };
    log.info("aggregator stopped", { reason: result.reason, runId });
    return result;
  };

  log.info("aggregator started", {
    runId,
    startupMs: Math.round(performance.now() - startedAt),
    ...startup,
    topic,
    triggerMs: o.triggerMs,
    idleTimeoutMs: o.idleTimeoutMs,
    windows: o.windows.map(durationText).join(","),
    watermarkDelayMs: o.watermarkDelayMs,
    idleFinalizeMs: o.idleFinalizeMs,
  });
  const done = loop();
  return {
    runId,
    done,
    stop: () => {
      requestStop("stopped");
      return done;
    },
  };
}

/** What is wrong with the topic given the checkpoint, or null. Pure. */
export function identityProblem(
  pointer: Pick<CheckpointPointer, "offsets">,
  ranges: readonly { partition: number; start: number; end: number }[],
): IdentityProblem | null {
  const byPartition = new Map(ranges.map((r) => [r.partition, r]));
  for (const [key, stored] of Object.entries(pointer.offsets)) {
    const p = Number(key);
    const r = byPartition.get(p);
    if (r === undefined) {
      return {
        reason: "partition-count",
        partition: p,
        expected: Object.keys(pointer.offsets).length,
        found: ranges.length,
        what: `partition ${p} is gone (the topic has ${ranges.length} partitions)`,
      };
    }
    if (stored > r.end) {
      return {
        reason: "offset-beyond-end",
        partition: p,
        expected: stored,
        found: r.end,
        what: `the stored offset ${stored} is beyond the end offset ${r.end}`,
      };
    }
    if (stored < r.start) {
      return {
        reason: "offset-below-start",
        partition: p,
        expected: stored,
        found: r.start,
        what: `the stored offset ${stored} is below the log start ${r.start}: ` +
          `${r.start - stored} unread records are gone`,
      };
    }
  }
  return null;
}

async function commitGroupOffsetsSafe(
  kafka: Kafka,
  groupId: string,
  topic: string,
  offsets: Record<string, number>,
  log: Logger,
): Promise<void> {
  await commitGroupOffsets(kafka, { groupId, topic, offsets }).catch((e) =>
    log.debug("copying offsets to the stable group failed (KV is authoritative)", {
      error: e as Error,
    })
  );
}
