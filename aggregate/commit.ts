/**
 * The commit step of a trigger, in the one order that keeps PostgreSQL and the offsets in step:
 * dead letters to `<topic>.dlq` (Kafka), then the rows in one PostgreSQL transaction, then a
 * checkpoint in Deno KV (a delta; over an empty state, or when the cut captured the whole state,
 * a base), fenced by the lease. A crash between any two steps re-reads the records after the last
 * checkpoint; the row versions make the replay idempotent.
 * Availability errors are retried with backoff, each logged once as what it is.
 * @module
 */

import type { Logger } from "../common/log.ts";
import type { Pool } from "../common/pg.ts";
import { backoffDelay, sleep } from "../common/backoff.ts";
import { kafkaRefusalReason } from "../common/kafka_security.ts";
import type { Cut, WindowRow } from "./engine.ts";
import { SinkUnavailableError, writeBatch } from "./sink.ts";
import { CheckpointConflictError, type StoredCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import type { CheckpointPointer } from "./kv_layout.ts";
import { progressKey } from "./progress.ts";
import type { DeadLetter, DeadLetterSink } from "./dead_letters.ts";
import type { AggregatorProgress } from "./progress.ts";

/** Raised when a stop's flush deadline passed while a write was still failing. */
export class FinalFlushTimeout extends Error {
  /** Creates the error naming the write that gave up. */
  constructor(what: string) {
    super(`Gave up the final ${what} write after the stop deadline; records will be read again`);
    this.name = "FinalFlushTimeout";
  }
}

/** Retries a write while it fails for availability reasons. */
export type Retrier = <T>(what: "kafka" | "postgres" | "kv", fn: () => Promise<T>) => Promise<T>;

/**
 * A {@linkcode Retrier}: backoff 200 ms doubling to 5 s; one "down" line and one "up" line per
 * outage; errors that are not about availability are thrown at once; past `deadline()`
 * (a stop's flush timeout) it gives up with FinalFlushTimeout.
 */
export function retrier(options: { logger: Logger; deadline: () => number }): Retrier {
  const down = new Set<string>();
  const log = options.logger;
  return async (what, fn) => {
    for (let attempt = 0;; attempt++) {
      try {
        const r = await fn();
        if (down.delete(what)) log.info(`${what} up: write succeeded`, { attempts: attempt + 1 });
        return r;
      } catch (e) {
        if (e instanceof CheckpointConflictError || !isAvailabilityError(what, e)) throw e;
        if (!down.has(what)) {
          down.add(what);
          // Credentials or certificates refused while running (revoked, rotating) are said as
          // what they are, and retried like an outage: they may be accepted again.
          const refused = what === "kafka" ? kafkaRefusalReason(e) : undefined;
          if (refused !== undefined) {
            log.warn(
              "kafka refused this process' TLS or SASL settings: retrying with backoff; offsets " +
                "not advanced",
              { reason: refused },
            );
          } else {
            log.warn(`${what} down: retrying with backoff; offsets not advanced`, {
              error: e as Error,
            });
          }
        }
        const left = options.deadline() - performance.now();
        if (left <= 0) throw new FinalFlushTimeout(what);
        await sleep(Math.min(backoffDelay(attempt, { initialMs: 200, maxMs: 5000 }), left + 10));
      }
    }
  };
}

function isAvailabilityError(what: "kafka" | "postgres" | "kv", e: unknown): boolean {
  if (what === "postgres") return e instanceof SinkUnavailableError;
  // KV: SQLite busy or an I/O hiccup; a permission denial is not retried.
  if ((e as Error)?.name === "NotCapable" || (e as Error)?.name === "PermissionDenied") {
    return false;
  }
  return true;
}

/** What {@linkcode commitTrigger} writes with. */
export interface CommitDeps {
  /** PostgreSQL pool. */
  pool: Pool;
  /** Deno KV. */
  kv: Deno.Kv;
  /** The dead-letter producer. */
  deadLetters: DeadLetterSink;
  /** Serializes the process' KV writes. */
  serialize: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Retries availability errors. */
  retry: Retrier;
  /** Clock (epoch ms). */
  now: () => number;
  /** Told when retired segments could not be deleted (they are retried at the next write). */
  onCleanupError?: (error: Error) => void;
}

/** One trigger's commit. */
export interface CommitInput {
  /** Topic. */
  topic: string;
  /** The engine cut (rows, late ticks, delta). */
  cut: Cut;
  /** The window rows to write (default: all the cut's rows); called again on a retry. */
  rows?: () => Iterable<readonly WindowRow[]>;
  /** Window rows the table should not hold yet (sink `newWindows`); called after `rows`. */
  newRows?: () => Iterable<readonly WindowRow[]>;
  /** Records to dead-letter. */
  letters: readonly DeadLetter[];
  /** Progress record (sink/checkpoint durations filled in here). */
  progress: AggregatorProgress;
  /** Pointer fields of the new checkpoint. */
  pointer: Pick<
    CheckpointPointer,
    | "runId"
    | "batchId"
    | "offsets"
    | "watermarks"
    | "engine"
    | "identity"
    | "openWindows"
    | "finalizeDueAt"
    | "openRowsDeferred"
  >;
  /** The checkpoint this one follows. */
  previous: StoredCheckpoint | null;
  /** The lease check that fences the checkpoint. */
  guard: () => Deno.AtomicCheck;
  /** Sink statement timeout (ms). */
  statementTimeoutMs: number;
}

/** Commits one trigger; returns the new checkpoint and the completed progress record. */
export async function commitTrigger(
  deps: CommitDeps,
  input: CommitInput,
): Promise<{ checkpoint: StoredCheckpoint; progress: AggregatorProgress }> {
  const { retry } = deps;
  const progress = { ...input.progress, durationsMs: { ...input.progress.durationsMs } };
  const t0 = performance.now();
  await retry("kafka", () => deps.deadLetters.send(input.letters));
  progress.durationsMs.deadLetterMs = Math.round(performance.now() - t0);
  const sink = await retry("postgres", () =>
    writeBatch(deps.pool, {
      topic: input.topic,
      windows: input.rows ? input.rows() : input.cut.rows(),
      newWindows: input.newRows?.(),
      late: input.cut.late,
      progress,
    }, { statementTimeoutMs: input.statementTimeoutMs }));
  progress.durationsMs.sinkMs = sink.sinkMs;
  progress.rowsRejected = sink.rejected;
  progress.windowsWritten = sink.windowsWritten;
  const t1 = performance.now();
  const state = input.cut.state;
  const written = await retry(
    "kv",
    () =>
      deps.serialize(() =>
        writeCheckpoint(deps.kv, input.topic, {
          ...input.pointer,
          committedAt: deps.now(),
          records: state ?? input.cut.delta(),
        }, {
          wholeState: state !== null,
          previous: input.previous,
          guard: input.guard,
          alsoSet: [{ key: progressKey(input.topic), value: progress }],
        })
      ),
  );
  progress.durationsMs.checkpointMs = Math.round(performance.now() - t1);
  progress.checkpointBytes = written.bytes;
  if (written.cleanup.error) deps.onCleanupError?.(written.cleanup.error);
  return { checkpoint: written.checkpoint, progress };
}
