// compileSteps(): the deno compile command lines bake in each permission set.
import assert from "node:assert/strict";
import { compileSteps, isRuntimeDownloadFailure } from "../../pipeline/compile.ts";

Deno.test("sensor compile: aggregator then sensor, -P=<set>, sql/ included, never -A", () => {
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
