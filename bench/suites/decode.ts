/**
 * Suite 1, decode:
 * - ticks/s through parseFrame (JSON envelope -> base64 -> protobuf -> validated tick), against
 *   JSON.parse of the same ticks as plain JSON (for scale; no target);
 * - the aggregator's record parsing (aggregate/record.ts) of the same 15-field quotes, as the
 *   ticks topic holds them (values are slices of one buffer, as kafkajs hands them over): the
 *   JSON scanner and the tick-v1 decoder, each against `TextDecoder` + `JSON.parse` + the field
 *   checks (the aggregator's way before the parser), in ticks/s and µs per record, plus the
 *   value sizes.
 * @module
 */

import { encodeFrame, parseFrame } from "../../ingest/frame.ts";
import { RecordParser } from "../../aggregate/record.ts";
import { encodeTickValue, type ValueFormat } from "../../proto/tick.ts";
import type { PricingData } from "../../proto/mod.ts";
import { perSecond } from "../_stats.ts";
import { interleave, type Row, rowOf, type Suite, type SuiteContext } from "../_suite.ts";
import { quotes, T0 } from "./_data.ts";

/** Record values of `data` in `format`, as slices of one contiguous buffer (like kafkajs). */
function recordValues(data: PricingData[], format: ValueFormat): Uint8Array[] {
  const encoded = data.map((q) => encodeTickValue(q, format).value);
  const total = encoded.reduce((n, v) => n + v.length + 16, 0);
  const buffer = new Uint8Array(total); // 16 bytes of "headers" between values
  let at = 0;
  return encoded.map((v) => {
    buffer.set(v, at);
    const slice = buffer.subarray(at, at + v.length);
    at += v.length + 16;
    return slice;
  });
}

/** The decode suite. */
export const decodeSuite: Suite = {
  name: "decode",
  title: "Decode (parseFrame) and record parsing (aggregate/record.ts)",
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

    // Record parsing. Every path must read the same ticks: the price sums are compared.
    const jsonValues = recordValues(data, "json");
    const binValues = recordValues(data, "tick-v1");
    const expectedSum = data.reduce((s, q) => s + q.price!, 0);
    const decoder = new TextDecoder();
    const check = (what: string, sum: number) => {
      if (sum !== expectedSum) {
        throw new Error(`${what} read price sum ${sum}, want ${expectedSum}`);
      }
    };
    const todays = () => {
      let sum = 0;
      const t0 = performance.now();
      for (let i = 0; i < jsonValues.length; i++) {
        const v = JSON.parse(decoder.decode(jsonValues[i]));
        const { id, price, time } = v;
        if (
          typeof id !== "string" || typeof price !== "number" || !Number.isFinite(price) ||
          typeof time !== "number" || !Number.isSafeInteger(time)
        ) throw new Error(`Record ${i} rejected`);
        sum += price;
      }
      const rate = perSecond(jsonValues.length, performance.now() - t0);
      check("JSON.parse", sum);
      return rate;
    };
    const parser = new RecordParser();
    const scan = (values: Uint8Array[], format: ValueFormat, what: string) => () => {
      let sum = 0;
      const t0 = performance.now();
      for (let i = 0; i < values.length; i++) {
        if (!parser.parse(values[i], format, nowMs)) {
          throw new Error(`Record ${i} rejected: ${parser.reason} ${parser.detail}`);
        }
        sum += parser.price;
      }
      const rate = perSecond(values.length, performance.now() - t0);
      check(what, sum);
      return rate;
    };

    return (async () => {
      const r = await interleave(ours, baseline, { runs: ctx.runs, log: ctx.log, label: "decode" });
      if (!(sink > 0)) throw new Error("Decode produced nothing");
      const j = await interleave(scan(jsonValues, "json", "JSON scanner"), todays, {
        runs: ctx.runs,
        log: ctx.log,
        label: "record json",
      });
      const b = await interleave(scan(binValues, "tick-v1", "tick-v1"), todays, {
        runs: ctx.runs,
        log: ctx.log,
        label: "record tick-v1",
      });
      const micros = (rates: number[]) => rates.map((x) => 1e6 / x);
      const size = (values: Uint8Array[]) => values.reduce((s, v) => s + v.length, 0) / n;
      const baselineLabel = "TextDecoder + JSON.parse + field checks (before)";
      const workload = `${n.toLocaleString("en")} records, 15-field quotes, 1,000 symbols`;
      return [
        rowOf({
          suite: "decode",
          metric: `parseFrame, v2 envelopes (${n.toLocaleString("en")} frames, 15 fields)`,
          unit: "ticks/s",
          ours: r.ours,
          baseline: r.baseline,
          baselineLabel: "JSON.parse of the same ticks",
          note: "for scale, no target",
        }),
        rowOf({
          suite: "decode",
          metric: `record parse, JSON scanner (${workload})`,
          unit: "ticks/s",
          ours: j.ours,
          baseline: j.baseline,
          baselineLabel,
          note: "validates the whole JSON text and the tick rules; symbols interned",
        }),
        rowOf({
          suite: "decode",
          metric: "record parse, JSON scanner, time per record",
          unit: "µs/record",
          ours: micros(j.ours),
          baseline: micros(j.baseline),
          baselineLabel,
          lowerIsBetter: true,
          note: "aggregator budget about 0.3 µs per record on top of kafkajs",
        }),
        rowOf({
          suite: "decode",
          metric: `record parse, tick-v1 (${workload})`,
          unit: "ticks/s",
          ours: b.ours,
          baseline: b.baseline,
          baselineLabel,
        }),
        rowOf({
          suite: "decode",
          metric: "record parse, tick-v1, time per record",
          unit: "µs/record",
          ours: micros(b.ours),
          baseline: micros(b.baseline),
          baselineLabel,
          lowerIsBetter: true,
        }),
        rowOf({
          suite: "decode",
          metric: "record value size, tick-v1 vs JSON",
          unit: "bytes/record",
          ours: [size(binValues)],
          baseline: [size(jsonValues)],
          baselineLabel: "JSON value (JSON.stringify of the quote)",
          lowerIsBetter: true,
          note: "tick-v1 carries 9 of the 15 fields",
        }),
      ];
    })();
  },
};
