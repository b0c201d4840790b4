// The supervisor with real child processes (a stand-in executable instead of deno), and the pure
// parts of start, status and the demo dashboard.
import assert from "node:assert/strict";
import { nextFailures, Supervisor, type SupervisorEvent } from "../../pipeline/supervisor.ts";
import { denoRunArgs } from "../../common/child.ts";
import { pipelineChildren } from "../../pipeline/start_main.ts";
import { parseCommandLine } from "../../common/cli.ts";
import { START_COMMAND } from "../../pipeline/options.ts";
import { ConfigError, loadBaseConfig } from "../../common/config.ts";
import { createLogger } from "../../common/log.ts";
import { fmtAge, partitionLag, type PipelineStatus } from "../../pipeline/status.ts";
import { clip, fmtInt, renderDashboard, renderSummaryLine } from "../../pipeline/dashboard.ts";

// Stand-in for deno: argv is `run --quiet --no-prompt -P=<set> --config <cfg> <main> <command> ...`.
const FAKE = `#!/bin/sh
case "$8" in
  crash) echo "boom $9"; exit 1 ;;
  usage) echo "bad flag" >&2; exit 2 ;;
  good) trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done ;;
  stubborn) trap '' TERM; echo ready; while :; do sleep 0.05; done ;;
  args) echo "$@"; exit 0 ;;
esac
exit 9
`;

async function fakeDeno(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-sup-" });
  const path = `${dir}/fake-deno`;
  await Deno.writeTextFile(path, FAKE);
  await Deno.chmod(path, 0o755);
  return path;
}

const quiet = createLogger("test", { write: () => {} });

async function until(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("supervisor: a crashing child is restarted with backoff, its output prefixed", async () => {
  const deno = await fakeDeno();
  const lines: string[] = [];
  const events: SupervisorEvent[] = [];
  const sup = new Supervisor({
    logger: quiet,
    deno,
    policy: { initialMs: 20, maxMs: 100, healthyAfterMs: 60_000 },
    write: (l) => lines.push(l),
    onEvent: (e) => events.push(e),
    format: "text",
  });
  sup.add({ name: "crashy", command: "crash", args: ["x"] });
  // Wait for the exits themselves, not for the starts: a run still going when stop() is called
  // is ended by stop's SIGTERM (exit 143), which is not the crash under test.
  const exits = () => events.filter((e) => e.kind === "exited");
  await until("three crashes", () => exits().length >= 3);
  // stop() marks the supervisor as stopping synchronously: no exit is counted after this line.
  const crashes = exits();
  await sup.stop();
  const c = sup.children[0];
  assert.deepEqual(
    crashes.map((e) => e.kind === "exited" && e.code),
    crashes.map(() => 1),
    "every run crashed with its own exit code",
  );
  assert.equal(c.failures, crashes.length, "each crash is one more consecutive failure");
  assert.ok(c.starts >= crashes.length, `restarted: ${c.starts} starts`);
  assert.ok(lines.includes("[crashy] boom x"), lines.join("\n"));
  const kinds = events.filter((e) => e.child === "crashy").map((e) => e.kind);
  assert.deepEqual(kinds.slice(0, 6), [
    "started",
    "exited",
    "started",
    "exited",
    "started",
    "exited",
  ]);
  await Deno.remove(deno.slice(0, deno.lastIndexOf("/")), { recursive: true });
});

Deno.test("supervisor: a child rejecting its flags (exit 2) is not restarted", async () => {
  const deno = await fakeDeno();
  const events: SupervisorEvent[] = [];
  const errs: string[] = [];
  const sup = new Supervisor({
    logger: quiet,
    deno,
    policy: { initialMs: 10, maxMs: 10, healthyAfterMs: 60_000 },
    write: () => {},
    writeErr: (l) => errs.push(l),
    onEvent: (e) => events.push(e),
    format: "text",
  });
  sup.add({ name: "u", command: "usage", args: [] });
  await sup.wait();
  assert.equal(sup.children[0].starts, 1);
  assert.match(sup.children[0].fatal ?? "", /rejected its flags/);
  assert.equal(events.at(-1)?.kind, "fatal");
  assert.deepEqual(errs, ["[u] bad flag"], "stderr lines go to writeErr");
  await Deno.remove(deno.slice(0, deno.lastIndexOf("/")), { recursive: true });
});

Deno.test("supervisor: stop sends SIGTERM, then SIGKILL after the grace period", async () => {
  const deno = await fakeDeno();
  const lines: string[] = [];
  const sup = new Supervisor({
    logger: quiet,
    deno,
    graceMs: 300,
    write: (l) => lines.push(l),
    format: "text",
  });
  sup.add({ name: "good", command: "good", args: [] });
  sup.add({ name: "stubborn", command: "stubborn", args: [] });
  await until("both ready", () => lines.filter((l) => l.endsWith(" ready")).length === 2);
  const pids = sup.children.map((c) => c.process!.pid);
  await sup.stop();
  await sup.stop(); // idempotent
  const [good, stubborn] = sup.children;
  assert.equal(good.lastExit, 0, "the well-behaved child exits by itself");
  assert.ok(lines.includes("[good] bye"));
  assert.equal(stubborn.lastExit, 137, "the stubborn one is killed");
  assert.equal(good.starts, 1, "no restart while stopping");
  for (const pid of pids) {
    assert.throws(() => Deno.readTextFileSync(`/proc/${pid}/stat`), "process reaped");
  }
  await Deno.remove(deno.slice(0, deno.lastIndexOf("/")), { recursive: true });
});

Deno.test("supervisor: kill() SIGKILLs every child's process group at once, without restarts", async () => {
  const deno = await fakeDeno();
  const lines: string[] = [];
  const sup = new Supervisor({
    logger: quiet,
    deno,
    graceMs: 60_000,
    write: (l) => lines.push(l),
    format: "text",
  });
  sup.add({ name: "a", command: "stubborn", args: [] });
  sup.add({ name: "b", command: "stubborn", args: [] });
  await until("both ready", () => lines.filter((l) => l.endsWith(" ready")).length === 2);
  const t0 = performance.now();
  await sup.kill();
  await sup.wait();
  assert.ok(performance.now() - t0 < 10_000, "not the 60 s grace period");
  assert.deepEqual(sup.children.map((c) => c.lastExit), [137, 137]);
  assert.deepEqual(sup.children.map((c) => c.starts), [1, 1], "no restart");
  await Deno.remove(deno.slice(0, deno.lastIndexOf("/")), { recursive: true });
});

Deno.test("supervisor: children run main.ts under their permission set with explicit paths", async () => {
  const deno = await fakeDeno();
  const lines: string[] = [];
  const sup = new Supervisor({
    logger: quiet,
    deno,
    configPath: "/p/deno.json",
    mainPath: "/p/main.ts",
    write: (l) => lines.push(l),
    format: "text",
  });
  sup.add({ name: "x", command: "args", args: ["--topic", "t"], permissionSet: "ingest" });
  await until("the argv line", () => lines.length > 0);
  await sup.stop();
  const argv = denoRunArgs("args", ["--topic", "t"], {
    permissionSet: "ingest",
    configPath: "/p/deno.json",
    mainPath: "/p/main.ts",
  });
  assert.equal(lines[0], `[x] ${argv.join(" ")}`, "the one command line builder");
  assert.deepEqual(
    argv,
    ["run", "--quiet", "--no-prompt", "-P=ingest", "--config", "/p/deno.json", "/p/main.ts"]
      .concat(["args", "--topic", "t"]),
  );
  await Deno.remove(deno.slice(0, deno.lastIndexOf("/")), { recursive: true });
  const policy = { initialMs: 1, maxMs: 1, healthyAfterMs: 1000 };
  assert.equal(nextFailures(3, 10, policy), 4, "a short run is one more failure");
  assert.equal(nextFailures(3, 1000, policy), 1, "a healthy run resets the count");
});

Deno.test("start: bad flags are rejected before any child starts, naming the flag", () => {
  const validate = (...args: string[]) => parseCommandLine(args, START_COMMAND);
  assert.throws(() => validate("--every", "soon"), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /--every "soon"/);
    return true;
  });
  assert.throws(() => validate("--schedule", "* *"), /--schedule "\* \*"/);
  assert.throws(() => validate("--source", "http://x"), /--source "http:\/\/x"/);
  assert.throws(() => validate("--partitions", "0"), /--partitions "0"/);
  validate("--every", "5s", "--trigger", "1s", "--idle-timeout", "10s", "--symbols", "A");
  const config = loadBaseConfig({ kv: ".data/k.kv", topic: "t" }, { env: () => undefined });
  const [ingest, sensor] = pipelineChildren(config, { every: "2s", "idle-timeout": "10s" });
  assert.ok(!ingest.args.includes("--kv"), "ingest does not use KV");
  assert.deepEqual(sensor.args.slice(4, 6), ["--kv", ".data/k.kv"]);
  assert.ok(sensor.args.join(" ").includes("--every 2s"));
  assert.ok(sensor.args.join(" ").includes("--idle-timeout 10s"));
});

Deno.test("status: lag counts from the stored offset, or from the earliest one", () => {
  assert.equal(partitionLag(0, 10, null), 10);
  assert.equal(partitionLag(4, 10, null), 6, "records before the earliest are gone");
  assert.equal(partitionLag(0, 10, 7), 3);
  assert.equal(partitionLag(5, 10, 2), 5, "a stored offset below the earliest");
  assert.equal(partitionLag(0, 10, 12), 0);
  assert.equal(fmtAge(850), "850ms");
  assert.equal(fmtAge(12_340), "12.3s");
  assert.equal(fmtAge(245_000), "4m05s");
  assert.equal(fmtAge(7_380_000), "2h03m");
  assert.equal(fmtInt(1234567), "1,234,567");
});

function sampleStatus(): PipelineStatus {
  return {
    at: "2026-01-01T10:07:00.000Z",
    topic: "ticks",
    kafka: { brokers: ["127.0.0.1:9092"], reachable: true },
    postgres: { url: "postgres://u:***@h/db", reachable: true },
    topicExists: true,
    partitions: [
      { partition: 0, startOffset: 0, endOffset: 10, storedOffset: 8, lag: 2, watermark: 1000 },
      { partition: 1, startOffset: 0, endOffset: 5, storedOffset: null, lag: 5, watermark: null },
    ],
    totalLag: 7,
    ticksInTopic: 15,
    deadLetters: 1,
    ingestRatePerSec: null,
    lease: {
      holder: "h",
      pid: 42,
      hostname: "box",
      acquiredAt: "2026-01-01T10:06:00.000Z",
      expiresAt: "2026-01-01T10:07:30.000Z",
      live: true,
    },
    checkpoint: null,
    progress: null,
    sensor: { lastLaunch: null, launches: 0, consecutiveFailures: 0 },
    windows: {
      total: 1,
      final: 0,
      byResolution: [{ windowMs: 300_000, total: 1, final: 0, finalThrough: null }],
      freshnessMs: 2000,
      newest: [{
        symbol: "BTC-USD",
        windowMs: 300_000,
        windowStart: "2026-01-01T10:05:00.000Z",
        open: 1,
        high: 2,
        low: 0.5,
        close: 1.5,
        avg: 1.25,
        count: 3,
        volume: 0,
        vwap: null,
        isFinal: false,
        updatedAt: "2026-01-01T10:06:58.000Z",
      }],
    },
    lateTicks: { total: 0, newest: [] },
    identityMismatch: null,
  };
}

Deno.test("demo dashboard: fits the width, shows the live facts; one line when piped", () => {
  const view = {
    status: sampleStatus(),
    elapsedMs: 12_000,
    ratePerSec: 50,
    baselineWindows: 0,
    header: {
      source: "ws://127.0.0.1:8765",
      symbols: ["BTC-USD"],
      topic: "ticks",
      logPath: ".data/demo.log",
      settings: "trigger 5s",
      until: "Ctrl-C to stop",
      resolutions: [300_000],
      watermarkDelayMs: 900_000,
    },
    color: false,
  };
  const screen = renderDashboard(view, { width: 60 });
  for (const line of screen.split("\n")) assert.ok(line.length <= 60, `too wide: ${line}`);
  assert.match(screen, /ticks in\s+15/);
  assert.match(screen, /aggregator\s+running pid 42/);
  assert.match(screen, /BTC-USD\s+10:05/, "the candle table is on screen");
  const colored = renderDashboard({ ...view, color: true }, { width: 60 });
  assert.ok(colored.includes("\x1b[1m"), "colours when asked");
  assert.equal(clip("\x1b[1mabcdef\x1b[0m", 3), "\x1b[1mabc\x1b[0m", "escapes kept, text cut");
  const line = renderSummaryLine(view);
  assert.ok(!line.includes("\n"));
  assert.match(line, /ticks 15 \(50\/s\) \| dlq 1 \| lag 7 \| aggregator running/);
});
