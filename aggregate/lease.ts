/**
 * The aggregator's lease in Deno KV: one live aggregator per topic. Taken atomically
 * (`kv.atomic().check(...)`), renewed while running, released on exit. The clock is passed in.
 *
 * A lease is live while its `expiresAt` is in the future (`isLeaseLive`, the only test anyone
 * makes); an expired one stays stored until it is taken over or released. It is deliberately
 * written without KV's `expireIn`: Deno's expiry collector, which runs in every process that has
 * the KV open (the sensor, status, a new aggregator: at open, then about once a minute), panics
 * and kills that process when its delete fails, e.g. on a full disk ("KV collect expired failed:
 * database or disk is full"). With no expiring key it never writes.
 * @module
 */

import { AGGREGATOR_DEFAULTS } from "./defaults.ts";

import { isLeaseLive, KV_PREFIX, leaseKey, type LeaseRecord } from "./kv_layout.ts";

// The layout (prefix, key, value type, liveness rule) lives in kv_layout.ts; re-exported here
// for the existing importers.
export { isLeaseLive, KV_PREFIX, leaseKey, type LeaseRecord };

/** Default lease time-to-live in ms. */
export const DEFAULT_LEASE_TTL_MS = AGGREGATOR_DEFAULTS.leaseTtlMs;

/** A lease as read back, with the KV versionstamp of the entry. */
export interface HeldLease {
  /** The stored value. */
  lease: LeaseRecord;
  /** KV versionstamp of the entry (changes on every renewal). */
  versionstamp: string;
}

/** Who is asking for the lease, and when. */
export interface LeaseRequest {
  /** Holder id (UUID). */
  holder: string;
  /** Current time, epoch ms. */
  now: number;
  /** Process id (default Deno.pid). */
  pid?: number;
  /** Host name (default "unknown"). */
  hostname?: string;
  /** The requester holds the host-local process lock (recorded in the lease). */
  processLocked?: boolean;
  /** Time-to-live in ms (default 30 000). */
  ttlMs?: number;
  /**
   * Says a live lease's holder is known to be dead (e.g. it ran on this host and no longer
   * holds the host-local process lock), so the lease can be taken over before it expires.
   */
  holderDead?: (lease: LeaseRecord) => boolean;
}

/** Raised when another holder has a live lease; the aggregator exits with code 3. */
export class LeaseHeldError extends Error {
  /** The live lease. */
  readonly lease: LeaseRecord;
  /** Creates the error naming the holder and its expiry. */
  constructor(topic: string, lease: LeaseRecord) {
    super(
      `Topic "${topic}" is leased by ${lease.holder} (pid ${lease.pid} on ${lease.hostname}) ` +
        `until ${new Date(lease.expiresAt).toISOString()}: another aggregator is running`,
    );
    this.name = "LeaseHeldError";
    this.lease = lease;
  }
}

/** Raised when renewing a lease this holder no longer owns (expired and taken, or deleted). */
export class LeaseLostError extends Error {
  /** Creates the error naming the holder. */
  constructor(topic: string, holder: string, current: LeaseRecord | null) {
    super(
      `Lease on topic "${topic}" was lost by ${holder}: ` +
        (current ? `now held by ${current.holder}` : "the lease entry is gone"),
    );
    this.name = "LeaseLostError";
  }
}

/** Reads the lease of `topic` (live or expired), or null when absent. */
export async function readLease(kv: Deno.Kv, topic: string): Promise<HeldLease | null> {
  const e = await kv.get<LeaseRecord>(leaseKey(topic));
  if (e.value === null || e.versionstamp === null) return null;
  return { lease: e.value, versionstamp: e.versionstamp };
}

/**
 * Takes the lease of `topic` for `req.holder` if it is absent, expired or already ours; throws
 * LeaseHeldError naming the live holder otherwise. Atomic: of two racers exactly one wins.
 */
export async function acquireLease(
  kv: Deno.Kv,
  topic: string,
  req: LeaseRequest,
): Promise<HeldLease> {
  const ttl = req.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  const key = leaseKey(topic);
  for (let attempt = 0; attempt < 5; attempt++) {
    const cur = await kv.get<LeaseRecord>(key);
    if (
      cur.value && isLeaseLive(cur.value, req.now) && cur.value.holder !== req.holder &&
      !(req.holderDead?.(cur.value) ?? false)
    ) {
      throw new LeaseHeldError(topic, cur.value);
    }
    const lease: LeaseRecord = {
      holder: req.holder,
      pid: req.pid ?? Deno.pid,
      hostname: req.hostname ?? "unknown",
      acquiredAt: cur.value?.holder === req.holder ? cur.value.acquiredAt : req.now,
      expiresAt: req.now + ttl,
      ...(req.processLocked ? { processLocked: true } : {}),
    };
    const res = await kv.atomic().check(cur).set(key, lease).commit();
    if (res.ok) return { lease, versionstamp: res.versionstamp };
    // Lost a race: re-read; the winner's lease is live, so the next round throws.
  }
  const cur = await kv.get<LeaseRecord>(key);
  if (cur.value) throw new LeaseHeldError(topic, cur.value);
  throw new Error(`Could not acquire the lease of topic "${topic}": too much contention`);
}

/**
 * Extends our lease of `topic` to `req.now + ttl`. Throws LeaseLostError when the stored lease
 * is not ours any more. Returns the new versionstamp.
 */
export async function renewLease(
  kv: Deno.Kv,
  topic: string,
  req: LeaseRequest,
): Promise<HeldLease> {
  const ttl = req.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  const key = leaseKey(topic);
  for (let attempt = 0; attempt < 5; attempt++) {
    const cur = await kv.get<LeaseRecord>(key);
    if (!cur.value || cur.value.holder !== req.holder) {
      throw new LeaseLostError(topic, req.holder, cur.value);
    }
    const lease: LeaseRecord = { ...cur.value, expiresAt: req.now + ttl };
    const res = await kv.atomic().check(cur).set(key, lease).commit();
    if (res.ok) return { lease, versionstamp: res.versionstamp };
  }
  throw new LeaseLostError(topic, req.holder, (await kv.get<LeaseRecord>(key)).value);
}

/** Deletes the lease of `topic` if `holder` owns it; returns true if it was deleted. */
export async function releaseLease(kv: Deno.Kv, topic: string, holder: string): Promise<boolean> {
  const key = leaseKey(topic);
  const cur = await kv.get<LeaseRecord>(key);
  if (!cur.value || cur.value.holder !== holder) return false;
  const res = await kv.atomic().check(cur).delete(key).commit();
  return res.ok;
}

/**
 * An OS-level exclusive lock on a file next to the KV database, held for the life of the
 * aggregator process. The kernel releases it when the process dies, even by `kill -9`, so a
 * restarted aggregator that obtains it knows a same-host lease holder is dead and can take the
 * lease over at once instead of waiting for it to expire. (Deno KV on a local file is only
 * shared by processes of one host, so this covers every aggregator of that KV.)
 */
export interface ProcessLock {
  /** Releases the lock (also released by the OS when the process exits). */
  release(): void;
}

/** Tries to take the process lock at `path`; returns null when another live process holds it. */
export async function tryProcessLock(path: string): Promise<ProcessLock | null> {
  const file = await Deno.open(path, { read: true, write: true, create: true });
  let locked = false;
  try {
    locked = await file.tryLock(true);
  } finally {
    if (!locked) file.close();
  }
  if (!locked) return null;
  return {
    release() {
      try {
        file.unlockSync();
      } catch { /* already released */ }
      try {
        file.close();
      } catch { /* already closed */ }
    },
  };
}

/** The process-lock path of `topic` for the KV database at `kvPath`. */
export function processLockPath(kvPath: string, topic: string): string {
  return `${kvPath}.aggregate-${encodeURIComponent(topic)}.lock`;
}

/** A lease kept alive in the background. */
export interface KeptLease {
  /** The lease as last written (its versionstamp fences checkpoint writes). */
  current(): HeldLease;
  /** Settles once the lease is lost (taken over or deleted); renewal stops then. */
  lost: Promise<LeaseLostError>;
  /** Stops renewing (the caller releases the lease). */
  stop(): void;
}

/** Options of {@linkcode keepLease}. */
export interface KeepLeaseOptions {
  /** Holder id. */
  holder: string;
  /** Time-to-live in ms; renewed every third of it. */
  ttlMs: number;
  /** Host name recorded in the lease. */
  hostname?: string;
  /** Clock (epoch ms). */
  now: () => number;
  /** Serializes KV writes of the process (renewals must not race a checkpoint flip). */
  serialize: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Told about a failed renewal that is retried (KV busy, I/O). */
  onRetry?: (error: Error) => void;
}

/** Renews `lease` every third of its TTL until stopped or lost. */
export function keepLease(
  kv: Deno.Kv,
  topic: string,
  lease: HeldLease,
  options: KeepLeaseOptions,
): KeptLease {
  let held = lease;
  let stopped = false;
  const lost = Promise.withResolvers<LeaseLostError>();
  const timer = setInterval(() => {
    if (stopped) return;
    options.serialize(() =>
      renewLease(kv, topic, {
        holder: options.holder,
        now: options.now(),
        ttlMs: options.ttlMs,
        hostname: options.hostname,
      })
    ).then((l) => {
      held = l;
    }, (e) => {
      if (e instanceof LeaseLostError) {
        stopped = true;
        clearInterval(timer);
        lost.resolve(e);
      } else options.onRetry?.(e as Error);
    });
  }, Math.max(100, Math.floor(options.ttlMs / 3)));
  return {
    current: () => held,
    lost: lost.promise,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
