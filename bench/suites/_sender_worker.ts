/**
 * A tiny Yahoo-protocol WebSocket sender running in a Worker (its own thread), for the ingest
 * suites: it serves on an ephemeral port, tracks the clients' subscriptions and, on request,
 * sends a given list of frames as fast as the sockets take them (or paced at a rate).
 *
 * Messages in: {type: "init", frames: [symbol, frame][]} | {type: "send", rate?: number}
 * | {type: "close"}. Messages out: {type: "listening", port} | {type: "subscribed", count}
 * | {type: "sent", n, ms} | {type: "closed"}.
 * @module
 */

/// <reference lib="deno.worker" />

interface Conn {
  socket: WebSocket;
  symbols: Set<string>;
}

const conns = new Set<Conn>();
let frames: [string, string][] = [];
let server: Deno.HttpServer | undefined;

function subscribedCount(): number {
  const all = new Set<string>();
  for (const c of conns) for (const s of c.symbols) all.add(s);
  return all.size;
}

function connFor(symbol: string): Conn | undefined {
  for (const c of conns) if (c.symbols.has(symbol)) return c;
  return undefined;
}

async function sendAll(rate: number | undefined): Promise<void> {
  const t0 = performance.now();
  const bySymbol = new Map<string, Conn | undefined>();
  let n = 0;
  const chunk = rate === undefined ? 2000 : Math.max(1, Math.round(rate / 100));
  for (let i = 0; i < frames.length; i += chunk) {
    const end = Math.min(frames.length, i + chunk);
    for (let j = i; j < end; j++) {
      const [symbol, frame] = frames[j];
      let c = bySymbol.get(symbol);
      if (c === undefined) bySymbol.set(symbol, c = connFor(symbol));
      if (c !== undefined && c.socket.readyState === WebSocket.OPEN) {
        c.socket.send(frame);
        n++;
      }
    }
    if (rate === undefined) await new Promise((r) => setTimeout(r, 0));
    else {
      const due = t0 + (end * 1000) / rate;
      await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
    }
  }
  self.postMessage({ type: "sent", n, ms: performance.now() - t0 });
}

self.onmessage = (e: MessageEvent) => {
  const msg = e.data as { type: string; frames?: [string, string][]; rate?: number };
  if (msg.type === "init") {
    frames = msg.frames ?? [];
    server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
      if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
        return new Response("WebSocket upgrade required\n", { status: 426 });
      }
      const { socket, response } = Deno.upgradeWebSocket(req);
      const c: Conn = { socket, symbols: new Set() };
      socket.onopen = () => conns.add(c);
      socket.onclose = () => conns.delete(c);
      socket.onerror = () => {};
      socket.onmessage = (m) => {
        try {
          const { subscribe } = JSON.parse(String(m.data)) as { subscribe?: string[] };
          for (const s of subscribe ?? []) c.symbols.add(s);
          self.postMessage({ type: "subscribed", count: subscribedCount() });
        } catch { /* ignore junk */ }
      };
      return response;
    });
    self.postMessage({ type: "listening", port: (server.addr as Deno.NetAddr).port });
  } else if (msg.type === "send") {
    sendAll(msg.rate);
  } else if (msg.type === "close") {
    for (const c of conns) {
      try {
        c.socket.close(1000, "bench done");
      } catch { /* closing */ }
    }
    (server?.shutdown() ?? Promise.resolve()).then(() => self.postMessage({ type: "closed" }));
  }
};
