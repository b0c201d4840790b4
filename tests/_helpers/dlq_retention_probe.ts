// Run with `deno run -A --v8-flags=--expose-gc tests/_helpers/dlq_retention_probe.ts <mode>`:
// builds 40 dead letters from 4 MB frames and prints the heap still used once the frames are
// gone, as JSON {retainedBytes}. Modes: "dlq" (ingest's dlqRecord) and "slice" (what ingest
// did before: raw.slice(0, 100000), a V8 sliced string that keeps the whole frame alive).
import { dlqRecord } from "../../ingest/ingest.ts";

const gc = (globalThis as unknown as { gc?: () => void }).gc;
if (!gc) throw new Error("Run with --v8-flags=--expose-gc");
const mode = Deno.args[0];
if (mode !== "dlq" && mode !== "slice") throw new Error(`Unknown mode "${mode}"`);

const FRAME_BYTES = 4_000_000;
const base = new Uint8Array(FRAME_BYTES);
for (let k = 0; k < base.length; k++) base[k] = 0x41 + ((k * 7) % 26);
/** A fresh, flat 4 MB frame (decoded from bytes: a sequential string, not a rope). */
function frame(i: number): string {
  base[0] = 0x41 + (i % 26);
  return new TextDecoder().decode(base);
}

const kept: string[] = [];
gc();
const before = Deno.memoryUsage().heapUsed;
for (let i = 0; i < 40; i++) {
  const raw = frame(i);
  kept.push(
    mode === "slice" ? raw.slice(0, 100_000) : dlqRecord("t", raw, {
      reason: "too_large",
      detail: "Frame too large",
      receivedMs: 1,
    }).value as string, // a frame's dead letter keeps text
  );
}
gc();
gc();
const after = Deno.memoryUsage().heapUsed;
if (kept.some((v) => v.length !== 100_000)) throw new Error("Unexpected value length");
console.log(JSON.stringify({ mode, retainedBytes: after - before, values: kept.length }));
