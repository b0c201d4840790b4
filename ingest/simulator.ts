/**
 * Local WebSocket server speaking the Yahoo Finance streamer protocol, for demos and tests.
 * `/?version=2` sends JSON envelopes, `/?version=1` bare base64 frames; clients send
 * {"subscribe":[...]} / {"unsubscribe":[...]}. Every frame sent is logged (in memory and/or
 * as JSON lines) so tests can compare downstream content with what was sent.
 * @module
 */

import { encode, type PricingData, shortestFloat32 } from "../proto/mod.ts";
import { encodeFrame, type FrameReason, parseFrame } from "./frame.ts";
import { mulberry32 as prng } from "../common/prng.ts";

/** What a sent frame was meant to exercise. */
export type SentKind =
  | "valid"
  | "late"
  | "out_of_order"
  | "future"
  | "malformed"
  | "heartbeat"
  | "replay";

/** What parseFrame is expected to return for a frame: "ok", "ignored" or a rejection reason. */
export type Expectation = "ok" | "ignored" | FrameReason;

/** One frame sent on one connection (also one JSON line of the --log file). */
export interface SentFrame {
  /** Connection id, from 1 in accept order. */
  conn: number;
  /** Per-connection frame sequence number, from 1. */
  seq: number;
  /** Clock time when sent, epoch ms. */
  at: number;
  /** Protocol version of the connection. */
  version: 1 | 2;
  /** What the frame exercises. */
  kind: SentKind;
  /** Malformed variant name (e.g. "truncated_protobuf"). */
  variant?: string;
  /** Symbol the frame is about, when it has one. */
  symbol?: string;
  /** Event time carried by the frame, epoch ms. */
  time?: number;
  /** Price carried by the frame, as decode() renders it. */
  price?: number;
  /** What parseFrame should return for this frame when parsed at `at`. */
  expect: Expectation;
  /** Exact raw text frame sent. */
  frame: string;
}

/** Port the simulator listens on by default. */
export const DEFAULT_PORT = 8765;
/** Interface the simulator binds by default. */
export const DEFAULT_HOSTNAME = "127.0.0.1";

/** Options for startSimulator. */
export interface SimulatorOptions {
  /** TCP port; 0 picks an ephemeral port (default 8765). */
  port?: number;
  /** Interface to bind (default 127.0.0.1). */
  hostname?: string;
  /** Ticks per second in total across subscribed symbols; 0 = only emit() (default 10). */
  rate?: number;
  /** PRNG seed (default 1). */
  seed?: number;
  /** Fraction of ticks with event time 20 minutes in the past (default 0). */
  lateFraction?: number;
  /** Fraction of ticks with event time 1-5 s in the past (default 0). */
  outOfOrderFraction?: number;
  /** Fraction of garbage frames of various kinds (default 0). */
  malformedFraction?: number;
  /** Fraction of ticks with event time one day ahead (default 0). */
  futureFraction?: number;
  /** Heartbeat envelope interval to v2 connections in ms; 0 = none (default 5000). */
  heartbeatMs?: number;
  /** Close every socket each this many seconds; 0 = never (default 0). */
  disconnectEvery?: number;
  /** Raw frames to replay (at `rate`/s) instead of generating ticks. */
  replay?: string[];
  /** Append one JSON line per sent frame to this file (truncated at start). */
  logFile?: string;
  /** Keep sent frames in memory for sent() (default true; turn off for long runs). */
  keepSent?: boolean;
  /** Wall clock for event times and log timestamps, epoch ms (default Date.now). */
  clock?: () => number;
  /**
   * Event time runs this many times faster than the wall clock (default 1), from
   * `eventStart` until it meets the wall clock, then at wall-clock pace: see
   * {@linkcode eventClock}.
   */
  speed?: number;
  /**
   * Event time at start, epoch ms, at or before the wall clock's (default: the wall clock
   * with speed 1, an hour earlier otherwise).
   */
  eventStart?: number;
  /** Event time of late ticks before the event clock, ms (default 20 min). */
  lateByMs?: number;
  /** Session length: cumulative day volumes restart at each multiple of it in event time
   * (UTC; default 24 h). */
  sessionMs?: number;
}

/** A running simulator. */
export interface Simulator {
  /** WebSocket URL without query, e.g. ws://127.0.0.1:8765/ . */
  readonly url: string;
  /** Bound TCP port. */
  readonly port: number;
  /** Resolves when a replay has sent every frame (never, without replay). */
  readonly finished: Promise<void>;
  /** The event clock's mapping from wall time (speed 1 and now, unless accelerated). */
  readonly timing: EventClockOptions;
  /** Event time now (what a tick generated now carries). */
  eventTime(): number;
  /** Frames sent so far (copy), in send order. */
  sent(): SentFrame[];
  /** Number of frames sent so far, by kind. */
  counts(): Record<SentKind, number>;
  /** Number of open WebSocket connections. */
  connections(): number;
  /** Sorted union of the symbols clients are subscribed to. */
  symbols(): string[];
  /** Emit `count` ticks (or replay frames) now, on top of the paced rate; returns frames sent. */
  emit(count?: number): number;
  /** Close every client socket (as --disconnect-every does). */
  disconnectAll(): void;
  /** Stop the server, close sockets and flush the log. */
  close(): Promise<void>;
}

/** Default head start of an accelerated event clock without `eventStart`: one hour. */
export const DEFAULT_REPLAY_MS = 3_600_000;

/** The mapping from wall time to event time of {@linkcode eventClock}. */
export interface EventClockOptions {
  /** Wall time when the clock starts, epoch ms. */
  wallStart: number;
  /** Event time at `wallStart`, epoch ms (must not be after `wallStart`). */
  eventStart: number;
  /** Event time runs `speed` times faster than wall time until it catches up (> 0). */
  speed: number;
}

/**
 * Event time at wall time `wallMs` (pure): `eventStart + (wallMs - wallStart) * speed`, but never
 * past `wallMs` itself. An accelerated clock thus replays the past quickly, meets the wall clock
 * (at `wallStart + (wallStart - eventStart) / (speed - 1)`) and goes on at wall-clock pace:
 * ticks are never in the future, whatever the run's length.
 */
export function eventTimeAt(wallMs: number, o: EventClockOptions): number {
  return Math.min(wallMs, Math.floor(o.eventStart + (wallMs - o.wallStart) * o.speed));
}

/** Whether the event clock still runs ahead of wall-clock pace at `wallMs` (pure). */
export function accelerating(wallMs: number, o: EventClockOptions): boolean {
  return o.speed !== 1 && o.eventStart + (wallMs - o.wallStart) * o.speed < wallMs;
}

/**
 * Where an accelerated event clock starts so that it meets the wall clock exactly after
 * `durationMs` of wall time: `wallStart - durationMs * (speed - 1)` (pure; `wallStart` for
 * speed <= 1).
 */
export function eventStartFor(wallStart: number, o: { speed: number; durationMs: number }): number {
  return o.speed <= 1 ? wallStart : Math.floor(wallStart - o.durationMs * (o.speed - 1));
}

/** Start of the session (UTC multiple of `sessionMs`) that event time `t` falls in (pure). */
export function sessionOf(t: number, sessionMs: number): number {
  return Math.floor(t / sessionMs) * sessionMs;
}

/** Whether `symbol` is quoted without volume, as Yahoo's FX pairs are (`EURUSD=X`). */
export function hasNoVolume(symbol: string): boolean {
  return symbol.endsWith("=X");
}

/** Typed error for invalid simulator options. */
export class SimulatorError extends Error {
  /** Create an error naming the bad option value. */
  constructor(message: string) {
    super(message);
    this.name = "SimulatorError";
  }
}

const LATE_MS = 20 * 60_000;
const SESSION_MS = 24 * 3_600_000;
const FUTURE_MS = 24 * 3_600_000;
const DISCONNECT_CODE = 1012; // service restart

interface Conn {
  id: number;
  version: 1 | 2;
  socket: WebSocket;
  seq: number;
  symbols: Set<string>;
}

interface SymbolState {
  price: number;
  previousClose: number;
  open: number;
  high: number;
  low: number;
  volume: number;
  crypto: boolean;
  /** Session (event time) the volume belongs to. */
  session: number;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function checkFraction(name: string, v: number | undefined): number {
  const x = v ?? 0;
  if (!(x >= 0 && x <= 1)) throw new SimulatorError(`Option ${name} must be in [0, 1], got ${v}`);
  return x;
}

function checkNonNegative(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!(x >= 0 && x < Infinity)) {
    throw new SimulatorError(`Option ${name} must be a finite number >= 0, got ${v}`);
  }
  return x;
}

/** Bytes of a length-delimited field (wire type 2). */
function lengthDelimited(field: number, payload: Uint8Array): number[] {
  return [(field << 3) | 2, payload.length, ...payload];
}

/** Start the simulator server; resolves once it is listening. */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const wallClock = options.clock ?? Date.now;
  const speed = options.speed ?? 1;
  if (!(speed > 0 && speed < Infinity)) {
    throw new SimulatorError(`Option speed must be a finite number > 0, got ${options.speed}`);
  }
  const wallStart = wallClock();
  const eventStart = options.eventStart ??
    (speed === 1 ? wallStart : wallStart - DEFAULT_REPLAY_MS);
  if (!Number.isFinite(eventStart) || eventStart > wallStart) {
    throw new SimulatorError(
      `Option eventStart must be at or before the wall clock (${
        new Date(wallStart).toISOString()
      }), got ${options.eventStart}: ticks would be in the future`,
    );
  }
  const timing: EventClockOptions = { wallStart, eventStart, speed };
  /** Event time now: the accelerated clock (the wall clock with speed 1 from now). */
  const clock = () => eventTimeAt(wallClock(), timing);
  const lateByMs = checkNonNegative("lateByMs", options.lateByMs, LATE_MS);
  const sessionMs = options.sessionMs ?? SESSION_MS;
  if (!(sessionMs > 0 && sessionMs < Infinity)) {
    throw new SimulatorError(`Option sessionMs must be a finite number > 0, got ${sessionMs}`);
  }
  const rate = checkNonNegative("rate", options.rate, 10);
  const late = checkFraction("lateFraction", options.lateFraction);
  const outOfOrder = checkFraction("outOfOrderFraction", options.outOfOrderFraction);
  const malformed = checkFraction("malformedFraction", options.malformedFraction);
  const future = checkFraction("futureFraction", options.futureFraction);
  if (late + outOfOrder + malformed + future > 1) {
    throw new SimulatorError(
      `Fractions add up to ${late + outOfOrder + malformed + future}, more than 1`,
    );
  }
  const heartbeatMs = checkNonNegative("heartbeatMs", options.heartbeatMs, 5000);
  const disconnectEvery = checkNonNegative("disconnectEvery", options.disconnectEvery, 0);
  const keepSent = options.keepSent ?? true;
  const random = prng(options.seed ?? 1);
  const replay = options.replay;
  let replayIndex = 0;
  let resolveFinished!: () => void;
  const finished = new Promise<void>((resolve) => (resolveFinished = resolve));

  const conns = new Map<WebSocket, Conn>();
  let nextConnId = 1;
  let subscribed: string[] = []; // sorted union of subscriptions, for deterministic picks
  const states = new Map<string, SymbolState>();
  const sentFrames: SentFrame[] = [];
  const counts: Record<SentKind, number> = {
    valid: 0,
    late: 0,
    out_of_order: 0,
    future: 0,
    malformed: 0,
    heartbeat: 0,
    replay: 0,
  };
  const log = options.logFile === undefined
    ? undefined
    : await Deno.open(options.logFile, { write: true, create: true, truncate: true });
  let pendingLog: string[] = [];
  const encoder = new TextEncoder();

  function flushLog(): void {
    if (log === undefined || pendingLog.length === 0) return;
    const bytes = encoder.encode(pendingLog.join(""));
    pendingLog = [];
    let off = 0;
    while (off < bytes.length) off += log.writeSync(bytes.subarray(off));
  }

  function refreshSubscribed(): void {
    const all = new Set<string>();
    for (const c of conns.values()) for (const s of c.symbols) all.add(s);
    subscribed = [...all].sort();
  }

  function send(c: Conn, entry: Omit<SentFrame, "conn" | "seq" | "at" | "version">): void {
    if (c.socket.readyState !== WebSocket.OPEN) return;
    c.socket.send(entry.frame);
    const full: SentFrame = {
      conn: c.id,
      seq: ++c.seq,
      at: wallClock(),
      version: c.version,
      ...entry,
    };
    counts[entry.kind]++;
    if (keepSent) sentFrames.push(full);
    if (log !== undefined) pendingLog.push(JSON.stringify(full) + "\n");
  }

  function stateOf(symbol: string, time?: number): SymbolState {
    let st = states.get(symbol);
    if (st === undefined) {
      const crypto = symbol.endsWith("-USD");
      const h = hashString(symbol);
      const fx = hasNoVolume(symbol);
      const base = crypto
        ? 1000 + (h % 90000)
        : fx
        ? 0.5 + (h % 1500) / 1000
        : 10 + (h % 49000) / 100;
      const price = Math.round(base * 10_000) / 10_000;
      st = {
        price,
        previousClose: price,
        open: price,
        high: price,
        low: price,
        volume: 0,
        crypto,
        session: sessionOf(time ?? clock(), sessionMs),
      };
      states.set(symbol, st);
    }
    return st;
  }

  function gaussian(): number {
    const u = 1 - random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  }

  /**
   * Advance the random walk of `symbol` and build its next PricingData. `time` is the tick's
   * event time; `now` the event clock's, whose session the cumulative day volume belongs to
   * (a late tick reports the current day volume, as a delayed trade report does).
   */
  function nextQuote(symbol: string, time: number, now: number): PricingData {
    const st = stateOf(symbol, now);
    const session = sessionOf(now, sessionMs);
    if (session > st.session) {
      // A new session: the day's figures restart from the last price.
      st.session = session;
      st.previousClose = st.price;
      st.open = st.high = st.low = st.price;
      st.volume = 0;
    }
    // Cents, or pips for FX pairs.
    const unit = hasNoVolume(symbol) ? 10_000 : 100;
    st.price = Math.max(
      1 / unit,
      Math.round(st.price * Math.exp(0.001 * gaussian()) * unit) / unit,
    );
    st.high = Math.max(st.high, st.price);
    st.low = Math.min(st.low, st.price);
    st.volume += 1 + Math.floor(random() * 500) * 100;
    const change = st.price - st.previousClose;
    const noVolume = hasNoVolume(symbol);
    return {
      id: symbol,
      price: st.price,
      time,
      currency: "USD",
      exchange: st.crypto ? "CCC" : noVolume ? "CCY" : "NMS",
      quoteType: st.crypto ? 41 : noVolume ? 45 : 8,
      marketHours: 1,
      changePercent: (change / st.previousClose) * 100,
      ...(noVolume ? {} : { dayVolume: st.volume }),
      dayHigh: st.high,
      dayLow: st.low,
      change,
      openPrice: st.open,
      previousClose: st.previousClose,
      priceHint: 2,
    };
  }

  /** Raw frame text of a malformed variant, for a connection's protocol version. */
  function garbage(symbol: string, now: number, version: 1 | 2): [string, string, FrameReason] {
    const wrap = (b64: string) =>
      version === 1 ? b64 : JSON.stringify({ type: "pricing", message: b64 });
    const quote = (): PricingData => ({ id: symbol, price: stateOf(symbol).price, time: now });
    const bytes = (b: number[]) => wrap(new Uint8Array(b).toBase64());
    const id = [...encoder.encode(symbol.slice(0, 60))];
    switch (Math.floor(random() * 10)) {
      case 0:
        return ["bad_base64", wrap("!!not*base64!!"), "bad_base64"];
      case 1:
        return ["bad_json", '{"type":"pricing","message":"' + symbol, "bad_json"];
      case 2:
        return ["bad_envelope", JSON.stringify({ type: "pricing", message: 42 }), "bad_envelope"];
      case 3: {
        // Dropping the last byte always cuts the final field (a varint) in half.
        const full = encode({ ...quote(), priceHint: 2 });
        return [
          "truncated_protobuf",
          wrap(full.subarray(0, full.length - 1).toBase64()),
          "bad_protobuf",
        ];
      }
      case 4: // price (field 2) sent as a varint instead of float32
        return [
          "wrong_wire_type",
          bytes([...lengthDelimited(1, new Uint8Array(id)), 0x10, 0x01]),
          "bad_protobuf",
        ];
      case 5: // id with bytes that are not UTF-8
        return [
          "bad_utf8",
          bytes(lengthDelimited(1, new Uint8Array([0xff, 0xfe, 0x41]))),
          "bad_protobuf",
        ];
      case 6:
        return [
          "missing_price",
          wrap(encode({ id: symbol, time: now }).toBase64()),
          "missing_price",
        ];
      case 7:
        return ["bad_price", wrap(encode({ ...quote(), price: -1 }).toBase64()), "bad_price"];
      case 8:
        return [
          "bad_symbol",
          wrap(encode({ ...quote(), id: symbol.padEnd(40, "X") }).toBase64()),
          "bad_symbol",
        ];
      default: {
        // Random bytes occasionally form a valid message: expect whatever parseFrame says.
        const frame = bytes(Array.from({ length: 24 }, () => Math.floor(random() * 256)));
        const r = parseFrame(frame, { nowMs: wallClock() });
        return ["random_bytes", frame, r.ok === false ? r.reason : "missing_id"];
      }
    }
  }

  function emitTick(): number {
    if (subscribed.length === 0) return 0;
    const symbol = subscribed[Math.floor(random() * subscribed.length)];
    const now = clock();
    const r = random();
    let kind: SentKind = "valid";
    let time = now;
    if (r < malformed) {
      kind = "malformed";
    } else if (r < malformed + future) {
      kind = "future";
      time = wallClock() + FUTURE_MS; // ahead of the wall clock, whatever the event clock
    } else if (r < malformed + future + late) {
      kind = "late";
      time = now - lateByMs;
    } else if (r < malformed + future + late + outOfOrder) {
      kind = "out_of_order";
      // 1-5 s of transport delay, in event time: scaled while the clock is accelerated.
      const scale = accelerating(wallClock(), timing) ? speed : 1;
      time = now - Math.floor((1000 + Math.floor(random() * 4000)) * scale);
    }
    let n = 0;
    if (kind === "malformed") {
      const versions = new Map<1 | 2, [string, string, FrameReason]>();
      for (const c of conns.values()) {
        if (!c.symbols.has(symbol)) continue;
        let g = versions.get(c.version);
        if (g === undefined) versions.set(c.version, g = garbage(symbol, now, c.version));
        send(c, { kind, variant: g[0], symbol, expect: g[2], frame: g[1] });
        n++;
      }
      return n;
    }
    const quote = nextQuote(symbol, time, now);
    const price = shortestFloat32(quote.price!);
    const frames = new Map<1 | 2, string>();
    for (const c of conns.values()) {
      if (!c.symbols.has(symbol)) continue;
      let frame = frames.get(c.version);
      if (frame === undefined) {
        frames.set(c.version, frame = encodeFrame(quote, { version: c.version }));
      }
      send(c, {
        kind,
        symbol,
        time,
        price,
        expect: kind === "future" ? "future_time" : "ok",
        frame,
      });
      n++;
    }
    return n;
  }

  function emitReplay(): number {
    if (replay === undefined || replayIndex >= replay.length) return 0;
    const frame = replay[replayIndex++];
    if (replayIndex === replay.length) resolveFinished();
    const parsed = parseFrame(frame, { nowMs: wallClock() });
    const symbol = parsed.ok === true ? parsed.tick.id : undefined;
    const expect: Expectation = parsed.ok === true
      ? "ok"
      : parsed.ok === false
      ? parsed.reason
      : "ignored";
    let n = 0;
    for (const c of conns.values()) {
      if (c.symbols.size === 0 || (symbol !== undefined && !c.symbols.has(symbol))) continue;
      send(c, {
        kind: "replay",
        symbol,
        time: parsed.ok === true ? parsed.tick.time : undefined,
        price: parsed.ok === true ? parsed.tick.price : undefined,
        expect,
        frame,
      });
      n++;
    }
    return n;
  }

  function emit(count = 1): number {
    let n = 0;
    for (let i = 0; i < count; i++) n += replay === undefined ? emitTick() : emitReplay();
    flushLog();
    return n;
  }

  function heartbeat(): void {
    const frame = JSON.stringify({ type: "heartbeat", time: wallClock() });
    for (const c of conns.values()) {
      if (c.version === 2) send(c, { kind: "heartbeat", expect: "ignored", frame });
    }
    flushLog();
  }

  function disconnectAll(): void {
    for (const c of conns.values()) {
      try {
        c.socket.close(DISCONNECT_CODE, "Simulated disconnect");
      } catch {
        // already closing
      }
    }
  }

  function onClientMessage(c: Conn, data: unknown): void {
    if (typeof data !== "string") return;
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // Yahoo ignores junk from clients too
    }
    if (typeof msg !== "object" || msg === null) return;
    const { subscribe, unsubscribe } = msg as { subscribe?: unknown; unsubscribe?: unknown };
    for (const s of Array.isArray(subscribe) ? subscribe : []) {
      if (typeof s === "string" && s !== "") c.symbols.add(s);
    }
    for (const s of Array.isArray(unsubscribe) ? unsubscribe : []) {
      if (typeof s === "string") c.symbols.delete(s);
    }
    refreshSubscribed();
  }

  function handle(req: Request): Response {
    const url = new URL(req.url);
    if (url.pathname === "/healthz") return new Response("ok\n");
    if (url.pathname !== "/") return new Response("Not found\n", { status: 404 });
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("WebSocket upgrade required\n", { status: 426 });
    }
    const v = url.searchParams.get("version") ?? "2";
    if (v !== "1" && v !== "2") {
      return new Response(`Unsupported version ${JSON.stringify(v)}\n`, { status: 400 });
    }
    const { socket, response } = Deno.upgradeWebSocket(req);
    const c: Conn = {
      id: nextConnId++,
      version: v === "1" ? 1 : 2,
      socket,
      seq: 0,
      symbols: new Set(),
    };
    socket.onopen = () => conns.set(socket, c);
    socket.onmessage = (e) => onClientMessage(c, e.data);
    socket.onclose = () => {
      conns.delete(socket);
      refreshSubscribed();
    };
    socket.onerror = () => {};
    return response;
  }

  const server = Deno.serve({
    port: options.port ?? DEFAULT_PORT,
    hostname: options.hostname ?? DEFAULT_HOSTNAME,
    onListen: () => {},
  }, handle);
  const addr = server.addr as Deno.NetAddr;

  const timers: ReturnType<typeof setInterval>[] = [];
  if (rate > 0) {
    const start = performance.now();
    let due = 0;
    const stepMs = Math.min(100, Math.max(5, 1000 / rate));
    timers.push(setInterval(() => {
      const target = Math.floor(((performance.now() - start) * rate) / 1000);
      const n = target - due;
      due = target;
      if (n > 0) emit(n);
    }, stepMs));
  }
  if (heartbeatMs > 0) timers.push(setInterval(heartbeat, heartbeatMs));
  if (disconnectEvery > 0) timers.push(setInterval(disconnectAll, disconnectEvery * 1000));
  if (replay !== undefined && replay.length === 0) resolveFinished();

  let closed: Promise<void> | undefined;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return {
    url: `ws://${host}:${addr.port}/`,
    port: addr.port,
    finished,
    timing,
    eventTime: clock,
    sent: () => sentFrames.slice(),
    counts: () => ({ ...counts }),
    connections: () => conns.size,
    symbols: () => subscribed.slice(),
    emit,
    disconnectAll,
    close(): Promise<void> {
      closed ??= (async () => {
        for (const t of timers) clearInterval(t);
        disconnectAll();
        await server.shutdown();
        flushLog();
        log?.close();
      })();
      return closed;
    },
  };
}
