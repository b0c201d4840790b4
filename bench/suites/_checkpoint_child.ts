/**
 * Child process of the checkpoint suite, so that each phase's peak RSS is its own:
 *
 * - `write <kv> <topic> <symbols> <perSymbol>`: writes a base of symbols x perSymbol windows
 *   (2 partitions, sorted) with writeBase;
 * - `restore <kv> <topic>`: readState and consumes every record (decode + merge);
 * - `raw <kv> <topic>`: the baseline: reads the same chunks with kv.list, no decoding.
 *
 * Prints one JSON line: wall ms, CPU ms, records or bytes, and the process's peak RSS (VmHWM, MB).
 * @module
 */

import process from "node:process";
import { openKv } from "../../common/kv.ts";
import { readCheckpoint, readState, writeBase } from "../../aggregate/checkpoint.ts";
import { statePrefix } from "../../aggregate/kv_layout.ts";
import type { StateRecord } from "../../aggregate/state_codec.ts";

/** The synthetic state: `symbols` x `perSymbol` windows over 2 partitions, in key order. */
export function* syntheticState(symbols: number, perSymbol: number): Generator<StateRecord> {
  for (let p = 0; p < 2; p++) {
    yield {
      kind: "partition",
      partition: p,
      maxEventTime: 1_700_000_000_000 + perSymbol * 300_000,
      lastOffset: symbols * perSymbol,
      floor: null,
      replayBelow: 0,
      lastArrivalMs: 1_700_000_000_000,
    };
    for (let s = p; s < symbols; s += 2) {
      const symbol = `SYM${String(s).padStart(6, "0")}`;
      for (let k = 0; k < perSymbol; k++) {
        const start = 1_700_000_000_000 + k * 300_000;
        const price = 100 + (s % 1000) / 7;
        yield {
          kind: "window",
          partition: p,
          windowMs: 300_000,
          symbol,
          start,
          count: 1 + (s % 40),
          sum: price * (1 + (s % 40)),
          comp: 0,
          open: price,
          high: price + 0.25,
          low: price - 0.25,
          close: price + 0.125,
          first: start + 17,
          last: start + 298_000,
          lastOffset: s * perSymbol + k,
          volume: 100 * (s % 500),
          volumeComp: 0,
          pv: price * 100 * (s % 500),
          pvComp: 0,
        };
      }
    }
  }
}

async function peakMb(): Promise<number> {
  const m = /VmHWM:\s+(\d+) kB/.exec(await Deno.readTextFile("/proc/self/status"));
  return m ? Number(m[1]) / 1024 : NaN;
}

if (import.meta.main) {
  const [mode, kvPath, topic, a, b] = Deno.args;
  const kv = await openKv(kvPath);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let out: Record<string, number>;
  if (mode === "write") {
    const w = await writeBase(kv, topic, {
      runId: "bench",
      batchId: 1,
      committedAt: Date.now(),
      offsets: { "0": 0, "1": 0 },
      watermarks: { "0": null, "1": null },
      engine: { windows: [300_000], watermarkDelayMs: 900_000 },
      identity: { partitions: 2, fingerprints: { "0": null, "1": null } },
      openWindows: Number(a) * Number(b),
      finalizeDueAt: null,
      records: syntheticState(Number(a), Number(b)),
    }, { previous: null, sorted: true });
    out = { records: w.segment!.records, bytes: w.segment!.bytes, chunks: w.segment!.chunks };
  } else if (mode === "restore") {
    const s = (await readState(kv, topic))!;
    let records = 0;
    let check = 0;
    for (const r of s.records) {
      records++;
      check += r.partition;
    }
    out = { records, bytes: s.bytes, check };
  } else if (mode === "raw") {
    const cp = (await readCheckpoint(kv, topic))!;
    let bytes = 0;
    let chunks = 0;
    const held: Uint8Array[] = []; // like readState, hold the bytes
    for await (
      const e of kv.list<Uint8Array>({ prefix: statePrefix(topic, cp.pointer.base!.generation) }, {
        batchSize: 64,
      })
    ) {
      held.push(e.value);
      bytes += e.value.byteLength;
      chunks++;
    }
    out = { bytes, chunks };
  } else {
    console.error(`Unknown mode ${JSON.stringify(mode)}: expected write, restore or raw`);
    Deno.exit(2);
  }
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({
    ...out,
    ms: performance.now() - t0,
    cpuMs: (cpu.user + cpu.system) / 1000,
    peakMb: await peakMb(),
  }));
  kv.close();
}
