// The state codec: exact round trips (every float64 value, any UTF-16 string), chunk limits,
// corrupt input, the sort order, and the k-way merge against a Map oracle.
import assert from "node:assert/strict";
import {
  ChunkEncoder,
  compareRecords,
  decodeChunk,
  decodeChunks,
  encodeRecords,
  MAX_CHUNK_BYTES,
  MergeCursor,
  mergeSorted,
  sortDelta,
  sortRecords,
  STATE_CODEC_VERSION,
  StateCodecError,
  StateOrderError,
  type StateRecord,
} from "../../aggregate/state_codec.ts";
import {
  applyRecords,
  HOSTILE_STRINGS,
  randomRecord,
  randomRecords,
  randomString,
  type RecordSpace,
  shuffled,
  sortedState,
} from "../_helpers/state_records.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

function space(rnd: () => number, hostile = true): RecordSpace {
  const symbols = new Set<string>(hostile ? HOSTILE_STRINGS : []);
  while (symbols.size < (hostile ? 60 : 40)) {
    symbols.add(hostile ? randomString(rnd) : `S${Math.floor(rnd() * 1e6)}`);
  }
  return { partitions: 4, symbols: [...symbols], windows: [60_000, 300_000, 3_600_000], starts: 6 };
}

function roundTrip(records: StateRecord[], chunkBytes: number): Uint8Array[] {
  const chunks = [...encodeRecords(records, { chunkBytes })];
  for (const c of chunks) {
    assert.ok(c.byteLength <= chunkBytes, `chunk of ${c.byteLength} bytes > ${chunkBytes}`);
    assert.equal(c[0], STATE_CODEC_VERSION);
  }
  // deepStrictEqual compares numbers with Object.is: -0 !== 0, NaN === NaN.
  assert.deepEqual([...decodeChunks(chunks)], records);
  return chunks;
}

Deno.test("state codec: randomized round trip of hostile records is exact", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const rnd = prng(seed);
    const records = sortDelta(randomRecords(rnd, space(rnd), 50 + Math.floor(rnd() * 800)));
    const chunkBytes = seed % 4 === 0 ? MAX_CHUNK_BYTES : 20_000 + Math.floor(rnd() * 20_000);
    roundTrip(records, chunkBytes);
  }
});

Deno.test("state codec: every float64 bit pattern class and integer size survives", () => {
  const rnd = prng(7);
  const values: number[] = [0, -0, NaN, Infinity, -Infinity, Number.MIN_VALUE, -Number.MAX_VALUE];
  for (let bits = 0; bits <= 60; bits++) {
    const v = 2 ** bits;
    values.push(v, v - 1, v + 1, -v, -(v - 1), v + 0.5, v * Math.PI);
  }
  const buf = new Uint32Array(2);
  const f = new Float64Array(buf.buffer);
  for (let i = 0; i < 2000; i++) {
    buf[0] = Math.floor(rnd() * 2 ** 32);
    buf[1] = Math.floor(rnd() * 2 ** 32);
    values.push(f[0]);
  }
  const records: StateRecord[] = values.map((v, i) => ({
    kind: "baseline",
    partition: 0,
    symbol: `s${String(i).padStart(6, "0")}`,
    dayVolume: v,
  }));
  const back = [...decodeChunks(roundTrip(records, MAX_CHUNK_BYTES))];
  for (const [i, r] of back.entries()) {
    const got = (r as { dayVolume: number }).dayVolume;
    assert.ok(Object.is(got, values[i]), `value #${i}: ${values[i]} came back as ${got}`);
  }
});

Deno.test("state codec: any UTF-16 string round-trips (lone surrogates are not replaced)", () => {
  const rnd = prng(11);
  const strings = [...HOSTILE_STRINGS, "x".repeat(18_000)];
  for (let i = 0; i < 3000; i++) strings.push(randomString(rnd, 40));
  // Every code unit, alone and after a high surrogate.
  for (let c = 0; c < 0x10000; c += 97) {
    strings.push(String.fromCharCode(c), "\ud83d" + String.fromCharCode(c));
  }
  const records = sortDelta(strings.map((symbol) => ({
    kind: "baseline" as const,
    partition: 1,
    symbol,
    dayVolume: symbol.length,
  })));
  const back = [...decodeChunks(roundTrip(records, MAX_CHUNK_BYTES))] as { symbol: string }[];
  const want = records as { symbol: string }[];
  for (let i = 0; i < back.length; i++) {
    assert.equal(back[i].symbol.length, want[i].symbol.length);
    assert.ok(back[i].symbol === want[i].symbol, `string #${i} changed`);
  }
  // TextEncoder would have merged these two: the codec keeps them apart.
  const two = roundTrip([
    { kind: "baseline", partition: 0, symbol: "\ud800", dayVolume: 1 },
    { kind: "baseline", partition: 0, symbol: "\ud801", dayVolume: 2 },
  ], 1024);
  assert.equal(decodeChunk(two[0]).length, 2);
});

Deno.test("state codec: chunk limit, too-large record, order and type checks", () => {
  // Many records over several chunks, all <= the limit, each decoding on its own.
  const rnd = prng(3);
  const records = sortDelta(randomRecords(rnd, space(rnd, false), 5000));
  const chunks = roundTrip(records, 1024);
  assert.ok(chunks.length > 100);
  let n = 0;
  for (const c of chunks) n += decodeChunk(c).length;
  assert.equal(n, records.length);
  // A record that cannot fit in an empty chunk.
  const huge: StateRecord = {
    kind: "baseline",
    partition: 0,
    symbol: "\u0800".repeat(21_000),
    dayVolume: 1,
  };
  assert.throws(
    () => [...encodeRecords([huge])],
    (e) => e instanceof StateCodecError && /over the chunk size/.test(e.message),
  );
  // Unsorted and duplicate keys.
  const a: StateRecord = { kind: "baseline", partition: 0, symbol: "B", dayVolume: 1 };
  const b: StateRecord = { kind: "baseline", partition: 0, symbol: "A", dayVolume: 1 };
  assert.throws(() => [...encodeRecords([a, b])], StateOrderError);
  assert.throws(() => [...encodeRecords([a, { ...a, dayVolume: 2 }])], StateOrderError);
  // A window and a window-deleted of the same window share a key.
  const w = randomRecord(rnd, space(rnd, false), "window") as Extract<
    StateRecord,
    { kind: "window" }
  >;
  const wd: StateRecord = {
    kind: "window-deleted",
    partition: w.partition,
    windowMs: w.windowMs,
    symbol: w.symbol,
    start: w.start,
  };
  assert.equal(compareRecords(w, wd), 0);
  // NaN in a key field and non-numbers are refused, naming the field.
  assert.throws(() => [...encodeRecords([{ ...w, start: NaN }])], /key field start = NaN/);
  assert.throws(
    () => [...encodeRecords([{ ...w, count: "3" as unknown as number }])],
    /field count = "3": expected a number/,
  );
  assert.throws(() => new ChunkEncoder({ chunkBytes: 70_000 }), /Invalid chunkBytes 70000/);
});

Deno.test("state codec: a corrupt or truncated chunk throws or yields a prefix, never wrong records", () => {
  const rnd = prng(5);
  const records = sortDelta(randomRecords(rnd, space(rnd), 300));
  const [chunk] = [...encodeRecords(records)];
  assert.throws(() => decodeChunk(new Uint8Array([9, 1, 2])), /Unsupported state chunk version 9/);
  assert.throws(() => decodeChunk(new Uint8Array(0)), StateCodecError);
  for (let i = 0; i < 400; i++) {
    const cut = 1 + Math.floor(rnd() * (chunk.byteLength - 1));
    let got: StateRecord[];
    try {
      got = decodeChunk(chunk.subarray(0, cut));
    } catch (e) {
      assert.ok(e instanceof StateCodecError, `cut at ${cut}: ${e}`);
      continue;
    }
    assert.deepEqual(got, records.slice(0, got.length), `cut at ${cut}`);
  }
});

Deno.test("state codec: merge of base + deltas equals a Map oracle (randomized, with deletes)", () => {
  for (let seed = 100; seed < 160; seed++) {
    const rnd = prng(seed);
    const sp = space(rnd, seed % 2 === 0);
    const baseRecords = sortedState(applyRecords(new Map(), randomRecords(rnd, sp, 400)));
    const oracle = applyRecords(new Map(), baseRecords);
    const deltas: StateRecord[][] = [];
    const k = Math.floor(rnd() * 12);
    for (let d = 0; d < k; d++) {
      // Deletes of existing windows as well as of unknown ones.
      const existing = [...oracle.values()].filter((r) => r.kind === "window");
      const recs = randomRecords(rnd, sp, Math.floor(rnd() * 120), { deletes: true });
      for (let i = 0; i < 10 && existing.length > 0; i++) {
        const w = existing[Math.floor(rnd() * existing.length)] as {
          partition: number;
          windowMs: number;
          symbol: string;
          start: number;
        };
        recs.push({
          kind: "window-deleted",
          partition: w.partition,
          windowMs: w.windowMs,
          symbol: w.symbol,
          start: w.start,
        });
      }
      const delta = sortDelta(recs);
      applyRecords(oracle, recs);
      deltas.push(delta);
    }
    const expected = sortedState(oracle);
    // Through the encoder (segments as chunk streams) and the plain iterables.
    const encoded = [baseRecords, ...deltas].map((
      s,
    ) => [...encodeRecords(s, { chunkBytes: 8192 })]);
    assert.deepEqual(
      [...mergeSorted(encoded.map((c) => decodeChunks(c)))],
      expected,
      `seed ${seed}`,
    );
    assert.deepEqual([...mergeSorted([baseRecords, ...deltas])], expected);
    // The pull-based cursor fed in random small batches.
    const cursor = new MergeCursor(deltas.length + 1);
    const srcs = [baseRecords, ...deltas].map((s) => [...s]);
    const out: StateRecord[] = [];
    for (;;) {
      const r = cursor.next();
      if (r === null) break;
      if (typeof r === "number") {
        const batch = srcs[r].splice(0, 1 + Math.floor(rnd() * 5));
        cursor.feed(r, batch.length > 0 ? batch : null);
      } else out.push(r);
    }
    assert.deepEqual(out, expected);
    assert.ok(out.every((r) => r.kind !== "window-deleted"));
  }
});

Deno.test("state codec: merge refuses an unsorted segment", () => {
  const a: StateRecord = { kind: "baseline", partition: 0, symbol: "B", dayVolume: 1 };
  const b: StateRecord = { kind: "baseline", partition: 0, symbol: "A", dayVolume: 1 };
  assert.throws(() => [...mergeSorted([[a, b]])], /Segment 0 of the merge is not sorted/);
});

Deno.test("state codec: sortRecords (compact arena) equals a plain sort; sortDelta keeps the latest", () => {
  for (let seed = 1; seed <= 10; seed++) {
    const rnd = prng(seed * 31);
    const unique = sortedState(applyRecords(new Map(), randomRecords(rnd, space(rnd), 2000)));
    const input = shuffled(rnd, unique);
    assert.deepEqual([...sortRecords(input)], unique);
  }
  const rnd = prng(9);
  const recs = randomRecords(rnd, space(rnd, false), 3000, { deletes: true });
  const byLatest = new Map<string, StateRecord>();
  for (const r of recs) {
    byLatest.set(
      JSON.stringify([
        r.partition,
        r.kind === "partition" ? 0 : r.kind === "baseline" ? 1 : 2,
        (r as { windowMs?: number }).windowMs,
        (r as { symbol?: string }).symbol,
        (r as { start?: number }).start,
      ]),
      r,
    );
  }
  assert.deepEqual(sortDelta(recs), [...byLatest.values()].sort(compareRecords));
});
