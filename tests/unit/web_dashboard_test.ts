// The web dashboard's pure parts: snapshot diffs applied by the page equal the next snapshot
// (randomized, against the plain oracle "the page ends up holding `next`"), the chart data
// (final candles solid, open ones hollow, gaps grey), the process states, the flags (a
// non-loopback bind needs a token), the access rules, the permission lists, the child spec.
import assert from "node:assert/strict";
import {
  applyUpdate,
  chartData,
  COLORS,
  diffSnapshots,
  fmtPrice,
  fmtResolution,
  UpdateMismatchError,
} from "../../pipeline/web/static/model.js";
import type {
  CandleView,
  DashboardSnapshot,
  ProcessView,
  SeriesView,
} from "../../pipeline/web/types.ts";
import {
  aggregatorView,
  parseProcessLine,
  processLine,
  ProcessTracker,
} from "../../pipeline/web/processes.ts";
import { buildSymbols, type CandleRow } from "../../pipeline/web/data.ts";
import { checkAccess, sseEvent, TOKEN_COOKIE, tokenMatches } from "../../pipeline/web/server.ts";
import {
  DASHBOARD_FLAGS,
  resolveDashboardSettings as resolveSettings,
} from "../../common/dashboard_flags.ts";
import { type RawValues, resolveOptions } from "../../common/options.ts";
import { parseCommandLine } from "../../common/cli.ts";
import { START_COMMAND } from "../../pipeline/options.ts";
import { ConfigError } from "../../common/config.ts";
import { launchFlags } from "../../common/permissions.ts";
import { pipelineChildren } from "../../pipeline/start_main.ts";
import type { PipelineStatus } from "../../pipeline/status.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

// ---------------------------------------------------------------------------------------------
// Random snapshots and their successors.

function randomCandle(rnd: () => number, t: number): CandleView {
  const o = 100 + Math.floor(rnd() * 100) / 4;
  const c = 100 + Math.floor(rnd() * 100) / 4;
  const filled = rnd() < 0.15;
  const v = filled || rnd() < 0.3 ? 0 : Math.floor(rnd() * 1000);
  return {
    t,
    o: filled ? c : o,
    h: Math.max(o, c) + (filled ? 0 : 1),
    l: Math.min(o, c) - (filled ? 0 : 1),
    c,
    n: filled ? 0 : 1 + Math.floor(rnd() * 50),
    v,
    vwap: v === 0 ? null : (o + c) / 2,
    final: rnd() < 0.6,
    filled,
  };
}

function randomSeries(rnd: () => number, windowMs: number, start: number): SeriesView {
  const len = Math.floor(rnd() * 8);
  const candles = Array.from({ length: len }, (_, i) => randomCandle(rnd, start + i * windowMs));
  return {
    windowMs,
    candles,
    late: Math.floor(rnd() * 5),
    lateByWindow: candles.filter(() => rnd() < 0.2).map((c) => [c.t, 1 + Math.floor(rnd() * 3)]),
  };
}

function randomProcess(rnd: () => number, name: string): ProcessView {
  return {
    name,
    state: rnd() < 0.5 ? "running" : "restarting",
    pid: Math.floor(rnd() * 1000),
    since: Math.floor(rnd() * 1e6),
    starts: Math.floor(rnd() * 3),
    lastExit: rnd() < 0.5 ? null : 1,
    detail: `d${Math.floor(rnd() * 9)}`,
  };
}

function randomSnapshot(rnd: () => number, at: number): DashboardSnapshot {
  const resolutions = rnd() < 0.5 ? [60_000] : [60_000, 300_000];
  const symbols = ["AAA", "BBB", "CCC"].slice(0, 1 + Math.floor(rnd() * 3)).map((symbol) => ({
    symbol,
    lastClose: rnd() < 0.2 ? null : 100 + rnd(),
    lastStart: rnd() < 0.2 ? null : at,
    late: Math.floor(rnd() * 4),
    series: resolutions.map((r) => randomSeries(rnd, r, 1_700_000_000_000)),
  }));
  return {
    v: 1,
    at,
    topic: "ticks",
    resolutions,
    symbols,
    partitions: [{ partition: 0, endOffset: 10, storedOffset: 5, lag: 5, watermark: at - 900 }],
    processes: [randomProcess(rnd, "ingest"), randomProcess(rnd, "aggregator")],
    pipeline: {
      ticksInTopic: Math.floor(rnd() * 1000),
      ratePerSec: null,
      deadLetters: 0,
      totalLag: 5,
      lastTrigger: null,
      checkpointAt: null,
      kafka: { reachable: true, error: null },
      postgres: { reachable: true, error: null },
    },
  };
}

/** A successor the way the data moves: candles change, new ones arrive, the range slides. */
function evolve(rnd: () => number, prev: DashboardSnapshot, at: number): DashboardSnapshot {
  const next: DashboardSnapshot = structuredClone(prev);
  next.at = at;
  next.pipeline.ticksInTopic += Math.floor(rnd() * 100);
  next.processes = next.processes.map((p) => rnd() < 0.3 ? randomProcess(rnd, p.name) : p);
  for (const s of next.symbols) {
    for (const series of s.series) {
      const cs = series.candles;
      // Change some candles in place (an open window moves, one turns final).
      for (let i = 0; i < cs.length; i++) {
        if (rnd() < 0.3) cs[i] = { ...randomCandle(rnd, cs[i].t) };
      }
      // New windows arrive.
      const add = Math.floor(rnd() * 3);
      for (let i = 0; i < add; i++) {
        const t = cs.length ? cs[cs.length - 1].t + series.windowMs : 1_700_000_000_000;
        cs.push(randomCandle(rnd, t));
      }
      // The range slides (at most `bars` candles are kept).
      const bars = 6;
      if (cs.length > bars) cs.splice(0, cs.length - bars);
      series.late += rnd() < 0.2 ? 1 : 0;
      series.lateByWindow = cs.filter(() => rnd() < 0.2).map((c) => [c.t, 1]);
    }
    s.lastClose = rnd() < 0.5 ? s.lastClose : 100 + rnd();
    s.late += rnd() < 0.2 ? 1 : 0;
  }
  return next;
}

Deno.test("dashboard model: an applied diff gives exactly the next snapshot (random)", () => {
  let diffs = 0;
  let wholes = 0;
  for (let seed = 1; seed <= 400; seed++) {
    const rnd = prng(seed);
    let page = randomSnapshot(rnd, 1000);
    let server = page;
    for (let step = 1; step <= 12; step++) {
      // Mostly evolutions; now and then an unrelated snapshot (other symbols or resolutions).
      const next = rnd() < 0.1
        ? randomSnapshot(rnd, 1000 + step)
        : evolve(rnd, server, 1000 + step);
      const update = diffSnapshots(server, next);
      if (update === null) {
        wholes++;
        page = structuredClone(next);
      } else {
        diffs++;
        // What goes over the wire: JSON.
        page = applyUpdate(page, JSON.parse(JSON.stringify(update)));
      }
      assert.deepEqual(page, next, `seed ${seed} step ${step}`);
      server = next;
    }
  }
  assert.ok(diffs > 3000 && wholes > 100, `both paths exercised: ${diffs} diffs, ${wholes} wholes`);
});

Deno.test("dashboard model: a diff carries only changed candles and drops slid-out ones", () => {
  const rnd = prng(7);
  const prev = randomSnapshot(rnd, 1);
  prev.resolutions = [60_000];
  prev.symbols = [{
    symbol: "AAA",
    lastClose: 1,
    lastStart: 0,
    late: 0,
    series: [{
      windowMs: 60_000,
      candles: [0, 1, 2].map((i) => randomCandle(rnd, i * 60_000)),
      late: 0,
      lateByWindow: [],
    }],
  }];
  const next = structuredClone(prev);
  next.at = 2;
  const cs = next.symbols[0].series[0].candles;
  cs[2] = { ...cs[2], c: cs[2].c + 1, final: true };
  cs.push(randomCandle(rnd, 3 * 60_000));
  cs.shift();
  const u = diffSnapshots(prev, next)!;
  assert.deepEqual(u.symbols[0].series[0].upsert.map((c) => c.t), [120_000, 180_000]);
  assert.equal(u.symbols[0].series[0].from, 60_000);
  assert.equal(u.base, 1);
  // A candle missing inside the new range: only a whole snapshot can say it.
  const hole = structuredClone(prev);
  hole.at = 3;
  hole.symbols[0].series[0].candles.splice(1, 1);
  assert.equal(diffSnapshots(prev, hole), null);
  // Applying to another snapshot is refused (the page then reconnects).
  assert.throws(
    () => applyUpdate({ ...prev, at: 99 }, u),
    (e) =>
      e instanceof UpdateMismatchError &&
      /Update for snapshot 1 applied to snapshot 99/.test(e.message),
  );
});

Deno.test("dashboard model: final candles are solid, open ones hollow, gaps grey", () => {
  const series: SeriesView = {
    windowMs: 60_000,
    candles: [
      { t: 60_000, o: 1, h: 3, l: 1, c: 2, n: 5, v: 10, vwap: 1.5, final: true, filled: false },
      { t: 120_000, o: 2, h: 2, l: 2, c: 2, n: 0, v: 0, vwap: null, final: true, filled: true },
      { t: 180_000, o: 3, h: 3, l: 1, c: 1, n: 2, v: 0, vwap: null, final: false, filled: false },
    ],
    late: 4,
    lateByWindow: [[0, 2], [120_000, 3]],
  };
  const d = chartData(series);
  assert.deepEqual(d.candles.map((c) => c.time), [60, 120, 180]);
  assert.deepEqual(d.candles.map((c) => [c.color, c.borderColor]), [
    [COLORS.up, COLORS.up], // final, rising: solid
    [COLORS.hollow, COLORS.gap], // a filled gap: grey outline
    [COLORS.hollow, COLORS.down], // open, falling: hollow
  ]);
  assert.deepEqual(d.vwap, [{ time: 60, value: 1.5 }, { time: 120 }, { time: 180 }]);
  assert.deepEqual(d.volume.map((v) => v.value), [10, 0, 0]);
  // The marker before the first candle is outside the chart: left out.
  assert.deepEqual(d.markers.map((m) => [m.time, m.text, m.color]), [[120, "3", COLORS.late]]);
  assert.equal(fmtPrice(187.2), "187.2");
  assert.equal(fmtPrice(63215.125), "63215.13");
  assert.equal(fmtPrice(1.08345), "1.08345");
  assert.equal(fmtPrice(null), "-");
  assert.deepEqual([60_000, 300_000, 3_600_000, 30_000, 250].map(fmtResolution), [
    "1m",
    "5m",
    "1h",
    "30s",
    "250ms",
  ]);
});

Deno.test("dashboard data: rows become one chart per resolution, last close at the smallest", () => {
  const c = (t: number, close: number, filled = false): CandleView => ({
    t,
    o: close,
    h: close,
    l: close,
    c: close,
    n: filled ? 0 : 1,
    v: 0,
    vwap: null,
    final: false,
    filled,
  });
  const rows: CandleRow[] = [
    { symbol: "B", windowMs: 300_000, candle: c(300_000, 7) },
    { symbol: "A", windowMs: 60_000, candle: c(120_000, 3, true) },
    { symbol: "A", windowMs: 60_000, candle: c(60_000, 2) },
    { symbol: "A", windowMs: 300_000, candle: c(0, 9) },
  ];
  const views = buildSymbols(["A", "B", "C"], [60_000, 300_000], {
    candles: rows,
    late: [
      { symbol: "A", windowMs: 60_000, t: 0, n: 4 },
      { symbol: "A", windowMs: 60_000, t: 60_000, n: 1 },
    ],
    lateTotals: new Map([["A", 5]]),
  });
  assert.deepEqual(views.map((v) => v.symbol), ["A", "B", "C"]);
  const a = views[0];
  assert.deepEqual(a.series.map((s) => s.windowMs), [60_000, 300_000]);
  assert.deepEqual(a.series[0].candles.map((x) => x.t), [60_000, 120_000], "sorted");
  // The last real window, not the filled gap after it.
  assert.equal(a.lastClose, 2);
  assert.equal(a.lastStart, 60_000);
  assert.equal(a.series[0].late, 5);
  assert.deepEqual(a.series[0].lateByWindow, [[60_000, 1]], "within the chart's range");
  assert.equal(a.late, 5);
  // B has no 1-minute window: its last close comes from the next resolution.
  assert.equal(views[1].lastClose, 7);
  assert.deepEqual(views[2].series.map((s) => s.candles.length), [0, 0]);
  assert.equal(views[2].lastClose, null);
});

Deno.test("dashboard processes: supervisor events become states", () => {
  const t = new ProcessTracker();
  t.track("simulate", { restart: false });
  t.track("ingest");
  assert.deepEqual(t.list().map((p) => p.state), ["starting", "starting"]);
  t.apply({ kind: "started", child: "ingest", pid: 11, start: 1 }, 1000);
  t.apply({ kind: "started", child: "simulate", pid: 10, start: 1 }, 1000);
  t.apply({ kind: "exited", child: "ingest", pid: 11, code: 1, signal: null }, 2000);
  let [sim, ing] = t.list();
  assert.equal(ing.state, "restarting");
  assert.equal(ing.lastExit, 1);
  assert.match(ing.detail, /exit 1: restarting/);
  t.apply({ kind: "started", child: "ingest", pid: 12, start: 2 }, 2500);
  t.apply({ kind: "exited", child: "simulate", pid: 10, code: 0, signal: null }, 2600);
  [sim, ing] = t.list();
  assert.deepEqual([ing.state, ing.pid, ing.starts, ing.since], ["running", 12, 2, 2500]);
  assert.match(ing.detail, /restarted \(1x\)/);
  assert.equal(sim.state, "exited", "not restarted: exited");
  t.apply({ kind: "fatal", child: "sensor", reason: "sensor rejected its flags (exit 2)" }, 3000);
  t.stopping(4000);
  t.apply({ kind: "exited", child: "ingest", pid: 12, code: 0, signal: "SIGTERM" }, 4100);
  const byName = Object.fromEntries(t.list().map((p) => [p.name, p]));
  assert.equal(byName.ingest.state, "stopped");
  assert.equal(byName.sensor.state, "failed");
  assert.equal(byName.sensor.detail, "sensor rejected its flags (exit 2)");
  // The line sent to the dashboard child round-trips; anything else is ignored.
  assert.deepEqual(parseProcessLine(processLine(t.list())), t.list());
  for (const bad of ["", "nope", "{}", '{"processes":[{"name":1}]}', "[]"]) {
    assert.equal(parseProcessLine(bad), null, bad);
  }
});

Deno.test("dashboard processes: the aggregator from its lease and progress", () => {
  const base = {
    lease: null,
    progress: null,
    sensor: { lastLaunch: null, launches: 0, consecutiveFailures: 0 },
  } as unknown as PipelineStatus;
  assert.equal(aggregatorView(base, 0).state, "idle");
  const running = {
    ...base,
    lease: {
      holder: "h",
      pid: 42,
      hostname: "x",
      acquiredAt: new Date(1000).toISOString(),
      expiresAt: new Date(50_000).toISOString(),
      live: true,
    },
    progress: {
      batchId: 3,
      reason: "interval",
      timestamp: new Date(9000).toISOString(),
      inputRows: 7,
      windowsUpdated: 2,
      windowsFinalized: 1,
    },
    sensor: { lastLaunch: null, launches: 2, consecutiveFailures: 0 },
  } as unknown as PipelineStatus;
  const v = aggregatorView(running, 10_000);
  assert.deepEqual([v.state, v.pid, v.since, v.starts], ["running", 42, 1000, 2]);
  assert.equal(v.detail, "batch 3 (interval) 1s ago: 7 rows, 2 updated, 1 final");
  const expired = { ...running, lease: { ...running.lease!, live: false } };
  assert.equal(aggregatorView(expired, 60_000).state, "lease expired");
});

/** The dashboard settings of flags as given, parsed by their table rows as every command does. */
function resolveDashboardSettings(
  given: RawValues,
  options?: { env?: (name: string) => string | undefined },
) {
  return resolveSettings(resolveOptions(DASHBOARD_FLAGS, given), options);
}

Deno.test("dashboard flags: loopback by default, a token for anything else", () => {
  const env = (vars: Record<string, string>) => ({ env: (n: string) => vars[n] });
  assert.deepEqual(resolveDashboardSettings({}), {
    port: 8080,
    hostname: "127.0.0.1",
    token: null,
  });
  assert.equal(resolveDashboardSettings({ "dashboard-port": "0" }).port, 0);
  assert.equal(resolveDashboardSettings({ "dashboard-host": "[::1]" }).hostname, "::1");
  const secret = "s3cret-token-0123456789";
  for (const host of ["0.0.0.0", "192.168.1.20", "dash.example"]) {
    assert.throws(
      () => resolveDashboardSettings({ "dashboard-host": host }),
      (e) =>
        e instanceof ConfigError &&
        e.message.includes(`--dashboard-host "${host}" is not a loopback address`) &&
        e.message.includes("TICKPIPE_DASHBOARD_TOKEN"),
    );
    assert.equal(
      resolveDashboardSettings(
        { "dashboard-host": host },
        env({ TICKPIPE_DASHBOARD_TOKEN: secret }),
      )
        .token,
      secret,
    );
  }
  // Port 0 binds nothing: no token needed whatever the host.
  assert.equal(
    resolveDashboardSettings({ "dashboard-host": "0.0.0.0", "dashboard-port": "0" }).port,
    0,
  );
  // The flag wins; a weak token is refused without being shown.
  assert.equal(
    resolveDashboardSettings(
      { "dashboard-token": "flag-token-abcdefghijk" },
      env({ TICKPIPE_DASHBOARD_TOKEN: secret }),
    ).token,
    "flag-token-abcdefghijk",
  );
  assert.throws(
    () => resolveDashboardSettings({}, env({ TICKPIPE_DASHBOARD_TOKEN: "short1" })),
    (e) =>
      e instanceof ConfigError && /TICKPIPE_DASHBOARD_TOKEN is too weak/.test(e.message) &&
      !e.message.includes("short1"),
  );
  for (const weak of ["short-flag-1", "sixteen chars ok!"]) {
    assert.throws(
      () => resolveDashboardSettings({ "dashboard-token": weak }),
      (e) =>
        e instanceof ConfigError && /--dashboard-token is too weak/.test(e.message) &&
        !e.message.includes(weak),
    );
  }
  assert.throws(
    () => resolveDashboardSettings({ "dashboard-port": "80800" }),
    /--dashboard-port "80800" is not a port/,
  );
  assert.throws(
    () => resolveDashboardSettings({ "dashboard-host": "a b" }),
    /--dashboard-host "a b" is not a host/,
  );
});

Deno.test("dashboard access: loopback host names without a token; the token otherwise", () => {
  const req = (url: string, headers: Record<string, string> = {}) => new Request(url, { headers });
  // No token: loopback Host headers only (DNS rebinding).
  assert.ok(checkAccess(req("http://127.0.0.1:8080/", { host: "127.0.0.1:8080" }), null).ok);
  assert.ok(checkAccess(req("http://localhost:8080/", { host: "localhost:8080" }), null).ok);
  assert.ok(checkAccess(req("http://[::1]:8080/", { host: "[::1]:8080" }), null).ok);
  const evil = checkAccess(req("http://evil.example:8080/", { host: "evil.example:8080" }), null);
  assert.ok(!evil.ok && evil.response.status === 403);

  const token = "tok-0123456789abcdef";
  const none = checkAccess(req("http://10.0.0.5:8080/events"), token);
  assert.ok(!none.ok && none.response.status === 401);
  assert.match(none.response.headers.get("www-authenticate")!, /^Bearer/);
  const wrong = checkAccess(req("http://h/", { authorization: `Bearer ${token}x` }), token);
  assert.ok(!wrong.ok && wrong.response.status === 401);
  assert.ok(checkAccess(req("http://h/", { authorization: `Bearer ${token}` }), token).ok);
  assert.ok(
    checkAccess(req("http://h/", { cookie: `a=b; ${TOKEN_COOKIE}=${token}` }), token).ok,
  );
  // ?token= once: a redirect that sets the cookie and leaves the token out of the address.
  const q = checkAccess(req(`http://h/?x=1&token=${token}`), token);
  assert.ok(!q.ok);
  assert.equal(q.response.status, 303);
  assert.equal(q.response.headers.get("location"), "/?x=1");
  const cookie = q.response.headers.get("set-cookie")!;
  assert.match(cookie, new RegExp(`^${TOKEN_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict$`));
  const badQ = checkAccess(req(`http://h/?token=nope`), token);
  assert.ok(!badQ.ok && badQ.response.status === 401);
  assert.ok(tokenMatches(token, token) && !tokenMatches("", token) && !tokenMatches(null, token));
  // One server-sent event per line pair.
  assert.equal(
    new TextDecoder().decode(sseEvent({ kind: "problem", data: { at: 1, message: "x" } })),
    'event: problem\ndata: {"at":1,"message":"x"}\n\n',
  );
});

Deno.test("dashboard permissions: start and demo may bind it, the dashboard child reads", () => {
  const lists = (flags: string[]) =>
    Object.fromEntries(flags.map((f) => {
      const m = /^--allow-(\w+)=(.*)$/.exec(f)!;
      return [m[1], m[2].split(",").sort()];
    }));
  const env = () => undefined;
  assert.ok(lists(launchFlags("start", [], { env })).net.includes("127.0.0.1:8080"));
  assert.ok(
    !lists(launchFlags("start", ["--dashboard-port", "0"], { env })).net.some((n: string) =>
      n.endsWith(":8080")
    ),
  );
  assert.deepEqual(
    lists(
      launchFlags("start", [
        "--dashboard-port",
        "9999",
        "--dashboard-host",
        "::1",
        "--metrics-port",
        "0",
      ], { env }),
    ).net,
    ["[::1]:9999"],
    "start reaches nothing but the addresses it serves",
  );
  assert.ok(
    lists(launchFlags("demo", ["--dashboard-port=8181"], { env })).net.includes("127.0.0.1:8181"),
  );
  const d = lists(launchFlags("dashboard", ["--kv", "/srv/kv/x.kv"], { env, root: "/repo/" }));
  assert.deepEqual(d.net, ["127.0.0.1:5432", "127.0.0.1:8080", "127.0.0.1:9092"]);
  assert.deepEqual(d.read, ["/repo/pipeline/web", "/srv/kv"]);
  assert.deepEqual(d.write, ["/srv/kv"]);
});

Deno.test("dashboard child: start's spec keeps secrets out of argv and pipes stdin", () => {
  const config = {
    brokers: ["127.0.0.1:9092"],
    databaseUrl: "postgres://u:pw@127.0.0.1:5432/db",
    topic: "t1",
    kvPath: ".data/x.kv",
  };
  const token = "tok-0123456789abcdef";
  const none = pipelineChildren(config, {});
  assert.deepEqual(none.map((c) => c.name), ["ingest", "sensor"]);
  const off = pipelineChildren(config, {}, {
    dashboard: { port: 0, hostname: "127.0.0.1", token: null },
  });
  assert.deepEqual(off.map((c) => c.name), ["ingest", "sensor"]);
  const [, , dash] = pipelineChildren(config, { symbols: "A,B" }, {
    dashboard: { port: 8181, hostname: "0.0.0.0", token, refresh: "2s" },
  });
  assert.equal(dash.command, "dashboard");
  assert.equal(dash.stdin, "piped");
  assert.deepEqual(dash.args, [
    "--brokers",
    "127.0.0.1:9092",
    "--topic",
    "t1",
    "--kv",
    ".data/x.kv",
    "--dashboard-port",
    "8181",
    "--dashboard-host",
    "0.0.0.0",
    "--supervised",
    "--symbols",
    "A,B",
    "--refresh",
    "2s",
  ]);
  assert.ok(!dash.args.join(" ").includes(token) && !dash.args.join(" ").includes("pw"));
  assert.deepEqual(dash.env, {
    DATABASE_URL: config.databaseUrl,
    TICKPIPE_DASHBOARD_TOKEN: token,
  });
  // From start's own command line, through its table (the one way flags are read): the default
  // dashboard on 127.0.0.1:8080, none with --dashboard-port 0, the token only in the child's env.
  const fromStart = (args: string[], vars: Record<string, string> = {}) => {
    const line = parseCommandLine(args, START_COMMAND);
    const dashboard = resolveSettings(line.options, { env: (n) => vars[n] });
    return pipelineChildren(config, line.given, { dashboard }).find((c) => c.name === "dashboard");
  };
  const byDefault = fromStart([])!;
  assert.deepEqual(byDefault.args.slice(6, 10), [
    "--dashboard-port",
    "8080",
    "--dashboard-host",
    "127.0.0.1",
  ]);
  assert.equal(fromStart(["--dashboard-port", "0"]), undefined);
  const tokened = fromStart(["--dashboard-host", "0.0.0.0", "--symbols", "Q"], {
    TICKPIPE_DASHBOARD_TOKEN: token,
  })!;
  assert.ok(tokened.args.join(" ").endsWith("--symbols Q"));
  assert.equal(tokened.env?.TICKPIPE_DASHBOARD_TOKEN, token);
  assert.ok(!tokened.args.includes(token));
  assert.throws(() => fromStart(["--dashboard-host", "0.0.0.0"]), /is not a loopback address/);
});
