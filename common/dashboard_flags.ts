/**
 * The web dashboard's flags, without the server: the rows of `--dashboard-port`,
 * `--dashboard-host` and `--dashboard-token` ({@linkcode DASHBOARD_FLAGS}), which `start`, `demo`
 * and `dashboard` spread into their option tables (pipeline/options.ts), so that parsing, help
 * and the launcher's permission lists come from them; and the one resolver of what they say
 * together ({@linkcode resolveDashboardSettings}: the token from the environment, a token for
 * any bind that is not loopback). pipeline/web/ is loaded only when the dashboard is served.
 * Pure: the environment is passed in.
 * @module
 */

import { ConfigError } from "./config.ts";
import { isLoopback, parseMetricsHost, parseMetricsPort } from "./metrics_flags.ts";
import type { OptionsTable, ResolvedOptions } from "./options.ts";

/** Default port of the dashboard of `start` and `demo`. */
export const DEFAULT_DASHBOARD_PORT = 8080;

/** Default bind address of the dashboard. */
export const DEFAULT_DASHBOARD_HOST = "127.0.0.1";

/** Environment variable holding the dashboard's access token. */
export const DASHBOARD_TOKEN_ENV = "TICKPIPE_DASHBOARD_TOKEN";

/** Shortest accepted access token (e.g. `openssl rand -hex 16` gives 32 characters). */
export const MIN_TOKEN_LENGTH = 16;

/** Parses a `--dashboard-port` value: a port, or 0 for no dashboard. */
export function parseDashboardPort(raw: string, flag = "--dashboard-port"): number {
  if (raw.trim() === "0") return 0;
  try {
    return parseMetricsPort(raw, { flag })!;
  } catch {
    throw new ConfigError(
      `${flag} "${raw}" is not a port: expected an integer from 1 to 65535 (0 = no dashboard)`,
    );
  }
}

/** Parses a `--dashboard-host` value (host name, IPv4 or IPv6 address); brackets are removed. */
export function parseDashboardHost(raw: string, flag = "--dashboard-host"): string {
  return parseMetricsHost(raw, flag);
}

/**
 * Checks an access token (from `source`: the flag or {@linkcode DASHBOARD_TOKEN_ENV}): at least
 * {@linkcode MIN_TOKEN_LENGTH} characters without white space. The message never shows the
 * value: it is a secret.
 */
export function parseDashboardToken(raw: string, source = "--dashboard-token"): string {
  if (raw.length < MIN_TOKEN_LENGTH || /\s/.test(raw)) {
    throw new ConfigError(
      `${source} is too weak: expected at least ${MIN_TOKEN_LENGTH} characters without white ` +
        `space (e.g. the output of "openssl rand -hex 16")`,
    );
  }
  return raw;
}

/** The web dashboard's flags, as `start`, `demo` and `dashboard` accept them. */
export const DASHBOARD_FLAGS = {
  "dashboard-port": {
    kind: "string",
    arg: "P",
    help: "serve the live web dashboard at http://HOST:P/; 0 = no dashboard",
    default: DEFAULT_DASHBOARD_PORT,
    parse: parseDashboardPort,
  },
  "dashboard-host": {
    kind: "string",
    arg: "HOST",
    help: "address to bind the dashboard to; any other than a loopback address needs an " +
      "access token",
    default: DEFAULT_DASHBOARD_HOST,
    parse: parseDashboardHost,
  },
  "dashboard-token": {
    kind: "string",
    arg: "T",
    env: DASHBOARD_TOKEN_ENV,
    help: `the dashboard's access token (at least ${MIN_TOKEN_LENGTH} characters; prefer the ` +
      `environment: a flag shows in the process list); requests then carry it as ` +
      `"Authorization: Bearer T" or once as ?token=T (kept in a cookie)`,
    parse: parseDashboardToken,
  },
} as const satisfies OptionsTable;

/** The dashboard flags parsed by a command's table (common/options.ts). */
export type DashboardFlags = ResolvedOptions<typeof DASHBOARD_FLAGS>;

/** The dashboard as configured: off (`port` 0) or where to listen and the token, if any. */
export interface DashboardSettings {
  /** Port (0 = no dashboard). */
  port: number;
  /** Bind address (brackets removed from IPv6). */
  hostname: string;
  /** Access token (required for a non-loopback bind), or null. Never log it. */
  token: string | null;
}

/**
 * The dashboard settings from its flags as a command's table parsed them (defaults applied
 * there): the token is the flag's, else {@linkcode DASHBOARD_TOKEN_ENV}'s (checked the same way).
 * Throws ConfigError for a weak token, and for a non-loopback bind without a token: whoever
 * reaches the address could read the dashboard.
 */
export function resolveDashboardSettings(
  flags: DashboardFlags,
  options: { env?: (name: string) => string | undefined } = {},
): DashboardSettings {
  const port = flags["dashboard-port"];
  const hostname = flags["dashboard-host"];
  const envToken = options.env?.(DASHBOARD_TOKEN_ENV);
  const token = flags["dashboard-token"] ??
    (envToken === undefined || envToken === ""
      ? null
      : parseDashboardToken(envToken, DASHBOARD_TOKEN_ENV));
  if (port !== 0 && token === null && !isLoopback(hostname)) {
    throw new ConfigError(
      `--dashboard-host "${hostname}" is not a loopback address, and no access token is set: ` +
        `set ${DASHBOARD_TOKEN_ENV} (or --dashboard-token) to serve the dashboard there, or ` +
        `bind it to ${DEFAULT_DASHBOARD_HOST}`,
    );
  }
  return { port, hostname, token };
}

/** `http://host:port/` of a dashboard (IPv6 in brackets), or null when it is off. */
export function dashboardUrl(settings: DashboardSettings): string | null {
  if (settings.port === 0) return null;
  const h = settings.hostname;
  return `http://${h.includes(":") ? `[${h}]` : h}:${settings.port}/`;
}
