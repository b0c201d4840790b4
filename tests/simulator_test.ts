import assert from "node:assert/strict";
import { parseFrame } from "../ingest/frame.ts";
import { main } from "../ingest/simulate_main.ts";
import { type SentFrame, type Simulator, startSimulator } from "../ingest/simulator.ts";

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
    const valid = parseFrame(frames[log.findIndex((e) => e.kind === "valid")], { nowMs: T0 });
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
    assert.equal(await main(["--replay", `${dir}/missing.txt`]), 1);
    assert.equal(await main(["--port", "0", "--duration", "0.2", "--log", `${dir}/log.jsonl`]), 0);
    assert.equal(await Deno.readTextFile(`${dir}/log.jsonl`), "");
  } finally {
    console.log = log;
    console.error = error;
    await Deno.remove(dir, { recursive: true });
  }
});
