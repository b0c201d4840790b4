/**
 * CLI entry of the Yahoo streamer simulator (`deno task simulate`).
 * @module
 */

import { parseCommandLine } from "../common/cli.ts";
import { createLogger } from "../common/log.ts";
import { sectionsUsage } from "../common/options.ts";
import { watchStopSignals } from "../common/signals.ts";
import { eventStartAt, parseEventStart, SIMULATE_COMMAND } from "./options.ts";
import {
  eventStartFor,
  SimulatorError,
  type SimulatorOptions,
  startSimulator,
} from "./simulator.ts";

const USAGE = `Usage: tickpipe simulate [options]

Local WebSocket server speaking the Yahoo Finance streamer protocol.
Connect to ws://HOST:PORT/?version=2 (JSON envelopes) or ?version=1 (bare base64),
then send {"subscribe":["AAPL","BTC-USD"]} / {"unsubscribe":[...]}.

${sectionsUsage([{ title: "Options:", table: SIMULATE_COMMAND }])}
`;

/**
 * The event clock's start from `--from` (ISO time, or a duration ago: see
 * {@linkcode parseEventStart}), else from --duration and --speed (the clock meets the wall clock
 * as the run ends); undefined: the simulator's default.
 */
export function eventStartOf(
  from: string | undefined,
  o: { speed: number; durationMs?: number; now: number },
): number | undefined {
  if (from !== undefined) {
    return eventStartAt(parseEventStart(from, { flag: "--from", now: o.now }), o.now);
  }
  return defaultEventStart(o);
}

/** The event clock's start without `--from` (see {@linkcode eventStartOf}). */
function defaultEventStart(
  o: { speed: number; durationMs?: number; now: number },
): number | undefined {
  if (o.speed === 1 || o.durationMs === undefined) return undefined;
  return eventStartFor(o.now, { speed: o.speed, durationMs: o.durationMs });
}

/** Run the simulator CLI with `args`; resolves to the process exit code. */
export async function main(args: string[]): Promise<number> {
  let o;
  try {
    const line = parseCommandLine(args, SIMULATE_COMMAND);
    if (line.positionals.length > 0) {
      throw new Error(`Unexpected argument "${line.positionals[0]}"`);
    }
    o = line.options;
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (o.help) {
    console.log(USAGE);
    return 0;
  }

  const durationS = o.duration;
  const options: SimulatorOptions = {
    port: o.port,
    hostname: o.hostname,
    rate: o.rate,
    seed: o.seed,
    lateFraction: o["late-fraction"],
    lateByMs: o["late-by"],
    outOfOrderFraction: o["out-of-order-fraction"],
    malformedFraction: o["malformed-fraction"],
    futureFraction: o["future-fraction"],
    heartbeatMs: o["heartbeat-ms"],
    disconnectEvery: o["disconnect-every"],
    speed: o.speed,
    // --from was parsed (an ISO time checked not to be in the future) with the command line.
    eventStart: o.from !== undefined ? eventStartAt(o.from, Date.now()) : defaultEventStart({
      speed: o.speed ?? 1,
      durationMs: durationS === undefined ? undefined : durationS * 1000,
      now: Date.now(),
    }),
    sessionMs: o.session,
    logFile: o.log,
    keepSent: false,
  };

  if (o.replay !== undefined) {
    try {
      const text = await Deno.readTextFile(o.replay);
      options.replay = text.split(/\r?\n/).filter((line) => line !== "");
    } catch (e) {
      console.error(
        `Cannot read replay file ${JSON.stringify(o.replay)}: ${(e as Error).message}`,
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
