// The serial queue: tasks run one at a time in call order, and a failure stays with its task.
import assert from "node:assert/strict";
import { serialQueue } from "../../common/serial.ts";

Deno.test("serial queue: random async tasks never overlap and start in call order; a failure rejects only its task", async () => {
  for (let round = 0; round < 20; round++) {
    const serial = serialQueue();
    const started: number[] = [];
    let running = 0;
    let maxRunning = 0;
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) =>
        serial(async () => {
          started.push(i);
          running++;
          maxRunning = Math.max(maxRunning, running);
          await new Promise((r) => setTimeout(r, Math.random() * 3));
          running--;
          if (i % 7 === 3) throw new Error(`task ${i}`);
          return i * 2;
        })),
    );
    assert.deepEqual(started, Array.from({ length: 30 }, (_, i) => i));
    assert.equal(maxRunning, 1);
    results.forEach((r, i) => {
      if (i % 7 === 3) {
        assert.equal(r.status, "rejected");
        assert.equal((r as PromiseRejectedResult).reason.message, `task ${i}`);
      } else assert.deepEqual(r, { status: "fulfilled", value: i * 2 });
    });
  }
  // Synchronous tasks are queued too.
  const serial = serialQueue();
  const order: string[] = [];
  const a = serial(() => order.push("a"));
  const b = serial(() => order.push("b"));
  assert.deepEqual(await Promise.all([a, b]), [1, 2]);
});
