// Each entry point runs under its own least-privilege permission set (deno.json "permissions"),
// whose net/read/write lists the launcher replaces with exactly what the command's configuration
// names (tests/launcher_test.ts, tests/unit/permissions_test.ts); these tests prove what each set
// allows and denies on its own (the lists of the default configuration).
import assert from "node:assert/strict";

async function probe(set: string, checks: string[]): Promise<Record<string, string>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", `-P=${set}`, "tests/_helpers/permission_probe.ts", ...checks],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(text.split("\n").pop()!);
}

const outside = [
  "read:/etc/passwd",
  "read:deno.json",
  "write:/tmp/tickpipe-probe",
  "env:HOME",
  "env:AWS_SECRET_ACCESS_KEY",
  "run:sh",
  "net:1.1.1.1:443",
  "net:127.0.0.1:22",
];

Deno.test("permissions: the aggregator reaches only Kafka, PostgreSQL and .data", async () => {
  const r = await probe("aggregate", [
    ...outside,
    "net:127.0.0.1:9092",
    "net:127.0.0.1:5432",
    "read:.data/tickpipe.kv",
    "write:.data/probe-aggregate",
    "env:DATABASE_URL",
  ]);
  for (const c of outside) assert.equal(r[c], "denied", `aggregate must not: ${c}`);
  for (
    const c of [
      "net:127.0.0.1:9092",
      "net:127.0.0.1:5432",
      "read:.data/tickpipe.kv",
      "write:.data/probe-aggregate",
      "env:DATABASE_URL",
    ]
  ) {
    assert.equal(r[c], "allowed", `aggregate needs: ${c}`);
  }
});

Deno.test("permissions: ingest cannot reach PostgreSQL nor read DATABASE_URL's server", async () => {
  const r = await probe("ingest", [
    ...outside,
    "net:127.0.0.1:5432",
    "net:127.0.0.1:9092",
    "net:127.0.0.1:8765",
  ]);
  for (const c of outside) assert.equal(r[c], "denied", `ingest must not: ${c}`);
  assert.equal(r["net:127.0.0.1:5432"], "denied", "ingest must not reach PostgreSQL");
  assert.equal(r["net:127.0.0.1:9092"], "allowed");
  // Another source (the demo's simulator) is allowed by the launcher when --source names it.
  assert.equal(r["net:127.0.0.1:8765"], "denied");
});

Deno.test("permissions: ingest reads no database settings and writes only its spool and recordings", async () => {
  // The allowed probes write real files: their directories must exist.
  await Deno.mkdir(".data/spool", { recursive: true });
  await Deno.mkdir(".data/recordings", { recursive: true });
  const denied = [
    // No database settings.
    "env:DATABASE_URL",
    "env:PGPASSWORD",
    "env:PGUSER",
    "env:PGHOST",
    "env:PGPASSFILE",
    "env:TICKPIPE_KV",
    // Not the KV (offsets, lease, checkpoints), neither as a file nor as a database.
    "read:.data/tickpipe.kv",
    "write:.data/tickpipe.kv",
    "kv:.data/tickpipe.kv",
    // Nothing else under .data, nor a sibling whose name merely starts like the spool's.
    "write:.data/probe-ingest",
    "write:.data/spool-evil",
    "write:.data/test/probe-ingest",
    "read:.data/recordings/probe-ingest",
  ];
  const allowed = [
    "env:KAFKA_BROKERS",
    "env:TICKS_TOPIC",
    "read:.data/spool/probe-ingest",
    "write:.data/spool/probe-ingest",
    "write:.data/recordings/probe-ingest",
  ];
  const r = await probe("ingest", [...denied, ...allowed]);
  for (const c of denied) assert.equal(r[c], "denied", `ingest must not: ${c}`);
  for (const c of allowed) assert.equal(r[c], "allowed", `ingest needs: ${c}`);
});

Deno.test("permissions: ingest refuses a spool or record path outside its permission set with exit 2 and names the fix", async () => {
  const run = async (args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "-P=ingest", "main.ts", "ingest", ...args],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, text: new TextDecoder().decode(out.stderr) };
  };
  const rec = await run(["--record", ".data/feed.txt"]);
  assert.equal(rec.code, 2, rec.text);
  assert.match(
    rec.text,
    /recording folder \.data \(--record \.data\/feed\.txt\) is not in this command's allowed write paths: run it through "deno task ingest"/,
  );
  const spool = await run(["--spool-dir", ".data/test/spool-x"]);
  assert.equal(spool.code, 2, spool.text);
  assert.match(
    spool.text,
    /spool directory \.data\/test\/spool-x \(--spool-dir \.data\/test\/spool-x\) is not in this command's allowed read paths/,
  );
  const db = await run(["--database-url", "postgres://u:p@h/db"]);
  assert.equal(db.code, 2, db.text);
  assert.match(db.text, /database-url/);
  assert.doesNotMatch(db.text, /u:p@/, "never echoes a database URL");
});

Deno.test("permissions: the sensor may run deno but not a shell, nor reach PostgreSQL", async () => {
  const r = await probe("sensor", [
    ...outside,
    "net:127.0.0.1:5432",
    "net:127.0.0.1:9092",
    "run:deno",
  ]);
  for (const c of outside) assert.equal(r[c], "denied", `sensor must not: ${c}`);
  assert.equal(r["net:127.0.0.1:5432"], "denied");
  assert.equal(r["net:127.0.0.1:9092"], "allowed");
  assert.equal(r["run:deno"], "allowed");
});

Deno.test("permissions: simulate, offsets, status and start stay in their lanes", async () => {
  const sim = await probe("simulate", [...outside, "net:127.0.0.1:9092", "net:127.0.0.1:5432"]);
  for (const c of [...outside, "net:127.0.0.1:9092", "net:127.0.0.1:5432"]) {
    assert.equal(sim[c], "denied", `simulate: ${c}`);
  }
  const off = await probe("offsets", [...outside, "net:127.0.0.1:5432"]);
  for (const c of [...outside, "net:127.0.0.1:5432"]) {
    assert.equal(off[c], "denied", `offsets: ${c}`);
  }
  const start = await probe("start", [...outside, "net:127.0.0.1:9092", "read:.data/tickpipe.kv"]);
  for (const c of [...outside, "net:127.0.0.1:9092", "read:.data/tickpipe.kv"]) {
    assert.equal(start[c], "denied", `start: ${c}`);
  }
});

Deno.test("permissions: the launcher reads its configuration and runs deno, nothing else", async () => {
  const r = await probe("launch", [
    ...outside,
    "net:127.0.0.1:9092",
    "net:127.0.0.1:5432",
    "read:.data/tickpipe.kv",
    "write:.data/x",
    "env:DATABASE_URL",
    "env:KAFKA_BROKERS",
    "env:TICKPIPE_KAFKA_HOSTS",
    "run:deno",
  ]);
  for (
    const c of [...outside, "net:127.0.0.1:9092", "net:127.0.0.1:5432", "read:.data/tickpipe.kv"]
  ) {
    assert.equal(r[c], "denied", `launch must not: ${c}`);
  }
  assert.equal(r["write:.data/x"], "denied");
  for (
    const c of ["env:DATABASE_URL", "env:KAFKA_BROKERS", "env:TICKPIPE_KAFKA_HOSTS", "run:deno"]
  ) {
    assert.equal(r[c], "allowed", `launch needs: ${c}`);
  }
});

Deno.test("permissions: no permission set grants everything", async () => {
  const config = JSON.parse(await Deno.readTextFile("deno.json"));
  for (
    const [name, set] of Object.entries(
      config.permissions as Record<string, Record<string, unknown>>,
    )
  ) {
    assert.ok(!("all" in set), `${name} grants all`);
    for (const [k, v] of Object.entries(set)) assert.notEqual(v, true, `${name}.${k} is unscoped`);
  }
});
