/**
 * Prometheus metrics: registries of prom-client (the Node.js Prometheus client, which runs under
 * Deno as it is: no default collectors are used, as those read /proc and report 0 without the
 * read permission), a few process metrics measured with Deno's own APIs, and the `/metrics` HTTP
 * endpoint (text exposition format), served only when a port is given and bound to 127.0.0.1
 * unless told otherwise.
 *
 * Every process labels its process metrics with `component`, so that `start` can merge its
 * children's endpoints into one without clashes (pipeline/metrics.ts).
 * @module
 */

import { cpuUsage } from "node:process";
import {
  Counter,
  Gauge,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from "prom-client";
import { ConfigError } from "./config.ts";
import type { Logger } from "./log.ts";
import {
  DEFAULT_METRICS_HOST,
  hostPort,
  isLoopback,
  type MetricsComponent,
} from "./metrics_flags.ts";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Raised when the metrics endpoint cannot be served (port taken, not permitted, bad flag): exit 2. */
export class MetricsServerError extends ConfigError {
  /** Creates the error; `message` names the address and the fix. */
  constructor(message: string) {
    super(message);
    this.name = "MetricsServerError";
  }
}

/**
 * A registry for `component` holding its process metrics: `process_cpu_seconds_total`,
 * `process_resident_memory_bytes` and `process_start_time_seconds`, labelled `component`.
 */
export function createRegistry(component: string): Registry {
  const registry = new Registry();
  registerProcessMetrics(registry, component);
  return registry;
}

/** Registers the process metrics of this process, labelled `component`, in `registry`. */
export function registerProcessMetrics(registry: Registry, component: string): void {
  const labels = { component };
  const labelNames = ["component"];
  let cpuSeen = 0;
  new Counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent by the process, in seconds.",
    labelNames,
    registers: [registry],
    collect() {
      const u = cpuUsage();
      const total = (u.user + u.system) / 1e6;
      this.inc(labels, Math.max(0, total - cpuSeen));
      cpuSeen = Math.max(cpuSeen, total);
    },
  });
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size of the process, in bytes.",
    labelNames,
    registers: [registry],
    collect() {
      this.set(labels, Deno.memoryUsage().rss);
    },
  });
  const startSeconds = Math.round(performance.timeOrigin) / 1000;
  new Gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process since the Unix epoch, in seconds.",
    labelNames,
    registers: [registry],
    collect() {
      this.set(labels, startSeconds);
    },
  });
}

/**
 * Histogram buckets for durations in seconds: the 1-2.5-5 series from `from` to `to` (both
 * included when on the series), e.g. `durationBuckets(0.01, 1)` = 0.01, 0.025, 0.05, ..., 1.
 */
export function durationBuckets(from: number, to: number): number[] {
  const out: number[] = [];
  for (let decade = Math.floor(Math.log10(from)); 10 ** decade <= to; decade++) {
    for (const m of [1, 2.5, 5]) {
      const v = Number((m * 10 ** decade).toPrecision(3));
      if (v >= from && v <= to) out.push(v);
    }
  }
  return out;
}

/** prom-client's JSON form of a registry's metrics (what `/metrics.json` serves). */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** What a metrics endpoint serves. */
export interface MetricsSource {
  /** Content type of `text()`. */
  readonly contentType: string;
  /** The text exposition format. */
  text(): Promise<string>;
  /** prom-client's JSON form (for `start`, which merges its children's). */
  json(): Promise<MetricsJson>;
}

/** A {@linkcode MetricsSource} over a registry. */
export function registrySource(registry: Registry): MetricsSource {
  return {
    contentType: registry.contentType,
    text: () => registry.metrics(),
    json: () => registry.getMetricsAsJSON() as Promise<MetricsJson>,
  };
}

/** Options of {@linkcode serveMetrics}. */
export interface ServeMetricsOptions {
  /** TCP port. */
  port: number;
  /** Bind address (default 127.0.0.1). */
  hostname?: string;
  /** The permission set the process runs under, named in the message when listening is denied. */
  permissionSet?: MetricsComponent;
  /** Logger for the "serving" line and failed scrapes. */
  logger?: Logger;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `http://host:port/metrics`. */
  readonly url: string;
  /** Bound port. */
  readonly port: number;
  /** Stops listening (requests in flight finish). */
  close(): Promise<void>;
}

/**
 * Serves `source` at `/metrics` (text format) and `/metrics.json` (prom-client JSON). Throws
 * {@linkcode MetricsServerError} (exit 2) naming the address when the port is taken or the
 * permission set does not allow listening on it.
 */
export function serveMetrics(
  source: MetricsSource | Registry,
  options: ServeMetricsOptions,
): MetricsServer {
  const src = source instanceof Registry ? registrySource(source) : source;
  const hostname = options.hostname ?? DEFAULT_METRICS_HOST;
  const addr = hostPort(hostname, options.port);
  const log = options.logger;
  const handler = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("Method not allowed: use GET\n", {
        status: 405,
        headers: { allow: "GET, HEAD" },
      });
    }
    try {
      if (path === "/metrics") {
        const body = await src.text();
        return new Response(req.method === "HEAD" ? null : body, {
          headers: { "content-type": src.contentType },
        });
      }
      if (path === "/metrics.json") {
        return Response.json(await src.json());
      }
    } catch (e) {
      log?.warn("metrics scrape failed", { error: e as Error });
      return new Response(`Cannot collect metrics: ${(e as Error).message}\n`, { status: 500 });
    }
    if (path === "/") {
      return new Response("tickpipe metrics: GET /metrics (Prometheus text format)\n", {
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    }
    return new Response("Not found: metrics are at /metrics\n", { status: 404 });
  };
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port: options.port,
      onListen() {},
    }, handler);
  } catch (e) {
    throw listenError(e, addr, options);
  }
  const url = `http://${hostPort(hostname, server.addr.port)}/metrics`;
  log?.info("serving metrics", { url });
  if (!isLoopback(hostname)) {
    log?.warn("metrics endpoint bound to a non-loopback address: whoever reaches it can read it", {
      url,
    });
  }
  let closed: Promise<void> | undefined;
  return {
    url,
    port: server.addr.port,
    close() {
      closed ??= server.shutdown();
      return closed;
    },
  };
}

/** A served registry: {@linkcode createRegistry} plus {@linkcode serveMetrics}. */
export interface ServedRegistry {
  /** The registry (with the process metrics); register the component's instruments here. */
  registry: Registry;
  /** The endpoint serving it. */
  server: MetricsServer;
}

/**
 * Creates `component`'s registry and serves it (options as {@linkcode serveMetrics}, the
 * permission set being the component's).
 */
export function serveRegistry(
  component: MetricsComponent,
  options: Omit<ServeMetricsOptions, "permissionSet">,
): ServedRegistry {
  const registry = createRegistry(component);
  const server = serveMetrics(registry, { ...options, permissionSet: component });
  return { registry, server };
}

function listenError(e: unknown, addr: string, options: ServeMetricsOptions): Error {
  if (e instanceof Deno.errors.AddrInUse) {
    return new MetricsServerError(
      `Metrics port ${addr} is already in use: choose a free one with --metrics-port ` +
        `(or stop the process listening there)`,
    );
  }
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    const set = options.permissionSet;
    return new MetricsServerError(
      `Cannot serve metrics on ${addr}: it is not in this command's allowed hosts: run it ` +
        `through "deno task ${set ?? "<command>"}", which allows exactly the configured ` +
        `addresses (--metrics-host / --metrics-port)`,
    );
  }
  if (e instanceof Deno.errors.AddrNotAvailable || e instanceof URIError) {
    return new MetricsServerError(
      `Cannot serve metrics on ${addr}: ${(e as Error).message}; ` +
        `expected an address of this machine (--metrics-host)`,
    );
  }
  return e as Error;
}
