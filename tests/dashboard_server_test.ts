// The dashboard's HTTP shell on a real socket: the page and its scripts with a strict CSP,
// server-sent events (a snapshot, then diffs that rebuild the source's snapshots exactly, one
// collection per refresh for any number of pages), the access token (bearer, ?token= once,
// cookie), a failing source reported as a `problem` event, a clean close; and the CLI: a
// non-loopback bind without a token and a taken port exit 2 with one message each.
import assert from "node:assert/strict";
import { applyUpdate } from "../pipeline/web/static/model.js";
import {
  DashboardServerError,
  serveDashboard,
  STATIC_FILES,
  TOKEN_COOKIE,
} from "../pipeline/web/server.ts";
import type { DashboardSnapshot, DashboardUpdate } from "../pipeline/web/types.ts";
import { runCli } from "./_helpers/env.ts";

const san = { sanitizeResources: false, sanitizeOps: false };

/** A snapshot of one chart whose candles start at bucket `first` (one per close). */
function snapshot(at: number, closes: number[], first = 0): DashboardSnapshot {
  return {
    v: 1,
    at,
    topic: "t",
    resolutions: [60_000],
    symbols: [{
      symbol: "AAA",
      lastClose: closes.at(-1) ?? null,
      lastStart: closes.length ? (first + closes.length - 1) * 60_000 : null,
      late: 0,
      series: [{
        windowMs: 60_000,
        candles: closes.map((c, i) => ({
          t: (first + i) * 60_000,
          o: c,
          h: c,
          l: c,
          c,
          n: 1,
          v: 0,
          vwap: null,
          final: i < closes.length - 1,
          filled: false,
        })),
        late: 0,
        lateByWindow: [],
      }],
    }],
    partitions: [],
    processes: [],
    pipeline: {
      ticksInTopic: closes.length,
      ratePerSec: null,
      deadLetters: 0,
      totalLag: 0,
      lastTrigger: null,
      checkpointAt: null,
      kafka: { reachable: true, error: null },
      postgres: { reachable: true, error: null },
    },
  };
}

type Event = { event: string; data: unknown };

/** Reads server-sent events from a fetch response. */
function eventReader(res: Response) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  return {
    async next(timeoutMs = 10_000): Promise<Event> {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const end = buf.indexOf("\n\n");
        if (end >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event === undefined || data === undefined) continue; // retry: / comments
          return { event, data: JSON.parse(data) };
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error("No event in time");
        let timer: ReturnType<typeof setTimeout> | undefined;
        const r = await Promise.race([
          reader.read(),
          new Promise<never>((_, rej) => {
            timer = setTimeout(() => rej(new Error("No event in time")), left);
          }),
        ]).finally(() => clearTimeout(timer));
        if (r.done) throw new Error("Stream ended");
        buf += r.value;
      }
    },
    cancel: () => reader.cancel().catch(() => {}),
  };
}

Deno.test({
  name: "dashboard server: page, scripts and CSP; SSE snapshot then exact diffs",
  ...san,
  async fn() {
    let calls = 0;
    // [first bucket, closes]: candles arrive, the last one turns final, the range slides.
    const series: [number, number[]][] = [
      [0, [1]],
      [0, [1, 2]],
      [0, [1, 2, 3]],
      [1, [2, 3, 4]],
      [1, [2, 3, 4]],
      [2, [3, 4, 5, 6]],
    ];
    const at = (i: number) => {
      const [first, closes] = series[Math.min(i, series.length - 1)];
      return snapshot(1000 + i, closes, first);
    };
    const source = () => {
      const s = at(calls);
      calls++;
      return Promise.resolve(s);
    };
    const server = await serveDashboard(source, {
      hostname: "127.0.0.1",
      port: 0,
      token: null,
      refreshMs: 150,
    });
    const base = server.url;
    try {
      // The page and its files, each with the security headers.
      for (const path of Object.keys(STATIC_FILES)) {
        const res = await fetch(new URL(path, base));
        const body = await res.text();
        assert.equal(res.status, 200, path);
        assert.ok(body.length > 100, path);
        assert.match(res.headers.get("content-security-policy")!, /default-src 'none'/);
        assert.match(res.headers.get("content-security-policy")!, /script-src 'self';/);
        assert.equal(res.headers.get("x-content-type-options"), "nosniff");
        if (path.endsWith(".js") || path.endsWith(".mjs")) {
          assert.match(res.headers.get("content-type")!, /^text\/javascript/);
        }
      }
      const page = await (await fetch(base)).text();
      assert.match(page, /<script type="module" src="\/static\/app\.js"><\/script>/);
      assert.ok(!/<script>|style="/.test(page), "no inline script or style");
      const lib =
        await (await fetch(new URL("/vendor/lightweight-charts.standalone.production.mjs", base)))
          .text();
      assert.match(lib, /TradingView Lightweight Charts™ v5\.2\.1/);
      const missing = await fetch(new URL("/nope", base));
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
      const post = await fetch(base, { method: "POST" });
      assert.equal(post.status, 405);
      await post.body?.cancel();

      // Events: a snapshot, then updates that rebuild every snapshot the source made.
      const res = await fetch(new URL("/events", base));
      assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
      const events = eventReader(res);
      const first = await events.next();
      assert.equal(first.event, "snapshot");
      let page1 = first.data as DashboardSnapshot;
      assert.deepEqual(page1.symbols[0].series[0].candles.map((c) => c.c), [1]);
      // A second page, connected later, starts from the last snapshot sent.
      let second: ReturnType<typeof eventReader> | undefined;
      let page2: DashboardSnapshot | undefined;
      for (let i = 1; i < series.length; i++) {
        const e = await events.next();
        assert.equal(e.event, "update", `refresh ${i}`);
        const u = e.data as DashboardUpdate;
        page1 = applyUpdate(page1, u);
        assert.deepEqual(page1, at(i), `refresh ${i}`);
        if (i === 1) {
          assert.deepEqual(u.symbols[0].series[0].upsert.map((c) => c.t), [0, 60_000]);
          second = eventReader(await fetch(new URL("/events", base)));
          const s = await second.next();
          assert.equal(s.event, "snapshot");
          page2 = s.data as DashboardSnapshot;
          assert.deepEqual(page2, page1, "the last snapshot sent");
        } else {
          const e2 = await second!.next();
          assert.equal(e2.event, "update");
          page2 = applyUpdate(page2!, e2.data as DashboardUpdate);
          assert.deepEqual(page2, page1);
        }
        if (i === 3) {
          // The range slid: the oldest candle is dropped; sent: the one that turned final and
          // the new one.
          assert.equal(u.symbols[0].series[0].from, 60_000);
          assert.deepEqual(u.symbols[0].series[0].upsert.map((c) => c.t), [120_000, 180_000]);
        }
        if (i === 4) assert.deepEqual(u.symbols[0].series[0].upsert, [], "nothing changed");
      }
      // One collection per refresh, however many pages listen.
      assert.ok(calls <= series.length + 1, `collections: ${calls}`);
      await second!.cancel();
      await events.cancel();
      // No page: no collection.
      await new Promise((r) => setTimeout(r, 400));
      const idle = calls;
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(calls, idle, "no refresh without a page");
      // A page connecting after a pause gets a fresh snapshot, not the stale last one.
      const third = eventReader(await fetch(new URL("/events", base)));
      const fresh = await third.next();
      assert.equal(fresh.event, "snapshot");
      assert.equal((fresh.data as DashboardSnapshot).at, 1000 + idle, "collected for it");
      await third.cancel();

      // /api/snapshot: one fresh collection as JSON.
      const api = await (await fetch(new URL("/api/snapshot", base))).json();
      assert.equal(api.v, 1);
    } finally {
      await server.close();
    }
    await assert.rejects(fetch(base), TypeError, "closed");
  },
});

Deno.test({
  name: "dashboard server: a token is required as bearer, cookie or ?token= once",
  ...san,
  async fn() {
    const token = "tok-" + crypto.randomUUID();
    let fail = false;
    const server = await serveDashboard(
      () =>
        fail ? Promise.reject(new Error("PostgreSQL said no")) : Promise.resolve(snapshot(1, [1])),
      { hostname: "127.0.0.1", port: 0, token, refreshMs: 100 },
    );
    try {
      const base = server.url;
      for (const path of ["/", "/events", "/api/snapshot", "/static/app.js"]) {
        const r = await fetch(new URL(path, base));
        assert.equal(r.status, 401, path);
        assert.ok(!(await r.text()).includes(token));
      }
      const ok = await fetch(new URL("/api/snapshot", base), {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(ok.status, 200);
      await ok.body?.cancel();
      const q = await fetch(new URL(`/?token=${encodeURIComponent(token)}`, base), {
        redirect: "manual",
      });
      assert.equal(q.status, 303);
      assert.equal(q.headers.get("location"), "/");
      const cookie = q.headers.get("set-cookie")!.split(";")[0];
      assert.equal(cookie, `${TOKEN_COOKIE}=${encodeURIComponent(token)}`);
      await q.body?.cancel();
      const res = await fetch(new URL("/events", base), { headers: { cookie } });
      assert.equal(res.status, 200);
      const events = eventReader(res);
      assert.equal((await events.next()).event, "snapshot");
      // A failing refresh is reported to the page, and the stream goes on.
      fail = true;
      let e = await events.next();
      while (e.event !== "problem") e = await events.next();
      assert.match((e.data as { message: string }).message, /^Refresh failed: PostgreSQL said no$/);
      fail = false;
      e = await events.next();
      while (e.event === "problem") e = await events.next();
      assert.equal(e.event, "update");
      // Closing the server ends the page's stream.
      await server.close();
      await assert.rejects(events.next(2000), /Stream ended|No event in time/);
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "dashboard server: a taken port is a configuration error naming it",
  ...san,
  async fn() {
    const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (holder.addr as Deno.NetAddr).port;
    try {
      await assert.rejects(
        serveDashboard(() => Promise.resolve(snapshot(1, [])), {
          hostname: "127.0.0.1",
          port,
          token: null,
          refreshMs: 1000,
        }),
        (e) =>
          e instanceof DashboardServerError &&
          e.message ===
            `Dashboard port 127.0.0.1:${port} is already in use: choose a free one with ` +
              `--dashboard-port (0 = no dashboard), or stop the process listening there`,
      );
    } finally {
      holder.close();
    }
  },
});

Deno.test({
  name: "dashboard cli: no token for a non-loopback bind, a weak token, a taken port: exit 2",
  ...san,
  async fn() {
    // Through the launcher, as `deno task start` runs it (it allows the configured address).
    const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (holder.addr as Deno.NetAddr).port;
    holder.close();
    const open = await runCli("launch", [
      "launch",
      "start",
      "--dashboard-host",
      "0.0.0.0",
      "--dashboard-port",
      String(port),
      "--metrics-port",
      "0",
    ]);
    assert.equal(open.code, 2, open.stderr);
    assert.equal(
      open.stderr.trim(),
      `tickpipe start: --dashboard-host "0.0.0.0" is not a loopback address, and no access ` +
        `token is set: set TICKPIPE_DASHBOARD_TOKEN (or --dashboard-token) to serve the ` +
        `dashboard there, or bind it to 127.0.0.1`,
    );
    const weak = await runCli("launch", ["launch", "demo", "--dashboard-port", String(port)], {
      env: { TICKPIPE_DASHBOARD_TOKEN: "tiny-secret" },
    });
    assert.equal(weak.code, 2, weak.stderr);
    assert.match(weak.stderr, /TICKPIPE_DASHBOARD_TOKEN is too weak: expected at least 16/);
    assert.ok(!weak.stderr.includes("tiny-secret"), "the token is never shown");
    // The launcher's --print shows the command line with a flag token redacted.
    const printed = await runCli("launch", [
      "launch",
      "--print",
      "start",
      "--dashboard-token",
      "printed-secret-0123456789",
      "--metrics-port",
      "0",
    ]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /"--dashboard-token","\*\*\*"/);
    assert.ok(!printed.stdout.includes("printed-secret"), printed.stdout);
    // A taken port: start refuses before starting any child.
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const takenPort = (taken.addr as Deno.NetAddr).port;
    try {
      const r = await runCli("launch", [
        "launch",
        "start",
        "--dashboard-port",
        String(takenPort),
        "--metrics-port",
        "0",
        "--topic",
        "never-created-dash-cli",
      ]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(
        r.stderr.trim(),
        `tickpipe start: Dashboard port 127.0.0.1:${takenPort} is already in use: choose a ` +
          `free one with --dashboard-port (0 = no dashboard), or stop the process listening there`,
      );
    } finally {
      taken.close();
    }
  },
});
