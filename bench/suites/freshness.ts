/**
 * Suite 6, freshness: the whole pipeline as processes (`main.ts simulate` at 5,000 ticks/s over
 * 1,000 symbols, `main.ts ingest`, `main.ts aggregate --trigger 1s`). Per tick, the time from its
 * ingest receive time (header ingest_ms, read back from the topic afterwards) to the first poll
 * (every 50 ms) that sees a price_windows row of its symbol with last_tick_at >= its event time.
 * p50 and p99 over each of three consecutive measurement windows. Target: p99 <= 1.5 s (issue 13). The
 * baseline is the wait for the next trigger alone, uniform in [0, 1 s) (analytic, not measured).
 * @module
 */

import { denoRunArgs } from "../../common/child.ts";
import type { Kafka } from "../../common/kafka.ts";
import { createLogger } from "../../common/log.ts";
import { percentile } from "../_stats.ts";
import { type Row, rowOf, type Suite, type SuiteContext } from "../_suite.ts";
import { symbols } from "./_data.ts";
import {
  benchKafka,
  benchPool,
  type Child,
  createTopic,
  delay,
  ensureSchema,
  spawnDeno,
  tail,
  topicSize,
  uniqueOf,
  waitFor,
} from "./_io.ts";

const RATE = 5000;
const SYMBOLS = 1000;
const POLL_MS = 50;

/** Env for pipeline children: the run's Kafka and PostgreSQL. */
export function childEnv(ctx: SuiteContext): Record<string, string> {
  return { KAFKA_BROKERS: ctx.config.brokers.join(","), DATABASE_URL: ctx.config.databaseUrl };
}

/** Stops a child: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: Child, graceMs = 5000): Promise<void> {
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await child.status.catch(() => {});
  clearTimeout(t);
}

/** Starts `main.ts simulate` on an ephemeral port; resolves with the child and its ws URL. */
export async function startSimulatorChild(
  ctx: SuiteContext,
  options: { rate: number; logFile?: string },
): Promise<{ child: Child; url: string }> {
  const { rate, logFile } = options;
  const flags = ["--port", "0", "--rate", String(rate)];
  if (logFile) flags.push("--log", logFile);
  const child = spawnDeno(denoRunArgs("simulate", flags, { allowAll: true }), childEnv(ctx));
  const line = await child.waitLine((l) => l.includes("listening on ws://"), 30_000);
  const url = /(ws:\/\/\S+)/.exec(line)![1];
  return { child, url: url.includes("?") ? url : `${url}?version=2` };
}

interface IngestedTick {
  symbol: string;
  time: number;
  ingestMs: number;
}

/** Reads every record of `topic` (fresh group): symbol, event time and ingest_ms header. */
async function readTicks(kafka: Kafka, ctx: SuiteContext, topic: string): Promise<IngestedTick[]> {
  const admin = kafka.admin();
  await admin.connect();
  const total = await topicSize(admin, topic);
  await admin.disconnect();
  const out: IngestedTick[] = [];
  const consumer = kafka.consumer({ groupId: uniqueOf(ctx, "fresh-read"), maxWaitTimeInMs: 250 });
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let seen = 0;
    await consumer.run({
      eachBatch: ({ batch }) => {
        for (const m of batch.messages) {
          seen++;
          const v = JSON.parse(String(m.value)) as { id: string; time: number };
          out.push({ symbol: v.id, time: v.time, ingestMs: Number(String(m.headers?.ingest_ms)) });
        }
        return Promise.resolve();
      },
    });
    await waitFor(() => seen >= total, {
      timeoutMs: 120_000,
      what: `reading back ${total} ticks`,
      everyMs: 20,
    });
  } finally {
    await consumer.disconnect().catch(() => {});
  }
  return out;
}

/** The freshness suite. */
export const freshnessSuite: Suite = {
  name: "freshness",
  title: "Freshness (ingest → visible row)",
  requires: ["ingest/ingest_main.ts", "aggregate/aggregate_main.ts", "ingest/simulate_main.ts"],
  async run(ctx: SuiteContext): Promise<Row[]> {
    const windowS = ctx.quick ? 10 : 40;
    const names = symbols(SYMBOLS, `${ctx.symbolPrefix}F`);
    const kafka = benchKafka(ctx.config);
    const admin = kafka.admin();
    await admin.connect();
    const topic = await createTopic(ctx, admin, { name: "fresh" });
    await admin.disconnect();
    const pool = benchPool(ctx.config, 1);
    await ensureSchema(pool);
    const log = createLogger("bench.freshness");
    const children: Child[] = [];
    try {
      const agg = spawnDeno(
        denoRunArgs("aggregate", [
          "--topic",
          topic,
          "--kv",
          `${ctx.dataDir}/${uniqueOf(ctx, "fresh")}.kv`,
          "--group",
          uniqueOf(ctx, "fresh-group"),
          "--trigger",
          "1s",
        ]),
        childEnv(ctx),
      );
      children.push(agg);
      const sim = await startSimulatorChild(ctx, { rate: RATE });
      children.push(sim.child);
      const ingest = spawnDeno(
        denoRunArgs("ingest", [
          "--source",
          sim.url,
          "--symbols",
          names.join(","),
          "--topic",
          topic,
          "--spool-dir",
          `${ctx.dataDir}/spool-fresh`,
          "--progress-every",
          "0",
        ], { allowAll: true }),
        childEnv(ctx),
      );
      children.push(ingest);

      // Poll: per symbol, the latest last_tick_at visible, with when we first saw it.
      const lo = `${ctx.symbolPrefix}F`;
      const seen = new Map<string, number>(); // symbol -> max last_tick_at ms
      const observations = new Map<string, [number, number][]>(); // symbol -> [observedAt, lastTick]
      let polling = true;
      let polls = 0;
      const poller = (async () => {
        while (polling) {
          const t = Date.now();
          const r = await pool.query<{ symbol: string; lt: string }>(
            `SELECT symbol, (extract(epoch FROM max(last_tick_at)) * 1000)::bigint AS lt
             FROM price_windows WHERE left(symbol, length($1)) = $1 GROUP BY symbol`,
            [lo],
          );
          const at = Date.now();
          polls++;
          for (const row of r.rows) {
            const lt = Number(row.lt);
            if (lt > (seen.get(row.symbol) ?? -Infinity)) {
              seen.set(row.symbol, lt);
              let list = observations.get(row.symbol);
              if (!list) observations.set(row.symbol, list = []);
              list.push([at, lt]);
            }
          }
          await delay(Math.max(0, POLL_MS - (Date.now() - t)));
        }
      })();

      await waitFor(
        async () => {
          for (const c of children) {
            const s = await Promise.race([c.status, delay(0).then(() => null)]);
            if (s !== null) {
              throw new Error(
                `A pipeline process exited early (code ${s.code}): ${tail(c.stderr)}`,
              );
            }
          }
          return seen.size > 0;
        },
        { timeoutMs: 60_000, what: "the first rows of the pipeline", everyMs: 200 },
      );
      log.info("Pipeline up; warming up 5 s");
      await delay(5000);
      const bounds: [number, number][] = [];
      for (let i = 0; i < 3; i++) {
        const from = Date.now();
        await delay(windowS * 1000);
        bounds.push([from, Date.now()]);
        log.info(`freshness window ${i + 1}/3 done`);
      }
      await stopChild(sim.child);
      await delay(4000); // let the last ticks reach PostgreSQL
      polling = false;
      await poller;

      // Every tick ingest wrote, with its ingest_ms header, read back once the pipeline stopped.
      await stopChild(ingest);
      const sent = await readTicks(kafka, ctx, topic);
      const hop = sent.length > 0 ? percentile(sent.map((t) => t.ingestMs - t.time), 50) : NaN;
      const p50: number[] = [];
      const p99: number[] = [];
      let unseen = 0;
      let counted = 0;
      for (const [from, to] of bounds) {
        const lat: number[] = [];
        for (const s of sent) {
          if (s.ingestMs < from || s.ingestMs >= to) continue;
          const obs = observations.get(s.symbol) ?? [];
          // First observation whose last tick is at or after this tick (binary search).
          let a = 0;
          let b = obs.length;
          while (a < b) {
            const m = (a + b) >> 1;
            if (obs[m][1] >= s.time) b = m;
            else a = m + 1;
          }
          if (a === obs.length) unseen++;
          else lat.push((obs[a][0] - s.ingestMs) / 1000);
        }
        counted += lat.length;
        if (lat.length === 0) {
          throw new Error(
            `No tick of a measurement window became visible (${sent.length} ticks read back, ` +
              `${observations.size} symbols seen); aggregator stdout: ${tail(agg.stdout, 1)}; ` +
              `stderr: ${tail(agg.stderr)}`,
          );
        }
        p50.push(percentile(lat, 50));
        p99.push(percentile(lat, 99));
      }
      if (unseen > counted * 0.01) {
        throw new Error(`${unseen} of ${unseen + counted} ticks never became visible`);
      }
      const note = `${RATE} ticks/s, ${SYMBOLS} symbols, 1 s trigger, 3 windows of ${windowS} s, ` +
        `${counted} ticks, ${unseen} not seen, poll ${POLL_MS} ms (${polls} polls), ` +
        `median event time → ingest_ms ${hop} ms`;
      const floor = (p: number) => [p, p, p];
      return [
        rowOf({
          suite: "freshness",
          metric: "p50 ingest_ms → row visible in PostgreSQL",
          unit: "s",
          ours: p50,
          baseline: floor(0.5),
          baselineLabel: "trigger wait alone, analytic",
          lowerIsBetter: true,
          note,
        }),
        rowOf({
          suite: "freshness",
          metric: "p99 ingest_ms → row visible in PostgreSQL",
          unit: "s",
          ours: p99,
          baseline: floor(0.99),
          baselineLabel: "trigger wait alone, analytic",
          lowerIsBetter: true,
          target: { op: "<=", value: 1.5, on: "value" },
        }),
      ];
    } finally {
      await Promise.all(children.map((c) => stopChild(c)));
      await pool.end().catch(() => {});
    }
  },
};
