// Ingest's configuration: Kafka settings only (no database setting is ever read). Its spool and
// record paths are allowed by the launcher and checked by main.ts (tests/unit/permissions_test.ts).
import assert from "node:assert/strict";
import { ConfigError } from "../../common/config.ts";
import { loadIngestConfig } from "../../ingest/ingest_main.ts";

Deno.test("loadIngestConfig reads only KAFKA_BROKERS and TICKS_TOPIC; flags win", () => {
  const asked: string[] = [];
  const env = (name: string) => {
    asked.push(name);
    return ({
      KAFKA_BROKERS: "k1:9092,k2:9093",
      TICKS_TOPIC: "prices",
      DATABASE_URL: "not a url at all",
      PGPASSWORD: "secret",
    } as Record<string, string>)[name];
  };
  assert.deepEqual(loadIngestConfig({}, { env }), {
    brokers: ["k1:9092", "k2:9093"],
    topic: "prices",
  });
  assert.deepEqual([...new Set(asked)].sort(), ["KAFKA_BROKERS", "TICKS_TOPIC"]);
  assert.deepEqual(loadIngestConfig({ brokers: "b:1", topic: "t" }, { env }), {
    brokers: ["b:1"],
    topic: "t",
  });
  assert.deepEqual(loadIngestConfig({}, { env: () => undefined }), {
    brokers: ["127.0.0.1:9092"],
    topic: "ticks",
  });
  assert.throws(
    () => loadIngestConfig({ brokers: "nope" }, { env }),
    (e) => e instanceof ConfigError && /--brokers has an invalid broker "nope"/.test(e.message),
  );
  assert.throws(
    () => loadIngestConfig({}, { env: (n) => (n === "TICKS_TOPIC" ? "a b" : undefined) }),
    (e) => e instanceof ConfigError && /TICKS_TOPIC "a b"/.test(e.message),
  );
});
