// common/permissions.ts: each command's allow-lists derived from its configuration (flags > env >
// defaults), against a simple oracle on random configurations; the one message of a denial; the
// static permission sets of deno.json are exactly the lists of the default configuration.
import assert from "node:assert/strict";
import { ConfigError } from "../../common/config.ts";
import {
  AccessDeniedError,
  accessDeniedOf,
  type AccessNeed,
  checkAccess,
  commandAccess,
  configuredBrokers,
  deniedTarget,
  hasDerivedAccess,
  isPermissionError,
  kafkaDenied,
  launchFlags,
  permissionFlags,
  SIMULATOR_DEFAULT,
} from "../../common/permissions.ts";
import { DEFAULT_HOSTNAME, DEFAULT_PORT } from "../../ingest/simulator.ts";
import { METRICS_PORTS } from "../../common/metrics_flags.ts";
import { mulberry32 } from "../../common/prng.ts";
import { sampleRaw } from "../_helpers/option_samples.ts";
import { COMMAND_OPTIONS } from "../../pipeline/options.ts";

const ROOT = "/repo/";

type Env = Record<string, string>;

/** The lists of a flag set, by kind. */
function lists(flags: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of flags) {
    const m = /^--allow-(net|read|write)=(.+)$/.exec(f);
    assert.ok(m, `unexpected flag ${f}`);
    assert.ok(!(m[1] in out), `one flag per kind: ${flags}`);
    out[m[1]] = m[2].split(",");
    assert.equal(new Set(out[m[1]]).size, out[m[1]].length, `no duplicates: ${f}`);
  }
  return out;
}

const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();

/** The flags the oracle below derives permissions from (and `--help`, which skips it all). */
const DERIVING = new Set([
  "brokers",
  "database-url",
  "topic",
  "kv",
  "source",
  "spool-dir",
  "record",
  "port",
  "hostname",
  "out-dir",
  "metrics-port",
  "metrics-host",
  "dashboard-port",
  "dashboard-host",
  "help",
]);

/** Random configuration pieces. */
function generator(seed: number) {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const port = () => String(1 + Math.floor(rnd() * 65535));
  const host = () =>
    pick([
      () => `10.${Math.floor(rnd() * 256)}.0.${Math.floor(rnd() * 256)}`,
      () => pick(["kafka", "db.internal", "a-b.example.com", "localhost"]),
      () => "[::1]",
      () => "127.0.0.1",
    ])();
  return { rnd, pick, port, host };
}

/** One random case: the command, its args and env, and what the oracle expects. */
function randomCase(seed: number) {
  const { rnd, pick, port, host } = generator(seed);
  const command = pick([
    "ingest",
    "aggregate",
    "sensor",
    "offsets",
    "status",
    "migrate",
    "services",
    "simulate",
    "demo",
    "start",
    "compile",
    "dashboard",
  ]);
  const args: string[] = [];
  const env: Env = {};
  // Flags of the command that grant nothing (with and without values): the derivation parses
  // them with the command's own table and must not be confused by them.
  const table = COMMAND_OPTIONS[command];
  const inert = Object.keys(table).filter((n) => !DERIVING.has(n));
  const noise = () => {
    if (inert.length === 0 || rnd() < 0.3) return;
    const name = pick(inert);
    const raw = sampleRaw(name, table[name], rnd);
    if (raw === true) args.push(`--${name}`);
    else if (raw.startsWith("-")) args.push(`--${name}=${raw}`);
    else args.push(`--${name}`, raw);
  };
  noise();
  // Each setting: from a flag, the environment, or the default.
  const source = <T>(flag: string, variable: string | null, value: string, fallback: T) => {
    const r = rnd();
    // A flag only where the command takes it (it rejects any other: exit 2).
    if (r < 0.4 && Object.hasOwn(table, flag)) {
      args.push(rnd() < 0.5 ? `--${flag}=${value}` : `--${flag}`, value);
      if (args.at(-2)!.includes("=")) args.pop();
      if (variable !== null && rnd() < 0.5) env[variable] = "ignored:1"; // the flag wins
      return value;
    }
    if (variable !== null && r < 0.8) {
      env[variable] = value;
      return value;
    }
    return fallback;
  };
  const brokers = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => `${host()}:${port()}`);
  const bs = source("brokers", "KAFKA_BROKERS", brokers.join(","), "127.0.0.1:9092").split(",");
  let hosts: string[] = [];
  if (rnd() < 0.5) {
    hosts = Array.from({ length: 1 + Math.floor(rnd() * 2) }, () => `${host()}:${port()}`);
    env.TICKPIPE_KAFKA_HOSTS = hosts.join(",");
  }
  const dbHost = host();
  const dbPort = rnd() < 0.7 ? port() : "";
  const pgport = rnd() < 0.3 ? port() : undefined;
  if (pgport !== undefined) env.PGPORT = pgport;
  const url = `postgres://u:secret@${dbHost}${dbPort === "" ? "" : `:${dbPort}`}/db`;
  const db = source(
    "database-url",
    "DATABASE_URL",
    url,
    "postgres://postgres:postgres@127.0.0.1:5432/tickpipe",
  );
  const dbTarget = (() => {
    const u = new URL(db);
    return `${u.hostname}:${u.port || pgport || 5432}`;
  })();
  const topic = source("topic", "TICKS_TOPIC", pick(["ticks", "prices-x", "t.1"]), "ticks");
  const kvRaw = pick(["/var/lib/tp/x.kv", ".data/a.kv", "state.kv", "rel/dir/k.kv", "/root.kv"]);
  const kv = source("kv", "TICKPIPE_KV", kvRaw, ".data/tickpipe.kv");
  noise();
  const kvTargets = kv.lastIndexOf("/") > 0
    ? [kv.slice(0, kv.lastIndexOf("/"))]
    : [kv, `${kv}.aggregate-${encodeURIComponent(topic)}.lock`];
  const kafka = [...bs, ...hosts];
  const expected: Record<string, string[]> = {};
  const put = (kind: string, xs: string[]) => {
    if (xs.length > 0) expected[kind] = sorted([...(expected[kind] ?? []), ...xs]);
  };
  // --metrics-port / --metrics-host, for the commands that serve metrics when asked.
  const metrics = () => {
    if (rnd() < 0.5) return [];
    const p = 1 + Math.floor(rnd() * 65535);
    args.push("--metrics-port", String(p));
    if (rnd() < 0.3) {
      const h = pick(["0.0.0.0", "::1", "[::1]", "localhost"]);
      args.push("--metrics-host", h);
      const bare = h.replace(/^\[(.*)\]$/, "$1");
      return [bare.includes(":") ? `[${bare}]:${p}` : `${bare}:${p}`];
    }
    return [`127.0.0.1:${p}`];
  };
  // --dashboard-port / --dashboard-host of start, demo and dashboard (default 127.0.0.1:8080;
  // 0 = none).
  const dashboard = () => {
    const p = pick([undefined, "0", "8181"]);
    if (p !== undefined) args.push(pick(["--dashboard-port", "--dashboard-port="]), p);
    if (args.at(-2) === "--dashboard-port=") args.splice(-2, 2, `--dashboard-port=${p}`);
    const h = rnd() < 0.3 ? pick(["0.0.0.0", "::1", "[::1]"]) : undefined;
    if (h !== undefined) args.push("--dashboard-host", h);
    const port = Number(p ?? 8080);
    if (port === 0) return [];
    const bare = (h ?? "127.0.0.1").replace(/^\[(.*)\]$/, "$1");
    return [bare.includes(":") ? `[${bare}]:${port}` : `${bare}:${port}`];
  };
  switch (command) {
    case "ingest": {
      const src = pick([
        { url: "wss://feed.example:8443/?v=2", target: "feed.example:8443" },
        { url: "ws://127.0.0.1:8765/?version=2", target: "127.0.0.1:8765" },
        { url: "wss://streamer.example/x", target: "streamer.example:443" },
        { url: "ws://[::1]/", target: "[::1]:80" },
      ]);
      const given = rnd() < 0.7;
      if (given) args.push("--source", src.url);
      const spool = rnd() < 0.5 ? "/srv/spool" : undefined;
      if (spool) args.push("--spool-dir", spool);
      const record = rnd() < 0.5 ? pick(["/srv/rec/feed.txt", "feed.txt"]) : undefined;
      if (record) args.push("--record", record);
      put("net", [...kafka, given ? src.target : "streamer.finance.yahoo.com:443", ...metrics()]);
      put("read", [spool ?? `.data/spool/${topic}`]);
      put("write", [spool ?? `.data/spool/${topic}`]);
      if (record) put("write", [record.includes("/") ? "/srv/rec" : record]);
      break;
    }
    case "aggregate":
      put("net", [...kafka, dbTarget, ...metrics()]);
      put("read", [...kvTargets, `${ROOT}sql`]);
      put("write", kvTargets);
      break;
    case "sensor":
      put("net", [...kafka, ...metrics()]);
      put("read", kvTargets);
      put("write", kvTargets);
      break;
    case "offsets":
      put("net", kafka);
      put("read", kvTargets);
      put("write", kvTargets);
      break;
    case "status":
      put("net", [...kafka, dbTarget]);
      put("read", kvTargets);
      put("write", kvTargets);
      break;
    case "demo":
      put("net", [...kafka, dbTarget, ...dashboard()]);
      put("read", [...kvTargets, ".data"]);
      put("write", [...kvTargets, ".data"]);
      break;
    case "dashboard":
      put("net", [...kafka, dbTarget, ...dashboard()]);
      put("read", [...kvTargets, `${ROOT}pipeline/web`]);
      put("write", kvTargets);
      break;
    case "migrate":
      put("net", [dbTarget]);
      put("read", [`${ROOT}sql`]);
      break;
    case "services":
      put("net", [...kafka, dbTarget]);
      put("read", [ROOT.slice(0, -1), "/usr/lib/postgresql", "/etc/postgresql-common", "/var/tmp"]);
      break;
    case "simulate": {
      const p = rnd() < 0.5 ? String(Math.floor(rnd() * 3) * 10000) : undefined;
      if (p !== undefined) args.push("--port", p);
      const h = rnd() < 0.3 ? "0.0.0.0" : undefined;
      if (h !== undefined) args.push("--hostname", h);
      const hh = h ?? "127.0.0.1";
      put("net", [p === "0" ? hh : `${hh}:${p ?? 8765}`]);
      break;
    }
    case "compile": {
      const out = rnd() < 0.5 ? "/tmp/out" : undefined;
      if (out) args.push("--out-dir", out);
      put("write", [out ?? "dist"]);
      break;
    }
    case "start": {
      // The tree's endpoint on P (default 9490, 0 = none) and the children's on P+1..P+3.
      const p = pick([undefined, "0", "9590", "20000"]);
      if (p !== undefined) args.push("--metrics-port", p);
      const port = Number(p ?? 9490);
      if (port > 0) put("net", [0, 1, 2, 3].map((i) => `127.0.0.1:${port + i}`));
      put("net", dashboard());
      break;
    }
  }
  return { command, args, env, expected };
}

Deno.test("permissions: random configurations give exactly the oracle's lists", () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const c = randomCase(seed);
    const flags = launchFlags(c.command, c.args, { env: (n) => c.env[n], root: ROOT });
    const got = lists(flags);
    for (const k of Object.keys(got)) got[k] = sorted(got[k]);
    assert.deepEqual(
      got,
      c.expected,
      `seed ${seed}: ${c.command} ${c.args.join(" ")} ${JSON.stringify(c.env)}`,
    );
  }
});

Deno.test("permissions: an explicit kafkaHosts option wins over TICKPIPE_KAFKA_HOSTS", () => {
  const env: Env = { KAFKA_BROKERS: "b:1", TICKPIPE_KAFKA_HOSTS: "x:1" };
  const f = lists(launchFlags("sensor", [], { env: (n) => env[n], kafkaHosts: ["k:2", "b:1"] }));
  assert.deepEqual(f.net, ["b:1", "k:2"]);
  assert.deepEqual(configuredBrokers("sensor", ["--brokers=a:1,b:2"], {}), ["a:1", "b:2"]);
  assert.deepEqual(configuredBrokers("ingest", [], { env: (n) => env[n] }), ["b:1"]);
  assert.deepEqual(configuredBrokers("start", []), ["127.0.0.1:9092"]);
});

Deno.test("permissions: bad values are configuration errors naming them", () => {
  const bad: [string, string[], Env, RegExp][] = [
    ["ingest", ["--brokers", "nope"], {}, /--brokers has an invalid broker "nope"/],
    ["sensor", [], { KAFKA_BROKERS: "a:99999" }, /KAFKA_BROKERS has an invalid broker "a:99999"/],
    ["sensor", [], { TICKPIPE_KAFKA_HOSTS: "x" }, /TICKPIPE_KAFKA_HOSTS has an invalid broker/],
    ["ingest", ["--source", "http://x/"], {}, /--source "http:\/\/x\/" is not a ws:\/\//],
    ["migrate", [], { DATABASE_URL: "mysql://u:pw@h/db" }, /DATABASE_URL ".*" has scheme/],
    ["aggregate", ["--kv", "/a,b/k.kv"], {}, /--kv \/a,b\/k\.kv contains a comma/],
    ["simulate", ["--port", "70000"], {}, /--port "70000" is invalid/],
    ["aggregate", ["--kv", "k.kv", "--topic", "a b"], {}, /--topic "a b" is not a valid Kafka/],
    // The command line is parsed with the command's own table: what the command would reject.
    ["sensor", ["--trigger", "soon"], {}, /--trigger "soon" is not a duration/],
    ["start", ["--windows", "1m,1m"], {}, /--windows "1m,1m" repeats a duration/],
    ["aggregate", ["--bogus"], {}, /Unknown option '--bogus'/],
    ["simulate", ["--brokers", "a:1"], {}, /Unknown option '--brokers'/],
    ["start", ["--metrics-port", "65533"], {}, /--metrics-port "65533" leaves no room/],
  ];
  for (const [command, args, env, re] of bad) {
    assert.throws(
      () => commandAccess(command, args, { env: (n) => env[n] }),
      (e) => e instanceof ConfigError && re.test(e.message) && !e.message.includes("pw@"),
      `${command} ${args.join(" ")}`,
    );
  }
  // Not this command's business: ingest never reads a database setting, even a broken one.
  assert.doesNotThrow(() =>
    commandAccess("ingest", [], { env: (n) => ({ DATABASE_URL: "x" })[n] })
  );
  assert.deepEqual(commandAccess("launch", ["--brokers", "nope"]), [], "no derived access");
  assert.deepEqual(permissionFlags([]), [], "no need, no flag: the set's own lists apply");
});

Deno.test("permissions: checkAccess allows exactly the derived lists; a denial names the address, setting and fix", () => {
  for (let seed = 1; seed <= 500; seed++) {
    const c = randomCase(seed);
    const env = (n: string) => c.env[n];
    const needs = commandAccess(c.command, c.args, { env, root: ROOT });
    const granted = lists(permissionFlags(needs));
    const query = (g: Record<string, string[]>) => (n: { kind: string; target: string }) =>
      (g[n.kind] ?? []).includes(n.target);
    checkAccess(needs, { query: query(granted) });
    if (needs.length === 0) continue;
    // Take one target away: that need is the one reported.
    const victim = needs[Math.floor(mulberry32(seed)() * needs.length)];
    const less = {
      ...granted,
      [victim.kind]: granted[victim.kind].filter((t) => t !== victim.target),
    };
    assert.throws(
      () => checkAccess(needs, { query: query(less), command: c.command, standalone: false }),
      (e) => {
        assert.ok(e instanceof AccessDeniedError && e instanceof ConfigError);
        assert.equal(e.need.target, victim.target);
        assert.ok(e.message.includes(victim.target), e.message);
        assert.ok(e.message.includes(`deno task ${c.command}`), e.message);
        assert.ok(!e.message.includes("secret"), "the database password is redacted");
        return true;
      },
    );
  }
});

Deno.test("permissions: the messages", () => {
  const need: AccessNeed = {
    kind: "net",
    target: "10.0.0.5:9092",
    what: "Kafka",
    setting: "KAFKA_BROKERS=10.0.0.5:9092",
    settings: "KAFKA_BROKERS / --brokers",
  };
  assert.equal(
    new AccessDeniedError(need, { command: "ingest", standalone: false }).message,
    `Kafka at 10.0.0.5:9092 (KAFKA_BROKERS=10.0.0.5:9092) is not in this command's allowed ` +
      `hosts: run it through "deno task ingest", which allows exactly the configured addresses ` +
      `and paths (KAFKA_BROKERS / --brokers), or change KAFKA_BROKERS / --brokers`,
  );
  assert.match(
    new AccessDeniedError(need, { command: "aggregate", standalone: true }).message,
    /this binary's permissions were derived from the configuration it was built with: rebuild it with "deno task compile"/,
  );
  const adv = kafkaDenied("10.0.0.7:9092", ["proxy:1"], { command: "sensor", standalone: false });
  assert.equal(
    adv.message,
    `Kafka broker at 10.0.0.7:9092 (advertised by the cluster at KAFKA_BROKERS=proxy:1) is not ` +
      `in this command's allowed hosts: run it through "deno task sensor" while Kafka is ` +
      `reachable (its launcher then learns the brokers the cluster advertises), or set ` +
      `TICKPIPE_KAFKA_HOSTS=10.0.0.7:9092`,
  );
  assert.match(
    kafkaDenied("proxy:1", ["proxy:1"], { command: "x", standalone: false }).message,
    /^Kafka at proxy:1 \(KAFKA_BROKERS=proxy:1\)/,
  );
});

Deno.test("permissions: denials are recognised however they are wrapped, and named by setting", () => {
  const raw = new Deno.errors.NotCapable(
    `Requires net access to "127.0.0.1:5433", run again with the --allow-net flag`,
  );
  // kafkajs wraps errors with originalError; others with cause; some only copy the message.
  const wrapped = Object.assign(new Error("retries exceeded"), {
    name: "KafkaJSNumberOfRetriesExceeded",
    originalError: Object.assign(new Error(`Connection error: ${raw.message}`), {
      name: "KafkaJSConnectionError",
    }),
  });
  const caused = new Error("outer", { cause: raw });
  for (const e of [raw, wrapped, caused]) {
    assert.ok(isPermissionError(e));
    assert.deepEqual(deniedTarget(e), { kind: "net", target: "127.0.0.1:5433" });
  }
  assert.ok(!isPermissionError(new Error("Connection refused")));
  assert.equal(accessDeniedOf(new Error("ECONNREFUSED")), null);
  const needs = commandAccess("migrate", [], {
    env: (n) => ({ DATABASE_URL: "postgres://u:pw@127.0.0.1:5433/db" })[n],
  });
  const named = accessDeniedOf(wrapped, { needs, command: "migrate", standalone: false });
  assert.ok(named);
  assert.match(
    named.message,
    /^PostgreSQL at 127\.0\.0\.1:5433 \(DATABASE_URL=postgres:\/\/u:\*\*\*@127\.0\.0\.1:5433\/db\)/,
  );
  const unnamed = accessDeniedOf(raw, { command: "migrate", standalone: false });
  assert.match(unnamed!.message, /^The address at 127\.0\.0\.1:5433 \(Requires net access/);
  // env, run and sys come from the permission set alone: no setting fixes them.
  const env = accessDeniedOf(
    new Deno.errors.NotCapable(
      `Requires env access to "NODE_ENV", run again with the --allow-env flag`,
    ),
    { command: "aggregate", standalone: false },
  );
  assert.equal(
    env!.message,
    `Environment variable NODE_ENV (Requires env access to "NODE_ENV") is not in this command's ` +
      `allowed environment variables: the "aggregate" permission set in deno.json does not list ` +
      `it, and no setting changes that: a tickpipe bug, please report it`,
  );
  assert.ok(env instanceof ConfigError, "exit 2");
});

Deno.test("permissions: deno.json's sets hold exactly the lists of the default configuration", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  const root = decodeURIComponent(new URL("../../", import.meta.url).pathname);
  const sets = config.permissions as Record<string, Record<string, string[]>>;
  const abs = (p: string) =>
    (p.startsWith("/") ? p : `${root}${p.replace(/^\.\/?/, "")}`).replace(/\/$/, "");
  const covers = (list: string[] | undefined, path: string) =>
    (list ?? []).some((l) => abs(path) === abs(l) || abs(path).startsWith(`${abs(l)}/`));
  for (
    const command of [
      "services",
      "migrate",
      "ingest",
      "simulate",
      "aggregate",
      "sensor",
      "offsets",
      "status",
      "start",
      "demo",
      "dashboard",
      "compile",
    ]
  ) {
    const set = sets[command];
    assert.ok(set, `a permission set for ${command}`);
    // The sets also allow the metrics port a command serves on when asked (--metrics-port).
    const served = ["ingest", "sensor", "aggregate"].includes(command)
      ? ["--metrics-port", String(METRICS_PORTS[command as "ingest"])]
      : [];
    const needs = commandAccess(command, served, { root });
    const net = sorted(needs.filter((n) => n.kind === "net").map((n) => n.target));
    assert.deepEqual(sorted(set.net ?? []), net, `${command}: net list = the defaults'`);
    for (const n of needs.filter((n) => n.kind !== "net")) {
      assert.ok(covers(set[n.kind], n.target), `${command}: ${n.kind} ${n.target} in its set`);
    }
    if (needs.some((n) => n.what === "Kafka") || command === "start") {
      assert.ok(set.env.includes("TICKPIPE_KAFKA_HOSTS"), `${command} reads TICKPIPE_KAFKA_HOSTS`);
    }
    // Every task runs through the launcher.
    assert.equal(config.tasks[command], `deno run -q -P=launch main.ts launch ${command}`);
  }
  assert.deepEqual(sorted(Object.keys(sets.launch)), ["env", "run"], "the launcher: env and run");
  assert.deepEqual(sets.launch.run, ["deno"]);
});

Deno.test("permissions: the simulator's default address is the one the launcher allows", () => {
  assert.deepEqual(SIMULATOR_DEFAULT, { hostname: DEFAULT_HOSTNAME, port: DEFAULT_PORT });
});

Deno.test("permissions: TLS files named in DATABASE_URL join the read list of PostgreSQL's commands", () => {
  const url =
    "postgres://u:pw-secret-1@db.example:5433/t?sslmode=verify-full&sslrootcert=/etc/pg/ca.pem" +
    "&sslcert=/etc/pg/client.crt&sslkey=/etc/pg/client.key";
  for (const command of ["aggregate", "status", "migrate", "demo", "dashboard"]) {
    const needs = commandAccess(command, [], {
      env: (n) => (n === "DATABASE_URL" ? url : undefined),
    });
    const files = needs.filter((n) => n.what.startsWith("PostgreSQL TLS file"));
    assert.deepEqual(
      files.map((n) => [n.kind, n.target, n.what]),
      [
        ["read", "/etc/pg/ca.pem", "PostgreSQL TLS file (sslrootcert)"],
        ["read", "/etc/pg/client.crt", "PostgreSQL TLS file (sslcert)"],
        ["read", "/etc/pg/client.key", "PostgreSQL TLS file (sslkey)"],
      ],
      command,
    );
    assert.ok(files.every((n) => !n.setting.includes("pw-secret-1")), "no password in a setting");
    assert.ok(needs.some((n) => n.kind === "net" && n.target === "db.example:5433"), command);
  }
  // Without them, nothing is added; ingest reads no database settings at all.
  const plain = commandAccess("aggregate", [], { env: () => undefined });
  assert.equal(plain.filter((n) => n.what.startsWith("PostgreSQL TLS")).length, 0);
  const ingest = commandAccess("ingest", [], {
    env: (n) => (n === "DATABASE_URL" ? url : undefined),
  });
  assert.equal(ingest.filter((n) => n.what.startsWith("PostgreSQL")).length, 0);
});

Deno.test("permissions: a TLS file's read need never takes away what a command's set reads", () => {
  // A derived read list replaces the set's own: every path the set reads must stay covered (or be
  // narrowed to the configured one, like the KV folder inside .data) when a CA file, a client
  // certificate or an sslrootcert adds a need. migrate once lost sql/ this way.
  const root = decodeURIComponent(new URL("../../", import.meta.url).pathname);
  const config = JSON.parse(Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)));
  const sets = config.permissions as Record<string, Record<string, string[]>>;
  const abs = (p: string) =>
    (p.startsWith("/") ? p : `${root}${p.replace(/^\.\/?/, "")}`).replace(/\/$/, "");
  const within = (a: string, b: string) => a === b || a.startsWith(`${b}/`);
  const env: Env = {
    KAFKA_SECURITY_PROTOCOL: "SSL",
    KAFKA_SSL_CA_FILE: "/etc/kafka/ca.pem",
    KAFKA_SSL_CERT_FILE: "/etc/kafka/client.crt",
    KAFKA_SSL_KEY_FILE: "/etc/kafka/client.key",
    DATABASE_URL: "postgres://u@db:5432/t?sslmode=verify-full&sslrootcert=/etc/pg/ca.pem",
  };
  for (const [command, set] of Object.entries(sets)) {
    if (command === "launch" || !hasDerivedAccess(command)) continue;
    const reads = commandAccess(command, [], { env: (n) => env[n], root })
      .filter((n) => n.kind === "read").map((n) => abs(n.target));
    if (reads.length === 0) continue; // no --allow-read: the set's list applies
    for (const path of (set.read ?? []).map(abs)) {
      assert.ok(
        reads.some((r) => within(r, path) || within(path, r)),
        `${command}: its set reads ${path}, which the derived list ${reads.join(",")} drops`,
      );
    }
  }
});
