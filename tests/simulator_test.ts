import assert from "node:assert/strict";
import { parseFrame } from "../ingest/frame.ts";
import { eventStartOf, main } from "../ingest/simulate_main.ts";
import {
  eventStartFor,
  eventTimeAt,
  type SentFrame,
  type Simulator,
  startSimulator,
} from "../ingest/simulator.ts";
import { WindowEngine } from "../aggregate/engine.ts";
import { mulberry32 as prng } from "../common/prng.ts";

const T0 = 1_750_000_000_000;

/** A fixed clock the test advances by hand. */
function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = T0;
  return { now: () => t, advance: (ms) => (t += ms) };
}

interface Client {
  ws: WebSocket;
  frames: string[];
  closed: Promise<CloseEvent>;
  next(n: number, timeoutMs?: number): Promise<string[]>;
  send(msg: unknown): void;
}

async function connect(sim: Simulator, version: 1 | 2): Promise<Client> {
  const ws = new WebSocket(`${sim.url}?version=${version}`);
  const frames: string[] = [];
  let waiter: (() => void) | undefined;
  ws.onmessage = (e) => {
    frames.push(e.data as string);
    waiter?.();
  };
  const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener("close", resolve));
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let taken = 0;
  return {
    ws,
    frames,
    closed,
    send: (msg) => ws.send(JSON.stringify(msg)),
    async next(n, timeoutMs = 2000) {
      const deadline = Date.now() + timeoutMs;
      while (frames.length < taken + n) {
        if (Date.now() > deadline) {
          throw new Error(`Timed out waiting for ${n} frames (have ${frames.length - taken})`);
        }
        await new Promise<void>((resolve) => {
          waiter = resolve;
          setTimeout(resolve, 20);
        });
      }
      taken += n;
      return frames.slice(taken - n, taken);
    },
  };
}

async function until(cond: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function subscribe(sim: Simulator, c: Client, symbols: string[]): Promise<void> {
  c.send({ subscribe: symbols });
  await until(() => symbols.every((s) => sim.symbols().includes(s)), `subscription ${symbols}`);
}

/** Check a received frame against the simulator's log entry and parseFrame. */
function checkAgainstLog(frame: string, entry: SentFrame, nowMs: number): void {
  assert.equal(frame, entry.frame);
  const r = parseFrame(frame, { nowMs });
  if (entry.expect === "ok") {
    assert.equal(r.ok, true, `${entry.kind}/${entry.variant}: ${JSON.stringify(r)}`);
    if (r.ok !== true) return;
    assert.equal(r.tick.id, entry.symbol);
    assert.equal(r.tick.price, entry.price);
    assert.equal(r.tick.time, entry.time);
    assert.equal(r.version, entry.version);
  } else if (entry.expect === "ignored") {
    assert.equal(r.ok, "ignored");
  } else {
    assert.equal(r.ok, false, `${entry.kind}/${entry.variant}`);
    if (r.ok === false) assert.equal(r.reason, entry.expect, `${entry.variant}: ${r.detail}`);
  }
}

const quiet = { port: 0, rate: 0, heartbeatMs: 0 };

Deno.test("v2: subscribed symbols stream frames that parse and match the log", async () => {
  const clock = fakeClock();
  const sim = await startSimulator({
    ...quiet,
    seed: 3,
    clock: clock.now,
    lateFraction: 0.1,
    outOfOrderFraction: 0.1,
    malformedFraction: 0.2,
    futureFraction: 0.1,
  });
  const c = await connect(sim, 2);
  try {
    await subscribe(sim, c, ["AAPL", "BTC-USD"]);
    assert.equal(sim.emit(300), 300);
    const frames = await c.next(300);
    const log = sim.sent();
    assert.equal(log.length, 300);
    log.forEach((entry, i) => {
      assert.equal(entry.conn, log[0].conn);
      assert.equal(entry.seq, i + 1);
      assert.equal(entry.version, 2);
      assert.equal(entry.at, T0);
      assert.ok(entry.symbol === "AAPL" || entry.symbol === "BTC-USD");
      checkAgainstLog(frames[i], entry, T0);
    });
    const counts = sim.counts();
    for (const kind of ["valid", "late", "out_of_order", "malformed", "future"] as const) {
      assert.ok(counts[kind] > 10, `${kind}: ${counts[kind]}`);
    }
    const variants = new Set(log.map((e) => e.variant).filter(Boolean));
    assert.ok(variants.size >= 8, [...variants].join());
    const late = log.find((e) => e.kind === "late")!;
    assert.equal(late.time, T0 - 20 * 60_000);
    for (const e of log.filter((e) => e.kind === "out_of_order")) {
      assert.ok(e.time! <= T0 - 1000 && e.time! > T0 - 5000);
    }
    // Realistic fields on a valid tick.
    const valid = parseFrame(
      frames[log.findIndex((e) => e.kind === "valid" && e.symbol === "AAPL")],
      { nowMs: T0 },
    );
    assert.equal(valid.ok, true);
    if (valid.ok === true) {
      for (const k of ["exchange", "quoteType", "marketHours", "changePercent", "dayVolume"]) {
        assert.ok(k in valid.tick, k);
      }
      assert.equal(valid.tick.priceHint, 2);
    }
  } finally {
    c.ws.close();
    await sim.close();
  }
});

Deno.test("same seed and clock give the same frames", async () => {
  const run = async () => {
    const sim = await startSimulator({
      ...quiet,
      seed: 11,
      clock: () => T0,
      malformedFraction: 0.3,
    });
    const c = await connect(sim, 1);
    await subscribe(sim, c, ["MSFT", "GOOG"]);
    sim.emit(50);
    const frames = await c.next(50);
    c.ws.close();
    await sim.close();
    return frames;
  };
  assert.deepStrictEqual(await run(), await run());
});

Deno.test("unsubscribe stops a symbol's frames", async () => {
  const sim = await startSimulator({ ...quiet, clock: () => T0 });
  const c = await connect(sim, 2);
  try {
    await subscribe(sim, c, ["AAPL", "MSFT"]);
    sim.emit(40);
    const both = new Set((await c.next(40)).map((f) => {
      const r = parseFrame(f, { nowMs: T0 });
      return r.ok === true ? r.tick.id : "?";
    }));
    assert.deepStrictEqual([...both].sort(), ["AAPL", "MSFT"]);

    c.send({ unsubscribe: ["MSFT"] });
    await until(() => !sim.symbols().includes("MSFT"), "unsubscribe");
    sim.emit(40);
    for (const f of await c.next(40)) {
      const r = parseFrame(f, { nowMs: T0 });
      assert.ok(r.ok === true && r.tick.id === "AAPL");
    }

    c.send({ unsubscribe: ["AAPL"] });
    await until(() => sim.symbols().length === 0, "unsubscribe all");
    assert.equal(sim.emit(20), 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.frames.length, 80);
  } finally {
    c.ws.close();
    await sim.close();
  }
});

Deno.test("v1 sends bare base64; v2 heartbeats are ignored envelopes; one log per connection", async () => {
  const sim = await startSimulator({ port: 0, rate: 0, heartbeatMs: 30, clock: () => T0 });
  const c1 = await connect(sim, 1);
  const c2 = await connect(sim, 2);
  try {
    await subscribe(sim, c1, ["IBM"]);
    await subscribe(sim, c2, ["IBM"]);
    await until(() => c2.frames.some((f) => f.includes("heartbeat")), "a heartbeat");
    sim.emit(5);
    await until(() => c1.frames.length >= 5, "v1 frames");
    assert.equal(c1.frames.length, 5, "v1 gets no heartbeats");
    for (const f of c1.frames) {
      assert.match(f, /^[A-Za-z0-9+/]+=*$/);
      const r = parseFrame(f, { nowMs: T0 });
      assert.ok(r.ok === true && r.version === 1 && r.tick.id === "IBM");
    }
    const hb = c2.frames.find((f) => f.includes("heartbeat"))!;
    assert.deepStrictEqual(parseFrame(hb, { nowMs: T0 }), { ok: "ignored", type: "heartbeat" });
    const log = sim.sent();
    const byConn = Map.groupBy(log, (e) => e.version);
    assert.equal(byConn.get(1)!.length, 5);
    assert.ok(byConn.get(2)!.some((e) => e.kind === "heartbeat"));
    // Both connections got the same ticks, encoded per version.
    const v2Ticks = byConn.get(2)!.filter((e) => e.kind === "valid");
    assert.deepStrictEqual(
      byConn.get(1)!.map((e) => [e.symbol, e.price, e.time]),
      v2Ticks.map((e) => [e.symbol, e.price, e.time]),
    );
  } finally {
    c1.ws.close();
    c2.ws.close();
    await sim.close();
  }
});

Deno.test("forced disconnects close the sockets (disconnectAll and disconnectEvery)", async () => {
  const sim = await startSimulator({ ...quiet, disconnectEvery: 0.15 });
  try {
    const c = await connect(sim, 2);
    const ev = await c.closed;
    assert.equal(ev.code, 1012);
    const c2 = await connect(sim, 2);
    await until(() => sim.connections() === 1, "connection registered");
    sim.disconnectAll();
    assert.equal((await c2.closed).code, 1012);
    await until(() => sim.connections() === 0, "connections dropped");
  } finally {
    await sim.close();
  }
});

Deno.test("paced rate, log file and replay", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const logFile = `${dir}/sent.jsonl`;
    const sim = await startSimulator({ port: 0, rate: 200, heartbeatMs: 0, logFile });
    const c = await connect(sim, 2);
    await subscribe(sim, c, ["AAPL"]);
    await c.next(20);
    c.ws.close();
    await c.closed;
    await sim.close();
    const lines = (await Deno.readTextFile(logFile)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepStrictEqual(lines, sim.sent());
    assert.ok(lines.length >= 20);
    assert.deepStrictEqual(lines.map((l) => l.frame).slice(0, 20), c.frames.slice(0, 20));

    // Replay what was recorded, plus a garbage line, to a new client.
    const replay = [...c.frames.slice(0, 10), "garbage!"];
    const sim2 = await startSimulator({ port: 0, rate: 0, heartbeatMs: 0, replay });
    const r = await connect(sim2, 1);
    await subscribe(sim2, r, ["AAPL"]);
    sim2.emit(11);
    await sim2.finished;
    assert.deepStrictEqual(await r.next(11), replay);
    assert.deepStrictEqual(sim2.sent().map((e) => e.kind), new Array(11).fill("replay"));
    assert.equal(sim2.sent()[10].expect, "bad_base64");
    r.ws.close();
    await sim2.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: --help, bad flags, and a short run with --log", async () => {
  const log = console.log;
  const error = console.error;
  const out: string[] = [];
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => out.push(a.join(" "));
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await main(["--help"]), 0);
    assert.match(out.join("\n"), /--malformed-fraction/);
    assert.equal(await main(["--nope"]), 2);
    assert.equal(await main(["--rate", "fast"]), 2);
    assert.equal(await main(["--duration", "0"]), 2);
    assert.equal(await main(["--port", "0", "--late-fraction", "2"]), 2);
    assert.equal(await main(["--port", "0", "--speed", "0"]), 2);
    assert.equal(
      await main(["--port", "0", "--from", new Date(Date.now() + 60_000).toISOString()]),
      2,
    );
    assert.equal(await main(["--port", "0", "--from", "later"]), 2);
    assert.equal(await main(["--replay", `${dir}/missing.txt`]), 1);
    assert.equal(await main(["--port", "0", "--duration", "0.2", "--log", `${dir}/log.jsonl`]), 0);
    assert.equal(await Deno.readTextFile(`${dir}/log.jsonl`), "");
  } finally {
    console.log = log;
    console.error = error;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("event clock: never ahead of the wall clock, N times faster until it catches up", () => {
  const rnd = prng(42);
  for (let i = 0; i < 2000; i++) {
    const wallStart = T0 + Math.floor(rnd() * 1e9);
    const speed = rnd() < 0.2 ? 1 : rnd() < 0.1 ? 0.5 : 1 + Math.floor(rnd() * 100);
    const eventStart = wallStart - Math.floor(rnd() * 7_200_000);
    const o = { wallStart, eventStart, speed };
    for (let k = 0; k < 20; k++) {
      const w = wallStart + Math.floor(rnd() * 600_000);
      const e = eventTimeAt(w, o);
      const linear = Math.floor(eventStart + (w - wallStart) * speed);
      assert.ok(e <= w, `never in the future: ${e} > ${w}`);
      assert.equal(e, Math.min(w, linear));
    }
    assert.equal(eventTimeAt(wallStart, o), eventStart);
    // Monotonic.
    const ws = Array.from({ length: 30 }, () => wallStart + Math.floor(rnd() * 600_000))
      .sort((a, b) => a - b);
    for (let k = 1; k < ws.length; k++) {
      assert.ok(eventTimeAt(ws[k], o) >= eventTimeAt(ws[k - 1], o));
    }
    // eventStartFor: the clock meets the wall clock exactly when the duration has passed.
    const durationMs = 1000 + Math.floor(rnd() * 600_000);
    if (speed > 1) {
      const start = eventStartFor(wallStart, { speed, durationMs });
      const t = { wallStart, eventStart: start, speed };
      assert.ok(wallStart + durationMs - eventTimeAt(wallStart + durationMs, t) <= 1);
      assert.ok(eventTimeAt(wallStart + durationMs - 1000, t) < wallStart + durationMs - 1000);
    }
  }
});

Deno.test("CLI --from/--speed/--duration: where the event clock starts", () => {
  const now = T0;
  assert.equal(eventStartOf(undefined, { speed: 1, durationMs: 60_000, now }), undefined);
  assert.equal(eventStartOf(undefined, { speed: 20, now }), undefined, "simulator default");
  assert.equal(eventStartOf(undefined, { speed: 20, durationMs: 60_000, now }), now - 19 * 60_000);
  assert.equal(eventStartOf("30m", { speed: 20, durationMs: 60_000, now }), now - 1_800_000);
  assert.equal(eventStartOf(new Date(now - 5000).toISOString(), { speed: 2, now }), now - 5000);
  assert.throws(
    () => eventStartOf(new Date(now + 5000).toISOString(), { speed: 2, now }),
    /future/,
  );
  assert.throws(() => eventStartOf("soon", { speed: 2, now }), /--from "soon"/);
});

Deno.test("accelerated clock: ticks, late and out-of-order ticks, sessions and FX without volume", async () => {
  const clock = fakeClock();
  const speed = 20;
  const sessionMs = 600_000; // 10 min of event time: 30 s of wall time at 20x
  const sim = await startSimulator({
    ...quiet,
    seed: 5,
    clock: clock.now,
    speed,
    eventStart: T0 - 3_600_000,
    sessionMs,
    lateFraction: 0.05,
    outOfOrderFraction: 0.2,
    futureFraction: 0.02,
  });
  const c = await connect(sim, 2);
  try {
    const symbols = ["AAPL", "BTC-USD", "EURUSD=X"];
    await subscribe(sim, c, symbols);
    // 4 minutes of wall time in 100 ms steps: 80 min of event time (it catches up at ~3.2 min).
    for (let i = 0; i < 2400; i++) {
      clock.advance(100);
      sim.emit(1);
    }
    const log = sim.sent();
    const frames = await c.next(log.length, 5000);
    const ticks = log.map((e, i) => ({ e, r: parseFrame(frames[i], { nowMs: e.at }) }));
    const lateBy = 20 * 60_000;
    const prevSession = new Map<string, { session: number; volume: number }>();
    let resets = 0;
    for (const { e, r } of ticks) {
      const now = eventTimeAt(e.at, sim.timing);
      if (e.kind === "future") {
        assert.ok(r.ok === false && r.reason === "future_time");
        continue;
      }
      assert.ok(r.ok === true, JSON.stringify(e));
      if (r.ok !== true) continue;
      assert.ok(r.tick.time <= e.at, "never ahead of the wall clock");
      if (e.kind === "valid") assert.equal(r.tick.time, now);
      if (e.kind === "late") assert.equal(r.tick.time, now - lateBy);
      if (e.kind === "out_of_order") {
        const scale = now < e.at ? speed : 1;
        assert.ok(r.tick.time <= now - 1000 * scale && r.tick.time > now - 5000 * scale);
      }
      // Volume: FX none; others cumulative within a session of the event clock, reset after.
      if (e.symbol === "EURUSD=X") {
        assert.equal(r.tick.dayVolume, undefined);
        continue;
      }
      const v = r.tick.dayVolume!;
      assert.ok(Number.isSafeInteger(v) && v > 0);
      const session = Math.floor(now / sessionMs);
      const p = prevSession.get(e.symbol!);
      if (p !== undefined) {
        if (session === p.session) assert.ok(v > p.volume, "cumulative within a session");
        else {
          assert.ok(v <= 49_901, `a new session restarts the volume: ${v}`); // one increment
          resets++;
        }
      }
      prevSession.set(e.symbol!, { session, volume: v });
    }
    assert.ok(resets >= 10, `sessions restarted: ${resets}`);
    // The clock ran accelerated, then caught up with the wall clock.
    const first = ticks.find((t) => t.e.kind === "valid")!;
    assert.ok(first.e.at - (first.r.ok === true ? first.r.tick.time : 0) > 3_000_000);
    const last = ticks.findLast((t) => t.e.kind === "valid")!;
    assert.equal(last.r.ok === true && last.r.tick.time, last.e.at);

    // The aggregator's engine classifies the late ticks late and accepts the out-of-order ones
    // (demo settings: 1m and 5m windows, 2 min watermark).
    const engine = new WindowEngine({ windows: [60_000, 300_000], watermarkDelayMs: 120_000 });
    let offset = 0;
    const kinds = new Map<number, string>();
    for (const { e, r } of ticks) {
      if (r.ok !== true) continue;
      kinds.set(offset, e.kind);
      engine.fold({
        symbol: r.tick.id,
        eventTime: r.tick.time,
        price: r.tick.price,
        dayVolume: r.tick.dayVolume,
        partition: 0,
        offset: offset++,
      });
    }
    const res = engine.trigger();
    const lateKinds = res.late.map((l) => kinds.get(l.offset));
    const sentLate = [...kinds.entries()].filter(([o, k]) => k === "late" && o > 0).length;
    assert.ok(sentLate > 20, `late ticks sent: ${sentLate}`);
    assert.equal(lateKinds.filter((k) => k === "late").length, sentLate, "every late tick is late");
    assert.deepEqual(lateKinds.filter((k) => k !== "late"), [], "only late ticks are late");
    assert.ok(res.windows.some((w) => w.isFinal && w.windowMs === 60_000));
    assert.ok(res.windows.some((w) => w.isFinal && w.windowMs === 300_000));
    assert.ok(res.windows.some((w) => w.vwap !== null && w.volume > 0), "volume and VWAP");
    assert.ok(res.windows.filter((w) => w.symbol === "EURUSD=X").every((w) => w.vwap === null));
  } finally {
    c.ws.close();
    await sim.close();
  }
});

Deno.test("simulator: an event start in the future or a bad speed is refused", async () => {
  await assert.rejects(
    startSimulator({ ...quiet, clock: () => T0, speed: 10, eventStart: T0 + 1 }),
    /eventStart must be at or before the wall clock/,
  );
  await assert.rejects(startSimulator({ ...quiet, speed: 0 }), /speed must be/);
  await assert.rejects(startSimulator({ ...quiet, sessionMs: 0 }), /sessionMs/);
});
