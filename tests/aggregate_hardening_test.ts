// The aggregator against what the real world sends it (issue 12), on the real Kafka and
// PostgreSQL, each run as `deno run -P=aggregate main.ts aggregate` (its real permission set):
// - a hostile topic: 10,000 randomized bad records among normal ticks never stop it; the valid
//   ticks give exactly the oracle's rows; every bad record is in <topic>.dlq once, with its reason;
// - an operator reset (and a rebuild) keep the watermarks: a straggler after the reset is late,
//   and a final row never changes;
// - two topics with the same symbols keep separate rows;
// - a topic deleted and recreated under stored offsets stops with exit 4 and a clear message
//   (both when the new log is shorter and when it has grown past the stored offsets); the
//   sensor and `offsets` report it; `offsets reset` is the way out.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { createPool } from "../common/pg.ts";
import { migrate } from "../sql/migrate.ts";
import { readCheckpoint } from "../aggregate/mod.ts";
import { config, runCli, tempKvPath, testKafka, uniqueName } from "./_helpers/env.ts";
import {
  assertRowsEqual,
  cleanupRows,
  generateStream,
  oracle,
  readLate,
  readRows,
  type StreamRecord,
} from "./_helpers/aggregate_stream.ts";
import { hostileRecords } from "./_helpers/hostile.ts";
import { mulberry32 as prng } from "../common/prng.ts";

const WINDOW = 60_000;
const DELAY = 180_000;
const PARTS = 3;
const opts = { sanitizeOps: false, sanitizeResources: false };

/** One record as produced: a tick of the stream, or raw bytes with headers. */
interface Raw {
  key: string | null;
  value: Uint8Array | string;
  headers: Record<string, string>;
  timestamp: string;
}

function rawOf(r: StreamRecord): Raw {
  return {
    key: r.symbol,
    value: r.tick ? JSON.stringify(r.tick) : "{not json",
    headers: { ingest_ms: String(Date.now()) },
    timestamp: String(r.tick?.time ?? Date.now()),
  };
}

async function produce(
  kafka: ReturnType<typeof testKafka>,
  topic: string,
  parts: Raw[][],
): Promise<void> {
  const producer = kafka.producer({ allowAutoTopicCreation: false, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let p = 0; p < parts.length; p++) {
      // Batches of at most 500 records and about 400 KB (hostile values reach 100 KB).
      for (let i = 0; i < parts[p].length;) {
        let bytes = 0;
        let j = i;
        while (j < parts[p].length && j - i < 500 && (j === i || bytes < 400_000)) {
          bytes += parts[p][j].value.length + (parts[p][j].key?.length ?? 0) * 3;
          j++;
        }
        await producer.send({
          topic,
          acks: -1,
          messages: parts[p].slice(i, j).map((r) => ({
            partition: p,
            key: r.key,
            value: typeof r.value === "string" ? r.value : Buffer.from(r.value),
            timestamp: r.timestamp,
            headers: r.headers,
          })),
        });
        i = j;
      }
    }
  } finally {
    await producer.disconnect();
  }
}

/** Every record of `topic` (a fresh group, until `count` records or a quiet period). */
async function readAll(
  kafka: ReturnType<typeof testKafka>,
  topic: string,
  count: number,
): Promise<{ partition: number; offset: number; headers: Record<string, string> }[]> {
  const out: { partition: number; offset: number; headers: Record<string, string> }[] = [];
  const consumer = kafka.consumer({ groupId: uniqueName("hardening-read") });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let last = Date.now();
  await consumer.run({
    eachMessage: ({ partition, message }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
      out.push({ partition, offset: Number(message.offset), headers });
      last = Date.now();
      return Promise.resolve();
    },
  });
  const t0 = Date.now();
  while (out.length < count && Date.now() - t0 < 60_000) {
    await new Promise((r) => setTimeout(r, 200));
  }
  // A little longer, to see duplicates beyond the expected count.
  while (Date.now() - last < 1500) await new Promise((r) => setTimeout(r, 200));
  await consumer.disconnect();
  return out;
}

/** Creates `topic` as ingest does (no time-based retention: the streams' event times are old). */
async function createTopic(kafka: ReturnType<typeof testKafka>, topic: string) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await ensureTopic(admin, topic, { partitions: PARTS }))) {
      throw new Error(`Topic ${topic} exists (a deletion still in progress?)`);
    }
  } finally {
    await admin.disconnect();
  }
}

async function deleteTopics(kafka: ReturnType<typeof testKafka>, topics: string[]) {
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics }).catch(() => {});
  await admin.disconnect();
}

function aggregate(topic: string, kvPath: string, extra: string[] = []) {
  return runCli("aggregate", [
    "aggregate",
    "--topic",
    topic,
    "--kv",
    kvPath,
    "--trigger",
    "300ms",
    "--idle-timeout",
    "3s",
    "--windows",
    "1m",
    "--watermark",
    "3m",
    "--lease-ttl",
    "3s",
    ...extra,
  ], { timeoutMs: 180_000 });
}

Deno.test(
  "aggregate hardening: 10,000 hostile records never stop it; valid ticks = oracle; each bad record dead-lettered once with its reason",
  opts,
  async () => {
    const kafka = testKafka();
    const pool = createPool(config.databaseUrl);
    await migrate(pool);
    const topic = uniqueName("agg-hostile");
    const prefix = `HOST${crypto.randomUUID().slice(0, 6)}_`;
    const kvPath = await tempKvPath("agg-hostile");
    await createTopic(kafka, topic);
    try {
      const streams = generateStream({
        seed: 1212,
        prefix,
        perPartition: 2000,
        partitions: PARTS,
        windowMs: WINDOW,
        watermarkDelayMs: DELAY,
        volume: true,
      });
      const t0 = Math.min(...streams.flat().map((r) => r.tick?.time ?? Infinity));
      // "Now" for the generator is 10 minutes ahead of the aggregator's clock, so a record just
      // past the future bound when generated is still in the future when the aggregator reads it.
      const nowMs = Date.now() + 600_000;
      const bad = hostileRecords(10_000, {
        nowMs,
        prefix: `${prefix}H`,
        seed: 1212,
        validShare: 0,
        noTooLarge: true,
        times: { from: t0, to: t0 + 3_600_000 },
      }).filter((h) => h.reason !== null);
      assert.ok(bad.length >= 9_000, `the generator made ${bad.length} bad records`);
      // Mix the bad records into the partitions at random places.
      const rand = prng(77);
      const parts: { raw: Raw; stream: StreamRecord; reason: string | null }[][] = streams.map((
        s,
      ) => s.map((r) => ({ raw: rawOf(r), stream: r, reason: r.tick ? null : "not_json" })));
      for (const h of bad) {
        const p = Math.floor(rand() * PARTS);
        const at = Math.floor(rand() * (parts[p].length + 1));
        parts[p].splice(at, 0, {
          raw: { key: h.key, value: h.value, headers: h.headers, timestamp: String(Date.now()) },
          stream: { symbol: h.key ?? "", tick: null },
          reason: h.reason,
        });
      }
      await produce(kafka, topic, parts.map((p) => p.map((r) => r.raw)));
      const r = await aggregate(topic, kvPath);
      assert.equal(r.code, 0, r.stderr.slice(-3000));

      const expected = oracle(parts.map((p) => p.map((r) => r.stream)), {
        windows: [WINDOW],
        watermarkDelayMs: DELAY,
      });
      assertRowsEqual(await readRows(pool, prefix, { topic }), expected.rows);
      const late = await readLate(pool, topic);
      assert.deepEqual([...late].sort(), [...expected.late].sort(), "late ticks = oracle");

      const wanted = new Map<string, string>();
      parts.forEach((p, partition) =>
        p.forEach((r, offset) => {
          if (r.reason !== null) wanted.set(`${partition}:${offset}`, r.reason);
        })
      );
      const dlq = await readAll(kafka, `${topic}.dlq`, wanted.size);
      const seen = new Map<string, number>();
      for (const d of dlq) {
        const key = `${d.headers.source_partition}:${d.headers.source_offset}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        assert.equal(d.headers.reason, wanted.get(key), `reason of ${key}`);
        assert.equal(d.headers.source_topic, topic);
        assert.ok(d.headers.detail.length > 0, `detail of ${key}`);
      }
      assert.equal(seen.size, wanted.size, "every bad record is in the DLQ");
      assert.ok([...seen.values()].every((n) => n === 1), "each exactly once");
      const { rows: rejected } = await pool.query(
        "SELECT count(*)::int AS n FROM rejected_rows WHERE topic = $1",
        [topic],
      );
      assert.equal(rejected[0].n, 0, "validation caught everything before PostgreSQL");
      const { rows: prog } = await pool.query(
        "SELECT sum((progress->>'invalidRows')::int)::int AS n FROM aggregator_progress WHERE topic = $1",
        [topic],
      );
      assert.equal(prog[0].n, wanted.size, "invalid records are counted in progress");
    } finally {
      await cleanupRows(pool, prefix, topic).catch(() => {});
      await deleteTopics(kafka, [topic, `${topic}.dlq`]);
      await pool.end();
      for (const s of ["", "-wal", "-shm"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
);

Deno.test(
  "aggregate hardening: offsets reset and --rebuild keep the watermarks: a straggler is late, a final row never changes",
  opts,
  async () => {
    const kafka = testKafka();
    const pool = createPool(config.databaseUrl);
    await migrate(pool);
    const topic = uniqueName("agg-reset");
    const prefix = `RST${crypto.randomUUID().slice(0, 6)}_`;
    const kvPath = await tempKvPath("agg-reset");
    await createTopic(kafka, topic);
    try {
      const streams = generateStream({
        seed: 4242,
        prefix,
        perPartition: 600,
        partitions: PARTS,
        windowMs: WINDOW,
        watermarkDelayMs: DELAY,
      });
      await produce(kafka, topic, streams.map((s) => s.map(rawOf)));
      assert.equal((await aggregate(topic, kvPath)).code, 0);
      const before = await readRows(pool, prefix, { topic });
      const finals = [...before.values()].filter((r) => r.isFinal);
      assert.ok(finals.length > 10, "some windows are final");
      const target = finals[0];
      const { rows: snap } = await pool.query(
        "SELECT * FROM price_windows WHERE topic = $1 AND starts_with(symbol, $2) ORDER BY symbol, window_length, window_start",
        [topic, prefix],
      );

      // 1. Reset to latest, then a straggler for a final window (a higher offset).
      const reset = await runCli("offsets", [
        "offsets",
        "reset",
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--to",
        "latest",
        "--yes",
      ]);
      assert.equal(reset.code, 0, reset.stderr);
      const straggler: StreamRecord = {
        symbol: target.symbol,
        tick: { id: target.symbol, price: target.high + 1000, time: target.windowStart + 1 },
      };
      const parts: Raw[][] = Array.from({ length: PARTS }, () => []);
      parts[target.partition].push(rawOf(straggler));
      await produce(kafka, topic, parts);
      assert.equal((await aggregate(topic, kvPath)).code, 0);
      const { rows: after } = await pool.query(
        "SELECT * FROM price_windows WHERE topic = $1 AND starts_with(symbol, $2) ORDER BY symbol, window_length, window_start",
        [topic, prefix],
      );
      const finalKeys = new Set(finals.map((f) => `${f.symbol}|${f.windowStart}`));
      const keyOf = (r: { symbol: string; window_start: Date }) =>
        `${r.symbol}|${r.window_start.getTime()}`;
      assert.deepEqual(
        after.filter((r) => finalKeys.has(keyOf(r))),
        snap.filter((r) => finalKeys.has(keyOf(r))),
        "final rows unchanged",
      );
      const { rows: lateRows } = await pool.query(
        "SELECT kafka_partition, kafka_offset FROM late_ticks WHERE topic = $1 AND symbol = $2 AND price = $3",
        [topic, target.symbol, target.high + 1000],
      );
      assert.equal(lateRows.length, 1, "the straggler is recorded as late");

      // 2. A rebuild from the log start: final rows stay; no tick becomes late that was not.
      const lateBefore = await readLate(pool, topic);
      const rebuild = await aggregate(topic, kvPath, ["--rebuild", "--yes"]);
      assert.equal(rebuild.code, 0, rebuild.stderr.slice(-2000));
      const { rows: rebuilt } = await pool.query(
        "SELECT * FROM price_windows WHERE topic = $1 AND starts_with(symbol, $2) ORDER BY symbol, window_length, window_start",
        [topic, prefix],
      );
      assert.deepEqual(
        rebuilt.filter((r) => finalKeys.has(keyOf(r))),
        snap.filter((r) => finalKeys.has(keyOf(r))),
        "final rows unchanged by the rebuild",
      );
      assert.deepEqual(
        [...(await readLate(pool, topic))].sort(),
        [...lateBefore].sort(),
        "the rebuild adds no late tick: ticks read before are not reported again",
      );
    } finally {
      await cleanupRows(pool, prefix, topic).catch(() => {});
      await deleteTopics(kafka, [topic, `${topic}.dlq`]);
      await pool.end();
      for (const s of ["", "-wal", "-shm"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
);

Deno.test(
  "aggregate hardening: two topics with the same symbols keep their own rows",
  opts,
  async () => {
    const kafka = testKafka();
    const pool = createPool(config.databaseUrl);
    await migrate(pool);
    const prefix = `TWO${crypto.randomUUID().slice(0, 6)}_`;
    const topics = [uniqueName("agg-two-a"), uniqueName("agg-two-b")];
    const kvPath = await tempKvPath("agg-two");
    try {
      const results = [];
      for (const [i, topic] of topics.entries()) {
        await createTopic(kafka, topic);
        const streams = generateStream({
          seed: 500 + i, // same symbols (same prefix), other prices and times
          prefix,
          perPartition: 500,
          partitions: PARTS,
          windowMs: WINDOW,
          watermarkDelayMs: DELAY,
        });
        await produce(kafka, topic, streams.map((s) => s.map(rawOf)));
        results.push(streams);
      }
      for (const topic of topics) assert.equal((await aggregate(topic, kvPath)).code, 0);
      for (const [i, topic] of topics.entries()) {
        const expected = oracle(results[i], { windows: [WINDOW], watermarkDelayMs: DELAY });
        assertRowsEqual(await readRows(pool, prefix, { topic }), expected.rows);
      }
    } finally {
      for (const topic of topics) await cleanupRows(pool, prefix, topic).catch(() => {});
      await deleteTopics(kafka, topics.flatMap((t) => [t, `${t}.dlq`]));
      await pool.end();
      for (const s of ["", "-wal", "-shm"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
);

Deno.test(
  "aggregate hardening: a topic recreated under stored offsets stops with exit 4, is reported, and offsets reset is the way out",
  opts,
  async () => {
    const kafka = testKafka();
    const pool = createPool(config.databaseUrl);
    await migrate(pool);
    const prefix = `RCR${crypto.randomUUID().slice(0, 6)}_`;
    const topic = uniqueName("agg-recreate");
    const kvPath = await tempKvPath("agg-recreate");
    const gen = (seed: number, per: number) =>
      generateStream({
        seed,
        prefix,
        perPartition: per,
        partitions: PARTS,
        windowMs: WINDOW,
        watermarkDelayMs: DELAY,
      });
    const recreate = async (streams: StreamRecord[][]) => {
      await deleteTopics(kafka, [topic]);
      for (let i = 0; i < 50; i++) {
        try {
          await createTopic(kafka, topic);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 200)); // deletion still in progress
        }
      }
      await produce(kafka, topic, streams.map((s) => s.map(rawOf)));
    };
    try {
      await createTopic(kafka, topic);
      await produce(kafka, topic, gen(1, 400).map((s) => s.map(rawOf)));
      assert.equal((await aggregate(topic, kvPath)).code, 0);
      const kv = await openKv(kvPath);
      const stored = (await readCheckpoint(kv, topic))!.pointer.offsets;
      kv.close();
      assert.deepEqual(Object.values(stored), [400, 400, 400]);

      // a) The new log is shorter than the stored offsets.
      await recreate(gen(2, 50));
      const a = await aggregate(topic, kvPath);
      assert.equal(a.code, 4, a.stderr.slice(-2000));
      assert.match(a.stderr, /stored offset 400 is beyond the end offset 50/);
      assert.match(a.stderr, /offsets reset/);
      const sensor = await runCli("sensor", [
        "sensor",
        "--once",
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--windows",
        "1m",
        "--watermark",
        "3m",
      ]);
      assert.equal(sensor.code, 0, sensor.stderr);
      assert.match(sensor.stderr, /not the log the checkpoint was made against/);
      assert.doesNotMatch(sensor.stderr, /launched aggregator/);
      const report = await runCli("offsets", ["offsets", "--topic", topic, "--kv", kvPath]);
      assert.match(
        report.stdout,
        /IDENTITY MISMATCH.*stored offset 400 is beyond the end/,
        report.stdout,
      );
      const status = await runCli("status", [
        "status",
        "--json",
        "--no-rate",
        "--topic",
        topic,
        "--kv",
        kvPath,
      ]);
      assert.equal(status.code, 0, status.stderr);
      assert.match(JSON.parse(status.stdout).identityMismatch, /stored offset 400 is beyond/);

      // b) The new log has grown past the stored offsets: the record at 399 differs.
      await recreate(gen(3, 900));
      const b = await aggregate(topic, kvPath);
      assert.equal(b.code, 4, b.stderr.slice(-2000));
      assert.match(b.stderr, /record at offset 399 differs/);

      // The way out: offsets reset (watermarks kept), then the aggregator reads the new log.
      const reset = await runCli("offsets", [
        "offsets",
        "reset",
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--to",
        "earliest",
        "--yes",
      ]);
      assert.equal(reset.code, 0, reset.stderr);
      const c = await aggregate(topic, kvPath);
      assert.equal(c.code, 0, c.stderr.slice(-2000));
      const kv2 = await openKv(kvPath);
      const after = (await readCheckpoint(kv2, topic))!.pointer.offsets;
      kv2.close();
      assert.deepEqual(Object.values(after), [900, 900, 900], "the new log was read to its end");
    } finally {
      await cleanupRows(pool, prefix, topic).catch(() => {});
      await deleteTopics(kafka, [topic, `${topic}.dlq`]);
      await pool.end();
      for (const s of ["", "-wal", "-shm"]) await Deno.remove(kvPath + s).catch(() => {});
    }
  },
);
