// The PostgreSQL sink v2 against the real server: exact array literals, the version guard (final
// rows immutable) against an oracle, keys by topic and window length, data errors dead-lettered
// once, statement timeouts split, availability errors reported as such.
import assert from "node:assert/strict";
import {
  classifyDbError,
  compareVersions,
  type LateTick,
  SinkError,
  SinkUnavailableError,
  type WindowRow,
  writeBatch,
} from "../aggregate/sink.ts";
import type { AggregatorProgress } from "../aggregate/progress.ts";
import { createPool, type Pool } from "../common/pg.ts";
import { floatArray, integerArray, textArray } from "../common/pg_array.ts";
import * as bin from "../common/pg_binary.ts";
import { migrate } from "../sql/migrate.ts";
import { config, testPool, uniqueName } from "./_helpers/env.ts";
import { mulberry32 as rng } from "../common/prng.ts";

const T0 = Date.UTC(2026, 0, 5, 14, 0, 0);
const pg = { sanitizeResources: false, sanitizeOps: false };

function row(over: Partial<WindowRow> = {}): WindowRow {
  const windowMs = over.windowMs ?? 300_000;
  const windowStart = over.windowStart ?? T0;
  return {
    symbol: "SYM",
    windowMs,
    windowStart,
    windowEnd: windowStart + windowMs,
    count: 3,
    sum: 301.5,
    avg: 100.5,
    open: 100,
    high: 101.25,
    low: 99.75,
    close: 100.5,
    firstEventTime: windowStart + 1_000,
    lastEventTime: windowStart + 2_000,
    partition: 0,
    lastOffset: 10,
    isFinal: false,
    volume: 300,
    pvSum: 30_150,
    vwap: 100.5,
    ...over,
  };
}

const READ_SQL = `
SELECT symbol,
       (extract(epoch FROM window_length) * 1000)::float8 AS "windowMs",
       (extract(epoch FROM window_start) * 1000)::float8 AS "windowStart",
       (extract(epoch FROM window_end) * 1000)::float8 AS "windowEnd",
       tick_count::float8 AS count, price_sum AS sum, avg_price AS avg, open_price AS open,
       high_price AS high, low_price AS low, close_price AS close,
       (extract(epoch FROM first_tick_at) * 1000)::float8 AS "firstEventTime",
       (extract(epoch FROM last_tick_at) * 1000)::float8 AS "lastEventTime",
       kafka_partition AS partition, last_offset::float8 AS "lastOffset", is_final AS "isFinal",
       volume, pv_sum AS "pvSum", vwap
  FROM price_windows WHERE topic = $1`;

/** The rows of `topic` as WindowRows (every column read back), sorted by key. */
async function readRows(pool: Pool, topic: string): Promise<WindowRow[]> {
  return (await pool.query<WindowRow>(READ_SQL, [topic])).rows.sort(byKey);
}

function byKey(a: WindowRow, b: WindowRow): number {
  return a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : (a.windowMs - b.windowMs) ||
    (a.windowStart - b.windowStart);
}

async function cleanup(pool: Pool, topic: string): Promise<void> {
  await pool.query("DELETE FROM price_windows WHERE topic = $1", [topic]);
  await pool.query("DELETE FROM late_ticks WHERE topic = $1", [topic]);
  await pool.query("DELETE FROM rejected_rows WHERE topic = $1", [topic]);
  await pool.query("DELETE FROM aggregator_progress WHERE topic = $1", [topic]);
}

/** Runs `fn` with a migrated pool on the test database and a fresh topic, then cleans up. */
async function withTopic(fn: (pool: Pool, topic: string) => Promise<void>): Promise<void> {
  const pool = testPool();
  const topic = uniqueName("sink");
  try {
    await migrate(pool);
    await fn(pool, topic);
  } finally {
    await cleanup(pool, topic).catch(() => {});
    await pool.end();
  }
}

// --- Hostile values ---------------------------------------------------------------------------

const PIECES = [
  '"',
  "\\",
  ",",
  "{",
  "}",
  " ",
  "\t",
  "\n",
  "\r",
  "'",
  "NULL",
  "null",
  "",
  "a",
  "é",
  "日経",
  "📈",
  "\u2028",
  "\u00a0",
  '\\"',
  '""',
  "NaN",
  "{}",
  "\u0001",
  "\u007f",
  "\ufeff",
  "$1",
  ";",
  "\\N",
  "ARRAY[1]",
];

/** A random string of pieces and code points (no NUL, no lone surrogate: PostgreSQL text). */
function hostileString(r: () => number): string {
  let s = "";
  const n = Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    if (r() < 0.6) s += PIECES[Math.floor(r() * PIECES.length)];
    else {
      let cp = 1 + Math.floor(r() * 0x10fffe);
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
      s += String.fromCodePoint(cp);
    }
  }
  return s;
}

const SPECIAL_FLOATS = [
  0,
  -0,
  5e-324,
  -5e-324,
  2.225073858507201e-308,
  2.2250738585072014e-308,
  1.7976931348623157e308,
  -1.7976931348623157e308,
  Infinity,
  -Infinity,
  NaN,
  0.1,
  1 / 3,
  1e21,
  1e-7,
  123456789012345680000,
  Number.EPSILON,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 63),
  187.23000335693359,
];

/** Any float64 (random bits, so also NaNs with payloads and subnormals) or a price-like one. */
function randomFloat(r: () => number): number {
  const x = r();
  if (x < 0.1) return SPECIAL_FLOATS[Math.floor(r() * SPECIAL_FLOATS.length)];
  if (x < 0.4) return Math.round(r() * 1e6) / 100;
  const dv = new DataView(new ArrayBuffer(8));
  dv.setUint32(0, Math.floor(r() * 2 ** 32));
  dv.setUint32(4, Math.floor(r() * 2 ** 32));
  return dv.getFloat64(0);
}

function floatHex(x: number): string {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, x);
  return [...new Uint8Array(dv.buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function randomInt64(r: () => number): bigint {
  const x = r();
  if (x < 0.1) return [-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n][Math.floor(r() * 4)];
  const hi = BigInt(Math.floor(r() * 2 ** 32));
  const lo = BigInt(Math.floor(r() * 2 ** 32));
  return BigInt.asIntN(64, (hi << 32n) | lo);
}

Deno.test({
  name: "sink: array literals round-trip hostile strings, every float64 and int64 exactly",
  ...pg,
  async fn() {
    const pool = testPool();
    try {
      for (const seed of [1, 2, 3, 4, 5]) {
        const r = rng(seed);
        const n = 2000;
        const strings: (string | null)[] = Array.from(
          { length: n },
          (_, i) => i === 7 ? null : hostileString(r),
        );
        strings.push("", "NULL", '"', "\\", " ", "{a,b}");
        const floats: (number | null)[] = [...SPECIAL_FLOATS, null];
        for (let i = 0; i < n; i++) floats.push(randomFloat(r));
        const ints: bigint[] = Array.from({ length: n }, () => randomInt64(r));
        const safe: number[] = Array.from(
          { length: 500 },
          () => Math.floor((r() - 0.5) * 2 * Number.MAX_SAFE_INTEGER),
        );
        const { rows: ts } = await pool.query<{ s: string | null; isnull: boolean }>(
          `SELECT s, s IS NULL AS isnull FROM unnest($1::text[]) WITH ORDINALITY AS u(s, i)
            ORDER BY i`,
          [textArray(strings.length, (i) => strings[i])],
        );
        assert.equal(ts.length, strings.length);
        for (let i = 0; i < strings.length; i++) {
          assert.equal(
            ts[i].s,
            strings[i],
            `seed ${seed} string ${i} ${JSON.stringify(strings[i])}`,
          );
          assert.equal(ts[i].isnull, strings[i] === null, `seed ${seed} string ${i} NULL-ness`);
        }
        const { rows: fs } = await pool.query<{ h: string | null; f: number | null }>(
          `SELECT encode(float8send(f), 'hex') AS h, f FROM unnest($1::float8[])
             WITH ORDINALITY AS u(f, i) ORDER BY i`,
          [floatArray(floats.length, (i) => floats[i])],
        );
        assert.equal(fs.length, floats.length);
        for (let i = 0; i < floats.length; i++) {
          const x = floats[i];
          if (x === null) {
            assert.equal(fs[i].h, null);
          } else if (Number.isNaN(x)) {
            assert.ok(Number.isNaN(fs[i].f), `seed ${seed} float ${i} NaN`);
          } else {
            assert.equal(fs[i].h, floatHex(x), `seed ${seed} float ${i} ${x}: bits`);
            assert.ok(Object.is(fs[i].f, x), `seed ${seed} float ${i} ${x}: read back ${fs[i].f}`);
          }
        }
        const { rows: is } = await pool.query<{ b: string }>(
          `SELECT b::text AS b FROM unnest($1::bigint[]) WITH ORDINALITY AS u(b, i) ORDER BY i`,
          [integerArray(ints.length + safe.length, (i) => i < ints.length ? ints[i] : safe[i - n])],
        );
        assert.deepEqual(is.map((x) => x.b), [...ints, ...safe].map(String), `seed ${seed} ints`);
      }
    } finally {
      await pool.end();
    }
  },
});

Deno.test({
  name: "sink: binary arrays round-trip hostile strings, every float64, safe int64 and ms instant",
  ...pg,
  async fn() {
    const pool = testPool();
    try {
      for (const seed of [11, 12, 13]) {
        const r = rng(seed);
        const n = 2000;
        const strings: (string | null)[] = Array.from(
          { length: n },
          (_, i) => i === 5 ? null : hostileString(r),
        );
        strings.push("", "NULL", '"', "\\", "\u00e9\u{1F600}");
        const { rows: ts } = await pool.query<{ s: string | null }>(
          `SELECT s FROM unnest($1::text[]) WITH ORDINALITY AS u(s, i) ORDER BY i`,
          [bin.textArray(strings.length, (i) => strings[i])],
        );
        assert.deepEqual(ts.map((x) => x.s), strings, `seed ${seed} strings`);
        const floats: (number | null)[] = [...SPECIAL_FLOATS, null];
        for (let i = 0; i < n; i++) floats.push(randomFloat(r));
        const { rows: fs } = await pool.query<{ h: string | null; f: number | null }>(
          `SELECT encode(float8send(f), 'hex') AS h, f FROM unnest($1::float8[])
             WITH ORDINALITY AS u(f, i) ORDER BY i`,
          [bin.float8Array(floats.length, (i) => floats[i])],
        );
        for (let i = 0; i < floats.length; i++) {
          const x = floats[i];
          if (x === null) assert.equal(fs[i].h, null);
          else if (Number.isNaN(x)) assert.ok(Number.isNaN(fs[i].f), `seed ${seed} float ${i}`);
          else assert.equal(fs[i].h, floatHex(x), `seed ${seed} float ${i} ${x}: bits`);
        }
        const ints = [
          0,
          -1,
          1,
          2 ** 32,
          -(2 ** 32),
          2 ** 32 - 1,
          -(2 ** 31),
          Number.MAX_SAFE_INTEGER,
          -Number.MAX_SAFE_INTEGER,
          ...Array.from({ length: n }, () => Math.floor((r() - 0.5) * 2 * Number.MAX_SAFE_INTEGER)),
        ];
        const { rows: is } = await pool.query<{ b: string }>(
          `SELECT b::text AS b FROM unnest($1::bigint[]) WITH ORDINALITY AS u(b, i) ORDER BY i`,
          [bin.int8Array(ints.length, (i) => ints[i])],
        );
        assert.deepEqual(is.map((x) => x.b), ints.map(String), `seed ${seed} bigints`);
        const int4s = [0, -1, 2147483647, -2147483648, ...ints.slice(9, 200).map((x) => x | 0)];
        const { rows: i4 } = await pool.query<{ b: number }>(
          `SELECT b FROM unnest($1::int[]) WITH ORDINALITY AS u(b, i) ORDER BY i`,
          [bin.int4Array(int4s.length, (i) => int4s[i])],
        );
        assert.deepEqual(i4.map((x) => x.b), int4s, `seed ${seed} ints`);
        const bools = Array.from({ length: 300 }, () => r() < 0.5);
        const { rows: bs } = await pool.query<{ b: boolean }>(
          `SELECT b FROM unnest($1::boolean[]) WITH ORDINALITY AS u(b, i) ORDER BY i`,
          [bin.boolArray(bools.length, (i) => bools[i])],
        );
        assert.deepEqual(bs.map((x) => x.b), bools, `seed ${seed} booleans`);
        // Instants: before 1970 and 2000, now, far future (beyond a double's exact µs), ms exact.
        const instants = [
          0,
          -1,
          946_684_800_000,
          946_684_799_999,
          T0,
          -62_135_596_800_000, // 0001-01-01
          8_000_000_000_000_001, // year 255,000 or so: past 2^53 µs
          ...Array.from({ length: n }, () => Math.floor((r() - 0.3) * 1e14)),
        ];
        const { rows: ms } = await pool.query<{ ms: string }>(
          `SELECT ((extract(epoch FROM t) * 1000)::numeric)::text AS ms
             FROM unnest($1::timestamptz[]) WITH ORDINALITY AS u(t, i) ORDER BY i`,
          [bin.timestamptzArray(instants.length, (i) => instants[i])],
        );
        assert.deepEqual(
          ms.map((x) => Number(x.ms.replace(/\.0+$/, ""))),
          instants,
          `seed ${seed} instants`,
        );
      }
    } finally {
      await pool.end();
    }
  },
});

Deno.test({
  name:
    "sink: new windows go in by a plain INSERT; a slice that meets stored rows takes the upsert",
  ...pg,
  async fn() {
    await withTopic(async (pool, topic) => {
      const rows = (from: number, n: number, o: Partial<WindowRow> = {}) =>
        Array.from({ length: n }, (_, i) => row({ symbol: `N${from + i}`, lastOffset: 10, ...o }));
      // All new: inserted.
      const fresh = rows(0, 50);
      let res = await writeBatch(pool, { topic, windows: [], newWindows: [fresh] });
      assert.equal(res.windowsWritten, 50);
      assert.deepEqual(await readRows(pool, topic), [...fresh].sort(byKey));
      // A "new" slice that is not: a newer version, an older one, a final row stored before, and
      // a data error. The slice falls back to the upsert: the guard and the bisection apply.
      await writeBatch(pool, {
        topic,
        windows: [row({ symbol: "N60", lastOffset: 5, isFinal: true })],
      });
      const mixed = [
        row({ symbol: "N1", lastOffset: 11, close: 7 }), // newer: applied
        row({ symbol: "N2", lastOffset: 9, close: 8 }), // older: skipped
        row({ symbol: "N60", lastOffset: 12, close: 9 }), // final stored: skipped
        row({ symbol: "N61\u0000", lastOffset: 1 }), // refused: NUL
        row({ symbol: "N62", lastOffset: 1 }), // new: inserted
      ];
      const later = rows(100, 5); // a later slice of the same call: the upsert, fine for new rows
      res = await writeBatch(pool, { topic, windows: [], newWindows: [mixed, later] });
      assert.equal(res.windowsWritten, 2 + 5);
      assert.equal(res.rejected, 1);
      assert.equal(JSON.parse(res.rejections[0].rowKey)[0], "N61\u0000");
      const stored = new Map((await readRows(pool, topic)).map((r) => [r.symbol, r]));
      assert.equal(stored.get("N1")!.close, 7);
      assert.equal(stored.get("N2")!.lastOffset, 10);
      assert.equal(stored.get("N60")!.lastOffset, 5);
      assert.equal(stored.get("N60")!.isFinal, true);
      assert.ok(stored.has("N62") && stored.has("N104"));
      assert.equal(stored.size, 50 + 1 + 1 + 5);
      // A data error alone (no conflict) also falls back, and later slices stay plain inserts.
      res = await writeBatch(pool, {
        topic,
        windows: [],
        newWindows: [[row({ symbol: "N70\u0000" }), row({ symbol: "N71" })], rows(200, 3)],
      });
      assert.equal(res.windowsWritten, 4);
      assert.equal(res.rejected, 1);
    });
  },
});

Deno.test({
  name: "sink: a call of several slices is split by symbol over two transactions: the same rows " +
    "as one, and a failure in either share commits nothing",
  ...pg,
  async fn() {
    const one = testPool();
    const two = testPool();
    const topicOne = uniqueName("sink1");
    const topicTwo = uniqueName("sink2");
    try {
      await migrate(one);
      // Random versions of 40 symbols x 2 lengths x 3 starts, with repeated keys across slices,
      // as upserts and as new rows (the keys of the new rows are distinct from the upserts').
      const r = rng(11);
      const versions = (symbols: string[], n: number) =>
        Array.from({ length: n }, () =>
          row({
            symbol: symbols[Math.floor(r() * symbols.length)],
            windowMs: r() < 0.5 ? 60_000 : 300_000,
            windowStart: T0 + Math.floor(r() * 3) * 300_000,
            lastOffset: Math.floor(r() * 50),
            isFinal: r() < 0.1,
            close: Math.round(r() * 1e4) / 100,
          }));
      const old = Array.from({ length: 40 }, (_, i) => `P${i}`);
      const fresh = Array.from({ length: 300 }, (_, i) => `Q${i}`);
      const upserts = versions(old, 400);
      const keyOf = (w: WindowRow) => `${w.symbol}/${w.windowMs}/${w.windowStart}`;
      const seen = new Set<string>();
      const newRows = versions(fresh, 600).filter((w) => !seen.has(keyOf(w)) && seen.add(keyOf(w)));
      const slices = (rows: WindowRow[], size: number) =>
        Array.from(
          { length: Math.ceil(rows.length / size) },
          (_, i) => rows.slice(i * size, (i + 1) * size),
        );
      const a = await writeBatch(
        one,
        { topic: topicOne, windows: upserts, newWindows: slices(newRows, 50) },
        { sliceSize: 37, connections: 1 },
      );
      assert.equal(one.totalCount, 1, "connections: 1 writes on one connection");
      const b = await writeBatch(
        two,
        { topic: topicTwo, windows: upserts, newWindows: slices(newRows, 50) },
        { sliceSize: 37 },
      );
      assert.equal(two.totalCount, 2, "the default writes on two connections");
      assert.equal(b.windowsWritten, a.windowsWritten);
      const stored = await readRows(two, topicTwo);
      assert.deepEqual(stored, await readRows(one, topicOne));
      assert.equal(
        stored.length,
        seen.size + new Set(upserts.map(keyOf)).size,
      );
      // A failure that is not about the data (a test-only trigger raising 42501) in either share:
      // both transactions roll back. BOOM0 and BOOM1 fall in different shares of shareOf().
      const fn = `tp_test_boom_${crypto.randomUUID().slice(0, 8)}`;
      await one.query(
        `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.topic = '${topicTwo}' AND starts_with(NEW.symbol, 'BOOM') THEN
             RAISE EXCEPTION 'boom' USING ERRCODE = '42501';
           END IF;
           RETURN NEW;
         END $$`,
      );
      await one.query(
        `CREATE TRIGGER ${fn} BEFORE INSERT OR UPDATE ON price_windows
           FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
      );
      try {
        for (const boom of ["BOOM0", "BOOM1"]) {
          const rows = versions(fresh, 300).map((w, i) => ({ ...w, symbol: `R${i}` }));
          rows[250].symbol = boom;
          await assert.rejects(
            writeBatch(two, { topic: topicTwo, windows: [], newWindows: slices(rows, 40) }),
            SinkError,
          );
          const now = await readRows(two, topicTwo);
          assert.deepEqual(now, stored, `nothing of the failed call (${boom}) committed`);
          assert.equal(two.idleCount, two.totalCount, "both clients went back to the pool");
        }
      } finally {
        await one.query(`DROP TRIGGER ${fn} ON price_windows`);
        await one.query(`DROP FUNCTION ${fn}()`);
      }
    } finally {
      await cleanup(one, topicOne).catch(() => {});
      await cleanup(one, topicTwo).catch(() => {});
      await one.end();
      await two.end();
    }
  },
});

Deno.test({
  name: "sink: a window row with a field that cannot be sent exactly is refused with its name",
  ...pg,
  async fn() {
    await withTopic(async (pool, topic) => {
      const rows = Array.from({ length: 20 }, (_, i) => row({ symbol: `X${i}`, lastOffset: i }));
      rows[2].lastOffset = 2.5;
      rows[4].count = NaN;
      rows[6].partition = -1;
      rows[8].windowStart = 2 ** 60;
      const res = await writeBatch(pool, { topic, windows: rows });
      assert.equal(res.windowsWritten, 16);
      assert.equal(res.rejected, 4);
      const reasons = new Map(res.rejections.map((x) => [JSON.parse(x.rowKey)[0], x.reason]));
      assert.match(reasons.get("X2")!, /^lastOffset is 2\.5: expected an integer/);
      assert.match(reasons.get("X4")!, /^count is NaN: expected an integer/);
      assert.match(reasons.get("X6")!, /^partition is -1: expected an integer from 0/);
      assert.match(reasons.get("X8")!, /^windowStart is 1152921504606847000: expected/);
      const stored = await readRows(pool, topic);
      assert.deepEqual(
        stored.map((x) => x.symbol).sort(),
        rows.filter((_, i) => ![2, 4, 6, 8].includes(i)).map((x) => x.symbol).sort(),
      );
    });
  },
});

Deno.test({
  name: "sink: every column of hostile rows is written exactly (symbols, floats, -0, null vwap)",
  ...pg,
  async fn() {
    await withTopic(async (pool, topic) => {
      const r = rng(42);
      const rows: WindowRow[] = [];
      const seen = new Set<string>();
      while (rows.length < 1500) {
        const symbol = `H${hostileString(r)}`;
        if (seen.has(symbol)) continue;
        seen.add(symbol);
        const price = () => randomFloat(r);
        rows.push(row({
          symbol,
          windowMs: [60_000, 300_000, 3_600_000][Math.floor(r() * 3)],
          windowStart: T0 - 3_600_000 * Math.floor(r() * 1000),
          count: Math.floor(r() * 1e6),
          sum: price(),
          avg: price(),
          open: price(),
          high: price(),
          low: price(),
          close: price(),
          partition: Math.floor(r() * 64),
          lastOffset: Math.floor(r() * Number.MAX_SAFE_INTEGER),
          isFinal: r() < 0.3,
          volume: price(),
          pvSum: price(),
          vwap: r() < 0.3 ? null : price(),
          firstEventTime: T0 + Math.floor(r() * 1e9),
          lastEventTime: T0 + Math.floor(r() * 1e9),
        }));
      }
      for (const x of rows) x.windowEnd = x.windowStart + x.windowMs;
      const res = await writeBatch(pool, { topic, windows: rows }, { sliceSize: 400 });
      assert.equal(res.windowsWritten, rows.length);
      assert.equal(res.rejected, 0);
      assert.deepEqual(await readRows(pool, topic), [...rows].sort(byKey));
    });
  },
});

// --- Version guard ----------------------------------------------------------------------------

/** The guard, literally: final rows never change; otherwise only a newer version applies. */
function guard(cur: WindowRow | undefined, v: WindowRow): WindowRow | undefined {
  if (cur === undefined) return v;
  if (cur.isFinal) return cur;
  const newer = v.partition === cur.partition
    ? (v.lastOffset - cur.lastOffset || Number(v.isFinal) - Number(cur.isFinal)) > 0
    : (v.lastEventTime - cur.lastEventTime || v.partition - cur.partition) > 0;
  return newer ? v : cur;
}

Deno.test({
  name: "sink: a final row is never changed again, by any later version (even a higher offset)",
  ...pg,
  async fn() {
    await withTopic(async (pool, topic) => {
      const w = (o: Partial<WindowRow>) => writeBatch(pool, { topic, windows: [row(o)] });
      assert.equal((await w({ lastOffset: 10, close: 1 })).windowsWritten, 1);
      assert.equal((await w({ lastOffset: 9, close: 2 })).windowsWritten, 0, "older version");
      assert.equal((await w({ lastOffset: 12, close: 3, isFinal: true })).windowsWritten, 1);
      const final = await readRows(pool, topic);
      assert.equal(final[0].close, 3);
      assert.equal(final[0].isFinal, true);
      // After a reset with watermark −∞ a straggler comes with a higher offset, non-final or
      // final; a moved partition comes with a later tick: none of them may touch the final row.
      for (
        const o of [
          { lastOffset: 20, close: 4 },
          { lastOffset: 30, close: 5, isFinal: true },
          { partition: 7, lastOffset: 1, lastEventTime: T0 + 299_999, close: 6 },
          { partition: 7, lastOffset: 2, lastEventTime: T0 + 299_999, close: 7, isFinal: true },
        ]
      ) {
        assert.equal((await w(o)).windowsWritten, 0, JSON.stringify(o));
        assert.deepEqual(await readRows(pool, topic), final, JSON.stringify(o));
      }
    });
  },
});

Deno.test({
  name: "sink: random version sequences in random slices equal the guard applied row by row",
  ...pg,
  async fn() {
    await withTopic(async (pool, topic) => {
      const r = rng(7);
      const keys: Partial<WindowRow>[] = [];
      for (const symbol of ["G1", "G2", "G3"]) {
        for (const windowMs of [60_000, 300_000]) {
          for (const k of [0, 1]) keys.push({ symbol, windowMs, windowStart: T0 + k * 300_000 });
        }
      }
      const oracle = new Map<string, WindowRow>();
      let written = 0;
      let expectedWritten = 0;
      for (let batch = 0; batch < 60; batch++) {
        const versions: WindowRow[] = [];
        const n = 1 + Math.floor(r() * 12);
        for (let i = 0; i < n; i++) {
          const key = keys[Math.floor(r() * keys.length)];
          versions.push(row({
            ...key,
            partition: r() < 0.8 ? 0 : 1,
            lastOffset: Math.floor(r() * 40),
            lastEventTime: (key.windowStart ?? T0) + Math.floor(r() * 50) * 1000,
            isFinal: r() < 0.12,
            close: Math.round(r() * 1e4) / 100,
            count: 1 + Math.floor(r() * 100),
            vwap: r() < 0.5 ? null : r(),
          }));
        }
        for (const v of versions) {
          const k = `${v.symbol}/${v.windowMs}/${v.windowStart}`;
          const cur = oracle.get(k);
          const next = guard(cur, v)!;
          if (next !== cur) expectedWritten++;
          oracle.set(k, next);
        }
        const sliceSize = 1 + Math.floor(r() * 5);
        // Half the time as an array sliced by the sink, half as the engine's slices.
        const windows = r() < 0.5 ? versions : (function* () {
          for (let i = 0; i < versions.length; i += sliceSize) {
            yield versions.slice(i, i + sliceSize);
          }
        })();
        const res = await writeBatch(pool, { topic, windows }, { sliceSize });
        assert.equal(res.rejected, 0);
        written += res.windowsWritten;
      }
      assert.deepEqual(await readRows(pool, topic), [...oracle.values()].sort(byKey));
      assert.equal(written, expectedWritten, "windowsWritten counts the rows that changed");
      assert.ok([...oracle.values()].some((v) => v.isFinal), "the sequence reached final rows");
    });
  },
});

Deno.test("sink: compareVersions is the total order (lastEventTime, partition, offset, isFinal)", () => {
  const a = row({ lastEventTime: 5, partition: 1, lastOffset: 3 });
  assert.ok(compareVersions(row({ lastEventTime: 6, partition: 0, lastOffset: 0 }), a) > 0);
  assert.ok(compareVersions(row({ lastEventTime: 5, partition: 2, lastOffset: 0 }), a) > 0);
  assert.ok(compareVersions(row({ lastEventTime: 5, partition: 1, lastOffset: 4 }), a) > 0);
  assert.ok(compareVersions({ ...a, isFinal: true }, a) > 0);
  assert.equal(compareVersions(a, { ...a }), 0);
});

// --- Keys -------------------------------------------------------------------------------------

Deno.test({
  name: "sink: two topics with the same symbols, and two window lengths, keep separate rows",
  ...pg,
  async fn() {
    await withTopic(async (pool, topicA) => {
      const topicB = `${topicA}-b`;
      try {
        const a = [row({ symbol: "AAPL", close: 1 }), row({ symbol: "MSFT", close: 2 })];
        // Same symbols and starts, other topic, HIGHER offsets: under v1 they overwrote topic A.
        const b = a.map((x) => ({ ...x, close: x.close + 100, lastOffset: 1_000 }));
        const m1 = [row({ symbol: "AAPL", windowMs: 60_000, close: 3, lastOffset: 2_000 })];
        assert.equal(
          (await writeBatch(pool, { topic: topicA, windows: [...a, ...m1] }))
            .windowsWritten,
          3,
        );
        assert.equal((await writeBatch(pool, { topic: topicB, windows: b })).windowsWritten, 2);
        assert.deepEqual(await readRows(pool, topicA), [m1[0], a[0], a[1]]);
        assert.deepEqual(await readRows(pool, topicB), b);
      } finally {
        await cleanup(pool, topicB);
      }
    });
  },
});

// --- Data errors ------------------------------------------------------------------------------

function progressOf(topic: string, runId: string): AggregatorProgress {
  return {
    runId,
    batchId: 1,
    topic,
    timestamp: new Date(T0).toISOString(),
    inputRows: 10,
    invalidRows: 0,
    rowsPerSecond: 1,
    watermarks: { "0": T0 },
    windowsUpdated: 1,
    windowsFinalized: 0,
    lateDropped: 1,
    openWindows: 1,
    offsets: { "0": 11 },
    lag: { "0": 0 },
    durationsMs: { fetchMs: 1, foldMs: 1, triggerMs: 1, sinkMs: null, checkpointMs: null },
    reason: "interval",
  };
}

function late(over: Partial<LateTick>): LateTick {
  return {
    symbol: "L",
    eventTime: T0 - 1,
    price: 10,
    partition: 0,
    offset: 1,
    watermark: T0,
    lateFor: [300_000],
    ...over,
  };
}

Deno.test({
  name: "sink: rows PostgreSQL refuses are dead-lettered exactly once and the rest commits",
  ...pg,
  async fn() {
    await withTopic(async (pool, topic) => {
      const prefix = `DE${crypto.randomUUID().slice(0, 6)}_`;
      const constraint = `tp_test_${prefix.toLowerCase()}check`;
      // A test-only CHECK: a refusal (23514) of rows PostgreSQL would otherwise accept.
      await pool.query(
        `ALTER TABLE price_windows ADD CONSTRAINT ${constraint}
           CHECK (NOT starts_with(symbol, '${prefix}BAD')) NOT VALID`,
      );
      try {
        const rows = Array.from(
          { length: 300 },
          (_, i) => row({ symbol: `${prefix}${i}`, lastOffset: i, partition: i % 3 }),
        );
        rows[3].symbol = `${prefix}A\u0000B`; // 22021: PostgreSQL text cannot hold NUL
        rows[150].symbol = `${prefix}BAD1`; // 23514
        rows[151].symbol = `${prefix}BAD2`; // 23514, next to the other
        rows[299].symbol = `${prefix}\ud800`; // lone surrogate: refused before sending
        rows[200].windowStart = -3e14; // 22008: timestamp out of range (7530 BC)
        const lates = [
          late({ symbol: `${prefix}L`, offset: 1, lateFor: [60_000, 300_000] }),
          late({ symbol: `${prefix}L\u0000`, offset: 2 }),
          late({ symbol: `${prefix}L`, offset: 3, price: Infinity, lateFor: [60_000] }),
        ];
        const runId = `run\u0000${prefix}`; // refused: 22021
        const bad = new Set([3, 150, 151, 200, 299]);
        const batch = {
          topic,
          windows: rows,
          late: lates,
          progress: progressOf(topic, runId),
        };
        const res = await writeBatch(pool, batch, { sliceSize: 64 });
        assert.equal(res.windowsWritten, rows.length - bad.size);
        assert.equal(res.lateInserted, 2);
        assert.equal(res.rejected, bad.size + 2);
        const stored = await readRows(pool, topic);
        assert.deepEqual(
          stored,
          rows.filter((_, i) => !bad.has(i)).sort(byKey),
          "every other row committed, exactly",
        );
        const { rows: lt } = await pool.query<{ kafka_offset: string; late_for: string }>(
          `SELECT kafka_offset, late_for::text AS late_for FROM late_ticks WHERE topic = $1
            ORDER BY kafka_offset`,
          [topic],
        );
        assert.deepEqual(lt, [
          { kafka_offset: "1", late_for: "{00:01:00,00:05:00}" },
          { kafka_offset: "3", late_for: "{00:01:00}" },
        ]);
        const rejectedRows = async () =>
          (await pool.query<
            {
              table_name: string;
              row_key: string;
              row_json: string;
              sqlstate: string | null;
              reason: string;
              kafka_partition: number | null;
              last_offset: string | null;
            }
          >(
            `SELECT table_name, row_key, row_json, sqlstate, reason, kafka_partition, last_offset
               FROM rejected_rows WHERE topic = $1 ORDER BY table_name, row_key`,
            [topic],
          )).rows;
        const first = await rejectedRows();
        const want = [
          ...[3, 150, 151, 200, 299].map((i) => ({
            table_name: "price_windows",
            row_key: JSON.stringify([rows[i].symbol, rows[i].windowMs, rows[i].windowStart]),
            sqlstate: i === 3 ? "22021" : i === 200 ? "22008" : i === 299 ? null : "23514",
            kafka_partition: rows[i].partition,
            last_offset: String(rows[i].lastOffset),
            row_json: JSON.stringify(rows[i]),
          })),
          {
            table_name: "late_ticks",
            row_key: "[0,2]",
            sqlstate: "22021",
            kafka_partition: 0,
            last_offset: "2",
            row_json: JSON.stringify(lates[1]),
          },
        ];
        assert.deepEqual(
          first.filter((x) => x.table_name !== "aggregator_progress").map((
            { reason: _, ...x },
          ) => x).sort((a, b) => a.row_key < b.row_key ? -1 : 1),
          want.sort((a, b) => a.row_key < b.row_key ? -1 : 1),
        );
        const prog = first.filter((x) => x.table_name === "aggregator_progress");
        assert.equal(prog.length, 1);
        assert.equal(prog[0].row_key, JSON.stringify([runId, 1]));
        assert.equal(prog[0].sqlstate, "22021");
        assert.equal(prog[0].kafka_partition, null);
        for (const x of first) assert.ok(x.reason.length > 0, x.row_key);
        assert.match(first.find((x) => x.sqlstate === "23514")!.reason, new RegExp(constraint));
        // A replay of the same trigger: nothing new, nothing duplicated.
        const again = await writeBatch(pool, batch, { sliceSize: 64 });
        assert.equal(again.windowsWritten, 0);
        assert.equal(again.lateInserted, 0);
        assert.equal(again.rejected, bad.size + 2, "refused again (reported)");
        assert.deepEqual(await rejectedRows(), first, "but recorded once");
        assert.deepEqual(await readRows(pool, topic), stored);
      } finally {
        await pool.query(`ALTER TABLE price_windows DROP CONSTRAINT IF EXISTS ${constraint}`);
      }
    });
  },
});

Deno.test({
  name:
    "sink: an error that is neither data nor availability (42xxx) throws SinkError, commits nothing",
  ...pg,
  async fn() {
    await withTopic(async (pool, topic) => {
      const renamed = `late_for_${crypto.randomUUID().slice(0, 6)}`;
      await pool.query(`ALTER TABLE late_ticks RENAME COLUMN late_for TO ${renamed}`);
      let err: unknown;
      try {
        await writeBatch(pool, { topic, windows: [row()], late: [late({})] }).catch((e) => err = e);
      } finally {
        await pool.query(`ALTER TABLE late_ticks RENAME COLUMN ${renamed} TO late_for`);
      }
      assert.ok(err instanceof SinkError, String(err));
      assert.equal(err.code, "42703");
      assert.match(err.message, /late_for/);
      assert.deepEqual(await readRows(pool, topic), [], "the window row was rolled back");
    });
  },
});

// --- Timeouts and availability ----------------------------------------------------------------

/** Installs a test-only trigger: rows whose symbol starts with `${prefix}SLOW` sleep `slowS`. */
async function withSlowRows(
  pool: Pool,
  prefix: string,
  options: { slowS: number },
  fn: () => Promise<void>,
): Promise<void> {
  const name = `tp_test_slow_${prefix.toLowerCase()}`;
  await pool.query(
    `CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN PERFORM pg_sleep(${options.slowS}); RETURN NEW; END $$`,
  );
  try {
    await pool.query(
      `CREATE TRIGGER ${name} BEFORE INSERT OR UPDATE ON price_windows FOR EACH ROW
       WHEN (starts_with(NEW.symbol, '${prefix}SLOW')) EXECUTE FUNCTION ${name}()`,
    );
    await fn();
  } finally {
    await pool.query(`DROP TRIGGER IF EXISTS ${name} ON price_windows`);
    await pool.query(`DROP FUNCTION IF EXISTS ${name}()`);
  }
}

Deno.test({
  name:
    "sink: a statement timeout splits the slice; a single row still timing out is unavailability",
  ...pg,
  async fn() {
    await withTopic(async (pool, topic) => {
      const prefix = `TO${crypto.randomUUID().slice(0, 6)}_`;
      await withSlowRows(pool, prefix, { slowS: 0.3 }, async () => {
        // 4 slow rows (1.2 s together) in a slice of 32 with a 1 s timeout: the whole slice times
        // out; each half holds 2 (0.6 s) and commits.
        const rows = Array.from({ length: 32 }, (_, i) =>
          row({
            symbol: [0, 1, 16, 17].includes(i) ? `${prefix}SLOW${i}` : `${prefix}${i}`,
            lastOffset: i,
          }));
        let err: unknown;
        await writeBatch(pool, { topic, windows: rows }, {
          statementTimeoutMs: 1000,
          maxTimeouts: 0,
        }).catch((e) => err = e);
        assert.ok(err instanceof SinkUnavailableError, `without splits it times out: ${err}`);
        assert.deepEqual(await readRows(pool, topic), []);
        const res = await writeBatch(pool, { topic, windows: rows }, { statementTimeoutMs: 1000 });
        assert.equal(res.windowsWritten, 32);
        assert.equal(res.rejected, 0);
        assert.equal((await readRows(pool, topic)).length, 32);

        // One row that takes longer than the timeout alone: not a data error, never dead-lettered.
        const stuck = [0, 1, 2, 3].map((i) =>
          row({ symbol: i === 2 ? `${prefix}SLOWX` : `${prefix}N${i}`, lastOffset: i })
        );
        err = undefined;
        await writeBatch(pool, { topic, windows: stuck }, { statementTimeoutMs: 200 })
          .catch((e) => err = e);
        assert.ok(err instanceof SinkUnavailableError, String(err));
        assert.match(err.message, /single price_windows row/);
        assert.match(err.message, /SLOWX/);
        assert.equal((await readRows(pool, topic)).length, 32, "nothing of it committed");
        const { rows: rj } = await pool.query("SELECT 1 FROM rejected_rows WHERE topic = $1", [
          topic,
        ]);
        assert.equal(rj.length, 0);
      });
    });
  },
});

Deno.test({
  name: "sink: a closed port and a backend terminated mid-transaction are SinkUnavailableError",
  ...pg,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const closed = createPool(`postgres://postgres:postgres@127.0.0.1:${port}/tickpipe`, {
      connectTimeoutMs: 2000,
    });
    try {
      const err = await writeBatch(closed, { topic: "x", windows: [row()] }).catch((e) => e);
      assert.ok(err instanceof SinkUnavailableError, String(err));
      assert.equal(err.code, "ECONNREFUSED");
    } finally {
      await closed.end();
    }

    await withTopic(async (admin, topic) => {
      const prefix = `TB${crypto.randomUUID().slice(0, 6)}_`;
      const app = `tickpipe-test-${prefix}`;
      const pool = createPool(config.databaseUrl, { applicationName: app });
      try {
        await withSlowRows(admin, prefix, { slowS: 30 }, async () => {
          const rows = [row({ symbol: `${prefix}A` }), row({ symbol: `${prefix}SLOW` })];
          const pending = writeBatch(pool, { topic, windows: rows }).catch((e) => e);
          let killed = false;
          for (let i = 0; i < 100 && !killed; i++) {
            await new Promise((r) => setTimeout(r, 50));
            const { rows: k } = await admin.query<{ t: boolean }>(
              `SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity
                WHERE application_name = $1 AND state = 'active' AND query LIKE '%price_windows%'`,
              [app],
            );
            killed = k.some((x) => x.t);
          }
          assert.ok(killed, "found the sink's backend");
          const err = await pending;
          assert.ok(err instanceof SinkUnavailableError, String(err));
          assert.equal(classifyDbError(err.cause), "availability");
          assert.deepEqual(await readRows(admin, topic), [], "nothing committed");
        });
        // The pool recovers: the next batch goes through on a fresh connection.
        const ok = await writeBatch(pool, { topic, windows: [row({ symbol: `${prefix}B` })] });
        assert.equal(ok.windowsWritten, 1);
      } finally {
        await pool.end();
      }
    });
  },
});

Deno.test("sink: classifyDbError names what an error is", () => {
  const cases: [unknown, string][] = [
    [{ code: "57014" }, "timeout"],
    [{ code: "08006" }, "availability"],
    [{ code: "57P01" }, "availability"],
    [{ code: "57P03" }, "availability"],
    [{ code: "53300" }, "availability"],
    [{ code: "40001" }, "availability"],
    [{ code: "40P01" }, "availability"],
    [{ code: "55P03" }, "availability"],
    [{ code: "21000" }, "data"],
    [{ code: "22021" }, "data"],
    [{ code: "22P02" }, "data"],
    [{ code: "23505" }, "data"],
    [{ code: "23514" }, "data"],
    [{ code: "54000" }, "data"],
    [{ code: "42P01" }, "other"],
    [{ code: "42703" }, "other"],
    [{ code: "25P02" }, "other"],
    [{ code: "XX000" }, "other"],
    [{ code: "ECONNREFUSED" }, "availability"],
    [{ code: "ECONNRESET" }, "availability"],
    [new Error("Connection terminated unexpectedly"), "availability"],
    [new Error("timeout exceeded when trying to connect"), "availability"],
    [new Error('Requires net access to "127.0.0.1:5432"'), "other"],
    [new TypeError("x is undefined"), "other"],
    [null, "other"],
  ];
  for (const [e, want] of cases) assert.equal(classifyDbError(e), want, JSON.stringify(e));
});

Deno.test({
  name: "sink: bad options are refused with the value named",
  ...pg,
  async fn() {
    const pool = testPool();
    try {
      await assert.rejects(
        writeBatch(pool, { topic: "x", windows: [] }, { sliceSize: 0 }),
        /sliceSize must be an integer >= 1, got 0/,
      );
    } finally {
      await pool.end();
    }
  },
});

Deno.test({
  name: "sink: the deprecated v1 call shape (topic first, v1 rows) still writes",
  ...pg,
  async fn() {
    await withTopic(async (pool, topic) => {
      const { windowMs: _w, volume: _v, pvSum: _p, vwap: _x, ...v1 } = row({ windowMs: 60_000 });
      const { lateFor: _l, ...v1Late } = late({});
      const res = await writeBatch(pool, topic, { windows: [v1], late: [v1Late], progress: null });
      assert.equal(res.windowsWritten, 1);
      assert.equal(res.lateInserted, 1);
      assert.deepEqual(await readRows(pool, topic), [
        { ...v1, windowMs: 60_000, volume: 0, pvSum: 0, vwap: null },
      ]);
      const { rows } = await pool.query("SELECT late_for FROM late_ticks WHERE topic = $1", [
        topic,
      ]);
      assert.deepEqual(rows, [{ late_for: null }]);
    });
  },
});
