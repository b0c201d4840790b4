/**
 * The state of each process, as the dashboard shows it (pure: the clock is passed in).
 * {@linkcode ProcessTracker} follows a supervisor's events (start/demo), and
 * {@linkcode aggregatorView} reads the sensor's aggregator from what KV holds (its lease and
 * latest progress), since it is the sensor's child, not start's.
 * @module
 */

import type { SupervisorEvent } from "../supervisor.ts";
import type { PipelineStatus } from "../status.ts";
import type { ProcessView } from "./types.ts";

/** Follows supervised children through their events. */
export class ProcessTracker {
  #views = new Map<string, ProcessView>();
  #restart = new Map<string, boolean>();

  /** Registers child `name` before its first event (`restart`: restarted when it exits). */
  track(name: string, options: { restart?: boolean } = {}): void {
    this.#restart.set(name, options.restart ?? true);
    if (!this.#views.has(name)) {
      this.#views.set(name, {
        name,
        state: "starting",
        pid: null,
        since: null,
        starts: 0,
        lastExit: null,
        detail: "",
      });
    }
  }

  /** Applies one supervisor event seen at `now` (epoch ms). */
  apply(event: SupervisorEvent, now: number): void {
    if (!this.#views.has(event.child)) this.track(event.child);
    const v = this.#views.get(event.child)!;
    switch (event.kind) {
      case "started":
        Object.assign(v, {
          state: v.state === "stopping" ? "stopping" : "running",
          pid: event.pid,
          since: now,
          starts: event.start,
          detail: event.start > 1 ? `restarted (${event.start - 1}x)` : "",
        });
        break;
      case "exited": {
        const how = event.signal ? `signal ${event.signal}` : `exit ${event.code}`;
        const state = v.state === "stopping" || v.state === "stopped"
          ? "stopped"
          : this.#restart.get(event.child) === false
          ? "exited"
          : "restarting";
        Object.assign(v, {
          state,
          since: now,
          lastExit: event.code,
          detail: state === "restarting" ? `${how}: restarting after backoff` : how,
        });
        break;
      }
      case "fatal":
        Object.assign(v, { state: "failed", since: now, detail: event.reason });
        break;
    }
  }

  /** Marks every child that has not ended as stopping (the supervisor was asked to stop). */
  stopping(now: number): void {
    for (const v of this.#views.values()) {
      if (v.state === "running" || v.state === "starting" || v.state === "restarting") {
        Object.assign(v, { state: "stopping", since: now });
      }
    }
  }

  /** The children, in the order they were first seen (copies). */
  list(): ProcessView[] {
    return [...this.#views.values()].map((v) => ({ ...v }));
  }
}

/**
 * The sensor's aggregator as KV shows it (pure): `running` while its lease is live, `lease
 * expired` when it died holding it, `idle` when none is held (the sensor launches one when ticks
 * are unread); the detail names its last trigger or the sensor's last launch.
 */
export function aggregatorView(status: PipelineStatus, now: number): ProcessView {
  const l = status.lease;
  const p = status.progress;
  const trigger = p
    ? `batch ${p.batchId} (${p.reason}) ${
      Math.max(0, Math.round((now - Date.parse(p.timestamp)) / 1000))
    }s ago: ${p.inputRows} rows, ${p.windowsUpdated} updated, ${p.windowsFinalized} final`
    : "no trigger yet";
  const launch = status.sensor.lastLaunch;
  const launches = `${status.sensor.launches} launches by the sensor` +
    (status.sensor.consecutiveFailures > 0
      ? `, ${status.sensor.consecutiveFailures} failed in a row`
      : "");
  if (l === null) {
    return {
      name: "aggregator",
      state: "idle",
      pid: null,
      since: launch?.launchedAt ?? null,
      starts: status.sensor.launches,
      lastExit: launch?.exitCode ?? null,
      detail: `${launches}; ${trigger}`,
    };
  }
  return {
    name: "aggregator",
    state: l.live ? "running" : "lease expired",
    pid: l.pid,
    since: Date.parse(l.acquiredAt),
    starts: status.sensor.launches,
    lastExit: null,
    detail: l.live ? trigger : `lease expired at ${l.expiresAt.slice(11, 19)}; ${trigger}`,
  };
}

/** Parses one line of process states sent by start/demo to the dashboard child, or null. */
export function parseProcessLine(line: string): ProcessView[] | null {
  try {
    const v = JSON.parse(line);
    if (v === null || typeof v !== "object" || !Array.isArray(v.processes)) return null;
    const ok = v.processes.every((p: Partial<ProcessView>) =>
      typeof p?.name === "string" && typeof p.state === "string" &&
      typeof p.starts === "number" && typeof p.detail === "string"
    );
    return ok ? v.processes as ProcessView[] : null;
  } catch {
    return null;
  }
}

/** The line start/demo send to the dashboard child (one JSON object). */
export function processLine(processes: readonly ProcessView[]): string {
  return JSON.stringify({ processes });
}
