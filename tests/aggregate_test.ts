// The aggregator end to end against the real Kafka and PostgreSQL: exact rows vs an independent
// oracle, the lease (exit 3), idle shutdown and continuation, kill -9 at random points, and
// PostgreSQL connections killed mid-run.
import assert from "node:assert/strict";
import { ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { createLogger } from "../common/log.ts";
import { createPool } from "../common/pg.ts";
import { migrate } from "../sql/migrate.ts";
import {
  type AggregatorOptions,
  checkpointSummary,
  readCheckpoint,
  readLease,
  readProgress,
  runAggregator,
} from "../aggregate/mod.ts";
import { config, quietLogger, tempKvPath, testKafka, uniqueName } from "./_helpers/env.ts";
import {
  assertRowsEqual,
  cleanupRows,
  generateStream,
  oracle,
  produceStream,
  readLate,
  readRows,
  type StreamRecord,
} from "./_helpers/aggregate_stream.ts";
import { startTcpProxy } from "./_helpers/aggregate_proxy.ts";

const WINDOW = 60_000;
const DELAY = 180_000;
const PARTS = 3;
const opts = { sanitizeOps: false, sanitizeResources: false };

interface Env {
  topic: string;
  prefix: string;
  kvPath: string;
  kv: Deno.Kv;
  pool: ReturnType<typeof createPool>;
  kafka: ReturnType<typeof testKafka>;
  streams: StreamRecord[][];
}

async function setup(name: string, seed: number, perPartition: number, appName?: string) {
  const topic = uniqueName(`agg-${name}`);
  const prefix = `${name.toUpperCase()}${crypto.randomUUID().slice(0, 6)}_`;
  const kvPath = await tempKvPath(`agg-${name}`);
  const kv = await openKv(kvPath);
  const pool = createPool(config.databaseUrl, { applicationName: appName ?? "tickpipe-test" });
  await migrate(pool);
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  // Ingest's tick topic configuration: the stream's event times are in 2024, and with the broker's
  // time-based retention Kafka would delete them while the test reads.
  await ensureTopic(admin, topic, { partitions: PARTS });
  await admin.disconnect();
  const streams = generateStream({
    seed,
    prefix,
    perPartition,
    partitions: PARTS,
    windowMs: WINDOW,
    watermarkDelayMs: DELAY,
  });
  return { topic, prefix, kvPath, kv, pool, kafka, streams } satisfies Env;
}

async function teardown(env: Env) {
  await cleanupRows(env.pool, env.prefix, env.topic).catch(() => {});
  const admin = env.kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [env.topic] }).catch(() => {});
  await admin.disconnect();
  await env.pool.end();
  env.kv.close();
  for (const s of ["", "-wal", "-shm"]) await Deno.remove(env.kvPath + s).catch(() => {});
}

function aggOptions(env: Env, extra: Partial<AggregatorOptions> = {}): AggregatorOptions {
  return {
    topic: env.topic,
    groupId: uniqueName("agg-group"),
    triggerMs: 300,
    idleTimeoutMs: 60_000,
    windows: [WINDOW],
    watermarkDelayMs: DELAY,
    leaseTtlMs: 3000,
    ...extra,
  };
}

/** Waits until the KV checkpoint's offsets reach `counts` per partition. */
async function waitForOffsets(kv: Deno.Kv, topic: string, count: number, timeoutMs = 60_000) {
  const t0 = Date.now();
  for (;;) {
    const cp = await readCheckpoint(kv, topic);
    const offs = cp?.pointer.offsets ?? {};
    if (Array.from({ length: PARTS }, (_, p) => offs[p] ?? 0).every((o) => o >= count)) return;
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`Timed out waiting for offsets ${count}: ${JSON.stringify(offs)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test(
  "aggregate: generated stream over 3 partitions gives exactly the oracle's rows",
  opts,
  async () => {
    const env = await setup("oracle", 42, 900);
    try {
      const lines: string[] = [];
      await produceStream(env.kafka, env.topic, env.streams, { from: 0, to: 450 });
      const h = await runAggregator(
        {
          kafka: env.kafka,
          pool: env.pool,
          kv: env.kv,
          logger: quietLogger,
          writeProgress: (l) => lines.push(l),
        },
        aggOptions(env),
      );
      await waitForOffsets(env.kv, env.topic, 450);
      assert.equal((await readLease(env.kv, env.topic))?.lease.holder, h.runId);
      await produceStream(env.kafka, env.topic, env.streams, { from: 450, to: 900 });
      await waitForOffsets(env.kv, env.topic, 900);
      const result = await h.stop();
      assert.equal(result.reason, "stopped", String(result.error?.message));
      const expected = oracle(env.streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
      assert.ok([...expected.rows.values()].some((r) => r.isFinal));
      assert.ok([...expected.rows.values()].some((r) => !r.isFinal));
      assert.ok(expected.late.size > 10, `late ticks generated: ${expected.late.size}`);
      assertRowsEqual(await readRows(env.pool, env.prefix), expected.rows, WINDOW);
      assert.deepEqual(
        [...(await readLate(env.pool, env.topic))].sort(),
        [...expected.late].sort(),
      );
      // Progress: JSON lines, PG rows, the latest in KV; the invalid record was counted.
      const progress = lines.map((l) => JSON.parse(l));
      assert.ok(progress.length >= 2);
      assert.equal(progress.reduce((n, p) => n + p.inputRows, 0), 900 * PARTS);
      assert.equal(progress.reduce((n, p) => n + p.invalidRows, 0), 1);
      assert.equal(progress.reduce((n, p) => n + p.lateDropped, 0), expected.late.size);
      const last = progress.at(-1);
      assert.equal(last.reason, "final");
      assert.deepEqual(last.offsets, { "0": 900, "1": 900, "2": 900 });
      assert.deepEqual((await readProgress(env.kv, env.topic))?.batchId, last.batchId);
      const { rows } = await env.pool.query(
        "SELECT count(*)::int AS n FROM aggregator_progress WHERE run_id = $1",
        [h.runId],
      );
      assert.equal(rows[0].n, progress.length);
      assert.equal(await readLease(env.kv, env.topic), null, "lease released");
    } finally {
      await teardown(env);
    }
  },
);

Deno.test(
  "aggregate: second aggregator exits 3; idle timeout exits 0 and the next run continues",
  opts,
  async () => {
    const env = await setup("idle", 7, 600);
    try {
      await produceStream(env.kafka, env.topic, env.streams, { from: 0, to: 300 });
      const deps = {
        kafka: env.kafka,
        pool: env.pool,
        kv: env.kv,
        logger: quietLogger,
        writeProgress: () => {},
      };
      const a = await runAggregator(deps, aggOptions(env, { idleTimeoutMs: 4000 }));
      const second = await runCliAggregate(env, ["--idle-timeout", "2s"], { timeoutMs: 60_000 });
      assert.equal(second.code, 3, second.stderr);
      assert.match(second.stderr, new RegExp(`leased by ${a.runId}`));
      const ra = await a.done;
      assert.equal(ra.reason, "idle", String(ra.error?.message));
      assert.equal(await readLease(env.kv, env.topic), null);
      const cp = await readCheckpoint(env.kv, env.topic);
      assert.deepEqual(cp?.pointer.offsets, { "0": 300, "1": 300, "2": 300 });
      // Second half, through the CLI (real permission set), until idle: exit 0.
      await produceStream(env.kafka, env.topic, env.streams, { from: 300, to: 600 });
      const group = uniqueName("agg-offsets");
      const b = await runCliAggregate(env, ["--idle-timeout", "3s", "--group", group], {
        timeoutMs: 90_000,
      });
      assert.equal(b.code, 0, b.stderr);
      // Kafka tools see the same offsets as KV in the stable group (KV stays the truth).
      const kvOffsets = (await readCheckpoint(env.kv, env.topic))!.pointer.offsets;
      const admin = env.kafka.admin();
      await admin.connect();
      try {
        const [committed] = await admin.fetchOffsets({ groupId: group, topics: [env.topic] });
        const byPartition = Object.fromEntries(
          committed.partitions.map((p) => [String(p.partition), Number(p.offset)]),
        );
        assert.deepEqual(byPartition, kvOffsets);
      } finally {
        await admin.disconnect();
      }
      const expected = oracle(env.streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
      // A window that spans both runs (ticks before and after offset 300) has the full count.
      const first = oracle(env.streams.map((s) => s.slice(0, 300)), {
        windowMs: WINDOW,
        watermarkDelayMs: DELAY,
      });
      const spanning = [...expected.rows.entries()].filter(([k, r]) => {
        const f = first.rows.get(k);
        return f !== undefined && !f.isFinal && f.count < r.count;
      });
      assert.ok(spanning.length > 0, "some window spans both runs");
      assertRowsEqual(await readRows(env.pool, env.prefix), expected.rows, WINDOW);
      assert.deepEqual(
        [...(await readLate(env.pool, env.topic))].sort(),
        [...expected.late].sort(),
      );
    } finally {
      await teardown(env);
    }
  },
);

function cliArgs(env: Env, extra: string[]): string[] {
  return [
    "aggregate",
    "--topic",
    env.topic,
    "--kv",
    env.kvPath,
    "--trigger",
    "1s",
    "--windows",
    "1m",
    "--watermark",
    "3m",
    "--lease-ttl",
    "2s",
    "--group",
    uniqueName("agg-group"),
    ...extra,
  ];
}

/** Spawns `main.ts <args>` under the aggregate permission set (stderr piped, stdin closed). */
function spawnAggregate(
  args: string[],
  o: { logLevel?: string; stdout?: "null" | "piped" } = {},
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "-P=aggregate", "main.ts", ...args],
    env: { NO_COLOR: "1", LOG_LEVEL: o.logLevel ?? "warn" },
    stdout: o.stdout ?? "null",
    stderr: "piped",
    stdin: "null",
  }).spawn();
}

async function runCliAggregate(env: Env, extra: string[], o: { timeoutMs: number }) {
  const child = spawnAggregate(cliArgs(env, extra), { stdout: "piped" });
  const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test(
  "aggregate: kill -9 at random points, restarted each time: same rows, no row regresses",
  opts,
  async () => {
    const env = await setup("kill", 99, 1200);
    const seen = new Map<string, { count: number; isFinal: boolean }>();
    const violations: string[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const rows = await readRows(env.pool, env.prefix);
        for (const [k, r] of rows) {
          const prev = seen.get(k);
          if (prev && (r.count < prev.count || (prev.isFinal && !r.isFinal))) {
            violations.push(`${k}: ${JSON.stringify(prev)} -> ${r.count}/${r.isFinal}`);
          }
          seen.set(k, { count: r.count, isFinal: r.isFinal });
        }
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    try {
      let rnd = 12345;
      const next = () => (rnd = (rnd * 1103515245 + 12345) % 2147483648) / 2147483648;
      const chunks = [0, 300, 600, 900, 1200];
      let kills = 0;
      for (let i = 0; i < 4; i++) {
        await produceStream(env.kafka, env.topic, env.streams, {
          from: chunks[i],
          to: chunks[i + 1],
        });
        const child = spawnAggregate(cliArgs(env, []));
        const out = child.output();
        await new Promise((r) => setTimeout(r, 2500 + next() * 3500));
        child.kill("SIGKILL");
        const o = await out;
        // Only a run that was still going counts as killed (one that had exited on its own,
        // lease refused or failed, would make this test vacuous).
        assert.equal(
          o.signal,
          "SIGKILL",
          `run ${i} had exited (code ${o.code}) before the kill: ${
            new TextDecoder().decode(o.stderr)
          }`,
        );
        kills++;
        // No wait for the killed run's lease (2 s TTL) to expire: the next run takes the host's
        // process lock the kernel released, so it takes a dead holder's lease over at once (a
        // run refused with exit 3 would fail the next iteration's SIGKILL check).
      }
      assert.equal(kills, 4);
      const mid = await readCheckpoint(env.kv, env.topic);
      assert.ok(
        (mid ? checkpointSummary(mid.pointer).generation : 0) > 1,
        "the killed runs did checkpoint",
      );
      const last = await runCliAggregate(env, ["--idle-timeout", "3s"], { timeoutMs: 90_000 });
      assert.equal(last.code, 0, last.stderr);
      await new Promise((r) => setTimeout(r, 300));
      polling = false;
      await poller;
      assert.deepEqual(violations, [], "no row ever regressed");
      const expected = oracle(env.streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
      assertRowsEqual(await readRows(env.pool, env.prefix), expected.rows, WINDOW);
      assert.deepEqual(
        [...(await readLate(env.pool, env.topic))].sort(),
        [...expected.late].sort(),
      );
    } finally {
      polling = false;
      await poller.catch(() => {});
      await teardown(env);
    }
  },
);

Deno.test(
  "aggregate: buffer-full triggers hold open rows back; kill -9 after one, the restart re-sends them",
  opts,
  async () => {
    const env = await setup("defer", 4242, 15_200);
    try {
      // A long interval: after the first catch-up, only buffer-full triggers (200 records) run
      // until the consumer has caught up again.
      const args = cliArgs(env, ["--max-buffered", "200"]).map((a) => a === "1s" ? "60s" : a);
      const start = () => spawnAggregate(args, { logLevel: "info" });
      await produceStream(env.kafka, env.topic, env.streams, { from: 0, to: 200 });
      let held = null;
      const dec = new TextDecoder();
      let restartLog = "";
      // Each attempt: a run catches up, more ticks arrive, and the run is killed as soon as a
      // buffer-full trigger has checkpointed with rows held back. The next trigger may win the
      // race with the kill; then the attempt proves nothing and the next one runs.
      // Chunks of several fetches (a fetch brings about 850 records a partition, and kafkajs has
      // the next one in flight before the consumer is held at twice --max-buffered), so that
      // buffer-full triggers run while the log is ahead of the consumer. With 1,600 records a
      // partition a fast run read a whole chunk before its first trigger, which then had caught
      // up and held nothing back, in every attempt.
      const chunks = [[200, 5200], [5200, 10_200], [10_200, 15_200]];
      for (const [from, to] of chunks) {
        const child = start();
        const out = child.output();
        await waitForOffsets(env.kv, env.topic, from);
        await produceStream(env.kafka, env.topic, env.streams, { from, to });
        const t0 = Date.now();
        while (Date.now() - t0 < 60_000) {
          const cp = await readCheckpoint(env.kv, env.topic);
          const total = Object.values(cp?.pointer.offsets ?? {}).reduce((a, b) => a + b, 0);
          if (cp?.pointer.openRowsDeferred || total >= PARTS * to) break;
          await new Promise((r) => setTimeout(r, 5));
        }
        child.kill("SIGKILL");
        const o = await out;
        assert.equal(o.signal, "SIGKILL", dec.decode(o.stderr));
        if (restartLog === "" && held !== null) restartLog = dec.decode(o.stderr);
        await new Promise((r) => setTimeout(r, 2100)); // the killed run's lease expires
        const cp = (await readCheckpoint(env.kv, env.topic))!;
        if (cp.pointer.openRowsDeferred && held === null) held = cp;
      }
      assert.ok(held !== null, "a run was killed after a checkpoint with open rows held back");
      // The last run reads what is left; the rows must equal the oracle. Later ticks make most
      // held windows final, which writes them anyway, so that the restart re-sends what it
      // restored is asserted on its log (the DB effect of a re-send: tests/unit/deferred_test.ts).
      const last = await runCliAggregate(env, ["--idle-timeout", "3s"], { timeoutMs: 90_000 });
      assert.equal(last.code, 0, last.stderr);
      if (restartLog === "") restartLog = last.stderr;
      // The restart after a checkpoint with rows held back re-sends every window it restored.
      const restored = /restored checkpoint.*"?openWindows"?[=:](\d+).*"?resent"?[=:](\d+)/.exec(
        restartLog,
      );
      assert.ok(restored !== null, restartLog);
      assert.ok(Number(restored[1]) > 0, restored[0]);
      assert.equal(restored[2], restored[1], restored[0]);
      const expected = oracle(env.streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
      assertRowsEqual(await readRows(env.pool, env.prefix), expected.rows, WINDOW);
      assert.equal((await readCheckpoint(env.kv, env.topic))!.pointer.openRowsDeferred, undefined);
    } finally {
      await teardown(env);
    }
  },
);

Deno.test(
  "aggregate: a backlog's checkpoints are whole-state bases (no compaction); a restart restores one",
  opts,
  async () => {
    const env = await setup("wholestate", 5150, 4000);
    try {
      await produceStream(env.kafka, env.topic, env.streams, { from: 0, to: 500 });
      const lines: string[] = [];
      const logger = createLogger("aggregate", { level: "debug", write: (l) => lines.push(l) });
      const bases = new Set<number>();
      let maxDeltas = 0;
      let watching = true;
      const watch = (async () => {
        while (watching) {
          const p = (await readCheckpoint(env.kv, env.topic))?.pointer;
          if (p?.base) bases.add(p.base.generation);
          maxDeltas = Math.max(maxDeltas, p?.deltas.length ?? 0);
          await new Promise((r) => setTimeout(r, 2));
        }
      })();
      // Chunks of 500 records a partition, each read by its own triggers: a chunk covers about
      // 15 minutes of event time, so its delta (windows changed and made final) is larger than
      // the state (the open windows), as on a backlog.
      const h = await runAggregator(
        { kafka: env.kafka, pool: env.pool, kv: env.kv, logger, writeProgress: () => {} },
        aggOptions(env),
      );
      await waitForOffsets(env.kv, env.topic, 500);
      for (let to = 1000; to <= 3000; to += 500) {
        await produceStream(env.kafka, env.topic, env.streams, { from: to - 500, to });
        await waitForOffsets(env.kv, env.topic, to);
      }
      const first = await h.stop();
      watching = false;
      await watch;
      assert.equal(first.reason, "stopped", String(first.error?.message));
      assert.ok(bases.size >= 5, `bases written by triggers: ${[...bases]}`);
      assert.ok(maxDeltas <= 1, `deltas never pile up (${maxDeltas})`);
      assert.equal(lines.filter((l) => /checkpoint compacted/.test(l)).length, 0, "no compaction");
      const cp = (await readCheckpoint(env.kv, env.topic))!.pointer;
      assert.ok(cp.base !== null && cp.openWindows > 0, JSON.stringify(checkpointSummary(cp)));
      // The next run restores that state and goes on; rows equal the oracle of the whole stream.
      await produceStream(env.kafka, env.topic, env.streams, { from: 3000, to: 4000 });
      const h2 = await runAggregator(
        { kafka: env.kafka, pool: env.pool, kv: env.kv, logger, writeProgress: () => {} },
        aggOptions(env),
      );
      await waitForOffsets(env.kv, env.topic, 4000);
      const second = await h2.stop();
      assert.equal(second.reason, "stopped", String(second.error?.message));
      assert.ok(
        lines.some((l) =>
          /restored checkpoint/.test(l) &&
          new RegExp(`openWindows[=:]"?${cp.openWindows}\\b`).test(l)
        ),
        "the second run restored the base",
      );
      const expected = oracle(env.streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
      assertRowsEqual(await readRows(env.pool, env.prefix), expected.rows, WINDOW);
      assert.deepEqual(
        [...(await readLate(env.pool, env.topic))].sort(),
        [...expected.late].sort(),
      );
    } finally {
      await teardown(env);
    }
  },
);

Deno.test(
  "aggregate: PostgreSQL unreachable mid-run (TCP proxy cut): no loss, no crash, oracle rows",
  opts,
  async () => {
    const env = await setup("pgdown", 2024, 900);
    const url = new URL(config.databaseUrl);
    const proxy = startTcpProxy({ hostname: url.hostname, port: Number(url.port || 5432) });
    url.hostname = "127.0.0.1";
    url.port = String(proxy.port);
    const pool = createPool(url.toString(), { applicationName: "tickpipe-test-agg-proxy" });
    try {
      const logLines: string[] = [];
      const logger = createLogger("aggregate", { level: "info", write: (l) => logLines.push(l) });
      await produceStream(env.kafka, env.topic, env.streams, { from: 0, to: 300 });
      const h = await runAggregator(
        { kafka: env.kafka, pool, kv: env.kv, logger, writeProgress: () => {} },
        aggOptions(env, { maxBuffered: 500 }),
      );
      await waitForOffsets(env.kv, env.topic, 300);
      // PostgreSQL "down" for the aggregator for 4 s while more ticks arrive: the checkpoint
      // must not advance.
      proxy.down();
      await new Promise((r) => setTimeout(r, 700)); // a checkpoint already past PG may finish
      const before = (await readCheckpoint(env.kv, env.topic))!.pointer.offsets;
      await produceStream(env.kafka, env.topic, env.streams, { from: 300, to: 900 });
      await new Promise((r) => setTimeout(r, 4000));
      const during = (await readCheckpoint(env.kv, env.topic))!.pointer.offsets;
      assert.deepEqual(during, before, "offsets not advanced while PostgreSQL is down");
      assert.ok(logLines.some((l) => /consumer paused/.test(l)), "paused above --max-buffered");
      proxy.up();
      await waitForOffsets(env.kv, env.topic, 900, 90_000);
      const result = await h.stop();
      assert.equal(result.reason, "stopped", String(result.error?.message));
      assert.equal(logLines.filter((l) => /postgres down/.test(l)).length, 1, "one down line");
      assert.equal(logLines.filter((l) => /postgres up/.test(l)).length, 1, "one up line");
      assert.ok(logLines.some((l) => /consumer resumed/.test(l)));
      const expected = oracle(env.streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
      assertRowsEqual(await readRows(env.pool, env.prefix), expected.rows, WINDOW);
      assert.deepEqual(
        [...(await readLate(env.pool, env.topic))].sort(),
        [...expected.late].sort(),
      );
    } finally {
      await pool.end().catch(() => {});
      await proxy.close();
      await teardown(env);
    }
  },
);

Deno.test(
  "aggregate cli: --from-beginning needs --yes (exit 2); SIGTERM exits 0 after a final checkpoint; rebuild",
  opts,
  async () => {
    const env = await setup("sigterm", 5, 300);
    try {
      const refused = await runCliAggregate(env, ["--from-beginning"], { timeoutMs: 30_000 });
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /--from-beginning .* add --yes/);
      await produceStream(env.kafka, env.topic, env.streams, { from: 0, to: 300 });
      const child = spawnAggregate(cliArgs(env, []), { stdout: "piped" });
      const out = child.output();
      await waitForOffsets(env.kv, env.topic, 300);
      child.kill("SIGTERM");
      const o = await out;
      assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
      const lines = new TextDecoder().decode(o.stdout).trim().split("\n").map((l) => JSON.parse(l));
      assert.equal(lines.at(-1).reason, "final", "the last progress line is the final trigger");
      assert.equal(await readLease(env.kv, env.topic), null, "lease released");
      const expected = oracle(env.streams, { windowMs: WINDOW, watermarkDelayMs: DELAY });
      assertRowsEqual(await readRows(env.pool, env.prefix), expected.rows, WINDOW);
      // Rebuild from the earliest offsets: same rows, checkpoint rebuilt (generation restarts).
      const rebuilt = await runCliAggregate(env, [
        "--from-beginning",
        "--yes",
        "--idle-timeout",
        "2s",
      ], {
        timeoutMs: 60_000,
      });
      assert.equal(rebuilt.code, 0, rebuilt.stderr);
      const cp = await readCheckpoint(env.kv, env.topic);
      assert.deepEqual(cp?.pointer.offsets, { "0": 300, "1": 300, "2": 300 });
      assertRowsEqual(await readRows(env.pool, env.prefix), expected.rows, WINDOW);
    } finally {
      await teardown(env);
    }
  },
);
