// compileSteps(): the deno compile command lines bake in each permission set.
import assert from "node:assert/strict";
import { compileSteps, isRuntimeDownloadFailure } from "../../pipeline/compile.ts";

Deno.test("compile: aggregator then sensor, -P=<set>, sql/ included, never -A", () => {
  const steps = compileSteps({
    configPath: "/repo/deno.json",
    mainPath: "/repo/main.ts",
    outDir: "/out/",
  });
  assert.deepEqual(steps.map((s) => s.output), ["/out/tickpipe-aggregate", "/out/tickpipe-sensor"]);
  const [agg, sensor] = steps;
  assert.equal(agg.args[0], "compile");
  assert.ok(agg.args.includes("-P=aggregate"));
  assert.ok(sensor.args.includes("-P=sensor"));
  assert.ok(sensor.args.includes("--allow-run=deno,/out/tickpipe-aggregate"));
  for (const s of steps) {
    assert.ok(!s.args.includes("-A") && !s.args.includes("--allow-all"));
    assert.equal(s.args[s.args.indexOf("--include") + 1], "/repo/sql/");
    assert.equal(s.args[s.args.indexOf("--config") + 1], "/repo/deno.json");
    assert.equal(s.args.at(-1), "/repo/main.ts");
  }
  assert.ok(isRuntimeDownloadFailure("error: dns error: failed to lookup address"));
  assert.ok(!isRuntimeDownloadFailure("error: Module not found"));
});

Deno.test("compile: the binaries get the lists the launcher derives from the build's configuration", async () => {
  const { launchFlags } = await import("../../common/permissions.ts");
  const env = (n: string) =>
    ({
      KAFKA_BROKERS: "kafka.internal:9092",
      TICKPIPE_KAFKA_HOSTS: "kafka-0.internal:9092",
      DATABASE_URL: "postgres://t:pw@db.internal:6432/tp",
      TICKPIPE_KV: "/var/lib/tickpipe/state.kv",
    })[n];
  const permissions = {
    aggregate: launchFlags("aggregate", [], { env, root: "/repo/" }),
    sensor: launchFlags("sensor", [], { env, root: "/repo/" }),
  };
  const [agg, sensor] = compileSteps({
    configPath: "/repo/deno.json",
    mainPath: "/repo/main.ts",
    outDir: "/out",
    permissions,
  });
  const flag = (args: string[], kind: string) => args.find((a) => a.startsWith(`--allow-${kind}=`));
  assert.equal(
    flag(agg.args, "net"),
    "--allow-net=kafka.internal:9092,kafka-0.internal:9092,db.internal:6432",
  );
  assert.equal(flag(agg.args, "read"), "--allow-read=/var/lib/tickpipe,/repo/sql");
  assert.equal(flag(agg.args, "write"), "--allow-write=/var/lib/tickpipe");
  assert.equal(flag(sensor.args, "net"), "--allow-net=kafka.internal:9092,kafka-0.internal:9092");
  assert.equal(flag(sensor.args, "write"), "--allow-write=/var/lib/tickpipe");
  assert.ok(sensor.args.includes("--allow-run=deno,/out/tickpipe-aggregate"));
  // The flags come before the script, after the permission set.
  for (const s of [agg, sensor]) {
    assert.ok(s.args.indexOf(flag(s.args, "net")!) < s.args.indexOf("/repo/main.ts"));
    assert.ok(s.args.indexOf(flag(s.args, "net")!) > s.args.findIndex((a) => a.startsWith("-P=")));
  }
});
