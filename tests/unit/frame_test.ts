import assert from "node:assert/strict";
import { encode, type PricingData } from "../../proto/mod.ts";
import {
  encodeFrame,
  FRAME_REASONS,
  type FrameReason,
  type FrameResult,
  parseFrame,
  tickKey,
} from "../../ingest/frame.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

interface Vector {
  id: string;
  frame_base64: string;
  expected: PricingData;
}
const VECTORS: Vector[] = JSON.parse(
  await Deno.readTextFile(new URL("../fixtures/yahoo_frames.json", import.meta.url)),
).frames;

const NOW = 1_736_509_140_000;
const v2 = (message: string) => JSON.stringify({ type: "pricing", message });
const b64 = (data: PricingData) => encode(data).toBase64();
const bytesB64 = (bytes: number[]) => new Uint8Array(bytes).toBase64();
const GOOD: PricingData = { id: "AAPL", price: 189.5, time: NOW - 1000 };

function assertRejected(result: FrameResult, reason: FrameReason): void {
  assert.equal(result.ok, false, JSON.stringify(result));
  if (result.ok !== false) return;
  assert.equal(result.reason, reason, result.detail);
  assert.match(result.detail, /^[A-Z]/);
}

Deno.test("vectors parse exactly in v2 envelopes and as bare v1 frames", () => {
  for (const v of VECTORS) {
    const opts = { nowMs: v.expected.time! };
    assert.deepStrictEqual(parseFrame(v2(v.frame_base64), opts), {
      ok: true,
      tick: v.expected,
      version: 2,
    }, v.id);
    assert.deepStrictEqual(parseFrame(v.frame_base64, opts), {
      ok: true,
      tick: v.expected,
      version: 1,
    }, v.id);
  }
});

Deno.test("non-pricing envelopes are ignored, not errors", () => {
  assert.deepStrictEqual(parseFrame('{"type":"heartbeat","time":1}', { nowMs: NOW }), {
    ok: "ignored",
    type: "heartbeat",
  });
  assert.deepStrictEqual(parseFrame(' {"type":"status"}', { nowMs: NOW }), {
    ok: "ignored",
    type: "status",
  });
});

Deno.test("each rejection reason", () => {
  const o = { nowMs: NOW };
  assertRejected(parseFrame('{"type":"pricing","message":', o), "bad_json");
  assertRejected(parseFrame("[1,2]", o), "bad_envelope");
  assertRejected(parseFrame("{}", o), "bad_envelope");
  assertRejected(parseFrame('{"type":7}', o), "bad_envelope");
  assertRejected(parseFrame('{"type":"pricing"}', o), "bad_envelope");
  assertRejected(parseFrame('{"type":"pricing","message":42}', o), "bad_envelope");
  assertRejected(parseFrame(v2("not base64!"), o), "bad_base64");
  assertRejected(parseFrame("@@@@", o), "bad_base64");
  assertRejected(parseFrame(v2(bytesB64([0x0a, 0x05, 0x41])), o), "bad_protobuf");
  assertRejected(parseFrame(bytesB64([0x0a, 0x02, 0xff, 0xfe]), o), "bad_protobuf");
  assertRejected(parseFrame(bytesB64([0x10, 0x01]), o), "bad_protobuf"); // price as varint
  assertRejected(parseFrame(b64({ price: 1, time: NOW }), o), "missing_id");
  assertRejected(parseFrame(b64({ ...GOOD, id: "" }), o), "bad_symbol");
  assertRejected(parseFrame(b64({ ...GOOD, id: "X".repeat(33) }), o), "bad_symbol");
  assertRejected(parseFrame(b64({ ...GOOD, id: "A\nB" }), o), "bad_symbol");
  assertRejected(parseFrame(b64({ ...GOOD, id: " AAPL" }), o), "bad_symbol");
  assertRejected(parseFrame(b64({ ...GOOD, id: "AAPL\u0085" }), o), "bad_symbol");
  for (
    const id of ["A B", `O'Brien"; DROP TABLE price_windows;--`.slice(0, 32), "日経225", "€/$ 📈"]
  ) {
    const r = parseFrame(b64({ ...GOOD, id }), o);
    assert.ok(
      r.ok === true && r.tick.id === id,
      `symbol ${JSON.stringify(id)} is data, kept verbatim`,
    );
  }
  assertRejected(parseFrame(b64({ id: "AAPL", time: NOW }), o), "missing_price");
  for (const price of [0, -1, -0, NaN, Infinity]) {
    assertRejected(parseFrame(b64({ ...GOOD, price }), o), "bad_price");
  }
  assertRejected(parseFrame(b64({ id: "AAPL", price: 1 }), o), "missing_time");
  assertRejected(parseFrame(b64({ ...GOOD, time: -5 }), o), "bad_time");
  assertRejected(parseFrame(b64({ ...GOOD, time: 2 ** 60 }), o), "bad_time"); // beyond 2^53
  assertRejected(parseFrame(b64({ ...GOOD, time: NOW + 1e12 }), o), "future_time");
  assertRejected(parseFrame("A".repeat(70_000), o), "too_large");
  assertRejected(parseFrame("QUFB", { nowMs: NOW, maxFrameLength: 3 }), "too_large");
});

Deno.test("symbol limits: 32 characters ok, 33 rejected; details name the value", () => {
  const ok = parseFrame(b64({ ...GOOD, id: "Y".repeat(32) }), { nowMs: NOW });
  assert.equal(ok.ok, true);
  const bad = parseFrame(b64({ ...GOOD, id: "Z".repeat(1_000) }), { nowMs: NOW });
  assertRejected(bad, "bad_symbol");
  if (bad.ok === false) {
    assert.match(bad.detail, /ZZZZ/);
    assert.ok(bad.detail.length < 200, "detail stays short for huge values");
  }
});

Deno.test("future_time boundary follows maxFutureMs (default 5 minutes); late ticks pass", () => {
  const at = (time: number, maxFutureMs?: number) =>
    parseFrame(b64({ ...GOOD, time }), { nowMs: NOW, maxFutureMs });
  assert.equal(at(NOW + 300_000).ok, true);
  assertRejected(at(NOW + 300_001), "future_time");
  assert.equal(at(NOW + 10_000, 10_000).ok, true);
  assertRejected(at(NOW + 10_001, 10_000), "future_time");
  assert.equal(at(NOW - 20 * 60_000).ok, true); // lateness is the aggregator's business
});

Deno.test("strict base64", () => {
  const good = b64(GOOD);
  assert.equal(parseFrame(good, { nowMs: NOW }).ok, true);
  const variants = [
    good + "\n", // trailing newline
    " " + good,
    good.slice(0, 4) + "\n" + good.slice(4),
    good.replace(/=+$/, ""), // padding stripped
    good.replaceAll("+", "-").replaceAll("/", "_") + "-", // url-safe alphabet
    "QR==", // non-zero padding bits
    "Q===",
    "QQ==QQ==", // padding in the middle
    v2(good + "é"),
  ];
  for (const s of variants) {
    if (s === good) continue;
    assertRejected(parseFrame(s, { nowMs: NOW }), "bad_base64");
  }
});

Deno.test("tickKey is the symbol; encodeFrame round-trips in both versions", () => {
  const data: PricingData = {
    ...GOOD,
    exchange: "NMS",
    quoteType: 8,
    marketHours: 1,
    dayVolume: 5,
  };
  for (const version of [1, 2] as const) {
    const frame = encodeFrame(data, { version });
    assert.equal(frame.startsWith("{"), version === 2);
    const r = parseFrame(frame, { nowMs: NOW });
    assert.deepStrictEqual(r, { ok: true, tick: data, version });
    if (r.ok === true) assert.equal(tickKey(r.tick), "AAPL");
  }
  assert.equal(encodeFrame(data), encodeFrame(data, { version: 2 }));
});

Deno.test("thousands of garbage frames are rejected with a reason; valid ticks around them parse", () => {
  const random = prng(2024);
  const int = (n: number) => Math.floor(random() * n);
  const randomBytes = (n: number) => Array.from({ length: n }, () => int(256));
  const valid = (i: number): PricingData => ({
    id: ["AAPL", "MSFT", "BTC-USD", "^GSPC"][i % 4],
    price: Math.round(1 + random() * 100_000) / 100,
    time: NOW - int(3_600_000),
    dayVolume: int(1e9),
    marketHours: int(5),
  });
  const good = encode(valid(0));
  const generators: Array<() => string> = [
    () => bytesB64(randomBytes(1 + int(80))), // random bytes (may even be a valid message)
    // truncated protobuf (a cut on a field boundary after id/price/time is a valid tick)
    () => good.subarray(0, 1 + int(good.length - 1)).toBase64(),
    () => bytesB64([(1 + int(33)) << 3 | [0, 1, 2, 5][int(4)], ...randomBytes(int(10))]),
    () => b64({ ...valid(1), id: "H".repeat(33 + int(100_000)) }), // huge strings
    () => bytesB64([0x0a, 0xff, 0xff, 0xff, 0x7f, 0x41]), // length far past the end
    () => "QUJD" + "!#$%-_ \n"[int(8)] + "QUJD", // bad base64 character
    () => good.toBase64().slice(0, -1), // bad base64 length
    () => v2(good.toBase64()).slice(0, 1 + int(40)), // broken JSON envelope
    () => JSON.stringify({ type: "pricing", message: [null, 1, {}, true][int(4)] }),
    () => encodeFrame({ ...valid(2), time: NOW + 3_600_000 + int(1e12) }), // far future
    () => encodeFrame({ ...valid(3), price: -int(100) }),
    () => bytesB64([0x0a, 0x03, 0xe2, 0x82, 0x28]), // invalid UTF-8
    () => bytesB64([0x18, ...new Array(10).fill(0xff), 0x7f]), // varint overflow
  ];
  const reasons = new Set<string>(FRAME_REASONS);
  const seen = new Map<string, number>();
  for (let i = 0; i < 5_000; i++) {
    const gen = int(generators.length);
    const raw = generators[gen]();
    let r: FrameResult;
    try {
      r = parseFrame(raw, { nowMs: NOW });
    } catch (e) {
      throw new Error(`generator ${gen} threw on ${raw.slice(0, 80)}: ${e}`);
    }
    if (gen > 1 || r.ok === false) {
      assert.equal(r.ok, false, `generator ${gen}: ${raw.slice(0, 80)}`);
    }
    if (r.ok === false) {
      assert.ok(reasons.has(r.reason), r.reason);
      assert.ok(r.detail.length > 0 && r.detail.length < 400, r.detail);
      seen.set(r.reason, (seen.get(r.reason) ?? 0) + 1);
    }
    // A valid tick right after each garbage frame still decodes exactly.
    const tick = valid(i);
    const version = i % 2 === 0 ? 1 : 2;
    assert.deepStrictEqual(parseFrame(encodeFrame(tick, { version }), { nowMs: NOW }), {
      ok: true,
      tick,
      version,
    });
  }
  for (const reason of ["bad_base64", "bad_json", "bad_envelope", "bad_protobuf", "bad_symbol"]) {
    assert.ok((seen.get(reason) ?? 0) > 50, `${reason} exercised: ${seen.get(reason)}`);
  }
  assert.ok((seen.get("future_time") ?? 0) > 50);
  assert.ok((seen.get("bad_price") ?? 0) > 50);
});

Deno.test("the exact-envelope fast path gives the same results as the general JSON path (randomized)", () => {
  const rnd = prng(99);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="\\ {}';
  const messages: string[] = VECTORS.map((v) => v.frame_base64);
  for (let i = 0; i < 400; i++) {
    messages.push(b64({ ...GOOD, id: `S${i}`, price: 1 + i, dayVolume: i * 1000 }));
    // Near misses: base64 with a stray character, a bad length or bad padding.
    let m = b64({ ...GOOD, id: `N${i}` });
    const at = Math.floor(rnd() * m.length);
    m = m.slice(0, at) + alphabet[Math.floor(rnd() * alphabet.length)] + m.slice(at + 1);
    messages.push(m, m.slice(0, -1), `${m}=`);
  }
  let fast = 0;
  for (const m of messages) {
    const exact = `{"type":"pricing","message":"${m.replace(/["\\]/g, (c) => `\\${c}`)}"}`;
    // The same envelope as the general path reads it: spaced out, '/' escaped, keys reordered.
    const spaced = `{ "type" : "pricing" , "message" : ${JSON.stringify(m)} }`;
    const escaped = `{"type":"pricing","message":${JSON.stringify(m).replaceAll("/", "\\/")}}`;
    const reordered = JSON.stringify({ message: m, type: "pricing" });
    const want = parseFrame(spaced, { nowMs: NOW });
    for (const f of [exact, escaped, reordered, `${exact} `]) {
      assert.deepStrictEqual(parseFrame(f, { nowMs: NOW }), want, f);
    }
    if (want.ok === true) fast++;
  }
  assert.ok(fast > 400, `${fast} valid envelopes among the cases`);
  // A quote inside the message makes another JSON document: the general path decides.
  const dup = `{"type":"pricing","message":"QUFB","message":"${b64(GOOD)}"}`;
  const last = parseFrame(v2(b64(GOOD)), { nowMs: NOW });
  assert.equal(last.ok, true);
  assert.deepStrictEqual(parseFrame(dup, { nowMs: NOW }), last, "JSON's last key wins");
  assertRejected(parseFrame('{"type":"pricing","message":"QUFB"x}', { nowMs: NOW }), "bad_json");
});
