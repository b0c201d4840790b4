/**
 * Main-thread handle of the WebSocket sender worker (bench/suites/_sender_worker.ts).
 * @module
 */

/** A running sender. */
export interface Sender {
  /** ws:// URL (version 2 envelopes). */
  url: string;
  /** Resolves once clients have subscribed to at least `count` distinct symbols. */
  subscribed(count: number, timeoutMs: number): Promise<void>;
  /** Sends every frame once (paced at `rate` frames/s if given); resolves with {n, ms}. */
  send(rate?: number): Promise<{ n: number; ms: number }>;
  /** Stops the server and the worker. */
  close(): Promise<void>;
}

/** Starts the sender worker with `frames` ([symbol, raw frame] pairs). */
export async function startSender(frames: [string, string][]): Promise<Sender> {
  const worker = new Worker(new URL("./_sender_worker.ts", import.meta.url).href, {
    type: "module",
  });
  let subscribed = 0;
  const listeners = new Set<(m: { type: string; [k: string]: unknown }) => void>();
  worker.onmessage = (e) => {
    const m = e.data as { type: string; [k: string]: unknown };
    if (m.type === "subscribed") subscribed = Math.max(subscribed, m.count as number);
    for (const l of [...listeners]) l(m);
  };
  const next = (type: string, timeoutMs: number) =>
    new Promise<{ type: string; [k: string]: unknown }>((resolve, reject) => {
      const timer = setTimeout(() => {
        listeners.delete(on);
        reject(new Error(`Sender worker sent no "${type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (m: { type: string; [k: string]: unknown }) => {
        if (m.type !== type) return;
        clearTimeout(timer);
        listeners.delete(on);
        resolve(m);
      };
      listeners.add(on);
    });
  const listening = next("listening", 30_000);
  worker.postMessage({ type: "init", frames });
  const { port } = await listening;
  return {
    url: `ws://127.0.0.1:${port}/?version=2`,
    async subscribed(count, timeoutMs) {
      const until = performance.now() + timeoutMs;
      while (subscribed < count) {
        if (performance.now() > until) {
          throw new Error(
            `Only ${subscribed} of ${count} symbols subscribed after ${timeoutMs} ms`,
          );
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async send(rate) {
      const done = next("sent", 600_000);
      worker.postMessage({ type: "send", rate });
      const m = await done;
      return { n: m.n as number, ms: m.ms as number };
    },
    async close() {
      const closed = next("closed", 5000).catch(() => {});
      worker.postMessage({ type: "close" });
      await closed;
      worker.terminate();
    },
  };
}
