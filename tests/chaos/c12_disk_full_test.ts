// Chaos 12: the disk under ingest's spool fills up while Kafka is down (the spool directory is a
// small tmpfs). Ingest must not stop: spool writes the disk refuses leave their ticks in memory
// and are retried with backoff, new ticks past --max-memory-ticks are dropped and counted, the
// log says the disk refused the spool (ENOSPC), and once Kafka is back everything kept reaches
// the topic in order; exactly the dropped ticks are missing, and ingest exits 1 (it dropped some).
// Needs to mount a tmpfs (root); skipped with the reason otherwise.
import assert from "node:assert/strict";
import { type SentFrame, startSimulator } from "../../ingest/simulator.ts";
import {
  chaosKafka,
  createTopics,
  deleteTopics,
  ensureKafka,
  pick,
  readTopic,
  sleep,
  stopKafkaGracefully,
  summary,
  testOpts,
  uniq,
  until,
} from "./_harness.ts";
import {
  chaosRecordFile,
  chaosSpoolDir,
  compareTicks,
  orderViolations,
  parseIngestStopLine,
  spawnIngest,
} from "./_ingest.ts";
import { mountTmpfs, tmpfsUnavailable, umount } from "./_tmpfs.ts";

const SIZE = "512k";

const reason = await tmpfsUnavailable();
if (reason) console.log(`skipping chaos 12 (disk full under the spool): ${reason}`);

Deno.test({
  name:
    "chaos 12: the spool's disk fills up while Kafka is down; ingest keeps going, drops and counts, delivers the rest in order",
  ...testOpts,
  ignore: reason !== null,
  async fn() {
    const downMs = pick(5_000, 60_000);
    const t0 = Date.now();
    await ensureKafka();
    const kafka = chaosKafka();
    const topic = uniq("chaos-diskfull");
    await createTopics(kafka, [topic, `${topic}.dlq`]);
    const spool = chaosSpoolDir(topic);
    await mountTmpfs(spool, SIZE);
    const sim = await startSimulator({ port: 0, rate: 2000, seed: 12, heartbeatMs: 1000 });
    const symbols = ["AAPL", "MSFT", "NVDA", "BTC-USD", "ETH-USD", "TSLA"];
    // Ground truth is what ingest received (frames still in the socket at shutdown never were).
    const record = chaosRecordFile(`c12-record-${topic}.txt`);
    let kafkaDown = false;
    const p = await spawnIngest(`c12-ingest-${topic}`, {
      topic,
      simPort: sim.port,
      symbols,
      extra: ["--max-memory-ticks", "2000", "--record", record],
    });
    try {
      await until(() => sim.connections() === 1 && sim.symbols().length === 6, "ingest", 30_000);
      await sleep(1500);
      assert.ok(await stopKafkaGracefully(), "chaos broker stopped");
      kafkaDown = true;
      await sleep(downMs);
      assert.ok(
        !p.exited(),
        `ingest still running with a full disk:\n${p.lines.slice(-20).join("\n")}`,
      );
      const refusedLines = p.lines.filter((l) => /Cannot write to the disk spool/.test(l));
      assert.ok(refusedLines.length > 0, p.lines.slice(-20).join("\n"));
      assert.match(refusedLines[0], /No space left on device/, "the log names the disk's error");
      await ensureKafka();
      kafkaDown = false;
      const back = Date.now();
      const from = p.lines.length;
      await until(
        () => p.lines.slice(from).some((l) => / spool=0\/0B/.test(l)),
        "the spool drained",
        60_000,
      ).catch(() => {}); // judged below by what is in the topic
      const drainMs = Date.now() - back;
      await sim.close();
      await sleep(500);
      p.kill("SIGTERM");
      const code = await p.status;
      const stop = parseIngestStopLine(p.lines);
      const spoolErrors = Math.max(
        0,
        ...p.lines.map((l) => Number(/spool_errors=(\d+)/.exec(l)?.[1] ?? 0)),
      );
      const received = (await Deno.readTextFile(record)).split("\n").filter((l) => l !== "")
        .map((frame) => ({ expect: "ok", frame, at: Date.now() }) as unknown as SentFrame);
      const ticks = await readTopic(kafka, topic);
      const c = compareTicks(received, ticks);
      const order = orderViolations(received, ticks, { gaps: true });
      const resets = p.lines.filter((l) => /re-initializing the producer/.test(l)).length;
      await summary(
        `12 disk-full: spool on a ${SIZE} tmpfs, kafka_down=${downMs / 1000}s rate=2000/s ` +
          `received_valid=${c.expected} in_topic=${c.got} missing=${c.missing} ` +
          `dropped=${stop?.dropped} duplicates=${c.duplicates} order_violations=${order} ` +
          `spool_errors=${spoolErrors} refused_log_lines=${refusedLines.length} ` +
          `producer_reinits=${resets} exit=${code} drain_ms=${drainMs} in ${
            ((Date.now() - t0) / 1000).toFixed(0)
          }s`,
      );
      assert.equal(code, 1, "ingest exits 1 when records were dropped");
      assert.ok(Number(stop?.dropped) > 0, "ticks past memory were dropped and counted");
      assert.ok(spoolErrors > 0, "the progress line counts the refused spool writes");
      assert.equal(c.missing, Number(stop?.dropped), "exactly the dropped ticks are missing");
      assert.equal(c.unexpected, 0, "nothing that was not received");
      assert.ok(c.duplicates <= resets * 5000, "duplicates only after a producer re-init");
      if (c.duplicates === 0) assert.equal(order, 0, "per-symbol order kept (with the gaps)");
      await Deno.remove(record).catch(() => {});
    } finally {
      if (!p.exited()) {
        p.kill("SIGKILL");
        await p.status;
      }
      await sim.close();
      if (kafkaDown) await ensureKafka().catch(() => {});
      await umount(spool);
      await Deno.remove(spool, { recursive: true }).catch(() => {});
      await deleteTopics(kafka, [topic, `${topic}.dlq`]);
    }
  },
});
