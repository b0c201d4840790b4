/**
 * The pure trigger step: from an engine cut and the counters of the records read since the
 * previous trigger, the progress record (what the trigger commits and reports) and the times
 * idle finalization will make open windows final. No I/O, no clock (the time is an input).
 * @module
 */

import type { Cut } from "./engine.ts";
import type { AggregatorProgress, TriggerReason } from "./progress.ts";

/** Everything {@linkcode planTrigger} looks at. */
export interface TriggerInput {
  /** Run id. */
  runId: string;
  /** Trigger number. */
  batchId: number;
  /** Topic. */
  topic: string;
  /** Wall time of the cut (epoch ms). */
  nowMs: number;
  /** Why the trigger runs. */
  reason: TriggerReason;
  /** The engine cut. */
  cut: Cut;
  /** Window resolutions (ms). */
  windows: readonly number[];
  /** Next offset per partition at the cut. */
  offsets: Record<string, number>;
  /** End offset per partition, null when Kafka did not answer. */
  ends: ReadonlyMap<number, number> | null;
  /** Records read since the previous trigger. */
  records: number;
  /** Of those, records dead-lettered. */
  invalid: number;
  /** Dead-lettered records by reason. */
  invalidByReason: Record<string, number>;
  /** Wall time of the previous cut (epoch ms). */
  lastCutAt: number;
  /** Time spent folding since the previous trigger (ms). */
  foldMs: number;
  /** Time the cut took (ms). */
  cutMs: number;
  /** Open windows after the cut. */
  openWindows: number;
  /** Idle finalization quiet time (0 = off). */
  idleFinalizeMs: number;
  /** Watermark delay (ms). */
  watermarkDelayMs: number;
}

/** What a trigger commits and reports. */
export interface TriggerPlan {
  /** The progress record (sink and checkpoint durations are filled in by the commit). */
  progress: AggregatorProgress;
  /** Earliest wall time at which idle finalization can finalize an open window (null: never). */
  finalizeDueAt: number | null;
  /** Wall time by which idle finalization will have finalized every open window (null: never). */
  allFinalAt: number | null;
}

/** Builds the trigger's progress and finalization times. Pure. */
export function planTrigger(input: TriggerInput): TriggerPlan {
  const { cut } = input;
  const watermarks: Record<string, number | null> = {};
  const lag: Record<string, number | null> = {};
  let allFinal: number | null = null;
  const maxWindow = Math.max(...input.windows);
  for (const m of cut.meta) {
    watermarks[String(m.partition)] = m.watermark;
    if (m.openWindows > 0 && input.idleFinalizeMs > 0 && m.lastArrivalMs !== null) {
      // The last open window of p ends at most one window after its newest tick; idle
      // finalization makes a window final once the wall clock passes its end + the delay.
      const lastEnd = m.maxEventTime === null
        ? -Infinity
        : Math.floor(m.maxEventTime / maxWindow) * maxWindow + maxWindow;
      const pAll = Math.max(
        m.lastArrivalMs + input.idleFinalizeMs,
        lastEnd + input.watermarkDelayMs,
      );
      allFinal = allFinal === null ? pAll : Math.max(allFinal, pAll);
    }
  }
  if (input.ends !== null) {
    for (const [p, end] of input.ends) {
      lag[String(p)] = Math.max(0, end - (input.offsets[String(p)] ?? 0));
    }
  }
  const seconds = Math.max(0.001, (input.nowMs - input.lastCutAt) / 1000);
  const s = cut.stats;
  const progress: AggregatorProgress = {
    runId: input.runId,
    batchId: input.batchId,
    topic: input.topic,
    timestamp: new Date(input.nowMs).toISOString(),
    inputRows: input.records,
    invalidRows: input.invalid,
    invalidByReason: input.invalidByReason,
    rowsPerSecond: Math.round((input.records / seconds) * 100) / 100,
    watermarks,
    windowsUpdated: s.changed,
    windowsFinalized: s.finalized,
    lateDropped: cut.late.length,
    forcedFinal: s.forcedFinal,
    idleAdvanced: s.idleAdvanced,
    windows: [...input.windows],
    openWindows: input.openWindows,
    offsets: input.offsets,
    lag,
    durationsMs: {
      fetchMs: 0,
      foldMs: Math.round(input.foldMs),
      triggerMs: Math.round(input.cutMs),
      sinkMs: null,
      checkpointMs: null,
    },
    reason: input.reason,
  };
  return { progress, finalizeDueAt: cut.finalizeDueAt, allFinalAt: allFinal };
}
