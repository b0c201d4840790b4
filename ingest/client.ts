/**
 * WebSocket client for Yahoo's streamer protocol: subscribes on open and every
 * `resubscribeMs`, reconnects with exponential backoff + jitter on close, error or
 * `silenceMs` without frames, and shards symbol lists across connections of at most
 * `maxSymbolsPerConnection`. The socket factory, clock and timers are injectable.
 * @module
 */

import { backoffDelay, type BackoffOptions } from "../common/backoff.ts";
import { createLogger, type Logger } from "../common/log.ts";
import { DEFAULT_SILENCE_MS, DEFAULT_SOURCE } from "./defaults.ts";

export { DEFAULT_SOURCE, DEFAULT_SYMBOLS } from "./defaults.ts";

/** Yahoo accepts at most this many symbols per connection. */
export const MAX_SYMBOLS_PER_CONNECTION = 100;

/** The part of WebSocket the client uses (the global WebSocket satisfies it). */
export interface SocketLike {
  /** WebSocket.readyState */
  readonly readyState: number;
  /** WebSocket.binaryType */
  binaryType: BinaryType;
  /** WebSocket.send */
  send(data: string): void;
  /** WebSocket.close */
  close(code?: number, reason?: string): void;
  /** Open handler. */
  onopen: ((ev: Event) => unknown) | null;
  /** Message handler. */
  onmessage: ((ev: MessageEvent) => unknown) | null;
  /** Close handler. */
  onclose: ((ev: CloseEvent) => unknown) | null;
  /** Error handler. */
  onerror: ((ev: Event) => unknown) | null;
}

/** An opaque timer id. */
export type TimerHandle = unknown;

/** Timer functions (injectable for tests). */
export interface Timers {
  /** setTimeout */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** clearTimeout */
  clearTimeout(id: TimerHandle | undefined): void;
  /** setInterval */
  setInterval(fn: () => void, ms: number): TimerHandle;
  /** clearInterval */
  clearInterval(id: TimerHandle | undefined): void;
}

/** Options for connectFeed. */
export interface FeedOptions {
  /** Source URL (default DEFAULT_SOURCE). */
  url?: string;
  /** Symbols to subscribe to (sharded across connections). */
  symbols: string[];
  /** Called for every text frame with its receive time (epoch ms) and connection index. */
  onFrame: (raw: string, receivedMs: number, connection: number) => void;
  /** Max symbols per connection (default 100). */
  maxSymbolsPerConnection?: number;
  /** Subscription resend interval, ms (default 15_000). */
  resubscribeMs?: number;
  /** Reconnect after this long without any frame, ms (default 60_000). */
  silenceMs?: number;
  /** Reconnect backoff (default 250 ms .. 30 s, equal jitter). */
  backoff?: BackoffOptions;
  /** Socket factory (default: the global WebSocket). */
  createSocket?: (url: string) => SocketLike;
  /** Clock, epoch ms (default Date.now). */
  now?: () => number;
  /** Timers (default the global ones). */
  timers?: Timers;
  /** Logger (default "ingest.client"). */
  logger?: Logger;
  /**
   * Called (once) when this process may not reach the source: a configuration error, so the
   * feed does not reconnect. Default: the error is logged.
   */
  onDenied?: (error: Error) => void;
}

/** Counters of a Feed. */
export interface FeedStats {
  /** Connections (shards). */
  connections: number;
  /** Connections currently open. */
  open: number;
  /** Frames received. */
  frames: number;
  /** Reconnects scheduled (after close, error or silence). */
  reconnects: number;
  /** Reconnects caused by silence. */
  silenceReconnects: number;
}

/** A running set of connections. */
export interface Feed {
  /** Current counters. */
  stats(): FeedStats;
  /** The symbol shards, one per connection. */
  readonly shards: readonly string[][];
  /** Stops reconnecting and closes every socket; resolves when all are closed. */
  close(): Promise<void>;
}

/** Raised for invalid feed options. */
export class FeedError extends Error {
  /** Creates the error; the message names the bad value. */
  constructor(message: string) {
    super(message);
    this.name = "FeedError";
  }
}

/** Splits `symbols` (deduplicated, order kept) into chunks of at most `max`. */
export function shardSymbols(
  symbols: readonly string[],
  max = MAX_SYMBOLS_PER_CONNECTION,
): string[][] {
  if (!(max >= 1)) throw new FeedError(`Shard size ${max} must be >= 1`);
  const unique = [...new Set(symbols)];
  const out: string[][] = [];
  for (let i = 0; i < unique.length; i += max) out.push(unique.slice(i, i + max));
  return out;
}

/** The subscribe message for `symbols`. */
export function subscribeMessage(symbols: readonly string[]): string {
  return JSON.stringify({ subscribe: symbols });
}

const defaultTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (id) => clearInterval(id as number),
};
const OPEN = 1;
const decoder = new TextDecoder();

/** Opens one connection per shard of `options.symbols` to `options.url`. */
export function connectFeed(options: FeedOptions): Feed {
  const url = options.url ?? DEFAULT_SOURCE;
  if (options.symbols.length === 0) throw new FeedError("Symbol list is empty");
  const shards = shardSymbols(options.symbols, options.maxSymbolsPerConnection);
  const resubscribeMs = options.resubscribeMs ?? 15_000;
  const silenceMs = options.silenceMs ?? DEFAULT_SILENCE_MS;
  const createSocket = options.createSocket ?? ((u: string) => new WebSocket(u));
  const now = options.now ?? Date.now;
  const timers = options.timers ?? defaultTimers;
  const log = options.logger ?? createLogger("ingest.client");
  const stats = { frames: 0, reconnects: 0, silenceReconnects: 0 };
  let closing = false;
  let denied = false;

  interface Conn {
    index: number;
    symbols: string[];
    socket?: SocketLike;
    attempt: number;
    lastFrameAt: number;
    resubTimer?: TimerHandle;
    silenceTimer?: TimerHandle;
    retryTimer?: TimerHandle;
    open: boolean;
    closed?: () => void;
  }

  const conns: Conn[] = shards.map((symbols, index) => ({
    index,
    symbols,
    attempt: 0,
    lastFrameAt: 0,
    open: false,
  }));

  function clearConnTimers(c: Conn): void {
    timers.clearInterval(c.resubTimer);
    timers.clearInterval(c.silenceTimer);
    c.resubTimer = c.silenceTimer = undefined;
  }

  function scheduleReconnect(c: Conn, why: string): void {
    if (closing || c.retryTimer !== undefined) return;
    const delay = backoffDelay(c.attempt++, { initialMs: 250, maxMs: 30_000, ...options.backoff });
    stats.reconnects++;
    log.warn("Reconnecting", { connection: c.index, why, inMs: delay, attempt: c.attempt });
    c.retryTimer = timers.setTimeout(() => {
      c.retryTimer = undefined;
      open(c);
    }, delay);
  }

  function open(c: Conn): void {
    if (closing) return;
    let socket: SocketLike;
    try {
      socket = createSocket(url);
    } catch (e) {
      if ((e as Error)?.name === "NotCapable") {
        // Not an outage: reconnecting cannot help. The feed stays closed.
        if (!denied) {
          denied = true;
          if (options.onDenied) options.onDenied(e as Error);
          else log.error("Not allowed to reach the WebSocket source", { url, error: e as Error });
        }
        return;
      }
      log.error("Cannot open WebSocket", { url, error: e as Error });
      scheduleReconnect(c, "connect failed");
      return;
    }
    c.socket = socket;
    socket.binaryType = "arraybuffer";
    const subscribe = () => {
      if (socket.readyState === OPEN) socket.send(subscribeMessage(c.symbols));
    };
    socket.onopen = () => {
      c.open = true;
      c.lastFrameAt = now();
      log.info("Connected", { connection: c.index, url, symbols: c.symbols.length });
      subscribe();
      c.resubTimer = timers.setInterval(subscribe, resubscribeMs);
      c.silenceTimer = timers.setInterval(() => {
        if (now() - c.lastFrameAt >= silenceMs) {
          stats.silenceReconnects++;
          log.warn("No frames; closing to reconnect", {
            connection: c.index,
            silentMs: now() - c.lastFrameAt,
          });
          drop(c, socket, "silence");
        }
      }, Math.max(10, Math.min(1000, silenceMs / 4)));
    };
    socket.onmessage = (ev) => {
      const at = now();
      c.lastFrameAt = at;
      c.attempt = 0; // a working connection resets the backoff
      stats.frames++;
      const data = typeof ev.data === "string"
        ? ev.data
        : ev.data instanceof ArrayBuffer
        ? decoder.decode(ev.data)
        : String(ev.data);
      try {
        options.onFrame(data, at, c.index);
      } catch (e) {
        log.error("Frame handler failed", { error: e as Error });
      }
    };
    socket.onerror = (ev) => {
      const msg = (ev as ErrorEvent).message;
      log.warn("WebSocket error", { connection: c.index, error: msg ?? "error" });
      drop(c, socket, "error");
    };
    socket.onclose = (ev) => {
      if (c.socket === socket) finish(c, `closed ${ev.code}${ev.reason ? " " + ev.reason : ""}`);
    };
  }

  /** Abandons `socket` (closing it) and reconnects. */
  function drop(c: Conn, socket: SocketLike, why: string): void {
    if (c.socket !== socket) return;
    try {
      socket.close(4000, why);
    } catch { /* already closing */ }
    finish(c, why);
  }

  function finish(c: Conn, why: string): void {
    clearConnTimers(c);
    const socket = c.socket;
    c.socket = undefined;
    c.open = false;
    if (socket) {
      socket.onopen = socket.onerror = null;
      // Keep delivering frames already received on an abandoned socket until it closes.
      socket.onclose = null;
    }
    if (closing) {
      c.closed?.();
      return;
    }
    scheduleReconnect(c, why);
  }

  for (const c of conns) open(c);

  return {
    shards,
    stats: () => ({
      connections: conns.length,
      open: conns.filter((c) => c.open).length,
      ...stats,
    }),
    async close() {
      closing = true;
      await Promise.all(conns.map((c) => {
        timers.clearTimeout(c.retryTimer);
        c.retryTimer = undefined;
        const socket = c.socket;
        if (!socket) return Promise.resolve();
        return new Promise<void>((resolve) => {
          c.closed = resolve;
          // Give the close handshake a bounded time.
          const t = timers.setTimeout(() => finish(c, "close timeout"), 2000);
          const done = c.closed;
          c.closed = () => {
            timers.clearTimeout(t);
            done();
          };
          try {
            socket.close(1000, "ingest stopping");
          } catch {
            finish(c, "closed");
          }
        });
      }));
    },
  };
}
