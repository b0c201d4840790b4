// Prometheus metrics, in process: flag parsing against an oracle, the /metrics endpoint
// (scraped over HTTP and read with a real parser of the text format), the ingest, sensor and
// aggregator instruments against simple oracles, and start's merge of several endpoints.
import assert from "node:assert/strict";
import { ConfigError } from "../../common/config.ts";
import {
  createRegistry,
  durationBuckets,
  MetricsServerError,
  Registry,
  serveMetrics,
} from "../../common/metrics.ts";
import { hostPort, parseMetricsHost, parseMetricsPort } from "../../common/metrics_flags.ts";
import { createIngestMetrics } from "../../ingest/metrics.ts";
import type { IngestStats } from "../../ingest/ingest.ts";
import type { OutRecord } from "../../ingest/producer.ts";
import { createSensorMetrics, exitOutcome } from "../../sensor/metrics.ts";
import type { CheckResult, Sensor } from "../../sensor/run.ts";
import type { Decision, DecisionKind } from "../../sensor/sensor.ts";
import type { RunningChild } from "../../sensor/launcher.ts";
import {
  createAggregatorMetrics,
  meteredProgressWriter,
  type TriggerProgress,
} from "../../aggregate/metrics.ts";
import { childMetricsTargets, mergedMetricsSource } from "../../pipeline/metrics.ts";
import { pipelineChildren } from "../../pipeline/start_main.ts";
import { parseCommandLine } from "../../common/cli.ts";
import { START_COMMAND } from "../../pipeline/options.ts";
import { buildAggregateCommand } from "../../sensor/launcher.ts";
import { loadBaseConfig } from "../../common/config.ts";
import { mulberry32 } from "../../common/prng.ts";
import {
  family,
  histogram,
  parseScrape,
  sampleSum,
  sampleValue,
  scrape,
} from "../_helpers/prom_text.ts";

async function parseRegistry(registry: Registry) {
  return parseScrape(await registry.metrics());
}

Deno.test("metrics flags: ports and hosts are parsed like a simple oracle says", () => {
  const rand = mulberry32(15);
  const candidates = ["0", "1", "65535", "65536", "-1", "08", " 80", "1e3", "9490", "", "x", "3.5"];
  for (let i = 0; i < 300; i++) {
    candidates.push(String(Math.floor(rand() * 70_000)));
  }
  for (const v of candidates) {
    for (const allowZero of [false, true]) {
      const n = Number(v);
      const ok = /^\s*\d{1,5}\s*$/.test(v) && n >= (allowZero ? 0 : 1) && n <= 65535;
      if (ok) assert.equal(parseMetricsPort(v, { allowZero }), n, v);
      else {
        assert.throws(() => parseMetricsPort(v, { allowZero }), (e: Error) => {
          assert.ok(e instanceof ConfigError, "exit 2");
          assert.ok(e.message.startsWith(`--metrics-port "${v}" is not a port`), e.message);
          return true;
        });
      }
    }
  }
  assert.equal(parseMetricsPort(undefined), undefined);
  assert.equal(parseMetricsHost(undefined), "127.0.0.1");
  assert.equal(parseMetricsHost("[::1]"), "::1");
  assert.equal(parseMetricsHost("0.0.0.0"), "0.0.0.0");
  assert.equal(parseMetricsHost("metrics.local"), "metrics.local");
  assert.throws(() => parseMetricsHost("a b"), /--metrics-host "a b" is not a host/);
  assert.throws(() => parseMetricsHost("http://x"), /is not a host/);
  assert.equal(hostPort("::1", 9490), "[::1]:9490");
  assert.deepEqual(childMetricsTargets(9490).map((t) => [t.component, t.port]), [
    ["ingest", 9491],
    ["sensor", 9492],
    ["aggregate", 9493],
  ]);
  assert.throws(() => childMetricsTargets(65533), /no room for the children's ports/);
  assert.deepEqual(durationBuckets(0.01, 1), [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]);
  assert.deepEqual(durationBuckets(0.003, 30), [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    25,
  ]);
});

Deno.test("start gives its children the metrics ports P+1..P+3, and none when P is 0", () => {
  const config = loadBaseConfig({ kv: ".data/k.kv", topic: "t" }, { env: () => undefined });
  const flag = (args: string[], name: string) => {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args[i + 1];
  };
  const [ingest, sensor] = pipelineChildren(config, {}, { metricsPort: 9490 });
  assert.equal(flag(ingest.args, "--metrics-port"), "9491");
  assert.equal(flag(sensor.args, "--metrics-port"), "9492");
  assert.equal(flag(sensor.args, "--aggregate-metrics-port"), "9493");
  const [i2, s2] = pipelineChildren(config, {}, { metricsPort: 20_000 });
  assert.deepEqual(
    [flag(i2.args, "--metrics-port"), flag(s2.args, "--metrics-port")],
    ["20001", "20002"],
  );
  for (
    const off of [pipelineChildren(config, {}, { metricsPort: 0 }), pipelineChildren(config, {})]
  ) {
    for (const c of off) assert.ok(!c.args.join(" ").includes("metrics"), c.args.join(" "));
  }
  assert.throws(
    () => parseCommandLine(["--metrics-port", "65533"], START_COMMAND),
    /leaves no room/,
  );
  assert.equal(parseCommandLine([], START_COMMAND).options["metrics-port"], 9490, "the default");
  const cmd = (metricsPort?: number) =>
    buildAggregateCommand({
      brokers: ["a:1"],
      databaseUrl: "postgres://u:p@h/d",
      topic: "t",
      kvPath: ".data/x.kv",
      configPath: "/r/deno.json",
      mainPath: "/r/main.ts",
      execPath: "",
      standalone: false,
      metricsPort,
    }).args;
  assert.deepEqual(cmd(9493).slice(-2), ["--metrics-port", "9493"]);
  assert.ok(!cmd().includes("--metrics-port"));
});

Deno.test("metrics endpoint: /metrics in text format, process metrics, 404/405, port taken = exit 2", async () => {
  const registry = createRegistry("unit");
  const server = serveMetrics(registry, { port: 0 });
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const fams = await scrape(server.url);
    const cpu = family(fams, "process_cpu_seconds_total", "COUNTER");
    assert.deepEqual(cpu.metrics[0].labels, { component: "unit" });
    assert.ok(sampleValue(fams, "process_cpu_seconds_total", { component: "unit" }) > 0);
    const rss = sampleValue(fams, "process_resident_memory_bytes", { component: "unit" });
    assert.ok(rss > 10 * 1024 * 1024, `rss ${rss} is a real resident size`);
    const start = sampleValue(fams, "process_start_time_seconds", { component: "unit" });
    assert.ok(Math.abs(start - performance.timeOrigin / 1000) < 1, "start time");
    // CPU time only grows.
    const t0 = performance.now();
    while (performance.now() - t0 < 30) Math.sqrt(Math.random());
    const again = await scrape(server.url);
    assert.ok(
      sampleValue(again, "process_cpu_seconds_total", { component: "unit" }) >
        sampleValue(fams, "process_cpu_seconds_total", { component: "unit" }),
    );
    const base = server.url.replace(/\/metrics$/, "");
    const nf = await fetch(`${base}/nope`);
    assert.equal(nf.status, 404);
    await nf.body?.cancel();
    const post = await fetch(server.url, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
    const json = await (await fetch(`${base}/metrics.json`)).json();
    assert.ok(Array.isArray(json) && json.some((m) => m.name === "process_resident_memory_bytes"));

    // The same port again: a clear error naming the address, exit 2 (a ConfigError).
    assert.throws(() => serveMetrics(registry, { port: server.port }), (e: Error) => {
      assert.ok(e instanceof MetricsServerError && e instanceof ConfigError);
      assert.equal(
        e.message,
        `Metrics port 127.0.0.1:${server.port} is already in use: choose a free one with ` +
          `--metrics-port (or stop the process listening there)`,
      );
      return true;
    });
    assert.throws(
      () => serveMetrics(registry, { port: 0, hostname: "192.0.2.1" }),
      (e: Error) =>
        e instanceof MetricsServerError && /Cannot serve metrics on 192\.0\.2\.1:0/.test(e.message),
    );
  } finally {
    await server.close();
  }
});

function ingestStats(over: Partial<IngestStats> = {}): IngestStats {
  return {
    frames: 0,
    ticks: 0,
    ticksProduced: 0,
    dlq: {},
    ignored: 0,
    reconnects: 0,
    dropped: 0,
    spoolErrors: 0,
    memory: 0,
    spooled: 0,
    spoolBytes: 0,
    sendFailures: 0,
    tooLargeRefusals: 0,
    ...over,
  };
}

Deno.test("ingest metrics: counters mirror the stats, batches are timed, failures are not", async () => {
  const rand = mulberry32(7);
  const registry = new Registry();
  const m = createIngestMetrics(registry);
  // Before observe(): every series exists at 0 (DLQ reasons included).
  let fams = await parseRegistry(registry);
  assert.equal(sampleValue(fams, "tickpipe_ingest_frames_total"), 0);
  assert.equal(sampleValue(fams, "tickpipe_ingest_dead_letters_total", { reason: "bad_json" }), 0);
  let stats = ingestStats();
  m.observe(() => stats);
  let sends = 0;
  let sendSeconds = 0;
  let sendRecords = 0;
  const send = m.wrapSend(async (records: OutRecord[]) => {
    if (records.length % 5 === 0) throw new Error("broker down");
    await new Promise((r) => setTimeout(r, records.length % 3));
  });
  for (let round = 0; round < 25; round++) {
    const reasons = ["bad_json", "future_time", "too_large", "bad_symbol"];
    const dlq = { ...stats.dlq };
    for (const r of reasons) if (rand() < 0.5) dlq[r] = (dlq[r] ?? 0) + Math.floor(rand() * 4);
    const frames = stats.frames + Math.floor(rand() * 100);
    stats = ingestStats({
      frames,
      ticks: stats.ticks + Math.floor(rand() * 50),
      ticksProduced: stats.ticksProduced + Math.floor(rand() * 50),
      ignored: stats.ignored + Math.floor(rand() * 3),
      reconnects: stats.reconnects + (rand() < 0.2 ? 1 : 0),
      sendFailures: stats.sendFailures + (rand() < 0.2 ? 1 : 0),
      spoolErrors: stats.spoolErrors + (rand() < 0.2 ? 1 : 0),
      dlq,
      memory: Math.floor(rand() * 1000),
      spooled: Math.floor(rand() * 1000),
      spoolBytes: Math.floor(rand() * 1e6),
    });
    const n = 1 + Math.floor(rand() * 9);
    const t0 = performance.now();
    try {
      await send(Array.from({ length: n }, () => ({} as OutRecord)));
      sends++;
      sendRecords += n;
      sendSeconds += (performance.now() - t0) / 1000;
    } catch (e) {
      assert.equal((e as Error).message, "broker down", "the wrapper rethrows");
    }
    if (rand() < 0.4) continue; // several updates between scrapes
    fams = await parseRegistry(registry);
    assert.equal(sampleValue(fams, "tickpipe_ingest_frames_total"), stats.frames);
    assert.equal(sampleValue(fams, "tickpipe_ingest_valid_ticks_total"), stats.ticks);
    assert.equal(sampleValue(fams, "tickpipe_ingest_ticks_produced_total"), stats.ticksProduced);
    assert.equal(sampleValue(fams, "tickpipe_ingest_ignored_frames_total"), stats.ignored);
    assert.equal(sampleValue(fams, "tickpipe_ingest_reconnects_total"), stats.reconnects);
    assert.equal(sampleValue(fams, "tickpipe_ingest_send_failures_total"), stats.sendFailures);
    assert.equal(
      sampleValue(fams, "tickpipe_ingest_spool_write_errors_total"),
      stats.spoolErrors,
    );
    for (const [reason, v] of Object.entries(stats.dlq)) {
      assert.equal(sampleValue(fams, "tickpipe_ingest_dead_letters_total", { reason }), v, reason);
    }
    assert.equal(sampleValue(fams, "tickpipe_ingest_memory_records"), stats.memory);
    assert.equal(sampleValue(fams, "tickpipe_ingest_spool_records"), stats.spooled);
    assert.equal(sampleValue(fams, "tickpipe_ingest_spool_bytes"), stats.spoolBytes);
    const lat = histogram(fams, "tickpipe_ingest_producer_batch_duration_seconds");
    assert.equal(lat.count, sends, "acknowledged batches only");
    assert.ok(lat.sum <= sendSeconds + 1e-6, `${lat.sum} <= ${sendSeconds}`);
    const size = histogram(fams, "tickpipe_ingest_producer_batch_records");
    assert.equal(size.count, sends);
    assert.equal(size.sum, sendRecords);
  }
  assert.ok(sends > 5, "some batches were acknowledged");
});

function decision(kind: DecisionKind, unread: number[]): Decision {
  return {
    kind,
    action: kind,
    unread: unread.reduce((a, b) => a + b, 0),
    perPartition: unread.map((u, partition) => ({ partition, end: u, from: 0, unread: u })),
    leaseLive: kind === "lease-held",
  };
}

Deno.test("sensor metrics: checks, decisions, launches and exits by outcome", async () => {
  const rand = mulberry32(3);
  const registry = new Registry();
  const kinds: DecisionKind[] = ["launch", "no-new-data", "lease-held", "backoff", "child-running"];
  const oracle = { ok: 0, error: 0, launches: 0, decisions: {} as Record<string, number> };
  const exitsWanted: Record<string, number> = { ok: 0, lease_held: 0, failed: 0 };
  const children: Promise<number>[] = [];
  let running: RunningChild | null = null;
  let unread = [0, 0, 0];
  // As the real sensor: settled() is the latest launch's exit, once recorded.
  let settled: Promise<number | null> = Promise.resolve(null);
  const raw: Sensor = {
    child: () => running,
    settled: () => settled,
    check(): Promise<CheckResult> {
      if (rand() < 0.15) return Promise.reject(new Error("Kafka down"));
      const kind = kinds[Math.floor(rand() * kinds.length)];
      unread = unread.map(() => Math.floor(rand() * 100));
      if (kind !== "launch") {
        return Promise.resolve({ decision: decision(kind, unread), launched: null });
      }
      const code = [0, 3, 1, 2][Math.floor(rand() * 4)];
      const status = Promise.resolve(code);
      children.push(status);
      settled = status;
      running = { pid: 1, startedAt: 0, status, kill() {} };
      return Promise.resolve({ decision: decision(kind, unread), launched: running });
    },
  };
  const sensor = createSensorMetrics(registry, { topic: "tt", now: () => 1_700_000_000_000 })
    .instrument(raw);
  for (let i = 0; i < 200; i++) {
    try {
      const r = await sensor.check();
      oracle.ok++;
      oracle.decisions[r.decision.kind] = (oracle.decisions[r.decision.kind] ?? 0) + 1;
      if (r.launched) {
        oracle.launches++;
        exitsWanted[exitOutcome(await r.launched.status)]++;
      }
    } catch (e) {
      assert.equal((e as Error).message, "Kafka down");
      oracle.error++;
    }
    if (rand() < 0.3) running = null;
  }
  await Promise.all(children);
  const fams = await parseRegistry(registry);
  assert.equal(sampleValue(fams, "tickpipe_sensor_checks_total", { outcome: "ok" }), oracle.ok);
  assert.equal(
    sampleValue(fams, "tickpipe_sensor_checks_total", { outcome: "error" }),
    oracle.error,
  );
  for (const k of kinds) {
    assert.equal(
      sampleValue(fams, "tickpipe_sensor_decisions_total", { decision: k }),
      oracle.decisions[k] ?? 0,
      k,
    );
  }
  assert.equal(sampleValue(fams, "tickpipe_sensor_launches_total"), oracle.launches);
  for (const [outcome, n] of Object.entries(exitsWanted)) {
    assert.equal(
      sampleValue(fams, "tickpipe_sensor_aggregator_exits_total", { outcome }),
      n,
      outcome,
    );
  }
  assert.equal(histogram(fams, "tickpipe_sensor_check_duration_seconds").count, 200);
  for (let p = 0; p < 3; p++) {
    assert.equal(
      sampleValue(fams, "tickpipe_sensor_unread_records", { topic: "tt", partition: String(p) }),
      unread[p],
    );
  }
  assert.equal(sampleValue(fams, "tickpipe_sensor_last_check_timestamp_seconds"), 1_700_000_000);
  assert.equal(sampleValue(fams, "tickpipe_sensor_aggregator_running"), running ? 1 : 0);
  assert.equal(exitOutcome(null), "unknown");
  assert.equal(exitOutcome(143), "failed");
});

function progress(rand: () => number, at: number): TriggerProgress {
  const n = (k: number) => Math.floor(rand() * k);
  const invalid = { not_json: n(3), bad_price: n(3) };
  const sinkMs = rand() < 0.2 ? null : n(50);
  return {
    topic: "ticks-x",
    reason: ["interval", "full", "caught-up", "final"][n(4)],
    timestamp: new Date(at).toISOString(),
    inputRows: n(1000),
    invalidRows: invalid.not_json + invalid.bad_price,
    invalidByReason: invalid,
    rowsRejected: n(2),
    windowsUpdated: n(40),
    windowsFinalized: n(10),
    ...(rand() < 0.5 ? { windowsWritten: n(50) } : {}),
    forcedFinal: n(2),
    lateDropped: n(5),
    openWindows: n(500),
    watermarks: { "0": rand() < 0.1 ? null : at - 900_000, "1": at - 901_000 },
    lag: { "0": n(100), "1": rand() < 0.1 ? null : n(100) },
    checkpointBytes: sinkMs === null ? null : n(1 << 20),
    durationsMs: {
      fetchMs: n(20),
      foldMs: n(20),
      triggerMs: n(10),
      deadLetterMs: n(5),
      sinkMs,
      checkpointMs: sinkMs === null ? null : n(30),
    },
  };
}

Deno.test("aggregator metrics: one trigger() per progress record adds up like the records", async () => {
  const rand = mulberry32(11);
  const registry = new Registry();
  const metrics = createAggregatorMetrics(registry);
  const lines: string[] = [];
  const write = meteredProgressWriter(metrics, (l) => lines.push(l));
  const records: TriggerProgress[] = [];
  let at = Date.UTC(2026, 0, 1);
  for (let i = 0; i < 60; i++) {
    at += 1000 + Math.floor(rand() * 60_000);
    const p = progress(rand, at);
    records.push(p);
    // Half through the progress-line writer (as aggregate_main wires it), half directly.
    if (i % 2 === 0) write(JSON.stringify(p));
    else metrics.trigger(p);
  }
  write("not a progress record");
  write(JSON.stringify({ hello: 1 }));
  assert.equal(lines.length, 32, "every line is still written");
  const fams = await parseRegistry(registry);
  const sum = (f: (p: TriggerProgress) => number) => records.reduce((a, p) => a + f(p), 0);
  assert.equal(sampleValue(fams, "tickpipe_aggregator_records_total"), sum((p) => p.inputRows));
  assert.equal(
    sampleValue(fams, "tickpipe_aggregator_rows_upserted_total"),
    sum((p) => p.windowsWritten ?? p.windowsUpdated + p.windowsFinalized),
  );
  assert.equal(
    sampleValue(fams, "tickpipe_aggregator_rows_rejected_total"),
    sum((p) => p.rowsRejected ?? 0),
  );
  assert.equal(
    sampleValue(fams, "tickpipe_aggregator_final_windows_total"),
    sum((p) => p.windowsFinalized),
  );
  assert.equal(
    sampleValue(fams, "tickpipe_aggregator_forced_final_windows_total"),
    sum((p) => p.forcedFinal ?? 0),
  );
  assert.equal(
    sampleValue(fams, "tickpipe_aggregator_late_ticks_total"),
    sum((p) => p.lateDropped),
  );
  for (const reason of ["not_json", "bad_price"]) {
    assert.equal(
      sampleValue(fams, "tickpipe_aggregator_invalid_records_total", { reason }),
      sum((p) => p.invalidByReason![reason]),
    );
  }
  assert.equal(
    sampleValue(fams, "tickpipe_aggregator_invalid_records_total", { reason: "bad_time" }),
    0,
  );
  for (const reason of ["interval", "full", "caught-up", "final"]) {
    assert.equal(
      sampleValue(fams, "tickpipe_aggregator_triggers_total", { reason }),
      records.filter((p) => p.reason === reason).length,
      reason,
    );
  }
  const dur = histogram(fams, "tickpipe_aggregator_trigger_duration_seconds");
  assert.equal(dur.count, records.length);
  const ms = sum((p) => {
    const d = p.durationsMs;
    return d.triggerMs + (d.deadLetterMs ?? 0) + (d.sinkMs ?? 0) + (d.checkpointMs ?? 0);
  });
  assert.ok(Math.abs(dur.sum - ms / 1000) < 1e-9, `${dur.sum} vs ${ms / 1000}`);
  assert.ok(
    Math.abs(
      sampleValue(fams, "tickpipe_aggregator_phase_seconds_total", { phase: "sink" }) -
        sum((p) => p.durationsMs.sinkMs ?? 0) / 1000,
    ) < 1e-9,
  );
  const cp = histogram(fams, "tickpipe_aggregator_checkpoint_size_bytes");
  assert.equal(cp.count, records.filter((p) => typeof p.checkpointBytes === "number").length);
  assert.equal(cp.sum, sum((p) => p.checkpointBytes ?? 0));
  const last = records[records.length - 1];
  assert.equal(sampleValue(fams, "tickpipe_aggregator_open_windows"), last.openWindows);
  assert.equal(sampleValue(fams, "tickpipe_aggregator_last_trigger_timestamp_seconds"), at / 1000);
  // Per partition: the last known value; a null removes the series (unknown, not 0).
  for (const p of ["0", "1"]) {
    const lagV = last.lag[p];
    const wm = last.watermarks[p];
    const labels = { topic: "ticks-x", partition: p };
    const gotLag = sampleValue(fams, "tickpipe_aggregator_lag_records", labels);
    const gotWm = sampleValue(fams, "tickpipe_aggregator_watermark_seconds", labels);
    if (lagV === null) assert.ok(Number.isNaN(gotLag), "no lag series while unknown");
    else assert.equal(gotLag, lagV);
    if (wm === null) assert.ok(Number.isNaN(gotWm));
    else assert.equal(gotWm, wm / 1000);
  }
  // A progress record of the v1 aggregator (no reasons, no checkpoint bytes) still counts.
  const v1 = { ...progress(rand, at + 1000), invalidByReason: undefined, invalidRows: 4 };
  metrics.trigger(v1);
  const after = await parseRegistry(registry);
  assert.equal(
    sampleValue(after, "tickpipe_aggregator_invalid_records_total", { reason: "unknown" }),
    4,
  );
});

Deno.test("sensor metrics: an exit is counted once the sensor has settled it, never while running says 1", async () => {
  const registry = createRegistry("sensor");
  let child: RunningChild | null = null;
  let settle!: (code: number) => void;
  const settled = new Promise<number | null>((resolve) => settle = resolve);
  const status = Promise.resolve(1);
  const sensor = createSensorMetrics(registry, { topic: "t" }).instrument({
    child: () => child,
    settled: () => settled,
    check() {
      child = { pid: 7, startedAt: 0, status, kill() {} };
      return Promise.resolve({ decision: decision("launch", [1]), launched: child });
    },
  });
  await sensor.check();
  // The child's status is in, its exit not yet recorded (the real sensor writes KV first).
  await status;
  await new Promise((r) => setTimeout(r, 0));
  let fams = await parseRegistry(registry);
  assert.equal(sampleValue(fams, "tickpipe_sensor_aggregator_running"), 1);
  assert.equal(sampleSum(fams, "tickpipe_sensor_aggregator_exits_total"), 0);
  child = null;
  settle(1);
  await settled;
  await new Promise((r) => setTimeout(r, 0));
  fams = await parseRegistry(registry);
  assert.equal(sampleValue(fams, "tickpipe_sensor_aggregator_running"), 0);
  assert.equal(
    sampleValue(fams, "tickpipe_sensor_aggregator_exits_total", { outcome: "failed" }),
    1,
  );
});

Deno.test("start's endpoint merges its children's: one family per name, component_up per child", async () => {
  const mk = (component: string) => {
    const registry = createRegistry(component);
    return { registry, server: serveMetrics(registry, { port: 0 }) };
  };
  const ingest = mk("ingest");
  const sensor = mk("sensor");
  const ingestMetrics = createIngestMetrics(ingest.registry);
  let frames = 10;
  ingestMetrics.observe(() => ingestStats({ frames, dlq: { bad_json: 2 } }));
  const sensorRegistry = sensor.registry;
  const sm = createSensorMetrics(sensorRegistry, { topic: "t" });
  await sm.instrument({
    child: () => null,
    settled: () => Promise.resolve(null),
    check: () => Promise.resolve({ decision: decision("no-new-data", [1, 2]), launched: null }),
  }).check();
  // A port nothing listens on: the aggregator is not running.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const own = createRegistry("start");
  const merged = serveMetrics(
    mergedMetricsSource(own, [
      { component: "ingest", port: ingest.server.port },
      { component: "sensor", port: sensor.server.port },
      { component: "aggregate", port: deadPort },
    ], { timeoutMs: 2000 }),
    { port: 0 },
  );
  try {
    const fams = await scrape(merged.url);
    const rss = family(fams, "process_resident_memory_bytes", "GAUGE");
    assert.deepEqual(
      rss.metrics.map((m) => m.labels?.component).sort(),
      ["ingest", "sensor", "start"],
      "one series per process, in one family",
    );
    assert.equal(sampleValue(fams, "tickpipe_component_up", { component: "ingest" }), 1);
    assert.equal(sampleValue(fams, "tickpipe_component_up", { component: "sensor" }), 1);
    assert.equal(sampleValue(fams, "tickpipe_component_up", { component: "aggregate" }), 0);
    assert.equal(sampleValue(fams, "tickpipe_ingest_frames_total"), 10);
    assert.equal(
      sampleValue(fams, "tickpipe_ingest_dead_letters_total", { reason: "bad_json" }),
      2,
    );
    assert.equal(sampleSum(fams, "tickpipe_sensor_unread_records"), 3);
    assert.equal(histogram(fams, "tickpipe_sensor_check_duration_seconds").count, 1);
    assert.equal(
      histogram(fams, "tickpipe_ingest_producer_batch_duration_seconds").count,
      0,
      "an empty histogram survives the merge",
    );
    frames = 25;
    const again = await scrape(merged.url);
    assert.equal(sampleValue(again, "tickpipe_ingest_frames_total"), 25, "counters move");
    // The same families as each child serves itself (nothing lost or renamed by the merge).
    const direct = await scrape(ingest.server.url);
    for (const name of direct.keys()) assert.ok(again.has(name), `${name} merged`);
  } finally {
    await merged.close();
    await ingest.server.close();
    await sensor.server.close();
  }
});
