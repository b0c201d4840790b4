// The sensor against the real Kafka broker, Deno KV and the real aggregator
// (launched by the sensor under -P=sensor as `deno run -P=aggregate ...`):
// no launch for an empty topic, exactly one aggregator with two racing
// sensors, nothing after the topic is drained, a continuing run on new ticks,
// `offsets --json` agreeing with Kafka and KV, crash-loop backoff.
import assert from "node:assert/strict";
import { endOffsets, ensureTopic } from "../common/kafka.ts";
import { openKv } from "../common/kv.ts";
import { createLogger } from "../common/log.ts";
import { createSensor } from "../sensor/mod.ts";
import { faultyKv } from "./_helpers/faulty_kv.ts";
import { config, runCli, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";

const AGG = ["--trigger", "1s", "--idle-timeout", "3s"];

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
          value: JSON.stringify({ id, price: 1.5 + i, time: t0 + i * 100 }),
          headers: { ingest_ms: String(Date.now()) },
        };
      }),
    });
  } finally {
    await producer.disconnect();
  }
}

function sensor(topic: string, kv: string, extra: string[] = [], env: Record<string, string> = {}) {
  return runCli("sensor", [
    "sensor",
    "--once",
    "--wait",
    "--topic",
    topic,
    "--kv",
    kv,
    ...AGG,
    ...extra,
  ], { env, timeoutMs: 90_000 });
}

async function offsetsJson(topic: string, kv: string) {
  const r = await runCli("offsets", ["offsets", "--json", "--topic", topic, "--kv", kv]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function launches(kvPath: string, topic: string) {
  const kv = await openKv(kvPath);
  try {
    return (await kv.get<{ pid: number; exitCode: number | null }[]>([
      "tickpipe",
      topic,
      "sensor",
      "launches",
    ])).value ?? [];
  } finally {
    kv.close();
  }
}

async function cleanup(kafka: Kafka, topic: string, kvPath: string, symbols: string[]) {
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic] }).catch(() => {});
  await admin.disconnect();
  for (const suffix of ["", "-shm", "-wal"]) await Deno.remove(kvPath + suffix).catch(() => {});
  if (symbols.length > 0) {
    const pool = testPool();
    try {
      await pool.query("DELETE FROM price_windows WHERE symbol = ANY($1)", [symbols]);
      await pool.query("DELETE FROM late_ticks WHERE symbol = ANY($1)", [symbols]).catch(() => {});
    } finally {
      await pool.end();
    }
  }
}

async function tickCount(symbols: string[]): Promise<number> {
  const pool = testPool();
  try {
    const r = await pool.query(
      "SELECT COALESCE(SUM(tick_count), 0)::int AS n FROM price_windows WHERE symbol = ANY($1)",
      [symbols],
    );
    return r.rows[0].n;
  } finally {
    await pool.end();
  }
}

const aggregatorReady = async () => {
  try {
    await Deno.stat("aggregate/aggregate_main.ts");
    return true;
  } catch {
    return false;
  }
};
const AGGREGATOR_MISSING = !(await aggregatorReady());
if (AGGREGATOR_MISSING) {
  console.log(
    "sensor_launch_test: aggregate/aggregate_main.ts not there yet: launch tests ignored",
  );
}

Deno.test({
  name: "sensor: empty topic -> no launch; decision logged with partitions and offsets",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-sensor-empty");
    const kvPath = await tempKvPath("sensor-empty");
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureTopic(admin, topic, { partitions: 3 });
      const r = await sensor(topic, kvPath);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stderr,
        /decision: skip: no new data .*partitions=0,1,2 end=0,0,0 stored=-,-,-/,
      );
      assert.match(r.stderr, /unread=0/);
      assert.doesNotMatch(r.stderr, /launched aggregator/);
      assert.deepEqual(await launches(kvPath, topic), []);
      // A topic that does not exist yet is "no new data" too, not an error.
      const missing = await sensor(uniqueName("t-sensor-missing"), kvPath);
      assert.equal(missing.code, 0, missing.stderr);
      assert.match(missing.stderr, /skip: no new data .*partitions=none/);
    } finally {
      await admin.disconnect();
      await cleanup(kafka, topic, kvPath, []);
    }
  },
});

Deno.test({
  name:
    "sensor: two racing sensors launch exactly one aggregator; drained -> no launch; new ticks -> a run that continues",
  ignore: AGGREGATOR_MISSING,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-sensor-race");
    const kvPath = await tempKvPath("sensor-race");
    const tag = crypto.randomUUID().slice(0, 6).toUpperCase();
    const symbols = [`SA${tag}`, `SB${tag}`, `SC${tag}`];
    const admin = kafka.admin();
    await admin.connect();
    try {
      assert.equal((await runCli("migrate", ["migrate"])).code, 0);
      await ensureTopic(admin, topic, { partitions: 3 });
      await produceTicks(kafka, topic, symbols, 30);

      const [a, b] = await Promise.all([sensor(topic, kvPath), sensor(topic, kvPath)]);
      const out = a.stderr + b.stderr;
      assert.ok([0, 3].includes(a.code), a.stderr);
      assert.ok([0, 3].includes(b.code), b.stderr);
      assert.match(out, /\[aggregate\] /, "child output streamed with a prefix");
      assert.ok(!out.includes(":postgres@"), "database password never printed");
      const l1 = await launches(kvPath, topic);
      assert.ok(l1.length >= 1 && l1.length <= 2, JSON.stringify(l1));
      // Exactly one aggregator ran; a second launch (if any) found the lease and exited 3.
      assert.equal(l1.filter((l) => l.exitCode === 0).length, 1, JSON.stringify(l1));
      assert.ok(l1.every((l) => l.exitCode === 0 || l.exitCode === 3), JSON.stringify(l1));
      if (l1.length === 1) assert.match(out, /skip: (lease held by|child running)/);

      const ends = await endOffsets(admin, topic);
      const o1 = await offsetsJson(topic, kvPath);
      // A partition that never got a tick may have no stored offset (= its start, 0).
      type Row = { partition: number; stored: number | null; start: number; end: number };
      assert.deepEqual(
        o1.partitions.map((p: Row) => [p.partition, p.stored ?? p.start, p.end]),
        [...ends.entries()].map(([p, e]) => [p, e, e]),
      );
      assert.equal(o1.lag, 0);
      assert.ok(o1.checkpoint.generation >= 1);
      assert.equal(o1.lease === null || o1.lease.live === false, true, "lease released");
      assert.equal(await tickCount(symbols), 30);

      // Drained: nothing to do.
      const idle = await sensor(topic, kvPath);
      assert.equal(idle.code, 0, idle.stderr);
      assert.match(idle.stderr, /skip: no new data .*unread=0/);
      assert.equal((await launches(kvPath, topic)).length, l1.length);

      // New ticks: one more launch, continuing from the stored offsets.
      await produceTicks(kafka, topic, symbols, 12);
      const again = await sensor(topic, kvPath);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, /decision: launch .*unread=12/);
      const l2 = await launches(kvPath, topic);
      assert.equal(l2.length, l1.length + 1);
      assert.equal(l2.at(-1)!.exitCode, 0);
      const o2 = await offsetsJson(topic, kvPath);
      const ends2 = await endOffsets(admin, topic);
      assert.deepEqual(
        o2.partitions.map((p: Row) => p.stored ?? p.start),
        [...ends2.values()],
      );
      assert.ok(o2.checkpoint.generation > o1.checkpoint.generation);
      assert.equal(await tickCount(symbols), 42, "every tick counted exactly once");
    } finally {
      await admin.disconnect();
      await cleanup(kafka, topic, kvPath, symbols);
    }
  },
});

Deno.test({
  name: "sensor: failing aggregator runs are recorded and damp further launches (backoff)",
  ignore: AGGREGATOR_MISSING,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-sensor-crash");
    const kvPath = await tempKvPath("sensor-crash");
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureTopic(admin, topic, { partitions: 1 });
      await produceTicks(kafka, topic, ["CRASHX"], 3);
      // Nobody listens there: the aggregator fails (exit 1: an outage), which is a crash for the
      // sensor. (A database PostgreSQL refuses would be a configuration error, exit 2, which
      // stops the sensor instead of backing off.)
      const bad = { DATABASE_URL: "postgres://postgres:postgres@127.0.0.1:1/tickpipe" };
      const r1 = await sensor(topic, kvPath, ["--backoff-base", "10m"], bad);
      assert.equal(r1.code, 1, r1.stderr); // --wait: the aggregator's exit code
      assert.match(r1.stderr, /aggregator failed .*consecutiveFailures=1/);
      const r2 = await sensor(topic, kvPath, ["--backoff-base", "10m"], bad);
      assert.equal(r2.code, 0, r2.stderr);
      assert.match(r2.stderr, /skip: backoff after 1 failure \(last exit code \d+\) until /);
      assert.equal((await launches(kvPath, topic)).length, 1);
    } finally {
      await admin.disconnect();
      await cleanup(kafka, topic, kvPath, []);
    }
  },
});

Deno.test({
  name: "sensor: bad flags exit 2 naming the flag",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const a = await runCli("sensor", ["sensor", "--min-new", "0"]);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /--min-new "0"/);
    const b = await runCli("sensor", ["sensor", "--wait"]);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /--wait needs --once/);
    const c = await runCli("sensor", ["sensor", "--schedule", "often"]);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /--schedule "often"/);
    assert.equal(config.topic.length > 0, true);
  },
});

// A launch record the KV refuses (its disk is full: no root needed here, the KV's commits are
// refused with SQLite's error while `full`) must not leave the sensor waiting for that child
// forever: its exit is seen, and the next check launches again once the KV takes writes.
Deno.test("sensor: a launch whose record KV refuses (disk full) is still watched; the next check launches again", async () => {
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  const topic = uniqueName("t-sensor-kvfull");
  const kvPath = await tempKvPath("sensor-kvfull");
  const realKv = await openKv(kvPath);
  const disk = { full: true };
  // The real KV; its commits fail as SQLite's do while the disk is full.
  const { kv } = faultyKv(
    realKv,
    () => disk.full ? new TypeError("database or disk is full") : null,
  );
  const lines: string[] = [];
  const launched: number[] = [];
  try {
    await ensureTopic(admin, topic, { partitions: 1 });
    await produceTicks(kafka, topic, ["AAA"], 5);
    const sensor = createSensor({
      kv,
      admin,
      logger: createLogger("sensor", { level: "info", write: (l) => lines.push(l) }),
      // A child that fails at once, as an aggregator on the full disk does (exit 1).
      launch: () => {
        const child = new Deno.Command("sh", { args: ["-c", "exit 1"] }).spawn();
        launched.push(child.pid);
        return {
          pid: child.pid,
          startedAt: Date.now(),
          status: child.status.then((s) => s.code),
          kill: () => {},
        };
      },
    }, {
      topic,
      minNew: 1,
      backoff: { baseMs: 1, maxMs: 1 },
      command: { command: "unused", args: [], env: {} },
      identity: "test:1",
    });
    const first = await sensor.check(); // must not throw on the refused launch record
    assert.equal(first.decision.kind, "launch");
    assert.ok(first.launched !== null);
    assert.equal(await sensor.settled(), 1, "the child's exit is seen");
    assert.equal(sensor.child(), null, "and the sensor no longer waits for it");
    assert.ok(
      lines.some((l) => /cannot record the launch.*database or disk is full/.test(l)),
      lines.join("\n"),
    );
    disk.full = false;
    await new Promise((r) => setTimeout(r, 10)); // past the 1 ms crash backoff
    const second = await sensor.check();
    assert.equal(second.decision.kind, "launch", second.decision.action);
    assert.equal(await sensor.settled(), 1);
    assert.equal(launched.length, 2);
    const recorded = (await realKv.get<{ pid: number; exitCode: number | null }[]>([
      "tickpipe",
      topic,
      "sensor",
      "launches",
    ])).value ?? [];
    assert.deepEqual(recorded.map((l) => [l.pid, l.exitCode]), [[launched[1], 1]]);
  } finally {
    realKv.close();
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
    for (const s of ["", "-wal", "-shm"]) await Deno.remove(kvPath + s).catch(() => {});
  }
});
