// The launcher's plan (pipeline/launch_main.ts): the command line `deno task <command>` runs,
// with the lists derived from the configuration, and when it asks Kafka for the brokers it
// advertises (injected probe: the real one is exercised in tests/launcher_test.ts).
import assert from "node:assert/strict";
import { planLaunch } from "../../pipeline/launch_main.ts";

const allow = (args: string[], kind: string) =>
  args.find((a) => a.startsWith(`--allow-${kind}=`))?.split("=")[1].split(",").sort() ?? [];

Deno.test("launch: the probe's brokers are allowed and passed on in TICKPIPE_KAFKA_HOSTS", async () => {
  const asked: string[][] = [];
  const plan = await planLaunch("sensor", ["--brokers", "proxy:1", "--once"], {
    env: () => undefined,
    probe: (b) => {
      asked.push(b);
      return Promise.resolve(["kafka-0:9092", "kafka-1:9092"]);
    },
  });
  assert.deepEqual(asked, [["proxy:1"]], "the probe asks the bootstrap servers");
  assert.equal(plan.command, "deno");
  assert.deepEqual(plan.args.slice(0, 4), ["run", "--quiet", "--no-prompt", "-P=sensor"]);
  assert.deepEqual(allow(plan.args, "net"), ["kafka-0:9092", "kafka-1:9092", "proxy:1"]);
  assert.deepEqual(plan.env, { TICKPIPE_KAFKA_HOSTS: "kafka-0:9092,kafka-1:9092" });
  assert.deepEqual(plan.args.slice(-3), ["sensor", "--brokers", "proxy:1", "--once"].slice(-3));
});

Deno.test("launch: TICKPIPE_KAFKA_HOSTS skips the probe; Kafka down allows the bootstrap list only", async () => {
  const never = () => Promise.reject(new Error("must not probe"));
  const given = await planLaunch("offsets", [], {
    env: (n) => ({ KAFKA_BROKERS: "b:1", TICKPIPE_KAFKA_HOSTS: "k:2" })[n],
    probe: never,
  });
  assert.deepEqual(allow(given.args, "net"), ["b:1", "k:2"]);
  assert.deepEqual(given.env, {}, "already in the environment");
  const down = await planLaunch("ingest", ["--source", "ws://s:1/"], {
    env: () => undefined,
    probe: () => Promise.resolve(null),
  });
  assert.deepEqual(allow(down.args, "net"), ["127.0.0.1:9092", "s:1"]);
  assert.deepEqual(down.env, {});
});

Deno.test("launch: no probe for commands without Kafka, nor for --help; no flags for --help", async () => {
  const never = () => Promise.reject(new Error("must not probe"));
  const m = await planLaunch("migrate", [], {
    env: (n) => ({ DATABASE_URL: "postgres://u:p@db:6432/x" })[n],
    probe: never,
  });
  assert.deepEqual(allow(m.args, "net"), ["db:6432"]);
  const h = await planLaunch("aggregate", ["--help", "--brokers", "nope"], {
    env: () => undefined,
    probe: never,
  });
  assert.ok(!h.args.some((a) => a.startsWith("--allow-")), "the set alone prints the help");
  const s = await planLaunch("simulate", ["--port", "9000"], {
    env: () => undefined,
    probe: never,
  });
  assert.deepEqual(allow(s.args, "net"), ["127.0.0.1:9000"]);
});
