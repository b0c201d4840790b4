// decide(): the sensor's pure launch decision, and the crash-loop backoff.
import assert from "node:assert/strict";
import {
  backoffUntil,
  crashBackoffMs,
  type CrashState,
  decide,
  type DecideInput,
  decisionFields,
  engineMismatch,
  HEALTHY,
  nextCrashState,
} from "../../sensor/sensor.ts";
import { buildAggregateCommand } from "../../sensor/launcher.ts";

const NOW = Date.UTC(2025, 0, 2, 9, 30);

function input(over: Partial<DecideInput> = {}): DecideInput {
  return {
    now: NOW,
    partitions: [
      { partition: 1, start: 0, end: 5, stored: 5 },
      { partition: 0, start: 0, end: 10, stored: 7 },
    ],
    minNew: 1,
    lease: null,
    child: null,
    crash: HEALTHY,
    ...over,
  };
}

Deno.test("sensor decide: unread ticks and no lease -> launch, unread summed per partition", () => {
  const d = decide(input());
  assert.equal(d.kind, "launch");
  assert.equal(d.action, "launch");
  assert.equal(d.unread, 3);
  assert.deepEqual(d.perPartition.map((p) => [p.partition, p.from, p.unread]), [[0, 7, 3], [
    1,
    5,
    0,
  ]]);
});

Deno.test("sensor decide: nothing unread, or fewer than --min-new -> skip: no new data", () => {
  const caught = input({ partitions: [{ partition: 0, start: 0, end: 4, stored: 4 }] });
  assert.equal(decide(caught).kind, "no-new-data");
  assert.equal(decide(caught).action, "skip: no new data");
  assert.equal(decide(input({ minNew: 4 })).kind, "no-new-data");
  assert.equal(decide(input({ minNew: 3 })).kind, "launch");
  assert.equal(decide(input({ partitions: [] })).kind, "no-new-data", "topic without partitions");
});

Deno.test("sensor decide: no checkpoint -> read from the earliest offset; stored below log start is clamped", () => {
  const fresh = decide(input({ partitions: [{ partition: 0, start: 3, end: 10, stored: null }] }));
  assert.equal(fresh.unread, 7);
  const empty = decide(input({ partitions: [{ partition: 0, start: 0, end: 0, stored: null }] }));
  assert.equal(empty.kind, "no-new-data");
});

Deno.test("sensor decide: stored offsets outside the log -> identity mismatch, never a silent skip", () => {
  const retained = decide(input({ partitions: [{ partition: 0, start: 8, end: 10, stored: 2 }] }));
  assert.equal(retained.kind, "identity-mismatch");
  assert.match(retained.action, /stored offset 2 is below the log start 8/);
  // A recreated topic: the stored offset is beyond the new end. Before, this read "no new data".
  const ahead = decide(input({ partitions: [{ partition: 0, start: 0, end: 50, stored: 1000 }] }));
  assert.equal(ahead.kind, "identity-mismatch");
  assert.match(ahead.action, /stored offset 1000 is beyond the end offset 50.*offsets reset/);
  assert.equal(ahead.unread, 0, "never negative");
  // The aggregator's own finding (a different record at the stored offset) is reported too.
  const found = decide(input({ identityError: "partition 1: the record at offset 4 differs" }));
  assert.equal(found.kind, "identity-mismatch");
  assert.match(found.action, /record at offset 4 differs/);
  // A live lease still wins: the running aggregator reports it itself.
  const lease = { holder: "r", pid: 1, hostname: "h", acquiredAt: NOW, expiresAt: NOW + 1000 };
  assert.equal(decide(input({ lease, identityError: "x" })).kind, "lease-held");
});

Deno.test("sensor decide: open windows due for idle finalization -> a finalization run", () => {
  const caught = [{ partition: 0, start: 0, end: 4, stored: 4 }];
  assert.equal(decide(input({ partitions: caught, finalizeDueAt: NOW + 1 })).kind, "no-new-data");
  const due = decide(input({ partitions: caught, finalizeDueAt: NOW }));
  assert.equal(due.kind, "finalize");
  assert.match(due.action, /^launch: open windows are due for idle finalization since /);
  assert.equal(decide(input({ partitions: caught, finalizeDueAt: null })).kind, "no-new-data");
  // Crash-loop backoff applies to finalization runs too.
  const crash: CrashState = { consecutiveFailures: 1, lastFailureAt: NOW, lastExitCode: 1 };
  assert.equal(decide(input({ partitions: caught, finalizeDueAt: NOW, crash })).kind, "backoff");
});

Deno.test("sensor decide: open rows held back by a run that is gone -> a short run writes them", () => {
  const caught = [{ partition: 0, start: 0, end: 4, stored: 4 }];
  const held = decide(input({ partitions: caught, openRowsDeferred: true }));
  assert.equal(held.kind, "finalize");
  assert.match(held.action, /held open window rows back and stopped before writing them/);
  assert.equal(decide(input({ partitions: caught, openRowsDeferred: false })).kind, "no-new-data");
  // Not while the run that held them is alive (its lease), nor during a crash-loop backoff.
  const lease = { holder: "r", pid: 1, hostname: "h", acquiredAt: NOW, expiresAt: NOW + 1000 };
  assert.equal(
    decide(input({ partitions: caught, openRowsDeferred: true, lease })).kind,
    "lease-held",
  );
  const crash: CrashState = { consecutiveFailures: 1, lastFailureAt: NOW, lastExitCode: 1 };
  assert.equal(
    decide(input({ partitions: caught, openRowsDeferred: true, crash })).kind,
    "backoff",
  );
  // Unread records: an ordinary launch (which writes them too).
  const unread = [{ partition: 0, start: 0, end: 9, stored: 4 }];
  assert.equal(decide(input({ partitions: unread, openRowsDeferred: true })).kind, "launch");
});

Deno.test("sensor decide: windows/watermark other than the checkpoint's -> refused, or a rebuild", () => {
  const m5 = { windows: [300_000], watermarkDelayMs: 900_000 };
  const m1m5 = { windows: [60_000, 300_000], watermarkDelayMs: 900_000 };
  const engine = (stored: typeof m5 | null, wanted: typeof m5, rebuild = false) => ({
    stored,
    wanted,
    rebuild,
  });
  assert.equal(decide(input({ engine: engine(null, m1m5) })).kind, "launch", "no checkpoint yet");
  assert.equal(
    decide(input({ engine: engine(m1m5, { ...m1m5, windows: [300_000, 60_000] }) })).kind,
    "launch",
    "the same set in another order",
  );
  const caught = [{ partition: 0, start: 0, end: 4, stored: 4 }];
  const lease = { holder: "r", pid: 1, hostname: "h", acquiredAt: NOW, expiresAt: NOW + 1000 };
  // Refused before anything else but a running child of ours, even with nothing to read.
  for (const over of [{}, { partitions: caught }, { lease }, { identityError: "x" }]) {
    const d = decide(input({ ...over, engine: engine(m5, m1m5) }));
    assert.equal(d.kind, "config-mismatch", JSON.stringify(over));
    assert.equal(
      d.action,
      "refuse: the checkpoint was made with windows 5m watermark 15m, not windows 1m,5m " +
        "watermark 15m: run with the checkpoint's --windows/--watermark, or add --rebuild to " +
        "start over from the log start with the new ones (final rows and watermarks are kept)",
    );
  }
  const wm = decide(input({ engine: engine(m5, { ...m5, watermarkDelayMs: 120_000 }) }));
  assert.match(wm.action, /with windows 5m watermark 15m, not windows 5m watermark 2m/);
  const child = { pid: 9, startedAt: NOW };
  assert.equal(decide(input({ child, engine: engine(m5, m1m5) })).kind, "child-running");
  // --rebuild: a rebuild run, even with nothing unread or a recreated topic; not over a live
  // lease or during a crash-loop backoff.
  for (const over of [{}, { partitions: caught }, { identityError: "x" }]) {
    const d = decide(input({ ...over, engine: engine(m5, m1m5, true) }));
    assert.equal(d.kind, "rebuild", JSON.stringify(over));
    assert.match(d.action, /^launch: rebuild \(--rebuild\): the checkpoint was made with /);
  }
  assert.equal(decide(input({ lease, engine: engine(m5, m1m5, true) })).kind, "lease-held");
  const crash: CrashState = { consecutiveFailures: 1, lastFailureAt: NOW, lastExitCode: 1 };
  assert.equal(
    decide(input({ crash, partitions: caught, engine: engine(m5, m1m5, true) })).kind,
    "backoff",
  );
  // Same settings with --rebuild: an ordinary decision (nothing to rebuild).
  assert.equal(
    decide(input({ partitions: caught, engine: engine(m5, m5, true) })).kind,
    "no-new-data",
  );
});

Deno.test("sensor engineMismatch: null iff the same set of windows and the same watermark (random)", () => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const pick = () =>
    Array.from({ length: 1 + Math.floor(rnd() * 3) }, () =>
      [10_000, 60_000, 300_000][
        Math.floor(rnd() * 3)
      ]);
  for (let i = 0; i < 500; i++) {
    const a = { windows: pick(), watermarkDelayMs: rnd() < 0.5 ? 120_000 : 900_000 };
    const b = { windows: pick(), watermarkDelayMs: rnd() < 0.5 ? 120_000 : 900_000 };
    const same = new Set(a.windows).size === new Set(b.windows).size &&
      a.windows.every((w) => b.windows.includes(w)) && a.watermarkDelayMs === b.watermarkDelayMs;
    assert.equal(engineMismatch(a, b) === null, same, JSON.stringify([a, b]));
    assert.equal(engineMismatch(null, b), null);
  }
});

Deno.test("sensor decide: live lease -> skip naming holder and expiry; expired lease ignored", () => {
  const lease = {
    holder: "run-42",
    pid: 99,
    hostname: "box",
    acquiredAt: NOW - 5000,
    expiresAt: NOW + 25_000,
  };
  const d = decide(input({ lease }));
  assert.equal(d.kind, "lease-held");
  assert.equal(
    d.action,
    `skip: lease held by run-42 (pid 99 on box) until ${new Date(NOW + 25_000).toISOString()}`,
  );
  assert.equal(decide(input({ lease: { ...lease, expiresAt: NOW } })).kind, "launch");
  // The lease wins over "no new data": the log says why nothing happens.
  assert.equal(decide(input({ lease, minNew: 100 })).kind, "lease-held");
});

Deno.test("sensor decide: own child running -> skip: child running (before anything else)", () => {
  const d = decide(input({
    child: { pid: 1234, startedAt: NOW - 1000 },
    crash: { consecutiveFailures: 3, lastFailureAt: NOW, lastExitCode: 1 },
  }));
  assert.equal(d.kind, "child-running");
  assert.equal(d.action, "skip: child running (pid 1234)");
});

Deno.test("sensor decide: crash-loop backoff skips launches until it ends", () => {
  const crash: CrashState = {
    consecutiveFailures: 2,
    lastFailureAt: NOW - 60_000,
    lastExitCode: 1,
  };
  const backoff = { baseMs: 60_000, maxMs: 600_000 };
  const d = decide(input({ crash, backoff }));
  assert.equal(d.kind, "backoff");
  assert.equal(d.backoffUntil, NOW + 60_000);
  assert.match(d.action, /^skip: backoff after 2 failures \(last exit code 1\) until /);
  assert.equal(decide(input({ crash, backoff, now: NOW + 60_000 })).kind, "launch");
  // No new data is reported as such even during a backoff.
  assert.equal(decide(input({ crash, backoff, minNew: 50 })).kind, "no-new-data");
});

Deno.test("sensor backoff: doubles per consecutive failure, capped; 0 when healthy", () => {
  const o = { baseMs: 1000, maxMs: 10_000 };
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 100].map((n) => crashBackoffMs(n, o)),
    [0, 1000, 2000, 4000, 8000, 10_000, 10_000],
  );
  assert.equal(crashBackoffMs(1), 60_000, "default base = one check at the default schedule");
  assert.equal(backoffUntil(HEALTHY), null);
  assert.equal(
    backoffUntil({ consecutiveFailures: 3, lastFailureAt: 100, lastExitCode: 1 }, o),
    4100,
  );
});

Deno.test("sensor backoff: exit 0 resets, exit 3 is not a failure, other codes count up", () => {
  let s = nextCrashState(HEALTHY, 1, 10);
  assert.deepEqual(s, { consecutiveFailures: 1, lastFailureAt: 10, lastExitCode: 1 });
  s = nextCrashState(s, 137, 20);
  assert.deepEqual(s, { consecutiveFailures: 2, lastFailureAt: 20, lastExitCode: 137 });
  assert.deepEqual(nextCrashState(s, 3, 30), s, "lease held elsewhere: unchanged");
  assert.deepEqual(nextCrashState(s, 2, 40).consecutiveFailures, 3, "config error counts");
  assert.deepEqual(nextCrashState(s, 0, 50), HEALTHY);
});

Deno.test("sensor decisionFields: one line with partitions, end and stored offsets, lease", () => {
  const i = input({
    partitions: [{ partition: 1, start: 0, end: 5, stored: null }, {
      partition: 0,
      start: 0,
      end: 9,
      stored: 9,
    }],
  });
  const f = decisionFields(i, decide(i));
  assert.deepEqual(f, {
    partitions: "0,1",
    end: "9,5",
    stored: "9,-",
    unread: 5,
    minNew: 1,
    lease: "none",
    failures: 0,
  });
});

Deno.test("sensor launcher: deno by name, -P=aggregate with derived lists, abs config/main, DATABASE_URL only in env", () => {
  const url = "postgres://u:s3cret@db:5432/x";
  const base = {
    brokers: ["a:1", "b:2"],
    databaseUrl: url,
    topic: "t",
    kvPath: ".data/x.kv",
    configPath: "/repo/deno.json",
    mainPath: "/repo/main.ts",
    execPath: "/opt/bin/tickpipe-sensor",
  };
  const c = buildAggregateCommand({
    ...base,
    standalone: false,
    aggregatorArgs: ["--trigger", "1s", "--idle-timeout", "3s"],
  });
  assert.equal(c.command, "deno");
  assert.deepEqual(c.args, [
    "run",
    "--quiet",
    "--no-prompt",
    "-P=aggregate",
    // Exactly its configuration's hosts and paths (common/permissions.ts).
    "--allow-net=a:1,b:2,db:5432",
    "--allow-read=.data,/repo/sql",
    "--allow-write=.data",
    "--config",
    "/repo/deno.json",
    "/repo/main.ts",
    "aggregate",
    "--brokers",
    "a:1,b:2",
    "--topic",
    "t",
    "--kv",
    ".data/x.kv",
    "--trigger",
    "1s",
    "--idle-timeout",
    "3s",
  ]);
  assert.ok(!c.args.some((a) => a.includes("s3cret") || a === "-A"));
  assert.deepEqual(c.env, { DATABASE_URL: url });
  const s = buildAggregateCommand({
    ...base,
    standalone: true,
    aggregatorArgs: ["--windows", "1m,5m", "--idle-finalize", "0"],
  });
  assert.equal(s.command, "/opt/bin/tickpipe-aggregate");
  assert.deepEqual(s.args.slice(-4), ["--windows", "1m,5m", "--idle-finalize", "0"]);
  assert.deepEqual(s.args.slice(0, 3), ["aggregate", "--brokers", "a:1,b:2"]);
});

Deno.test("sensor kv: the sensor's keys are the aggregator's (KV layout contract)", async () => {
  const agg = await import("../../aggregate/kv_layout.ts");
  const mine = await import("../../sensor/_kv.ts");
  assert.equal(mine.KV_PREFIX, agg.KV_PREFIX);
  assert.deepEqual(mine.leaseKey("t"), agg.leaseKey("t"));
  assert.deepEqual(mine.checkpointKey("t"), agg.checkpointKey("t"));
  assert.deepEqual(mine.progressKey("t"), agg.progressKey("t"));
});
