// ingest's cached partitioner against its oracle, kafkajs' own DefaultPartitioner: the same
// partition for every key (random ASCII, multibyte and lone-surrogate keys, every partition
// count, with the hash cache kept or evicted), the message's own partition when it has one, and
// a round robin over the partitions that have a leader for records without a key.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Partitioners } from "kafkajs";
import {
  createCachedPartitioner,
  murmur2,
  murmur2String,
  type PartitionInfo,
} from "../../ingest/partitioner.ts";
import { mulberry32 as prng } from "../../common/prng.ts";

const partitions = (n: number, leaderless: number[] = []): PartitionInfo[] =>
  Array.from(
    { length: n },
    (_, i) => ({ partitionId: i, leader: leaderless.includes(i) ? -1 : 1 }),
  );

/** A random key: mostly ASCII symbols, sometimes any UTF-16 unit (lone surrogates included). */
function randomKey(rnd: () => number): string {
  const len = Math.floor(rnd() * 40);
  let s = "";
  for (let i = 0; i < len; i++) {
    s += String.fromCharCode(
      rnd() < 0.8 ? 32 + Math.floor(rnd() * 95) : Math.floor(rnd() * 0x10000),
    );
  }
  return s;
}

Deno.test("partitioner: the same partition as kafkajs' DefaultPartitioner for every key (randomized)", () => {
  const rnd = prng(13);
  const oracle = Partitioners.DefaultPartitioner();
  const ours = createCachedPartitioner()();
  const tiny = createCachedPartitioner({ maxCachedKeys: 3 })(); // evicts all the time
  const keys = Array.from({ length: 3000 }, () => randomKey(rnd));
  keys.push("", "AAPL", "BTC-USD", "日本", "\ud800", "\udc00x", "😀");
  const seen = new Set<number>();
  for (const n of [1, 2, 3, 7, 12, 100]) {
    const partitionMetadata = partitions(n);
    for (let round = 0; round < 2; round++) { // the second round hits the cache
      for (const key of keys) {
        const args = { topic: "t", partitionMetadata, message: { key } };
        const want = oracle(args as Parameters<typeof oracle>[0]);
        assert.equal(ours(args), want, `key ${JSON.stringify(key)}, ${n} partitions`);
        assert.equal(tiny(args), want, `key ${JSON.stringify(key)} after evictions`);
        if (n === 12) seen.add(want);
      }
    }
  }
  assert.equal(seen.size, 12, "keys spread over every partition");
});

Deno.test("partitioner: murmur2 equals kafkajs' on raw bytes too; Uint8Array keys are hashed as is", () => {
  const rnd = prng(5);
  const oracle = Partitioners.DefaultPartitioner();
  const ours = createCachedPartitioner()();
  for (let i = 0; i < 2000; i++) {
    const bytes = new Uint8Array(Math.floor(rnd() * 33)).map(() => Math.floor(rnd() * 256));
    const partitionMetadata = partitions(1 + Math.floor(rnd() * 20));
    // kafkajs takes a Buffer key as bytes; ours takes any Uint8Array the same way.
    const want = oracle(
      {
        topic: "t",
        partitionMetadata,
        message: { key: Buffer.from(bytes), value: null },
      } as Parameters<typeof oracle>[0],
    );
    assert.equal(ours({ topic: "t", partitionMetadata, message: { key: bytes } }), want);
  }
  assert.equal(murmur2String("AAPL"), murmur2(new TextEncoder().encode("AAPL")));
  // A known value of the Java client's Utils.murmur2 (via kafkajs) as a fixed anchor.
  assert.equal(murmur2String("AAPL"), 1691292177);
});

Deno.test("partitioner: a message's own partition wins; keyless records go round robin over partitions with a leader", () => {
  const ours = createCachedPartitioner({ random: () => 0 })();
  const partitionMetadata = partitions(4, [2]);
  assert.equal(ours({ topic: "t", partitionMetadata, message: { key: "AAPL", partition: 3 } }), 3);
  const got = Array.from(
    { length: 9 },
    () => ours({ topic: "t", partitionMetadata, message: { key: null } }),
  );
  assert.deepEqual(got, [1, 3, 0, 1, 3, 0, 1, 3, 0], "cycles over 0, 1, 3 (2 has no leader)");
  // Each topic has its own counter; with no leader anywhere, all partitions take turns.
  const none = partitions(3, [0, 1, 2]);
  const other = Array.from(
    { length: 4 },
    () => ours({ topic: "u", partitionMetadata: none, message: { key: undefined } }),
  );
  assert.deepEqual(other, [1, 2, 0, 1]);
});
