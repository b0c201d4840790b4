/**
 * A TCP proxy for outage tests: forwards to a target; `down()` cuts every live connection and
 * refuses new ones (accepts and closes them at once) until `up()`.
 * @module
 */

/** A running proxy. */
export interface TcpProxy {
  /** Local port. */
  port: number;
  /** Cuts live connections and refuses new ones. */
  down(): void;
  /** Accepts and forwards again. */
  up(): void;
  /** Connections refused or cut while down. */
  refused: number;
  /** Stops listening and closes everything. */
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 forwarding to `target`. */
export function startTcpProxy(target: { hostname: string; port: number }): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const live = new Set<Deno.Conn>();
  let isDown = false;
  const proxy: TcpProxy = {
    port: (listener.addr as Deno.NetAddr).port,
    refused: 0,
    down() {
      isDown = true;
      for (const c of live) {
        try {
          c.close();
        } catch { /* closed */ }
        proxy.refused++;
      }
      live.clear();
    },
    up() {
      isDown = false;
    },
    async close() {
      listener.close();
      proxy.down();
      await accepting.catch(() => {});
    },
  };
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable);
    } catch { /* cut */ }
    for (const c of [from, to]) {
      try {
        c.close();
      } catch { /* closed */ }
      live.delete(c);
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      if (isDown) {
        proxy.refused++;
        conn.close();
        continue;
      }
      try {
        const upstream = await Deno.connect(target);
        live.add(conn);
        live.add(upstream);
        pipe(conn, upstream);
        pipe(upstream, conn);
      } catch {
        conn.close();
      }
    }
  })();
  return proxy;
}
