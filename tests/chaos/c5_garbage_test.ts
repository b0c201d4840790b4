// Chaos 5: fuzzed frames (random bytes, truncated protobuf, wrong wire types, huge strings, bad
// base64, broken JSON envelopes, far-future and impossible times) interleaved with valid ticks,
// replayed by the simulator into the real ingest: no crash, every bad frame is in the DLQ with
// its reason, the valid ticks around them are in the topic untouched.
import assert from "node:assert/strict";
import { encode } from "../../proto/mod.ts";
import { parseFrame } from "../../ingest/frame.ts";
import { startSimulator } from "../../ingest/simulator.ts";
import {
  chaosKafka,
  createTopics,
  deleteTopics,
  ensureKafka,
  pick,
  readTopic,
  sleep,
  summary,
  testOpts,
  uniq,
  until,
} from "./_harness.ts";
import { mulberry32 as rng } from "../../common/prng.ts";
import { chaosSpoolDir, compareTicks, spawnIngest } from "./_ingest.ts";

const SYMBOLS = ["AAPL", "MSFT", "BTC-USD"];

/** Seeded fuzzer: returns [variant, raw frame]. */
function fuzzer(seed: number, now: number) {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const b64 = (b: Uint8Array) => b.toBase64();
  const env = (m: unknown) => JSON.stringify({ type: "pricing", message: m });
  const sym = () => SYMBOLS[int(SYMBOLS.length)];
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  const text = (n: number) => {
    let s = "";
    for (let i = 0; i < n; i++) {
      let c = int(0x2ff00);
      if (c >= 0xd800 && c <= 0xdfff) c = 0x41; // no lone surrogates (not valid UTF-8 text)
      s += String.fromCodePoint(c);
    }
    return s;
  };
  const valid = (extra: Record<string, unknown> = {}) =>
    encode({ id: sym(), price: 1 + int(100000) / 100, time: now - int(1000), ...extra });
  const variants: [string, () => string][] = [
    ["random_text", () => text(1 + int(200))],
    ["random_bytes_b64", () => b64(bytes(1 + int(64)))],
    ["random_bytes_env", () => env(b64(bytes(1 + int(64))))],
    ["truncated_protobuf", () => {
      const full = valid();
      return env(b64(full.subarray(0, 1 + int(full.length - 1))));
    }],
    ["wrong_wire_type", () => {
      // field 1..3 with every wrong wire type, then garbage
      const field = 1 + int(3);
      const wt = [0, 1, 5, 2][int(4)];
      return env(b64(Uint8Array.from([(field << 3) | wt, ...bytes(int(12))])));
    }],
    ["huge_string", () => (int(2) ? "A" : '{"type":"pricing","message":"') + "x".repeat(70_000)],
    ["bad_base64", () => env(text(1 + int(40)).replace(/[A-Za-z0-9+/=]/g, "*"))],
    ["bad_base64_padding", () => env(b64(valid()).replace(/=*$/, "") + "=")],
    ["broken_json", () => {
      const s = env(b64(valid()));
      return s.slice(0, 1 + int(s.length - 2));
    }],
    ["json_not_object", () => ["[1,2,3]", '["pricing"]', "{}", '{"type":7}'][int(4)]],
    ["bad_message_type", () => JSON.stringify({ type: "pricing", message: [42, null][int(2)] })],
    ["far_future", () => env(b64(valid({ time: now + 86_400_000 * (1 + int(36500)) })))],
    ["bad_time", () => env(b64(valid({ time: -int(1e6) - 1 })))],
    ["bad_price", () => env(b64(valid({ price: [-1, 0, NaN, Infinity][int(4)] })))],
    ["bad_symbol", () => env(b64(valid({ id: ["", " X", "A\u0007B", "Z".repeat(33)][int(4)] })))],
  ];
  return (): [string, string] => {
    const [name, f] = variants[int(variants.length)];
    return [name, f()];
  };
}

Deno.test(
  "chaos 5: fuzzed garbage goes to the DLQ with a reason, valid ticks untouched",
  testOpts,
  async () => {
    const garbageN = pick(10_000, 100_000);
    const t0 = Date.now();
    await ensureKafka();
    const kafka = chaosKafka();
    const topic = uniq("chaos-garbage");
    await createTopics(kafka, [topic, `${topic}.dlq`]);
    const now = Date.now();
    const next = fuzzer(5150, now);
    const r = rng(99);
    const frames: string[] = [];
    const variantOf = new Map<string, string>();
    let garbage = 0;
    while (garbage < garbageN) {
      if (r() < 0.2) {
        frames.push(
          JSON.stringify({
            type: "pricing",
            message: encode({
              id: SYMBOLS[Math.floor(r() * 3)],
              price: 100 + Math.floor(r() * 1e4) / 100,
              time: now + frames.length,
            }).toBase64(),
          }),
        );
      } else {
        const [v, f] = next();
        frames.push(f);
        variantOf.set(f, v);
        garbage++;
      }
    }
    // rate 0: frames are pushed with emit() once ingest has subscribed (a paced replay would
    // start before the connection and skip frames).
    const sim = await startSimulator({ port: 0, rate: 0, seed: 5, heartbeatMs: 0, replay: frames });
    const ingest = await spawnIngest(`c5-ingest-${topic}`, {
      topic,
      simPort: sim.port,
      symbols: SYMBOLS,
    });
    try {
      await until(() => sim.symbols().length === SYMBOLS.length, "ingest to subscribe", 30_000);
      const perTick = pick(200, 400); // frames per 50 ms: 4k/s (short), 8k/s (full)
      for (let i = 0; i < frames.length; i += perTick) {
        sim.emit(Math.min(perTick, frames.length - i));
        await sleep(50);
      }
      await sim.finished;
      await sleep(1000);
      assert.ok(!ingest.exited(), "ingest did not crash");
      await sim.close();
      ingest.kill("SIGTERM");
      assert.equal(await ingest.status, 0, ingest.lines.slice(-20).join("\n"));
      const sent = sim.sent();
      assert.equal(sent.length, frames.length, "every frame was sent");
      const [ticks, dlq] = [await readTopic(kafka, topic), await readTopic(kafka, `${topic}.dlq`)];
      const c = compareTicks(sent, ticks);
      // Expected dead letters: every frame parseFrame rejects (re-checked at receive-ish time).
      const want = new Map<string, number>();
      let ignored = 0;
      const reasons: Record<string, number> = {};
      for (const s of sent) {
        const p = parseFrame(s.frame, { nowMs: s.at });
        if (p.ok === "ignored") ignored++;
        if (p.ok !== false) continue;
        const k = `${p.reason}|${s.frame.slice(0, 100_000)}`;
        want.set(k, (want.get(k) ?? 0) + 1);
        reasons[p.reason] = (reasons[p.reason] ?? 0) + 1;
      }
      const got = new Map<string, number>();
      let noReason = 0;
      for (const m of dlq) {
        if (!m.headers.reason || !m.headers.detail) noReason++;
        const k = `${m.headers.reason}|${m.value}`;
        got.set(k, (got.get(k) ?? 0) + 1);
      }
      let dlqMissing = 0;
      let dlqExtra = 0;
      for (const [k, n] of want) dlqMissing += Math.max(0, n - (got.get(k) ?? 0));
      for (const [k, n] of got) dlqExtra += Math.max(0, n - (want.get(k) ?? 0));
      const expectedDlq = [...want.values()].reduce((a, b) => a + b, 0);
      await summary(
        `5 garbage: frames=${frames.length} garbage=${garbage} valid_in=${c.expected} ` +
          `valid_in_topic=${c.got} missing=${c.missing} dup=${c.duplicates} ` +
          `dlq_expected=${expectedDlq} dlq=${dlq.length} dlq_missing=${dlqMissing} ` +
          `dlq_extra=${dlqExtra} dlq_without_reason=${noReason} ignored_envelopes=${ignored} ` +
          `reasons=${JSON.stringify(reasons)} ingest_exit=0 in ${
            ((Date.now() - t0) / 1000).toFixed(0)
          }s`,
      );
      assert.equal(
        c.missing + c.duplicates + c.unexpected,
        0,
        "valid ticks untouched, exactly once",
      );
      assert.equal(dlqMissing, 0, "every rejected frame is in the DLQ");
      assert.equal(dlqExtra, 0, "nothing else is in the DLQ");
      assert.equal(noReason, 0, "every dead letter has a reason and a detail");
      assert.equal(expectedDlq + ignored + c.expected, frames.length, "every frame accounted for");
    } finally {
      if (!ingest.exited()) {
        ingest.kill("SIGKILL");
        await ingest.status;
      }
      await sim.close();
      await deleteTopics(kafka, [topic, `${topic}.dlq`]);
      await Deno.remove(chaosSpoolDir(topic), { recursive: true }).catch(() => {});
    }
  },
);
