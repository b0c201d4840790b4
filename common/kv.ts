/**
 * Opens Deno KV at an explicit path, creating its folder. Several processes
 * (sensor, aggregator, status, offsets) share one KV file; SQLite answers
 * "database is locked" while another process writes, so every call through
 * the returned handle retries that error with backoff.
 * @module
 */

import { backoffDelay, sleep } from "./backoff.ts";
import {
  AccessDeniedError,
  type AccessNeed,
  deniedTarget,
  isPermissionError,
} from "./permissions.ts";

/** True when `e` is SQLite's transient "database is locked/busy" error. */
export function isKvBusy(e: unknown): boolean {
  return /database is locked|database is busy|SQLITE_BUSY/i.test(
    String((e as Error)?.message ?? e),
  );
}

/**
 * True when `e` is SQLite refusing to store (the disk is full, an I/O error, a read-only file):
 * a storage problem to report as such, not a bug and not a network outage.
 */
export function isKvStorageError(e: unknown): boolean {
  return /database or disk is full|disk I\/O error|readonly database|SQLITE_(FULL|IOERR|READONLY)/i
    .test(String((e as Error)?.message ?? e));
}

/** Runs `fn`, retrying while KV reports the database locked by another process. */
export async function withKvRetry<T>(fn: () => Promise<T>, attempts = 40): Promise<T> {
  for (let i = 0;; i++) {
    try {
      return await fn();
    } catch (e) {
      if (!isKvBusy(e) || i + 1 >= attempts) throw e;
      await sleep(backoffDelay(i, { initialMs: 10, maxMs: 500 }));
    }
  }
}

const RETRIED = new Set(["get", "getMany", "set", "delete", "enqueue"]);

function retryingAtomic(op: Deno.AtomicOperation): Deno.AtomicOperation {
  return new Proxy(op, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function") return v;
      if (prop === "commit") {
        // A commit that failed with "locked" did not apply, so retrying it is safe.
        return () => withKvRetry(() => target.commit());
      }
      return (...args: unknown[]) => {
        const r = v.apply(target, args);
        return r === target ? receiver : r;
      };
    },
  });
}

/** Wraps `kv` so that reads, writes and atomic commits retry "database is locked". */
export function retryingKv(kv: Deno.Kv): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      if (prop === "atomic") return () => retryingAtomic(target.atomic());
      if (typeof prop === "string" && RETRIED.has(prop)) {
        return (...args: unknown[]) => withKvRetry(() => v.apply(target, args));
      }
      return (...args: unknown[]) => {
        const r = v.apply(target, args);
        return r === target ? receiver : r;
      };
    },
  });
}

/** Raised when the KV path is not allowed to the running command: a configuration error. */
export class KvPermissionError extends AccessDeniedError {
  /** Creates the error for the denied need; the message names the path and the fix. */
  constructor(need: AccessNeed, options?: ErrorOptions) {
    super(need, options);
    this.name = "KvPermissionError";
  }
}

/** Opens the KV database at `path` (never the default location), creating the parent folder. */
export async function openKv(path: string): Promise<Deno.Kv> {
  const slash = path.lastIndexOf("/");
  try {
    if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
    return retryingKv(await withKvRetry(() => Deno.openKv(path)));
  } catch (e) {
    if (isPermissionError(e)) {
      const t = deniedTarget(e);
      throw new KvPermissionError({
        kind: t?.kind === "read" ? "read" : "write",
        target: t?.target ?? path,
        what: "Deno KV path",
        setting: `TICKPIPE_KV=${path}`,
        settings: "TICKPIPE_KV / --kv",
      }, { cause: e });
    }
    throw e;
  }
}
