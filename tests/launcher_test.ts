// Pointing tickpipe at other hosts by configuration alone (issue 15 §1), against the real broker
// and database: Kafka through a non-default bootstrap address (a TCP proxy in front of the
// shared broker, which advertises its own address), PostgreSQL on another port (a proxy to the
// shared server), the simulator on another port. Each command runs through the launcher
// (`main.ts launch <command>`, what `deno task <command>` runs) and may reach exactly the
// configured addresses; a denied address exits 2 at once with one message naming it and the fix.
import assert from "node:assert/strict";
import { config, tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";
import { cleanupRows } from "./_helpers/aggregate_stream.ts";
import {
  descendants,
  type Proc,
  randomPrefix,
  stillRunning,
  waitFor,
} from "./_helpers/e2e_pipeline.ts";
import { startTcpProxy, type TcpProxy } from "./_helpers/tcp_proxy.ts";
import { type MainRun, type MainRunOptions, runMain } from "./_helpers/launch_cli.ts";
import { startSimulator } from "../ingest/simulator.ts";
import { endOffsets, ensureTopic } from "../common/kafka.ts";
import {
  fetchAdvertisedBrokers,
  KafkaMetadataError,
  probeAdvertisedBrokers,
} from "../common/kafka_metadata.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const BROKER = config.brokers[0];
const PG = (() => {
  const u = new URL(config.databaseUrl);
  return `${u.hostname}:${u.port || 5432}`;
})();

/** The database URL with its host:port replaced by `address`. */
function dbUrlAt(address: string): string {
  const u = new URL(config.databaseUrl);
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), address.split(":").pop()!];
  u.hostname = host;
  u.port = port;
  return u.href;
}

/** `deno task <command>` without deno task: the launcher under its own permission set. */
const launch = (args: string[], options?: MainRunOptions) =>
  runMain(["-P=launch"], ["launch", ...args], options);

/** The command under its static permission set only (what a bare `deno run -P=<set>` gets). */
const direct = (args: string[], options?: MainRunOptions) =>
  runMain([`-P=${args[0]}`], args, options);

/** The `--allow-<kind>=` list of a deno command line, as a sorted array. */
function allowList(args: readonly string[], kind: string): string[] {
  const flag = args.find((a) => a.startsWith(`--allow-${kind}=`));
  return flag === undefined ? [] : flag.slice(`--allow-${kind}=`.length).split(",").sort();
}

/** A free TCP port on 127.0.0.1 (bound then released). */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A port P with P..P+count-1 free on 127.0.0.1 (start's metrics and its children's). */
function freePorts(count: number): number {
  for (let tries = 0; tries < 50; tries++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const held: Deno.Listener[] = [];
    try {
      for (let i = 0; i < count; i++) {
        held.push(Deno.listen({ hostname: "127.0.0.1", port: base + i }));
      }
      return base;
    } catch {
      /* taken: try another */
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error(`No ${count} consecutive free ports`);
}

/** Asserts `r` is one denial: exit 2 and a single stderr line matching `pattern`. */
function assertDenied(r: MainRun, pattern: RegExp, what: string): void {
  assert.equal(r.code, 2, `${what}: exit 2 expected\n${r.stderr}`);
  const lines = r.stderr.trim().split("\n").filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, `${what}: one message, got:\n${r.stderr}`);
  assert.match(lines[0], pattern, what);
  assert.doesNotMatch(r.stderr, /postgres:postgres@/, "never the database password");
}

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "launcher: Kafka through a non-default bootstrap address, allowed exactly with the " +
    "broker it advertises; a bare run is denied with exit 2",
  ...opts,
  async fn() {
    const proxy = startTcpProxy(BROKER);
    const sim = await startSimulator({ port: 0, rate: 200, seed: 11 });
    const topic = uniqueName("t-launch-kafka");
    const source = `${sim.url}?version=2`;
    const simAddress = new URL(sim.url).host;
    const kafka = testKafka();
    const admin = kafka.admin();
    try {
      const flags = [
        "--brokers",
        proxy.address,
        "--source",
        source,
        "--topic",
        topic,
        "--symbols",
        "AAPL,MSFT",
        "--spool-dir",
        `.data/spool/${topic}`,
      ];
      // What the launcher would run: the proxy, the broker the cluster advertises behind it
      // (learned by the metadata probe, which goes through the proxy) and the source; nothing
      // else, and the spool directory only.
      const before = proxy.connections();
      const plan = await launch(["--print", "ingest", ...flags]);
      assert.equal(plan.code, 0, plan.stderr);
      const p = JSON.parse(plan.stdout);
      assert.deepEqual(allowList(p.args, "net"), [BROKER, proxy.address, simAddress].sort());
      assert.deepEqual(allowList(p.args, "read"), [`.data/spool/${topic}`]);
      assert.deepEqual(allowList(p.args, "write"), [`.data/spool/${topic}`]);
      assert.equal(p.env.TICKPIPE_KAFKA_HOSTS, BROKER, "learned from the cluster");
      assert.ok(proxy.connections() > before, "the probe asked the bootstrap address");

      // It runs: ticks reach the topic through the proxy's bootstrap.
      const run = await launch(["ingest", ...flags, "--duration", "4s"], { timeoutMs: 90_000 });
      assert.equal(run.code, 0, run.stderr);
      const produced = Number(/ticks_produced=(\d+)/.exec(run.stdout)?.[1] ?? 0);
      assert.ok(produced > 100, `ticks produced: ${run.stdout}`);
      await admin.connect();
      const ends = await endOffsets(admin, topic);
      assert.equal([...ends.values()].reduce((a, b) => a + b, 0), produced, "all in Kafka");

      // The same command with its static set only: the proxy is not allowed. Exit 2 at once.
      const bare = await direct(["ingest", ...flags, "--duration", "4s"]);
      assertDenied(
        bare,
        new RegExp(
          `^tickpipe ingest: Kafka at ${proxy.address} \\(--brokers ${proxy.address}\\) is not ` +
            `in this command's allowed hosts: run it through "deno task ingest"`,
        ),
        "ingest with its static set",
      );
      assert.ok(bare.ms < 10_000, `fast: ${bare.ms} ms`);
    } finally {
      await admin.disconnect().catch(() => {});
      await sim.close();
      await proxy.close();
    }
  },
});

Deno.test({
  name: "launcher: a broker the cluster advertises that is not allowed fails ingest with " +
    "exit 2 naming it (never retried as an outage)",
  ...opts,
  async fn() {
    const proxy = startTcpProxy(BROKER);
    const sim = await startSimulator({ port: 0, rate: 50, seed: 12 });
    const topic = uniqueName("t-launch-adv");
    try {
      // TICKPIPE_KAFKA_HOSTS claims the cluster advertises only the proxy: no probe, and the
      // broker's own address (what the cluster really advertises) is not allowed.
      const r = await launch([
        "ingest",
        "--brokers",
        proxy.address,
        "--source",
        `${sim.url}?version=2`,
        "--topic",
        topic,
        "--spool-dir",
        `.data/spool/${topic}`,
        "--duration",
        "60s",
      ], { env: { TICKPIPE_KAFKA_HOSTS: proxy.address }, timeoutMs: 60_000 });
      assertDenied(
        r,
        new RegExp(
          `^tickpipe ingest: Kafka broker at ${BROKER} \\(advertised by the cluster at ` +
            `KAFKA_BROKERS=${proxy.address}\\) is not in this command's allowed hosts: .*` +
            `set TICKPIPE_KAFKA_HOSTS=${BROKER}`,
        ),
        "advertised broker denied",
      );
      assert.ok(r.ms < 30_000, `fails fast, not after --duration: ${r.ms} ms`);
      assert.ok(proxy.connections() >= 1, "it bootstrapped through the proxy");
    } finally {
      await sim.close();
      await proxy.close();
      await Deno.remove(`.data/spool/${topic}`, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "launcher: PostgreSQL on another port (migrate, status); the aggregator denied it " +
    "exits 2 naming it",
  ...opts,
  async fn() {
    const pg = startTcpProxy(PG);
    const kafkaProxy = startTcpProxy(BROKER);
    const kvPath = await tempKvPath("launch-pg");
    const env = { DATABASE_URL: dbUrlAt(pg.address) };
    try {
      const plan = await launch(["--print", "migrate"], { env });
      assert.equal(plan.code, 0, plan.stderr);
      assert.deepEqual(allowList(JSON.parse(plan.stdout).args, "net"), [pg.address]);

      const m = await launch(["migrate"], { env });
      assert.equal(m.code, 0, m.stderr);
      assert.ok(pg.bytesUp() > 0, "migrate went through the proxy");

      const s = await launch([
        "status",
        "--json",
        "--no-rate",
        "--brokers",
        kafkaProxy.address,
        "--topic",
        uniqueName("t-launch-status"),
        "--kv",
        kvPath,
      ], { env });
      assert.equal(s.code, 0, s.stderr);
      const status = JSON.parse(s.stdout);
      assert.equal(status.kafka.reachable, true);
      assert.equal(status.postgres.reachable, true);
      assert.doesNotMatch(s.stdout, /postgres:postgres@/);

      // The aggregator under its static set: the database's address is denied before anything.
      const agg = await direct(["aggregate", "--kv", kvPath, "--idle-timeout", "1s"], { env });
      assertDenied(
        agg,
        new RegExp(
          `^tickpipe aggregate: PostgreSQL at ${pg.address} \\(DATABASE_URL=postgres://` +
            `postgres:\\*\\*\\*@${pg.address}/tickpipe\\) is not in this command's allowed hosts`,
        ),
        "aggregate's database",
      );
      // migrate and status likewise.
      assertDenied(await direct(["migrate"], { env }), /PostgreSQL at /, "migrate");
      assertDenied(
        await direct(["status", "--no-rate", "--kv", kvPath], { env }),
        /PostgreSQL at /,
        "status",
      );
    } finally {
      await pg.close();
      await kafkaProxy.close();
    }
  },
});

Deno.test({
  name: "launcher: the simulator on another port; ingest denied its source exits 2 at once " +
    "instead of reconnecting",
  ...opts,
  async fn() {
    const port = freePort();
    const topic = uniqueName("t-launch-sim");
    const sim = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        "-P=launch",
        "main.ts",
        "launch",
        "simulate",
        "--port",
        String(port),
        "--rate",
        "100",
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const simOut = sim.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      let line = "";
      while (!line.includes("listening")) {
        const { value, done } = await simOut.read();
        if (done) throw new Error(`the simulator exited: ${line}`);
        line += value;
      }
      assert.match(line, new RegExp(`ws://127\\.0\\.0\\.1:${port}/`));
      const source = `ws://127.0.0.1:${port}/?version=2`;
      const flags = ["--source", source, "--topic", topic, "--spool-dir", `.data/spool/${topic}`];
      const run = await launch(["ingest", ...flags, "--duration", "3s", "--symbols", "AAPL"]);
      assert.equal(run.code, 0, run.stderr);
      assert.ok(Number(/frames=(\d+)/.exec(run.stdout)?.[1] ?? 0) > 50, run.stdout);

      const bare = await direct(["ingest", ...flags, "--duration", "20s"]);
      assertDenied(
        bare,
        new RegExp(
          `^tickpipe ingest: WebSocket source at 127\\.0\\.0\\.1:${port} \\(--source ` +
            `ws://127\\.0\\.0\\.1:${port}/\\?version=2\\) is not in this command's allowed hosts`,
        ),
        "ingest's source",
      );
      assert.ok(bare.ms < 10_000, `fast, not after reconnecting for --duration: ${bare.ms} ms`);
      assert.doesNotMatch(bare.stderr, /Reconnecting/);
    } finally {
      sim.kill("SIGTERM");
      await sim.status;
      await simOut.cancel().catch(() => {});
      await sim.stderr.cancel().catch(() => {});
      await Deno.remove(`.data/spool/${topic}`, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "launcher: the sensor denied its Kafka exits 2 naming it; through the launcher it runs",
  ...opts,
  async fn() {
    const proxy: TcpProxy = startTcpProxy(BROKER);
    const kvPath = await tempKvPath("launch-sensor");
    const topic = uniqueName("t-launch-sensor");
    try {
      const args = [
        "sensor",
        "--once",
        "--brokers",
        proxy.address,
        "--topic",
        topic,
        "--kv",
        kvPath,
      ];
      assertDenied(
        await direct(args),
        new RegExp(`^tickpipe sensor: Kafka at ${proxy.address} \\(--brokers `),
        "sensor's Kafka",
      );
      // Through the launcher: an empty topic, nothing to launch, exit 0.
      const r = await launch(args);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout + r.stderr, /decision: /);

      // A broker the cluster advertises but the sensor may not reach (reading the topic's
      // offsets needs the partition leaders): exit 2 naming it, not a failed check to retry.
      const admin = testKafka().admin();
      await admin.connect();
      await ensureTopic(admin, topic, { partitions: 1 });
      await admin.disconnect();
      const adv = await launch(args, { env: { TICKPIPE_KAFKA_HOSTS: proxy.address } });
      assertDenied(
        adv,
        new RegExp(`^tickpipe sensor: Kafka broker at ${BROKER} \\(advertised by the cluster`),
        "sensor's advertised broker",
      );
    } finally {
      await proxy.close();
    }
  },
});

Deno.test({
  name: "launcher: deno task start with Kafka, PostgreSQL and the simulator all on other " +
    "addresses: each child may reach exactly its own, and windows reach the database",
  ...opts,
  async fn() {
    const kafkaProxy = startTcpProxy(BROKER);
    const pgProxy = startTcpProxy(PG);
    const prefix = randomPrefix();
    const symbols = [`${prefix}A`, `${prefix}B-USD`];
    const sim = await startSimulator({ port: 0, rate: 100, seed: 13, heartbeatMs: 1000 });
    const simAddress = new URL(sim.url).host;
    const topic = uniqueName("t-launch-start");
    const kvPath = await tempKvPath("launch-start");
    const pool = testPool();
    const metrics = freePorts(4);
    const dashboard = `127.0.0.1:${freePort()}`;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "task",
        "start",
        "--metrics-port",
        String(metrics),
        "--dashboard-port",
        dashboard.split(":")[1],
        "--brokers",
        kafkaProxy.address,
        "--source",
        `${sim.url}?version=2`,
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--symbols",
        symbols.join(","),
        "--every",
        "2s",
        "--trigger",
        "1s",
        "--idle-timeout",
        "30s",
      ],
      cwd: ROOT,
      // The database through its proxy, in the environment only (never on a command line).
      env: { NO_COLOR: "1", DATABASE_URL: dbUrlAt(pgProxy.address) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let output = "";
    const dec = new TextDecoder();
    const pump = (s: ReadableStream<Uint8Array>) =>
      s.pipeTo(
        new WritableStream({
          write(chunk) {
            output += dec.decode(chunk, { stream: true });
          },
        }),
      ).catch(() => {});
    const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
    const seen = new Map<number, Proc>();
    const watch = setInterval(() => {
      for (const p of descendants(child.pid)) seen.set(p.pid, p);
    }, 100);
    let exited = false;
    try {
      const argsOf = (re: RegExp) =>
        waitFor(`a process matching ${re}`, () => {
          const p = [...seen.values()].find((p) => re.test(p.cmdline));
          return p ? p.cmdline.split(" ") : null;
        }, { timeoutMs: 60_000 });
      // start itself: its metrics endpoint and its children's (it merges them), and the
      // dashboard's address (it checks it is free), nothing else.
      const start = await argsOf(/main\.ts start /);
      assert.deepEqual(
        allowList(start, "net"),
        [...[0, 1, 2, 3].map((i) => `127.0.0.1:${metrics + i}`), dashboard].sort(),
      );
      // the dashboard: Kafka, the database's proxy, its address; the KV folder and its page.
      const dash = await argsOf(/main\.ts dashboard /);
      assert.deepEqual(
        allowList(dash, "net"),
        [BROKER, kafkaProxy.address, pgProxy.address, dashboard].sort(),
      );
      assert.deepEqual(allowList(dash, "read"), [".data/test", `${ROOT}pipeline/web`].sort());
      assert.deepEqual(allowList(dash, "write"), [".data/test"]);
      assert.ok(!dash.some((a) => a.includes("postgres:postgres")), "no password on argv");
      // ingest: the Kafka proxy, the broker it advertises, the simulator, its metrics port.
      const ingest = await argsOf(/main\.ts ingest /);
      assert.deepEqual(
        allowList(ingest, "net"),
        [BROKER, kafkaProxy.address, simAddress, `127.0.0.1:${metrics + 1}`].sort(),
      );
      // the sensor: Kafka only (it hands the database to the aggregator it launches).
      const sensor = await argsOf(/main\.ts sensor /);
      assert.deepEqual(
        allowList(sensor, "net"),
        [BROKER, kafkaProxy.address, `127.0.0.1:${metrics + 2}`].sort(),
      );
      assert.deepEqual(allowList(sensor, "write"), [".data/test"]);
      // the aggregator, launched by the sensor: Kafka and the database's proxy.
      const agg = await argsOf(/main\.ts aggregate /);
      assert.deepEqual(
        allowList(agg, "net"),
        [BROKER, kafkaProxy.address, pgProxy.address, `127.0.0.1:${metrics + 3}`].sort(),
      );
      assert.deepEqual(allowList(agg, "write"), [".data/test"]);
      assert.deepEqual(allowList(agg, "read"), [".data/test", `${ROOT}sql`].sort());
      assert.ok(!agg.some((a) => a.includes("postgres:postgres")), "no password on argv");

      // Windows reach PostgreSQL through its proxy (the aggregator's only database address).
      await waitFor("windows of the test's symbols in price_windows", async () => {
        const r = await pool.query(
          "SELECT count(*)::int AS n FROM price_windows WHERE starts_with(symbol, $1)",
          [prefix],
        );
        return r.rows[0].n > 0;
      }, { timeoutMs: 90_000, everyMs: 1000 });
      assert.ok(pgProxy.bytesUp() > 0, "the aggregator wrote through the database proxy");
      assert.ok(kafkaProxy.connections() > 0, "Kafka was bootstrapped through its proxy");

      child.kill("SIGTERM");
      const status = await child.status;
      exited = true;
      await pumps;
      assert.equal(status.code, 0, output.slice(-4000));
      assert.deepEqual([...seen.values()].filter(stillRunning), [], "no leftovers");
      assert.doesNotMatch(output, /is not in this command's allowed/, "nothing was denied");
    } catch (e) {
      throw new Error(
        `${(e as Error).message}\n--- start's output (tail) ---\n${output.slice(-6000)}`,
      );
    } finally {
      clearInterval(watch);
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch { /* exited */ }
        await child.status;
        await pumps;
      }
      await sim.close();
      await kafkaProxy.close();
      await pgProxy.close();
      await cleanupRows(pool, prefix, topic).catch(() => {});
      await pool.end();
    }
  },
});

Deno.test({
  name: "launcher: the metadata probe learns the broker's advertised address, also through a " +
    "proxy; a server that is not Kafka is an error",
  ...opts,
  async fn() {
    const proxy = startTcpProxy(BROKER);
    const pg = startTcpProxy(PG);
    try {
      assert.deepEqual(await fetchAdvertisedBrokers([BROKER]), [BROKER]);
      // Behind a proxy the cluster still advertises the broker's own listener.
      assert.deepEqual(await fetchAdvertisedBrokers([proxy.address]), [BROKER]);
      // The probe child may reach only the bootstrap list: the proxy. It still learns BROKER.
      assert.deepEqual(await probeAdvertisedBrokers([proxy.address]), [BROKER]);
      // The first bootstrap server that answers wins.
      assert.deepEqual(await fetchAdvertisedBrokers([`127.0.0.1:${freePort()}`, BROKER]), [BROKER]);
      await assert.rejects(
        fetchAdvertisedBrokers([pg.address], { timeoutMs: 2000 }),
        (e) => e instanceof KafkaMetadataError && e.message.includes(pg.address),
      );
      assert.equal(await probeAdvertisedBrokers([`127.0.0.1:${freePort()}`]), null);
    } finally {
      await proxy.close();
      await pg.close();
    }
  },
});

Deno.test({
  name: "launcher: the aggregator denied a broker the cluster advertises exits 2 naming it",
  ...opts,
  async fn() {
    const proxy = startTcpProxy(BROKER);
    const kvPath = await tempKvPath("launch-agg");
    const topic = uniqueName("t-launch-agg");
    const admin = testKafka().admin();
    await admin.connect();
    await ensureTopic(admin, topic, { partitions: 1 });
    await admin.disconnect();
    try {
      const r = await launch([
        "aggregate",
        "--brokers",
        proxy.address,
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--idle-timeout",
        "60s",
      ], { env: { TICKPIPE_KAFKA_HOSTS: proxy.address }, timeoutMs: 90_000 });
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `tickpipe aggregate: Kafka broker at ${BROKER} \\(advertised by the cluster at ` +
            `KAFKA_BROKERS=${proxy.address}\\) is not in this command's allowed hosts`,
        ),
      );
      assert.equal(r.stderr.match(/is not in this command's allowed hosts/g)?.length, 1, r.stderr);
      assert.ok(r.ms < 45_000, `not retried as an outage until the idle timeout: ${r.ms} ms`);
    } finally {
      await proxy.close();
    }
  },
});
