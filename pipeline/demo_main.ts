/**
 * `tickpipe demo`: sets everything up (services, migrations, a fresh demo topic), starts the
 * simulator with a handful of stock, crypto and FX symbols on an accelerated event clock, runs
 * the pipeline against it with demo settings (1m and 5m windows, a short watermark and short
 * triggers), and shows live progress: windows turning final, late ticks, volume and VWAP, and
 * the 1m and 5m candles side by side.
 * @module
 */

import {
  CONNECTION_FLAGS,
  CONNECTION_TITLE,
  HELP_FLAG,
  parseCommandLine,
  rejectPositionals,
} from "../common/cli.ts";
import { loadBaseConfig, readEnv } from "../common/config.ts";
import { dashboardUrl, resolveDashboardSettings } from "../common/dashboard_flags.ts";
import { addSecret, createLogger } from "../common/log.ts";
import { parseOptionValue, sectionsUsage, withPresets } from "../common/options.ts";
import { AGGREGATOR_FLAGS } from "../aggregate/options.ts";
import {
  checkDemoTopic,
  DASHBOARD_FLAGS,
  DEMO_COMMAND,
  DEMO_INGEST_FLAGS,
  DEMO_OWN_FLAGS,
  DEMO_OWN_SENSOR_FLAGS,
  DEMO_REPLAY_MS,
  DEMO_SETTINGS,
  DEMO_SOURCE,
  DEMO_TOPIC,
  DEMO_TOPIC_FLAG,
  demoForwarded,
  pipelineChildren,
} from "./options.ts";

export {
  DEMO_REPLAY_MS,
  DEMO_SETTINGS,
  DEMO_SOURCE,
  DEMO_SPEED,
  DEMO_SYMBOLS,
  DEMO_TOPIC,
} from "./options.ts";

const REPLAY = `${DEMO_REPLAY_MS / 60_000} min`;

const USAGE = `Usage: tickpipe demo [flags]

Brings up Kafka and PostgreSQL (deno task services, which also applies the migrations),
empties the demo's topic (${DEMO_TOPIC}: its Kafka records, its checkpoint in KV and its rows
in PostgreSQL), starts the simulator on 127.0.0.1:8765 with stock, crypto and FX symbols,
and runs "start" against it with demo settings: windows ${DEMO_SETTINGS.windows}, watermark ${DEMO_SETTINGS.watermark},
trigger ${DEMO_SETTINGS.trigger}, sensor --every ${DEMO_SETTINGS.every}, idle timeout ${
  DEMO_SETTINGS["idle-timeout"]
}.

The simulator's event clock runs --speed times faster than the wall clock: it starts in
the past (--duration x (speed - 1) ago, so it meets the wall clock as the run ends; ${REPLAY}
ago without --duration) and goes on at wall-clock pace once it catches up, so no tick is
ever in the future. A 1m window then lasts 3 s and the watermark delay 6 s: within a minute
you see windows turning final, late ticks (1% of the ticks are 20 min late) landing in
late_ticks, volume and VWAP (none for the FX pair), and the 1m and 5m candles side by side.
In a terminal as a live screen, otherwise one line per refresh; a summary at the end.
The live web dashboard (candles per symbol and resolution, partitions, processes) is at
http://127.0.0.1:8080/ unless --dashboard-port 0.
Child output goes to .data/demo.log. The ingest, sensor and aggregator flags below are
passed on as "start" passes them (the demo's settings unless given).

${
  sectionsUsage([
    { title: "Flags:", table: { ...DEMO_OWN_FLAGS, ...DASHBOARD_FLAGS, ...HELP_FLAG } },
    { title: "Ingest flags:", table: DEMO_INGEST_FLAGS },
    { title: "Sensor flags:", table: withPresets(DEMO_OWN_SENSOR_FLAGS, DEMO_SETTINGS) },
    { title: "Aggregator flags:", table: withPresets(AGGREGATOR_FLAGS, DEMO_SETTINGS) },
    { title: CONNECTION_TITLE, table: { ...CONNECTION_FLAGS, ...DEMO_TOPIC_FLAG } },
  ])
}`;

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { options: o, given, positionals } = parseCommandLine(args, DEMO_COMMAND);
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  rejectPositionals(positionals);
  const config = { ...loadBaseConfig(o), topic: checkDemoTopic(o.topic) };
  const durationMs = o.duration;
  const rate = o.rate;
  const speed = o.speed;
  const tty = Deno.stdout.isTerminal();
  const refreshMs = o.refresh ?? (tty ? 2000 : 5000);
  const symbols = o.symbols;
  // What the children get: the demo's settings, overridden by the flags given (validated with
  // the command line); the screen shows the resolutions and the watermark they run with.
  const forwarded = demoForwarded(given, symbols);
  const windowsText = String(forwarded.windows);
  const watermarkText = String(forwarded.watermark);
  const resolutions = parseOptionValue(
    "windows",
    AGGREGATOR_FLAGS.windows,
    windowsText,
  ) as number[];
  const watermarkDelayMs = parseOptionValue(
    "watermark",
    AGGREGATOR_FLAGS.watermark,
    watermarkText,
  ) as number;
  const dashboard = resolveDashboardSettings(o, { env: readEnv });
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

  const { dashboardBoard, STOP_DEADLINE_MS } = await import("./start_main.ts");
  // A taken dashboard port fails fast (exit 2), before the services are even checked.
  const board = await dashboardBoard(dashboard, "demo");
  const { collectStatus } = await import("./status.ts");
  const { renderDashboard, renderSummaryLine } = await import("./dashboard.ts");
  const { createKafka } = await import("../common/kafka.ts");
  const { createPool } = await import("../common/pg.ts");
  const { openKv } = await import("../common/kv.ts");
  const { resetDemoTopic } = await import("./demo_reset.ts");

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

  const kafka = createKafka(config.brokers, {
    clientId: "tickpipe-demo",
    retries: 1,
    logger: createLogger("demo", { level: "error", write: errOut }),
  });
  const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-demo", max: 2 });
  const kv = await openKv(config.kvPath);
  const closeEdges = async () => {
    kv.close();
    await pool.end().catch(() => {});
  };
  try {
    const r = await resetDemoTopic(config.topic, { kafka, pool, kv });
    log.info("fresh demo topic: its records, checkpoint and rows were removed", {
      topic: config.topic,
      records: r.records,
      rows: r.rows,
      kvKeys: r.kvKeys,
    });
  } catch (e) {
    log.error(`cannot empty the demo topic: ${(e as Error).message}`, { topic: config.topic });
    await closeEdges();
    signals.dispose();
    return 1;
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
  // The event clock: the simulator starts it when it listens (its first output line).
  const eventStart = Date.now() -
    (durationMs === undefined ? DEMO_REPLAY_MS : Math.round(durationMs * Math.max(0, speed - 1)));
  let simulatorListening: number | null = null;
  const eventTimeNow = () =>
    simulatorListening === null
      ? null
      : Math.min(Date.now(), eventStart + (Date.now() - simulatorListening) * speed);
  const sup: InstanceType<typeof Supervisor> = new Supervisor({
    logger: createLogger("demo", { write }),
    write: (line) => {
      if (simulatorListening === null && line.includes("Simulator listening on")) {
        simulatorListening = Date.now();
      }
      write(line);
    },
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
      "--speed",
      String(speed),
      "--from",
      new Date(eventStart).toISOString(),
      "--out-of-order-fraction",
      "0.05",
      "--late-fraction",
      "0.01",
      "--malformed-fraction",
      "0.002",
    ],
  });
  for (
    const spec of pipelineChildren(config, forwarded, {
      dashboard: { ...dashboard, refresh: "2s" },
    })
  ) {
    board.track(spec.name, { restart: true });
    sup.add(spec);
  }

  const started = Date.now();
  const deadline = durationMs === undefined ? Infinity : started + durationMs;
  const webUrl = dashboardUrl(dashboard);
  const header = {
    source: DEMO_SOURCE.replace(/\/\?.*$/, ""),
    symbols,
    topic: config.topic,
    logPath,
    settings: `windows ${windowsText}, watermark ${watermarkText}, event time ${speed}x, ` +
      `trigger ${forwarded.trigger}, sensor every ${forwarded.every}, ` +
      `idle timeout ${forwarded["idle-timeout"]}` +
      (webUrl === null ? "" : `; web dashboard ${webUrl}`),
    resolutions,
    watermarkDelayMs,
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
          newest: symbols.length * resolutions.length,
          newestLate: 1,
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
        eventTimeMs: eventTimeNow(),
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
    finalOnly: true,
    newest: symbols.length * resolutions.length,
    newestLate: 3,
  }).catch(() => last);
  await closeEdges();
  const exits = sup.children.map((c) => `${c.spec.name} ${c.lastExit ?? "-"}`).join(", ");
  logFile.close();
  const windows = final?.windows?.total ?? 0;
  const { renderDemoSummary } = await import("./dashboard.ts");
  out(renderDemoSummary(final ?? null, {
    elapsedMs: Date.now() - started,
    topic: config.topic,
    symbols,
    resolutions,
    exits,
    width: tty ? consoleSize().columns : 120,
  }));
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
