/**
 * A tiny TCP forwarder for tests: listens on 127.0.0.1 (an ephemeral port by default) and pipes
 * every connection to `target`, counting connections and bytes. Puts Kafka or PostgreSQL at a
 * non-default address without touching the shared services.
 * @module
 */

/** A running forwarder. */
export interface TcpProxy {
  /** The port it listens on (127.0.0.1). */
  port: number;
  /** `127.0.0.1:<port>`. */
  address: string;
  /** Connections accepted so far. */
  connections(): number;
  /** Bytes forwarded client → target so far. */
  bytesUp(): number;
  /** Stops listening and closes every open connection. */
  close(): Promise<void>;
}

/** Starts forwarding `127.0.0.1:<port>` to `target` (`host:port`). */
export function startTcpProxy(target: string, options: { port?: number } = {}): TcpProxy {
  const i = target.lastIndexOf(":");
  const hostname = target.slice(0, i);
  const targetPort = Number(target.slice(i + 1));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: options.port ?? 0 });
  const open = new Set<Deno.Conn>();
  let accepted = 0;
  let up = 0;
  const pipe = async (from: Deno.Conn, to: Deno.Conn, count: boolean) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        if (count) up += n;
        for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* either side closed */ }
    for (const c of [from, to]) {
      try {
        c.close();
      } catch { /* closed */ }
      open.delete(c);
    }
  };
  const serve = (async () => {
    for await (const client of listener) {
      accepted++;
      open.add(client);
      Deno.connect({ hostname, port: targetPort }).then((server) => {
        open.add(server);
        pipe(client, server, true);
        pipe(server, client, false);
      }, () => {
        try {
          client.close();
        } catch { /* closed */ }
        open.delete(client);
      });
    }
  })().catch(() => {});
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    connections: () => accepted,
    bytesUp: () => up,
    async close() {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of open) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      open.clear();
      await serve;
    },
  };
}
