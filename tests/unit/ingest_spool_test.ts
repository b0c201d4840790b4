// The disk spool on its own over a temp dir: FIFO order across segments and restarts, the byte
// bound (refuses the newest), crash safety (a torn last line is ignored) and cleanup.
import assert from "node:assert/strict";
import { openSpool, parseSegment } from "../../ingest/spool.ts";

async function tempDir(): Promise<string> {
  await Deno.mkdir(".data/test", { recursive: true });
  return await Deno.makeTempDir({ dir: ".data/test", prefix: "spool-" });
}

async function segmentFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".jsonl")) out.push(e.name);
  return out.sort();
}

Deno.test("spool: FIFO across segments, peek does not consume, ack deletes finished segments", async () => {
  const dir = await tempDir();
  try {
    const spool = await openSpool<{ i: number }>(dir, { segmentBytes: 100 });
    for (let b = 0; b < 10; b++) {
      const r = await spool.append(Array.from({ length: 7 }, (_, k) => ({ i: b * 7 + k })));
      assert.deepEqual(r, { written: 7, refused: 0 });
    }
    assert.equal(spool.count(), 70);
    assert.ok((await segmentFiles(dir)).length > 3, "rolled over into several segments");
    assert.deepEqual((await spool.peek(3)).map((x) => x.i), [0, 1, 2]);
    assert.deepEqual((await spool.peek(3)).map((x) => x.i), [0, 1, 2], "peek is idempotent");
    const seen: number[] = [];
    while (spool.count() > 0) {
      const batch = await spool.peek(9);
      seen.push(...batch.map((x) => x.i));
      await spool.ack(batch.length);
    }
    assert.deepEqual(seen, Array.from({ length: 70 }, (_, i) => i));
    assert.deepEqual(await segmentFiles(dir), [], "all segments deleted once delivered");
    assert.equal(spool.bytes(), 0);
    await spool.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spool: a restart resumes after the acknowledged records, in order", async () => {
  const dir = await tempDir();
  try {
    const a = await openSpool<number>(dir, { segmentBytes: 50 });
    await a.append(Array.from({ length: 40 }, (_, i) => i));
    await a.ack(13);
    await a.close();
    const b = await openSpool<number>(dir, { segmentBytes: 50 });
    assert.equal(b.count(), 27);
    await b.append([40, 41]);
    const all: number[] = [];
    while (b.count() > 0) {
      const batch = await b.peek(5);
      all.push(...batch);
      await b.ack(batch.length);
    }
    assert.deepEqual(all, Array.from({ length: 29 }, (_, i) => 13 + i));
    await b.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spool: bounded by maxBytes, refusing the newest records", async () => {
  const dir = await tempDir();
  try {
    const spool = await openSpool<string>(dir, { maxBytes: 100 });
    const r = await spool.append(Array.from({ length: 20 }, () => "xxxxxxx")); // 10 bytes a line
    assert.deepEqual(r, { written: 10, refused: 10 });
    assert.equal(spool.bytes(), 100);
    assert.deepEqual(await spool.append(["y"]), { written: 0, refused: 1 });
    await spool.ack(5);
    assert.equal(spool.count(), 5);
    await spool.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spool: a torn last line (crash mid-write) is ignored and new appends stay readable", async () => {
  const dir = await tempDir();
  try {
    const a = await openSpool<{ n: number }>(dir);
    await a.append([{ n: 1 }, { n: 2 }]);
    await a.close();
    const [seg] = await segmentFiles(dir);
    await Deno.writeTextFile(`${dir}/${seg}`, '{"n":3', { append: true }); // torn write
    const b = await openSpool<{ n: number }>(dir);
    assert.equal(b.count(), 2);
    assert.equal(b.skipped(), 1);
    await b.append([{ n: 4 }]);
    const got = await b.peek(10);
    assert.deepEqual(got.map((x) => x.n), [1, 2, 4]);
    await b.close();
    assert.deepEqual(parseSegment('{"a":1}\nnot json\n{"a":2}\n{"a"').records, [{ a: 1 }, {
      a: 2,
    }]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
