/**
 * A kafkajs partitioner that puts every record where kafkajs' DefaultPartitioner (the Java
 * client's murmur2 rule) puts it, at a fraction of the cost: murmur2 on 32-bit integers
 * (`Math.imul`) instead of kafkajs' BigInt-backed `Long`, the hash of each key cached, and the
 * partition list filtered only for records without a key.
 *
 * Why: a CPU profile of ingest showed kafkajs' partitioner at about 4 µs and 1 kB of garbage
 * per record (murmur2 through `Long`, plus a `partitionMetadata.filter` per message), more than
 * the whole WebSocket frame decode (see bench/README.md, "Ingest: where the time and memory go").
 * @module
 */

/** The slice of kafkajs' partition metadata a partitioner reads. */
export interface PartitionInfo {
  /** Partition number. */
  partitionId: number;
  /** Leader broker id; negative when the partition has no leader. */
  leader: number;
}

/** What kafkajs passes to a partitioner for each message. */
export interface PartitionerArgs {
  /** Topic of the message. */
  topic: string;
  /** The topic's partitions. */
  partitionMetadata: PartitionInfo[];
  /** The message: its partition (if set) and key are read. */
  message: { partition?: number | null; key?: unknown };
}

/** A partitioner factory, as kafkajs' `createPartitioner` option expects. */
export type PartitionerFactory = () => (args: PartitionerArgs) => number;

/** Options of {@linkcode createCachedPartitioner}. */
export interface CachedPartitionerOptions {
  /** Keys whose hash is cached; the cache is cleared when it would exceed this (default 100_000). */
  maxCachedKeys?: number;
  /** Source of the random start of the per-topic round robin for null keys (default crypto). */
  random?: () => number;
}

const M = 0x5bd1e995;
const SEED = 0x9747b28c;
const encoder = new TextEncoder();

/**
 * Kafka's murmur2 of `data` as a signed 32-bit integer: the same value as the Java client's
 * `Utils.murmur2` and kafkajs' `partitioners/default/murmur2.js`.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = (SEED ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2;
    let k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  switch (length & 3) {
    case 3:
      h ^= data[tail + 2] << 16;
    // falls through
    case 2:
      h ^= data[tail + 1] << 8;
    // falls through
    case 1:
      h ^= data[tail];
      h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** `murmur2` of a string key's UTF-8 bytes (a lone surrogate is U+FFFD, as Buffer.from writes). */
export function murmur2String(key: string): number {
  return murmur2(encoder.encode(key));
}

function randomUint32(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** Keys whose partition the cached partitioner remembers, by default. */
export const DEFAULT_MAX_CACHED_KEYS = 100_000;

/**
 * A kafkajs `createPartitioner` equivalent to kafkajs' DefaultPartitioner: a message's own
 * partition if set; else, with a key, `(murmur2(key) & 0x7fffffff) % partitions`; else round
 * robin over the partitions that have a leader (from a random start per topic).
 */
export function createCachedPartitioner(
  options: CachedPartitionerOptions = {},
): PartitionerFactory {
  const maxKeys = options.maxCachedKeys ?? DEFAULT_MAX_CACHED_KEYS;
  const random = options.random ?? randomUint32;
  return () => {
    const hashes = new Map<string, number>();
    const counters = new Map<string, number>();
    return ({ topic, partitionMetadata, message }) => {
      if (message.partition !== null && message.partition !== undefined) return message.partition;
      const key = message.key;
      if (key !== null && key !== undefined) {
        let h: number;
        if (typeof key === "string") {
          const cached = hashes.get(key);
          if (cached === undefined) {
            h = murmur2String(key) & 0x7fffffff;
            if (hashes.size >= maxKeys) hashes.clear();
            hashes.set(key, h);
          } else h = cached;
        } else if (key instanceof Uint8Array) h = murmur2(key) & 0x7fffffff;
        else h = murmur2String(String(key)) & 0x7fffffff;
        return h % partitionMetadata.length;
      }
      let counter = counters.get(topic);
      if (counter === undefined) counter = random() >>> 0;
      counter = (counter + 1) | 0;
      counters.set(topic, counter);
      const available = partitionMetadata.filter((p) => p.leader >= 0);
      if (available.length > 0) {
        return available[(counter & 0x7fffffff) % available.length].partitionId;
      }
      return (counter & 0x7fffffff) % partitionMetadata.length;
    };
  };
}
