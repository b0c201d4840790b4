/**
 * The metrics flags and ports, without the metrics library: what a command needs to parse
 * `--metrics-port` / `--metrics-host` and print its help (common/metrics.ts is loaded only when
 * metrics are served).
 * @module
 */

import { ConfigError } from "./config.ts";
import type { OptionsTable } from "./options.ts";

/** The components that serve metrics, by permission set name. */
export type MetricsComponent = "start" | "ingest" | "sensor" | "aggregate";

/**
 * Default metrics ports, one per component: the ports their permission sets in deno.json allow
 * listening on. `start` serves 9490 and gives its children the next three (ingest 9491, sensor
 * 9492, the sensor's aggregator 9493); run alone, each command serves metrics only with
 * `--metrics-port`, and these are the ports its permission set allows.
 */
export const METRICS_PORTS: Readonly<Record<MetricsComponent, number>> = Object.freeze({
  start: 9490,
  ingest: 9491,
  sensor: 9492,
  aggregate: 9493,
});

/** Default bind address of metrics endpoints. */
export const DEFAULT_METRICS_HOST = "127.0.0.1";

/**
 * The `--metrics-port` / `--metrics-host` flags of a command that serves metrics only when told
 * to (`start` has its own: pipeline/options.ts).
 */
export function metricsFlags(component: MetricsComponent) {
  return {
    "metrics-port": {
      kind: "string",
      arg: "PORT",
      help: "serve Prometheus metrics at http://HOST:PORT/metrics",
      shown: `none; under start: ${METRICS_PORTS[component]}`,
      parse: (raw: string, flag: string): number => parseMetricsPort(raw, { flag })!,
    },
    "metrics-host": {
      kind: "string",
      arg: "HOST",
      help: "address to bind it to",
      default: DEFAULT_METRICS_HOST,
      parse: (raw: string, flag: string): string => parseMetricsHost(raw, flag),
    },
  } as const satisfies OptionsTable;
}

/** Parses a `--metrics-port` value: an integer port 1-65535 (0 too when `allowZero`). */
export function parseMetricsPort(
  value: string | undefined,
  options: { flag?: string; allowZero?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const flag = options.flag ?? "--metrics-port";
  const min = options.allowZero ? 0 : 1;
  const n = Number(value);
  if (!/^\d{1,5}$/.test(value.trim()) || n < min || n > 65535) {
    throw new ConfigError(
      `${flag} "${value}" is not a port: expected an integer from ${min} to 65535${
        options.allowZero ? " (0 = no metrics)" : ""
      }`,
    );
  }
  return n;
}

/** Parses a `--metrics-host` value (host name, IPv4 or IPv6 address); brackets are removed. */
export function parseMetricsHost(value: string | undefined, flag = "--metrics-host"): string {
  if (value === undefined) return DEFAULT_METRICS_HOST;
  const v = value.trim();
  const m = /^\[([0-9a-fA-F:.]+)\]$/.exec(v);
  if (m) return m[1];
  if (
    /^[0-9a-fA-F]*:[0-9a-fA-F:.]*$/.test(v) || /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(v)
  ) {
    return v;
  }
  throw new ConfigError(
    `${flag} "${value}" is not a host: expected a name or an address such as 127.0.0.1 or ::1`,
  );
}

/** `host:port`, with IPv6 addresses in brackets (as in Deno's permission lists). */
export function hostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/** True for addresses only this machine can reach. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}
