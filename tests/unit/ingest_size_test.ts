// Sizes in UTF-8 bytes: the string helpers against TextEncoder (randomized), the frame size and
// per-field caps of parseFrame (too_large with a detail naming the field and the cap), dead
// letters cut to fit as flat copies (a subprocess measures that the original frames are freed),
// and ingest's replacement of records too large for Kafka.
import assert from "node:assert/strict";
import { surelyWithin, truncateUtf8, utf8Length } from "../../ingest/_utf8.ts";
import { decodeTick, encode, type PricingData } from "../../proto/mod.ts";
import {
  DEFAULT_MAX_FRAME_LENGTH,
  encodeFrame,
  type FrameResult,
  MAX_FIELD_BYTES,
  parseFrame,
  type Tick,
} from "../../ingest/frame.ts";
import {
  dlqRecord,
  MAX_DLQ_VALUE_BYTES,
  tickRecord,
  tooLargeHandler,
} from "../../ingest/ingest.ts";
import { type OutRecord, recordBytes } from "../../ingest/producer.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

const utf8 = (s: string | Uint8Array) =>
  typeof s === "string" ? new TextEncoder().encode(s).length : s.length;
/** A record value that must be text (dead letters and JSON ticks are). */
function text(v: string | Uint8Array): string {
  assert.equal(typeof v, "string", "a text value");
  return v as string;
}
const NOW = 1_736_509_140_000;
const frameOf = (data: PricingData) =>
  JSON.stringify({ type: "pricing", message: encode(data).toBase64() });
const GOOD: PricingData = { id: "AAPL", price: 189.5, time: NOW - 1000 };

// 1-, 2-, 3- and 4-byte characters, and lone surrogates (3 bytes as U+FFFD).
const PIECES = ["a", "~", "é", "ß", "€", "日", "😀", "𝄞", "\ud800", "\udfff", "\u0000"];
function randomText(rnd: () => number, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(rnd() * PIECES.length)];
  return s;
}

function assertTooLarge(r: FrameResult, pattern: RegExp): void {
  assert.equal(r.ok, false, JSON.stringify(r));
  if (r.ok !== false) return;
  assert.equal(r.reason, "too_large", r.detail);
  assert.match(r.detail, pattern);
}

Deno.test("utf8Length equals TextEncoder's byte count (randomized, short and long strings)", () => {
  const rnd = prng(3);
  for (let i = 0; i < 2000; i++) {
    const s = randomText(rnd, Math.floor(rnd() * 80));
    assert.equal(utf8Length(s), utf8(s), JSON.stringify(s));
  }
  for (const n of [16_383, 16_384, 16_385, 60_000]) {
    const s = randomText(rnd, n);
    assert.equal(utf8Length(s), utf8(s), `length ${n}`);
    assert.equal(surelyWithin(s, utf8(s)), s.length * 3 <= utf8(s));
  }
});

Deno.test("truncateUtf8: the longest prefix within the budget, cut between characters (randomized)", () => {
  const rnd = prng(4);
  const wellFormed = ["a", "é", "€", "日", "😀", "𝄞"];
  for (let i = 0; i < 2000; i++) {
    let s = "";
    for (let k = Math.floor(rnd() * 60); k > 0; k--) {
      s += wellFormed[Math.floor(rnd() * wellFormed.length)];
    }
    const max = Math.floor(rnd() * (utf8(s) + 5));
    const cut = truncateUtf8(s, max);
    assert.ok(s.startsWith(cut), "a prefix");
    assert.ok(utf8(cut) <= max, "within the budget");
    if (cut.length < s.length) {
      const next = String.fromCodePoint(s.codePointAt(cut.length)!);
      assert.ok(utf8(cut) + utf8(next) > max, "the longest such prefix");
    }
    assert.ok(!/[\ud800-\udbff]$/.test(cut), "never half a surrogate pair");
  }
  assert.equal(truncateUtf8("\ufeffabc", 4), "\ufeffa", "a leading BOM is data, kept");
  assert.equal(truncateUtf8("abc", 0), "");
});

Deno.test("frames are measured in UTF-8 bytes: under the cap in UTF-16 units, over it in bytes -> too_large", () => {
  // 30,000 CJK characters: 30,000 UTF-16 units, 90,000 UTF-8 bytes.
  const envelope = JSON.stringify({
    type: "pricing",
    message: encode(GOOD).toBase64(),
    note: "日".repeat(30_000),
  });
  assert.ok(envelope.length < DEFAULT_MAX_FRAME_LENGTH);
  assert.ok(utf8(envelope) > DEFAULT_MAX_FRAME_LENGTH);
  assertTooLarge(
    parseFrame(envelope, { nowMs: NOW }),
    new RegExp(`^Frame of ${utf8(envelope)} UTF-8 bytes exceeds ${DEFAULT_MAX_FRAME_LENGTH}`),
  );
  // The same frame with ASCII padding of the same UTF-16 length is not too large.
  const ascii = envelope.replace(/日+/, "x".repeat(30_000));
  assert.equal(parseFrame(ascii, { nowMs: NOW }).ok, true);
  // The boundary is exact, in bytes.
  const exact = utf8(envelope);
  assert.notEqual(parseFrame(envelope, { nowMs: NOW, maxFrameLength: exact }).ok, false);
  assertTooLarge(parseFrame(envelope, { nowMs: NOW, maxFrameLength: exact - 1 }), /exceeds/);
});

Deno.test("each string field has a cap in UTF-8 bytes: at the cap ok, one byte over -> too_large naming the field and cap", () => {
  for (const [field, cap] of Object.entries(MAX_FIELD_BYTES)) {
    const at = "é".repeat(Math.floor(cap / 2)) + (cap % 2 ? "a" : "");
    assert.equal(utf8(at), cap);
    const ok = parseFrame(frameOf({ ...GOOD, [field]: at }), { nowMs: NOW });
    assert.equal(ok.ok, true, `${field} at its cap: ${JSON.stringify(ok)}`);
    assert.equal((ok as unknown as { tick: Record<string, unknown> }).tick[field], at);
    const over = at + "a";
    assertTooLarge(
      parseFrame(frameOf({ ...GOOD, [field]: over }), { nowMs: NOW }),
      new RegExp(`^Field ${field} .* of "AAPL" is ${cap + 1} UTF-8 bytes: over its cap of ${cap}`),
    );
    // Under the cap counted in UTF-16 units, over it in bytes.
    const cjk = "日".repeat(Math.ceil((cap + 1) / 3));
    assert.ok(cjk.length <= cap && utf8(cjk) > cap);
    assertTooLarge(parseFrame(frameOf({ ...GOOD, [field]: cjk }), { nowMs: NOW }), /over its cap/);
  }
  // The symbol keeps its own rule: 32 characters, whatever their size.
  const sym = "日".repeat(32);
  assert.equal(parseFrame(frameOf({ ...GOOD, id: sym }), { nowMs: NOW }).ok, true);
  const bad = parseFrame(frameOf({ ...GOOD, id: sym + "x" }), { nowMs: NOW });
  assert.equal(bad.ok === false && bad.reason, "bad_symbol");
});

Deno.test("a valid tick's record stays far below any record limit (field caps)", () => {
  const worst: PricingData = { ...GOOD, id: "𝄞".repeat(32) };
  for (const [field, cap] of Object.entries(MAX_FIELD_BYTES)) {
    (worst as Record<string, unknown>)[field] = "\u0001".repeat(cap); // JSON: 6 bytes each
  }
  const r = parseFrame(frameOf(worst), { nowMs: NOW });
  assert.equal(r.ok, true, JSON.stringify(r));
  if (r.ok !== true) return;
  assert.ok(recordBytes(tickRecord("t", r.tick, NOW)) < 8_000);
});

Deno.test("dlqRecord keeps small frames whole and cuts big ones to fit, in UTF-8 bytes, noting the original size", () => {
  const small = dlqRecord("t", "not json ☃", { reason: "bad_json", detail: "D", receivedMs: 5 });
  assert.equal(small.value, "not json ☃");
  assert.equal(small.topic, "t.dlq");
  assert.equal(small.headers.truncated, undefined);
  const rnd = prng(9);
  const seen = { whole: 0, cut: 0 };
  for (let i = 0; i < 20; i++) {
    const raw = randomText(rnd, 30_000 + Math.floor(rnd() * 100_000))
      .replace(/[\ud800-\udfff]/g, "x");
    const maxBytes = rnd() < 0.5 ? undefined : 2_000 + Math.floor(rnd() * 200_000);
    const rejection = { reason: "too_large", detail: "D".repeat(50), receivedMs: 5, maxBytes };
    const d = dlqRecord("t", raw, rejection);
    assert.ok(recordBytes(d) <= (maxBytes ?? 1_000_000), "the whole record fits its budget");
    // Oracle: the value budget is what the record limit leaves (40 bytes kept for `truncated`).
    const bare = {
      ...d,
      value: "",
      headers: { reason: "too_large", detail: d.headers.detail, ingest_ms: "5" },
    };
    const budget = Math.min(MAX_DLQ_VALUE_BYTES, (maxBytes ?? 1_000_000) - recordBytes(bare) - 40);
    if (utf8(raw) <= budget) {
      seen.whole++;
      assert.equal(d.value, raw);
      assert.equal(d.headers.truncated, undefined);
    } else {
      seen.cut++;
      assert.equal(
        d.headers.truncated,
        String(utf8(raw)),
        "header truncated = original UTF-8 bytes",
      );
      assert.ok(raw.startsWith(text(d.value)));
      assert.ok(utf8(d.value) <= budget);
      const next = String.fromCodePoint(raw.codePointAt(text(d.value).length)!);
      assert.ok(utf8(d.value) + utf8(next) > budget, "the longest prefix that fits");
    }
  }
  assert.ok(seen.whole > 0 && seen.cut > 0, JSON.stringify(seen));
  // A huge detail is cut too.
  const d = dlqRecord("t", "x", { reason: "bad_json", detail: "é".repeat(10_000), receivedMs: 1 });
  assert.ok(utf8(d.headers.detail) <= 1000);
});

Deno.test("dead letters copy what they keep: the original frames are freed (heap measured in a subprocess)", async () => {
  const run = async (mode: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", "tests/_helpers/dlq_retention_probe.ts", mode],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!) as {
      retainedBytes: number;
    };
  };
  // 40 dead letters of 100 KB cut from 4 MB frames.
  const slice = await run("slice");
  assert.ok(
    slice.retainedBytes > 100_000_000,
    `a slice keeps the frames alive (${slice.retainedBytes} bytes): the probe can see it`,
  );
  const dlq = await run("dlq");
  assert.ok(dlq.retainedBytes < 30_000_000, `dlqRecord keeps ${dlq.retainedBytes} bytes`);
});

Deno.test("tooLargeHandler: a tick becomes a too_large dead letter; a dead letter is cut further until empty, then dropped", () => {
  let counted = 0;
  const h = tooLargeHandler("ticks", { now: () => 42, onDeadLetter: () => counted++ });
  const tick: OutRecord = {
    topic: "ticks",
    key: "AAPL",
    value: JSON.stringify({ id: "AAPL", shortName: "日".repeat(5000) }),
    timestamp: "1",
    headers: { ingest_ms: "1700000000000" },
  };
  const bytes = recordBytes(tick);
  const byLimit = h(tick, { bytes, cause: "limit", limit: 4000 })!;
  assert.equal(byLimit.topic, "ticks.dlq");
  assert.equal(byLimit.headers.reason, "too_large");
  assert.match(
    byLimit.headers.detail,
    new RegExp(`^Record of ${bytes} UTF-8 bytes .*"AAPL" exceeds the record limit of 4000`),
  );
  assert.equal(byLimit.headers.ingest_ms, "1700000000000");
  assert.ok(recordBytes(byLimit) <= 4000);
  assert.equal(byLimit.headers.truncated, String(utf8(tick.value)));
  assert.equal(counted, 1);
  const byBroker = h(tick, {
    bytes,
    cause: "broker",
    limit: 1_000_000,
    error: "MESSAGE_TOO_LARGE",
  })!;
  assert.match(byBroker.headers.detail, /was refused by Kafka \(MESSAGE_TOO_LARGE\)/);
  assert.ok(recordBytes(byBroker) <= bytes / 2);
  // A dead letter Kafka keeps refusing: halved each time (original size kept), then dropped.
  let d: OutRecord | null = byBroker;
  let rounds = 0;
  const original = d.headers.truncated;
  while (d !== null) {
    const next: OutRecord | null = h(d, {
      bytes: recordBytes(d),
      cause: "broker",
      limit: 1_000_000,
    });
    if (next !== null) {
      assert.ok(recordBytes(next) < recordBytes(d), "strictly smaller each time");
      assert.equal(next.headers.truncated, original);
      assert.ok(text(d.value).startsWith(text(next.value)));
    }
    d = next;
    rounds++;
  }
  assert.ok(rounds > 5 && rounds < 40, `${rounds} rounds`);
  assert.equal(counted, 2, "only ticks count as new dead letters");
});

Deno.test("tickRecord: json is the tick's JSON without tp-format; tick-v1 decodes to the tick's fields with header tp-format (randomized)", () => {
  const rnd = prng(77);
  const nowMs = 1_700_000_000_000;
  for (let i = 0; i < 300; i++) {
    const data: PricingData = {
      id: `SYM${i % 17}${i % 2 ? "-USD" : ""}`,
      price: Math.fround(1 + rnd() * 1000),
      time: nowMs - Math.floor(rnd() * 1e6),
      dayVolume: rnd() < 0.7 ? Math.floor(rnd() * 1e12) : undefined,
      lastSize: rnd() < 0.5 ? Math.floor(rnd() * 1e4) : undefined,
      exchange: rnd() < 0.8 ? "NMS" : undefined,
      currency: rnd() < 0.8 ? "USD" : undefined,
      quoteType: rnd() < 0.8 ? 8 : undefined,
      marketHours: rnd() < 0.8 ? 1 : undefined,
      shortName: "Apple Inc.",
      changePercent: Math.fround(rnd() * 4 - 2),
    };
    const r = parseFrame(encodeFrame(data), { nowMs });
    assert.equal(r.ok, true);
    const tick = (r as { tick: Tick }).tick;
    const json = tickRecord("t", tick, nowMs + i);
    assert.equal(json.value, JSON.stringify(tick));
    assert.deepEqual({ ...json.headers }, { ingest_ms: String(nowMs + i) }, "no tp-format: JSON");
    const bin = tickRecord("t", tick, nowMs + i, { format: "tick-v1" });
    assert.deepEqual({ ...bin.headers }, { ingest_ms: String(nowMs + i), "tp-format": "tick-v1" });
    assert.equal(bin.key, tick.id);
    assert.equal(bin.timestamp, String(tick.time));
    assert.ok(bin.value instanceof Uint8Array);
    const want: Record<string, unknown> = {};
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
      ] as const
    ) if (tick[f] !== undefined) want[f] = tick[f];
    assert.deepEqual(decodeTick(bin.value as Uint8Array), want, `tick ${i}`);
    assert.ok(recordBytes(bin) < recordBytes(json), "tick-v1 is the smaller record");
  }
});

Deno.test("tooLargeHandler: a binary (tick-v1) record becomes a dead letter of its base64 text, marked as such", () => {
  const h = tooLargeHandler("ticks", { now: () => 42 });
  const value = new Uint8Array(3000).map((_, i) => (i * 7) & 0xff);
  const tick: OutRecord = {
    topic: "ticks",
    key: "AAPL",
    value,
    timestamp: "1",
    headers: { ingest_ms: "1700000000000", "tp-format": "tick-v1" },
  };
  const small = h(tick, { bytes: recordBytes(tick), cause: "limit", limit: 100_000 })!;
  assert.equal(small.topic, "ticks.dlq");
  assert.equal(small.value, value.toBase64(), "the whole value, as base64 text");
  assert.equal(small.headers.encoding, "base64");
  assert.equal(small.headers["tp-format"], "tick-v1");
  assert.equal(small.headers.reason, "too_large");
  const cut = h(tick, { bytes: recordBytes(tick), cause: "limit", limit: 2000 })!;
  assert.ok(recordBytes(cut) <= 2000);
  assert.equal(cut.headers.truncated, String(value.toBase64().length));
  assert.ok(value.toBase64().startsWith(cut.value as string));
});
