// Settings resolved once, end to end, against the real Kafka broker, PostgreSQL and Deno KV:
// every aggregator flag set on `sensor` (and on `start`) reaches the aggregator it launches: the
// aggregator's own "settings" line (its options after its defaults) equals, flag by flag, the
// value the aggregator's table reads from the text given to the parent, and differs from the
// default (so a flag that was dropped cannot pass). Under `start`, the aggregator's command line
// in /proc says the same. A typo fails in the parent with exit 2, before anything starts.
// The unit test tests/unit/options_test.ts proves the same flag by flag on the pure functions.
import assert from "node:assert/strict";
import { ensureTopic } from "../common/kafka.ts";
import { parseCommandLine } from "../common/cli.ts";
import { parseOptionValue } from "../common/options.ts";
import {
  AGGREGATE_COMMAND,
  AGGREGATOR_FLAGS,
  AGGREGATOR_OPTION_KEYS,
} from "../aggregate/options.ts";
import { resolveAggregatorOptions } from "../aggregate/aggregator.ts";
import { startSimulator } from "../ingest/simulator.ts";
import { runCli, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";
import { descendants, randomPrefix, waitFor } from "./_helpers/e2e_pipeline.ts";
import { mulberry32 as prng } from "../common/prng.ts";

type Flag = keyof typeof AGGREGATOR_FLAGS;
type Rnd = () => number;
const int = (rnd: Rnd, lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));

/**
 * Random values of every aggregator flag that let a short run work and differ from the defaults.
 * The type makes a new flag need an entry here.
 */
const RUNNABLE: Record<Flag, (rnd: Rnd, long: boolean) => string> = {
  trigger: (rnd) => `${int(rnd, 8, 20) * 100}ms`,
  "idle-timeout": (rnd, long) => long ? `${int(rnd, 40, 60)}s` : `${int(rnd, 3, 5)}s`,
  windows: (rnd) => ["1m,5m", "2m", "1m,10m,1h", "30s,5m"][int(rnd, 0, 3)],
  watermark: (rnd) => `${int(rnd, 3, 14)}m`,
  "idle-finalize": (rnd) => rnd() < 0.3 ? "0" : `${int(rnd, 40, 300)}s`,
  "max-open-windows": (rnd) => String(int(rnd, 5_000, 900_000)),
  "max-buffered": (rnd) => String(int(rnd, 1_000, 150_000)),
  "max-future": (rnd) => `${int(rnd, 6, 30)}m`,
  group: () => uniqueName("tp-settings-group"),
  "lease-ttl": (rnd) => `${int(rnd, 12, 29)}s`,
};

/** One value per aggregator flag: the text, and what the aggregator must resolve it to. */
function randomFlags(seed: number, long: boolean) {
  const rnd = prng(seed);
  const defaults = resolveAggregatorOptions({ topic: "t" }) as unknown as Record<string, unknown>;
  const args: string[] = [];
  const expected: Record<string, unknown> = {};
  for (const flag of Object.keys(AGGREGATOR_FLAGS) as Flag[]) {
    assert.ok(RUNNABLE[flag], `a runnable value for --${flag}`);
    const raw = RUNNABLE[flag](rnd, long);
    args.push(`--${flag}`, raw);
    expected[flag] = parseOptionValue(flag, AGGREGATOR_FLAGS[flag], raw);
    assert.notDeepEqual(
      expected[flag],
      defaults[AGGREGATOR_OPTION_KEYS[flag]],
      `--${flag} ${raw} differs from the default`,
    );
  }
  return { args, expected, group: args[args.indexOf("--group") + 1] };
}

type Kafka = ReturnType<typeof testKafka>;

async function produceTicks(kafka: Kafka, topic: string, symbols: string[], n: number) {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const t0 = Date.now() - 60_000;
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: Array.from({ length: n }, (_, i) => {
        const id = symbols[i % symbols.length];
        return {
          key: id,
          value: JSON.stringify({ id, price: 10 + i, time: t0 + i * 50, dayVolume: 100 + i }),
          headers: { ingest_ms: String(Date.now()) },
        };
      }),
    });
  } finally {
    await producer.disconnect();
  }
}

async function cleanup(
  kafka: Kafka,
  o: { topic: string; kv: string; prefix: string; group: string },
) {
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [o.topic, `${o.topic}.dlq`] }).catch(() => {});
  await admin.deleteGroups([o.group]).catch(() => {});
  await admin.disconnect();
  for (const suffix of ["", "-shm", "-wal"]) await Deno.remove(o.kv + suffix).catch(() => {});
  for (const f of Deno.readDirSync(".data/test")) {
    if (f.name.startsWith(o.kv.slice(".data/test/".length) + ".aggregate-")) {
      await Deno.remove(`.data/test/${f.name}`).catch(() => {});
    }
  }
  await Deno.remove(`.data/spool/${o.topic}`, { recursive: true }).catch(() => {});
  const pool = testPool();
  try {
    await pool.query("DELETE FROM price_windows WHERE symbol LIKE $1", [`${o.prefix}%`]);
    await pool.query("DELETE FROM late_ticks WHERE symbol LIKE $1", [`${o.prefix}%`]);
    await pool.query("DELETE FROM aggregator_progress WHERE topic = $1", [o.topic]).catch(() => {});
  } finally {
    await pool.end();
  }
}

/** The JSON log lines of `text` (others skipped). */
function jsonLines(text: string): Record<string, unknown>[] {
  return text.split("\n").flatMap((l) => {
    try {
      const v = JSON.parse(l);
      return v && typeof v === "object" ? [v] : [];
    } catch {
      return [];
    }
  });
}

/** Asserts the aggregator's settings line holds `expected`, flag by flag. */
function assertSettings(line: Record<string, unknown>, expected: Record<string, unknown>) {
  for (const [flag, value] of Object.entries(expected)) {
    assert.deepEqual(line[flag], value, `--${flag} reached the aggregator`);
  }
}

Deno.test({
  name: "settings: every aggregator flag given to the sensor reaches the aggregator it launches",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-settings-sensor");
    const kv = await tempKvPath("settings-sensor");
    const prefix = randomPrefix();
    const { args, expected, group } = randomFlags(Date.now() % 100_000, false);
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureTopic(admin, topic, { partitions: 2 });
      await produceTicks(kafka, topic, [`${prefix}A`, `${prefix}B`], 40);
      const r = await runCli("sensor", [
        "sensor",
        "--once",
        "--wait",
        "--topic",
        topic,
        "--kv",
        kv,
        ...args,
      ], { env: { LOG_FORMAT: "json" }, timeoutMs: 120_000 });
      const out = jsonLines(r.stdout + "\n" + r.stderr);
      assert.equal(r.code, 0, r.stderr.slice(-3000));
      const launched = out.find((l) => l.msg === "launched aggregator");
      assert.ok(launched, "the sensor launched an aggregator");
      const command = String(launched.command).split(" ");
      const agg = parseCommandLine(
        command.slice(command.indexOf("aggregate") + 1),
        AGGREGATE_COMMAND,
      );
      for (const [flag, value] of Object.entries(expected)) {
        assert.deepEqual(
          (agg.options as Record<string, unknown>)[flag],
          value,
          `--${flag} on its command line`,
        );
      }
      const settings = out.filter((l) => l.msg === "settings" && l.child === "aggregate");
      assert.equal(settings.length, 1, "one aggregator run, one settings line");
      assertSettings(settings[0], expected);
      assert.ok(
        out.some((l) => l.msg === "aggregator stopped" && l.reason === "idle"),
        "it ran to its (forwarded) idle timeout",
      );
    } finally {
      await admin.disconnect();
      await cleanup(kafka, { topic, kv, prefix, group });
    }
  },
});

Deno.test({
  name: "settings: every aggregator flag given to start reaches the aggregator of its sensor",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-settings-start");
    const kv = await tempKvPath("settings-start");
    const prefix = randomPrefix();
    const { args, expected, group } = randomFlags(Date.now() % 100_000 + 7, true);
    const admin = kafka.admin();
    await admin.connect();
    // The feed: a simulator on a free port that sends nothing (the ticks are in the topic).
    const sim = await startSimulator({ port: 0, rate: 0, heartbeatMs: 0 });
    let start: Deno.ChildProcess | undefined;
    let output = "";
    try {
      await ensureTopic(admin, topic, { partitions: 2 });
      await produceTicks(kafka, topic, [`${prefix}A`, `${prefix}B`], 40);
      start = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          "-P=start",
          "main.ts",
          "start",
          "--topic",
          topic,
          "--kv",
          kv,
          "--source",
          `ws://127.0.0.1:${sim.port}/?version=2`,
          "--symbols",
          `${prefix}A`,
          "--every",
          "1s",
          "--metrics-port",
          "0",
          ...args,
        ],
        env: { NO_COLOR: "1", LOG_FORMAT: "json" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const dec = new TextDecoder();
      const pump = (s: ReadableStream<Uint8Array>) =>
        s.pipeTo(
          new WritableStream({ write: (c) => void (output += dec.decode(c, { stream: true })) }),
        )
          .catch(() => {});
      const pumps = Promise.all([pump(start.stdout), pump(start.stderr)]);
      const pid = start.pid;
      // The aggregator in start's tree (start → sensor → aggregate), read from /proc.
      const proc = await waitFor(
        "the aggregator in start's tree",
        () => descendants(pid).find((p) => /main\.ts aggregate /.test(p.cmdline)),
        { timeoutMs: 90_000, everyMs: 100 },
      );
      const argv = proc.cmdline.split(" ");
      const agg = parseCommandLine(argv.slice(argv.indexOf("aggregate") + 1), AGGREGATE_COMMAND);
      for (const [flag, value] of Object.entries(expected)) {
        assert.deepEqual(
          (agg.options as Record<string, unknown>)[flag],
          value,
          `--${flag} in /proc`,
        );
      }
      const settings = await waitFor(
        "the aggregator's settings line",
        () => jsonLines(output).find((l) => l.msg === "settings" && l.child === "sensor/aggregate"),
        {
          timeoutMs: 60_000,
        },
      );
      assertSettings(settings, expected);
      start.kill("SIGTERM");
      const status = await start.status;
      await pumps;
      start = undefined;
      assert.equal(status.code, 0, output.slice(-3000));
    } finally {
      if (start !== undefined) {
        try {
          start.kill("SIGKILL");
        } catch { /* gone */ }
        await start.status;
      }
      await sim.close();
      await admin.disconnect();
      await cleanup(kafka, { topic, kv, prefix, group });
    }
  },
});

Deno.test({
  name: "settings: a bad aggregator flag fails in sensor, start and demo with exit 2, naming it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cases: [string, string[], RegExp][] = [
      ["sensor", ["--windows", "1m,60s"], /--windows "1m,60s" repeats a duration/],
      ["start", ["--max-buffered", "0"], /--max-buffered "0" is invalid/],
      ["demo", ["--trigger", "soon"], /--trigger "soon" is not a duration/],
      ["start", ["--watermark-delay", "5m"], /Unknown option '--watermark-delay'/],
    ];
    for (const [command, args, re] of cases) {
      const t0 = Date.now();
      const r = await runCli(command, [command, ...args], { timeoutMs: 30_000 });
      assert.equal(r.code, 2, `${command} ${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(
        r.stdout + r.stderr,
        /child started|services|launched/,
        "nothing started",
      );
      assert.ok(Date.now() - t0 < 20_000, "at once");
    }
  },
});
