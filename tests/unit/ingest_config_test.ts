// Ingest's configuration: Kafka settings only (no database setting is ever read), and the
// spool/record path rule checked up front with a message naming the path and where it belongs.
import assert from "node:assert/strict";
import { ConfigError } from "../../common/config.ts";
import {
  checkIngestPaths,
  loadIngestConfig,
  RECORDINGS_ROOT,
  SPOOL_ROOT,
} from "../../ingest/ingest_main.ts";

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

Deno.test("checkIngestPaths: exit-2 errors name the path and the directory it belongs in", () => {
  const allowed = (path: string, read: boolean) =>
    path.startsWith(`${SPOOL_ROOT}/`) || (!read && path.startsWith(`${RECORDINGS_ROOT}/`));
  checkIngestPaths({ spoolDir: ".data/spool/ticks", recordFile: ".data/recordings/a.txt" }, {
    mayAccess: allowed,
  });
  checkIngestPaths({ spoolDir: ".data/spool/ticks" }, { mayAccess: allowed });
  assert.throws(
    () => checkIngestPaths({ spoolDir: "/var/spool" }, { mayAccess: allowed }),
    (e) =>
      e instanceof ConfigError &&
      e.message === `--spool-dir "/var/spool" is outside what this command may read and write: ` +
          `ingest keeps its spool under .data/spool/ (e.g. --spool-dir .data/spool/mine)`,
  );
  assert.throws(
    () =>
      checkIngestPaths({ spoolDir: ".data/spool/t", recordFile: ".data/feed.txt" }, {
        mayAccess: allowed,
      }),
    (e) =>
      e instanceof ConfigError && /^--record "\.data\/feed\.txt" is outside/.test(e.message) &&
      e.message.includes("recordings go under .data/recordings/"),
  );
});
