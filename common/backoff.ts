/**
 * Exponential backoff with full jitter, pure (the random source is passed in).
 * @module
 */

/** Options for {@linkcode backoffDelay}. */
export interface BackoffOptions {
  /** First delay in ms (default 250). */
  initialMs?: number;
  /** Upper bound in ms (default 30_000). */
  maxMs?: number;
  /** Growth factor (default 2). */
  factor?: number;
  /** Random source in [0, 1); default Math.random. `() => 1` disables jitter. */
  random?: () => number;
}

/** Delay before retry number `attempt` (0-based): `random * min(max, initial * factor^attempt)`, at least 1/2 of it. */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 250;
  const max = options.maxMs ?? 30_000;
  const factor = options.factor ?? 2;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(max, initial * Math.pow(factor, Math.max(0, attempt)));
  // "equal jitter": half fixed, half random, so retries never collapse to 0 ms.
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** Resolves after `ms` milliseconds, or early (rejecting) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const id = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(id);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
