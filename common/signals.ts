/**
 * Stop requests, the way supervisors send them: one stop request is one stop request, however
 * many copies of it arrive. A group kill (`kill -TERM -- -PGID`, systemd's KillMode=control-group)
 * delivers SIGTERM to `deno task` and to its child, and `deno task` then forwards its own copy, so
 * the child sees two; supervisors also send SIGTERM twice.
 *
 * The rule ({@linkcode StopRule}, pure, clock passed in):
 * - the first request starts the stop: the process flushes;
 * - requests within {@linkcode COALESCE_MS} of the last request that counted are copies of it
 *   and are ignored;
 * - a later request cuts the flush (the process exits at once, code 130) only when the flush has
 *   already run longer than its deadline; before that it is logged and ignored.
 *
 * {@linkcode watchStopSignals} applies the rule to SIGINT and SIGTERM. Its listeners stay until the
 * process exits: after the flush ({@linkcode StopSignals.dispose}) a copy of the request is still a
 * copy (a supervisor's second SIGTERM that lands while the process closes its connections must not
 * turn a clean exit into "killed by SIGTERM"); any other request ends the process at once with the
 * code the signal's default action gives (128 + its number).
 * @module
 */

import { constants as osConstants } from "node:os";
import type { Logger } from "./log.ts";

/** Window in which repeated stop signals count as one request (ms). */
export const COALESCE_MS = 3_000;

/** Exit code of a process whose flush was cut by a later stop request (128 + SIGINT). */
export const EXIT_CUT = 130;

/** The code a shell reports for a process `signal` killed: 128 + its number (else SIGTERM's). */
export function signalExitCode(signal: Deno.Signal): number {
  return 128 + ((osConstants.signals as Partial<Record<string, number>>)[signal] ?? 15);
}

/** What a stop request means. */
export type StopDecision =
  /** The first request: start stopping (flush). */
  | "stop"
  /** A copy of the request being handled (within the coalescing window): ignored. */
  | "duplicate"
  /** A later request while the flush is within its deadline: logged, the flush continues. */
  | "early"
  /** A later request after the flush passed its deadline: stop flushing and exit. */
  | "cut";

/** Options for {@linkcode StopRule}. */
export interface StopRuleOptions {
  /** How long the flush may run before a later request cuts it (ms). */
  deadlineMs: number;
  /** Requests this close to the last one that counted are copies of it (ms, default 3000). */
  coalesceMs?: number;
}

/** Raised for a stop rule option that is not a non-negative finite number. */
export class StopRuleError extends Error {
  /** Creates the error; the message names the bad value. */
  constructor(message: string) {
    super(message);
    this.name = "StopRuleError";
  }
}

/** The stop rule as a pure state machine: feed it request times, it answers what they mean. */
export class StopRule {
  readonly #deadlineMs: number;
  readonly #coalesceMs: number;
  #began: number | null = null;
  #lastCounted: number | null = null;

  /** Creates the rule; throws StopRuleError for a negative or non-finite option. */
  constructor(options: StopRuleOptions) {
    for (
      const [name, v] of [["deadlineMs", options.deadlineMs], ["coalesceMs", options.coalesceMs]]
    ) {
      if (v !== undefined && !(typeof v === "number" && Number.isFinite(v) && v >= 0)) {
        throw new StopRuleError(`Stop rule ${name} ${String(v)} is not a finite number >= 0`);
      }
    }
    this.#deadlineMs = options.deadlineMs;
    this.#coalesceMs = options.coalesceMs ?? COALESCE_MS;
  }

  /** True once stopping began (a request, or {@linkcode StopRule.begin}). */
  get stopping(): boolean {
    return this.#began !== null;
  }

  /** Marks the flush as begun at `nowMs` for a reason other than a request (no-op if begun). */
  begin(nowMs: number): void {
    this.#began ??= nowMs;
  }

  /** Classifies a stop request arriving at `nowMs` (times must not go backwards). */
  request(nowMs: number): StopDecision {
    if (this.#began === null) {
      this.#began = nowMs;
      this.#lastCounted = nowMs;
      return "stop";
    }
    if (this.#lastCounted !== null && nowMs - this.#lastCounted < this.#coalesceMs) {
      return "duplicate";
    }
    this.#lastCounted = nowMs;
    return nowMs - this.#began >= this.#deadlineMs ? "cut" : "early";
  }

  /** Ms left until a later request would cut the flush (0 once it would); null before stopping. */
  cutsInMs(nowMs: number): number | null {
    return this.#began === null ? null : Math.max(0, this.#began + this.#deadlineMs - nowMs);
  }
}

/** Where signal listeners are added (Deno's by default; injectable for tests). */
export interface SignalSource {
  /** Adds `handler` for `signal` (for the rest of the process). */
  add(signal: Deno.Signal, handler: () => void): void;
}

/** Options for {@linkcode watchStopSignals}. */
export interface StopSignalsOptions extends StopRuleOptions {
  /** Logs duplicates, early requests and the cut. */
  logger: Logger;
  /** Monotonic clock in ms (default `performance.now`). */
  now?: () => number;
  /** Signals that request a stop (default SIGINT and, except on Windows, SIGTERM). */
  signals?: readonly Deno.Signal[];
  /** Called on a cut, after the log line (default: exit with code 130). */
  onCut?: (signal: Deno.Signal) => void;
  /**
   * Called for a stop request after `dispose()` that is not a copy of the last one (default: exit
   * with {@linkcode signalExitCode}, what the signal's default action would report).
   */
  onAfterFlush?: (signal: Deno.Signal) => void;
  /** Listener registry (default Deno.addSignalListener). */
  source?: SignalSource;
}

/** A running watch of stop signals. */
export interface StopSignals {
  /** Resolves with the first stop request: a signal name, or the reason given to `begin`. */
  readonly requested: Promise<string>;
  /** Starts stopping for `reason` (e.g. "duration"); later signals are later requests. */
  begin(reason: string): void;
  /**
   * Marks the flush as done: a copy of the last request is then ignored, any other request ends
   * the process at once (the listeners stay until it exits; they do not keep it alive).
   */
  dispose(): void;
}

const DENO_SIGNALS: SignalSource = { add: (s, h) => Deno.addSignalListener(s, h) };

/** Default stop signals: SIGINT, and SIGTERM where the OS has it. */
export function defaultStopSignals(): Deno.Signal[] {
  return Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
}

/** Listens for stop signals and applies {@linkcode StopRule} to them. */
export function watchStopSignals(options: StopSignalsOptions): StopSignals {
  const rule = new StopRule(options);
  const now = options.now ?? (() => performance.now());
  const source = options.source ?? DENO_SIGNALS;
  const log = options.logger;
  const onCut = options.onCut ?? (() => Deno.exit(EXIT_CUT));
  const onAfterFlush = options.onAfterFlush ?? ((s) => Deno.exit(signalExitCode(s)));
  const { promise, resolve } = Promise.withResolvers<string>();
  let disposed = false;
  for (const signal of options.signals ?? defaultStopSignals()) {
    source.add(signal, () => {
      const t = now();
      const decision = rule.request(t);
      if (disposed) {
        if (decision === "duplicate") {
          log.debug("Repeated stop signal after the flush: exiting as before", { signal });
        } else onAfterFlush(signal);
      } else if (decision === "stop") resolve(signal);
      else if (decision === "duplicate") {
        log.info("Repeated stop signal: the same stop request, still flushing", { signal });
      } else if (decision === "early") {
        log.warn(
          "Already stopping: the flush continues (a later request cuts it only after " +
            "its deadline)",
          { signal, cutsInMs: Math.round(rule.cutsInMs(t) ?? 0) },
        );
      } else {
        log.error("Stop request after the flush deadline: exiting without finishing the flush", {
          signal,
          deadlineMs: options.deadlineMs,
        });
        onCut(signal);
      }
    });
  }
  return {
    requested: promise,
    begin(reason: string) {
      if (!rule.stopping) resolve(reason);
      rule.begin(now());
    },
    dispose() {
      disposed = true;
    },
  };
}
