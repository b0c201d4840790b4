/**
 * Suite 1, decode: ticks/s through parseFrame (JSON envelope -> base64 -> protobuf -> validated
 * tick), against JSON.parse of the same ticks as plain JSON (for scale; no target).
 * @module
 */

import { encodeFrame, parseFrame } from "../../ingest/frame.ts";
import { perSecond } from "../_stats.ts";
import { interleave, type Row, rowOf, type Suite, type SuiteContext } from "../_suite.ts";
import { quotes, T0 } from "./_data.ts";

/** The decode suite. */
export const decodeSuite: Suite = {
  name: "decode",
  title: "Decode (parseFrame)",
  run(ctx: SuiteContext): Promise<Row[]> {
    const n = ctx.quick ? 100_000 : 500_000;
    const data = quotes(n, 1000);
    const frames = data.map((q) => encodeFrame(q));
    const json = data.map((q) => JSON.stringify(q));
    const nowMs = T0 + n + 1000;
    let sink = 0;

    const ours = () => {
      const t0 = performance.now();
      for (let i = 0; i < frames.length; i++) {
        const r = parseFrame(frames[i], { nowMs });
        if (r.ok !== true) throw new Error(`Frame ${i} rejected: ${JSON.stringify(r)}`);
        sink += r.tick.price;
      }
      return perSecond(frames.length, performance.now() - t0);
    };
    const baseline = () => {
      const t0 = performance.now();
      for (let i = 0; i < json.length; i++) {
        const t = JSON.parse(json[i]);
        sink += t.price;
      }
      return perSecond(json.length, performance.now() - t0);
    };
    return (async () => {
      const r = await interleave(ours, baseline, { runs: ctx.runs, log: ctx.log, label: "decode" });
      if (!(sink > 0)) throw new Error("Decode produced nothing");
      return [rowOf({
        suite: "decode",
        metric: `parseFrame, v2 envelopes (${n.toLocaleString("en")} frames, 15 fields)`,
        unit: "ticks/s",
        ours: r.ours,
        baseline: r.baseline,
        baselineLabel: "JSON.parse of the same ticks",
        note: "for scale, no target",
      })];
    })();
  },
};
