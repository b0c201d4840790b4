// Chaos 6: Kafka is down while ticks keep arriving at 2k/s: ingest spools them under .data and
// delivers them in order once Kafka is back; with a small --max-spool-bytes the spool never
// grows past the bound, the overflow is dropped, counted, and ingest exits 1.
import assert from "node:assert/strict";
import { type SentFrame, startSimulator } from "../../ingest/simulator.ts";
import {
  chaosKafka,
  createTopics,
  deleteTopics,
  dirBytes,
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

const BOUND = 1_000_000; // bytes, for the bounded instance

Deno.test(
  "chaos 6: Kafka down, ticks spooled to disk, delivered in order; bounded spool",
  testOpts,
  async () => {
    const downMs = pick(8_000, 120_000);
    const t0 = Date.now();
    await ensureKafka();
    const kafka = chaosKafka();
    const topicA = uniq("chaos-spool");
    const topicB = uniq("chaos-spoolb");
    await createTopics(kafka, [topicA, `${topicA}.dlq`, topicB, `${topicB}.dlq`]);
    const sim = await startSimulator({ port: 0, rate: 2000, seed: 6, heartbeatMs: 1000 });
    const symbols = ["AAPL", "MSFT", "NVDA", "BTC-USD", "ETH-USD", "TSLA"];
    const spoolA = chaosSpoolDir(topicA);
    const spoolB = chaosSpoolDir(topicB);
    const mem = ["--max-memory-ticks", "1000"];
    // B records every frame it received: frames still in the socket when the simulator shuts
    // down never reached ingest, so B's ground truth is what it received, not what was sent.
    const recordB = chaosRecordFile(`c6-record-${topicB}.txt`);
    const a = await spawnIngest(`c6-ingest-${topicA}`, {
      topic: topicA,
      simPort: sim.port,
      symbols,
      extra: mem,
    });
    let kafkaDown = false;
    let b: Awaited<ReturnType<typeof spawnIngest>> | undefined;
    try {
      await until(() => sim.connections() === 1 && sim.symbols().length === 6, "ingest A", 30_000);
      b = await spawnIngest(`c6-ingest-${topicB}`, {
        topic: topicB,
        simPort: sim.port,
        symbols,
        extra: [...mem, "--max-spool-bytes", String(BOUND), "--record", recordB],
      });
      await until(() => sim.connections() === 2, "ingest B", 30_000);
      await sleep(2000);
      assert.ok(await stopKafkaGracefully(), "chaos broker stopped");
      kafkaDown = true;
      let maxA = 0;
      let maxB = 0;
      const downUntil = Date.now() + downMs;
      while (Date.now() < downUntil) {
        maxA = Math.max(maxA, await dirBytes(spoolA));
        maxB = Math.max(maxB, await dirBytes(spoolB));
        await sleep(100);
      }
      await ensureKafka();
      kafkaDown = false;
      const back = Date.now();
      await sleep(3000);
      await sim.close();
      await sleep(500);
      a.kill("SIGTERM");
      b.kill("SIGTERM");
      const [codeA, codeB] = [await a.status, await b.status];
      const drainMs = Date.now() - back;
      // Ingest's own progress lines report the spool size too (`spool=<records>/<bytes>B`); the
      // directory sampler above can miss a spill that happens between two samples.
      const reported = (lines: string[]) =>
        Math.max(0, ...lines.map((l) => Number(/spool=\d+\/(\d+)B/.exec(l)?.[1] ?? 0)));
      maxA = Math.max(maxA, reported(a.lines));
      maxB = Math.max(maxB, reported(b.lines));
      const sent = sim.sent();
      const connA = sent.filter((s) => s.conn === 1);
      const connB = sent.filter((s) => s.conn === 2);
      assert.equal(new Set(sent.map((s) => s.conn)).size, 2, "no reconnect: one connection each");
      const ticksA = await readTopic(kafka, topicA);
      const ticksB = await readTopic(kafka, topicB);
      const ca = compareTicks(connA, ticksA);
      const cb = compareTicks(connB, ticksB);
      const stopA = parseIngestStopLine(a.lines);
      const stopB = parseIngestStopLine(b.lines);
      const orderA = orderViolations(connA, ticksA);
      await summary(
        `6 disk-spool: kafka_down=${downMs / 1000}s rate=2000/s ` +
          `A(default bound): sent_valid=${ca.expected} in_topic=${ca.got} missing=${ca.missing} ` +
          `dup=${ca.duplicates} order_violations=${orderA} max_spool_bytes=${maxA} exit=${codeA} | ` +
          `B(--max-spool-bytes ${BOUND}): sent_valid=${cb.expected} in_topic=${cb.got} ` +
          `missing=${cb.missing} dropped=${stopB?.dropped} max_spool_bytes=${maxB} exit=${codeB} ` +
          `drain_ms=${drainMs} in ${((Date.now() - t0) / 1000).toFixed(0)}s`,
      );
      assert.equal(codeA, 0, a.lines.slice(-20).join("\n"));
      assert.ok(maxA > BOUND, `ticks were spooled to disk (${maxA} bytes)`);
      // The documented guarantee (README "At least once"): nothing lost; duplicates only after
      // kafkajs' idempotent producer had to be re-initialized (the broker answered
      // OUT_OF_ORDER_SEQUENCE_NUMBER after its restart), at most one batch per re-init.
      const resetsA = a.lines.filter((l) => /re-initializing the producer/.test(l)).length;
      await summary(`6 disk-spool A: producer_reinits=${resetsA} duplicates=${ca.duplicates}`);
      assert.equal(ca.missing + ca.unexpected, 0, "A: every tick delivered, nothing unexpected");
      assert.ok(ca.duplicates <= resetsA * 5000, "A: duplicates only after a producer re-init");
      if (ca.duplicates === 0) assert.equal(orderA, 0, "A: per-symbol order kept");
      assert.equal(stopA?.dropped, "0");
      assert.ok(maxB > 0 && maxB <= BOUND, `B: spool within its bound (${maxB} <= ${BOUND})`);
      assert.equal(codeB, 1, "B: ingest exits 1 when records were dropped");
      assert.ok(Number(stopB?.dropped) > 0, "B: overflow dropped and counted");
      const receivedB = (await Deno.readTextFile(recordB)).split("\n").filter((l) => l !== "")
        .map((frame) => ({ expect: "ok", frame, at: Date.now() }) as unknown as SentFrame);
      const rb = compareTicks(receivedB, ticksB);
      await summary(
        `6 disk-spool B: received_valid=${rb.expected} in_topic=${rb.got} missing=${rb.missing} ` +
          `dropped=${stopB?.dropped} (in transit at simulator shutdown: ${
            cb.missing - rb.missing
          })`,
      );
      const resetsB = b.lines.filter((l) => /re-initializing the producer/.test(l)).length;
      await summary(`6 disk-spool B: producer_reinits=${resetsB} duplicates=${rb.duplicates}`);
      assert.equal(rb.missing, Number(stopB?.dropped), "B: exactly the dropped ticks are missing");
      assert.equal(rb.unexpected, 0, "B: nothing that was not received");
      assert.ok(rb.duplicates <= resetsB * 5000, "B: duplicates only after a producer re-init");
      await Deno.remove(recordB).catch(() => {});
    } finally {
      for (const p of [a, b]) {
        if (p && !p.exited()) {
          p.kill("SIGKILL");
          await p.status;
        }
      }
      await sim.close();
      if (kafkaDown) await ensureKafka().catch(() => {});
      await deleteTopics(kafka, [topicA, `${topicA}.dlq`, topicB, `${topicB}.dlq`]);
      for (const d of [spoolA, spoolB]) await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  },
);
