/**
 * Profiling harness for the aggregator's hot path (not a suite): fills a topic like the
 * aggregator suite does, then drains it in process in one of several modes, so that a CPU
 * profile (`deno run -A --cpu-prof bench/aggregator_profile.ts ...`) or `--v8-flags=--prof`
 * covers only that mode.
 *
 * ```sh
 * deno run -A bench/aggregator_profile.ts fill <topic> <ticks> [json|tick-v1]
 * deno run -A bench/aggregator_profile.ts <agg|raw|parse|fold|platformatic> <topic> <ticks> [runs]
 * ```
 * Environment: PROFILE_WINDOWS (agg: window lengths in ms, comma-separated), PROFILE_THREAD,
 * PROFILE_TIMELINE, PROFILE_LOG, PROFILE_WATERMARK_MS.
 * @module
 */

import { loadBaseConfig } from "../common/config.ts";
import { createKafka } from "../common/kafka.ts";
import { createLogger } from "../common/log.ts";
import { createPool } from "../common/pg.ts";
import { openKv } from "../common/kv.ts";
import { runAggregator } from "../aggregate/mod.ts";
import { engineTicks, windowFillTicks } from "./suites/_data.ts";
import { recentStart, tickMessage } from "./suites/_io.ts";
import { drainKafkajs, drainPlatformatic } from "./suites/_drain.ts";
import { Buffer } from "node:buffer";
import { encodeTickValue } from "../proto/tick.ts";
import { quote } from "./suites/_data.ts";

const config = loadBaseConfig();
const quiet = createLogger("profile", { level: "error" });
const kafka = createKafka(config.brokers, { clientId: "tickpipe-profile", logger: quiet });
const [mode, topic, totalText, extra] = Deno.args;
const total = Number(totalText);

if (mode === "fillmem") {
  // The memory suite's workload: 10k symbols x 5 open windows x 5 ticks, ingest_ms now.
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic, numPartitions: 3, configEntries: [{ name: "retention.ms", value: "-1" }] }],
  });
  await admin.disconnect();
  const start = recentStart(1);
  const now = Date.now();
  const messages = [];
  for (let r = 0; r < 5; r++) {
    for (const t of windowFillTicks(10_000, 5, { prefix: "PROFILE_M", start })) {
      messages.push(
        tickMessage({ ...t, eventTime: t.eventTime + r * 1000, price: t.price + r / 100 }, now),
      );
    }
  }
  const producer = kafka.producer();
  await producer.connect();
  for (let i = 0; i < messages.length; i += 3000) {
    await producer.sendBatch({
      acks: -1,
      topicMessages: [{ topic, messages: messages.slice(i, i + 3000) }],
    });
  }
  await producer.disconnect();
  console.log(`filled ${topic} with ${messages.length} records`);
  Deno.exit(0);
}

if (mode === "fill") {
  const format = extra === "tick-v1" ? "tick-v1" : "json";
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic, numPartitions: 3, configEntries: [{ name: "retention.ms", value: "-1" }] }],
  });
  await admin.disconnect();
  const ticks = engineTicks(total, 1000, {
    prefix: "PROFILE_",
    tickMs: Math.max(1, Math.round(3_600_000 / total)),
    start: recentStart(2),
  });
  const producer = kafka.producer();
  await producer.connect();
  for (let i = 0; i < ticks.length; i += 3000) {
    const messages = ticks.slice(i, i + 3000).map((t) => {
      const m = tickMessage(t);
      if (format === "json") return m;
      const v = encodeTickValue(
        quote(t.symbol, { price: t.price, time: t.eventTime, volume: 1000 + t.offset }),
        "tick-v1",
      );
      return {
        ...m,
        value: Buffer.from(v.value) as unknown as string,
        headers: { ...m.headers, "tp-format": "tick-v1" },
      };
    });
    await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] });
  }
  await producer.disconnect();
  console.log(`filled ${topic} with ${total} ${format} records`);
  Deno.exit(0);
}

const runs = Number(extra ?? 1);
const id = crypto.randomUUID().slice(0, 8);
for (let r = 0; r < runs; r++) {
  const group = `profile-${mode}-${id}-${r}`;
  if (mode === "agg") {
    const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-profile", max: 4 });
    const kvPath = `/tmp/profile-${id}-${r}.kv`;
    const kv = await openKv(kvPath);
    let committed = 0;
    const phases: Record<string, number> = {};
    const t0 = performance.now();
    let tDone = 0;
    const maxMem = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0 };
    const sampler = setInterval(() => {
      const m = Deno.memoryUsage();
      for (const k of Object.keys(maxMem) as (keyof typeof maxMem)[]) {
        maxMem[k] = Math.max(maxMem[k], Math.round(m[k] / 1048576));
      }
    }, 50);
    const handle = await runAggregator({
      kafka,
      pool,
      kv,
      logger: Deno.env.get("PROFILE_LOG") ? createLogger("agg", { level: "debug" }) : quiet,
      consumerThread: Deno.env.get("PROFILE_THREAD") ? { brokers: config.brokers } : undefined,
      writeProgress: (line) => {
        const p = JSON.parse(line);
        committed = Math.max(
          committed,
          Object.values(p.offsets as Record<string, number>).reduce((a, b) => a + b, 0),
        );
        for (const [k, v] of Object.entries(p.durationsMs ?? {})) {
          phases[k] = (phases[k] ?? 0) + ((v as number) ?? 0);
        }
        phases.triggers = (phases.triggers ?? 0) + 1;
        if (Deno.env.get("PROFILE_TIMELINE")) {
          console.error(
            `${Math.round(performance.now() - t0)} ms: ${p.reason} input ${p.inputRows} ` +
              `changed ${p.windowsUpdated} durations ${JSON.stringify(p.durationsMs)}`,
          );
        }
        if (committed >= total && tDone === 0) tDone = performance.now();
      },
    }, {
      topic,
      groupId: group,
      triggerMs: 1000,
      idleTimeoutMs: 600_000,
      watermarkDelayMs: Number(Deno.env.get("PROFILE_WATERMARK_MS") ?? 900_000),
      // PROFILE_WINDOWS=60000,300000,900000,3600000: the four-resolution row of the suite.
      ...(Deno.env.get("PROFILE_WINDOWS")
        ? { windows: Deno.env.get("PROFILE_WINDOWS")!.split(",").map(Number) }
        : {}),
    });
    while (tDone === 0) await new Promise((r) => setTimeout(r, 5));
    const ms = tDone - t0;
    await new Promise((r) => setTimeout(r, 1500)); // one more trigger, like the memory suite
    const status = await Deno.readTextFile("/proc/self/status");
    clearInterval(sampler);
    console.error(
      `peak RSS ${/VmHWM:\s+(\d+)/.exec(status)?.[1]} kB; max MB ${JSON.stringify(maxMem)}`,
    );
    await handle.stop();
    kv.close();
    await Deno.remove(kvPath).catch(() => {});
    await pool.query("DELETE FROM price_windows WHERE left(symbol, 8) = 'PROFILE_'");
    await pool.query("DELETE FROM late_ticks WHERE left(symbol, 8) = 'PROFILE_'");
    await pool.end();
    console.log(
      JSON.stringify({
        mode,
        ms: Math.round(ms),
        perSecond: Math.round(total / ms * 1000),
        phases,
      }),
    );
  } else if (mode === "platformatic") {
    const res = await drainPlatformatic(config.brokers, { topic, total, groupId: group });
    console.log(JSON.stringify({ mode, ...res, perSecond: Math.round(total / res.ms * 1000) }));
  } else if (mode === "raw" || mode === "parse" || mode === "fold") {
    const res = await drainKafkajs(kafka, mode, { topic, total, groupId: group });
    console.log(JSON.stringify({ mode, ...res, perSecond: Math.round(total / res.ms * 1000) }));
  } else {
    console.error(`Unknown mode ${mode}`);
    Deno.exit(2);
  }
}
Deno.exit(0);
