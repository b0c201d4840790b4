// The demo's terminal views (pure): the live screen, the piped line and the closing summary show
// windows per resolution and how far they are final, late ticks, the event clock, and the 1m and
// 5m candles side by side with volume and VWAP.
import assert from "node:assert/strict";
import {
  type DashboardView,
  renderDashboard,
  renderDemoSummary,
  renderSummaryLine,
} from "../../pipeline/dashboard.ts";
import {
  fmtVolume,
  type PipelineStatus,
  renderCandlesSideBySide,
  type WindowView,
} from "../../pipeline/status.ts";

const win = (symbol: string, windowMs: number, start: string, over: Partial<WindowView> = {}) => ({
  symbol,
  windowMs,
  windowStart: `2026-03-02T${start}.000Z`,
  open: 100,
  high: 101,
  low: 99,
  close: 100.5,
  avg: 100.2,
  count: 12,
  volume: 12_500,
  vwap: 100.25,
  isFinal: true,
  updatedAt: "2026-03-02T15:00:00.000Z",
  ...over,
});

const NEWEST: WindowView[] = [
  win("AAPL", 60_000, "14:31:00", { isFinal: false }),
  win("AAPL", 300_000, "14:30:00", { close: 189.25, volume: 2_940_000 }),
  win("EURUSD=X", 60_000, "14:31:00", { close: 1.0813, volume: 0, vwap: null }),
  win("EURUSD=X", 300_000, "14:30:00", { close: 1.0811, volume: 0, vwap: null }),
];

function status(): PipelineStatus {
  return {
    at: "2026-03-02T15:00:00.000Z",
    topic: "tickpipe-demo",
    kafka: { brokers: ["127.0.0.1:9092"], reachable: true },
    postgres: { url: "postgres://postgres:***@127.0.0.1:5432/tickpipe", reachable: true },
    topicExists: true,
    partitions: [
      { partition: 0, startOffset: 0, endOffset: 90, storedOffset: 90, lag: 0, watermark: null },
      {
        partition: 1,
        startOffset: 0,
        endOffset: 80,
        storedOffset: 70,
        lag: 10,
        watermark: Date.parse("2026-03-02T14:29:30Z"),
      },
    ],
    totalLag: 10,
    ticksInTopic: 170,
    deadLetters: 2,
    ingestRatePerSec: null,
    lease: null,
    checkpoint: null,
    progress: null,
    sensor: { lastLaunch: null, launches: 1, consecutiveFailures: 0 },
    windows: {
      total: 40,
      final: 31,
      byResolution: [
        { windowMs: 60_000, total: 32, final: 27, finalThrough: "2026-03-02T14:29:00.000Z" },
        { windowMs: 300_000, total: 8, final: 4, finalThrough: "2026-03-02T14:25:00.000Z" },
      ],
      newest: NEWEST,
      freshnessMs: 1200,
    },
    lateTicks: {
      total: 5,
      newest: [{
        symbol: "AAPL",
        eventTime: "2026-03-02T14:11:02.000Z",
        price: 188.5,
        lateFor: [60_000, 300_000],
        recordedAt: "2026-03-02T15:00:00.000Z",
      }],
    },
    identityMismatch: null,
  };
}

const view = (): DashboardView => ({
  status: status(),
  elapsedMs: 42_000,
  ratePerSec: 50,
  baselineWindows: 0,
  header: {
    source: "ws://127.0.0.1:8765",
    symbols: ["AAPL", "EURUSD=X"],
    topic: "tickpipe-demo",
    logPath: ".data/demo.log",
    settings: "windows 1m,5m, watermark 2m",
    until: "stopping after 60 s",
    resolutions: [60_000, 300_000],
    watermarkDelayMs: 120_000,
  },
  eventTimeMs: Date.parse("2026-03-02T14:32:10Z"),
  color: false,
});

Deno.test("dashboard: the live screen shows resolutions, finality, late ticks and side-by-side candles", () => {
  const screen = renderDashboard(view(), { width: 140 });
  const lines = screen.split("\n");
  assert.ok(lines.every((l) => l.length <= 140));
  assert.match(
    screen,
    /event clock {3}14:32:10 {2}watermark 14:29:30 \(max event time - 2m, slowest/,
  );
  assert.match(
    screen,
    /by length {5}1m: 32 \(27 final through 14:29:00\), 5m: 8 \(4 final through 14:25:00\)/,
  );
  assert.match(screen, /late ticks {12}5 {2}newest: AAPL at 14:11:02 \(188\.5\) late for 1m,5m/);
  assert.match(screen, /^ {13}1m windows -+ {2}5m windows -+$/m);
  const aapl = lines.find((l) => l.startsWith("AAPL"))!;
  assert.match(
    aapl,
    /^AAPL +14:31 +100\.5 +12\.5k +100\.25 +12 open +14:30 +189\.25 +2\.94M +100\.25 +12 final$/,
  );
  const fx = lines.find((l) => l.startsWith("EURUSD=X"))!;
  assert.match(fx, /^EURUSD=X +14:31 +1\.0813 +0 +- +12 final +14:30 +1\.0811 +0 +- +12 final$/);
  // Narrow terminals: never wider than the screen; the resolutions are stacked instead.
  const narrow = renderDashboard(view(), { width: 80 });
  assert.ok(narrow.split("\n").every((l) => l.length <= 80));
  assert.equal(narrow.match(/^AAPL /gm)?.length, 2, "one line per resolution");
  // Colour codes do not count as width.
  const colored = renderDashboard({ ...view(), color: true }, { width: 140 });
  assert.ok(colored.includes("\x1b["));
});

Deno.test("dashboard: the piped line and the closing summary", () => {
  const line = renderSummaryLine(view());
  assert.equal(
    line,
    "t+42s | ticks 170 (50/s) | dlq 2 | lag 10 | aggregator idle | event clock 14:32:10 | " +
      "watermark 14:29:30 | windows 40 (31 final): 1m: 32 (27 final through 14:29:00), " +
      "5m: 8 (4 final through 14:25:00) | late 5",
  );
  const sum = renderDemoSummary(status(), {
    elapsedMs: 61_000,
    topic: "tickpipe-demo",
    symbols: ["AAPL", "EURUSD=X"],
    resolutions: [60_000, 300_000],
    exits: "simulate 0, ingest 0, sensor 0",
    width: 140,
  });
  assert.match(
    sum,
    /^summary: 61 s, 170 ticks in topic tickpipe-demo, 2 dead letters, lag 10; 40 windows of AAPL,EURUSD=X in price_windows \(31 final: 1m: 32 .*\); 5 late ticks in late_ticks; exit codes: simulate 0, ingest 0, sensor 0$/m,
  );
  assert.match(sum, /latest final candles \(event time; 1m and 5m side by side/);
  assert.match(sum, /newest late ticks \(in late_ticks\):\n {2}AAPL at 14:11:02/);
  assert.match(sum, /SELECT \* FROM candles\('tickpipe-demo', 'AAPL', '1m', /);
  assert.match(
    renderDemoSummary(null, { ...view().header, elapsedMs: 1, exits: "-" }),
    /^summary: /,
  );
});

Deno.test("candles side by side: a missing resolution leaves its cells empty; seconds shown below 1m", () => {
  const out = renderCandlesSideBySide([
    win("A", 10_000, "14:31:10"),
    win("B", 30_000, "14:31:00"),
  ], { resolutions: [10_000, 30_000] });
  const [head, , a, b] = out.split("\n");
  assert.match(head, /10s windows -+ {2}30s windows -+/);
  assert.match(a, /^A +14:31:10 +100\.5 .* final$/);
  assert.match(b, /^B {12,}14:31:00 +100\.5/);
  assert.deepEqual(
    [999, 12_345, 2_940_000, 1.2e9].map(fmtVolume),
    ["999", "12.3k", "2.94M", "1.20B"],
  );
});
