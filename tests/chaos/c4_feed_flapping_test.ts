// Chaos 4: the simulator drops every connection periodically: ingest reconnects and
// resubscribes each time, and every frame sent while connected is in Kafka exactly once.
import assert from "node:assert/strict";
import { startSimulator } from "../../ingest/simulator.ts";
import {
  chaosKafka,
  createTopics,
  deleteTopics,
  ensureKafka,
  pick,
  readTopic,
  sleep,
  summary,
  testOpts,
  uniq,
  until,
} from "./_harness.ts";
import { chaosSpoolDir, compareTicks, orderViolations, spawnIngest } from "./_ingest.ts";

Deno.test("chaos 4: feed flapping, ingest reconnects and resubscribes", testOpts, async () => {
  const everyS = pick(2, 20);
  const runMs = pick(15_000, 300_000);
  const t0 = Date.now();
  await ensureKafka();
  const kafka = chaosKafka();
  const topic = uniq("chaos-flap");
  await createTopics(kafka, [topic, `${topic}.dlq`]);
  const sim = await startSimulator({
    port: 0,
    rate: 200,
    seed: 4,
    heartbeatMs: 1000,
    disconnectEvery: everyS,
  });
  const symbols = ["AAPL", "MSFT", "NVDA", "BTC-USD", "ETH-USD"];
  const ingest = await spawnIngest(`c4-ingest-${topic}`, { topic, simPort: sim.port, symbols });
  try {
    await until(() => sim.symbols().length === symbols.length, "ingest to subscribe", 30_000);
    await sleep(runMs);
    await sim.close();
    await sleep(500);
    ingest.kill("SIGTERM");
    assert.equal(await ingest.status, 0, ingest.lines.slice(-20).join("\n"));
    const sent = sim.sent();
    const ticks = await readTopic(kafka, topic);
    const c = compareTicks(sent, ticks);
    const conns = new Set(sent.filter((s) => s.expect === "ok").map((s) => s.conn));
    const drops = Math.floor(runMs / 1000 / everyS);
    const reconnects = Math.max(
      0,
      ...ingest.lines.map((l) => Number(/reconnects=(\d+)/.exec(l)?.[1] ?? 0)),
    );
    await summary(
      `4 feed-flapping: disconnect_every=${everyS}s for ${runMs / 1000}s drops~${drops} ` +
        `connections_with_ticks=${conns.size} ingest_reconnects=${reconnects} sent_valid=${c.expected} ` +
        `in_topic=${c.got} missing=${c.missing} duplicates=${c.duplicates} ` +
        `in ${((Date.now() - t0) / 1000).toFixed(0)}s`,
    );
    // Resubscribed after every drop: ticks flowed on (nearly) every connection.
    assert.ok(conns.size >= drops, `ticks on ${conns.size} connections for ${drops} drops`);
    assert.equal(c.missing, 0, "every frame sent while connected is in Kafka");
    assert.equal(c.duplicates, 0);
    assert.equal(c.unexpected, 0);
    assert.equal(orderViolations(sent, ticks), 0);
  } finally {
    if (!ingest.exited()) {
      ingest.kill("SIGKILL");
      await ingest.status;
    }
    await sim.close();
    await deleteTopics(kafka, [topic, `${topic}.dlq`]);
    await Deno.remove(chaosSpoolDir(topic), { recursive: true }).catch(() => {});
  }
});
