// `deno task compile`: builds dist/tickpipe-sensor and dist/tickpipe-aggregate
// (needs the denort runtime: DENORT_BIN, as this machine cannot download it);
// without it, a clear message and exit 1.
import assert from "node:assert/strict";

const DENORT_BIN = Deno.env.get("DENORT_BIN");
const COMPILE_PERMS = [
  "--no-prompt",
  "--allow-run=deno",
  "--allow-read=.",
  "--allow-write=dist",
  "--allow-env=DENORT_BIN,LOG_LEVEL,LOG_FORMAT",
];

async function compile(env: Record<string, string>) {
  const keep = ["PATH", "HOME", "DENO_DIR", "NO_COLOR"];
  const base = Object.fromEntries(
    keep.flatMap((k) => Deno.env.get(k) === undefined ? [] : [[k, Deno.env.get(k)!]]),
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...COMPILE_PERMS, "pipeline/compile_main.ts"],
    env: { ...base, ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

if (!DENORT_BIN) {
  console.log(
    "compile_test: DENORT_BIN is unset: skipping the build of the binaries " +
      "(deno compile needs the denort runtime and this machine cannot download it)",
  );
}

Deno.test({
  name: "compile: builds both binaries with DENORT_BIN; they print their usage",
  ignore: !DENORT_BIN,
  async fn() {
    const r = await compile({ DENORT_BIN: DENORT_BIN! });
    assert.equal(r.code, 0, r.stderr);
    for (const [bin, cmd] of [["tickpipe-sensor", "sensor"], ["tickpipe-aggregate", "aggregate"]]) {
      const out = await new Deno.Command(`dist/${bin}`, { args: [cmd, "--help"], stdout: "piped" })
        .output();
      assert.equal(out.code, 0, bin);
      assert.match(new TextDecoder().decode(out.stdout), new RegExp(`Usage: tickpipe ${cmd}`));
    }
  },
});

Deno.test({
  name: "compile: without a reachable runtime it fails with a clear DENORT_BIN message",
  ignore: !!DENORT_BIN,
  async fn() {
    const r = await compile({});
    if (r.code === 0) {
      // This machine could download denort: the binaries must exist then.
      assert.ok((await Deno.stat("dist/tickpipe-sensor")).isFile);
      return;
    }
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /deno compile needs the denort runtime: set DENORT_BIN=\/path\/to\/denort/,
    );
    assert.ok(!/\n\s+at /.test(r.stderr), "no stack trace");
  },
});
