/**
 * A real Deno KV whose atomic commits can be made to fail, as SQLite's do on a full disk or a
 * broken file: the operation's writes then do not apply. Counts `list()` calls too.
 * @module
 */

/** What a commit about to run does. */
export interface PendingCommit {
  /** The operation deletes at least one key. */
  deletes: boolean;
}

/** The wrapped KV and its counters. */
export interface FaultyKv {
  /** The KV to hand to the code under test. */
  kv: Deno.Kv;
  /** Calls of `list()` so far (settable, to reset). */
  state: { lists: number };
}

/** Wraps `kv`: a commit for which `refuse` returns an error rejects with it, unapplied. */
export function faultyKv(
  kv: Deno.Kv,
  refuse: (commit: PendingCommit) => Error | null,
): FaultyKv {
  const state = { lists: 0 };
  const proxy = new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const pending: PendingCommit = { deletes: false };
          const proxyOp: Deno.AtomicOperation = new Proxy(op, {
            get(o, p) {
              if (p === "delete") {
                return (key: Deno.KvKey) => {
                  pending.deletes = true;
                  o.delete(key);
                  return proxyOp;
                };
              }
              if (p === "commit") {
                return () => {
                  const error = refuse(pending);
                  return error ? Promise.reject(error) : o.commit();
                };
              }
              const v = Reflect.get(o, p, o);
              return typeof v === "function"
                ? (...args: unknown[]) => {
                  const r = v.apply(o, args);
                  return r === o ? proxyOp : r;
                }
                : v;
            },
          });
          return proxyOp;
        };
      }
      if (prop === "list") state.lists++;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { kv: proxy, state };
}
