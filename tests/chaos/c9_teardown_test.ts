// Runs last (files run in name order): stops the chaos Kafka (19092) and PostgreSQL (15432).
// The shared services on 9092/5432 are never touched.
import assert from "node:assert/strict";
import { KAFKA_PORT, PG_PORT, stopAll, summary, testOpts } from "./_harness.ts";
import { portOpen } from "../../services/_process.ts";

Deno.test("chaos teardown: stop the chaos broker and database", testOpts, async () => {
  await stopAll();
  assert.equal(await portOpen("127.0.0.1", KAFKA_PORT), false);
  assert.equal(await portOpen("127.0.0.1", PG_PORT), false);
  await summary("teardown: chaos Kafka and PostgreSQL stopped");
});
