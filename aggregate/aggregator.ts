/**
 * The aggregator loop: consume the ticks topic (kafkajs eachBatch), fold into the window engine,
 * and every trigger write the emitted windows, late ticks and progress to PostgreSQL in one
 * transaction, then checkpoint offsets + engine state to Deno KV, then commit the offsets to the
 * Kafka consumer group (informational: KV is the source of truth).
 *
 * Kafka, PostgreSQL, KV and the clock are passed in (`runAggregator(deps, options)`).
 * @module
 */

import type { Kafka } from "../common/kafka.ts";
import type { Pool } from "../common/pg.ts";
import { isTransientDbError } from "../common/pg.ts";
import { createLogger, type Logger } from "../common/log.ts";
import { backoffDelay, sleep } from "../common/backoff.ts";
import {
  type EngineSnapshot,
  type LateTick,
  type Tick,
  WindowEngine,
  type WindowRow,
} from "./engine.ts";
import {
  acquireLease,
  DEFAULT_LEASE_TTL_MS,
  type HeldLease,
  leaseKey,
  LeaseLostError,
  releaseLease,
  renewLease,
} from "./lease.ts";
import {
  CheckpointConflictError,
  deleteCheckpoint,
  deleteStaleGenerations,
  readCheckpointState,
  type StoredCheckpoint,
  writeCheckpoint,
} from "./checkpoint.ts";
import { type AggregatorProgress, progressKey } from "./progress.ts";
import { writeBatch } from "./sink.ts";

/** Default consumer group. */
export const DEFAULT_GROUP_ID = "tickpipe-aggregator";

/** What the aggregator talks to. */
export interface AggregatorDeps {
  /** kafkajs client (a consumer and an admin are created from it). */
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
}

/** Aggregator settings. */
export interface AggregatorOptions {
  /** Ticks topic. */
  topic: string;
  /** Consumer group (default tickpipe-aggregator). */
  groupId?: string;
  /** Trigger interval in ms (default 60 000). */
  triggerMs?: number;
  /** Exit after this long without new records, in ms (default 15 min). */
  idleTimeoutMs?: number;
  /** Window size in ms (default 5 min). */
  windowMs?: number;
  /** Watermark delay in ms (default 15 min). */
  watermarkDelayMs?: number;
  /** Pause the consumer when more records than this are not yet checkpointed (default 200 000). */
  maxBuffered?: number;
  /** Ignore (delete) the checkpoint and rebuild from the earliest offsets. */
  fromBeginning?: boolean;
  /** Lease TTL in ms (default 30 000; renewed every third of it). */
  leaseTtlMs?: number;
  /** The caller holds the host-local process lock (tryProcessLock): same-host lease holders are dead. */
  holdsProcessLock?: boolean;
  /** On stop, how long to keep retrying the final write before giving up (default 30 000). */
  finalFlushTimeoutMs?: number;
  /** kafkajs session timeout (default 10 000). */
  sessionTimeoutMs?: number;
}

/** Why the aggregator stopped. */
export type ExitReason = "idle" | "stopped" | "lease-lost" | "failed";

/** How a run ended. */
export interface ExitResult {
  /** Why. */
  reason: ExitReason;
  /** The error for "failed" and "lease-lost". */
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

/** Result of {@linkcode parseTickRecord}. */
export type ParsedRecord = { ok: true; tick: Tick } | { ok: false; reason: string };

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Maps a Kafka record value (normalized tick JSON) to an engine tick, or says why it cannot. */
export function parseTickRecord(
  value: Uint8Array | null,
  coords: { partition: number; offset: number },
): ParsedRecord {
  if (value === null) return { ok: false, reason: "empty value" };
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(value));
  } catch {
    return { ok: false, reason: "value is not JSON" };
  }
  if (typeof v !== "object" || v === null) return { ok: false, reason: "value is not an object" };
  const { id, price, time } = v as Record<string, unknown>;
  if (typeof id !== "string" || id === "") return { ok: false, reason: `bad id ${String(id)}` };
  if (typeof price !== "number" || !Number.isFinite(price)) {
    return { ok: false, reason: `bad price ${String(price)}` };
  }
  if (typeof time !== "number" || !Number.isSafeInteger(time) || time <= 0) {
    return { ok: false, reason: `bad time ${String(time)}` };
  }
  return {
    ok: true,
    tick: {
      symbol: id,
      eventTime: time,
      price,
      partition: coords.partition,
      offset: coords.offset,
    },
  };
}

interface Pending {
  windows: WindowRow[];
  late: LateTick[];
  state: Uint8Array;
  offsets: Record<string, number>;
  watermarks: Record<string, number | null>;
  progress: AggregatorProgress;
  records: number;
}

class FinalFlushTimeout extends Error {
  constructor(what: string) {
    super(`Gave up the final ${what} write after the stop deadline; records will be re-read`);
    this.name = "FinalFlushTimeout";
  }
}

/**
 * Starts an aggregator: takes the lease (throws LeaseHeldError when another one runs), restores
 * the checkpoint, seeks every assigned partition to its checkpointed offset and runs the trigger
 * loop until idle, stopped, or the lease is lost.
 */
export async function runAggregator(
  deps: AggregatorDeps,
  options: AggregatorOptions,
): Promise<AggregatorHandle> {
  const { kafka, pool, kv } = deps;
  const now = deps.now ?? Date.now;
  const log = deps.logger ?? createLogger("aggregate");
  const writeProgress = deps.writeProgress ?? ((line: string) => console.log(line));
  const topic = options.topic;
  const triggerMs = options.triggerMs ?? 60_000;
  const idleTimeoutMs = options.idleTimeoutMs ?? 15 * 60_000;
  const maxBuffered = options.maxBuffered ?? 200_000;
  const leaseTtlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  const finalFlushTimeoutMs = options.finalFlushTimeoutMs ?? 30_000;
  const engineOptions = { windowMs: options.windowMs, watermarkDelayMs: options.watermarkDelayMs };
  const runId = crypto.randomUUID();

  // --- lease (exit code 3 for the loser) -------------------------------------------------------
  let lease: HeldLease = await acquireLease(kv, topic, {
    holder: runId,
    now: now(),
    ttlMs: leaseTtlMs,
    hostname: deps.hostname,
    processLocked: options.holdsProcessLock === true,
    // With the host's process lock in hand, a holder on this host that also took that lock
    // must be a dead process (the kernel released its lock).
    holderDead: options.holdsProcessLock && deps.hostname !== undefined
      ? (l) => l.processLocked === true && l.hostname === deps.hostname
      : undefined,
  });
  let kvChain: Promise<unknown> = Promise.resolve();
  const withKvLock = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = kvChain.then(fn);
    kvChain = p.catch(() => {});
    return p;
  };

  let engine: WindowEngine;
  let checkpoint: StoredCheckpoint | null = null;
  const nextOffset = new Map<number, number>();
  let batchId = 0;
  const admin = kafka.admin();
  const consumer = kafka.consumer({
    groupId: options.groupId ?? DEFAULT_GROUP_ID,
    // The broker's minimum: a restart after kill -9 waits this long for the dead member to leave.
    sessionTimeout: options.sessionTimeoutMs ?? 6_000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 250,
    retry: { retries: 8, initialRetryTime: 300, maxRetryTime: 5000 },
  });
  const lowOffsets = new Map<number, number>();
  try {
    // --- checkpoint ----------------------------------------------------------------------------
    if (options.fromBeginning) {
      await deleteCheckpoint(kv, topic);
      log.warn("checkpoint deleted: rebuilding from the earliest offsets", { topic });
    }
    const restored = await readCheckpointState(kv, topic);
    if (restored) {
      checkpoint = restored.checkpoint;
      // An operator reset (`offsets reset`) keeps the offsets but drops the state: start empty.
      engine = restored.state.byteLength === 0
        ? new WindowEngine(engineOptions)
        : WindowEngine.restore(
          JSON.parse(decoder.decode(restored.state)) as EngineSnapshot,
          engineOptions,
        );
      for (const [p, o] of Object.entries(checkpoint.pointer.offsets)) nextOffset.set(Number(p), o);
      batchId = checkpoint.pointer.batchId + 1;
      log.info("restored checkpoint", {
        generation: checkpoint.pointer.generation,
        offsets: checkpoint.pointer.offsets,
        openWindows: engine.openWindowCount,
      });
    } else {
      engine = new WindowEngine(engineOptions);
      log.info("no checkpoint: starting from the earliest offsets", { topic });
    }
    const removed = await deleteStaleGenerations(
      kv,
      topic,
      checkpoint?.pointer.generation ?? null,
    );
    if (removed > 0) log.info("removed stale checkpoint chunks", { chunks: removed });

    // --- Kafka -----------------------------------------------------------------------------------
    await admin.connect();
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) {
      throw new Error(`Topic "${topic}" does not exist on Kafka: nothing to aggregate`);
    }
    for (const r of await admin.fetchTopicOffsets(topic)) {
      lowOffsets.set(r.partition, Number(r.low));
    }
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
  } catch (e) {
    await consumer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
    await releaseLease(kv, topic, runId).catch(() => {});
    throw e;
  }

  // --- state shared by the consumer callbacks and the trigger loop ---------------------------------
  let buffered = 0; // records folded and not yet checkpointed
  let sinceCut = 0; // records folded since the last trigger cut
  let invalidSinceCut = 0;
  let fetchMs = 0;
  let foldMs = 0;
  let lastInputAt = now();
  let lastCutAt = now();
  let paused = false;
  let kafkaDown = false;
  let pgDown = false;
  let stopReason: ExitReason | null = null;
  let stopError: Error | undefined;
  let stopDeadline = Infinity;
  const stopCtl = new AbortController();
  const gapTries = new Map<number, number>();
  let invalidLogged = 0;

  const requestStop = (reason: ExitReason, error?: Error) => {
    if (stopReason === null) {
      stopReason = reason;
      stopError = error;
      stopDeadline = performance.now() + finalFlushTimeoutMs;
      stopCtl.abort();
    }
  };

  const seekAssigned = (partitions: number[]) => {
    for (const p of partitions) {
      const off = nextOffset.get(p) ?? lowOffsets.get(p);
      if (off !== undefined) consumer.seek({ topic, partition: p, offset: String(off) });
    }
  };

  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const parts = (e.payload.memberAssignment[topic] ?? []).slice().sort((a, b) => a - b);
    try {
      seekAssigned(parts);
    } catch (err) {
      log.warn("seek after assignment failed", { error: err as Error });
    }
    if (kafkaDown) {
      kafkaDown = false;
      log.info("kafka up: consumer rejoined", { partitions: parts });
    } else log.info("partitions assigned", { partitions: parts });
  });
  consumer.on(consumer.events.FETCH, (e) => {
    fetchMs += e.payload.duration;
    if (kafkaDown) {
      kafkaDown = false;
      log.info("kafka up: fetching again");
    }
  });
  consumer.on(consumer.events.CRASH, (e) => {
    if (!kafkaDown) {
      kafkaDown = true;
      log.warn("kafka down: consumer crashed, kafkajs restarts it", {
        error: e.payload.error,
        restart: e.payload.restart,
      });
    }
    if (!e.payload.restart) requestStop("failed", e.payload.error);
  });

  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, isRunning, isStale, heartbeat }) => {
      if (batch.topic !== topic) return;
      const p = batch.partition;
      const t0 = performance.now();
      for (const m of batch.messages) {
        if (!isRunning() || isStale() || stopReason !== null) break;
        const off = Number(m.offset);
        const expected = nextOffset.get(p) ?? lowOffsets.get(p) ?? 0;
        if (off < expected) { // re-delivered after a seek/rebalance: already folded
          resolveOffset(m.offset);
          continue;
        }
        if (off > expected) {
          const tries = gapTries.get(p) ?? 0;
          if (tries < 3) {
            gapTries.set(p, tries + 1);
            log.warn("fetch started past the checkpointed offset: seeking back", {
              partition: p,
              expected,
              got: off,
            });
            consumer.seek({ topic, partition: p, offset: String(expected) });
            break;
          }
          log.warn("offsets missing from the log (retention?): skipping them", {
            partition: p,
            from: expected,
            to: off - 1,
          });
        }
        gapTries.delete(p);
        const parsed = parseTickRecord(m.value, { partition: p, offset: off });
        let bad = parsed.ok ? null : parsed.reason;
        if (parsed.ok) {
          try {
            engine.fold(parsed.tick);
          } catch (err) {
            bad = (err as Error).message;
          }
        }
        if (bad !== null) {
          invalidSinceCut++;
          if (invalidLogged++ < 100) {
            log.warn("skipping invalid record", { partition: p, offset: off, reason: bad });
          }
        }
        nextOffset.set(p, off + 1);
        sinceCut++;
        buffered++;
        lastInputAt = now();
        resolveOffset(m.offset);
      }
      foldMs += performance.now() - t0;
      if (!paused && buffered >= maxBuffered) {
        paused = true;
        consumer.pause([{ topic }]);
        log.warn("consumer paused: too many records not yet checkpointed", {
          buffered,
          maxBuffered,
        });
      }
      await heartbeat().catch(() => {});
    },
  });

  // --- lease renewal -------------------------------------------------------------------------------
  const renewTimer = setInterval(() => {
    if (stopReason === "lease-lost") return;
    withKvLock(async () => {
      lease = await renewLease(kv, topic, {
        holder: runId,
        now: now(),
        ttlMs: leaseTtlMs,
        hostname: deps.hostname,
      });
    }).catch((e) => {
      if (e instanceof LeaseLostError) {
        log.error("lease lost: stopping without a final checkpoint", { error: e });
        requestStop("lease-lost", e);
      } else log.warn("lease renewal failed; retrying", { error: e as Error });
    });
  }, Math.max(100, Math.floor(leaseTtlMs / 3)));

  // --- the trigger -------------------------------------------------------------------------------
  const partitionKeys = () =>
    [...new Set([...nextOffset.keys(), ...engine.partitions()])].sort((a, b) => a - b);

  const endOffsetsSafe = async (): Promise<Map<number, number> | null> => {
    try {
      const rows = await Promise.race([
        admin.fetchTopicOffsets(topic),
        sleep(2000).then(() => null),
      ]);
      if (rows === null) return null;
      return new Map(rows.map((r) => [r.partition, Number(r.high)]));
    } catch {
      return null;
    }
  };

  const cut = (reason: "interval" | "final", ends: Map<number, number> | null): Pending => {
    const t0 = performance.now();
    const { windows, late } = engine.trigger();
    const state = encoder.encode(JSON.stringify(engine.snapshot()));
    const offsets: Record<string, number> = {};
    const watermarks: Record<string, number | null> = {};
    const lag: Record<string, number | null> = {};
    for (const p of partitionKeys()) {
      const next = nextOffset.get(p);
      if (next !== undefined) offsets[p] = next;
      const wm = engine.watermark(p);
      watermarks[p] = Number.isFinite(wm) ? wm : null;
    }
    for (const p of ends ? [...ends.keys()] : []) {
      const next = nextOffset.get(p) ?? lowOffsets.get(p) ?? 0;
      lag[p] = Math.max(0, ends!.get(p)! - next);
    }
    const t = now();
    const seconds = Math.max(0.001, (t - lastCutAt) / 1000);
    const finalized = windows.filter((w) => w.isFinal).length;
    const progress: AggregatorProgress = {
      runId,
      batchId,
      topic,
      timestamp: new Date(t).toISOString(),
      inputRows: sinceCut,
      invalidRows: invalidSinceCut,
      rowsPerSecond: Math.round((sinceCut / seconds) * 100) / 100,
      watermarks,
      windowsUpdated: windows.length - finalized,
      windowsFinalized: finalized,
      lateDropped: late.length,
      openWindows: engine.openWindowCount,
      offsets,
      lag,
      durationsMs: {
        fetchMs: Math.round(fetchMs),
        foldMs: Math.round(foldMs),
        triggerMs: Math.round(performance.now() - t0),
        sinkMs: null,
        checkpointMs: null,
      },
      reason,
    };
    const pending: Pending = {
      windows,
      late,
      state,
      offsets,
      watermarks,
      progress,
      records: sinceCut,
    };
    sinceCut = 0;
    invalidSinceCut = 0;
    fetchMs = 0;
    foldMs = 0;
    lastCutAt = t;
    batchId++;
    return pending;
  };

  /** Retries `fn` with backoff until it succeeds; logs one line per down/up change. */
  const retrying = async <T>(what: "postgres" | "kv", fn: () => Promise<T>): Promise<T> => {
    let attempt = 0;
    let hardFailures = 0;
    for (;;) {
      try {
        const r = await fn();
        if (what === "postgres" && pgDown) {
          pgDown = false;
          log.info("postgres up: write succeeded", { attempts: attempt + 1 });
        }
        return r;
      } catch (e) {
        if (e instanceof CheckpointConflictError) throw e;
        const transient = what === "kv" || isTransientDbError(e);
        if (!transient && ++hardFailures >= 5) throw e;
        if (what === "postgres" && !pgDown) {
          pgDown = true;
          log.warn("postgres down: retrying with backoff; offsets not advanced", {
            error: e as Error,
          });
        } else if (what === "kv") log.warn("kv write failed; retrying", { error: e as Error });
        if (stopReason !== null && performance.now() > stopDeadline) {
          throw new FinalFlushTimeout(what);
        }
        const delay = backoffDelay(attempt++, { initialMs: 200, maxMs: 5000 });
        await sleep(Math.min(delay, Math.max(0, stopDeadline - performance.now()) + 10)).catch(
          () => {},
        );
      }
    }
  };

  const flush = async (reason: "interval" | "final") => {
    const ends = await endOffsetsSafe();
    const pending = cut(reason, ends);
    const sink = await retrying("postgres", () =>
      writeBatch(pool, topic, {
        windows: pending.windows,
        late: pending.late,
        progress: pending.progress,
      }));
    const t1 = performance.now();
    const progress = {
      ...pending.progress,
      durationsMs: { ...pending.progress.durationsMs, sinkMs: sink.sinkMs },
    };
    checkpoint = await retrying("kv", () =>
      withKvLock(() =>
        writeCheckpoint(kv, topic, {
          runId,
          batchId: pending.progress.batchId,
          committedAt: now(),
          offsets: pending.offsets,
          watermarks: pending.watermarks,
          state: pending.state,
        }, {
          previous: checkpoint,
          guard: { key: leaseKey(topic), versionstamp: lease.versionstamp },
        })
      ));
    progress.durationsMs.checkpointMs = Math.round(performance.now() - t1);
    await kv.set(progressKey(topic), progress).catch(() => {});
    writeProgress(JSON.stringify(progress));
    buffered -= pending.records;
    if (paused && buffered < maxBuffered && stopReason === null) {
      paused = false;
      // Time spent paused (e.g. PostgreSQL down) is not idle time: unread records may be
      // waiting (found by tests/chaos/c3: the aggregator exited "idle" right after an outage).
      lastInputAt = now();
      consumer.resume([{ topic }]);
      log.info("consumer resumed", { buffered });
    }
    // Informational: lets Kafka tools show the group's lag. KV stays the source of truth.
    const commits = Object.entries(pending.offsets).map(([p, o]) => ({
      topic,
      partition: Number(p),
      offset: String(o),
    }));
    if (commits.length > 0) {
      await Promise.race([consumer.commitOffsets(commits), sleep(2000)]).catch((e) =>
        log.debug("kafka offset commit failed (KV is authoritative)", { error: e as Error })
      );
    }
  };

  const loop = async (): Promise<ExitResult> => {
    try {
      while (stopReason === null) {
        await sleep(triggerMs, stopCtl.signal).catch(() => {});
        if (stopReason !== null) break;
        await flush("interval");
        if (!paused && now() - lastInputAt >= idleTimeoutMs) {
          log.info("idle timeout: no new records", { idleMs: now() - lastInputAt });
          requestStop("idle");
        }
      }
      if (stopReason !== "lease-lost" && stopReason !== "failed") {
        if (!paused) consumer.pause([{ topic }]);
        paused = true;
        await flush("final");
      }
    } catch (e) {
      if (e instanceof CheckpointConflictError) {
        stopReason = "lease-lost";
        stopError = e;
      } else {
        stopReason = "failed";
        stopError = e as Error;
      }
      log.error("aggregator stopping on error", { error: stopError });
    }
    clearInterval(renewTimer);
    await Promise.race([consumer.disconnect(), sleep(10_000)]).catch(() => {});
    await Promise.race([admin.disconnect(), sleep(5000)]).catch(() => {});
    if (stopReason !== "lease-lost") {
      await withKvLock(() => releaseLease(kv, topic, runId)).catch((e) =>
        log.warn("lease release failed", { error: e as Error })
      );
    }
    const result: ExitResult = { reason: stopReason!, error: stopError };
    log.info("aggregator stopped", { reason: result.reason, runId });
    return result;
  };

  log.info("aggregator started", {
    runId,
    topic,
    triggerMs,
    idleTimeoutMs,
    windowMs: engine.windowMs,
    watermarkDelayMs: engine.watermarkDelayMs,
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
