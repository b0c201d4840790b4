/**
 * `start`'s one metrics endpoint for its whole process tree. Each process keeps its own registry
 * and serves it on a loopback port of its own (`start` at P, its children at P+1..P+3); on every
 * scrape `start` fetches its children's metrics (`/metrics.json`, prom-client's JSON form) and
 * merges them with its own through prom-client's AggregatorRegistry, so the text is formatted by
 * the library, never by hand. Series of different processes never clash: their names are
 * per component (`tickpipe_ingest_…`) or carry a `component` label (`process_…`).
 * @module
 */

import { AggregatorRegistry } from "prom-client";
import {
  Counter,
  Gauge,
  type MetricsJson,
  type MetricsSource,
  type Registry,
} from "../common/metrics.ts";
import { hostPort, type MetricsComponent } from "../common/metrics_flags.ts";

/** A child endpoint that `start` merges into its own. */
export interface MetricsTarget {
  /** Component name (the `component` label of `tickpipe_component_up`). */
  component: MetricsComponent;
  /** Loopback port it serves on. */
  port: number;
}

/** Ports of `start`'s children when `start` serves metrics on `port` (P+1, P+2, P+3). */
export function childMetricsTargets(port: number): MetricsTarget[] {
  if (!Number.isInteger(port) || port < 1 || port > 65532) {
    throw new RangeError(
      `Metrics port ${port} leaves no room for the children's ports ${port + 1}-${port + 3}: ` +
        `expected 1 to 65532`,
    );
  }
  return [
    { component: "ingest", port: port + 1 },
    { component: "sensor", port: port + 2 },
    { component: "aggregate", port: port + 3 },
  ];
}

/** Options of {@linkcode mergedMetricsSource}. */
export interface MergedMetricsOptions {
  /** Time allowed for each child's answer, ms (default 3000). */
  timeoutMs?: number;
  /** HTTP client (default fetch). */
  fetch?: typeof fetch;
}

/**
 * A source serving `own` (start's registry) merged with every target that answers. Adds
 * `tickpipe_component_up{component}` to `own`: 1 when that component's endpoint answered this
 * scrape, 0 when it did not (a child restarting, or no aggregator running).
 */
export function mergedMetricsSource(
  own: Registry,
  targets: readonly MetricsTarget[],
  options: MergedMetricsOptions = {},
): MetricsSource {
  const timeoutMs = options.timeoutMs ?? 3000;
  const get = options.fetch ?? fetch;
  const up = new Gauge({
    name: "tickpipe_component_up",
    help: "1 when the component's metrics endpoint answered this scrape of start's endpoint, " +
      "else 0 (not running).",
    labelNames: ["component"],
    registers: [own],
  });
  const fetchOne = async (t: MetricsTarget): Promise<MetricsJson | null> => {
    try {
      const res = await get(`http://${hostPort("127.0.0.1", t.port)}/metrics.json`, {
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) {
        await res.body?.cancel();
        return null;
      }
      const body = await res.json();
      return Array.isArray(body) ? body as MetricsJson : null;
    } catch {
      return null;
    }
  };
  const merged = async (): Promise<Registry> => {
    const parts = await Promise.all(targets.map(fetchOne));
    targets.forEach((t, i) => up.set({ component: t.component }, parts[i] === null ? 0 : 1));
    const mine = await own.getMetricsAsJSON() as MetricsJson;
    return AggregatorRegistry.aggregate([mine, ...parts.filter((p) => p !== null)]);
  };
  return {
    contentType: own.contentType,
    text: async () => (await merged()).metrics(),
    json: async () => (await merged()).getMetricsAsJSON() as Promise<MetricsJson>,
  };
}

/** `start`'s own instruments (besides its process metrics). */
export interface StartMetrics {
  /** Counts a restart of a supervised child. */
  childRestarted(child: string): void;
}

/** Registers `tickpipe_start_child_restarts_total{child}` in `registry`. */
export function createStartMetrics(
  registry: Registry,
  options: { children: readonly string[] },
): StartMetrics {
  const restarts = new Counter({
    name: "tickpipe_start_child_restarts_total",
    help: "Restarts of start's supervised children after they exited.",
    labelNames: ["child"],
    registers: [registry],
  });
  for (const child of options.children) restarts.inc({ child }, 0);
  return { childRestarted: (child) => restarts.inc({ child }) };
}
