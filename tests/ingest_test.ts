// Ingest end to end against the REAL Kafka broker and the in-process simulator: every frame the
// simulator sent is in the ticks topic exactly once (or in the DLQ with its reason), across
// forced disconnects, a simulated Kafka outage (memory + disk spool, then a restart with a
// non-empty spool), the shared real Yahoo frames, randomized garbage, symbol sharding and a
// SIGTERM to an `ingest` subprocess running under the real `ingest` permission set.
import assert from "node:assert/strict";
import type { Kafka } from "kafkajs";
import { type Ingest, type IngestOptions, startIngest } from "../ingest/ingest.ts";
import { encodeFrame, parseFrame } from "../ingest/frame.ts";
import { type SentFrame, startSimulator } from "../ingest/simulator.ts";
import { connectFeed } from "../ingest/client.ts";
import type { OutRecord, SendBatch } from "../ingest/producer.ts";
import { openSpool } from "../ingest/spool.ts";
import { decodeTick } from "../proto/mod.ts";
import { config, quietLogger, testKafka, uniqueName } from "./_helpers/env.ts";
import { mulberry32 as prng } from "../common/prng.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

interface Msg {
  partition: number;
  offset: number;
  key: string | null;
  value: string;
  /** The value's bytes. */
  bytes: Uint8Array;
  timestamp: string;
  headers: Record<string, string>;
}

/** Reads every record of `topic` up to its current end offsets. */
async function readTopic(kafka: Kafka, topic: string): Promise<Msg[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const want = new Map(ends.map((e) => [e.partition, Number(e.high)]));
  const total = [...want.values()].reduce((a, b) => a + b, 0);
  const out: Msg[] = [];
  if (total === 0) return out;
  const consumer = kafka.consumer({ groupId: uniqueName("g-ingest-test") });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`Timed out reading ${topic}: ${out.length}/${total}`)),
      30_000,
    );
    consumer.run({
      eachMessage: ({ partition, message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
        out.push({
          partition,
          offset: Number(message.offset),
          key: message.key?.toString() ?? null,
          value: message.value!.toString(),
          bytes: new Uint8Array(message.value!),
          timestamp: message.timestamp,
          headers,
        });
        if (out.length >= total) {
          clearTimeout(timer);
          resolve();
        }
        return Promise.resolve();
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

async function cleanup(kafka: Kafka, topic: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
  await admin.disconnect();
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ingestOptions(topic: string, source: string, extra: Partial<IngestOptions> = {}) {
  return {
    brokers: config.brokers,
    topic,
    source,
    symbols: ["AAPL", "MSFT", "NVDA", "BTC-USD", "ETH-USD", "TSLA"],
    spoolDir: `.data/test/spool-${topic}`,
    progressEveryMs: 0,
    logger: quietLogger,
    ...extra,
  } satisfies IngestOptions;
}

/** Asserts the topic + DLQ hold exactly the frames (raw strings) expected from `frames`. */
function checkExactlyOnce(frames: string[], ticks: Msg[], dlq: Msg[], nowMs: number): void {
  const wantTicks: string[] = [];
  const wantDlq: string[] = [];
  const bySymbol = new Map<string, string[]>();
  for (const f of frames) {
    const r = parseFrame(f, { nowMs });
    if (r.ok === true) {
      const v = JSON.stringify(r.tick);
      wantTicks.push(v);
      bySymbol.set(r.tick.id, [...(bySymbol.get(r.tick.id) ?? []), v]);
    } else if (r.ok === false) wantDlq.push(`${r.reason}|${f}`);
  }
  assert.equal(ticks.length, wantTicks.length, "tick count");
  assert.deepEqual(ticks.map((m) => m.value).sort(), wantTicks.sort(), "ticks exactly once");
  assert.deepEqual(
    dlq.map((m) => `${m.headers.reason}|${m.value}`).sort(),
    wantDlq.sort(),
    "dead letters exactly once, with their reason",
  );
  // Per key, the topic order is the order sent.
  for (const [symbol, values] of bySymbol) {
    const got = ticks.filter((m) => m.key === symbol).map((m) => m.value);
    assert.deepEqual(got, values, `order of ${symbol}`);
  }
  for (const m of ticks) {
    const t = JSON.parse(m.value);
    assert.equal(m.key, t.id);
    assert.equal(m.timestamp, String(t.time), "record timestamp = event time");
    assert.match(m.headers.ingest_ms, /^\d{13}$/);
  }
  for (const m of dlq) {
    assert.ok(m.headers.detail.length > 0);
    assert.match(m.headers.ingest_ms, /^\d{13}$/);
  }
}

const sentFrames = (sent: SentFrame[]) =>
  sent.filter((s) => s.kind !== "heartbeat").map((s) => s.frame);

Deno.test({
  name:
    "ingest: every simulator frame lands once in the topic or the DLQ, across forced disconnects",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-ingest");
    const sim = await startSimulator({
      port: 0,
      rate: 400,
      malformedFraction: 0.1,
      futureFraction: 0.02,
      lateFraction: 0.02,
      disconnectEvery: 1,
      heartbeatMs: 100,
    });
    let ingest: Ingest | undefined;
    try {
      ingest = await startIngest(ingestOptions(topic, `${sim.url}?version=2`, { batchSize: 100 }));
      await sleep(3500);
      await sim.close();
      await sleep(300);
      const s = await ingest.stop();
      ingest = undefined;
      assert.ok(s.reconnects >= 2, `reconnected (${s.reconnects})`);
      assert.ok(s.ignored > 0, "heartbeats ignored");
      const frames = sentFrames(sim.sent());
      assert.ok(frames.length > 500, `enough frames (${frames.length})`);
      assert.equal(s.frames - s.ignored, frames.length, "received every frame sent");
      checkExactlyOnce(
        frames,
        await readTopic(kafka, topic),
        await readTopic(kafka, `${topic}.dlq`),
        Date.now(),
      );
    } finally {
      await ingest?.stop();
      await sim.close();
      await cleanup(kafka, topic);
    }
  },
});

Deno.test({
  name:
    "ingest: Kafka outage -> memory + disk spool -> restart with a non-empty spool; nothing lost or duplicated",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-outage");
    const spoolDir = `.data/test/spool-${topic}`;
    const sim = await startSimulator({ port: 0, rate: 600, malformedFraction: 0.05 });
    let down = false;
    // Fails like kafkajs does when the broker is gone, without touching the shared broker.
    const wrapSend = (send: SendBatch): SendBatch => async (records) => {
      if (down) {
        await sleep(5);
        const e = new Error("Connection error: connect ECONNREFUSED 127.0.0.1:9092");
        e.name = "KafkaJSConnectionError";
        throw e;
      }
      await send(records);
    };
    const options = ingestOptions(topic, `${sim.url}?version=2`, {
      spoolDir,
      maxMemoryTicks: 200,
      batchSize: 100,
      wrapSend,
    });
    let a: Ingest | undefined;
    let b: Ingest | undefined;
    try {
      // Phase 1: healthy, then down; spooling; stop while still down (leftovers to the spool).
      a = await startIngest(options);
      await sleep(500);
      down = true;
      let maxSpooled = 0;
      const t0 = Date.now();
      while (Date.now() - t0 < 1500) {
        maxSpooled = Math.max(maxSpooled, a.stats().spooled);
        await sleep(20);
      }
      assert.ok(maxSpooled > 0, "ticks were spooled to disk during the outage");
      const sa = await a.stop({ flushTimeoutMs: 100 });
      a = undefined;
      assert.ok(sa.spooled > 0, `spool left for the next run (${JSON.stringify(sa)})`);
      assert.ok(sa.sendFailures > 0);
      assert.equal(sa.dropped, 0);
      // Phase 2: a new ingest with the non-empty spool, healthy again, a second outage mid-way.
      down = false;
      b = await startIngest(options);
      await sleep(500);
      down = true;
      await sleep(700);
      down = false;
      await sleep(500);
      await sim.close();
      await sleep(300);
      const sb = await b.stop();
      b = undefined;
      assert.equal(sb.spooled, 0, "spool drained");
      assert.equal(sb.memory, 0);
      checkExactlyOnce(
        sentFrames(sim.sent()),
        await readTopic(kafka, topic),
        await readTopic(kafka, `${topic}.dlq`),
        Date.now(),
      );
    } finally {
      down = false;
      await a?.stop();
      await b?.stop();
      await sim.close();
      await cleanup(kafka, topic);
      await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "ingest: the shared real Yahoo frames replayed by the simulator land with their expected values",
  ...opts,
  async fn() {
    const vectors = JSON.parse(
      await Deno.readTextFile(new URL("./fixtures/yahoo_frames.json", import.meta.url)),
    ) as { frames: { id: string; frame_base64: string; expected: Record<string, unknown> }[] };
    assert.ok(vectors.frames.length > 0);
    const kafka = testKafka();
    const topic = uniqueName("t-vectors");
    const frames = vectors.frames.map((v) =>
      JSON.stringify({ type: "pricing", message: v.frame_base64 })
    );
    const sim = await startSimulator({ port: 0, rate: 0, replay: frames, heartbeatMs: 0 });
    const symbols = [...new Set(vectors.frames.map((v) => String(v.expected.id)))];
    let ingest: Ingest | undefined;
    try {
      ingest = await startIngest(ingestOptions(topic, `${sim.url}?version=2`, { symbols }));
      await until(() => symbols.every((s) => sim.symbols().includes(s)), "subscription");
      sim.emit(frames.length);
      await sim.finished;
      await until(() => ingest!.stats().frames === frames.length, "all frames received");
      await ingest.stop();
      ingest = undefined;
      const got = await readTopic(kafka, topic);
      assert.equal(got.length, vectors.frames.length);
      const values = got.map((m) => JSON.parse(m.value));
      for (const v of vectors.frames) {
        assert.ok(
          values.some((x) =>
            JSON.stringify(Object.entries(x).sort()) ===
              JSON.stringify(Object.entries(v.expected).sort())
          ),
          `${v.id}: ${JSON.stringify(v.expected)} not found in ${JSON.stringify(values)}`,
        );
      }
      assert.deepEqual(await readTopic(kafka, `${topic}.dlq`), []);
    } finally {
      await ingest?.stop();
      await sim.close();
      await cleanup(kafka, topic);
    }
  },
});

function garbageFrames(n: number, seed: number): string[] {
  const rnd = prng(seed);
  const bytes = (len: number) => Uint8Array.from({ length: len }, () => Math.floor(rnd() * 256));
  const text = (len: number) =>
    Array.from({ length: len }, () => String.fromCharCode(1 + Math.floor(rnd() * 0x2fff))).join("");
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const b64 = bytes(Math.floor(rnd() * 64)).toBase64();
    switch (i % 8) {
      case 0:
        out.push(b64);
        break;
      case 1:
        out.push(JSON.stringify({ type: "pricing", message: b64 }));
        break;
      case 2:
        out.push(text(1 + Math.floor(rnd() * 80)));
        break;
      case 3:
        out.push("{" + text(Math.floor(rnd() * 40)));
        break;
      case 4:
        out.push(JSON.stringify({ type: "pricing", message: rnd() < 0.5 ? 42 : [b64] }));
        break;
      case 5:
        out.push(b64.slice(0, Math.max(1, b64.length - 1 - Math.floor(rnd() * 3))));
        break;
      case 6:
        out.push(i % 16 === 6 ? "A".repeat(70_000) : JSON.stringify([b64]));
        break;
      default:
        out.push(JSON.stringify({ type: "pricing", message: b64 + "\u0000" }));
    }
  }
  return out;
}

Deno.test({
  name:
    "ingest: thousands of random garbage frames never crash it and all reach the DLQ with a reason",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-garbage");
    const frames = garbageFrames(3000, 7);
    const sim = await startSimulator({ port: 0, rate: 0, replay: frames, heartbeatMs: 0 });
    let ingest: Ingest | undefined;
    try {
      ingest = await startIngest(ingestOptions(topic, `${sim.url}?version=2`));
      await until(() => sim.symbols().length > 0, "subscription");
      sim.emit(frames.length);
      await until(() => ingest!.stats().frames === frames.length, "all frames received", 20_000);
      const s = await ingest.stop();
      ingest = undefined;
      const dlq = await readTopic(kafka, `${topic}.dlq`);
      const ticks = await readTopic(kafka, topic);
      const rejected = frames.filter((f) => parseFrame(f, { nowMs: Date.now() }).ok === false);
      assert.ok(rejected.length > 2900, `mostly garbage (${rejected.length})`);
      assert.equal(Object.values(s.dlq).reduce((a, b) => a + b, 0), rejected.length);
      checkExactlyOnce(frames, ticks, dlq, Date.now());
      assert.ok(dlq.every((m) => m.headers.reason !== undefined && m.headers.reason !== ""));
      assert.ok(new Set(dlq.map((m) => m.headers.reason)).size >= 4, "several reasons");
    } finally {
      await ingest?.stop();
      await sim.close();
      await cleanup(kafka, topic);
    }
  },
});

Deno.test({
  name: "ingest: 250 symbols are sharded over 3 real WebSocket connections of <= 100 symbols",
  ...opts,
  async fn() {
    const subs: string[][] = [];
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.onmessage = (e) => {
        const m = JSON.parse(e.data);
        if (Array.isArray(m.subscribe)) subs.push(m.subscribe);
      };
      return response;
    });
    const symbols = Array.from({ length: 250 }, (_, i) => `SYM${i}`);
    const feed = connectFeed({
      url: `ws://127.0.0.1:${server.addr.port}/?version=2`,
      symbols,
      onFrame: () => {},
      logger: quietLogger,
    });
    try {
      await until(() => subs.length >= 3, "three subscriptions");
      assert.equal(feed.stats().connections, 3);
      assert.ok(subs.every((s) => s.length <= 100));
      assert.deepEqual(subs.flat().sort(), [...symbols].sort());
    } finally {
      await feed.close();
      await server.shutdown();
    }
  },
});

Deno.test({
  name:
    "ingest: SIGTERM to an ingest subprocess flushes everything it received (vs its --record file)",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-sigterm");
    // The only places the ingest permission set lets it write.
    const record = `.data/recordings/${topic}.rec`;
    const spoolDir = `.data/spool/${topic}`;
    const sim = await startSimulator({ port: 0, rate: 500, malformedFraction: 0.05 });
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "-P=ingest",
        // --allow-net replaces the set's net list (the rest of the set applies): the set's
        // Kafka brokers plus the ephemeral simulator port.
        `--allow-net=${[...config.brokers, `127.0.0.1:${sim.port}`].join(",")}`,
        "main.ts",
        "ingest",
        "--source",
        `${sim.url}?version=2`,
        "--symbols",
        "AAPL,MSFT,BTC-USD",
        "--topic",
        topic,
        "--record",
        record,
        "--spool-dir",
        spoolDir,
        "--progress-every",
        "500ms",
      ],
      // Database settings are none of ingest's business: not even a broken one stops it.
      env: { NO_COLOR: "1", DATABASE_URL: "not a url", PGPASSWORD: "secret" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let stdout = "";
      while (!/frames=[1-9]\d{2,}/.test(stdout)) {
        const { value, done } = await out.read();
        if (done) break;
        stdout += value;
      }
      child.kill("SIGTERM"); // mid-stream: the simulator keeps sending
      for (;;) {
        const { value, done } = await out.read();
        if (done) break;
        stdout += value;
      }
      const status = await child.status;
      const stderr = await new Response(child.stderr).text();
      assert.equal(status.code, 0, stderr);
      assert.match(stdout, /ingest stopped \(SIGTERM\)/);
      const frames = (await Deno.readTextFile(record)).split("\n").filter((l) => l !== "");
      assert.ok(frames.length > 100, `recorded ${frames.length} frames`);
      checkExactlyOnce(
        frames.filter((f) => parseFrame(f, { nowMs: Date.now() }).ok !== "ignored"),
        await readTopic(kafka, topic),
        await readTopic(kafka, `${topic}.dlq`),
        Date.now(),
      );
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await sim.close();
      await cleanup(kafka, topic);
      await Deno.remove(record).catch(() => {});
      await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
    }
  },
});

// ---- Sizes, refusals and outages (issue 12) ----

/** Creates `topic` and its DLQ with one partition each and the given max.message.bytes. */
async function createLimitedTopics(
  kafka: Kafka,
  topic: string,
  limits: { topic: number; dlq: number },
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic, limit: limits.topic },
        { topic: `${topic}.dlq`, limit: limits.dlq },
      ].map((t) => ({
        topic: t.topic,
        numPartitions: 1,
        replicationFactor: 1,
        configEntries: [{ name: "max.message.bytes", value: String(t.limit) }],
      })),
    });
  } finally {
    await admin.disconnect();
  }
}

const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;
const NOW_TICK = () => Date.now() - 1000;

Deno.test({
  name:
    "ingest: a multibyte-heavy feed (UTF-16 under the budgets, UTF-8 over them) never wedges ingest; oversize frames are dead-lettered as too_large",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-multibyte");
    // The broker refuses any batch over 600,000 bytes for this topic; ingest's batch budget is
    // 512 KiB, counted in UTF-8 bytes.
    await createLimitedTopics(kafka, topic, { topic: 600_000, dlq: 1_048_588 });
    const cjk = (n: number) => "漢".repeat(n); // 3 UTF-8 bytes, 1 UTF-16 unit each
    const t0 = NOW_TICK();
    const valid = Array.from({ length: 3000 }, (_, i) =>
      encodeFrame({
        id: `株${"式".repeat(i % 7)}${i % 7}`,
        price: 100 + (i % 50),
        time: t0 + i,
        shortName: cjk(85), // 255 bytes, its cap is 256
        underlyingSymbol: cjk(42),
        lastMarket: cjk(21),
        exchange: cjk(10),
        currency: cjk(5),
        fromCurrency: cjk(5),
      }));
    // Over a field cap in bytes, under it in UTF-16 units.
    const overField = Array.from(
      { length: 20 },
      (_, i) => encodeFrame({ id: `OVER${i}`, price: 1, time: t0, shortName: cjk(86 + i) }),
    );
    // Over the frame cap (65,536) in bytes, under it in UTF-16 units.
    const overFrame = Array.from(
      { length: 5 },
      (_, i) => JSON.stringify({ type: "pricing", message: "QUFB", pad: cjk(25_000 + i) }),
    );
    for (const f of overFrame) assert.ok(f.length < 65_536 && utf8Bytes(f) > 65_536);
    const frames = [...valid];
    for (let i = 0; i < overField.length + overFrame.length; i++) {
      frames.splice(i * 100 + 50, 0, i < 20 ? overField[i] : overFrame[i - 20]);
    }
    // The feed defeats a UTF-16 budget: the first valid ticks whose UTF-16 size (the old rule)
    // fits 512 Ki make a batch far over the topic's 600,000-byte limit.
    {
      let units = 0;
      let bytes = 0;
      for (const f of valid) {
        const r = parseFrame(f, { nowMs: Date.now() });
        assert.equal(r.ok, true, JSON.stringify(r));
        if (r.ok !== true) return;
        const v = JSON.stringify(r.tick);
        const u = v.length + r.tick.id.length + 64 + 22;
        if (units + u > 512 * 1024) break;
        units += u;
        bytes += utf8Bytes(v) + utf8Bytes(r.tick.id) + 40;
      }
      assert.ok(bytes > 600_000, `a UTF-16-budget batch would be ${bytes} bytes`);
    }
    const sim = await startSimulator({ port: 0, rate: 0, replay: frames, heartbeatMs: 0 });
    // Sends wait until every frame is in: the batches are as big as ingest makes them.
    const { promise: gate, resolve: open } = Promise.withResolvers<void>();
    let ingest: Ingest | undefined;
    try {
      ingest = await startIngest(ingestOptions(topic, `${sim.url}?version=2`, {
        symbols: Array.from({ length: 7 }, (_, k) => `株${"式".repeat(k)}${k}`),
        partitions: 1,
        wrapSend: (send) => async (records) => {
          await gate;
          await send(records);
        },
      }));
      await until(() => sim.symbols().length > 0, "subscription");
      sim.emit(frames.length);
      await until(() => ingest!.stats().frames === frames.length, "all frames received", 30_000);
      open();
      await until(
        () => ingest!.stats().ticksProduced === valid.length,
        `all ${valid.length} ticks produced (a wedge never gets there)`,
        60_000,
      );
      const s = await ingest.stop();
      ingest = undefined;
      assert.equal(s.tooLargeRefusals, 0, "no batch was refused: sizes were measured right");
      assert.equal(s.dlq.too_large, overField.length + overFrame.length);
      assert.equal(s.memory + s.spooled + s.dropped, 0);
      const ticks = await readTopic(kafka, topic);
      const dlq = await readTopic(kafka, `${topic}.dlq`);
      checkExactlyOnce(frames, ticks, dlq, Date.now());
      assert.ok(dlq.every((m) => m.headers.reason === "too_large"));
      for (let i = 0; i < overField.length; i++) {
        const m = dlq.find((d) => d.value === overField[i])!;
        assert.match(m.headers.detail, /^Field shortName .* over its cap of 256 bytes/);
      }
      for (const f of overFrame) {
        const m = dlq.find((d) => d.value === f)!;
        assert.match(m.headers.detail, /^Frame of \d+ UTF-8 bytes exceeds 65536 bytes/);
      }
    } finally {
      open();
      await ingest?.stop();
      await sim.close();
      await cleanup(kafka, topic);
    }
  },
});

Deno.test({
  name:
    "ingest: batches the broker refuses as too large are split (a spooled batch from an earlier run too); records refused alone go to the DLQ as too_large, cut to fit",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-split");
    const spoolDir = `.data/test/spool-${topic}`;
    // A tiny limit per topic: a few ticks per batch, and dead letters over 1.5 KB refused.
    await createLimitedTopics(kafka, topic, { topic: 2000, dlq: 1500 });
    // What an earlier ingest left in its spool: 300 records, one too-large batch for this topic.
    const seeded = Array.from({ length: 300 }, (_, i) => ({
      topic,
      key: `SEED${i % 3}`,
      value: JSON.stringify({ id: `SEED${i % 3}`, price: 1, time: 1_700_000_000_000 + i }),
      timestamp: String(1_700_000_000_000 + i),
      headers: { ingest_ms: "1700000000000" },
    }));
    const old = await openSpool<OutRecord>(spoolDir);
    await old.append(seeded);
    await old.close();
    const t0 = NOW_TICK();
    const small = Array.from(
      { length: 400 },
      (_, i) => encodeFrame({ id: `SPLIT${i % 4}`, price: 10 + i, time: t0 + i, exchange: "NMS" }),
    );
    // Valid ticks whose record (control characters: 6 JSON bytes each) is over the topic's 2000
    // bytes: refused by Kafka alone ("mid", about 2.2 KB), or over ingest's --max-record-bytes
    // 2500 before it is ever sent ("big", about 2.9 KB).
    const ctl = (n: number) => "\u0001".repeat(n);
    const mid = Array.from(
      { length: 3 },
      (_, i) =>
        encodeFrame({
          id: `MID${i}`,
          price: 1,
          time: t0,
          shortName: ctl(256),
          lastMarket: ctl(64),
        }),
    );
    const big = Array.from({ length: 3 }, (_, i) =>
      encodeFrame({
        id: `BIG${i}`,
        price: 1,
        time: t0,
        shortName: ctl(256),
        underlyingSymbol: ctl(128),
        lastMarket: ctl(64),
      }));
    // Garbage dead letters of 5,000 bytes, over the DLQ's limit.
    const garbage = Array.from({ length: 3 }, (_, i) => `${"!".repeat(4999)}${i}`);
    const sim = await startSimulator({
      port: 0,
      rate: 0,
      replay: [...small, ...mid, ...big, ...garbage],
      heartbeatMs: 0,
    });
    let ingest: Ingest | undefined;
    try {
      ingest = await startIngest(ingestOptions(topic, `${sim.url}?version=2`, {
        spoolDir,
        maxRecordBytes: 2500,
        symbols: [
          "SPLIT0",
          "SPLIT1",
          "SPLIT2",
          "SPLIT3",
          "MID0",
          "MID1",
          "MID2",
          "BIG0",
          "BIG1",
          "BIG2",
        ],
      }));
      await until(() => sim.symbols().length > 0, "subscription");
      // Phase 1: the seeded spool, then ticks only.
      sim.emit(small.length);
      await until(
        () => ingest!.stats().ticksProduced === seeded.length + small.length,
        "spool and small ticks produced",
        60_000,
      );
      // Phase 2: records Kafka refuses on their own.
      sim.emit(mid.length + big.length + garbage.length);
      await until(
        () => ingest!.stats().frames === small.length + mid.length + big.length + garbage.length,
        "all frames received",
      );
      await ingest.flush();
      const s = await ingest.stop();
      ingest = undefined;
      assert.ok(s.tooLargeRefusals > 10, `the broker refused ${s.tooLargeRefusals} sends`);
      assert.equal(s.memory + s.spooled + s.dropped, 0, JSON.stringify(s));
      assert.equal(s.dlq.too_large, mid.length + big.length);

      const ticks = await readTopic(kafka, topic);
      assert.deepEqual(
        ticks.map((m) => m.value),
        [
          ...seeded.map((r) => r.value),
          ...small.map((f) => {
            const r = parseFrame(f, { nowMs: Date.now() });
            return r.ok === true ? JSON.stringify(r.tick) : "";
          }),
        ],
        "the spool first, then the ticks, each once, in order",
      );
      const dlq = await readTopic(kafka, `${topic}.dlq`);
      assert.equal(dlq.length, mid.length + big.length + garbage.length);
      for (let i = 0; i < mid.length; i++) {
        const r = parseFrame(mid[i], { nowMs: Date.now() });
        assert.equal(r.ok, true);
        const m = dlq.find((d) => d.headers.detail.includes(`"MID${i}"`));
        assert.ok(m, `MID${i} dead-lettered`);
        assert.equal(m.headers.reason, "too_large");
        assert.match(
          m.headers.detail,
          /^Record of \d+ UTF-8 bytes .* was refused by Kafka \(MESSAGE_TOO_LARGE\)$/,
        );
        const value = r.ok === true ? JSON.stringify(r.tick) : "";
        assert.equal(m.headers.truncated, String(utf8Bytes(value)));
        assert.ok(value.startsWith(m.value) && m.value.length > 0, "a prefix of the tick");
      }
      for (let i = 0; i < big.length; i++) {
        const m = dlq.find((d) => d.headers.detail.includes(`"BIG${i}"`));
        assert.ok(m, `BIG${i} dead-lettered`);
        assert.equal(m.headers.reason, "too_large");
        assert.match(
          m.headers.detail,
          new RegExp(
            `^Tick record of \\d+ UTF-8 bytes for "BIG${i}" exceeds the record limit of 2500 bytes$`,
          ),
        );
        // The raw frame, cut further if the DLQ's 1500 bytes refused it.
        assert.ok(big[i].startsWith(m.value) && m.value.length > 0);
        if (m.value !== big[i]) assert.equal(m.headers.truncated, String(utf8Bytes(big[i])));
      }
      for (const g of garbage) {
        const m = dlq.find((d) => d.headers.truncated === "5000" && g.startsWith(d.value));
        assert.ok(m, "garbage dead letter, cut to fit the DLQ");
        assert.equal(m.headers.reason, "bad_base64");
      }
      assert.ok(dlq.every((m) => utf8Bytes(m.value) < 1500));
    } finally {
      await ingest?.stop();
      await sim.close();
      await cleanup(kafka, topic);
      await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "ingest: during an outage ticks are on disk within ~1-2 s; a kill -9 (the disk as it was) loses at most that last stretch",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-kill9");
    const spoolA = `.data/test/spool-${topic}`;
    const spoolB = `${spoolA}-after-kill`;
    const sim = await startSimulator({ port: 0, rate: 500, heartbeatMs: 0 });
    let mode: "up" | "hang" | "dead" = "up";
    const { promise: dead, resolve: die } = Promise.withResolvers<void>();
    // Like kafkajs while the broker is gone: the send neither succeeds nor fails for a while.
    const wrapSend = (send: SendBatch): SendBatch => async (records) => {
      if (mode === "hang") await dead;
      if (mode !== "up") throw new Error("Connection error: connect ECONNREFUSED");
      await send(records);
    };
    let a: Ingest | undefined;
    let b: Ingest | undefined;
    try {
      a = await startIngest(ingestOptions(topic, `${sim.url}?version=2`, {
        spoolDir: spoolA,
        wrapSend,
      }));
      await sleep(700);
      const downAt = Date.now();
      mode = "hang";
      await sleep(3000);
      // kill -9 now: what is on disk is what a restart gets (a torn last line is skipped).
      const killAt = Date.now();
      await Deno.mkdir(spoolB, { recursive: true });
      for await (const e of Deno.readDir(spoolA)) {
        await Deno.copyFile(`${spoolA}/${e.name}`, `${spoolB}/${e.name}`);
      }
      mode = "dead";
      die();
      await a.stop({ flushTimeoutMs: 0 }); // its own spool is not looked at again
      a = undefined;
      // The restart, with the disk as the kill left it.
      mode = "up";
      b = await startIngest(ingestOptions(topic, `${sim.url}?version=2`, { spoolDir: spoolB }));
      await until(() => b!.stats().spooled === 0, "the spool delivered", 30_000);
      await sim.close();
      await sleep(300);
      await b.stop();
      b = undefined;

      const inTopic = new Map<string, number>();
      for (const m of await readTopic(kafka, topic)) {
        inTopic.set(m.value, (inTopic.get(m.value) ?? 0) + 1);
      }
      const value = (f: string) => {
        const r = parseFrame(f, { nowMs: Date.now() });
        return r.ok === true ? JSON.stringify(r.tick) : undefined;
      };
      const sent = sim.sent().filter((s) => value(s.frame) !== undefined);
      // Spooling starts 1 s into the outage and then runs every 100 ms: 2 s leaves room for a
      // loaded machine's late timers.
      const safe = sent.filter((s) => s.at <= killAt - 2000);
      const duringOutage = safe.filter((s) => s.at > downAt + 100);
      assert.ok(duringOutage.length > 200, `ticks during the outage: ${duringOutage.length}`);
      const missing = safe.filter((s) => inTopic.get(value(s.frame)!) !== 1);
      assert.deepEqual(
        missing.map((s) =>
          `${s.at - downAt}ms after the outage began: ${inTopic.get(value(s.frame)!) ?? 0}x`
        ),
        [],
        "every tick received more than 2 s before the kill is in the topic once",
      );
      const lost = sent.filter((s) => s.at <= killAt && !inTopic.has(value(s.frame)!));
      const lastLost = Math.min(...lost.map((s) => s.at), killAt) - killAt;
      console.log(
        `kill -9 after a ${
          killAt - downAt
        } ms outage: ${duringOutage.length} ticks of the outage ` +
          `safe, ${lost.length} lost (the oldest received ${-lastLost} ms before the kill)`,
      );
    } finally {
      mode = "dead";
      die();
      await a?.stop({ flushTimeoutMs: 0 });
      await b?.stop();
      await sim.close();
      await cleanup(kafka, topic);
      for (const d of [spoolA, spoolB]) await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  },
});

/** The fields of a tick that a tick-v1 value carries. */
function tickV1Fields(t: Record<string, unknown>): string {
  const out: Record<string, unknown> = {};
  for (
    const f of [
      "id",
      "price",
      "time",
      "dayVolume",
      "lastSize",
      "exchange",
      "currency",
      "quoteType",
      "marketHours",
    ]
  ) if (t[f] !== undefined) out[f] = t[f];
  return JSON.stringify(out);
}

Deno.test({
  name:
    "ingest --value-format tick-v1: every tick lands once as a tickpipe.v1.Tick with header tp-format, across a Kafka outage, the disk spool and a restart",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-tickv1");
    const spoolDir = `.data/test/spool-${topic}`;
    const sim = await startSimulator({ port: 0, rate: 600, malformedFraction: 0.05 });
    let down = false;
    const wrapSend = (send: SendBatch): SendBatch => async (records) => {
      if (down) {
        await sleep(5);
        const e = new Error("Connection error: connect ECONNREFUSED 127.0.0.1:9092");
        e.name = "KafkaJSConnectionError";
        throw e;
      }
      await send(records);
    };
    const options = ingestOptions(topic, `${sim.url}?version=2`, {
      spoolDir,
      maxMemoryTicks: 200,
      batchSize: 100,
      wrapSend,
      valueFormat: "tick-v1",
    });
    let a: Ingest | undefined;
    let b: Ingest | undefined;
    try {
      a = await startIngest(options);
      await sleep(500);
      down = true;
      await sleep(1500);
      const sa = await a.stop({ flushTimeoutMs: 100 });
      a = undefined;
      assert.ok(sa.spooled > 0, `binary records left in the spool (${JSON.stringify(sa)})`);
      down = false;
      b = await startIngest(options);
      await sleep(800);
      await sim.close();
      await sleep(300);
      const sb = await b.stop();
      b = undefined;
      assert.equal(sb.spooled, 0, "spool drained");
      assert.equal(sb.dropped, 0);
      const ticks = await readTopic(kafka, topic);
      const dlq = await readTopic(kafka, `${topic}.dlq`);
      const want: string[] = [];
      const wantDlq: string[] = [];
      const bySymbol = new Map<string, string[]>();
      for (const f of sentFrames(sim.sent())) {
        const r = parseFrame(f, { nowMs: Date.now() });
        if (r.ok === true) {
          const v = tickV1Fields(r.tick as unknown as Record<string, unknown>);
          want.push(v);
          bySymbol.set(r.tick.id, [...(bySymbol.get(r.tick.id) ?? []), v]);
        } else if (r.ok === false) wantDlq.push(`${r.reason}|${f}`);
      }
      const got = ticks.map((m) => JSON.stringify(decodeTick(m.bytes)));
      assert.ok(want.length > 300, `enough ticks (${want.length})`);
      assert.deepEqual(got.slice().sort(), want.sort(), "every tick once, decoded field by field");
      for (const [symbol, values] of bySymbol) {
        const mine = ticks.filter((m) => m.key === symbol).map((m) =>
          JSON.stringify(decodeTick(m.bytes))
        );
        assert.deepEqual(mine, values, `order of ${symbol}`);
      }
      for (const m of ticks) {
        assert.equal(m.headers["tp-format"], "tick-v1");
        assert.match(m.headers.ingest_ms, /^\d{13}$/);
        assert.equal(
          m.timestamp,
          String(decodeTick(m.bytes).time),
          "record timestamp = event time",
        );
        assert.ok(m.bytes.length < 80, `a compact value (${m.bytes.length} bytes)`);
      }
      assert.deepEqual(dlq.map((m) => `${m.headers.reason}|${m.value}`).sort(), wantDlq.sort());
    } finally {
      down = false;
      await a?.stop();
      await b?.stop();
      await sim.close();
      await cleanup(kafka, topic);
      await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
    }
  },
});
