import assert from "node:assert/strict";
import {
  ConfigError,
  DEFAULT_BROKERS,
  DEFAULT_DATABASE_URL,
  loadBaseConfig,
  parseBrokers,
  parseDuration,
} from "../../common/config.ts";
import { createLogger, redact } from "../../common/log.ts";
import { backoffDelay } from "../../common/backoff.ts";

const noEnv = () => undefined;

Deno.test("config: defaults when nothing is set", () => {
  const c = loadBaseConfig({}, { env: noEnv });
  assert.deepEqual(c.brokers, [DEFAULT_BROKERS]);
  assert.equal(c.databaseUrl, DEFAULT_DATABASE_URL);
  assert.equal(c.topic, "ticks");
  assert.equal(c.kvPath, ".data/tickpipe.kv");
});

Deno.test("config: flags win over env, env over defaults", () => {
  const env = (n: string) =>
    ({ KAFKA_BROKERS: "a:1,b:2", TICKS_TOPIC: "envtopic", TICKPIPE_KV: "x.kv" })[n];
  const c = loadBaseConfig({ topic: "flagtopic" }, { env });
  assert.deepEqual(c.brokers, ["a:1", "b:2"]);
  assert.equal(c.topic, "flagtopic");
  assert.equal(c.kvPath, "x.kv");
});

Deno.test("config: bad values name the variable and the value", () => {
  assert.throws(
    () => loadBaseConfig({}, { env: (n) => (n === "KAFKA_BROKERS" ? "localhost" : undefined) }),
    (e: Error) =>
      e instanceof ConfigError && /KAFKA_BROKERS/.test(e.message) && /"localhost"/.test(e.message),
  );
  assert.throws(() => parseBrokers("h:70000"), /port from 1 to 65535/);
  assert.throws(
    () => loadBaseConfig({ "database-url": "mysql://u:secret@h/db" }, { env: noEnv }),
    (e: Error) =>
      /--database-url/.test(e.message) && /mysql:/.test(e.message) && !/secret/.test(e.message),
  );
  assert.throws(
    () => loadBaseConfig({ "database-url": "postgres://u:pw@h:5432/" }, { env: noEnv }),
    /names no database/,
  );
  assert.throws(
    () => loadBaseConfig({ topic: "bad topic!" }, { env: noEnv }),
    /--topic "bad topic!"/,
  );
});

Deno.test("config: durations", () => {
  assert.equal(parseDuration("5s", "--trigger", { fallbackMs: 1 }), 5000);
  assert.equal(parseDuration("15m", "--x", { fallbackMs: 1 }), 900_000);
  assert.equal(parseDuration("250ms", "--x", { fallbackMs: 1 }), 250);
  assert.equal(parseDuration("2", "--x", { fallbackMs: 1 }), 2000);
  assert.equal(parseDuration(undefined, "--x", { fallbackMs: 7 }), 7);
  assert.throws(() => parseDuration("soon", "--trigger", { fallbackMs: 1 }), /--trigger "soon"/);
  assert.throws(() => parseDuration("0s", "--trigger", { fallbackMs: 1 }), /greater than zero/);
});

Deno.test("log: passwords in URLs are redacted from every line", () => {
  const lines: string[] = [];
  const log = createLogger("t", { write: (l) => lines.push(l), now: () => 0 });
  log.info("connecting to postgres://me:hunter2@db:5432/x", { url: "postgresql://a:b%40c@h/d" });
  log.error("failed", { err: new Error("at postgres://u:topsecret@h/db") });
  const all = lines.join("\n");
  assert.ok(!/hunter2|topsecret|b%40c/.test(all), all);
  assert.match(all, /postgres:\/\/me:\*\*\*@db/);
  assert.equal(redact("no secrets here"), "no secrets here");
});

Deno.test("log: json format and level filter", () => {
  const lines: string[] = [];
  const log = createLogger("c", { write: (l) => lines.push(l), format: "json", level: "warn" });
  log.info("hidden");
  log.warn("shown", { n: 1 });
  assert.equal(lines.length, 1);
  const rec = JSON.parse(lines[0]);
  assert.equal(rec.msg, "shown");
  assert.equal(rec.component, "c");
  assert.equal(rec.n, 1);
});

Deno.test("backoff: grows exponentially, capped, jitter within [half, full]", () => {
  for (let attempt = 0; attempt < 20; attempt++) {
    const ceiling = Math.min(30_000, 250 * 2 ** attempt);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt);
      assert.ok(d >= Math.floor(ceiling / 2) && d <= ceiling, `attempt ${attempt}: ${d}`);
    }
  }
  assert.equal(backoffDelay(3, { random: () => 1 }), 2000);
  assert.equal(backoffDelay(3, { random: () => 0 }), 1000);
});
