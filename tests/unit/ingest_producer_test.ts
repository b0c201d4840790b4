// The batching producer core with an injected send: batches bounded by batchSize, one batch in
// flight, a failing send retried as-is, overflow spilled to the disk spool and delivered in
// order (spool first, then memory), and refusal counted when memory and spool are full.
import assert from "node:assert/strict";
import { createBatcher, type OutRecord } from "../../ingest/producer.ts";
import { openSpool } from "../../ingest/spool.ts";
import { createLogger } from "../../common/log.ts";

const quiet = createLogger("test", { level: "error" });
const rec = (i: number): OutRecord => ({
  topic: "t",
  key: `k${i % 3}`,
  value: String(i),
  timestamp: String(1000 + i),
  headers: { ingest_ms: "1" },
});

async function tempDir(): Promise<string> {
  await Deno.mkdir(".data/test", { recursive: true });
  return await Deno.makeTempDir({ dir: ".data/test", prefix: "batcher-" });
}

Deno.test("batcher: batches of at most batchSize, one in flight, everything in order", async () => {
  const batches: number[][] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const b = createBatcher({
    batchSize: 10,
    lingerMs: 2,
    logger: quiet,
    send: async (records) => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await new Promise((r) => setTimeout(r, 1));
      batches.push(records.map((r) => Number(r.value)));
      inFlight--;
    },
  });
  for (let i = 0; i < 95; i++) b.enqueue(rec(i));
  await b.flush();
  assert.equal(await b.close(), 0);
  assert.equal(maxInFlight, 1);
  assert.ok(batches.every((x) => x.length <= 10));
  assert.deepEqual(batches.flat(), Array.from({ length: 95 }, (_, i) => i));
  assert.equal(b.stats().delivered, 95);
});

Deno.test("batcher: a Kafka outage spills to the spool; recovery delivers spool then memory, in order, once", async () => {
  const dir = await tempDir();
  try {
    const spool = await openSpool<OutRecord>(dir);
    let down = true;
    const delivered: number[] = [];
    const b = createBatcher({
      batchSize: 50,
      lingerMs: 1,
      maxMemory: 100,
      spool,
      logger: quiet,
      backoff: { initialMs: 5, maxMs: 20 },
      send: async (records) => {
        await new Promise((r) => setTimeout(r, 1));
        if (down) throw new Error("Connection error: ECONNREFUSED");
        delivered.push(...records.map((r) => Number(r.value)));
      },
    });
    for (let i = 0; i < 1000; i++) {
      b.enqueue(rec(i));
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    await new Promise((r) => setTimeout(r, 50));
    const s = b.stats();
    assert.ok(s.failures > 0, "sends failed during the outage");
    assert.ok(s.spooled > 0, `records were spooled (${JSON.stringify(s)})`);
    down = false;
    await b.flush();
    assert.equal(await b.close(), 0);
    assert.deepEqual(delivered, Array.from({ length: 1000 }, (_, i) => i));
    assert.equal(b.stats().dropped, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("batcher: memory and spool full -> newest refused and counted; close spools the rest", async () => {
  const dir = await tempDir();
  try {
    const spool = await openSpool<OutRecord>(dir, { maxBytes: 2000 });
    const b = createBatcher({
      batchSize: 10,
      lingerMs: 1,
      maxMemory: 20,
      spool,
      logger: quiet,
      backoff: { initialMs: 2, maxMs: 5 },
      send: () => Promise.reject(new Error("Broker down")),
    });
    let refused = 0;
    for (let i = 0; i < 500; i++) {
      if (!b.enqueue(rec(i))) refused++;
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 3));
    }
    assert.ok(refused > 0, "some records refused");
    assert.equal(b.stats().dropped, refused);
    const left = await b.close({ timeoutMs: 20 });
    assert.ok(left > 0, "undelivered records reported at close");
    const again = await openSpool<OutRecord>(dir, { maxBytes: 2000 });
    const kept = (await again.peek(1000)).map((r) => Number(r.value));
    assert.deepEqual(kept, [...kept].sort((x, y) => x - y), "spool kept in order");
    assert.equal(kept[0], 0, "the oldest records are kept, the newest refused");
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
