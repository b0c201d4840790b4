/**
 * `tickpipe demo`: sets everything up (services, migrations), starts the
 * simulator with a handful of stock and crypto symbols, runs the pipeline
 * against it with demo settings, and shows live progress.
 * @module
 */

import { BASE_OPTIONS, BASE_USAGE, parseFlags, UsageError } from "../common/cli.ts";
import { loadBaseConfig, parseDuration, parsePositive, readEnv } from "../common/config.ts";
import {
  DASHBOARD_OPTIONS,
  dashboardUsage,
  resolveDashboardSettings,
} from "../common/dashboard_flags.ts";
import { addSecret, createLogger } from "../common/log.ts";

const USAGE = `Usage: tickpipe demo [flags]

Brings up Kafka and PostgreSQL (deno task services, which also applies the migrations),
starts the simulator on 127.0.0.1:8765 with stock and crypto symbols, and runs "start"
against it with demo settings (5 s trigger, 2 min idle timeout, sensor --every 5s), so
windows appear in price_windows within seconds. Shows ticks in, dead letters, lag,
aggregator state, watermark, windows written and the latest 5-minute candles; in a
terminal as a live screen, otherwise one line per refresh. Child output goes to
.data/demo.log. The live web dashboard (candles per symbol and resolution, partitions,
processes) is at http://127.0.0.1:8080/ unless --dashboard-port 0.

Flags:
  --duration DUR     run this long (e.g. 60 or 90s), then stop everything and print a
                     summary; exit 0 when windows were written. Default: until Ctrl-C
  --rate N           simulator ticks per second (default 50)
  --symbols A,B,...  default ${"AAPL,MSFT,NVDA,TSLA,BTC-USD,ETH-USD"}
  --refresh DUR      dashboard refresh (default 2s in a terminal, 5s when piped)
${dashboardUsage({ column: 23 })}

${BASE_USAGE}`;

/** Demo symbols: a handful of stocks and crypto pairs. */
export const DEMO_SYMBOLS = "AAPL,MSFT,NVDA,TSLA,BTC-USD,ETH-USD";

/** Where the demo's simulator listens (its children are allowed it from --source / --port). */
export const DEMO_SOURCE = "ws://127.0.0.1:8765/?version=2";

/** The demo's pipeline settings (also documented in the usage text). */
export const DEMO_SETTINGS = { trigger: "5s", idleTimeout: "2m", every: "5s" } as const;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    ...BASE_OPTIONS,
    duration: { type: "string" },
    rate: { type: "string" },
    symbols: { type: "string" },
    refresh: { type: "string" },
    ...DASHBOARD_OPTIONS,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${positionals[0]}" (see --help)`);
  }
  const config = loadBaseConfig(values);
  const durationMs = values.duration === undefined
    ? undefined
    : parseDuration(values.duration, "--duration", { fallbackMs: 0 });
  const rate = parsePositive(values.rate, "--rate", { fallback: 50 });
  const tty = Deno.stdout.isTerminal();
  const refreshMs = parseDuration(values.refresh, "--refresh", { fallbackMs: tty ? 2000 : 5000 });
  const symbols = (values.symbols ?? DEMO_SYMBOLS).split(",").map((s) => s.trim()).filter(
    (s) => s !== "",
  );
  if (symbols.length === 0) throw new UsageError(`--symbols "${values.symbols}" names no symbol`);
  const dashboard = resolveDashboardSettings(values, { env: readEnv });
  if (dashboard.token !== null) addSecret(dashboard.token);
  const { childPermissions, Supervisor, safeWriter } = await import("./supervisor.ts");
  const { denoRunArgs, projectFiles } = await import("../common/child.ts");
  const { EXIT_CUT, watchStopSignals } = await import("../common/signals.ts");
  // Output that survives a closed pipe (| head): the children must still be stopped cleanly.
  const out = safeWriter(Deno.stdout);
  const errOut = safeWriter(Deno.stderr);
  const raw = (text: string) => {
    try {
      Deno.stdout.writeSync(new TextEncoder().encode(text));
    } catch { /* closed */ }
  };
  const log = createLogger("demo", { write: errOut });

  const { dashboardBoard, pipelineChildren, STOP_DEADLINE_MS } = await import("./start_main.ts");
  // A taken dashboard port fails fast (exit 2), before the services are even checked.
  const board = await dashboardBoard(dashboard, "demo");
  const { collectStatus } = await import("./status.ts");
  const { renderDashboard, renderSummaryLine } = await import("./dashboard.ts");
  const { createKafka } = await import("../common/kafka.ts");
  const { createPool } = await import("../common/pg.ts");
  const { openKv } = await import("../common/kv.ts");

  // One stop request, however many copies arrive (common/signals.ts): the pipeline is stopped
  // the way `start` stops it; a later request cuts only after the same deadline.
  const live: { sup?: InstanceType<typeof Supervisor> } = {};
  const signals = watchStopSignals({
    logger: log,
    deadlineMs: STOP_DEADLINE_MS,
    onCut: () => {
      if (tty) raw("\x1b[?25h\n");
      (live.sup?.kill() ?? Promise.resolve()).finally(() => Deno.exit(EXIT_CUT));
    },
  });
  let interrupted = false;
  signals.requested.then(() => {
    interrupted = true;
  });

  log.info("setting up services (Kafka, PostgreSQL, migrations): deno task services");
  const files = projectFiles();
  const services = {
    name: "services",
    command: "services",
    args: ["up"],
    env: { DATABASE_URL: config.databaseUrl, KAFKA_BROKERS: config.brokers.join(",") },
  };
  const setup = new Deno.Command("deno", {
    args: denoRunArgs("services", services.args, { denoFlags: childPermissions(services) }),
    cwd: files.root,
    env: services.env,
    stdin: "null",
  }).spawn();
  const setupStatus = await setup.status;
  if (!setupStatus.success) {
    log.error("services could not be started: see the messages above", {
      exitCode: setupStatus.code,
    });
    signals.dispose();
    return 1;
  }
  if (interrupted) {
    signals.dispose();
    return 0;
  }

  await Deno.mkdir(".data", { recursive: true });
  const logPath = ".data/demo.log";
  const logFile = await Deno.open(logPath, { create: true, write: true, truncate: true });
  const enc = new TextEncoder();
  const write = (line: string) => {
    try {
      logFile.writeSync(enc.encode(line + "\n"));
    } catch { /* closed at the very end */ }
  };
  let simulatorDied: string | undefined;
  const events = Promise.withResolvers<void>();
  const sup: InstanceType<typeof Supervisor> = new Supervisor({
    logger: createLogger("demo", { write }),
    write,
    onEvent: (e) => {
      board.event(e, (line) => sup.send("dashboard", line));
      if (sup.stopping) return;
      if (e.kind === "exited" && e.child === "simulate") {
        simulatorDied = `the simulator exited with code ${e.code} (is port 8765 in use?)`;
        events.resolve();
      } else if (e.kind === "fatal") {
        simulatorDied = e.reason;
        events.resolve();
      }
    },
  });
  live.sup = sup;
  board.track("simulate", { restart: false });
  sup.add({
    name: "simulate",
    command: "simulate",
    restart: false,
    args: [
      "--port",
      "8765",
      "--rate",
      String(rate),
      "--seed",
      String(Date.now() % 1_000_000),
      "--out-of-order-fraction",
      "0.05",
      "--late-fraction",
      "0.005",
      "--malformed-fraction",
      "0.002",
    ],
  });
  for (
    const spec of pipelineChildren(config, {
      source: DEMO_SOURCE,
      symbols: symbols.join(","),
      ...DEMO_SETTINGS,
      dashboard: { ...dashboard, refresh: "2s" },
    })
  ) {
    board.track(spec.name, { restart: true });
    sup.add(spec);
  }

  const kafka = createKafka(config.brokers, {
    clientId: "tickpipe-demo",
    retries: 1,
    logger: createLogger("demo", { level: "error", write }),
  });
  const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-demo", max: 2 });
  const kv = await openKv(config.kvPath);
  const started = Date.now();
  const deadline = durationMs === undefined ? Infinity : started + durationMs;
  const dashboardUrl = dashboard.port === 0
    ? null
    : `http://${
      dashboard.hostname.includes(":") ? `[${dashboard.hostname}]` : dashboard.hostname
    }:${dashboard.port}/`;
  const header = {
    source: DEMO_SOURCE.replace(/\/\?.*$/, ""),
    symbols,
    topic: config.topic,
    logPath,
    settings:
      `trigger ${DEMO_SETTINGS.trigger}, sensor every ${DEMO_SETTINGS.every}, idle timeout ${DEMO_SETTINGS.idleTimeout}` +
      (dashboardUrl === null ? "" : `; web dashboard ${dashboardUrl}`),
    until: durationMs === undefined
      ? "Ctrl-C to stop"
      : `stopping after ${Math.round(durationMs / 1000)} s`,
  };
  const baseline = await collectStatus(config, { kafka, pool, kv }, { symbols }).catch(() => null);
  const color = tty && !Deno.noColor;
  if (tty) raw("\x1b[?25l\x1b[H\x1b[2J");
  else {
    out(
      `tickpipe demo: simulator ${header.source} (${symbols.join(",")}), topic ${config.topic}, ` +
        `${header.settings}; child logs in ${logPath}; ${header.until}`,
    );
  }
  let prev: { ticks: number; at: number } | undefined;
  let last: Awaited<ReturnType<typeof collectStatus>> | undefined;
  let rateNow = 0;
  try {
    while (!interrupted && simulatorDied === undefined && Date.now() < deadline) {
      const wait = Math.min(refreshMs, Math.max(0, deadline - Date.now()));
      const timer = Promise.withResolvers<void>();
      const id = setTimeout(timer.resolve, wait);
      await Promise.race([timer.promise, signals.requested, events.promise]);
      clearTimeout(id);
      if (interrupted || simulatorDied !== undefined) break;
      let s;
      try {
        s = await collectStatus(config, { kafka, pool, kv }, {
          symbols,
          latestPerSymbol: true,
          newest: symbols.length,
        });
      } catch (e) {
        write(`[demo] status failed: ${(e as Error).message}`);
        continue;
      }
      const now = Date.now();
      if (prev !== undefined) {
        rateNow = Math.round(((s.ticksInTopic - prev.ticks) * 1000) / Math.max(1, now - prev.at));
      }
      prev = { ticks: s.ticksInTopic, at: now };
      last = s;
      const view = {
        status: s,
        elapsedMs: now - started,
        ratePerSec: rateNow,
        baselineWindows: baseline?.windows?.total ?? 0,
        header,
        color,
      };
      if (tty) {
        const { columns } = consoleSize();
        const screen = renderDashboard(view, { width: columns });
        raw("\x1b[H" + screen.split("\n").map((l) => l + "\x1b[K").join("\n") + "\x1b[J");
      } else out(renderSummaryLine(view));
    }
  } finally {
    if (tty) raw("\x1b[?25h\n");
  }
  signals.begin(simulatorDied ? "simulator" : "duration");
  board.stopping((line) => sup.send("dashboard", line));
  errOut(
    simulatorDied
      ? `demo: ${simulatorDied}; stopping (details in ${logPath})`
      : "demo: stopping the pipeline (ingest flushes, the aggregator checkpoints)...",
  );
  await sup.stop();
  signals.dispose();
  const final = await collectStatus(config, { kafka, pool, kv }, {
    symbols,
    latestPerSymbol: true,
    newest: symbols.length,
  }).catch(() => last);
  kv.close();
  await pool.end().catch(() => {});
  const exits = sup.children.map((c) => `${c.spec.name} ${c.lastExit ?? "-"}`).join(", ");
  logFile.close();
  const windows = final?.windows?.total ?? 0;
  const { renderCandles } = await import("./status.ts");
  out(
    `summary: ${Math.round((Date.now() - started) / 1000)} s, ${
      final?.ticksInTopic ?? 0
    } ticks in topic ${config.topic}, ${final?.deadLetters ?? 0} dead letters, lag ${
      final?.totalLag ?? "?"
    }, ${windows} windows of ${symbols.join(",")} in price_windows (${
      final?.windows?.final ?? 0
    } final); exit codes: ${exits}`,
  );
  if (final?.windows?.newest.length) out(renderCandles(final.windows.newest));
  if (simulatorDied) return 1;
  const newestUpdate = final?.windows?.freshnessMs == null
    ? null
    : Date.parse(final.at) - final.windows.freshnessMs;
  const wroteThisRun = windows > 0 && newestUpdate !== null && newestUpdate >= started - 1000;
  if (durationMs !== undefined && !wroteThisRun) {
    log.error(`no windows were written during this run: see ${logPath}`);
    return 1;
  }
  return 0;
}

function consoleSize(): { columns: number; rows: number } {
  try {
    return Deno.consoleSize();
  } catch {
    return { columns: 100, rows: 40 };
  }
}
