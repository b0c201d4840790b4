/**
 * The dashboard's HTTP shell: the page and its scripts (read from pipeline/web/ once, at start),
 * `/events` (server-sent events: a `snapshot`, then an `update` per refresh carrying only what
 * changed), `/api/snapshot` (JSON), and the access rules: without a token only loopback host
 * names are served (no DNS rebinding); with one, every request needs it as
 * `Authorization: Bearer <token>`, the cookie, or once as `?token=` (answered with a redirect
 * that sets the cookie and drops it from the address). The token is never logged.
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import { ConfigError } from "../../common/config.ts";
import type { Logger } from "../../common/log.ts";
import { hostPort, isLoopback } from "../../common/metrics_flags.ts";
import { diffSnapshots } from "./static/model.js";
import type { DashboardSnapshot, DashboardUpdate } from "./types.ts";

/**
 * Raised when the dashboard cannot listen (port taken, address not allowed or not ours): a
 * configuration error (exit 2).
 */
export class DashboardServerError extends ConfigError {
  /** Creates the error; `message` names the address and the fix. */
  constructor(message: string) {
    super(message);
    this.name = "DashboardServerError";
  }
}

/** Name of the cookie holding the access token. */
export const TOKEN_COOKIE = "tickpipe_dashboard";

/** Collects one snapshot (`previous`: the last one sent, for rates). */
export type SnapshotSource = (previous: DashboardSnapshot | null) => Promise<DashboardSnapshot>;

/** One event sent to the pages. */
export type HubEvent =
  | { kind: "snapshot"; data: DashboardSnapshot }
  | { kind: "update"; data: DashboardUpdate }
  | { kind: "problem"; data: { at: number; message: string } };

/** Options of {@linkcode DashboardHub}. */
export interface HubOptions {
  /** Time between refreshes while a page is connected, ms. */
  refreshMs: number;
  /** Logger (collect failures). */
  logger?: Logger;
  /** Clock (default Date.now). */
  now?: () => number;
  /** Events a slow page may have queued before it is dropped (default 16). */
  maxQueued?: number;
}

interface Client {
  controller: ReadableStreamDefaultController<Uint8Array>;
  needsSnapshot: boolean;
}

const enc = new TextEncoder();

/** One server-sent event's bytes (pure). */
export function sseEvent(event: HubEvent): Uint8Array {
  return enc.encode(`event: ${event.kind}\ndata: ${JSON.stringify(event.data)}\n\n`);
}

/**
 * Refreshes while at least one page listens: one collection per refresh whatever the number of
 * pages, each page getting the last snapshot when it connects and then the diff of every refresh.
 */
export class DashboardHub {
  #source: SnapshotSource;
  #opts: HubOptions;
  #clients = new Set<Client>();
  #last: DashboardSnapshot | null = null;
  /** When `#last` was collected (the hub's clock). */
  #lastAt = 0;
  #running = false;
  #closed = false;
  #wake: (() => void) | null = null;

  /** Creates a hub over `source`. */
  constructor(source: SnapshotSource, options: HubOptions) {
    this.#source = source;
    this.#opts = options;
  }

  /** Pages connected now. */
  get clients(): number {
    return this.#clients.size;
  }

  /**
   * A new page's event stream: `retry`, the last snapshot when it is fresh (collected within two
   * refreshes; else the next collection is sent whole), then live events.
   */
  connect(): ReadableStream<Uint8Array> {
    let client: Client;
    const now = this.#opts.now ?? Date.now;
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        const fresh = this.#last !== null && now() - this.#lastAt <= 2 * this.#opts.refreshMs;
        client = { controller, needsSnapshot: !fresh };
        controller.enqueue(enc.encode("retry: 2000\n\n"));
        if (this.#closed) {
          controller.close();
          return;
        }
        if (fresh) controller.enqueue(sseEvent({ kind: "snapshot", data: this.#last! }));
        this.#clients.add(client);
        this.#ensureRunning();
      },
      cancel: () => {
        this.#clients.delete(client);
      },
    }, { highWaterMark: this.#opts.maxQueued ?? 16 });
  }

  #send(client: Client, event: HubEvent): void {
    try {
      if ((client.controller.desiredSize ?? 0) <= 0) {
        // A page that stopped reading: drop it (EventSource reconnects and gets a snapshot).
        this.#clients.delete(client);
        client.controller.close();
        return;
      }
      client.controller.enqueue(sseEvent(event));
    } catch {
      this.#clients.delete(client);
    }
  }

  #ensureRunning(): void {
    if (this.#running || this.#closed) return;
    this.#running = true;
    this.#loop().finally(() => {
      this.#running = false;
      if (!this.#closed && this.#clients.size > 0) this.#ensureRunning();
    });
  }

  async #loop(): Promise<void> {
    const now = this.#opts.now ?? Date.now;
    while (!this.#closed && this.#clients.size > 0) {
      const last = this.#last;
      // A snapshot older than a few refreshes is no base for a rate.
      const previous = last !== null && now() - this.#lastAt <= 3 * this.#opts.refreshMs
        ? last
        : null;
      try {
        const next = await this.#source(previous);
        if (this.#closed) return;
        const update = last === null ? null : diffSnapshots(last, next);
        for (const c of [...this.#clients]) {
          if (update === null || c.needsSnapshot) {
            this.#send(c, { kind: "snapshot", data: next });
            c.needsSnapshot = false;
          } else this.#send(c, { kind: "update", data: update });
        }
        this.#last = next;
        this.#lastAt = now();
      } catch (e) {
        this.#opts.logger?.warn("dashboard refresh failed", { error: e as Error });
        for (const c of [...this.#clients]) {
          this.#send(c, {
            kind: "problem",
            data: { at: now(), message: `Refresh failed: ${(e as Error).message}` },
          });
        }
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.#opts.refreshMs);
        this.#wake = done;
        function done() {
          clearTimeout(timer);
          resolve();
        }
      });
      this.#wake = null;
    }
  }

  /** Ends every page's stream and stops refreshing. */
  close(): void {
    this.#closed = true;
    for (const c of this.#clients) {
      try {
        c.controller.close();
      } catch { /* already closed */ }
    }
    this.#clients.clear();
    this.#wake?.();
  }
}

/** A static file served as is. */
export interface StaticFile {
  /** Content type. */
  type: string;
  /** Bytes. */
  body: Uint8Array<ArrayBuffer>;
}

/** The page's files by URL path, relative to pipeline/web/. */
export const STATIC_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  "/": { file: "static/index.html", type: "text/html; charset=utf-8" },
  "/static/app.js": { file: "static/app.js", type: "text/javascript; charset=utf-8" },
  "/static/model.js": { file: "static/model.js", type: "text/javascript; charset=utf-8" },
  "/static/style.css": { file: "static/style.css", type: "text/css; charset=utf-8" },
  "/vendor/lightweight-charts.standalone.production.mjs": {
    file: "vendor/lightweight-charts.standalone.production.mjs",
    type: "text/javascript; charset=utf-8",
  },
};

/** Reads the page's files from `dir` (default: this module's folder). */
export async function loadStaticFiles(dir?: string): Promise<Map<string, StaticFile>> {
  const base = dir ?? decodeURIComponent(new URL(".", import.meta.url).pathname);
  const out = new Map<string, StaticFile>();
  for (const [path, { file, type }] of Object.entries(STATIC_FILES)) {
    out.set(path, { type, body: await Deno.readFile(`${base.replace(/\/?$/, "/")}${file}`) });
  }
  return out;
}

/** Headers of every answer: no sniffing, no framing, no referrer, scripts and styles from us. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-resource-policy": "same-origin",
};

function digest(s: string): Uint8Array {
  return createHash("sha256").update(s).digest();
}

/** True when `given` equals `token` (constant time over their digests). */
export function tokenMatches(given: string | null | undefined, token: string): boolean {
  if (given === null || given === undefined) return false;
  return timingSafeEqual(digest(given), digest(token));
}

function cookieValue(header: string | null, name: string): string | null {
  if (header === null) return null;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim());
      } catch {
        return null;
      }
    }
  }
  return null;
}

/** The host name of a Host header value (brackets removed), lower case. */
function hostOf(header: string | null): string {
  if (header === null) return "";
  const h = header.trim().toLowerCase();
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(h);
  if (v6) return v6[1];
  return h.replace(/:\d+$/, "");
}

/** What the access rules say about a request: pass, or the answer to give instead. */
export type AccessDecision = { ok: true } | { ok: false; response: Response };

/**
 * The access rules (pure). Without a token: the Host header must name a loopback address (a
 * page elsewhere cannot reach a loopback dashboard through DNS rebinding). With a token: the
 * bearer header or the cookie must carry it; `?token=` on a GET is answered with a redirect
 * that sets the cookie and removes the token from the address.
 */
export function checkAccess(req: Request, token: string | null): AccessDecision {
  const url = new URL(req.url);
  if (token === null) {
    if (isLoopback(hostOf(req.headers.get("host")))) return { ok: true };
    return {
      ok: false,
      response: plain(403, "Forbidden: this dashboard answers only to a loopback host name\n"),
    };
  }
  const auth = req.headers.get("authorization");
  const bearer = auth !== null && /^bearer\s+/i.test(auth) ? auth.replace(/^bearer\s+/i, "") : null;
  if (tokenMatches(bearer, token)) return { ok: true };
  if (tokenMatches(cookieValue(req.headers.get("cookie"), TOKEN_COOKIE), token)) {
    return { ok: true };
  }
  const q = url.searchParams.get("token");
  if (q !== null && tokenMatches(q, token) && (req.method === "GET" || req.method === "HEAD")) {
    url.searchParams.delete("token");
    const location = url.pathname + (url.search === "?" ? "" : url.search);
    return {
      ok: false,
      response: new Response(null, {
        status: 303,
        headers: {
          ...SECURITY_HEADERS,
          location,
          "cache-control": "no-store",
          "set-cookie": `${TOKEN_COOKIE}=${
            encodeURIComponent(token)
          }; Path=/; HttpOnly; SameSite=Strict`,
        },
      }),
    };
  }
  return {
    ok: false,
    response: new Response(
      "Unauthorized: this dashboard needs its access token: open it once as /?token=<token>, " +
        'or send the header "Authorization: Bearer <token>"\n',
      {
        status: 401,
        headers: {
          ...SECURITY_HEADERS,
          "content-type": "text/plain; charset=utf-8",
          "www-authenticate": 'Bearer realm="tickpipe"',
        },
      },
    ),
  };
}

function plain(status: number, text: string, headers: Record<string, string> = {}): Response {
  return new Response(text, {
    status,
    headers: { ...SECURITY_HEADERS, "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/** Options of {@linkcode serveDashboard}. */
export interface ServeDashboardOptions {
  /** Bind address. */
  hostname: string;
  /** Port (0: any free one). */
  port: number;
  /** Access token, or null (loopback only). */
  token: string | null;
  /** Refresh interval while a page is connected, ms. */
  refreshMs: number;
  /** The page's files (default: read from pipeline/web/). */
  files?: Map<string, StaticFile>;
  /** Logger. */
  logger?: Logger;
  /** Permission set to name when listening is not allowed. */
  permissionSet?: string;
}

/** A running dashboard. */
export interface DashboardServer {
  /** The page's address (without the token). */
  url: string;
  /** The bound port. */
  port: number;
  /** The hub (pages connected). */
  hub: DashboardHub;
  /** Ends the event streams and stops the server. */
  close(): Promise<void>;
}

/** Serves the dashboard of `source`; throws DashboardServerError when it cannot listen. */
export async function serveDashboard(
  source: SnapshotSource,
  options: ServeDashboardOptions,
): Promise<DashboardServer> {
  const files = options.files ?? await loadStaticFiles();
  const hub = new DashboardHub(source, { refreshMs: options.refreshMs, logger: options.logger });
  const addr = hostPort(options.hostname, options.port);
  const handler = async (req: Request): Promise<Response> => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return plain(405, "Method not allowed: use GET\n", { allow: "GET, HEAD" });
    }
    const access = checkAccess(req, options.token);
    if (!access.ok) return access.response;
    const path = new URL(req.url).pathname;
    const file = files.get(path === "/index.html" ? "/" : path);
    if (file) {
      return new Response(req.method === "HEAD" ? null : file.body, {
        headers: { ...SECURITY_HEADERS, "content-type": file.type, "cache-control": "no-cache" },
      });
    }
    if (path === "/events") {
      return new Response(hub.connect(), {
        headers: {
          ...SECURITY_HEADERS,
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-store",
        },
      });
    }
    if (path === "/api/snapshot") {
      try {
        return Response.json(await source(null), {
          headers: { ...SECURITY_HEADERS, "cache-control": "no-store" },
        });
      } catch (e) {
        return plain(503, `Cannot collect the dashboard's data: ${(e as Error).message}\n`);
      }
    }
    if (path === "/favicon.ico") return new Response(null, { status: 204 });
    return plain(404, "Not found: the dashboard is at /\n");
  };
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname: options.hostname, port: options.port, onListen() {} }, handler);
  } catch (e) {
    throw listenError(e, addr, options.permissionSet);
  }
  const url = `http://${hostPort(options.hostname, server.addr.port)}/`;
  options.logger?.info("serving the dashboard", {
    url,
    access: options.token === null ? "loopback host names only" : "access token required",
  });
  let closed: Promise<void> | undefined;
  return {
    url,
    port: server.addr.port,
    hub,
    close() {
      closed ??= (async () => {
        hub.close();
        await server.shutdown();
      })();
      return closed;
    },
  };
}

/**
 * Throws DashboardServerError when `settings`' address cannot be bound now (taken, not allowed,
 * not an address of this machine): start and demo check it before starting any child.
 */
export function checkDashboardAddress(
  settings: { hostname: string; port: number },
  options: { permissionSet?: string } = {},
): void {
  try {
    Deno.listen({ hostname: settings.hostname, port: settings.port }).close();
  } catch (e) {
    throw listenError(e, hostPort(settings.hostname, settings.port), options.permissionSet);
  }
}

function listenError(e: unknown, addr: string, set?: string): Error {
  if (e instanceof Deno.errors.AddrInUse) {
    return new DashboardServerError(
      `Dashboard port ${addr} is already in use: choose a free one with --dashboard-port ` +
        `(0 = no dashboard), or stop the process listening there`,
    );
  }
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    return new DashboardServerError(
      `Cannot serve the dashboard on ${addr}: it is not in this command's allowed hosts: run it ` +
        `through "deno task ${set ?? "<command>"}", which allows exactly the configured ` +
        `addresses (--dashboard-host / --dashboard-port)`,
    );
  }
  if (e instanceof Deno.errors.AddrNotAvailable) {
    return new DashboardServerError(
      `Cannot serve the dashboard on ${addr}: ${(e as Error).message}; expected an address of ` +
        `this machine (--dashboard-host)`,
    );
  }
  return e as Error;
}
