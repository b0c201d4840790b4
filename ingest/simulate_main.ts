/**
 * CLI entry of the Yahoo streamer simulator (`deno task simulate`).
 * @module
 */

import { parseArgs } from "node:util";
import { createLogger } from "../common/log.ts";
import { watchStopSignals } from "../common/signals.ts";
import { parseDuration } from "../common/config.ts";
import {
  DEFAULT_REPLAY_MS,
  eventStartFor,
  SimulatorError,
  type SimulatorOptions,
  startSimulator,
} from "./simulator.ts";

const USAGE = `Usage: tickpipe simulate [options]

Local WebSocket server speaking the Yahoo Finance streamer protocol.
Connect to ws://HOST:PORT/?version=2 (JSON envelopes) or ?version=1 (bare base64),
then send {"subscribe":["AAPL","BTC-USD"]} / {"unsubscribe":[...]}.

Options:
  --port N                     TCP port, 0 = ephemeral (default 8765)
  --hostname H                 interface to bind (default 127.0.0.1)
  --rate N                     ticks per second in total (default 10)
  --seed N                     PRNG seed (default 1)
  --late-fraction F            ticks with event time --late-by in the past (default 0)
  --late-by DUR                how far late ticks lag the event clock (default 20m)
  --out-of-order-fraction F    ticks with event time 1-5 s in the past (default 0; times
                               --speed while the clock is accelerated)
  --malformed-fraction F       garbage frames of various kinds (default 0)
  --future-fraction F          ticks with event time one day ahead (default 0)
  --heartbeat-ms N             heartbeat envelope interval to v2 clients, 0 = none (default 5000)
  --disconnect-every S         close all client sockets every S seconds (default: never)
  --replay FILE                replay raw frames from FILE (one per line) at --rate, then exit
  --duration S                 stop after S seconds (default: run until Ctrl-C)
  --speed N                    accelerated event clock: event time runs N times faster than
                               the wall clock until it catches up with it, then at wall-clock
                               pace, so no tick is ever in the future (default 1)
  --from TIME                  event time at start: ISO time or a duration ago (e.g. 30m).
                               Default with --speed: --duration x (N - 1) ago, so the clock
                               meets the wall clock when the run ends; without --duration,
                               ${DEFAULT_REPLAY_MS / 60_000} min ago
  --session DUR                cumulative day volumes restart every DUR of event time
                               (UTC-aligned, default 24h); FX pairs (EURUSD=X) carry none
  --log FILE                   write one JSON line per sent frame to FILE
  -h, --help                   show this help
`;

function num(flag: string, v: string | undefined, int = false): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || (int && !Number.isInteger(n))) {
    throw new Error(
      `Flag --${flag} needs a${int ? "n integer" : " number"}, got ${JSON.stringify(v)}`,
    );
  }
  return n;
}

/**
 * The event clock's start from `--from` (ISO time, or a duration ago), else from --duration and
 * --speed (the clock meets the wall clock as the run ends); undefined: the simulator's default.
 */
export function eventStartOf(
  from: string | undefined,
  o: { speed: number; durationMs?: number; now: number },
): number | undefined {
  if (from !== undefined) {
    if (/^\d{4}-\d\d-\d\dT/.test(from)) {
      const t = Date.parse(from);
      if (Number.isNaN(t)) throw new Error(`Flag --from "${from}" is not an ISO time`);
      if (t > o.now) throw new Error(`Flag --from "${from}" is in the future`);
      return t;
    }
    return o.now - parseDuration(from, "--from", { fallbackMs: 0 });
  }
  if (o.speed === 1 || o.durationMs === undefined) return undefined;
  return eventStartFor(o.now, { speed: o.speed, durationMs: o.durationMs });
}

/** Run the simulator CLI with `args`; resolves to the process exit code. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: "string" },
        hostname: { type: "string" },
        rate: { type: "string" },
        seed: { type: "string" },
        "late-fraction": { type: "string" },
        "late-by": { type: "string" },
        speed: { type: "string" },
        from: { type: "string" },
        session: { type: "string" },
        "out-of-order-fraction": { type: "string" },
        "malformed-fraction": { type: "string" },
        "future-fraction": { type: "string" },
        "heartbeat-ms": { type: "string" },
        "disconnect-every": { type: "string" },
        replay: { type: "string" },
        duration: { type: "string" },
        log: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }

  let options: SimulatorOptions;
  let durationS: number | undefined;
  try {
    options = {
      port: num("port", values.port, true),
      hostname: values.hostname,
      rate: num("rate", values.rate),
      seed: num("seed", values.seed, true),
      lateFraction: num("late-fraction", values["late-fraction"]),
      outOfOrderFraction: num("out-of-order-fraction", values["out-of-order-fraction"]),
      malformedFraction: num("malformed-fraction", values["malformed-fraction"]),
      futureFraction: num("future-fraction", values["future-fraction"]),
      heartbeatMs: num("heartbeat-ms", values["heartbeat-ms"]),
      disconnectEvery: num("disconnect-every", values["disconnect-every"]),
      logFile: values.log,
      keepSent: false,
    };
    durationS = num("duration", values.duration);
    if (durationS !== undefined && !(durationS > 0)) {
      throw new Error(`Flag --duration must be > 0, got ${values.duration}`);
    }
    const speed = num("speed", values.speed);
    if (speed !== undefined && !(speed > 0)) {
      throw new Error(`Flag --speed must be > 0, got ${values.speed}`);
    }
    options.speed = speed;
    if (values["late-by"] !== undefined) {
      options.lateByMs = parseDuration(values["late-by"], "--late-by", { fallbackMs: 0 });
    }
    if (values.session !== undefined) {
      options.sessionMs = parseDuration(values.session, "--session", { fallbackMs: 0 });
    }
    options.eventStart = eventStartOf(values.from, {
      speed: speed ?? 1,
      durationMs: durationS === undefined ? undefined : durationS * 1000,
      now: Date.now(),
    });
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }

  if (values.replay !== undefined) {
    try {
      const text = await Deno.readTextFile(values.replay);
      options.replay = text.split(/\r?\n/).filter((line) => line !== "");
    } catch (e) {
      console.error(
        `Cannot read replay file ${JSON.stringify(values.replay)}: ${(e as Error).message}`,
      );
      return 1;
    }
  }

  let sim;
  try {
    sim = await startSimulator(options);
  } catch (e) {
    console.error(`Cannot start simulator: ${(e as Error).message}`);
    return e instanceof SimulatorError ? 2 : 1;
  }
  console.log(`Simulator listening on ${sim.url}?version=2 (v1: ${sim.url}?version=1)`);
  if (sim.timing.speed !== 1) {
    console.log(
      `Event clock: ${sim.timing.speed}x from ${new Date(sim.timing.eventStart).toISOString()}, ` +
        `at wall-clock pace once it catches up`,
    );
  }

  // One stop request, however many copies arrive (common/signals.ts): closing is quick, so a
  // later request cuts it after 10 s.
  const stops = watchStopSignals({ logger: createLogger("simulate"), deadlineMs: 10_000 });
  const timer = durationS === undefined
    ? undefined
    : setTimeout(() => stops.begin("duration"), durationS * 1000);
  if (options.replay !== undefined) {
    sim.finished.then(() => setTimeout(() => stops.begin("replay done"), 500));
  }

  const reason = await stops.requested;
  const why = reason.startsWith("SIG") ? "signal" : reason;
  clearTimeout(timer);
  await sim.close();
  stops.dispose();
  console.log(`Simulator stopped (${why}); sent ${JSON.stringify(sim.counts())}`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
