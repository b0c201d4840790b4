/// <reference lib="dom" />
// The live web dashboard in a real browser (headless Chromium from Debian, driven by
// puppeteer-core), during a real `start` run (launched like `deno task start`: the simulator,
// ingest, the sensor and its aggregator, the dashboard child) against the real Kafka and
// PostgreSQL. Checks: the chart draws (candle-coloured pixels on its canvases), the last close
// shown for a symbol equals the database's, an update arrives without a reload, the processes
// are shown, and the page logs no console error. No fixed port: the simulator and the dashboard
// listen on ephemeral ports, which the launcher allows. Skips, saying why, without Chromium.
//
// TICKPIPE_SCREENSHOT=path.png also saves a screenshot of the page.
import assert from "node:assert/strict";
import { startSimulator } from "../ingest/simulator.ts";
import { fmtPrice } from "../pipeline/web/static/model.js";
import { launchBrowser } from "./_helpers/browser.ts";
import { cleanupRows } from "./_helpers/aggregate_stream.ts";
import { descendants, randomPrefix, waitFor } from "./_helpers/e2e_pipeline.ts";
import { tempKvPath, testKafka, testPool, uniqueName } from "./_helpers/env.ts";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** What the page shows of one chart (data attributes set by app.js). */
interface ChartShown {
  loadId: string;
  navigations: number;
  updates: number;
  snapshots: number;
  lastClose: string;
  lastStart: string;
  candles: string;
  caption: string;
  colored: number;
  canvases: number;
}

Deno.test({
  name: "dashboard in Chromium: draws candles, shows the database's close, updates live",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const launched = await launchBrowser();
    if ("skip" in launched) {
      console.log(`SKIP dashboard browser test: ${launched.skip}`);
      await t.step({ name: `skipped: ${launched.skip}`, ignore: true, fn: () => {} });
      return;
    }
    const topic = uniqueName("t-dash-browser");
    const kvPath = await tempKvPath("dash-browser");
    const prefix = randomPrefix();
    const symbols = [`${prefix}A`, `${prefix}B-USD`];
    const pool = testPool();
    // The event clock runs 10x wall time from 20 minutes ago: a new 5-minute window every 30 s.
    const wall0 = Date.now();
    const sim = await startSimulator({
      port: 0,
      rate: 60,
      seed: 42,
      heartbeatMs: 0,
      keepSent: false,
      clock: () => wall0 - 20 * 60_000 + (Date.now() - wall0) * 10,
    });
    const dashPort = freePort();
    const url = `http://127.0.0.1:${dashPort}/`;
    // As `deno task start` runs it: the launcher derives every child's allow-lists.
    const start = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-q",
        "--no-prompt",
        "-P=launch",
        "main.ts",
        "launch",
        "start",
        "--topic",
        topic,
        "--kv",
        kvPath,
        "--source",
        `ws://127.0.0.1:${sim.port}/?version=2`,
        "--symbols",
        symbols.join(","),
        "--every",
        "1s",
        "--trigger",
        "1s",
        "--idle-timeout",
        "2m",
        "--metrics-port",
        "0",
        "--dashboard-port",
        String(dashPort),
      ],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let output = "";
    const dec = new TextDecoder();
    const pumps = Promise.all([start.stdout, start.stderr].map((s) =>
      s.pipeTo(
        new WritableStream({
          write(chunk) {
            output += dec.decode(chunk, { stream: true });
          },
        }),
      ).catch(() => {})
    ));
    const problems: string[] = [];
    let stopped = false;
    try {
      // The pipeline writes windows, and the dashboard answers.
      await waitFor("windows of both symbols in PostgreSQL", async () => {
        const { rows } = await pool.query(
          `SELECT count(DISTINCT symbol)::int AS n FROM price_windows WHERE topic = $1`,
          [topic],
        );
        return rows[0].n === symbols.length;
      }, { timeoutMs: 90_000, everyMs: 500 });
      await waitFor("the dashboard", async () => {
        try {
          const r = await fetch(url);
          await r.body?.cancel();
          return r.ok;
        } catch {
          return false;
        }
      }, { timeoutMs: 30_000 });

      const page = await launched.browser.newPage();
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(`console error: ${m.text()}`);
      });
      page.on("pageerror", (e) => problems.push(`page error: ${(e as Error).message}`));
      page.on("requestfailed", (r) => {
        // The event stream is cut when the run stops at the end; anything else is a problem.
        if (!stopped) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
      });
      await page.setViewport({ width: 1280, height: 900 });
      await page.goto(url, { waitUntil: "load" });

      const symbol = symbols[0];
      const shown = (): Promise<ChartShown> =>
        page.evaluate((sym: string) => {
          const el = document.querySelector(`.chart[data-symbol="${CSS.escape(sym)}"]`) as
            | HTMLElement
            | null;
          const stats = (globalThis as unknown as {
            __tickpipe: { loadId: string; updates: number; snapshots: number };
          }).__tickpipe;
          let colored = 0;
          const canvases = el ? [...el.querySelectorAll("canvas")] : [];
          const near = (d: Uint8ClampedArray, i: number, rgb: number[]) =>
            Math.abs(d[i] - rgb[0]) <= 12 && Math.abs(d[i + 1] - rgb[1]) <= 12 &&
            Math.abs(d[i + 2] - rgb[2]) <= 12 && d[i + 3] > 128;
          for (const c of canvases) {
            const ctx = c.getContext("2d");
            if (!ctx || c.width === 0 || c.height === 0) continue;
            const d = ctx.getImageData(0, 0, c.width, c.height).data;
            for (let i = 0; i < d.length; i += 4) {
              // The candle colours (COLORS.up, COLORS.down in model.js).
              if (near(d, i, [0x26, 0xa6, 0x9a]) || near(d, i, [0xef, 0x53, 0x50])) colored++;
            }
          }
          return {
            loadId: stats?.loadId ?? "",
            navigations: performance.getEntriesByType("navigation").length,
            updates: stats?.updates ?? 0,
            snapshots: stats?.snapshots ?? 0,
            lastClose: el?.dataset.lastClose ?? "",
            lastStart: el?.dataset.lastStart ?? "",
            candles: el?.dataset.candles ?? "",
            caption: el?.querySelector(".chart-caption")?.textContent ?? "",
            colored,
            canvases: canvases.length,
          };
        }, symbol);

      // 1. The chart draws: candle-coloured pixels on its canvases.
      const drawn = await waitFor("the chart drawn", async () => {
        const s = await shown();
        return s.lastClose !== "" && s.colored > 20 ? s : null;
      }, { timeoutMs: 30_000 });
      assert.ok(drawn.canvases >= 2, `canvases: ${drawn.canvases}`);

      // 2. The last close shown equals the database's (the latest 5-minute window of the symbol;
      // while the window is open it moves, so the page and the database are compared until they
      // agree, which a page that shows other data never does).
      let agreed: { close: number; start: number } | null = null;
      const seen: string[] = [];
      await waitFor("the page's last close to equal the database's", async () => {
        const s = await shown();
        const { rows } = await pool.query(
          `SELECT close_price, window_start FROM price_windows
            WHERE topic = $1 AND symbol = $2 AND window_length = interval '5 minutes'
            ORDER BY window_start DESC LIMIT 1`,
          [topic, symbol],
        );
        const db = rows[0];
        seen.push(
          `page ${s.lastStart}/${s.lastClose} db ${db.window_start.getTime()}/${db.close_price}`,
        );
        if (
          Number(s.lastStart) === db.window_start.getTime() &&
          Number(s.lastClose) === db.close_price
        ) {
          agreed = { close: db.close_price, start: db.window_start.getTime() };
          assert.match(
            s.caption,
            new RegExp(`close ${fmtPrice(db.close_price).replace(".", "\\.")}`),
          );
          return true;
        }
        return false;
      }, { timeoutMs: 30_000, everyMs: 200 }).catch((e) => {
        throw new Error(`${e.message}: ${seen.slice(-5).join("; ")}`);
      });
      assert.ok(agreed !== null);

      // 3. An update arrives without a reload: the same page load, a later update that added a
      // window to the chart (the accelerated clock opens one every 30 s).
      const before = await shown();
      const after = await waitFor("a live update adding a window", async () => {
        const s = await shown();
        return s.updates > before.updates && Number(s.lastStart) > Number(before.lastStart) &&
            Number(s.candles) > Number(before.candles)
          ? s
          : null;
      }, { timeoutMs: 60_000 });
      assert.equal(after.loadId, before.loadId, "the same page: no reload");
      assert.equal(after.navigations, 1);
      assert.equal(after.snapshots, before.snapshots, "updates, not new snapshots");
      assert.ok(after.colored > 20, "still drawn");
      console.log(
        `drawn: ${drawn.colored} candle pixels on ${drawn.canvases} canvases; close ` +
          `${JSON.stringify(agreed)} equal to the database's; update ${before.updates} -> ` +
          `${after.updates}: close ${before.lastClose} -> ${after.lastClose}, window ` +
          `${before.lastStart} -> ${after.lastStart}, candles ${before.candles} -> ${after.candles}`,
      );

      // The processes: start's children running, the sensor's aggregator from KV.
      const states = await page.evaluate(() =>
        Object.fromEntries(
          [...document.querySelectorAll("#processes tr[data-process]")].map((
            r,
          ) => [(r as HTMLElement).dataset.process, (r as HTMLElement).dataset.state]),
        )
      );
      assert.equal(states.ingest, "running", JSON.stringify(states));
      assert.equal(states.sensor, "running", JSON.stringify(states));
      assert.equal(states.dashboard, "running", JSON.stringify(states));
      assert.ok(["running", "idle"].includes(states.aggregator), JSON.stringify(states));
      const partitions = await page.$$eval("#partitions tr[data-partition]", (rows) => rows.length);
      assert.equal(partitions, 3, "one row per partition");

      const shot = Deno.env.get("TICKPIPE_SCREENSHOT");
      if (shot) await page.screenshot({ path: shot as `${string}.png`, fullPage: true });

      // 4. No console error, page error or failed request.
      assert.deepEqual(problems, []);
      await page.close();
    } finally {
      stopped = true;
      await launched.close();
      const tree = descendants(start.pid);
      try {
        start.kill("SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        for (const p of [...tree, ...descendants(start.pid)]) {
          try {
            Deno.kill(p.pid, "SIGKILL");
          } catch { /* gone */ }
        }
        try {
          start.kill("SIGKILL");
        } catch { /* gone */ }
      }, 120_000);
      const status = await start.status;
      clearTimeout(timer);
      await pumps;
      await sim.close();
      const admin = testKafka().admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => {});
      await admin.disconnect();
      await cleanupRows(pool, prefix, topic).catch(() => {});
      await pool.end();
      for (const s of ["", "-shm", "-wal"]) await Deno.remove(kvPath + s).catch(() => {});
      await Deno.remove(`.data/spool/${topic}`, { recursive: true }).catch(() => {});
      if (status.code !== 0) console.log(output.slice(-4000));
      assert.equal(status.code, 0, "start stops cleanly");
    }
  },
});
