import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import {
  DEFAULT_MAX_VALUE_BYTES,
  type FormatHeader,
  type ParsedTick,
  parseRecord,
  RecordParser,
  type RecordResult,
} from "../../aggregate/record.ts";
import { type DecodedTick, decodeTick, encodeTick, type TickMessage } from "../../proto/tick.ts";
import {
  checkDayVolume,
  checkPrice,
  checkSymbol,
  checkTime,
  isValidSymbol,
  RawValue,
  REJECT_REASONS,
  type RejectReason,
  showValue,
  validateTick,
} from "../../proto/validate.ts";
import {
  BAD_SYMBOLS,
  HOSTILE_VALID_SYMBOLS,
  type HostileCase,
  hostileCatalog,
  hostileRecords,
} from "../_helpers/hostile.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

const NOW = 1_750_000_000_000;
const UTF8 = new TextEncoder();
const STRICT = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

type Expected = { reason: RejectReason } | { tick: ParsedTick };

function own(v: Record<string, unknown>, k: string): unknown {
  return Object.hasOwn(v, k) ? v[k] : undefined;
}

function fromFields(v: Record<string, unknown> | DecodedTick, nowMs: number): Expected {
  const r = v as Record<string, unknown>;
  const fields = {
    id: own(r, "id"),
    price: own(r, "price"),
    time: own(r, "time"),
    dayVolume: own(r, "dayVolume"),
  };
  const bad = validateTick(fields, { nowMs });
  if (bad !== null) return { reason: bad.reason };
  return {
    tick: {
      symbol: fields.id as string,
      price: fields.price as number,
      time: fields.time as number,
      dayVolume: fields.dayVolume as number | undefined,
    },
  };
}

/** The JSON oracle: strict UTF-8 decoding, JSON.parse, then the validate.ts rules. */
function jsonOracle(bytes: Uint8Array, nowMs = NOW): Expected {
  let v: unknown;
  try {
    v = JSON.parse(STRICT.decode(bytes));
  } catch {
    return { reason: "not_json" };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return { reason: "not_object" };
  return fromFields(v as Record<string, unknown>, nowMs);
}

/** The tick-v1 oracle: decodeTick (tested against a reference decoder in proto_test.ts). */
function tickOracle(bytes: Uint8Array, nowMs = NOW): Expected {
  let t: DecodedTick;
  try {
    t = decodeTick(bytes);
  } catch {
    return { reason: "bad_binary" };
  }
  return fromFields(t, nowMs);
}

function assertDetail(detail: string): void {
  assert.match(detail, /^[A-Z]/, detail);
  assert.ok(detail.length < 400, `detail of ${detail.length} characters`);
  assert.ok(detail.isWellFormed(), "detail is well-formed Unicode");
  // deno-lint-ignore no-control-regex -- details go to headers and logs: no control characters
  assert.doesNotMatch(detail, /[\x00-\x1f\x7f-\x9f]/, detail);
}

/** Asserts the parser's outcome; `context` is built only when something is wrong. */
function assertOutcome(got: RecordResult, want: Expected, context: () => string): void {
  const same = "reason" in want
    ? !got.ok && got.reason === want.reason
    : got.ok && isDeepStrictEqual(got.tick, want.tick);
  if (!same) {
    assert.fail(`${context()}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  }
  if (!got.ok) assertDetail(got.detail);
}

const show = (b: Uint8Array) => JSON.stringify(new TextDecoder().decode(b.subarray(0, 300)));

// ---- random JSON text -----------------------------------------------------------------------

class JsonGen {
  constructor(readonly rand: () => number) {}
  int(n: number): number {
    return Math.floor(this.rand() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  ws(): string {
    return this.rand() < 0.7 ? "" : this.pick([" ", "\t", "\n", "\r", "  \n\t ", "\r\n"]);
  }
  /** Random code units: ASCII, specials, controls, BMP, astral pairs, lone surrogates. */
  text(maxLen: number): string {
    let s = "";
    for (let n = this.int(maxLen + 1); n > 0; n--) {
      switch (this.int(9)) {
        case 0:
          s += this.pick(['"', "\\", "/", "\b", "\f", "\n", "\r", "\t", "\u0000", "\u001f"]);
          break;
        case 1:
          s += String.fromCharCode(0x80 + this.int(0x780)); // 2-byte UTF-8 (C1 included)
          break;
        case 2:
          s += String.fromCharCode(0x800 + this.int(0xd000)); // 3-byte UTF-8 (surrogates too)
          break;
        case 3:
          s += String.fromCodePoint(0x10000 + this.int(0x100000)); // a surrogate pair
          break;
        case 4:
          s += this.pick(["\u2028", "\u00a0", "\ufeff", "\ufffd", "\u007f", "\u0085"]);
          break;
        default:
          s += String.fromCharCode(0x20 + this.int(0x5f));
      }
    }
    return s;
  }
  /** A JSON string literal of `s`, each character escaped or not at random. */
  str(s: string): string {
    let out = '"';
    for (const ch of s.split("")) {
      const c = ch.charCodeAt(0);
      const must = c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff);
      if (must || this.rand() < 0.15) {
        const short: Record<number, string> = {
          0x22: '\\"',
          0x5c: "\\\\",
          0x2f: "\\/",
          0x08: "\\b",
          0x0c: "\\f",
          0x0a: "\\n",
          0x0d: "\\r",
          0x09: "\\t",
        };
        const hex = c.toString(16).padStart(4, "0");
        out += short[c] !== undefined && this.rand() < 0.6
          ? short[c]
          : "\\u" + (this.rand() < 0.5 ? hex : hex.toUpperCase());
      } else out += ch;
    }
    return out + '"';
  }
  digits(n: number, first = "0123456789"): string {
    let s = first[this.int(first.length)];
    for (let i = 1; i < n; i++) s += "0123456789"[this.int(10)];
    return s;
  }
  /** A random number text of the JSON grammar. */
  number(): string {
    if (this.rand() < 0.2) {
      return this.pick([
        "0",
        "-0",
        "0.0",
        "1e22",
        "1e23",
        "9007199254740993",
        "9007199254740992.5",
        "0.1",
        "2.2250738585072011e-308",
        "4.9e-324",
        "2e-324",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "1e400",
        "-1e400",
        "123456789012345.6",
        "0.000000000000000000000000000001",
        "1E+2",
        "1e-0",
        "100000000000000000000000",
        "1750000000000.0000000001",
        "17500000000000e-1",
        "0e99999999999",
        "1e-99999999999",
      ]);
    }
    let s = this.rand() < 0.2 ? "-" : "";
    s += this.rand() < 0.2
      ? "0"
      : this.digits(1 + this.int(this.rand() < 0.8 ? 15 : 25), "123456789");
    if (this.rand() < 0.5) s += "." + this.digits(1 + this.int(this.rand() < 0.8 ? 6 : 25));
    if (this.rand() < 0.3) {
      s += this.pick(["e", "E"]) + this.pick(["", "+", "-"]) +
        this.digits(1 + this.int(3));
    }
    return s;
  }
  /** Any JSON value. */
  value(depth = 0): string {
    switch (this.int(depth > 3 ? 5 : 7)) {
      case 0:
        return this.pick(["null", "true", "false"]);
      case 1:
      case 2:
        return this.number();
      case 3:
      case 4:
        return this.str(this.text(12));
      case 5:
        return "[" + this.ws() +
          Array.from({ length: this.int(4) }, () => this.ws() + this.value(depth + 1) + this.ws())
            .join(",") +
          "]";
      default:
        return this.object(
          Array.from({ length: this.int(4) }, () => [this.key(), this.value(depth + 1)]),
        );
    }
  }
  key(): string {
    const r = this.rand();
    if (r < 0.3) return this.str(this.pick(["id", "price", "time", "dayVolume", "x", ""]));
    if (r < 0.6) {
      // A near miss: one character of a field name changed, dropped or added.
      const name = this.pick(["id", "price", "time", "dayVolume"]);
      const at = this.int(name.length + 1);
      const c = String.fromCharCode(0x20 + this.int(0x5f));
      const edits = [
        name.slice(0, at) + c + name.slice(at + 1),
        name.slice(0, at) + name.slice(at + 1),
        name.slice(0, at) + c + name.slice(at),
      ];
      return this.str(this.pick(edits));
    }
    return this.str(this.text(6));
  }
  /** An object from [key literal, value text] members. */
  object(members: string[][]): string {
    return "{" + this.ws() +
      members.map(([k, v]) => k + this.ws() + ":" + this.ws() + v + this.ws()).join(
        "," + this.ws(),
      ) + "}";
  }
  symbol(): string {
    const r = this.rand();
    if (r < 0.5) return this.pick(HOSTILE_VALID_SYMBOLS);
    if (r < 0.7) return this.pick(BAD_SYMBOLS);
    if (r < 0.8) return "S" + this.int(50);
    return this.text(this.int(3) === 0 ? 40 : 8);
  }
  /** A value of the given field: mostly of the right type, sometimes any JSON. */
  field(name: string): string {
    if (this.rand() < 0.1) return this.value(1);
    switch (name) {
      case "id":
        return this.str(this.symbol());
      case "price":
        return this.rand() < 0.7 ? String(Math.round(this.rand() * 1e6) / 100) : this.number();
      case "time": {
        const r = this.rand();
        if (r < 0.7) return String(NOW - 3_000_000 + this.int(3_600_000));
        if (r < 0.8) return (NOW - this.int(1e6)).toExponential();
        return this.number();
      }
      default:
        return this.rand() < 0.8 ? String(this.int(1e10)) : this.number();
    }
  }
  /** A key literal for a field name, sometimes spelled with escapes. */
  fieldKey(name: string): string {
    if (this.rand() < 0.85) return JSON.stringify(name);
    return '"' +
      name.split("").map((c) =>
        this.rand() < 0.5 ? "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0") : c
      ).join("") + '"';
  }
  /** A tick-like JSON object: the four fields (mostly), other fields, duplicates. */
  tick(): string {
    const members: string[][] = [];
    for (const name of ["id", "price", "time", "dayVolume"]) {
      const times = this.rand() < (name === "dayVolume" ? 0.4 : 0.05)
        ? 0
        : this.rand() < 0.1
        ? 2
        : 1;
      for (let k = 0; k < times; k++) members.push([this.fieldKey(name), this.field(name)]);
    }
    for (let k = this.int(6); k > 0; k--) members.push([this.key(), this.value(1)]);
    for (let i = members.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [members[i], members[j]] = [members[j], members[i]];
    }
    return this.ws() + this.object(members) + this.ws();
  }
}

// ---- tests ----------------------------------------------------------------------------------

Deno.test("record: random tick-like JSON gives exactly what JSON.parse + validate give", () => {
  const gen = new JsonGen(prng(1));
  const parser = new RecordParser();
  const seen = new Map<string, number>();
  for (let i = 0; i < 15_000; i++) {
    const bytes = UTF8.encode(gen.tick());
    const want = jsonOracle(bytes);
    const ok = parser.parse(bytes, undefined, NOW);
    assertOutcome(parser.result(ok), want, () => `case ${i} ${show(bytes)}`);
    const key = "reason" in want ? want.reason : "valid";
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  for (
    const k of [
      "valid",
      "missing_id",
      "bad_symbol",
      "missing_price",
      "bad_price",
      "bad_time",
      "future_time",
      "bad_volume",
    ]
  ) {
    assert.ok((seen.get(k) ?? 0) > 100, `${k} exercised: ${JSON.stringify([...seen])}`);
  }
});

Deno.test("record: any random JSON value gives the same outcome as JSON.parse", () => {
  const gen = new JsonGen(prng(2));
  const seen = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) {
    const bytes = UTF8.encode(gen.ws() + gen.value() + gen.ws());
    const want = jsonOracle(bytes);
    assertOutcome(parseRecord(bytes, { nowMs: NOW }), want, () => `case ${i} ${show(bytes)}`);
    const key = "reason" in want ? want.reason : "valid";
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  assert.ok((seen.get("not_object") ?? 0) > 3000, JSON.stringify([...seen]));
  assert.ok((seen.get("missing_id") ?? 0) > 1000, JSON.stringify([...seen]));
});

Deno.test("record: mutated and truncated JSON is rejected exactly when JSON.parse throws", () => {
  const rand = prng(3);
  const gen = new JsonGen(rand);
  const int = (n: number) => Math.floor(rand() * n);
  const interesting = [...'{}[]",:\\ 0123456789eE+-.tfnrulsaxu/'].map((c) => c.charCodeAt(0));
  interesting.push(0x00, 0x1f, 0x7f, 0x80, 0xbf, 0xc2, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xff);
  const parser = new RecordParser();
  let notJson = 0;
  let other = 0;
  for (let i = 0; i < 20_000; i++) {
    let b = [...UTF8.encode(i % 3 === 0 ? gen.value() : gen.tick())];
    for (let m = 1 + int(2); m > 0; m--) {
      const at = int(b.length + 1);
      switch (int(6)) {
        case 0:
          b.splice(at, 1);
          break;
        case 1:
          b.splice(at, 0, gen.pick(interesting));
          break;
        case 2:
          b[Math.min(at, b.length - 1)] = gen.pick(interesting);
          break;
        case 3:
          b = b.slice(0, at);
          break;
        case 4:
          b.splice(at, 0, ...b.slice(int(b.length), int(b.length) + 1 + int(6)));
          break;
        default:
          b[Math.min(at, b.length - 1)] = int(256);
      }
    }
    const bytes = new Uint8Array(b);
    const want = jsonOracle(bytes);
    const ok = parser.parse(bytes, "json", NOW);
    assertOutcome(parser.result(ok), want, () => `case ${i} ${show(bytes)}`);
    if ("reason" in want && want.reason === "not_json") notJson++;
    else other++;
  }
  assert.ok(notJson > 7_500 && other > 2_500, `both outcomes exercised: ${notJson}/${other}`);
});

Deno.test("record: numbers decode exactly like JSON.parse (Clinger fast path and fallback)", () => {
  const gen = new JsonGen(prng(4));
  const parser = new RecordParser();
  let fast = 0;
  for (let i = 0; i < 50_000; i++) {
    let text = gen.number();
    if (text.startsWith("-")) text = text.slice(1);
    const bytes = UTF8.encode(`{"id":"N","time":${NOW},"price":${text}}`);
    const want = Number(text);
    const ok = parser.parse(bytes, undefined, NOW);
    if (want > 0 && want < Infinity) {
      assert.ok(ok, `${text}: ${parser.detail}`);
      assert.ok(Object.is(parser.price, want), `${text}: ${parser.price} !== ${want}`);
      if (text.replace(/[.eE+-]/g, "").replace(/^0+/, "").length <= 15) fast++;
    } else {
      assert.ok(!ok && parser.reason === "bad_price", `${text}: ${parser.reason}`);
    }
  }
  assert.ok(fast > 20_000, `fast path exercised ${fast} times`);
  // Exact decimal corner cases: halfway cases and the extremes of the fast path.
  for (
    const text of [
      "9007199254740993",
      "9007199254740995",
      "0.30000000000000004",
      "123456789012345e22",
      "123456789012345e-22",
      "999999999999999e22",
      "1e-22",
      "8.98846567431158e307",
      "2.4703282292062328e-324",
      "2.4703282292062327e-324",
    ]
  ) {
    const r = parseRecord(UTF8.encode(`{"id":"N","time":${NOW},"price":${text}}`), {
      nowMs: NOW,
    });
    const want = Number(text);
    if (want > 0 && want < Infinity) {
      assert.ok(r.ok && Object.is(r.tick.price, want), `${text}: ${JSON.stringify(r)}`);
    } else assert.ok(!r.ok && r.reason === "bad_price", text);
  }
});

Deno.test("record: duplicate keys, escaped keys, nested look-alikes: last top-level wins", () => {
  const cases: Array<[string, Expected]> = [
    [`{"id":"A","price":1,"time":${NOW},"price":2}`, {
      tick: { symbol: "A", price: 2, time: NOW, dayVolume: undefined },
    }],
    [`{"id":"A","price":1,"time":${NOW},"price":"2"}`, { reason: "bad_price" }],
    [`{"id":"A","price":"x","time":${NOW},"price":3}`, {
      tick: { symbol: "A", price: 3, time: NOW, dayVolume: undefined },
    }],
    [`{"\\u0069d":"B","pric\\u0065":1.5,"\\u0074ime":${NOW},"day\\u0056olume":0}`, {
      tick: { symbol: "B", price: 1.5, time: NOW, dayVolume: 0 },
    }],
    [`{"x":{"id":"A","price":1,"time":${NOW}},"y":[{"id":"B"}]}`, { reason: "missing_id" }],
    [`{"id":"A","price":1,"time":${NOW},"dayVolume":-0}`, {
      tick: { symbol: "A", price: 1, time: NOW, dayVolume: -0 },
    }],
    [`{"id":"A","price":1,"time":${NOW},"dayVolume":null}`, { reason: "bad_volume" }],
    [`{"id":"A","price":1,"time":${NOW},"ID":5,"Price":"x"}`, {
      tick: { symbol: "A", price: 1, time: NOW, dayVolume: undefined },
    }],
    [`{"__proto__":{"id":"P"},"id":"A","price":1,"time":${NOW}}`, {
      tick: { symbol: "A", price: 1, time: NOW, dayVolume: undefined },
    }],
    [`{"id":"A\\u0042\\ud83d\\udcc8","price":1,"time":${NOW}}`, {
      tick: { symbol: "AB📈", price: 1, time: NOW, dayVolume: undefined },
    }],
    [` \t\r\n{ "id" : "A" , "price" : 1 , "time" : ${NOW} } \n`, {
      tick: { symbol: "A", price: 1, time: NOW, dayVolume: undefined },
    }],
    [`{"id":"A","price":1,"time":1.75e12}`, {
      tick: { symbol: "A", price: 1, time: 1.75e12, dayVolume: undefined },
    }],
  ];
  for (const [text, want] of cases) {
    const bytes = UTF8.encode(text);
    assert.deepStrictEqual(jsonOracle(bytes), want, `oracle agrees on ${text}`);
    assertOutcome(parseRecord(bytes, { nowMs: NOW }), want, () => text);
  }
});

Deno.test("record: strict UTF-8 — invalid bytes and a byte-order mark are not JSON", () => {
  const good = `{"id":"A","price":1,"time":${NOW},"n":"é"}`;
  const cases: number[][] = [
    [0xef, 0xbb, 0xbf, ...UTF8.encode(good)], // BOM
    [...UTF8.encode(good.slice(0, -3)), 0xc3, 0x22, 0x7d], // truncated 2-byte sequence
    [...UTF8.encode(good.slice(0, -3)), 0xc0, 0xa9, 0x22, 0x7d], // overlong
    [...UTF8.encode(good.slice(0, -3)), 0xed, 0xa0, 0x80, 0x22, 0x7d], // encoded surrogate
    [...UTF8.encode(good.slice(0, -3)), 0xf4, 0x90, 0x80, 0x80, 0x22, 0x7d], // > U+10FFFF
    [...UTF8.encode(good.slice(0, -3)), 0xff, 0x22, 0x7d],
  ];
  for (const b of cases) {
    const r = parseRecord(new Uint8Array(b), { nowMs: NOW });
    assert.ok(!r.ok && r.reason === "not_json", JSON.stringify(r));
    assert.deepStrictEqual(jsonOracle(new Uint8Array(b)), { reason: "not_json" });
  }
  assert.equal(parseRecord(UTF8.encode(good), { nowMs: NOW }).ok, true);
});

Deno.test("record: deep nesting is scanned without recursion", () => {
  const n = 100_000;
  const deep = "[".repeat(n) + "]".repeat(n);
  const ok = UTF8.encode(
    `{"x":${deep},"id":"A","price":1,"time":${NOW},"y":${'{"a":'.repeat(n)}1${"}".repeat(n)}}`,
  );
  assertOutcome(parseRecord(ok, { nowMs: NOW }), jsonOracle(ok), () => "deep valid");
  assert.equal(parseRecord(ok, { nowMs: NOW }).ok, true);
  const bad = UTF8.encode(`{"x":${deep.slice(0, -1)},"id":"A","price":1,"time":${NOW}}`);
  const r = parseRecord(bad, { nowMs: NOW });
  assert.ok(!r.ok && r.reason === "not_json");
  const top = UTF8.encode(deep);
  assert.equal((parseRecord(top, { nowMs: NOW }) as { reason: string }).reason, "not_object");
});

Deno.test("record: every hostile catalog case and 5,000 random hostile records get their outcome", () => {
  const options = { nowMs: NOW, prefix: "T_", maxValueBytes: 120_000, seed: 9 };
  const parser = new RecordParser({ maxValueBytes: 120_000 });
  const check = (c: HostileCase) => {
    const ok = parser.parse(c.value, c.headers["tp-format"], NOW);
    const got = parser.result(ok);
    const want: Expected = c.reason === null ? { tick: c.tick! } : { reason: c.reason };
    assertOutcome(got, want, () => `${c.kind} ${show(c.value)}`);
    // The generator's claims agree with the oracles.
    if (c.reason !== "too_large" && c.reason !== "unknown_format") {
      const oracle = c.headers["tp-format"] === "tick-v1"
        ? tickOracle(c.value)
        : jsonOracle(c.value);
      assert.deepStrictEqual(oracle, want, `oracle on ${c.kind}`);
    }
  };
  const catalog = hostileCatalog(options);
  const reasons = new Set(catalog.map((c) => c.reason));
  for (const r of REJECT_REASONS) assert.ok(reasons.has(r), `catalog covers ${r}`);
  assert.ok(catalog.filter((c) => c.reason === null).length >= 4);
  catalog.forEach(check);
  const records = hostileRecords(5000, options);
  assert.equal(records.length, 5000);
  const valid = records.filter((c) => c.reason === null);
  assert.ok(valid.length > 1000 && valid.length < 2000, `${valid.length} valid`);
  for (const c of valid) assert.ok(c.tick!.symbol.startsWith("T_") && c.key === c.tick!.symbol);
  records.forEach(check);
  // Deterministic per seed.
  assert.deepStrictEqual(hostileRecords(50, options), hostileRecords(50, options));
  assert.equal(
    hostileRecords(500, { ...options, noTooLarge: true }).filter((c) => c.reason === "too_large")
      .length,
    0,
  );
});

Deno.test("record: tick-v1 values give exactly what decodeTick + validate give", () => {
  const rand = prng(5);
  const gen = new JsonGen(rand);
  const int = (n: number) => Math.floor(rand() * n);
  const parser = new RecordParser({ internCapacity: 64 });
  let valid = 0;
  for (let i = 0; i < 30_000; i++) {
    const t: TickMessage = {
      id: gen.symbol().toWellFormed(),
      price: gen.pick([1.5, 0, -1, NaN, Infinity, 1e-300, 123.45]),
      time: gen.pick([NOW, NOW - int(1e7), NOW + 300_001, 0, -5, 2 ** 55]),
    };
    if (rand() < 0.5) t.dayVolume = gen.pick([0, 5, -1, 2 ** 60]);
    if (rand() < 0.3) t.exchange = "NMS";
    let b = [...encodeTick(t)];
    if (rand() < 0.3) {
      const at = int(b.length + 1);
      if (rand() < 0.5) b = b.slice(0, at);
      else b.splice(at, 0, int(256));
    }
    const bytes = new Uint8Array(b);
    const want = tickOracle(bytes);
    const ok = parser.parse(bytes, "tick-v1", NOW);
    assertOutcome(parser.result(ok), want, () => `case ${i} ${b}`);
    if (ok) valid++;
  }
  assert.ok(valid > 1000, `${valid} valid`);
});

Deno.test("record: interning stays correct under churn, collisions and both formats", () => {
  const rand = prng(6);
  const symbols = [
    ...Array.from({ length: 300 }, (_, i) => `S${i}`),
    ...HOSTILE_VALID_SYMBOLS,
    "AB",
    "BA",
    "A\\u0042", // JSON escape text as a literal symbol (7 characters)
  ];
  for (const capacity of [0, 1, 8, 1000]) {
    const parser = new RecordParser({ internCapacity: capacity });
    for (let i = 0; i < 20_000; i++) {
      const symbol = symbols[Math.floor(rand() * symbols.length)];
      const r = rand();
      let bytes: Uint8Array;
      let format: FormatHeader;
      if (r < 0.4) {
        bytes = UTF8.encode(JSON.stringify({ id: symbol, price: 1, time: NOW }));
      } else if (r < 0.5) {
        // "A\u0042" escaped in JSON is "AB": the span's bytes must not be confused with the
        // tick-v1 symbol whose bytes are literally A\u0042.
        bytes = UTF8.encode(`{"id":"A\\u0042","price":1,"time":${NOW}}`);
        format = "json";
        assert.ok(parser.parse(bytes, format, NOW));
        assert.equal(parser.symbol, "AB");
        continue;
      } else {
        bytes = encodeTick({ id: symbol, price: 1, time: NOW });
        format = new TextEncoder().encode("tick-v1");
      }
      assert.ok(parser.parse(bytes, format, NOW), parser.detail);
      assert.equal(parser.symbol, symbol, `capacity ${capacity}`);
    }
  }
});

Deno.test("record: size cap, formats and tombstones", () => {
  const value = UTF8.encode(`{"id":"A","price":1,"time":${NOW},"pad":"${"x".repeat(60)}"}`);
  assert.equal(parseRecord(value, { nowMs: NOW, maxValueBytes: value.length }).ok, true);
  const big = parseRecord(value, { nowMs: NOW, maxValueBytes: value.length - 1 });
  assert.ok(!big.ok && big.reason === "too_large");
  assert.match((big as { detail: string }).detail, new RegExp(`${value.length} bytes`));
  assert.equal(DEFAULT_MAX_VALUE_BYTES, 1_048_576);
  const huge = new Uint8Array(DEFAULT_MAX_VALUE_BYTES + 1).fill(0x20);
  assert.equal((parseRecord(huge, { nowMs: NOW }) as { reason: string }).reason, "too_large");

  const v1 = encodeTick({ id: "A", price: 1, time: NOW });
  const te = new TextEncoder();
  const formats: Array<[FormatHeader, Uint8Array, string]> = [
    [undefined, value, "ok"],
    [null, value, "ok"],
    ["json", value, "ok"],
    [te.encode("json"), value, "ok"],
    [["json"], value, "ok"],
    ["tick-v1", v1, "ok"],
    [te.encode("tick-v1"), v1, "ok"],
    [[te.encode("tick-v1")], v1, "ok"],
    ["tick-v1", value, "bad_binary"],
    ["json", v1, "not_json"],
    ["tick-v2", v1, "unknown_format"],
    ["JSON", value, "unknown_format"],
    ["", value, "unknown_format"],
    [te.encode("tick-v1 "), v1, "unknown_format"],
    [te.encode("jsox"), value, "unknown_format"],
    [te.encode("tick-v2"), v1, "unknown_format"],
    [te.encode("Tick-v1"), v1, "unknown_format"],
    [["json", "json"], value, "unknown_format"],
    [[], value, "unknown_format"],
  ];
  for (const [format, bytes, want] of formats) {
    const r = parseRecord(bytes, { nowMs: NOW, format });
    assert.equal(r.ok ? "ok" : r.reason, want, `format ${String(format)}`);
    if (!r.ok) assertDetail(r.detail);
  }
  const unknown = parseRecord(value, { nowMs: NOW, format: "tick-v2" });
  assert.match((unknown as { detail: string }).detail, /"tick-v2"/);
  assert.equal((parseRecord(null, { nowMs: NOW }) as { reason: string }).reason, "not_json");
  assert.equal(
    (parseRecord(new Uint8Array(0), { nowMs: NOW }) as { reason: string }).reason,
    "not_json",
  );
  assert.equal(
    (parseRecord(null, { nowMs: NOW, format: "tick-v1" }) as { reason: string }).reason,
    "missing_id",
  );
});

Deno.test("record: details name the bad value, shortened and log-safe", () => {
  const at = (text: string, nowMs = NOW) => parseRecord(UTF8.encode(text), { nowMs });
  const detail = (r: RecordResult) => (r as { detail: string }).detail;
  assert.match(detail(at(`{"id":"A\\u0000B","price":1,"time":${NOW}}`)), /"A\\u0000B"/);
  assert.match(detail(at(`{"id":"\\ud800","price":1,"time":${NOW}}`)), /"\\ud800"/);
  const long = detail(at(`{"id":"${"Q".repeat(100_000)}","price":1,"time":${NOW}}`));
  assert.match(long, /QQQQ/);
  assert.match(long, /100000 bytes/);
  assert.match(detail(at(`{"id":"A","price":"1e400","time":${NOW}}`)), /Price "1e400" of A/);
  assert.match(detail(at(`{"id":"A","price":1e400,"time":${NOW}}`)), /Price Infinity of A/);
  assert.match(detail(at(`{"id":"A","price":[1,2],"time":${NOW}}`)), /Price \[1,2\] of A/);
  assert.match(detail(at(`{"id":"A","price":1,"time":${NOW + 1e9}}`)), /ahead of now/);
  assert.match(detail(at(`{"id":42,"price":1,"time":${NOW}}`)), /Symbol 42 is not a string/);
  assert.match(detail(at(`{"id":"A","price":1,"time":"${NOW}"}`)), new RegExp(`Time "${NOW}"`));
  assert.match(detail(at(`{"id":"A","price":1,"time":${NOW},"dayVolume":-1}`)), /Day volume -1/);
  assert.match(detail(at(`{"id":"A","price":1,"time":${NOW}`)), /not JSON: .* at byte \d+/);
  assert.match(detail(at(`[1]`)), /not an object/);
  for (const r of [at(`{"x":"${"\u0001".repeat(10)}"}`), at("\u0000\u0001\u0002")]) {
    assertDetail(detail(r));
  }
});

// ---- validate.ts ----------------------------------------------------------------------------

// The rule as the ingest regex had it, plus well-formedness and the code-point count.
// deno-lint-ignore no-control-regex -- the rule is about control characters
const SYMBOL_RE = /^(?!\s)[^\x00-\x1f\x7f-\x9f]+(?<!\s)$/u;
const symbolOracle = (s: string) => s.isWellFormed() && [...s].length <= 32 && SYMBOL_RE.test(s);

Deno.test("validate: isValidSymbol equals the regex rule on every BMP unit and random strings", () => {
  for (let c = 0; c < 0x10000; c++) {
    const ch = String.fromCharCode(c);
    for (const s of [ch, "A" + ch, ch + "A", "A" + ch + "B"]) {
      assert.equal(
        isValidSymbol(s),
        symbolOracle(s),
        `U+${c.toString(16)} in ${JSON.stringify(s)}`,
      );
    }
  }
  const gen = new JsonGen(prng(7));
  for (let i = 0; i < 50_000; i++) {
    const s = i % 2 === 0 ? gen.symbol() : gen.text(40);
    assert.equal(isValidSymbol(s), symbolOracle(s), JSON.stringify(s));
  }
  for (const hi of [0xd800, 0xdbff, 0xdc00, 0xdfff, 0x41]) {
    for (const lo of [0xd800, 0xdbff, 0xdc00, 0xdfff, 0x41]) {
      const s = String.fromCharCode(hi, lo);
      for (const t of [s, "A" + s, s + "A", s + s]) {
        assert.equal(isValidSymbol(t), symbolOracle(t), JSON.stringify(t));
      }
    }
  }
  assert.equal(isValidSymbol("📈".repeat(32)), true);
  assert.equal(isValidSymbol("📈".repeat(33)), false);
  assert.equal(isValidSymbol(7), false);
});

Deno.test("validate: the rules and their reasons", () => {
  const o = { nowMs: NOW };
  const reason = (
    t: Record<string, unknown>,
    options: { nowMs: number; maxFutureMs?: number } = o,
  ) => validateTick(t, options)?.reason ?? "ok";
  const good = { id: "A", price: 1, time: NOW };
  assert.equal(reason(good), "ok");
  assert.equal(reason({ ...good, id: undefined }), "missing_id");
  for (const id of ["", " A", "A\u0000", "\ud800", 5, null, ["A"]]) {
    assert.equal(reason({ ...good, id }), "bad_symbol", String(id));
  }
  assert.equal(reason({ ...good, price: undefined }), "missing_price");
  for (const price of [0, -0, -1, NaN, Infinity, -Infinity, "1", null, true, 1n]) {
    assert.equal(reason({ ...good, price }), "bad_price", String(price));
  }
  assert.equal(reason({ ...good, price: Number.MIN_VALUE }), "ok");
  assert.equal(reason({ ...good, price: Number.MAX_VALUE }), "ok");
  assert.equal(reason({ ...good, time: undefined }), "missing_time");
  for (const time of [0, -1, 1.5, 2 ** 53, NaN, Infinity, String(NOW), null, -62167219200000]) {
    assert.equal(reason({ ...good, time }), "bad_time", String(time));
  }
  assert.equal(reason({ ...good, time: 1 }), "ok");
  assert.equal(reason({ ...good, time: NOW + 300_000 }), "ok");
  assert.equal(reason({ ...good, time: NOW + 300_001 }), "future_time");
  assert.equal(
    reason({ ...good, time: NOW + 10_001 }, { nowMs: NOW, maxFutureMs: 10_000 }),
    "future_time",
  );
  assert.equal(reason({ ...good, time: 2 ** 53 - 1 }), "future_time");
  for (const dayVolume of [0, -0, 5, 2 ** 60]) {
    assert.equal(reason({ ...good, dayVolume }), "ok", String(dayVolume));
  }
  for (const dayVolume of [-1, NaN, Infinity, "5", null]) {
    assert.equal(reason({ ...good, dayVolume }), "bad_volume", String(dayVolume));
  }
  // Order: symbol before price before time before volume.
  assert.equal(reason({ price: -1, time: -1 }), "missing_id");
  assert.equal(reason({ id: "A", price: -1, time: -1, dayVolume: -1 }), "bad_price");
  assert.equal(reason({ id: "A", price: 1, time: -1, dayVolume: -1 }), "bad_time");
  // The single checks, as ingest uses them; details start with a capital and name the value.
  for (
    const bad of [
      checkSymbol("X".repeat(1000)),
      checkPrice("NaN", { symbol: "A" }),
      checkTime(NOW * 2, { symbol: "A", nowMs: NOW }),
      checkDayVolume(new RawValue("[" + "1,".repeat(100) + "1]"), { symbol: "A" }),
    ]
  ) {
    assert.ok(bad !== null);
    assertDetail(bad.detail);
  }
  assert.match(checkSymbol("X".repeat(1000))!.detail, /"X{40}\.\.\."/);
  assert.equal(showValue(-0), "-0");
  assert.equal(showValue("a\u0000b"), '"a\\u0000b"');
  assert.equal(showValue(new RawValue("[1, 2]")), "[1, 2]");
  assert.equal(showValue(1n), "1n");
});

Deno.test("record: RecordParser fills its fields per record, nothing stale carries over", () => {
  const p = new RecordParser({ maxFutureMs: 1000 });
  const json = (o: Record<string, unknown>) => UTF8.encode(JSON.stringify(o));
  assert.ok(p.parse(json({ id: "A", price: 2, time: NOW, dayVolume: 7 }), undefined, NOW));
  assert.deepStrictEqual([p.symbol, p.price, p.time, p.dayVolume, p.hasDayVolume], [
    "A",
    2,
    NOW,
    7,
    true,
  ]);
  assert.ok(!p.parse(json({ id: "B", price: 3, time: NOW + 1001 }), undefined, NOW));
  assert.equal(p.reason, "future_time");
  assert.ok(p.parse(json({ id: "C", price: 4, time: NOW + 1000 }), undefined, NOW));
  assert.deepStrictEqual([p.symbol, p.price, p.time, p.dayVolume, p.hasDayVolume], [
    "C",
    4,
    NOW + 1000,
    0,
    false,
  ]);
  assert.ok(p.parse(encodeTick({ id: "D", price: 5, time: NOW, dayVolume: 9 }), "tick-v1", NOW));
  assert.deepStrictEqual([p.symbol, p.dayVolume, p.hasDayVolume], ["D", 9, true]);
  assert.ok(p.parse(encodeTick({ id: "E", price: 5, time: NOW }), "tick-v1", NOW));
  assert.deepStrictEqual([p.symbol, p.dayVolume, p.hasDayVolume], ["E", 0, false]);
  assert.deepStrictEqual(p.result(true), {
    ok: true,
    tick: { symbol: "E", price: 5, time: NOW, dayVolume: undefined },
  });
  // maxFutureMs and maxValueBytes are per parser and can be changed.
  p.maxValueBytes = 10;
  assert.ok(!p.parse(json({ id: "A", price: 2, time: NOW }), undefined, NOW));
  assert.equal(p.reason, "too_large");
});
