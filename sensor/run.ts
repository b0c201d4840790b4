/**
 * The sensor's I/O shell: one check reads Kafka's offsets (admin only, never
 * consuming), the KV checkpoint, lease and crash state, asks the pure
 * `decide()`, and launches the aggregator when told to; exits are recorded.
 * @module
 */

import { type Admin, topicOffsets } from "../common/kafka.ts";
import type { Logger } from "../common/log.ts";
import {
  readCheckpointEntry,
  readCrash,
  readIdentityMismatch,
  readLeaseEntry,
  updateCrash,
  updateLaunches,
} from "./_kv.ts";
import type { AggregateCommand, RunningChild } from "./launcher.ts";
import { type EngineConfig, isPointerV2 } from "../aggregate/kv_layout.ts";
import {
  type CrashBackoffOptions,
  decide,
  type DecideInput,
  type Decision,
  decisionFields,
  EXIT_CONFIG,
  EXIT_LEASE_HELD,
  nextCrashState,
  type PartitionOffsets,
} from "./sensor.ts";

/** The edges a sensor works with. */
export interface SensorDeps {
  /** Open KV database. */
  kv: Deno.Kv;
  /** Connected Kafka admin client. */
  admin: Admin;
  /** Logger for decisions, launches and exits. */
  logger: Logger;
  /** Starts the aggregator. */
  launch: (cmd: AggregateCommand) => RunningChild;
  /** Clock (default Date.now). */
  now?: () => number;
  /**
   * Called when launching cannot succeed with this command line: a check found the
   * checkpoint's windows/watermark differ from `engine.wanted` (without `rebuild`), or a launched
   * aggregator exited 2 (it refused its configuration). The caller should stop.
   */
  onRefused?: (message: string) => void;
}

/** What a sensor checks and launches. */
export interface SensorOptions {
  /** Ticks topic. */
  topic: string;
  /** Launch when at least this many ticks are unread. */
  minNew: number;
  /** Crash-loop backoff. */
  backoff: CrashBackoffOptions;
  /** The aggregator's command line. */
  command: AggregateCommand;
  /** Identity of this sensor in launch records (`hostname:pid`). */
  identity: string;
  /**
   * The window resolutions and watermark delay the aggregator is launched with (checked against
   * the checkpoint's before each launch); `rebuild`: launch `--rebuild --yes` when they differ
   * instead of refusing. Unset: no check (the aggregator's own refusal, exit 2, still stops it).
   */
  engine?: { wanted: EngineConfig; rebuild: boolean };
}

/** Result of one check. */
export interface CheckResult {
  /** The decision taken. */
  decision: Decision;
  /** The child launched by this check, if any. */
  launched: RunningChild | null;
}

/** A sensor: checks on demand, remembers the child it launched. */
export interface Sensor {
  /** Runs one check (and launch). */
  check(): Promise<CheckResult>;
  /** The running child, or null. */
  child(): RunningChild | null;
  /** Resolves once the current child (if any) exited and its exit was recorded; its exit code or null. */
  settled(): Promise<number | null>;
}

/** Reads every partition's start/end offset and the stored offsets. */
export async function readPartitions(
  admin: Admin,
  kv: Deno.Kv,
  topic: string,
): Promise<PartitionOffsets[]> {
  const [ranges, cp] = await Promise.all([
    topicOffsets(admin, topic),
    readCheckpointEntry(kv, topic),
  ]);
  // A topic that does not exist yet has no partitions (and so nothing to read).
  if (ranges === null) return [];
  return ranges.map((r) => {
    const stored = cp?.offsets?.[String(r.partition)];
    return { ...r, stored: typeof stored === "number" ? stored : null };
  });
}

/** Creates a sensor over `deps`. */
export function createSensor(deps: SensorDeps, options: SensorOptions): Sensor {
  const now = deps.now ?? Date.now;
  const log = deps.logger;
  let child: RunningChild | null = null;
  let settledP: Promise<number | null> = Promise.resolve(null);

  async function recordExit(c: RunningChild, code: number): Promise<void> {
    const at = now();
    await updateLaunches(
      deps.kv,
      options.topic,
      (list) =>
        list.map((r) =>
          r.pid === c.pid && r.launchedAt === c.startedAt
            ? { ...r, exitCode: code, exitedAt: at }
            : r
        ),
    );
    const crash = await updateCrash(
      deps.kv,
      options.topic,
      (s) => nextCrashState(s, code, at),
    );
    const fields = { pid: c.pid, exitCode: code, runMs: at - c.startedAt };
    if (code === 0) log.info("aggregator exited normally", fields);
    else if (code === EXIT_LEASE_HELD) {
      log.info("aggregator exited 3: another aggregator holds the lease (not a crash)", fields);
    } else if (code === EXIT_CONFIG) {
      const message = "The aggregator refused its configuration (exit 2, its message is above): " +
        "every launch with the same flags would be refused, so the sensor stops";
      log.error(message, fields);
      deps.onRefused?.(message);
    } else {
      log.warn("aggregator failed", { ...fields, consecutiveFailures: crash.consecutiveFailures });
    }
  }

  return {
    child: () => child,
    settled: () => settledP,
    async check() {
      const t = now();
      const [partitions, lease, crash, pointer, identity] = await Promise.all([
        readPartitions(deps.admin, deps.kv, options.topic),
        readLeaseEntry(deps.kv, options.topic),
        readCrash(deps.kv, options.topic),
        readCheckpointEntry(deps.kv, options.topic),
        readIdentityMismatch(deps.kv, options.topic),
      ]);
      const input: DecideInput = {
        now: t,
        partitions,
        identityError: identity?.message ?? null,
        finalizeDueAt: pointer !== null && isPointerV2(pointer) ? pointer.finalizeDueAt : null,
        openRowsDeferred: pointer !== null && isPointerV2(pointer) &&
          pointer.openRowsDeferred === true,
        minNew: options.minNew,
        lease,
        child: child === null ? null : { pid: child.pid, startedAt: child.startedAt },
        crash,
        backoff: options.backoff,
        engine: options.engine === undefined ? undefined : {
          ...options.engine,
          stored: pointer !== null && isPointerV2(pointer) ? pointer.engine : null,
        },
      };
      const decision = decide(input);
      const fields = { topic: options.topic, ...decisionFields(input, decision) };
      if (decision.kind === "identity-mismatch" || decision.kind === "config-mismatch") {
        log.error(`decision: ${decision.action}`, fields);
      } else if (decision.kind === "backoff") log.warn(`decision: ${decision.action}`, fields);
      else log.info(`decision: ${decision.action}`, fields);
      if (decision.kind === "config-mismatch") {
        deps.onRefused?.(
          `Topic "${options.topic}": ${decision.action.slice("refuse: ".length)}`,
        );
      }
      if (
        decision.kind !== "launch" && decision.kind !== "finalize" && decision.kind !== "rebuild"
      ) {
        return { decision, launched: null };
      }

      const command = decision.kind === "rebuild"
        ? { ...options.command, args: [...options.command.args, "--rebuild", "--yes"] }
        : options.command;
      const c = deps.launch(command);
      child = c;
      log.info("launched aggregator", {
        topic: options.topic,
        pid: c.pid,
        command: [command.command, ...command.args].join(" "),
      });
      // The child runs whatever KV says: its exit is watched from now on, so a launch record
      // that cannot be written (a full disk) does not leave the sensor waiting for it forever.
      const recorded = updateLaunches(deps.kv, options.topic, (list) => [...list, {
        launchedAt: c.startedAt,
        pid: c.pid,
        sensor: options.identity,
        exitCode: null,
        exitedAt: null,
      }]).catch((e) => log.error("cannot record the launch", { pid: c.pid, error: e }));
      settledP = c.status.then(async (code) => {
        try {
          await recorded; // its exit is recorded after its launch
          await recordExit(c, code);
        } catch (e) {
          log.error("cannot record aggregator exit", { pid: c.pid, error: e });
        } finally {
          if (child === c) child = null;
        }
        return code;
      }, (e) => {
        log.error("cannot wait for aggregator", { pid: c.pid, error: e });
        if (child === c) child = null;
        return null;
      });
      await recorded;
      return { decision, launched: c };
    },
  };
}
