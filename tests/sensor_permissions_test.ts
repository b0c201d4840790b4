// The aggregator the sensor launches runs under -P=aggregate and nothing
// more: a probe run exactly like the launched child (deno run -P=aggregate
// --config deno.json) cannot read /etc/passwd, reach an unlisted host, run
// programs or write outside .data; and the sensor itself (-P=sensor) may run
// "deno" by name only.
import assert from "node:assert/strict";
import { projectPaths } from "../sensor/launcher.ts";

const PROBE = `
const results = {};
async function probe(name, f) {
  try { await f(); results[name] = "allowed"; }
  catch (e) { results[name] = e?.name ?? String(e); }
}
await probe("readPasswd", () => Deno.readTextFile("/etc/passwd"));
await probe("connectUnlisted", async () => (await Deno.connect({ hostname: "127.0.0.1", port: 5433 })).close());
await probe("connectKafka", async () => (await Deno.connect({ hostname: "127.0.0.1", port: 9092 })).close());
await probe("run", () => new Deno.Command("ls").output());
await probe("writeTmp", () => Deno.writeTextFile("/tmp/tickpipe-probe.txt", "x"));
await probe("envHome", () => { Deno.env.get("HOME"); });
console.log(JSON.stringify(results));
`;

async function runProbe(set: string) {
  await Deno.mkdir(".data/test", { recursive: true });
  const file = `.data/test/probe-${crypto.randomUUID().slice(0, 8)}.js`;
  await Deno.writeTextFile(file, PROBE);
  try {
    const { configPath } = projectPaths();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `-P=${set}`, "--config", configPath, file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return JSON.parse(text.trim().split("\n").at(-1)!);
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}

Deno.test("sensor permissions: -P=aggregate cannot read /etc/passwd, reach unlisted hosts or run programs", async () => {
  const r = await runProbe("aggregate");
  assert.equal(r.readPasswd, "NotCapable");
  assert.equal(r.connectUnlisted, "NotCapable");
  assert.equal(r.run, "NotCapable");
  assert.equal(r.writeTmp, "NotCapable");
  assert.equal(r.envHome, "NotCapable");
  assert.equal(r.connectKafka, "allowed", "the probe does run under the set: Kafka is listed");
});

Deno.test("sensor permissions: -P=sensor may not run anything but deno, nor read /etc/passwd", async () => {
  const r = await runProbe("sensor");
  assert.equal(r.run, "NotCapable");
  assert.equal(r.readPasswd, "NotCapable");
  assert.equal(r.connectUnlisted, "NotCapable");
});
