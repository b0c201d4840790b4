// The stop rule (common/signals.ts): copies of a stop request within the coalescing window are one
// request; a later request cuts only a flush that is past its deadline. Pure rule with an injected
// clock, the signal watcher with an injected signal source, and real signals to a real process.
import assert from "node:assert/strict";
import {
  COALESCE_MS,
  EXIT_CUT,
  signalExitCode,
  type SignalSource,
  type StopDecision,
  StopRule,
  StopRuleError,
  watchStopSignals,
} from "../../common/signals.ts";
import { createLogger } from "../../common/log.ts";

Deno.test("stop rule: copies coalesce, early requests wait, a request past the deadline cuts", () => {
  const rule = new StopRule({ deadlineMs: 10_000 });
  assert.equal(COALESCE_MS, 3_000);
  assert.equal(rule.stopping, false);
  assert.equal(rule.cutsInMs(0), null);
  const seen: [number, StopDecision][] = [];
  for (const t of [0, 1, 2_999, 3_000, 4_000, 9_999, 10_000, 12_998, 12_999]) {
    seen.push([t, rule.request(t)]);
  }
  assert.deepEqual(seen, [
    [0, "stop"],
    [1, "duplicate"], // deno task's forwarded copy of a group kill
    [2_999, "duplicate"],
    [3_000, "early"], // a new request, but the flush is within its deadline
    [4_000, "duplicate"], // a copy of that one
    [9_999, "early"],
    [10_000, "duplicate"], // past the deadline, yet a copy of the request at 9 999
    [12_998, "duplicate"],
    [12_999, "cut"],
  ]);
  assert.equal(rule.stopping, true);
  assert.equal(rule.cutsInMs(4_000), 6_000);
  assert.equal(rule.cutsInMs(20_000), 0);
});

Deno.test("stop rule: a stop begun for another reason (duration) makes the first signal a later request", () => {
  const rule = new StopRule({ deadlineMs: 10_000, coalesceMs: 500 });
  rule.begin(1_000);
  rule.begin(5_000); // no-op: the flush began at 1 000
  assert.equal(rule.request(2_000), "early");
  assert.equal(rule.request(2_400), "duplicate");
  assert.equal(rule.request(10_999), "early");
  assert.equal(rule.request(11_000), "duplicate");
  assert.equal(rule.request(11_498), "duplicate");
  assert.equal(rule.request(11_499), "cut");
});

Deno.test("stop rule: bad options name the value", () => {
  assert.throws(
    () => new StopRule({ deadlineMs: -1 }),
    (e) => e instanceof StopRuleError && /deadlineMs -1/.test(e.message),
  );
  assert.throws(() => new StopRule({ deadlineMs: 1, coalesceMs: NaN }), /coalesceMs NaN/);
});

Deno.test("stop rule: randomized request trains against the rule's statements", () => {
  let seed = 42;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let run = 0; run < 2_000; run++) {
    const deadlineMs = Math.floor(rnd() * 20_000);
    const coalesceMs = Math.floor(rnd() * 5_000);
    const rule = new StopRule({ deadlineMs, coalesceMs });
    const times: number[] = [];
    let t = Math.floor(rnd() * 1_000);
    for (let i = 0, n = 1 + Math.floor(rnd() * 12); i < n; i++) {
      times.push(t);
      t += rnd() < 0.5 ? Math.floor(rnd() * 50) : Math.floor(rnd() * 8_000);
    }
    const got = times.map((x) => rule.request(x));
    const ctx = `deadline ${deadlineMs} coalesce ${coalesceMs} times ${times} -> ${got}`;
    // The first request starts the stop; no other does.
    assert.equal(got[0], "stop", ctx);
    assert.ok(got.slice(1).every((d) => d !== "stop"), ctx);
    // Nothing cuts before the deadline.
    times.forEach((x, i) => {
      if (got[i] === "cut") assert.ok(x - times[0] >= deadlineMs, ctx);
    });
    // However many copies arrive within the window of the first request, none cuts or counts.
    times.forEach((x, i) => {
      if (i > 0 && x - times[0] < coalesceMs) assert.equal(got[i], "duplicate", ctx);
    });
    // A request is a copy exactly when it comes within the window of the last one that counted.
    let anchor = times[0];
    times.forEach((x, i) => {
      if (i === 0) return;
      const copy = x - anchor < coalesceMs;
      assert.equal(got[i] === "duplicate", copy, ctx);
      if (!copy) {
        anchor = x;
        assert.equal(got[i], x - times[0] >= deadlineMs ? "cut" : "early", ctx);
      }
    });
  }
});

/** A signal source the test fires by hand, and a clock it sets. */
function fakeSignals() {
  const handlers = new Map<Deno.Signal, Set<() => void>>();
  const source: SignalSource = {
    add: (s, h) => void (handlers.get(s) ?? handlers.set(s, new Set()).get(s)!).add(h),
  };
  let now = 0;
  return {
    source,
    clock: () => now,
    at(ms: number, signal: Deno.Signal) {
      now = ms;
      for (const h of [...(handlers.get(signal) ?? [])]) h();
    },
    count: () => [...handlers.values()].reduce((n, s) => n + s.size, 0),
  };
}

Deno.test("stop signals: one request from a group kill, a warning for an early one, a cut after the deadline", async () => {
  const f = fakeSignals();
  const lines: string[] = [];
  const cuts: Deno.Signal[] = [];
  const stops = watchStopSignals({
    logger: createLogger("t", { write: (l) => lines.push(l), format: "json" }),
    deadlineMs: 10_000,
    now: f.clock,
    source: f.source,
    signals: ["SIGINT", "SIGTERM"],
    onCut: (s) => cuts.push(s),
  });
  assert.equal(f.count(), 2, "listens to SIGINT and SIGTERM");
  f.at(100, "SIGTERM");
  f.at(101, "SIGTERM"); // deno task's forwarded copy
  f.at(900, "SIGINT"); // a supervisor's second SIGTERM, or Ctrl-C, within the window
  assert.equal(await stops.requested, "SIGTERM");
  f.at(5_000, "SIGTERM");
  assert.deepEqual(cuts, [], "no cut before the deadline");
  f.at(10_100, "SIGTERM");
  assert.deepEqual(cuts, ["SIGTERM"]);
  const recs = lines.map((l) => JSON.parse(l));
  assert.deepEqual(recs.map((r) => r.level), ["info", "info", "warn", "error"]);
  assert.match(recs[0].msg, /same stop request/);
  assert.equal(recs[2].cutsInMs, 5_100);
  assert.match(recs[3].msg, /exiting without finishing the flush/);
  stops.dispose();
  assert.equal(f.count(), 2, "the listeners stay after the flush");
});

Deno.test("stop signals: after the flush a copy of the request is ignored, any other request ends the process", () => {
  for (const begun of ["signal", "duration", "none"] as const) {
    const f = fakeSignals();
    const lines: string[] = [];
    const cuts: Deno.Signal[] = [];
    const late: Deno.Signal[] = [];
    const stops = watchStopSignals({
      logger: createLogger("t", { write: (l) => lines.push(l), format: "json", level: "debug" }),
      deadlineMs: 10_000,
      now: f.clock,
      source: f.source,
      onCut: (s) => cuts.push(s),
      onAfterFlush: (s) => late.push(s),
    });
    if (begun === "signal") f.at(100, "SIGTERM");
    if (begun === "duration") stops.begin("duration");
    stops.dispose();
    stops.dispose();
    // A supervisor's second SIGTERM, 50 ms after its first, while the process closes its edges.
    f.at(150, "SIGTERM");
    if (begun === "signal") {
      assert.deepEqual(late, [], "a copy of the request that was flushed");
      assert.match(JSON.parse(lines.at(-1)!).msg, /after the flush/);
      f.at(3_100, "SIGINT"); // a new request, 3 s after the one that counted
      assert.deepEqual(late, ["SIGINT"]);
    } else {
      // No request was flushed (an idle exit, a duration): nothing for a signal to be a copy of.
      assert.deepEqual(late, ["SIGTERM"], begun);
    }
    assert.deepEqual(cuts, [], "a flush that is done is never cut");
  }
});

Deno.test("stop signals: the exit code after the flush is the signal's own", () => {
  assert.equal(signalExitCode("SIGTERM"), 143);
  assert.equal(signalExitCode("SIGINT"), 130);
  assert.equal(signalExitCode("SIGHUP"), 129);
});

Deno.test("stop signals: begin() resolves the request with its reason; a signal then is a later request", async () => {
  const f = fakeSignals();
  const cuts: Deno.Signal[] = [];
  const stops = watchStopSignals({
    logger: createLogger("t", { write: () => {} }),
    deadlineMs: 1_000,
    now: f.clock,
    source: f.source,
    onCut: (s) => cuts.push(s),
  });
  stops.begin("duration");
  assert.equal(await stops.requested, "duration");
  f.at(500, "SIGINT");
  assert.deepEqual(cuts, []);
  f.at(4_000, "SIGINT");
  assert.deepEqual(cuts, ["SIGINT"]);
  stops.dispose();
});

// A real process: it flushes for 1.5 s after the first stop request, then closes its edges for
// Deno.args[2] ms (default 0) and exits 0.
const FLUSHER = `
import { watchStopSignals } from ${
  JSON.stringify(new URL("../../common/signals.ts", import.meta.url).href)
};
import { createLogger } from ${
  JSON.stringify(new URL("../../common/log.ts", import.meta.url).href)
};
const stops = watchStopSignals({
  logger: createLogger("flusher"),
  deadlineMs: Number(Deno.args[0]),
  coalesceMs: Number(Deno.args[1]),
});
console.log("ready");
const why = await stops.requested;
console.log("flushing", why);
await new Promise((r) => setTimeout(r, 1500));
console.log("flushed");
stops.dispose();
await new Promise((r) => setTimeout(r, Number(Deno.args[2] ?? 0)));
console.log("closed");
`;

async function runFlusher(
  deadlineMs: number,
  coalesceMs: number,
  killsAtMs: number[],
  closeMs = 0,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(file, FLUSHER);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "-A",
      file,
      String(deadlineMs),
      String(coalesceMs),
      String(closeMs),
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  while (!stdout.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  const t0 = performance.now();
  for (const at of killsAtMs) {
    await new Promise((r) => setTimeout(r, Math.max(0, at - (performance.now() - t0))));
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
  }
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  await Deno.remove(file);
  return { code: status.code, stdout, stderr };
}

Deno.test("stop signals: a real process given SIGTERM three times in a second flushes and exits 0", async () => {
  const r = await runFlusher(60_000, 3_000, [0, 5, 800]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /flushing SIGTERM\nflushed/);
  // Two signals 5 ms apart may reach JavaScript as one (the kernel merges a pending signal, and
  // the runtime's signal stream may deliver two arrivals as one wake-up): 1 or 2 repeats logged.
  const repeats = r.stderr.match(/Repeated stop signal/g)?.length ?? 0;
  assert.ok(repeats >= 1 && repeats <= 2, `${repeats} repeats logged: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /without finishing/);
});

Deno.test("stop signals: a real process given SIGTERM again while it closes after the flush exits 0; a new request exits 143", async () => {
  // The second SIGTERM lands 100 ms after the flush, while the process closes (0.6 s): a copy.
  const copy = await runFlusher(60_000, 2_000, [0, 1_600], 600);
  assert.equal(copy.code, 0, copy.stderr);
  assert.match(copy.stdout, /flushed\nclosed/);
  // A request 2.1 s after the first is a new one: the flush is done, the process ends at once.
  const fresh = await runFlusher(60_000, 2_000, [0, 2_100], 10_000);
  assert.equal(fresh.code, 143, fresh.stderr);
  assert.match(fresh.stdout, /flushed/);
  assert.doesNotMatch(fresh.stdout, /closed/);
});

Deno.test("stop signals: a real process is cut (exit 130) by a request after its deadline", async () => {
  const r = await runFlusher(300, 200, [0, 600]);
  assert.equal(r.code, EXIT_CUT, r.stderr);
  assert.doesNotMatch(r.stdout, /flushed/);
  assert.match(r.stderr, /exiting without finishing the flush/);
});
