/**
 * The web dashboard's flags, without the server: what `start`, `demo` and the launcher need to
 * parse `--dashboard-port` / `--dashboard-host` / `--dashboard-token`, derive the listening
 * address for the permission lists, and print the help (pipeline/web/ is loaded only when the
 * dashboard is served). Pure: the environment is passed in.
 * @module
 */

import type { ParseArgsOptionsConfig } from "node:util";
import { ConfigError } from "./config.ts";
import { isLoopback, parseMetricsHost, parseMetricsPort } from "./metrics_flags.ts";

/** Default port of the dashboard of `start` and `demo`. */
export const DEFAULT_DASHBOARD_PORT = 8080;

/** Default bind address of the dashboard. */
export const DEFAULT_DASHBOARD_HOST = "127.0.0.1";

/** Environment variable holding the dashboard's access token. */
export const DASHBOARD_TOKEN_ENV = "TICKPIPE_DASHBOARD_TOKEN";

/** Shortest accepted access token (e.g. `openssl rand -hex 16` gives 32 characters). */
export const MIN_TOKEN_LENGTH = 16;

/** The dashboard flags (node:util parseArgs). */
export const DASHBOARD_OPTIONS = {
  "dashboard-port": { type: "string" },
  "dashboard-host": { type: "string" },
  "dashboard-token": { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

/** The dashboard as configured: off (`port` 0) or where to listen and the token, if any. */
export interface DashboardSettings {
  /** Port (0 = no dashboard). */
  port: number;
  /** Bind address (brackets removed from IPv6). */
  hostname: string;
  /** Access token (required for a non-loopback bind), or null. Never log it. */
  token: string | null;
}

/** Raw values of the dashboard flags. */
export interface DashboardFlagValues {
  /** `--dashboard-port` */
  "dashboard-port"?: string;
  /** `--dashboard-host` */
  "dashboard-host"?: string;
  /** `--dashboard-token` */
  "dashboard-token"?: string;
}

/**
 * Resolves the dashboard flags (flag > {@linkcode DASHBOARD_TOKEN_ENV} for the token > defaults).
 * Throws ConfigError for a bad port or host, a token shorter than {@linkcode MIN_TOKEN_LENGTH},
 * and for a non-loopback bind without a token: whoever reaches the address could read it.
 */
export function resolveDashboardSettings(
  values: DashboardFlagValues,
  options: { env?: (name: string) => string | undefined } = {},
): DashboardSettings {
  const port = parseMetricsPort(values["dashboard-port"] ?? String(DEFAULT_DASHBOARD_PORT), {
    flag: "--dashboard-port",
    allowZero: true,
  })!;
  const hostname = values["dashboard-host"] === undefined
    ? DEFAULT_DASHBOARD_HOST
    : parseMetricsHost(values["dashboard-host"], "--dashboard-host");
  const flagToken = values["dashboard-token"];
  const envToken = options.env?.(DASHBOARD_TOKEN_ENV);
  const raw = flagToken ?? (envToken === "" ? undefined : envToken);
  const source = flagToken !== undefined ? "--dashboard-token" : DASHBOARD_TOKEN_ENV;
  if (raw !== undefined && (raw.length < MIN_TOKEN_LENGTH || /\s/.test(raw))) {
    // The value itself is never shown: it is a secret.
    throw new ConfigError(
      `${source} is too weak: expected at least ${MIN_TOKEN_LENGTH} characters without white ` +
        `space (e.g. the output of "openssl rand -hex 16")`,
    );
  }
  const token = raw ?? null;
  if (port !== 0 && token === null && !isLoopback(hostname)) {
    throw new ConfigError(
      `--dashboard-host "${hostname}" is not a loopback address, and no access token is set: ` +
        `set ${DASHBOARD_TOKEN_ENV} (or --dashboard-token) to serve the dashboard there, or ` +
        `bind it to ${DEFAULT_DASHBOARD_HOST}`,
    );
  }
  return { port, hostname, token };
}

/** Help lines of the dashboard flags, descriptions at `column` (default 23). */
export function dashboardUsage(options: { column?: number } = {}): string {
  const col = options.column ?? 23;
  const row = (left: string, right: string) =>
    left.length + 1 < col ? `${left.padEnd(col)}${right}` : `${left}\n${" ".repeat(col)}${right}`;
  return [
    row("  --dashboard-port P", `serve the live web dashboard at http://HOST:P/`),
    row("", `(default ${DEFAULT_DASHBOARD_PORT}; 0 = no dashboard)`),
    row("  --dashboard-host H", `address to bind it to (default ${DEFAULT_DASHBOARD_HOST}); any`),
    row("", `other than a loopback address needs an access token`),
    row("  --dashboard-token T", `access token (prefer env ${DASHBOARD_TOKEN_ENV}: a flag`),
    row("", `shows in the process list); requests then carry it as`),
    row("", `"Authorization: Bearer T" or once as ?token=T (kept in a cookie)`),
  ].join("\n");
}
