import assert from "node:assert/strict";
import type { Tick } from "../../aggregate/engine.ts";
import { committedOf, measureProcess, parseProcStat } from "../../bench/suites/_backlog.ts";
import { engineTickChunks, engineTicks } from "../../bench/suites/_data.ts";
import { mulberry32 as prng } from "../../common/prng.ts";
import {
  createWindowOracle,
  diffIsClean,
  diffWindows,
  OracleError,
  type OracleWindow,
  windowKey,
} from "../../bench/suites/_oracle.ts";
import { jdbcOf, sparkBatches } from "../../bench/suites/_spark.ts";
import { main } from "../../bench/run.ts";
import { UsageError } from "../../common/cli.ts";

Deno.test("engineTickChunks yields exactly engineTicks' sequence, whatever the chunk size", () => {
  const rand = prng(42);
  const cases = [[0, 5, 10], [1, 3, 1], [1000, 12, 7], [5000, 1000, 4999]];
  for (let round = 0; round < 20; round++) {
    cases.push([
      Math.floor(rand() * 3000),
      1 + Math.floor(rand() * 20),
      1 + Math.floor(rand() * 700),
    ]);
  }
  for (const [n, symbols, chunkSize] of cases) {
    const options = { tickMs: 1 + (n % 300), seed: n, start: 1_000_000, prefix: "S" };
    const whole = engineTicks(n, symbols, options);
    const chunks = [...engineTickChunks(n, symbols, { ...options, chunkSize })];
    assert.ok(chunks.every((c) => c.length <= chunkSize && c.length > 0));
    assert.equal(chunks.length, Math.ceil(n / chunkSize));
    assert.deepEqual(chunks.flat(), whole);
    assert.equal(whole.length, n);
  }
});

// The README's worked example: one partition, AAPL, 5-minute windows, 15-minute delay.
Deno.test("oracle reproduces the README's worked example", () => {
  const at = (hh: number, mm: number, ss: number) => Date.UTC(2024, 0, 2, hh, mm, ss);
  const ticks: [number, number][] = [
    [at(9, 31, 10), 100],
    [at(9, 33, 0), 101],
    [at(9, 36, 0), 102],
    [at(9, 52, 30), 103],
    [at(9, 34, 59), 99], // late: end 09:35 <= watermark 09:37:30
    [at(9, 38, 0), 104],
  ];
  const o = createWindowOracle();
  ticks.forEach(([eventTime, price], offset) =>
    o.fold({ symbol: "AAPL", eventTime, price, partition: 0, offset })
  );
  assert.equal(o.late, 1);
  assert.equal(o.seen, 6);
  const w930 = o.windows.get(windowKey("AAPL", at(9, 30, 0)))!;
  assert.deepEqual([w930.count, w930.open, w930.close, w930.high, w930.low], [
    2,
    100,
    101,
    101,
    100,
  ]);
  const w935 = o.windows.get(windowKey("AAPL", at(9, 35, 0)))!;
  assert.deepEqual([w935.count, w935.sum / w935.count, w935.close], [2, 103, 104]);
  assert.equal(o.windows.size, 3);
});

/** A brute-force restatement of the rules: quadratic, for small random inputs. */
function bruteForce(ticks: Tick[], delay: number | null): Map<string, OracleWindow> {
  const out = new Map<string, OracleWindow>();
  ticks.forEach((t, i) => {
    const before = ticks.slice(0, i).filter((u) => u.partition === t.partition);
    const wm = delay === null || before.length === 0
      ? -Infinity
      : Math.max(...before.map((u) => u.eventTime)) - delay;
    const start = Math.floor(t.eventTime / 300_000) * 300_000;
    if (start + 300_000 <= wm) return;
    const key = windowKey(t.symbol, start);
    const prev = out.get(key);
    if (!prev) {
      out.set(key, {
        symbol: t.symbol,
        start,
        count: 1,
        sum: t.price,
        open: t.price,
        high: t.price,
        low: t.price,
        close: t.price,
        first: t.eventTime,
        last: t.eventTime,
        openOffset: t.offset,
        closeOffset: t.offset,
      });
      return;
    }
    prev.count++;
    prev.sum += t.price;
    prev.high = Math.max(prev.high, t.price);
    prev.low = Math.min(prev.low, t.price);
    const earlier = t.eventTime < prev.first ||
      (t.eventTime === prev.first && t.offset < prev.openOffset);
    if (earlier) [prev.first, prev.open, prev.openOffset] = [t.eventTime, t.price, t.offset];
    const later = t.eventTime > prev.last ||
      (t.eventTime === prev.last && t.offset > prev.closeOffset);
    if (later) [prev.last, prev.close, prev.closeOffset] = [t.eventTime, t.price, t.offset];
  });
  return out;
}

Deno.test("oracle equals a brute-force restatement on random out-of-order input", () => {
  const rand = prng(7);
  for (let round = 0; round < 200; round++) {
    const partitions = 1 + Math.floor(rand() * 3);
    const offsets = new Array(partitions).fill(0);
    const ticks: Tick[] = [];
    const n = Math.floor(rand() * 80);
    for (let i = 0; i < n; i++) {
      const s = Math.floor(rand() * 4);
      const p = s % partitions;
      // Coarse times so that ties on event time happen; jumps and lateness of up to an hour.
      const eventTime = 1_700_000_000_000 + Math.floor(rand() * 40) * 90_000;
      const price = Math.floor(rand() * 50) / 4;
      ticks.push({ symbol: `S${s}`, eventTime, price, partition: p, offset: offsets[p]++ });
    }
    for (const delay of [900_000, 0, null]) {
      const o = createWindowOracle({ watermarkDelayMs: delay });
      for (const t of ticks) o.fold(t);
      const expected = bruteForce(ticks, delay);
      assert.deepEqual(new Map(o.windows), expected, `round ${round}, delay ${delay}`);
      const folded = [...o.windows.values()].reduce((a, w) => a + w.count, 0);
      assert.equal(folded + o.late, n);
      if (delay === null) assert.equal(o.late, 0);
    }
  }
});

Deno.test("oracle rejects offsets that do not increase within a partition", () => {
  const o = createWindowOracle();
  o.fold({ symbol: "A", eventTime: 1, price: 1, partition: 0, offset: 5 });
  o.fold({ symbol: "A", eventTime: 1, price: 1, partition: 1, offset: 5 });
  assert.throws(
    () => o.fold({ symbol: "A", eventTime: 2, price: 1, partition: 0, offset: 5 }),
    (e) => e instanceof OracleError && /Offset 5 of partition 0/.test(e.message),
  );
});

Deno.test("diffWindows: equal rows are clean; each kind of difference is counted", () => {
  const o = createWindowOracle();
  const ticks = engineTicks(3000, 7, { tickMs: 400, seed: 3 });
  for (const t of ticks) o.fold(t);
  const rows = [...o.windows.values()].map((w) => ({
    symbol: w.symbol,
    start: w.start,
    count: w.count,
    // Another summation order: within the tolerance.
    avg: (w.sum * (1 + 1e-13)) / w.count,
    open: w.open,
    high: w.high,
    low: w.low,
    close: w.close,
  }));
  const clean = diffWindows(o.windows, rows);
  assert.ok(diffIsClean(clean), JSON.stringify(clean));
  assert.equal(clean.equal, o.windows.size);

  const rand = prng(11);
  for (const field of ["count", "avg", "open", "high", "low", "close"] as const) {
    const i = Math.floor(rand() * rows.length);
    const changed = rows.map((r, j) => j === i ? { ...r, [field]: r[field] + 0.01 } : r);
    const d = diffWindows(o.windows, changed);
    assert.equal(d.differing, 1, field);
    assert.equal(d.equal, rows.length - 1);
    assert.ok(!diffIsClean(d));
    assert.equal(d.examples.length, 1);
  }
  const missing = diffWindows(o.windows, rows.slice(1));
  assert.deepEqual([missing.missing, missing.extra, missing.differing], [1, 0, 0]);
  const extra = diffWindows(o.windows, [...rows, { ...rows[0], start: rows[0].start - 300_000 }]);
  assert.deepEqual([extra.missing, extra.extra], [0, 1]);
  const dup = diffWindows(o.windows, [...rows, rows[0]]);
  assert.deepEqual([dup.extra, dup.equal], [1, rows.length]);
  assert.ok(!diffIsClean(dup));
});

Deno.test("parseProcStat reads fields 14-17 even when the command name has spaces and ')'", () => {
  const line = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1 2 3 4 150 25 700 80 20 0 9 0 " +
    "123 456 789 18446744073709551615";
  assert.deepEqual(parseProcStat(line), { utime: 150, stime: 25, cutime: 700, cstime: 80 });
  assert.throws(() => parseProcStat("garbage"), /Not a \/proc/);
  const self = parseProcStat(Deno.readTextFileSync("/proc/self/stat"));
  assert.ok(self.utime + self.stime > 0);
});

Deno.test("measureProcess counts the child's CPU time and peak RSS, and its milestones", async () => {
  // The child burns 400 ms of user CPU, touches 120 MB, then says so.
  const code = `
    import process from "node:process";
    console.log("first");
    let x = 0;
    while (process.cpuUsage().user < 400_000) x += Math.sqrt(x + 1);
    const buf = new Uint8Array(120 * 1024 * 1024);
    for (let i = 0; i < buf.length; i += 4096) buf[i] = 1;
    console.log("done " + (x > 0));
    await new Promise((r) => setTimeout(r, 400));
  `;
  const run = await measureProcess({
    command: Deno.execPath(),
    args: ["eval", code],
    env: { NO_COLOR: "1" },
    isStartup: (l, s) => s === "stdout" && l === "first",
    isDone: (l, s) => s === "stdout" && l.startsWith("done"),
    timeoutMs: 60_000,
    what: "The test child",
  });
  assert.ok(run.cpuMs >= 400, `cpu ${run.cpuMs} ms`);
  assert.ok(run.cpuMs <= run.wallMs * navigator.hardwareConcurrency + 50, JSON.stringify(run));
  assert.ok(run.peakRssMb >= 120, `rss ${run.peakRssMb} MB`);
  assert.ok(run.startupMs !== null && run.doneMs !== null);
  assert.ok(run.startupMs <= run.doneMs && run.doneMs <= run.wallMs);
  await assert.rejects(
    measureProcess({
      command: Deno.execPath(),
      args: ["eval", "Deno.exit(3)"],
      env: {},
      isStartup: () => false,
      isDone: () => false,
      timeoutMs: 60_000,
      what: "The failing child",
    }),
    /The failing child exited with code 3/,
  );
});

Deno.test("committedOf sums a progress line's offsets and ignores other lines", () => {
  assert.equal(committedOf('{"batchId":3,"offsets":{"0":10,"1":5,"2":7}}'), 22);
  assert.equal(committedOf('{"batchId":3}'), 0);
  assert.equal(committedOf("2026-01-01T00:00:00Z INFO [aggregate] partitions assigned"), 0);
  assert.equal(committedOf("{not json"), 0);
});

Deno.test("jdbcOf turns DATABASE_URL into a JDBC URL, user and password", () => {
  assert.deepEqual(jdbcOf("postgres://postgres:postgres@127.0.0.1:5432/tickpipe"), {
    url: "jdbc:postgresql://127.0.0.1:5432/tickpipe?reWriteBatchedInserts=true" +
      "&ApplicationName=tickpipe-bench-spark",
    user: "postgres",
    password: "postgres",
  });
  const j = jdbcOf("postgresql://al%40ice:p%3Ass@db.example:6543/my%20db", {});
  assert.equal(j.user, "al@ice");
  assert.equal(j.password, "p:ss");
  assert.match(j.url, /^jdbc:postgresql:\/\/db\.example:6543\/my%20db\?/);
  assert.equal(jdbcOf("postgres://bob@h/x", { PGPASSWORD: "pw" }).password, "pw");
  assert.match(jdbcOf("postgres://bob@h/x").url, /:5432\/x\?/);
  assert.throws(() => jdbcOf("mysql://a@b/c"), /scheme "mysql:"/);
  assert.throws(() => jdbcOf("not a url"), /not a URL/);
});

Deno.test("sparkBatches parses the job's batch events and skips other lines", () => {
  const out = [
    '{"event":"jvm-start","ms":1}',
    '{"event":"batch","ms":5,"batchId":0,"inputRows":10,"totalInputRows":10,"durationMs":{"addBatch":3}}',
    "12:00:00.000 WARN Something: noise",
    '{"event":"batch","ms":9,"batchId":1,"inputRows":0,"totalInputRows":10,"durationMs":{}}',
  ];
  const b = sparkBatches(out);
  assert.deepEqual(b.map((x) => [x.batchId, x.inputRows, x.totalInputRows]), [[0, 10, 10], [
    1,
    0,
    10,
  ]]);
  assert.equal(b[0].durationMs.addBatch, 3);
});

Deno.test("bench flags: --vs-spark-ticks is validated and needs the vs-spark suite", async () => {
  await assert.rejects(
    main(["--vs-spark", "--vs-spark-ticks", "12x"]),
    (e) => e instanceof UsageError && /--vs-spark-ticks "12x"/.test(e.message),
  );
  await assert.rejects(
    main(["--vs-spark-ticks", "200000"]),
    (e) => e instanceof UsageError && /needs --vs-spark/.test(e.message),
  );
  await assert.rejects(
    main(["--only", "backlog,nope"]),
    (e) => e instanceof UsageError && /unknown suite "nope"/.test(e.message),
  );
});
