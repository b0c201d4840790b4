/**
 * Makes docs/dashboard.png, the README's screenshot of the web dashboard, from a real run: the
 * simulator (in this process, its event clock running `--speed` times wall time from 40 minutes
 * ago, so windows turn final and late ticks land within minutes), an aggregator with 1-minute and
 * 5-minute windows, and `start` (ingest, the sensor, the dashboard) through the launcher, on a
 * topic and KV of their own (removed afterwards); then headless Chromium (Debian's, through
 * puppeteer-core) takes the picture, made smaller by pngquant when it is installed. Needs the
 * services up (`deno task services`).
 *
 * Usage: deno run -A docs/screenshot_dashboard.ts [--minutes 4] [--speed 10] [--out FILE]
 * @module
 */

import { parseArgs } from "node:util";
import { startSimulator } from "../ingest/simulator.ts";
import { createKafka, ensureTopic } from "../common/kafka.ts";
import { createLogger } from "../common/log.ts";
import { createPool } from "../common/pg.ts";
import { loadBaseConfig } from "../common/config.ts";
import { launchBrowser } from "../tests/_helpers/browser.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    minutes: { type: "string", default: "4" },
    speed: { type: "string", default: "10" },
    out: { type: "string", default: "docs/dashboard.png" },
  },
});
const minutes = Number(values.minutes);
const speed = Number(values.speed);
const symbols = ["AAPL", "NVDA", "BTC-USD"];
const config = loadBaseConfig();
const topic = `screenshot-${Date.now().toString(36)}`;
const kvPath = `.data/screenshot/${topic}.kv`;
await Deno.mkdir(".data/screenshot", { recursive: true });
const log = createLogger("screenshot");

const wall0 = Date.now();
const event0 = wall0 - 40 * 60_000;
const sim = await startSimulator({
  port: 0,
  rate: 40,
  seed: 2026,
  lateFraction: 0.004,
  outOfOrderFraction: 0.05,
  heartbeatMs: 0,
  keepSent: false,
  clock: () => event0 + (Date.now() - wall0) * speed,
});
const kafka = createKafka(config.brokers, { clientId: "tickpipe-screenshot" });
const admin = kafka.admin();
await admin.connect();
await ensureTopic(admin, topic, { partitions: 3 });

const children: Deno.ChildProcess[] = [];
function launch(command: string, args: string[]): Deno.ChildProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "--no-prompt", "-P=launch", "main.ts", "launch", command, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  children.push(child);
  return child;
}
const common = ["--topic", topic, "--kv", kvPath];
// The aggregator first, with two resolutions: while it holds the lease the sensor launches none.
launch("aggregate", [...common, "--windows", "1m,5m", "--trigger", "2s", "--idle-timeout", "10m"]);
await new Promise((r) => setTimeout(r, 5000));
const port = (() => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
})();
launch("start", [
  ...common,
  "--source",
  `ws://127.0.0.1:${sim.port}/?version=2`,
  "--symbols",
  symbols.join(","),
  "--every",
  "5s",
  "--trigger",
  "2s",
  "--metrics-port",
  "0",
  "--dashboard-port",
  String(port),
]);
log.info("running", { topic, minutes, speed, url: `http://127.0.0.1:${port}/` });
await new Promise((r) => setTimeout(r, minutes * 60_000));

const launched = await launchBrowser();
try {
  if ("skip" in launched) throw new Error(launched.skip);
  const page = await launched.browser.newPage();
  await page.setViewport({ width: 1200, height: 800 });
  await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: "load" });
  await new Promise((r) => setTimeout(r, 6000));
  await page.screenshot({ path: values.out as `${string}.png`, fullPage: true });
  // Smaller (about a third) with pngquant, when it is installed (apt-get install pngquant).
  const quant = await new Deno.Command("pngquant", {
    args: ["--quality", "70-90", "--speed", "1", "--force", "--output", values.out, values.out],
  }).output().catch(() => null);
  log.info("saved", { out: values.out, pngquant: quant?.success ?? "not installed" });
} finally {
  if (!("skip" in launched)) await launched.close();
  for (const c of children.reverse()) {
    try {
      c.kill("SIGTERM");
    } catch { /* gone */ }
    await c.status;
  }
  await sim.close();
  await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
  await admin.disconnect();
  const pool = createPool(config.databaseUrl, { applicationName: "tickpipe-screenshot" });
  for (const table of ["price_windows", "late_ticks", "rejected_rows", "aggregator_progress"]) {
    await pool.query(`DELETE FROM ${table} WHERE topic = $1`, [topic]);
  }
  await pool.end();
  await Deno.remove(".data/screenshot", { recursive: true }).catch(() => {});
  await Deno.remove(`.data/spool/${topic}`, { recursive: true }).catch(() => {});
}
