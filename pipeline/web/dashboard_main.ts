/**
 * `tickpipe dashboard`: the live web dashboard. `start` and `demo` run it as a child (its own
 * permission set: Kafka, PostgreSQL and KV to read, its address to listen on) and send it their
 * children's states on stdin (`--supervised`); run alone, it watches a pipeline run elsewhere.
 * @module
 */

import {
  CONNECTION_FLAGS,
  CONNECTION_TITLE,
  HELP_FLAG,
  parseCommandLine,
  rejectPositionals,
  UsageError,
} from "../../common/cli.ts";
import { loadBaseConfig, readEnv } from "../../common/config.ts";
import {
  DASHBOARD_FLAGS,
  DASHBOARD_TOKEN_ENV,
  resolveDashboardSettings,
} from "../../common/dashboard_flags.ts";
import { addSecret, createLogger } from "../../common/log.ts";
import { sectionsUsage } from "../../common/options.ts";
import { DASHBOARD_COMMAND, DASHBOARD_OWN_FLAGS } from "../options.ts";

const USAGE = `Usage: tickpipe dashboard [flags]

Serves the live web dashboard: per symbol a candlestick chart of price_windows for each
resolution the aggregator runs (final windows solid, open ones hollow, gaps grey, VWAP as a
line, late ticks as orange markers with their count), per partition lag and watermark, and the
state of each process; the page updates itself by server-sent events. start and demo run it
for you.

${
  sectionsUsage([
    { title: "Flags:", table: { ...DASHBOARD_FLAGS, ...DASHBOARD_OWN_FLAGS, ...HELP_FLAG } },
    { title: CONNECTION_TITLE, table: CONNECTION_FLAGS },
  ])
}`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { options: o, positionals } = parseCommandLine(args, DASHBOARD_COMMAND);
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  rejectPositionals(positionals);
  const config = loadBaseConfig(o);
  const settings = resolveDashboardSettings(o, { env: readEnv });
  if (settings.token !== null) addSecret(settings.token);
  if (settings.port === 0) {
    throw new UsageError(`--dashboard-port 0 serves no dashboard: expected a port from 1 to 65535`);
  }
  const refreshMs = o.refresh;
  const bars = o.bars;
  const symbols = o.symbols;
  const log = createLogger("dashboard");
  const { createKafka } = await import("../../common/kafka.ts");
  const { createPool } = await import("../../common/pg.ts");
  const { openKv } = await import("../../common/kv.ts");
  const { exitDenied } = await import("../../common/permissions.ts");
  const { watchStopSignals } = await import("../../common/signals.ts");
  const { pumpLines } = await import("../../common/child.ts");
  const { collectDashboard } = await import("./data.ts");
  const { parseProcessLine } = await import("./processes.ts");
  const { serveDashboard } = await import("./server.ts");

  const kafka = createKafka(config.brokers, {
    clientId: "tickpipe-dashboard",
    retries: 1,
    logger: createLogger("dashboard", { level: "error" }),
    onDenied: exitDenied,
  });
  const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-dashboard", max: 3 });
  const kv = await openKv(config.kvPath);
  let processes: import("./types.ts").ProcessView[] = [];
  const server = await serveDashboard(
    (previous) =>
      collectDashboard(config, { kafka, pool, kv }, { symbols, bars, processes, previous }),
    {
      hostname: settings.hostname,
      port: settings.port,
      token: settings.token,
      refreshMs,
      logger: log,
      permissionSet: "dashboard",
    },
  ).catch(async (e) => {
    kv.close();
    await pool.end().catch(() => {});
    throw e;
  });
  if (settings.token !== null) {
    log.info(`open ${server.url}?token=<the value of ${DASHBOARD_TOKEN_ENV}> once in a browser`);
  }
  const stops = watchStopSignals({ logger: log, deadlineMs: 10_000 });
  const parentGone = Promise.withResolvers<string>();
  if (o.supervised) {
    // start/demo write one JSON line per change of their children; EOF: the parent is gone.
    pumpLines(Deno.stdin.readable, (line) => {
      const list = parseProcessLine(line);
      if (list !== null) processes = list;
    }).then(() => parentGone.resolve("stdin closed"));
  }
  const why = await Promise.race([stops.requested, parentGone.promise]);
  stops.begin(why);
  log.info("stopping the dashboard", { reason: why });
  await server.close();
  kv.close();
  await pool.end().catch(() => {});
  stops.dispose();
  return 0;
}
