// The batching producer core with an injected send: batches bounded by batchSize, one batch in
// flight, a failing send retried as-is, overflow spilled to the disk spool and delivered in
// order (spool first, then memory), and refusal counted when memory and spool are full.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  createBatcher,
  fromSpooled,
  kafkaSend,
  type OutRecord,
  RECORD_OVERHEAD_BYTES,
  recordBytes,
  type SpooledRecord,
  toSpooled,
  valueBytes,
} from "../../ingest/producer.ts";
import { openSpool, parseSegment, SpoolError } from "../../ingest/spool.ts";
import { createLogger } from "../../common/log.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

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
    const spool = await openSpool<SpooledRecord>(dir);
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
    const spool = await openSpool<SpooledRecord>(dir, { maxBytes: 2000 });
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
    const again = await openSpool<SpooledRecord>(dir, { maxBytes: 2000 });
    const kept = (await again.peek(1000)).map((r) => Number(r.value));
    assert.deepEqual(kept, [...kept].sort((x, y) => x - y), "spool kept in order");
    assert.equal(kept[0], 0, "the oldest records are kept, the newest refused");
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- Sizes in UTF-8 bytes, refusals as too large, spooling after a second of failing sends ----

const ALPHABET = ["a", "Z", "é", "Ω", "€", "日", "本", "😀", "𝄞"];
/** A string of `n` characters, mostly multibyte (1 to 4 UTF-8 bytes each). */
function text(rnd: () => number, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
  return s;
}

const utf8 = (s: string | Uint8Array) =>
  typeof s === "string" ? new TextEncoder().encode(s).length : s.length;
/** Oracle of recordBytes: TextEncoder over key, value and headers plus the stated framing. */
function oracleBytes(r: OutRecord): number {
  let n = RECORD_OVERHEAD_BYTES + utf8(r.value) + (r.key === null ? 0 : utf8(r.key));
  for (const [k, v] of Object.entries(r.headers)) n += 10 + utf8(k) + utf8(v);
  return n;
}

function mbRec(i: number, value: string, topic = "t"): OutRecord {
  return { topic, key: `k${i % 5}`, value, timestamp: String(i), headers: { i: String(i) } };
}

/** kafkajs' shape of a broker refusal (a KafkaJSProtocolError, possibly wrapped). */
function refusal(type = "MESSAGE_TOO_LARGE", wrapped = false): Error {
  const e = Object.assign(new Error("The request included a message larger than the max"), {
    name: "KafkaJSProtocolError",
    type,
    retriable: false,
  });
  return wrapped
    ? Object.assign(new Error(e.message), { name: "KafkaJSNonRetriableError", cause: e })
    : e;
}

const sumBytes = (records: OutRecord[]) => records.reduce((a, r) => a + oracleBytes(r), 0);

Deno.test("recordBytes counts UTF-8 bytes (randomized against TextEncoder)", () => {
  const rnd = prng(11);
  for (let i = 0; i < 500; i++) {
    const r = mbRec(i, text(rnd, Math.floor(rnd() * 300)));
    if (rnd() < 0.3) r.key = text(rnd, 1 + Math.floor(rnd() * 20));
    if (rnd() < 0.2) r.key = null;
    if (rnd() < 0.3) r.headers.detail = text(rnd, Math.floor(rnd() * 50));
    assert.equal(recordBytes(r), oracleBytes(r), JSON.stringify(r));
  }
  // A value whose UTF-16 length is a third of its UTF-8 length.
  const r = mbRec(1, "日".repeat(1000));
  assert.equal(r.value.length, 1000);
  assert.equal(recordBytes(r), oracleBytes(r));
  assert.ok(recordBytes(r) > 3000);
});

Deno.test("batcher: batches never exceed maxBatchBytes in UTF-8 bytes, whatever the UTF-16 length", async () => {
  for (const seed of [1, 2, 3]) {
    const rnd = prng(seed);
    const maxBatchBytes = 4000;
    const input = Array.from(
      { length: 400 },
      (_, i) => mbRec(i, text(rnd, 1 + Math.floor(rnd() * 200))),
    );
    const batches: OutRecord[][] = [];
    const b = createBatcher({
      batchSize: 1000,
      maxBatchBytes,
      lingerMs: 1,
      logger: quiet,
      send: (records) => {
        batches.push(records);
        return Promise.resolve();
      },
    });
    for (const r of input) b.enqueue(r);
    await b.flush();
    assert.equal(await b.close(), 0);
    assert.deepEqual(batches.flat(), input, "everything once, in order");
    for (const batch of batches) {
      assert.ok(
        batch.length === 1 || sumBytes(batch) <= maxBatchBytes,
        `batch of ${batch.length} records is ${sumBytes(batch)} bytes > ${maxBatchBytes}`,
      );
    }
    // The old rule (UTF-16 units) would have put several of these batches over the budget:
    // the check above is not vacuous.
    const units = (r: OutRecord) => r.value.length + (r.key?.length ?? 0) + 64;
    assert.ok(input.reduce((a, r) => a + units(r), 0) < sumBytes(input) / 1.5);
  }
});

/**
 * A fake broker: refuses (as kafkajs reports it) any send whose records add up to more than
 * `limit` bytes; remembers every attempt.
 */
function fakeBroker(limit: number, options: { wrapped?: boolean } = {}) {
  const attempts: { records: OutRecord[]; refused: boolean }[] = [];
  const accepted: OutRecord[] = [];
  const send = (records: OutRecord[]) => {
    const refused = sumBytes(records) > limit;
    attempts.push({ records: records.slice(), refused });
    if (refused) return Promise.reject(refusal("MESSAGE_TOO_LARGE", options.wrapped));
    accepted.push(...records);
    return Promise.resolve();
  };
  return { send, attempts, accepted };
}

/** Checks that a refused send was never retried as is: the next attempt is a strict prefix. */
function assertNeverRetriedAsIs(attempts: { records: OutRecord[]; refused: boolean }[]): void {
  for (let i = 0; i + 1 < attempts.length; i++) {
    if (!attempts[i].refused) continue;
    const cur = attempts[i].records;
    const next = attempts[i + 1].records;
    if (cur.length === 1) {
      assert.notDeepEqual(next[0], cur[0], "a refused single record is replaced, not resent");
    } else {
      assert.ok(
        next.length < cur.length,
        `refused batch of ${cur.length} resent as ${next.length}`,
      );
      assert.deepEqual(next, cur.slice(0, next.length), "the retry is the first half");
    }
  }
}

Deno.test("batcher: a batch Kafka refuses as too large is split, never resent as is; a record still refused is replaced (randomized)", async () => {
  for (const seed of [5, 6, 7, 8]) {
    const rnd = prng(seed);
    const limit = 3000;
    const input = Array.from({ length: 300 }, (_, i) =>
      // A few records are too large for the broker on their own.
      mbRec(
        i,
        rnd() < 0.03
          ? "x".repeat(3000 + Math.floor(rnd() * 5000))
          : text(rnd, 1 + Math.floor(rnd() * 150)),
      ));
    const broker = fakeBroker(limit, { wrapped: seed % 2 === 0 });
    const replacedFor: string[] = [];
    const b = createBatcher({
      batchSize: 500,
      maxBatchBytes: 64 * 1024, // far above the broker's limit: it will refuse
      lingerMs: 1,
      logger: quiet,
      send: broker.send,
      tooLarge: (r, info) => {
        assert.equal(info.cause, "broker");
        assert.equal(info.error, "MESSAGE_TOO_LARGE");
        assert.equal(info.bytes, oracleBytes(r));
        replacedFor.push(r.headers.i);
        return { ...r, topic: "t.dlq", value: "too large", headers: { of: r.headers.i } };
      },
    });
    for (const r of input) b.enqueue(r);
    await b.flush();
    assert.equal(await b.close(), 0);
    const expected = input.map((r) =>
      oracleBytes(r) > limit
        ? { ...r, topic: "t.dlq", value: "too large", headers: { of: r.headers.i } }
        : r
    );
    assert.deepEqual(broker.accepted, expected, "everything once, in order, big ones replaced");
    assert.deepEqual(
      replacedFor,
      input.filter((r) => oracleBytes(r) > limit).map((r) => r.headers.i),
      "exactly the records too large on their own were replaced",
    );
    assert.ok(broker.attempts.some((a) => a.refused), "the broker refused batches");
    assertNeverRetriedAsIs(broker.attempts);
    const s = b.stats();
    assert.equal(s.failures, 0, "a refusal is not a failure to retry");
    assert.equal(s.tooLargeRefusals, broker.attempts.filter((a) => a.refused).length);
    assert.equal(s.tooLargeReplaced, replacedFor.length);
    // After the first refusals, batches are cut to half the refused size: few refusals in all.
    assert.ok(
      s.tooLargeRefusals < 40,
      `refusals ${s.tooLargeRefusals} over ${broker.attempts.length} sends`,
    );
  }
});

Deno.test("batcher: records over maxRecordBytes are replaced before sending; unreplaceable ones dropped and counted", async () => {
  const sent: OutRecord[] = [];
  const b = createBatcher({
    lingerMs: 1,
    maxRecordBytes: 500,
    logger: quiet,
    send: (records) => {
      sent.push(...records);
      return Promise.resolve();
    },
    // Dead letters shrink; a record of topic "keep" cannot be made smaller.
    tooLarge: (r, info) => {
      assert.equal(info.cause, "limit");
      assert.equal(info.limit, 500);
      return r.topic === "keep" ? r : { ...r, topic: "dlq", value: r.value.slice(0, 10) };
    },
  });
  b.enqueue(mbRec(0, "small"));
  b.enqueue(mbRec(1, "€".repeat(200))); // 200 units, 600 bytes: over the limit
  b.enqueue(mbRec(2, "x".repeat(600), "keep"));
  b.enqueue(mbRec(3, "small"));
  await b.flush();
  await b.close();
  assert.deepEqual(sent.map((r) => `${r.topic}:${r.headers.i}`), ["t:0", "dlq:1", "t:3"]);
  assert.equal(b.stats().dropped, 1);
  assert.equal(b.stats().tooLargeReplaced, 1);
});

Deno.test("batcher: a too-large batch left in the spool by an earlier version is split, not a wedge across restarts", async () => {
  const dir = await tempDir();
  try {
    // What an earlier version (batches cut by UTF-16 length) left on disk.
    const old = await openSpool<SpooledRecord>(dir);
    const input = Array.from({ length: 200 }, (_, i) => mbRec(i, "日本".repeat(100)));
    await old.append(input.map(toSpooled));
    await old.close();
    const broker = fakeBroker(20_000);
    const spool = await openSpool<SpooledRecord>(dir);
    const b = createBatcher({ lingerMs: 1, spool, logger: quiet, send: broker.send });
    await b.flush();
    assert.equal(await b.close(), 0);
    assert.deepEqual(broker.accepted, input);
    assert.ok(broker.attempts[0].refused, "the spooled batch was refused first");
    assertNeverRetriedAsIs(broker.attempts);
    const again = await openSpool<SpooledRecord>(dir);
    assert.equal(again.count(), 0, "spool drained");
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Records on disk in a spool directory (complete lines after the cursor), read directly. */
async function onDisk(dir: string): Promise<OutRecord[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".jsonl")) names.push(e.name);
  names.sort();
  let cursor = { segment: -1, line: 0 };
  try {
    cursor = JSON.parse(await Deno.readTextFile(`${dir}/cursor.json`));
  } catch { /* none yet */ }
  const out: OutRecord[] = [];
  for (const n of names) {
    const seg = Number(n.slice(0, 16));
    if (seg < cursor.segment) continue;
    const { records } = parseSegment<OutRecord>(await Deno.readTextFile(`${dir}/${n}`));
    out.push(...(seg === cursor.segment ? records.slice(cursor.line) : records));
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("batcher: once sends have been hanging for spoolAfterMs (injected clock), memory and the batch in flight go to disk; new records follow", async () => {
  const dir = await tempDir();
  try {
    let t = 0;
    const spool = await openSpool<SpooledRecord>(dir);
    const delivered: OutRecord[] = [];
    let release: (ok: boolean) => void = () => {};
    let hang = true;
    const b = createBatcher({
      batchSize: 10,
      lingerMs: 0,
      spool,
      spoolAfterMs: 1000,
      outageCheckMs: 2,
      backoff: { initialMs: 1, maxMs: 2 },
      logger: quiet,
      now: () => t,
      send: async (records) => {
        if (hang) {
          const ok = await new Promise<boolean>((r) => (release = r));
          if (!ok) throw new Error("Connection error");
        }
        delivered.push(...records);
      },
    });
    for (let i = 0; i < 50; i++) b.enqueue(rec(i));
    await sleep(30);
    assert.equal(
      (await onDisk(dir)).length,
      0,
      "nothing on disk before the outage is a second old",
    );
    t = 999;
    await sleep(30);
    assert.equal((await onDisk(dir)).length, 0, "still nothing at 999 ms");
    t = 1000;
    const deadline = Date.now() + 2000;
    while ((await onDisk(dir)).length < 50 && Date.now() < deadline) await sleep(2);
    assert.deepEqual(
      (await onDisk(dir)).map((r) => r.value),
      Array.from({ length: 50 }, (_, i) => String(i)),
      "the batch in flight, then memory, on disk in order",
    );
    // New records during the outage reach the disk within a few checks.
    for (let i = 50; i < 60; i++) b.enqueue(rec(i));
    const deadline2 = Date.now() + 2000;
    while (b.stats().memory > 0 && Date.now() < deadline2) await sleep(2);
    assert.equal(b.stats().memory, 0, "nothing left only in memory");
    assert.equal((await onDisk(dir)).length, 60);
    // The hanging send fails; later ones succeed: everything delivered once, in order.
    hang = false;
    release(false);
    await b.flush();
    assert.equal(await b.close(), 0);
    assert.deepEqual(
      delivered.map((r) => r.value),
      Array.from({ length: 60 }, (_, i) => String(i)),
    );
    assert.equal((await onDisk(dir)).length, 0, "spool acknowledged");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("batcher: a hanging send that then succeeds after spooling is acknowledged from the spool, not sent twice", async () => {
  const dir = await tempDir();
  try {
    let t = 0;
    const spool = await openSpool<SpooledRecord>(dir);
    const delivered: OutRecord[] = [];
    let release: () => void = () => {};
    let first = true;
    const b = createBatcher({
      batchSize: 20,
      lingerMs: 0,
      spool,
      outageCheckMs: 2,
      logger: quiet,
      now: () => t,
      send: async (records) => {
        if (first) {
          first = false;
          await new Promise<void>((r) => (release = r));
        }
        delivered.push(...records);
      },
    });
    for (let i = 0; i < 30; i++) b.enqueue(rec(i));
    await sleep(10);
    t = 1500;
    const deadline = Date.now() + 2000;
    while ((await onDisk(dir)).length < 30 && Date.now() < deadline) await sleep(2);
    assert.equal((await onDisk(dir)).length, 30);
    release(); // the first batch (0..19) was written after all
    await b.flush();
    assert.equal(await b.close(), 0);
    assert.deepEqual(
      delivered.map((r) => r.value),
      Array.from({ length: 30 }, (_, i) => String(i)),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("batcher: failing sends younger than spoolAfterMs keep records in memory (no disk writes)", async () => {
  const dir = await tempDir();
  try {
    const t = 0;
    const spool = await openSpool<SpooledRecord>(dir);
    let fail = true;
    const delivered: string[] = [];
    const b = createBatcher({
      batchSize: 10,
      lingerMs: 0,
      spool,
      outageCheckMs: 1,
      backoff: { initialMs: 1, maxMs: 2 },
      logger: quiet,
      now: () => t,
      send: (records) => {
        if (fail) return Promise.reject(new Error("Connection error"));
        delivered.push(...records.map((r) => r.value as string));
        return Promise.resolve();
      },
    });
    for (let i = 0; i < 40; i++) b.enqueue(rec(i));
    await sleep(50);
    assert.ok(b.stats().failures > 3);
    assert.equal(b.stats().spooled, 0);
    assert.equal((await onDisk(dir)).length, 0);
    fail = false;
    await b.flush();
    await b.close();
    assert.deepEqual(delivered, Array.from({ length: 40 }, (_, i) => String(i)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("batcher: random failures, hangs, refusals, clock jumps and small spools keep the order in flight, spool, memory (randomized)", async () => {
  let spooledRuns = 0;
  let refusals = 0;
  for (const seed of [21, 22, 23, 24, 25, 26]) {
    const rnd = prng(seed);
    const dir = await tempDir();
    try {
      let t = 0;
      const spool = await openSpool<SpooledRecord>(dir, { segmentBytes: 2000 });
      const accepted: OutRecord[] = [];
      const limit = 2500;
      const b = createBatcher({
        batchSize: 1 + Math.floor(rnd() * 40),
        maxBatchBytes: 4000,
        lingerMs: Math.floor(rnd() * 3),
        maxMemory: 20 + Math.floor(rnd() * 60),
        spool,
        spoolAfterMs: 1000,
        outageCheckMs: 1,
        backoff: { initialMs: 1, maxMs: 3 },
        logger: quiet,
        now: () => t,
        tooLarge: (r) => ({ ...r, value: "", headers: { ...r.headers, big: "1" } }),
        send: async (records) => {
          const roll = rnd();
          t += Math.floor(rnd() * 700); // time passes during the send
          if (roll < 0.15) await sleep(1 + Math.floor(rnd() * 8)); // hangs a while
          if (sumBytes(records) > limit) throw refusal("RECORD_LIST_TOO_LARGE");
          if (roll < 0.35) throw new Error("Connection error");
          accepted.push(...records);
        },
      });
      const n = 400;
      const input = Array.from(
        { length: n },
        (_, i) => mbRec(i, rnd() < 0.02 ? "x".repeat(3000) : text(rnd, Math.floor(rnd() * 60))),
      );
      let maxSpooled = 0;
      for (let i = 0; i < n; i++) {
        assert.ok(b.enqueue(input[i]), "the spool is large enough: nothing refused");
        if (rnd() < 0.1) await sleep(Math.floor(rnd() * 4));
        maxSpooled = Math.max(maxSpooled, b.stats().spooled);
      }
      if (maxSpooled > 0) spooledRuns++;
      await b.flush();
      refusals += b.stats().tooLargeRefusals;
      assert.equal(await b.close(), 0);
      const expected = input.map((r) =>
        oracleBytes(r) > limit ? { ...r, value: "", headers: { ...r.headers, big: "1" } } : r
      );
      assert.deepEqual(
        accepted.map((r) => r.headers.i),
        expected.map((r) => r.headers.i),
        `seed ${seed}: every record once, in order`,
      );
      assert.deepEqual(accepted, expected);
      assert.equal(b.stats().dropped, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  assert.ok(spooledRuns >= 3, `the spool was used in ${spooledRuns} of 6 runs`);
  assert.ok(refusals > 0, "the broker refused batches");
});

Deno.test("batcher: close past its timeout puts everything on disk before waiting for a hanging send", async () => {
  const dir = await tempDir();
  try {
    const spool = await openSpool<SpooledRecord>(dir);
    let release: () => void = () => {};
    const b = createBatcher({
      batchSize: 10,
      lingerMs: 0,
      spool,
      logger: quiet,
      // A send that hangs (never reaches Kafka) until released, then fails.
      send: () => new Promise((_, reject) => (release = () => reject(new Error("Gone")))),
    });
    for (let i = 0; i < 25; i++) b.enqueue(rec(i));
    await sleep(10);
    const closing = b.close({ timeoutMs: 30 });
    const deadline = Date.now() + 2000;
    while ((await onDisk(dir)).length < 25 && Date.now() < deadline) await sleep(2);
    assert.deepEqual(
      (await onDisk(dir)).map((r) => r.value),
      Array.from({ length: 25 }, (_, i) => String(i)),
      "on disk, in order, while the send still hangs",
    );
    release();
    assert.equal(await closing, 25);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spool form: binary values round-trip as base64, text values unchanged; foreign lines refused", () => {
  const rnd = prng(21);
  for (let i = 0; i < 500; i++) {
    const bytes = new Uint8Array(Math.floor(rnd() * 80)).map(() => Math.floor(rnd() * 256));
    const r: OutRecord = {
      topic: "t",
      key: i % 5 === 0 ? null : `k${i}`,
      value: i % 3 === 0 ? `text ${i} 日本` : bytes,
      timestamp: String(1000 + i),
      headers: { ingest_ms: "1", "tp-format": "tick-v1" },
    };
    const line = JSON.parse(JSON.stringify(toSpooled(r)));
    assert.equal(typeof line.value, "string", "a spool line holds text");
    const back = fromSpooled(line);
    assert.deepEqual(back, r, `record ${i} round-trips`);
    assert.equal(valueBytes(back!.value), valueBytes(r.value));
  }
  // A text record is its own spool form (spools of earlier versions read the same).
  const text = rec(7);
  assert.equal(toSpooled(text), text);
  for (
    const bad of [
      null,
      "x",
      { topic: "t", key: null, value: 5, timestamp: "1", headers: {} },
      { topic: "t", key: null, value: "AAA", valueEncoding: "hex", timestamp: "1", headers: {} },
      {
        topic: "t",
        key: null,
        value: "A===",
        valueEncoding: "base64",
        timestamp: "1",
        headers: {},
      },
      { topic: "t", key: 3, value: "a", timestamp: "1", headers: {} },
      { topic: "t", key: null, value: "a", timestamp: "1", headers: { h: 1 } },
    ]
  ) assert.equal(fromSpooled(bad), null, `refused: ${JSON.stringify(bad)}`);
});

Deno.test("batcher: binary values go through an outage and the disk spool byte for byte, in order", async () => {
  const dir = await tempDir();
  try {
    const spool = await openSpool<SpooledRecord>(dir);
    let down = true;
    const delivered: Uint8Array[] = [];
    const bin = (i: number): OutRecord => ({
      ...rec(i),
      value: new Uint8Array([i & 0xff, (i >> 8) & 0xff, 0, 0x80, 0xff]),
    });
    const b = createBatcher({
      batchSize: 40,
      lingerMs: 1,
      maxMemory: 60,
      spool,
      logger: quiet,
      backoff: { initialMs: 5, maxMs: 20 },
      send: async (records) => {
        await new Promise((r) => setTimeout(r, 1));
        if (down) throw new Error("Connection error: ECONNREFUSED");
        for (const r of records) {
          assert.ok(r.value instanceof Uint8Array, "a binary value stays binary");
          delivered.push(r.value);
        }
      },
    });
    for (let i = 0; i < 500; i++) {
      b.enqueue(bin(i));
      if (i % 40 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(b.stats().spooled > 0, "records were spooled");
    down = false;
    await b.flush();
    assert.equal(await b.close(), 0);
    assert.deepEqual(delivered, Array.from({ length: 500 }, (_, i) => bin(i).value));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recordBytes counts a binary value by its length", () => {
  const r: OutRecord = { ...rec(1), value: new Uint8Array(123) };
  assert.equal(recordBytes(r), recordBytes({ ...rec(1), value: "x".repeat(123) }));
  assert.equal(recordBytes(r), oracleBytes(r));
});

Deno.test("kafkaSend: ingest's records go to kafkajs as they are; other shapes are grouped by topic, bytes as Buffers", async () => {
  const sent: { topic: string; messages: { value: unknown; key: unknown }[] }[][] = [];
  const send = kafkaSend({
    sendBatch: (b) => {
      assert.equal(b.acks, -1);
      sent.push(b.topicMessages);
      return Promise.resolve();
    },
  });
  const text = [rec(1), rec(2)];
  const buf = { ...rec(3), value: Buffer.from([1, 2, 3]) };
  await send([...text, buf]);
  assert.equal(sent[0].length, 1);
  assert.equal(sent[0][0].topic, "t");
  assert.equal(sent[0][0].messages[0], text[0], "the record itself, no copy");
  assert.equal(sent[0][0].messages[2], buf);
  // Two topics and a plain Uint8Array value: grouped, copied, the bytes as a Buffer view.
  const bytes = new Uint8Array([9, 8, 7]);
  await send([rec(4), { ...rec(5), topic: "t.dlq" }, { ...rec(6), value: bytes }]);
  assert.deepEqual(sent[1].map((t) => [t.topic, t.messages.length]), [["t", 2], ["t.dlq", 1]]);
  const v = sent[1][0].messages[1].value;
  assert.ok(Buffer.isBuffer(v));
  assert.deepEqual([...(v as Buffer)], [9, 8, 7]);
  assert.equal((v as Buffer).buffer, bytes.buffer, "a view, not a copy");
  await send([]);
  assert.equal(sent.length, 2, "nothing sent for an empty batch");
});

// ---- A disk that refuses the spool (full, I/O errors) ----

Deno.test("batcher: a disk that refuses the spool never stops it: memory stays bounded (newest dropped, counted), the spool is retried, the rest delivered once in order (randomized)", async () => {
  for (const seed of [1, 2, 3]) {
    const rnd = prng(seed);
    const dir = await tempDir();
    try {
      const real = await openSpool<SpooledRecord>(dir);
      const disk = { full: true, refusals: 0 };
      // The spool as the disk makes it: the real one, or the error it throws having written none.
      const spool = {
        ...real,
        append: (records: readonly SpooledRecord[]) => {
          if (!disk.full) return real.append(records);
          disk.refusals++;
          return Promise.reject(
            new SpoolError(
              `Cannot write ${records.length} records to the spool in ${dir}: No space left on ` +
                "device (os error 28) (none of them was spooled)",
            ),
          );
        },
      };
      const lines: string[] = [];
      const kafka = { down: true };
      const delivered: number[] = [];
      const maxMemory = 100;
      const batchSize = 20;
      const b = createBatcher({
        batchSize,
        lingerMs: 1,
        maxMemory,
        spool,
        spoolAfterMs: 10,
        outageCheckMs: 5,
        backoff: { initialMs: 2, maxMs: 20 },
        logger: createLogger("test", { level: "warn", write: (l) => lines.push(l) }),
        send: async (records) => {
          await new Promise((r) => setTimeout(r, rnd() * 2));
          if (kafka.down) throw new Error("Connection error: ECONNREFUSED");
          delivered.push(...records.map((r) => Number(r.value)));
        },
      });
      const accepted: number[] = [];
      let refused = 0;
      let maxMem = 0;
      let i = 0;
      // Phases: disk full and Kafka down; disk back, Kafka down; disk full again, Kafka back
      // for a while then down; both back. Bursts of random size with random pauses.
      const phases: [boolean, boolean][] = [[true, true], [false, true], [true, false], [
        true,
        true,
      ], [false, false]];
      for (const [full, down] of phases) {
        disk.full = full;
        kafka.down = down;
        for (let burst = 0; burst < 15; burst++) {
          for (let k = Math.floor(rnd() * 60); k > 0; k--, i++) {
            if (b.enqueue(rec(i))) accepted.push(i);
            else refused++;
          }
          // Enqueue never blocks: memory may pass maxMemory by a burst before the loop spools or
          // (disk refusing) starts dropping, never by more.
          if (full && down) maxMem = Math.max(maxMem, b.stats().memory);
          await new Promise((r) => setTimeout(r, 1 + rnd() * 15));
        }
      }
      await b.flush(AbortSignal.timeout(20_000)); // a stopped delivery loop fails, not hangs
      const s = b.stats();
      assert.equal(await b.close({ timeoutMs: 1000 }), 0, "everything kept was delivered");
      assert.ok(disk.refusals > 0 && s.spoolErrors === disk.refusals, `${s.spoolErrors}`);
      assert.ok(refused > 0, "records were dropped while memory was full and the disk refused");
      assert.equal(s.dropped, refused, "every dropped record is counted");
      assert.deepEqual(delivered, accepted, "every kept record delivered once, in order");
      assert.ok(maxMem <= maxMemory + batchSize + 60, `memory held ${maxMem} records`);
      assert.ok(
        lines.some((l) => /Cannot write to the disk spool: .*No space left on device/.test(l)),
        "the log says the disk refused the spool, and why",
      );
      assert.ok(
        lines.some((l) => /Memory buffer is full and the disk refuses the spool/.test(l)),
        "drops say why",
      );
      assert.ok(!lines.some((l) => /Producer loop crashed/.test(l)), lines.join("\n"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});
