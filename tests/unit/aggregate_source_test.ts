// The tick source's batch encoding (kafkajs messages → columns that cross threads), checked
// against the messages themselves on randomized batches, and the kafkajs idle fix.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  batchBytes,
  encodeBatch,
  fingerprintOf,
  FORMAT_CODE,
  type KafkaMessage,
  keyAt,
  transferablesOf,
  valueAt,
} from "../../aggregate/source.ts";
import { kafkajsIdleFixApplied } from "../../common/kafkajs_idle_fix.ts";
import RequestQueueModule from "kafkajs/src/network/requestQueue/index.js";
import { mulberry32 as prng } from "../../common/prng.ts";

const FORMATS = [undefined, "json", "tick-v1", "bogus", Buffer.from("tick-v1"), Buffer.from("x")];

function randomMessages(rand: () => number, n: number, firstOffset: number): KafkaMessage[] {
  // Values and keys are slices of one shared buffer, as kafkajs hands them over.
  const pool = Buffer.from(Array.from({ length: 4096 }, () => Math.floor(rand() * 256)));
  const slice = () => {
    const start = Math.floor(rand() * 2000);
    return pool.subarray(start, start + Math.floor(rand() * 300));
  };
  return Array.from({ length: n }, (_, i) => {
    const headers: Record<string, Buffer | string | Buffer[]> = {};
    const f = FORMATS[Math.floor(rand() * FORMATS.length)];
    if (f !== undefined) headers["tp-format"] = f as Buffer | string;
    if (rand() < 0.05) headers["tp-format"] = [Buffer.from("json"), Buffer.from("json")];
    if (rand() < 0.7) headers["ingest_ms"] = Buffer.from(String(1_700_000_000_000 + i));
    return {
      key: rand() < 0.2 ? null : slice(),
      value: rand() < 0.1 ? null : slice(),
      timestamp: String(1_750_000_000_000 + Math.floor(rand() * 1e6)),
      attributes: 0,
      offset: String(firstOffset + i + Math.floor(rand() * 2)),
      headers,
    } as unknown as KafkaMessage;
  });
}

const bytesOf = (b: Uint8Array | null | undefined) => b == null ? null : [...b];

Deno.test("source: encodeBatch keeps every message's offset, timestamp, key, value and format", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const rand = prng(seed);
    const n = 1 + Math.floor(rand() * 60);
    const msgs = randomMessages(rand, n, Math.floor(rand() * 1e9));
    const b = encodeBatch(2, msgs, { fetchedOffset: 7, highWatermark: 99 });
    assert.equal(b.partition, 2);
    assert.equal(b.count, n);
    assert.equal(b.fetchedOffset, 7);
    assert.equal(b.highWatermark, 99);
    for (let i = 0; i < n; i++) {
      const m = msgs[i];
      assert.equal(b.offsets[i], Number(m.offset));
      assert.equal(b.timestamps[i], Number(m.timestamp));
      assert.deepEqual(bytesOf(valueAt(b, i)), bytesOf(m.value), `value ${i} (seed ${seed})`);
      assert.deepEqual(bytesOf(keyAt(b, i)), bytesOf(m.key), `key ${i} (seed ${seed})`);
      const h = m.headers?.["tp-format"];
      const text = Array.isArray(h) ? null : h === undefined ? "json" : String(h);
      const want = text === "json"
        ? FORMAT_CODE.json
        : text === "tick-v1"
        ? FORMAT_CODE.tickV1
        : FORMAT_CODE.other;
      assert.equal(b.formats[i], want, `format ${i} (seed ${seed})`);
      if (want === FORMAT_CODE.other) {
        const kept = b.otherFormats?.get(i);
        assert.deepEqual(
          Array.isArray(kept) ? kept.map((x) => String(x)) : String(kept),
          Array.isArray(h) ? h.map((x) => String(x)) : String(h),
        );
      } else assert.equal(b.otherFormats?.has(i) ?? false, false);
    }
    const last = msgs[n - 1];
    assert.deepEqual(b.last, fingerprintOf(last));
    const ingest = last.headers?.["ingest_ms"];
    if (ingest === undefined) assert.ok(Number.isNaN(b.lastIngestMs));
    else assert.equal(b.lastIngestMs, Number(String(ingest)));
    // The columns own their memory: nothing points into kafkajs' fetch buffer.
    const buffers = transferablesOf(b);
    assert.equal(new Set(buffers).size, 5);
    for (const m of msgs) {
      if (m.value) assert.ok(!buffers.includes(m.value.buffer as ArrayBuffer));
    }
    assert.equal(batchBytes(b), b.data.byteLength + 33 * n);
  }
});

Deno.test("source: a batch survives a transfer to another thread intact", async () => {
  const rand = prng(99);
  const msgs = randomMessages(rand, 50, 1000);
  const b = encodeBatch(0, msgs, { fetchedOffset: 1000, highWatermark: 2000 });
  const values = msgs.map((m) => bytesOf(m.value));
  const { port1, port2 } = new MessageChannel();
  const got = new Promise<typeof b>((resolve) => {
    port2.onmessage = (e) => resolve(e.data);
  });
  port1.postMessage(b, transferablesOf(b));
  const copy = await got;
  port1.close();
  port2.close();
  assert.equal(b.data.byteLength, 0, "transferred, not cloned");
  for (let i = 0; i < msgs.length; i++) assert.deepEqual(bytesOf(valueAt(copy, i)), values[i]);
});

Deno.test("kafkajs idle fix: an idle request queue arms no timer; a pending request still does", () => {
  assert.equal(kafkajsIdleFixApplied, true);
  // deno-lint-ignore no-explicit-any
  const proto = (RequestQueueModule as any).prototype;
  const idle = { pending: [], throttledUntil: -1, throttleCheckTimeoutId: null };
  proto.scheduleCheckPendingRequests.call(idle);
  assert.equal(idle.throttleCheckTimeoutId, null, "no timer for an idle queue");
  const busy = {
    pending: [{}],
    throttledUntil: -1,
    throttleCheckTimeoutId: null as number | null,
    checkPendingRequests() {},
  };
  proto.scheduleCheckPendingRequests.call(busy);
  assert.notEqual(busy.throttleCheckTimeoutId, null, "a pending request is checked later");
  clearTimeout(busy.throttleCheckTimeoutId!);
  const throttled = {
    pending: [],
    throttledUntil: Date.now() + 60_000,
    throttleCheckTimeoutId: null as number | null,
    checkPendingRequests() {},
  };
  proto.scheduleCheckPendingRequests.call(throttled);
  assert.notEqual(throttled.throttleCheckTimeoutId, null, "a throttled queue is checked later");
  clearTimeout(throttled.throttleCheckTimeoutId!);
});
