/**
 * Randomized hostile records for the ticks topic, each with the outcome the aggregator must
 * give it: the reject reason (proto/validate.ts REJECT_REASONS) or the valid tick. Used by the
 * unit tests of aggregate/record.ts and by the hostile-topic integration test.
 *
 * Bad records: control characters, lone surrogates, 100k-character strings, NaN/Infinity/
 * negative/huge prices as numbers and as strings, missing and mistyped fields, non-JSON,
 * binary garbage, far-future and year-0 times, bad tick-v1 bytes, unknown formats, oversize
 * values. Valid records (JSON and tick-v1) include hostile-but-valid symbols (quotes, SQL,
 * unicode, `$1 OR 1=1`) and unusual but valid encodings (escapes, white space, duplicate keys,
 * unknown fields). Every claim is by construction; tests/unit/record_test.ts checks each case
 * against a JSON.parse-based oracle as well.
 * @module
 */

import { encodeTick, type TickMessage } from "../../proto/tick.ts";
import type { RejectReason } from "../../proto/validate.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

/** A valid tick as the record parser returns it. */
export interface HostileTick {
  /** Symbol. */
  symbol: string;
  /** Price. */
  price: number;
  /** Event time, epoch ms. */
  time: number;
  /** Day volume, when the record has one. */
  dayVolume: number | undefined;
}

/** One generated record and what the aggregator must make of it. */
export interface HostileCase {
  /** Sequence number within the generated list. */
  seq: number;
  /** What kind of record this is, e.g. "json: NUL in symbol". */
  kind: string;
  /** Record value. */
  value: Uint8Array;
  /** Record headers (`tp-format` when the case needs one). */
  headers: Record<string, string>;
  /** Suggested record key: the symbol for valid ticks, null for bad records. */
  key: string | null;
  /** The reject reason it must get, or null when it is a valid tick. */
  reason: RejectReason | null;
  /** The tick it must give, when valid. */
  tick?: HostileTick;
}

/** Options of {@linkcode hostileRecords}. */
export interface HostileOptions {
  /** PRNG seed (default 1). */
  seed?: number;
  /** Wall-clock now the parser will be given, epoch ms. */
  nowMs: number;
  /** Prefix of every valid symbol (for test isolation), at most 16 characters (default "HX_"). */
  prefix?: string;
  /** Share of valid ticks, 0-1 (default 0.3). */
  validShare?: number;
  /** Event times of valid ticks are drawn from [from, to] (default the hour before nowMs). */
  times?: { from: number; to: number };
  /** The parser's future allowance (default 300,000 ms). */
  maxFutureMs?: number;
  /**
   * The parser's size cap (default 1 MiB): too_large cases are just above it, and the
   * "100k-character" strings are shortened to stay below it when it is under ~101 KB.
   */
  maxValueBytes?: number;
  /** Leave out too_large cases (e.g. when the broker's message.max.bytes is smaller). */
  noTooLarge?: boolean;
}

const UTF8 = new TextEncoder();

/** Symbols that look dangerous but are valid data (suffixes to the prefix; <= 16 code points). */
export const HOSTILE_VALID_SYMBOLS: readonly string[] = [
  "AAPL",
  "BRK-B",
  "^GSPC",
  "EURUSD=X",
  "$1 OR 1=1",
  "O'Brien\";--",
  "'); DROP TABLE x",
  'a\\b"c',
  "<script>",
  "%s%n%x",
  "日経225",
  "€/$ 📈",
  "A B",
  "\u200bZW",
  "e\u0301",
  "\ufffd",
  "𝔘𝔫𝔦",
  "{}[],:",
];

/** Symbols that break the symbol rule (without any prefix). */
export const BAD_SYMBOLS: readonly string[] = [
  "",
  "A\u0000B",
  "\u0000",
  "AB\n",
  "A\tB",
  "\u007f",
  "A\u0085",
  "\u009f",
  " AAPL",
  "AAPL ",
  "\u00a0X",
  "X\u3000",
  "\u2028X",
  "\ufeffX",
  "\ud800",
  "A\udbff",
  "\udc00A",
  "\ud83d\ud83d",
  "X".repeat(33),
  "é".repeat(33),
  "📈".repeat(33),
];

// ---- JSON text builders ---------------------------------------------------------------------

/** A JSON string literal of `s`, escaping characters at random (all escapes JSON allows). */
function jsonString(s: string, rand: () => number, escapeShare: number): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const must = c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff);
    if (must || rand() < escapeShare) {
      const short = {
        0x22: '\\"',
        0x5c: "\\\\",
        0x08: "\\b",
        0x0c: "\\f",
        0x0a: "\\n",
        0x0d: "\\r",
        0x09: "\\t",
        0x2f: "\\/",
      }[c];
      if (short !== undefined && rand() < 0.5) out += short;
      else {
        const hex = c.toString(16).padStart(4, "0");
        out += "\\u" + (rand() < 0.5 ? hex : hex.toUpperCase());
      }
    } else out += s[i];
  }
  return out + '"';
}

/** A JSON object text from [key, value text] members, with random white space. */
function jsonObject(members: Array<[string, string]>, rand: () => number): string {
  const ws = () => rand() < 0.8 ? "" : [" ", "\n", "\t", "\r\n ", "  "][Math.floor(rand() * 5)];
  return "{" + ws() +
    members.map(([k, v]) => jsonString(k, rand, 0.05) + ws() + ":" + ws() + v + ws()).join(
      "," + ws(),
    ) + "}";
}

/** A random valid JSON value text of any type (small). */
function anyJson(rand: () => number, depth = 0): string {
  const r = Math.floor(rand() * (depth > 2 ? 6 : 8));
  switch (r) {
    case 0:
      return "null";
    case 1:
      return rand() < 0.5 ? "true" : "false";
    case 2:
      return String(Math.round((rand() - 0.5) * 1e6) / 100);
    case 3:
      return jsonString(
        ["NMS", "USD", "x\u0000y", "\ud800", "é", ""][Math.floor(rand() * 6)],
        rand,
        0.1,
      );
    case 4:
      return ["1e400", "-0", "0.000001", "123456789012345678901234567890", "4.9e-324"][
        Math.floor(rand() * 5)
      ];
    case 5:
      return '"' + "z".repeat(Math.floor(rand() * 50)) + '"';
    case 6:
      return "[" + Array.from({ length: Math.floor(rand() * 4) }, () => anyJson(rand, depth + 1))
        .join(",") +
        "]";
    default:
      return jsonObject(
        Array.from(
          { length: Math.floor(rand() * 4) },
          (
            _,
            i,
          ) => [["id", "price", "k" + i, ""][Math.floor(rand() * 4)], anyJson(rand, depth + 1)],
        ),
        rand,
      );
  }
}

/** Renders a number as one of its valid JSON spellings (same value under JSON.parse). */
function numberText(n: number, rand: () => number): string {
  const s = String(n);
  if (!/^\d+(\.\d+)?$/.test(s) || rand() < 0.6) return s;
  const r = Math.floor(rand() * 3);
  if (r === 0) return s.includes(".") ? s + "000" : s + ".0";
  if (r === 1) return s.includes(".") ? s : s + "e0";
  return n.toExponential().replace("e+", rand() < 0.5 ? "E+" : "e");
}

// ---- protobuf builders ----------------------------------------------------------------------

/** Varint bytes of a non-negative integer < 2^53. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function tag(field: number, wire: number): number[] {
  return varint(field * 8 + wire);
}

function zigzag(n: number): number {
  return n >= 0 ? 2 * n : -2 * n - 1;
}

function lenField(field: number, bytes: Uint8Array | number[]): number[] {
  return [...tag(field, 2), ...varint(bytes.length), ...bytes];
}

function doubleField(field: number, v: number): number[] {
  return [...tag(field, 1), ...new Uint8Array(new Float64Array([v]).buffer)];
}

// ---- the generator --------------------------------------------------------------------------

interface Draft {
  kind: string;
  value: Uint8Array | string;
  format?: string;
  reason: RejectReason | null;
  tick?: HostileTick;
}

function toCase(d: Draft, seq: number): HostileCase {
  const headers: Record<string, string> = {};
  if (d.format !== undefined) headers["tp-format"] = d.format;
  const c: HostileCase = {
    seq,
    kind: d.kind,
    value: typeof d.value === "string" ? UTF8.encode(d.value) : d.value,
    headers,
    key: d.tick?.symbol ?? null,
    reason: d.reason,
  };
  if (d.tick !== undefined) c.tick = d.tick;
  return c;
}

/**
 * `count` records in random order: about `validShare` valid ticks, the rest bad ones of every
 * kind (each kind at least once when count allows). Deterministic for a seed.
 */
export function hostileRecords(count: number, options: HostileOptions): HostileCase[] {
  const rand = prng(options.seed ?? 1);
  const make = makers(rand, options);
  const validShare = options.validShare ?? 0.3;
  const out: HostileCase[] = [];
  // Every bad kind once first (so small counts still cover them), then random picks.
  const bad = make.bad.filter((m) => !(options.noTooLarge && m.name === "too_large"));
  const order: Array<() => Draft> = [];
  for (let i = 0; i < count; i++) {
    if (i < bad.length && count >= bad.length * 2) order.push(bad[i].make);
    else if (rand() < validShare) order.push(make.valid[Math.floor(rand() * make.valid.length)]);
    else order.push(bad[Math.floor(rand() * bad.length)].make);
  }
  // Shuffle.
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (let seq = 0; seq < order.length; seq++) out.push(toCase(order[seq](), seq));
  return out;
}

/** One record of every kind (valid and bad), in a fixed order. */
export function hostileCatalog(options: HostileOptions): HostileCase[] {
  const rand = prng(options.seed ?? 1);
  const make = makers(rand, options);
  const drafts = [
    ...make.valid.map((m) => m()),
    ...make.bad.filter((m) => !(options.noTooLarge && m.name === "too_large")).map((m) => m.make()),
  ];
  return drafts.map(toCase);
}

function makers(rand: () => number, options: HostileOptions) {
  const nowMs = options.nowMs;
  const prefix = options.prefix ?? "HX_";
  if ([...prefix].length > 16) {
    throw new RangeError(`Prefix ${JSON.stringify(prefix)} is longer than 16 code points`);
  }
  const from = options.times?.from ?? nowMs - 3_600_000;
  const to = options.times?.to ?? nowMs;
  const maxFuture = options.maxFutureMs ?? 300_000;
  const maxBytes = options.maxValueBytes ?? 1_048_576;
  // "100k-character" strings stay under the size cap (shorter only when the cap is < ~101 KB).
  const longLength = Math.max(100, Math.min(100_000, maxBytes - 1000));
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const validSymbol = () => prefix + pick(HOSTILE_VALID_SYMBOLS);
  const validTime = () => from + int(to - from + 1);
  const validPrice = () => Math.round((0.01 + rand() * 5000) * 100) / 100;
  /** A valid tick; it has a day volume below 1e9 with probability `volumeShare`. */
  const validTick = (volumeShare: number): HostileTick => ({
    symbol: validSymbol(),
    price: validPrice(),
    time: validTime(),
    dayVolume: rand() < volumeShare ? int(1e9) : undefined,
  });
  const goodFields = (): Array<[string, string]> => [
    ["id", JSON.stringify(validSymbol())],
    ["price", String(validPrice())],
    ["time", String(validTime())],
  ];
  /**
   * A JSON tick (id, price, time, exchange, dayVolume, in random order) with field `name`
   * replaced by the JSON text `v`, or removed when `v` is undefined; `more` members are added.
   */
  const jsonWith = (
    name: string,
    v: string | undefined,
    more: Array<[string, string]> = [],
  ): string => {
    const members: Array<[string, string]> = [
      ...goodFields(),
      ["exchange", '"NMS"'],
      ["dayVolume", String(int(1e9))],
    ].filter(([k]) => k !== name) as Array<[string, string]>;
    if (v !== undefined) members.push([name, v]);
    members.push(...more);
    for (let i = members.length - 1; i > 0; i--) {
      const j = int(i + 1);
      [members[i], members[j]] = [members[j], members[i]];
    }
    return jsonObject(members, rand);
  };
  /** The prefix as it appears inside a JSON string literal. */
  const P = JSON.stringify(prefix).slice(1, -1);
  /** A tick-v1 value of a good tick with the fields of `t` replaced. */
  const tickBytes = (t: Partial<TickMessage>): Uint8Array =>
    encodeTick({ id: validSymbol(), price: validPrice(), time: validTime(), ...t });
  /** Good tick-v1 fields as bytes, without field `without`. */
  const pbWithout = (without: number): number[] => {
    const parts: number[][] = [];
    if (without !== 1) parts.push(lenField(1, UTF8.encode(validSymbol())));
    if (without !== 2) parts.push(doubleField(2, validPrice()));
    if (without !== 3) parts.push([...tag(3, 0), ...varint(zigzag(validTime()))]);
    return parts.flat();
  };
  const garbage = (n: number): Uint8Array => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    // A first byte that cannot start a JSON value (nor white space), so JSON.parse must fail.
    const starts = [0x00, 0x01, 0x07, 0x1f, 0x27, 0x2b, 0x3c, 0x41, 0x7f, 0x80, 0xc3, 0xef, 0xff];
    b[0] = pick(starts);
    return b;
  };

  const valid: Array<() => Draft> = [
    () => {
      const tick = validTick(0.8);
      // As ingest writes it: JSON.stringify of the whole quote.
      const quote = {
        id: tick.symbol,
        price: tick.price,
        time: tick.time,
        currency: "USD",
        exchange: "NMS",
        quoteType: 8,
        marketHours: 1,
        changePercent: -0.42,
        ...(tick.dayVolume === undefined ? {} : { dayVolume: tick.dayVolume }),
        dayHigh: tick.price * 1.01,
        shortName: 'Ünïcode "quoted" \\ name',
        priceHint: 2,
      };
      return {
        kind: "valid json (as ingest writes it)",
        value: JSON.stringify(quote),
        reason: null,
        tick,
      };
    },
    () => {
      // Escapes, white space, spelled numbers, other fields of every type, duplicate keys.
      const tick = validTick(0);
      const members: Array<[string, string]> = [];
      if (rand() < 0.5) members.push(["id", anyJson(rand)], ["price", '"1"']); // overridden later
      for (let i = int(4); i > 0; i--) {
        members.push([pick(["x", "idx", "Price", "tim", "\u0000", "日"]), anyJson(rand)]);
      }
      members.push(["id", jsonString(tick.symbol, rand, 0.3)]);
      members.push(["price", numberText(tick.price, rand)]);
      members.push(["time", numberText(tick.time, rand)]);
      if (rand() < 0.5) {
        tick.dayVolume = int(1e12);
        members.push(["dayVolume", numberText(tick.dayVolume, rand)]);
      }
      for (let i = int(3); i > 0; i--) members.push([pick(["nested", "a", "b"]), anyJson(rand)]);
      return {
        kind: "valid json (escapes, spacing, duplicates, extra fields)",
        value: jsonObject(members, rand),
        reason: null,
        tick,
      };
    },
    () => {
      const tick = validTick(0.8);
      const value = encodeTick({
        id: tick.symbol,
        price: tick.price,
        time: tick.time,
        dayVolume: tick.dayVolume,
        exchange: "NMS",
        currency: "USD",
        quoteType: 8,
        marketHours: 1,
        lastSize: int(1000),
      });
      return { kind: "valid tick-v1", value, format: "tick-v1", reason: null, tick };
    },
    () => {
      // Fields out of order, repeated (last wins) and unknown fields of every wire type.
      const tick = {
        symbol: validSymbol(),
        price: validPrice(),
        time: validTime(),
        dayVolume: int(1e6) as number | undefined,
      };
      const bytes = [
        ...[...tag(3, 0), ...varint(zigzag(1))],
        ...doubleField(2, -1),
        ...lenField(1, UTF8.encode("\u0000bad")),
        ...[...tag(20, 0), ...varint(123456789)],
        ...[...tag(21, 5), 1, 2, 3, 4],
        ...[...tag(22, 1), 1, 2, 3, 4, 5, 6, 7, 8],
        ...lenField(23, [0xff, 0xfe]),
        ...[...tag(24, 3), ...tag(1, 0), 5, ...tag(24, 4)],
        ...lenField(1, UTF8.encode(tick.symbol)),
        ...[...tag(3, 0), ...varint(zigzag(tick.time))],
        ...doubleField(2, tick.price),
        ...[...tag(4, 0), ...varint(zigzag(tick.dayVolume!))],
      ];
      return {
        kind: "valid tick-v1 (reordered, repeated, unknown fields)",
        value: new Uint8Array(bytes),
        format: "tick-v1",
        reason: null,
        tick,
      };
    },
  ];

  const bad: Array<{ name: string; make: () => Draft }> = [];
  const add = (
    reason: RejectReason,
    kind: string,
    make: () => Uint8Array | string,
    format?: string,
  ) => bad.push({ name: reason, make: () => ({ kind, value: make(), reason, format }) });

  // not_json
  add("not_json", "json: truncated", () => {
    const s = jsonWith("x", undefined);
    return s.slice(0, 1 + int(s.length - 2));
  });
  add("not_json", "json: binary garbage", () => garbage(1 + int(200)));
  add("not_json", "json: NaN literal", () => jsonWith("price", "NaN"));
  add(
    "not_json",
    "json: Infinity literal",
    () => jsonWith("price", pick(["Infinity", "-Infinity"])),
  );
  add("not_json", "json: single quotes", () => `{'id':'HX_A','price':1,'time':${validTime()}}`);
  add("not_json", "json: trailing comma", () => jsonWith("x", undefined).slice(0, -1) + ",}");
  add("not_json", "json: raw control character in a string", () => jsonWith("id", `"${P}\u0000A"`));
  add("not_json", "json: invalid UTF-8 in a string", () => {
    const good = UTF8.encode(jsonWith("shortName", '"abc"'));
    const at = new TextDecoder().decode(good).indexOf('"abc"') + 2;
    good[at] = pick([0xff, 0xc0, 0xed, 0x80]);
    return good;
  });
  add("not_json", "json: byte-order mark", () => "\ufeff" + jsonWith("x", undefined));
  add("not_json", "json: empty value", () => "");
  add("not_json", "json: comment", () => "/*x*/" + jsonWith("x", undefined));
  add("not_json", "json: leading zero", () => jsonWith("price", "01.5"));
  add("not_json", "json: two values", () => jsonWith("x", undefined) + " {}");
  add("not_json", "json: tick-v1 bytes without the header", () =>
    // 0x0a (the id tag) is a newline; the id length (4..23) is white space or a control
    // character; then "H" cannot start a JSON value.
    tickBytes({ id: "HX_" + "A".repeat(1 + int(20)) }));
  // not_object
  add("not_object", "json: array", () => "[" + jsonWith("x", undefined) + "]");
  add("not_object", "json: scalar", () => pick(['"AAPL"', "42", "null", "true", " -0.5 "]));
  // missing / bad symbol
  add("missing_id", "json: no id", () => jsonWith("id", undefined));
  add(
    "missing_id",
    "json: id only in a nested object",
    () => jsonWith("id", undefined, [["nested", `{"id":"${P}A"}`]]),
  );
  add(
    "bad_symbol",
    "json: bad symbol",
    () => jsonWith("id", jsonString(pick(BAD_SYMBOLS), rand, 0.1)),
  );
  add("bad_symbol", "json: NUL in symbol", () => jsonWith("id", `"${P}\\u0000B"`));
  add(
    "bad_symbol",
    "json: lone surrogate symbol",
    () => jsonWith("id", pick(['"\\ud800"', '"\\udc01A"', `"${P}\\uD801"`])),
  );
  add(
    "bad_symbol",
    "json: 100k-character symbol",
    () => jsonWith("id", '"' + "A".repeat(longLength - int(100)) + '"'),
  );
  add(
    "bad_symbol",
    "json: mistyped id",
    () => jsonWith("id", pick(["42", "null", "true", "[]", '{"a":1}', '["AAPL"]'])),
  );
  // price
  add("missing_price", "json: no price", () => jsonWith("price", undefined));
  add(
    "bad_price",
    "json: price as a string",
    () => jsonWith("price", pick(['"NaN"', '"Infinity"', '"-1"', '"10.5"', '"1e400"', '""'])),
  );
  add(
    "bad_price",
    "json: non-positive or overflowing price",
    () => jsonWith("price", pick(["0", "-0", "-1", "-1e-300", "1e400", "-1e400", "1e999999999"])),
  );
  add(
    "bad_price",
    "json: mistyped price",
    () => jsonWith("price", pick(["null", "true", "false", "[1]", '{"v":1}'])),
  );
  // time
  add("missing_time", "json: no time", () => jsonWith("time", undefined));
  add("bad_time", "json: time as a string", () => jsonWith("time", `"${validTime()}"`));
  add(
    "bad_time",
    "json: year-0 or negative time",
    () => jsonWith("time", pick(["-62167219200000", "0", "-1", "-0"])),
  );
  add(
    "bad_time",
    "json: fractional or unsafe time",
    () => jsonWith("time", pick([`${validTime()}.5`, "9007199254740993", "1e300", "1e400"])),
  );
  add(
    "bad_time",
    "json: mistyped time",
    () => jsonWith("time", pick(["null", "[]", "{}", "true"])),
  );
  add(
    "future_time",
    "json: far-future time",
    () =>
      jsonWith(
        "time",
        String(pick([nowMs + maxFuture + 1, 4_102_444_800_000, 9_000_000_000_000_000])),
      ),
  );
  // day volume
  add(
    "bad_volume",
    "json: bad day volume",
    () => jsonWith("dayVolume", pick(["-1", '"5"', "null", "1e400", '"NaN"', "true", "-0.5"])),
  );
  // format and size
  add("unknown_format", "unknown tp-format header", () => jsonWith("x", undefined), "tick-v2");
  add(
    "unknown_format",
    "unknown tp-format header (JSON upper case)",
    () => jsonWith("x", undefined),
    "JSON",
  );
  add(
    "too_large",
    "value over the size cap",
    () => jsonWith("blob", '"' + "x".repeat(maxBytes) + '"'),
  );

  // tick-v1
  const v1 = (reason: RejectReason, kind: string, make: () => Uint8Array | number[]) =>
    add(reason, "tick-v1: " + kind, () => {
      const v = make();
      return v instanceof Uint8Array ? v : new Uint8Array(v);
    }, "tick-v1");
  v1("bad_binary", "truncated varint", () => [...pbWithout(3), 0x18, 0xff]);
  v1("bad_binary", "length past the end", () => [0x0a, 0x7f, 0x41]);
  v1("bad_binary", "price with the varint wire type", () => [...pbWithout(2), 0x10, 0x01]);
  v1(
    "bad_binary",
    "id with the fixed64 wire type",
    () => [...pbWithout(1), ...tag(1, 1), 1, 2, 3, 4, 5, 6, 7, 8],
  );
  v1("bad_binary", "wire type 6 or 7", () => [...pbWithout(0), pick([0x0e, 0x0f, 0x56, 0x57])]);
  v1("bad_binary", "field number 0", () => [0x00, 0x01, ...pbWithout(0)]);
  v1("bad_binary", "end group without start", () => [...pbWithout(0), ...tag(30, 4)]);
  v1("bad_binary", "unterminated group", () => [...pbWithout(0), ...tag(30, 3), 0x08, 0x01]);
  v1(
    "bad_binary",
    "invalid UTF-8 in the id",
    () => [
      ...pbWithout(1),
      ...lenField(1, pick([[0xff], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xe2, 0x82]])),
    ],
  );
  v1(
    "bad_binary",
    "invalid UTF-8 in the exchange",
    () => [...pbWithout(0), ...lenField(6, [0x41, 0xfe])],
  );
  v1(
    "bad_binary",
    "varint over 64 bits",
    () => [...pbWithout(3), 0x18, ...new Array(9).fill(0xff), 0x02],
  );
  v1("bad_binary", "truncated double", () => [...pbWithout(2), 0x11, 1, 2, 3]);
  v1(
    "bad_binary",
    "JSON text sent as tick-v1",
    () => UTF8.encode(`{"id":"HX_A","price":1,"time":${validTime()}}`),
  );
  v1("missing_id", "no id", () => pbWithout(1));
  v1("bad_symbol", "bad symbol", () => {
    const s = pick(BAD_SYMBOLS.filter((x) => x.isWellFormed()));
    return [...pbWithout(1), ...lenField(1, UTF8.encode(s))];
  });
  v1(
    "bad_symbol",
    "100k-character symbol",
    () => [...pbWithout(1), ...lenField(1, UTF8.encode("B".repeat(longLength)))],
  );
  v1("missing_price", "no price", () => pbWithout(2));
  v1(
    "bad_price",
    "bad price",
    () => tickBytes({ price: pick([NaN, Infinity, -Infinity, 0, -0, -1, -1e300]) }),
  );
  v1("missing_time", "no time", () => pbWithout(3));
  v1(
    "bad_time",
    "bad time",
    () => tickBytes({ time: pick([0, -1, -62167219200000, 2 ** 60, -(2 ** 63)]) }),
  );
  v1(
    "future_time",
    "far-future time",
    () => tickBytes({ time: pick([nowMs + maxFuture + 1, 4_102_444_800_000]) }),
  );
  v1("bad_volume", "negative day volume", () => tickBytes({ dayVolume: -1 - int(1000) }));
  return { valid, bad };
}
