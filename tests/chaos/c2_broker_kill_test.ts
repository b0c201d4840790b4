// Chaos 2: the chaos Kafka broker is kill -9'd and restarted during ingest: every tick the
// simulator sent (its log) is in the topic, and we count how many times (exactly once or not).
import assert from "node:assert/strict";
import { startSimulator } from "../../ingest/simulator.ts";
import {
  chaosKafka,
  createTopics,
  deleteTopics,
  ensureKafka,
  killKafka,
  pick,
  readTopic,
  sleep,
  summary,
  testOpts,
  uniq,
  until,
} from "./_harness.ts";
import { mulberry32 as rng } from "../../common/prng.ts";
import {
  chaosSpoolDir,
  compareTicks,
  orderViolations,
  parseIngestStopLine,
  spawnIngest,
} from "./_ingest.ts";

Deno.test("chaos 2: broker kill -9 and restart during ingest", testOpts, async () => {
  const kills = pick(1, 3);
  const rate = pick(300, 1000);
  const t0 = Date.now();
  await ensureKafka();
  const kafka = chaosKafka();
  const topic = uniq("chaos-brk");
  await createTopics(kafka, [topic, `${topic}.dlq`]);
  const sim = await startSimulator({ port: 0, rate, seed: 2, heartbeatMs: 1000 });
  const symbols = ["AAPL", "MSFT", "NVDA", "BTC-USD", "ETH-USD", "TSLA", "AMZN", "GOOG"];
  const ingest = await spawnIngest(`c2-ingest-${topic}`, { topic, simPort: sim.port, symbols });
  const downs: number[] = [];
  try {
    await until(() => sim.symbols().length === symbols.length, "ingest to subscribe", 30_000);
    const rnd = rng(77);
    for (let i = 0; i < kills; i++) {
      await sleep(2000 + Math.floor(rnd() * 3000));
      const t = Date.now();
      assert.ok(await killKafka(), "the chaos broker was running and got kill -9");
      await sleep(1000 + Math.floor(rnd() * 3000));
      await ensureKafka();
      downs.push(Date.now() - t);
    }
    await sleep(3000);
    await sim.close(); // stop sending; everything sent is in sim.sent()
    await sleep(500);
    ingest.kill("SIGTERM"); // flushes memory and spool to Kafka before exiting
    const code = await ingest.status;
    assert.equal(code, 0, ingest.lines.slice(-30).join("\n"));
    const ticks = await readTopic(kafka, topic);
    const c = compareTicks(sim.sent(), ticks);
    const order = orderViolations(sim.sent(), ticks);
    const retries = ingest.lines.filter((l) => /Send failed; retrying/.test(l)).length;
    const stop = parseIngestStopLine(ingest.lines);
    const resets = ingest.lines.filter((l) => /re-initializing the producer/.test(l)).length;
    await summary(
      `2 broker-kill: kills=${kills} down_ms=${downs.join("/")} sent_valid=${c.expected} ` +
        `in_topic=${c.got} missing=${c.missing} duplicates=${c.duplicates} unexpected=${c.unexpected} ` +
        `order_violations=${order} ingest_send_retries=${retries} producer_reinits=${resets} ingest_stop=${
          JSON.stringify(stop)
        } ` +
        `in ${((Date.now() - t0) / 1000).toFixed(0)}s`,
    );
    assert.ok(c.expected > 0);
    assert.equal(c.missing, 0, "no tick lost");
    assert.equal(c.unexpected, 0, "nothing that was not sent");
    // Not asserted to be 0: after a broker crash kafkajs' idempotent producer may have to be
    // re-initialized (new producer id), and the batch in flight then can be written twice.
    // The count is measured and reported (tests/chaos/README.md): delivery is at-least-once.
    assert.ok(c.duplicates === 0 || resets > 0, "duplicates only after a producer re-init");
    if (c.duplicates === 0) assert.equal(order, 0, "per-symbol order kept");
  } finally {
    if (!ingest.exited()) {
      ingest.kill("SIGKILL");
      await ingest.status;
    }
    await sim.close();
    await ensureKafka().catch(() => {});
    await deleteTopics(kafka, [topic, `${topic}.dlq`]);
    await Deno.remove(chaosSpoolDir(topic), { recursive: true }).catch(() => {});
  }
});
