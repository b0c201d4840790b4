// The WebSocket client with fake sockets and fake timers: subscribe on open and every 15 s,
// reconnect with backoff on close / error / silence and resubscribe, shard > 100 symbols.
import assert from "node:assert/strict";
import { connectFeed, shardSymbols, type SocketLike, type Timers } from "../../ingest/client.ts";
import { createLogger } from "../../common/log.ts";

const quiet = createLogger("test", { level: "error" });

class FakeSocket implements SocketLike {
  readyState = 0;
  binaryType: BinaryType = "blob";
  sent: string[] = [];
  closedWith?: number;
  onopen: ((ev: Event) => unknown) | null = null;
  onmessage: ((ev: MessageEvent) => unknown) | null = null;
  onclose: ((ev: CloseEvent) => unknown) | null = null;
  onerror: ((ev: Event) => unknown) | null = null;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(data);
  }
  close(code = 1000) {
    this.closedWith = code;
    this.readyState = 3;
    this.onclose?.({ code, reason: "" } as CloseEvent);
  }
  open() {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  message(data: string) {
    this.onmessage?.({ data } as MessageEvent);
  }
  serverClose(code = 1012) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "restart" } as CloseEvent);
  }
}

/** Manual clock + timers. */
function fakeTime() {
  let t = 0;
  let id = 0;
  const tasks = new Map<number, { at: number; fn: () => void; every?: number }>();
  const timers: Timers = {
    setTimeout: (fn, ms) => (tasks.set(++id, { at: t + ms, fn }), id),
    clearTimeout: (h) => void tasks.delete(h as number),
    setInterval: (fn, ms) => (tasks.set(++id, { at: t + ms, fn, every: ms }), id),
    clearInterval: (h) => void tasks.delete(h as number),
  };
  const advance = (ms: number) => {
    const end = t + ms;
    for (;;) {
      const next = [...tasks.entries()].filter(([, x]) =>
        x.at <= end
      ).sort((a, b) => a[1].at - b[1].at)[0];
      if (!next) break;
      const [k, task] = next;
      t = task.at;
      if (task.every) task.at += task.every;
      else tasks.delete(k);
      task.fn();
    }
    t = end;
  };
  return { now: () => t, timers, advance };
}

function setup(symbols: string[], extra: { silenceMs?: number } = {}) {
  const time = fakeTime();
  const sockets: FakeSocket[] = [];
  const frames: [string, number, number][] = [];
  const feed = connectFeed({
    url: "ws://test/?version=2",
    symbols,
    onFrame: (raw, at, conn) => frames.push([raw, at, conn]),
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    now: time.now,
    timers: time.timers,
    logger: quiet,
    backoff: { random: () => 0 },
    ...extra,
  });
  return { time, sockets, frames, feed };
}

Deno.test("client: subscribes on open and every 15 s; frames carry the receive time", () => {
  const { time, sockets, frames, feed } = setup(["AAPL", "MSFT"]);
  assert.equal(sockets.length, 1);
  sockets[0].open();
  assert.deepEqual(sockets[0].sent, ['{"subscribe":["AAPL","MSFT"]}']);
  time.advance(15_000);
  assert.equal(sockets[0].sent.length, 2);
  time.advance(15_000);
  assert.equal(sockets[0].sent.length, 3);
  sockets[0].message("abc");
  assert.deepEqual(frames, [["abc", 30_000, 0]]);
  assert.equal(feed.stats().frames, 1);
});

Deno.test("client: reconnects with backoff after close and error, and resubscribes", () => {
  const { time, sockets, feed } = setup(["AAPL"]);
  sockets[0].open();
  sockets[0].serverClose();
  assert.equal(sockets.length, 1, "waits for the backoff before reconnecting");
  time.advance(124); // backoff attempt 0 with random 0: 125 ms
  assert.equal(sockets.length, 1);
  time.advance(1);
  assert.equal(sockets.length, 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent, ['{"subscribe":["AAPL"]}']);
  // Fails again without any frame: the backoff grows.
  sockets[1].onerror?.(new Event("error"));
  assert.equal(sockets[1].closedWith, 4000);
  time.advance(249);
  assert.equal(sockets.length, 2);
  time.advance(1);
  assert.equal(sockets.length, 3);
  assert.equal(feed.stats().reconnects, 2);
});

Deno.test("client: 60 s of silence closes and reconnects; a frame resets the timer", () => {
  const { time, sockets, feed } = setup(["AAPL"]);
  sockets[0].open();
  time.advance(50_000);
  sockets[0].message("x");
  time.advance(50_000);
  assert.equal(sockets.length, 1, "not silent yet (a frame 50 s ago)");
  time.advance(11_000);
  assert.equal(feed.stats().silenceReconnects, 1);
  assert.equal(sockets[0].closedWith, 4000);
  time.advance(200);
  assert.equal(sockets.length, 2);
});

Deno.test("client: 250 symbols -> 3 connections of at most 100; close stops reconnecting", async () => {
  const symbols = Array.from({ length: 250 }, (_, i) => `S${i}`);
  assert.deepEqual(shardSymbols(symbols).map((s) => s.length), [100, 100, 50]);
  assert.deepEqual(shardSymbols(["A", "B", "A"], 1), [["A"], ["B"]]);
  const { time, sockets, feed } = setup(symbols);
  assert.equal(sockets.length, 3);
  for (const s of sockets) s.open();
  const subs = sockets.map((s) => JSON.parse(s.sent[0]).subscribe as string[]);
  assert.ok(subs.every((s) => s.length <= 100));
  assert.deepEqual(subs.flat().sort(), [...symbols].sort());
  await feed.close();
  time.advance(60_000);
  assert.equal(sockets.length, 3, "no reconnect after close");
});

Deno.test("client: a source this process may not reach is a configuration error, not an outage", async () => {
  const time = fakeTime();
  let attempts = 0;
  const denials: Error[] = [];
  const feed = connectFeed({
    url: "ws://127.0.0.1:23457/?version=2",
    // Two shards: still one report.
    symbols: Array.from({ length: 150 }, (_, i) => `S${i}`),
    onFrame: () => {},
    createSocket: () => {
      attempts++;
      throw new Deno.errors.NotCapable(`Requires net access to "127.0.0.1:23457"`);
    },
    onDenied: (e) => denials.push(e),
    now: time.now,
    timers: time.timers,
    logger: quiet,
  });
  time.advance(120_000);
  assert.equal(attempts, 2, "one attempt per connection, never retried");
  assert.equal(denials.length, 1, "reported once");
  assert.match(denials[0].message, /Requires net access to "127\.0\.0\.1:23457"/);
  assert.equal(feed.stats().reconnects, 0);
  assert.equal(feed.stats().open, 0);
  await feed.close();
});

Deno.test("client: other connect failures are still retried with backoff", async () => {
  const time = fakeTime();
  let attempts = 0;
  const denials: Error[] = [];
  const feed = connectFeed({
    url: "ws://test/?version=2",
    symbols: ["A"],
    onFrame: () => {},
    createSocket: () => {
      attempts++;
      throw new TypeError("Invalid URL");
    },
    onDenied: (e) => denials.push(e),
    now: time.now,
    timers: time.timers,
    logger: quiet,
  });
  time.advance(120_000);
  assert.ok(attempts > 3, `retried: ${attempts}`);
  assert.equal(denials.length, 0);
  assert.equal(feed.stats().reconnects, attempts);
  await feed.close();
});
