// Stop signals the way supervisors send them, against the REAL Kafka broker (and PostgreSQL for
// `start`): `kill -TERM -- -PGID` on `deno task ingest` / `deno task start` delivers SIGTERM to
// `deno task` and to its child, and `deno task` forwards its own copy; the supervisor then sends
// the group a second SIGTERM. One stop request: everything ingest received reaches the topic or
// the DLQ, the --record file has every frame too, and nothing exits "without flushing".
// Both tests run the simulator on 127.0.0.1:8765 (the launcher would allow any --source; these
// tests keep the demo's port), so they wait for the port to be free. `deno task` runs the launcher,
// which runs the command in the same process group and passes on the signals it gets: the
// command sees more copies of one request, which it coalesces.
import assert from "node:assert/strict";
import { parseFrame } from "../ingest/frame.ts";
import { type SentFrame, type Simulator, startSimulator } from "../ingest/simulator.ts";
import { pumpLines } from "../common/child.ts";
import { openKv } from "../common/kv.ts";
import { readLaunches } from "../sensor/mod.ts";
import { readLease, readProgress } from "../aggregate/mod.ts";
import { ensureTopic } from "../common/kafka.ts";
import { tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";
import { cleanupRows, generateStream, produceStream } from "./_helpers/aggregate_stream.ts";
import {
  descendants,
  missingFrom,
  type Proc,
  randomPrefix,
  readTopic,
  stillRunning,
  tickId,
  waitFor,
} from "./_helpers/e2e_pipeline.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const PORT = 8765;
const SOURCE = `ws://127.0.0.1:${PORT}/?version=2`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts the simulator on port 8765, waiting up to 3 minutes while another test holds it. */
async function simulatorOn8765(options: Parameters<typeof startSimulator>[0]): Promise<Simulator> {
  const end = Date.now() + 180_000;
  for (;;) {
    try {
      return await startSimulator({ ...options, port: PORT });
    } catch (e) {
      if (Date.now() > end) {
        throw new Error(`Port ${PORT} stayed busy for 3 minutes: ${(e as Error).message}`);
      }
      console.log(`port ${PORT} busy (another test?): waiting`);
      await sleep(2_000);
    }
  }
}

/** Live processes whose process group is `pgid`, from /proc. */
function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (f[0] !== "Z" && Number(f[2]) === pgid) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

/** `kill -TERM -- -pgid`, as a supervisor does; false when the group is already gone. */
function groupKill(pgid: number): boolean {
  try {
    Deno.kill(-pgid, "SIGTERM");
    return true;
  } catch {
    return false;
  }
}

/** Spawns `deno task <args>` as the leader of its own process group, collecting its output. */
function denoTask(args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: true, // setsid: its own session and process group, pgid = pid
  }).spawn();
  const lines = { stdout: [] as string[], stderr: [] as string[] };
  const pumps = Promise.all([
    pumpLines(child.stdout, (l) => lines.stdout.push(l)),
    pumpLines(child.stderr, (l) => lines.stderr.push(l)),
  ]);
  return {
    child,
    lines,
    output: () => [...lines.stdout, ...lines.stderr].join("\n"),
    done: async () => {
      const status = await child.status;
      await pumps;
      return status;
    },
  };
}

/**
 * Group SIGTERM, then the supervisor's second one `gap` ms later, or as soon as the output matches
 * `gap` (a line the command logs after its flush, while it closes); resolves to the exit status.
 */
async function groupKillTwice(task: ReturnType<typeof denoTask>, gap: number | RegExp) {
  const pgid = task.child.pid;
  assert.ok(groupMembers(pgid).length >= 2, "deno task and its child share the group");
  assert.ok(groupKill(pgid));
  if (typeof gap === "number") await sleep(gap);
  else await waitFor(`output matching ${gap}`, () => gap.test(task.output()), { everyMs: 1 });
  const second = groupKill(pgid);
  const status = await task.done();
  return { status, second };
}

/** SIGKILLs what is left of the task's process group (after a failed test) and reaps it. */
async function killGroup(task: ReturnType<typeof denoTask>): Promise<void> {
  for (const pid of groupMembers(task.child.pid)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await task.done().catch(() => {});
}

const NO_FLUSH_CUT = /without flushing|without finishing the flush/;

Deno.test({
  name:
    "signals: group SIGTERM twice to `deno task ingest --record`: every frame in topic/DLQ and record",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const topic = uniqueName("t-sig-ingest");
    const record = `.data/test/${topic}.rec`;
    const spoolDir = `.data/test/spool-${topic}`;
    const sim = await simulatorOn8765({ rate: 500, malformedFraction: 0.05, heartbeatMs: 0 });
    const task = denoTask([
      "ingest",
      "--source",
      SOURCE,
      "--symbols",
      "AAPL,MSFT,BTC-USD",
      "--topic",
      topic,
      "--record",
      record,
      "--spool-dir",
      spoolDir,
      "--progress-every",
      "300ms",
    ]);
    try {
      await waitFor(
        "ingest to receive 300 frames",
        () => /frames=[3-9]\d{2,}|frames=\d{4,}/.test(task.output()),
        {
          timeoutMs: 60_000,
          everyMs: 50,
        },
      );
      // Mid-stream (the simulator keeps sending): the group kill, then the supervisor's second
      // while ingest flushes.
      const { status, second } = await groupKillTwice(task, 50);
      const out = task.output();
      assert.equal(status.code, 0, out.slice(-3000));
      assert.doesNotMatch(out, NO_FLUSH_CUT);
      // (How many copies arrive varies: the kernel merges a pending SIGTERM with a new one.)
      assert.deepEqual(groupMembers(task.child.pid), [], "the whole group exited");
      const stopped = /ingest stopped \(SIGTERM\): frames=(\d+)/.exec(out);
      assert.ok(stopped, out.slice(-3000));
      const frames = (await Deno.readTextFile(record)).split("\n").filter((l) => l !== "");
      assert.equal(frames.length, Number(stopped[1]), "the record holds every frame received");

      // Every frame received is in the topic (valid) or the DLQ (rejected), exactly once.
      const now = Date.now();
      const wantTicks: string[] = [];
      const wantDlq: string[] = [];
      for (const f of frames) {
        const r = parseFrame(f, { nowMs: now });
        if (r.ok === true) wantTicks.push(JSON.stringify(r.tick));
        else if (r.ok === false) wantDlq.push(f);
      }
      const ticks = (await readTopic(kafka, topic)).flat();
      const dlq = (await readTopic(kafka, `${topic}.dlq`)).flat();
      assert.ok(wantTicks.length > 250, `ticks received: ${wantTicks.length}`);
      assert.deepEqual(missingFrom(wantTicks, ticks.map((m) => m.value)), [], "no tick lost");
      assert.equal(ticks.length, wantTicks.length, "and none extra");
      assert.deepEqual(
        dlq.map((m) => m.value).sort(),
        wantDlq.sort(),
        "every rejected frame is a dead letter, once",
      );
      console.log(
        `ingest: frames=${frames.length} ticks=${ticks.length} dlq=${dlq.length}, second group ` +
          `kill ${second ? "delivered" : "found the group gone"}, repeated signals coalesced=${
            out.match(/Repeated stop signal/g)?.length ?? 0
          }`,
      );
    } finally {
      await killGroup(task);
      await sim.close();
      await dropTopic(topic);
      await Deno.remove(record).catch(() => {});
      await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "signals: group SIGTERM twice to `deno task start` (LOG_FORMAT=json): exit 0, clean children, no frame lost, JSON lines only",
  ...opts,
  async fn() {
    const kafka = testKafka();
    const pool = testPool();
    const topic = uniqueName("t-sig-start");
    const kvPath = await tempKvPath("sig-start");
    const prefix = randomPrefix();
    const symbols = [`${prefix}A`, `${prefix}B`, `${prefix}C-USD`];
    await cleanupRows(pool, prefix, topic);
    const sim = await simulatorOn8765({
      rate: 200,
      seed: 12,
      malformedFraction: 0.02,
      outOfOrderFraction: 0.05,
      heartbeatMs: 0,
    });
    const task = denoTask([
      "start",
      "--topic",
      topic,
      "--kv",
      kvPath,
      "--source",
      SOURCE,
      "--symbols",
      symbols.join(","),
      "--every",
      "1s",
      "--trigger",
      "1s",
      "--idle-timeout",
      "2m",
    ], { LOG_FORMAT: "json" });
    const seen = new Map<number, Proc>();
    const watch = setInterval(() => {
      for (const p of descendants(task.child.pid)) seen.set(p.pid, p);
    }, 200);
    let exited = false;
    try {
      await waitFor(
        "the aggregator launched by start's sensor",
        () => descendants(task.child.pid).some((p) => /main\.ts aggregate /.test(p.cmdline)),
        {
          timeoutMs: 90_000,
        },
      );
      // The aggregator is up (it wrote a progress record), so it is stopped, not cut short at
      // birth: a signal before a process runs its first line of JavaScript ends it the default
      // way (it has nothing to flush yet).
      const kvWatch = await openKv(kvPath);
      try {
        await waitFor("a progress record", () => readProgress(kvWatch, topic), {
          timeoutMs: 60_000,
        });
      } finally {
        kvWatch.close();
      }
      await waitFor(
        "ticks flowing",
        () => sim.sent().filter((s) => s.expect === "ok").length > 300,
        { timeoutMs: 30_000 },
      );
      const { status, second } = await groupKillTwice(task, 50);
      exited = true;
      clearInterval(watch);
      const out = task.output();
      assert.equal(status.code, 0, out.slice(-4000));
      // LOG_FORMAT=json holds under start: every line is one JSON object (deno task's own
      // "Task start ..." announcement aside), children's lines carry their name in `child`.
      const recs: Record<string, unknown>[] = [];
      for (const line of [...task.lines.stdout, ...task.lines.stderr]) {
        if (line.startsWith("Task start ")) continue;
        let rec;
        try {
          rec = JSON.parse(line);
        } catch {
          assert.fail(`Not a JSON line under LOG_FORMAT=json: ${line}`);
        }
        assert.ok(rec !== null && typeof rec === "object" && !Array.isArray(rec), line);
        recs.push(rec);
      }
      const msg = (r: Record<string, unknown>) => String(r.msg ?? "");
      assert.deepEqual(recs.filter((r) => NO_FLUSH_CUT.test(msg(r))), []);
      assert.deepEqual(
        [...seen.values()].filter(stillRunning),
        [],
        "no process of start's tree outlives it",
      );
      // The children exit cleanly: ingest, the sensor and the dashboard 0, the sensor's
      // aggregator 0.
      const stoppedRec = recs.find((r) => r.component === "start" && r.msg === "stopped");
      assert.ok(stoppedRec, out.slice(-4000));
      assert.deepEqual(stoppedRec.exits, { ingest: 0, sensor: 0, dashboard: 0 });
      assert.ok(
        recs.some((r) =>
          r.msg === "aggregator stopped" && r.reason === "stopped" && r.child === "sensor/aggregate"
        ),
        `the aggregator (relayed by the sensor, then by start) stopped on request: ${
          JSON.stringify(recs.filter((r) => String(r.child).includes("sensor")).slice(-8))
        }`,
      );
      const kv = await openKv(kvPath);
      const launches = await readLaunches(kv, topic).finally(() => kv.close());
      assert.ok(launches.length >= 1);
      assert.equal(launches.at(-1)?.exitCode, 0, JSON.stringify(launches));

      // Every frame ingest received reaches Kafka: ingest received the first N frames the
      // simulator sent on its connection (one connection, in order).
      const ingestStopped = recs.find((r) =>
        r.child === "ingest" && /^ingest stopped \(SIGTERM\)/.test(msg(r))
      );
      const stopped = /frames=(\d+)/.exec(ingestStopped ? msg(ingestStopped) : "");
      assert.ok(stopped, out.slice(-4000));
      const ours = new Set(symbols);
      const sent = sim.sent();
      const conns = new Set(sent.filter((s) => ours.has(s.symbol ?? "")).map((s) => s.conn));
      assert.equal(conns.size, 1, `ingest used one connection: ${[...conns]}`);
      const [conn] = conns;
      const received: SentFrame[] = sent.filter((s) => s.conn === conn).slice(
        0,
        Number(stopped[1]),
      );
      assert.equal(received.length, Number(stopped[1]), "the simulator sent what ingest counted");
      const valid = received.filter((s) => s.expect === "ok").map((s) =>
        tickId({ symbol: s.symbol, time: s.time!, price: s.price! })
      );
      const rejected = received.filter((s) => s.expect !== "ok" && s.expect !== "ignored");
      const inKafka = (await readTopic(kafka, topic)).flat().map((r) =>
        tickId(JSON.parse(r.value))
      );
      // Ingest's count lags the simulator's by what was in flight when the signal came.
      assert.ok(valid.length > 200, `ticks received: ${valid.length}`);
      assert.deepEqual(missingFrom(valid, inKafka), [], "every tick ingest received is in Kafka");
      assert.equal(inKafka.length, valid.length, "and nothing else");
      const dlq = (await readTopic(kafka, `${topic}.dlq`)).flat();
      assert.equal(dlq.length, rejected.length, "every rejected frame is a dead letter");
      console.log(
        `start: frames=${received.length} ticks=${inKafka.length} dlq=${dlq.length} ` +
          `aggregator runs=${launches.length}, processes seen=${seen.size}, second group kill ` +
          `${second ? "delivered" : "found the group gone"}, repeated signals coalesced=${
            recs.filter((r) => r.component === "start" && /Repeated stop/.test(msg(r))).length
          }`,
      );
    } finally {
      clearInterval(watch);
      if (!exited) {
        for (const p of [...seen.values(), ...descendants(task.child.pid)]) {
          try {
            Deno.kill(p.pid, "SIGKILL");
          } catch { /* gone */ }
        }
        try {
          Deno.kill(-task.child.pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await task.done().catch(() => {});
      await sim.close();
      await dropTopic(topic);
      await cleanupRows(pool, prefix, topic);
      await pool.end();
      for (const f of [kvPath, `${kvPath}-shm`, `${kvPath}-wal`]) {
        await Deno.remove(f).catch(() => {});
      }
      await Deno.remove(`.data/spool/${topic}`, { recursive: true }).catch(() => {});
    }
  },
});

/** A topic holding `perPartition` ticks per partition for a test's own symbols. */
async function topicWithTicks(topic: string, prefix: string, perPartition: number) {
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopic(admin, topic, { partitions: 2 });
  await admin.disconnect();
  const stream = generateStream({
    seed: 3,
    prefix,
    perPartition,
    partitions: 2,
    watermarkDelayMs: 60_000,
    windowMs: 60_000,
  });
  await produceStream(kafka, topic, stream, { from: 0, to: perPartition });
  return kafka;
}

async function dropTopic(topic: string): Promise<void> {
  const admin = testKafka().admin();
  await admin.connect();
  const existing = new Set(await admin.listTopics());
  const topics = [topic, `${topic}.dlq`].filter((t) => existing.has(t));
  if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => {});
  await admin.disconnect();
}

/** Waits until the aggregator of `topic` wrote a progress record (it is up, not starting). */
async function aggregatorUp(kvPath: string, topic: string): Promise<void> {
  const kv = await openKv(kvPath);
  try {
    await waitFor("a progress record", () => readProgress(kv, topic), { timeoutMs: 90_000 });
  } finally {
    kv.close();
  }
}

// The second SIGTERM 50 ms after the first, and (aggregate) as soon as the aggregator logs that
// it stopped, while it and the launcher close: a copy of the request, not a kill (exit 0, not 143).
for (
  const [command, second] of [
    ["aggregate", 50],
    ["aggregate", /aggregator stopped/],
    ["sensor", 50],
  ] as const
) {
  Deno.test({
    name: `signals: group SIGTERM twice (the second ${
      typeof second === "number" ? `${second} ms later` : "as the aggregator closes"
    }) to \`deno task ${command}\`: the aggregator checkpoints and exits 0`,
    ...opts,
    async fn() {
      const pool = testPool();
      const topic = uniqueName(`t-sig-${command}`);
      const kvPath = await tempKvPath(`sig-${command}`);
      const prefix = randomPrefix();
      await topicWithTicks(topic, prefix, 300);
      const flags = [
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--trigger",
        "500ms",
        "--idle-timeout",
        "2m",
      ];
      const task = denoTask(
        command === "aggregate"
          ? [command, ...flags, "--group", uniqueName("g-sig")]
          : [command, ...flags, "--every", "1s"],
      );
      try {
        await aggregatorUp(kvPath, topic);
        // The group holds deno task, the launcher and the command; for the sensor its
        // aggregator too: the aggregator gets the group's SIGTERM and then the sensor's.
        const members = groupMembers(task.child.pid).length;
        assert.equal(members, command === "sensor" ? 4 : 3, `group members: ${members}`);
        const killed = await groupKillTwice(task, second);
        const out = task.output();
        assert.equal(killed.status.code, 0, out.slice(-4000));
        assert.doesNotMatch(out, NO_FLUSH_CUT);
        assert.match(out, /aggregator stopped reason=stopped/);
        assert.deepEqual(groupMembers(task.child.pid), [], "the whole group exited");
        const kv = await openKv(kvPath);
        try {
          const progress = await readProgress(kv, topic);
          assert.equal(progress?.reason, "final", "a final trigger and checkpoint");
          assert.equal(await readLease(kv, topic), null, "the lease was released");
          if (command === "sensor") {
            const launches = await readLaunches(kv, topic);
            assert.equal(launches.at(-1)?.exitCode, 0, JSON.stringify(launches));
          }
        } finally {
          kv.close();
        }
        console.log(
          `${command}: second group kill ${
            killed.second ? "delivered" : "found the group gone"
          }, ` +
            `repeated signals coalesced=${out.match(/Repeated stop signal/g)?.length ?? 0}`,
        );
      } finally {
        for (const pid of groupMembers(task.child.pid)) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* gone */ }
        }
        await task.done().catch(() => {});
        await dropTopic(topic);
        await cleanupRows(pool, prefix, topic);
        await pool.end();
        for (const f of [kvPath, `${kvPath}-shm`, `${kvPath}-wal`]) {
          await Deno.remove(f).catch(() => {});
        }
      }
    },
  });
}
