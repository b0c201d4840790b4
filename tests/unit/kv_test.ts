import assert from "node:assert/strict";
import { isKvBusy, openKv, withKvRetry } from "../../common/kv.ts";

Deno.test("kv: busy errors are retried, other errors are not", async () => {
  let calls = 0;
  const v = await withKvRetry(() => {
    calls++;
    if (calls < 3) return Promise.reject(new Error("database is locked"));
    return Promise.resolve(42);
  });
  assert.equal(v, 42);
  assert.equal(calls, 3);
  let other = 0;
  await assert.rejects(
    () =>
      withKvRetry(() => {
        other++;
        return Promise.reject(new TypeError("bad key"));
      }),
    /bad key/,
  );
  assert.equal(other, 1);
  assert.ok(isKvBusy(new Error("SqliteFailure: database is locked")));
});

Deno.test("kv: the retrying handle behaves like Deno.Kv (get/set/atomic/list) across processes", async () => {
  await Deno.mkdir(".data/test", { recursive: true });
  const path = `.data/test/kv-${crypto.randomUUID()}.kv`;
  const kv = await openKv(path);
  try {
    await kv.set(["a"], 1);
    const e = await kv.get<number>(["a"]);
    assert.equal(e.value, 1);
    const r = await kv.atomic().check(e).set(["a"], 2).set(["b"], 3).commit();
    assert.ok(r.ok);
    const stale = await kv.atomic().check(e).set(["a"], 9).commit();
    assert.equal(stale.ok, false, "check on a stale versionstamp fails");
    const keys = [];
    for await (const x of kv.list({ prefix: [] })) keys.push(x.key[0]);
    assert.deepEqual(keys, ["a", "b"]);
    // Another process writing the same file concurrently: both sides' writes all land.
    const script = `const kv = await Deno.openKv(${JSON.stringify(path)});
      for (let i = 0; i < 200; i++) await kv.set(["child", i], i);
      kv.close();`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--unstable-kv", script],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    for (let i = 0; i < 200; i++) await kv.atomic().set(["parent", i], i).commit();
    const st = await child.output();
    assert.equal(st.code, 0, new TextDecoder().decode(st.stderr));
    let n = 0;
    for await (const _ of kv.list({ prefix: ["child"] })) n++;
    for await (const _ of kv.list({ prefix: ["parent"] })) n++;
    assert.equal(n, 400);
  } finally {
    kv.close();
    await Deno.remove(path).catch(() => {});
  }
});
