import assert from "node:assert/strict";
import {
  acquireLease,
  LeaseHeldError,
  processLockPath,
  tryProcessLock,
} from "../../aggregate/lease.ts";

Deno.test("process lock: held by a live process, released by the kernel on kill -9", async () => {
  await Deno.mkdir(".data/test", { recursive: true });
  const path = processLockPath(`.data/test/lock-${crypto.randomUUID()}.kv`, "ticks");
  const script = `const f = await Deno.open(${
    JSON.stringify(path)
  }, { read: true, write: true, create: true });
    if (!(await f.tryLock(true))) Deno.exit(9);
    console.log("locked");
    setInterval(() => {}, 1000);`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assert.match((await reader.read()).value ?? "", /locked/);
  try {
    assert.equal(await tryProcessLock(path), null, "a live holder keeps the lock");
    child.kill("SIGKILL");
    await child.status;
    const lock = await tryProcessLock(path);
    assert.ok(lock !== null, "the kernel released the dead holder's lock");
    assert.equal(await tryProcessLock(path), null, "and now we hold it exclusively");
    lock.release();
    const again = await tryProcessLock(path);
    assert.ok(again !== null, "released locks can be taken again");
    again.release();
  } finally {
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    await Deno.remove(path).catch(() => {});
  }
});

Deno.test("lease: a live lease is taken over only when its holder is known dead", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = 1_000_000;
    await acquireLease(kv, "t", { holder: "unlocked", now, hostname: "h1", ttlMs: 30_000 });
    await assert.rejects(
      () =>
        acquireLease(kv, "t", {
          holder: "new",
          now: now + 1,
          hostname: "h1",
          holderDead: (l) => l.processLocked === true && l.hostname === "h1",
        }),
      LeaseHeldError,
      "a holder that never took the process lock is never judged dead",
    );
    await kv.delete(["tickpipe", "t", "lease"]);
    await acquireLease(kv, "t", {
      holder: "dead",
      now,
      hostname: "h1",
      ttlMs: 30_000,
      processLocked: true,
    });
    await assert.rejects(
      () => acquireLease(kv, "t", { holder: "new", now: now + 1, hostname: "h1" }),
      LeaseHeldError,
    );
    await assert.rejects(
      () =>
        acquireLease(kv, "t", {
          holder: "new",
          now: now + 1,
          hostname: "h2",
          holderDead: (l) => l.processLocked === true && l.hostname === "h2",
        }),
      LeaseHeldError,
      "a holder on another host is not judged dead",
    );
    const took = await acquireLease(kv, "t", {
      holder: "new",
      now: now + 1,
      hostname: "h1",
      holderDead: (l) => l.processLocked === true && l.hostname === "h1",
    });
    assert.equal(took.lease.holder, "new");
  } finally {
    kv.close();
  }
});
