// Child processes (common/child.ts): the one `deno run` command line builder, the one line pump,
// and relayed lines that stay valid JSON under LOG_FORMAT=json (no `[child]` prefixes).
import assert from "node:assert/strict";
import {
  denoRunArgs,
  projectFiles,
  pumpLines,
  relayLine,
  relayOutput,
} from "../../common/child.ts";
import { createLogger } from "../../common/log.ts";
import { Supervisor } from "../../pipeline/supervisor.ts";

function streamOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const x of chunks) c.enqueue(typeof x === "string" ? enc.encode(x) : x);
      c.close();
    },
  });
}

Deno.test("child: denoRunArgs builds `run --quiet --no-prompt -P=<set> --config <deno.json> <main.ts> <command> ...`", () => {
  const paths = { configPath: "/p/deno.json", mainPath: "/p/main.ts" };
  assert.deepEqual(denoRunArgs("ingest", ["--topic", "t"], paths), [
    "run",
    "--quiet",
    "--no-prompt",
    "-P=ingest",
    "--config",
    "/p/deno.json",
    "/p/main.ts",
    "ingest",
    "--topic",
    "t",
  ]);
  assert.deepEqual(
    denoRunArgs("sensor", [], { ...paths, permissionSet: "start" }).slice(0, 4),
    ["run", "--quiet", "--no-prompt", "-P=start"],
  );
  assert.deepEqual(
    denoRunArgs("x", [], { ...paths, permissionSet: null }).slice(0, 4),
    ["run", "--quiet", "--no-prompt", "--config"],
    "no permission flag",
  );
  assert.deepEqual(
    denoRunArgs("ingest", ["-h"], { ...paths, allowAll: true, denoFlags: ["--allow-net=a:1"] }),
    ["run", "--quiet", "--no-prompt", "-A", "--allow-net=a:1", "--config", "/p/deno.json"]
      .concat(["/p/main.ts", "ingest", "-h"]),
  );
  const files = projectFiles();
  const d = denoRunArgs("status", []);
  assert.equal(d[d.indexOf("--config") + 1], files.configPath);
  assert.ok(files.configPath.startsWith("/") && files.configPath.endsWith("/deno.json"));
  assert.equal(Deno.statSync(files.mainPath).isFile, true, "main.ts exists at the default path");
});

Deno.test("child: pumpLines splits lines across chunks, multibyte characters and CRLF included", async () => {
  const euro = new TextEncoder().encode("€"); // 3 bytes, split across two chunks below
  const lines: string[] = [];
  await pumpLines(
    streamOf(["a\r\nb", euro.slice(0, 1), euro.slice(1), "c\n\nlast"]),
    (l) => lines.push(l),
  );
  assert.deepEqual(lines, ["a", "b€c", "", "last"]);
});

Deno.test("child: pumpLines ends quietly when the stream errors", async () => {
  const lines: string[] = [];
  let pulls = 0;
  const s = new ReadableStream<Uint8Array>({
    pull(c) {
      if (pulls++ === 0) c.enqueue(new TextEncoder().encode("one\ntw"));
      else c.error(new Error("process gone"));
    },
  });
  await pumpLines(s, (l) => lines.push(l));
  assert.deepEqual(lines, ["one", "tw"]);
});

Deno.test("child: text relay prefixes `[name] `; json relay adds `child` and stays valid JSON", () => {
  assert.equal(relayLine("ingest", "hello", { format: "text" }), "[ingest] hello");
  const obj = { ts: "t", level: "info", component: "ingest", msg: "Ingesting", n: 1 };
  const j = JSON.parse(relayLine("ingest", JSON.stringify(obj), { format: "json" }));
  assert.deepEqual(j, { ...obj, child: "ingest" });
  // Relayed twice (the aggregator's line through the sensor, then through start).
  const once = relayLine("aggregate", JSON.stringify(obj), { format: "json" });
  assert.equal(JSON.parse(relayLine("sensor", once, { format: "json" })).child, "sensor/aggregate");
  // A line that is not a JSON object is wrapped, not prefixed.
  for (const raw of ["ingest stopped (SIGTERM): frames=3", "[1,2]", "{broken", ""]) {
    const w = JSON.parse(
      relayLine("ingest", raw, { format: "json", stream: "stderr", now: () => 0 }),
    );
    assert.deepEqual(w, {
      ts: "1970-01-01T00:00:00.000Z",
      level: "info",
      component: "ingest",
      child: "ingest",
      stream: "stderr",
      msg: raw,
    });
  }
});

Deno.test("child: relayed lines are redacted in both formats and json stays parseable", () => {
  const url = "postgres://u:hunter22@h:5432/db?password=qu3ry-pw&sslmode=off";
  const text = relayLine("sensor", `connecting ${url}`, { format: "text" });
  assert.doesNotMatch(text, /hunter22|qu3ry-pw/);
  const json = relayLine("sensor", JSON.stringify({ msg: "x", url }), { format: "json" });
  assert.doesNotMatch(json, /hunter22|qu3ry-pw/);
  assert.equal(JSON.parse(json).url, "postgres://u:***@h:5432/db?password=***&sslmode=off");
  const wrapped = relayLine("sensor", `e: ${url} "quoted"`, { format: "json" });
  assert.equal(
    JSON.parse(wrapped).msg,
    `e: postgres://u:***@h:5432/db?password=***&sslmode=off "quoted"`,
  );
});

Deno.test("child: relayOutput pumps a stream through relayLine", async () => {
  const out: string[] = [];
  await relayOutput(streamOf(['{"msg":"a"}\nplain\n']), "x", {
    write: (l) => out.push(l),
    format: "json",
    now: () => 0,
  });
  assert.deepEqual(out.map((l) => JSON.parse(l).child), ["x", "x"]);
  assert.deepEqual(out.map((l) => JSON.parse(l).msg), ["a", "plain"]);
});

// Stand-in for deno printing a JSON log line, a plain stdout line and a plain stderr line.
const FAKE = `#!/bin/sh
echo '{"ts":"2026-01-01T00:00:00.000Z","level":"info","component":"ingest","msg":"Ingesting"}'
echo "ingest stopped (SIGTERM): frames=1"
echo "a plain warning" >&2
exit 0
`;

Deno.test("supervisor: under LOG_FORMAT=json every relayed child line is one JSON object", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tickpipe-child-" });
  const deno = `${dir}/fake-deno`;
  await Deno.writeTextFile(deno, FAKE);
  await Deno.chmod(deno, 0o755);
  const lines: string[] = [];
  const sup = new Supervisor({
    logger: createLogger("test", { write: () => {} }),
    deno,
    write: (l) => lines.push(l),
    format: "json",
  });
  sup.add({ name: "ingest", command: "ingest", args: [], restart: false });
  await sup.wait();
  const recs = lines.map((l) => JSON.parse(l));
  assert.equal(recs.length, 3, lines.join("\n"));
  assert.ok(recs.every((r) => r.child === "ingest"));
  assert.ok(lines.every((l) => !l.startsWith("[")), "no text prefixes");
  assert.deepEqual(recs.map((r) => r.msg).sort(), [
    "Ingesting",
    "a plain warning",
    "ingest stopped (SIGTERM): frames=1",
  ]);
  assert.equal(recs.find((r) => r.msg === "a plain warning").stream, "stderr");
  await Deno.remove(dir, { recursive: true });
});
