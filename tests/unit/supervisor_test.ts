import assert from "node:assert/strict";
import { DEFAULT_RESTART_POLICY, restartDelay } from "../../pipeline/supervisor.ts";
import { relayOutput } from "../../common/child.ts";
import { pipelineChildren } from "../../pipeline/start_main.ts";
import { parseCommandLine } from "../../common/cli.ts";
import { START_COMMAND } from "../../pipeline/options.ts";
import { loadBaseConfig } from "../../common/config.ts";
import { renderCandles } from "../../pipeline/status.ts";

Deno.test("supervisor: restart delay grows with consecutive failures and is capped", () => {
  for (let f = 1; f < 15; f++) {
    const ceiling = Math.min(
      DEFAULT_RESTART_POLICY.maxMs,
      DEFAULT_RESTART_POLICY.initialMs * 2 ** (f - 1),
    );
    const d = restartDelay(f);
    assert.ok(
      d >= ceiling / 2 - 1 && d <= ceiling,
      `failures ${f}: ${d} not in [${ceiling / 2}, ${ceiling}]`,
    );
  }
});

Deno.test("supervisor: child output is split into prefixed lines, partial last line kept", async () => {
  const chunks = ["hel", "lo\nwor", "ld\n", "tail"];
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (const s of chunks) c.enqueue(new TextEncoder().encode(s));
      c.close();
    },
  });
  const lines: string[] = [];
  await relayOutput(stream, "x", { write: (l) => lines.push(l), format: "text" });
  assert.deepEqual(lines, ["[x] hello", "[x] world", "[x] tail"]);
});

Deno.test("start: children get explicit config; DATABASE_URL only via the sensor's env", () => {
  const config = loadBaseConfig({
    brokers: "127.0.0.1:9092",
    "database-url": "postgres://u:secret@127.0.0.1:5432/db",
    topic: "tt",
    kv: ".data/x.kv",
  }, { env: () => undefined });
  const [ingest, sensor] = pipelineChildren(config, { symbols: "A,B", trigger: "5s" });
  assert.equal(ingest.command, "ingest");
  assert.deepEqual(ingest.args.slice(0, 4), ["--brokers", "127.0.0.1:9092", "--topic", "tt"]);
  assert.ok(ingest.args.includes("A,B"));
  assert.ok(!JSON.stringify(ingest).includes("secret"), "ingest never sees the database URL");
  assert.equal(sensor.command, "sensor");
  assert.ok(!sensor.args.join(" ").includes("secret"), "no password in argv");
  assert.equal(sensor.env?.DATABASE_URL, config.databaseUrl);
  assert.deepEqual(
    sensor.args.slice(sensor.args.indexOf("--trigger"), sensor.args.indexOf("--trigger") + 2),
    [
      "--trigger",
      "5s",
    ],
  );
  // The engine flags reach the sensor (which forwards them to the aggregator), as given.
  const [, s2] = pipelineChildren(
    config,
    parseCommandLine(
      ["--windows", "1m,5m", "--watermark", "2m", "--idle-finalize", "0", "--rebuild"],
      START_COMMAND,
    ).given,
  );
  const after = (flag: string) => s2.args[s2.args.indexOf(flag) + 1];
  assert.equal(after("--windows"), "1m,5m");
  assert.equal(after("--watermark"), "2m");
  assert.equal(after("--idle-finalize"), "0");
  assert.ok(s2.args.includes("--rebuild"));
  assert.ok(!sensor.args.includes("--windows") && !sensor.args.includes("--rebuild"));
  // Bad engine flags fail fast in start, naming the flag.
  const validate = (...args: string[]) => parseCommandLine(args, START_COMMAND);
  assert.throws(() => validate("--windows", "1m,fast"), /--windows "fast" is not a duration/);
  assert.throws(() => validate("--windows", "1m,1m"), /repeats a duration/);
  assert.throws(() => validate("--watermark=-1"), /--watermark "-1"/);
  validate("--windows", "10s,30s", "--watermark", "20s", "--idle-finalize", "0");
});

Deno.test("status: candle table renders one line per window with its values", () => {
  const out = renderCandles([{
    symbol: "BTC-USD",
    windowMs: 300_000,
    windowStart: "2026-01-01T10:05:00.000Z",
    open: 94745.08,
    high: 95000,
    low: 94000.5,
    close: 94800,
    avg: 94700.25,
    count: 42,
    volume: 1234,
    vwap: 94750.5,
    isFinal: true,
    updatedAt: "2026-01-01T10:10:00.000Z",
  }, {
    symbol: "EURUSD=X",
    windowMs: 10_000,
    windowStart: "2026-01-01T10:05:10.000Z",
    open: 1.0812,
    high: 1.0815,
    low: 1.081,
    close: 1.0813,
    avg: 1.0812,
    count: 3,
    volume: 0,
    vwap: null,
    isFinal: false,
    updatedAt: "2026-01-01T10:10:00.000Z",
  }]);
  const lines = out.split("\n");
  assert.equal(lines.length, 3);
  assert.match(
    lines[1],
    /^BTC-USD\s+5m\s+10:05\s+94745\.08\s+95000\.00\s+94000\.50\s+94800\.00\s+94750\.50\s+1\.23k\s+42 yes$/,
  );
  assert.match(lines[2], /^EURUSD=X\s+10s\s+10:05:10\s+1\.0812\s+.*\s+-\s+0\s+3 no$/);
});
