/**
 * Reading a `/metrics` scrape in tests with a real parser of the Prometheus text exposition
 * format (npm:parse-prometheus-text-format, a port of Prometheus' own Go parser), plus the
 * checks that parser leaves out: every family appears once with a `# TYPE`, names and label
 * names are valid, counters end in `_total`.
 * @module
 */

import assert from "node:assert/strict";
// @ts-types="./prom_text_types.d.ts"
import parsePrometheusTextFormat from "parse-prometheus-text-format";

/** One sample as the parser returns it (values as text). */
export interface ParsedSample {
  /** Labels (absent when none). */
  labels?: Record<string, string>;
  /** Value of a counter, gauge or untyped sample. */
  value?: string;
  /** Histogram buckets by `le` (the parser folds an unlabelled histogram into one sample). */
  buckets?: Record<string, string>;
  /** Histogram or summary count. */
  count?: string;
  /** Histogram or summary sum. */
  sum?: string;
}

/** One metric family. */
export interface ParsedFamily {
  /** Family name. */
  name: string;
  /** HELP text. */
  help: string;
  /** COUNTER, GAUGE, HISTOGRAM, SUMMARY or UNTYPED. */
  type: string;
  /** Samples. */
  metrics: ParsedSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Parses a scrape; asserts the structure rules above. Families by name. */
export function parseScrape(text: string): Map<string, ParsedFamily> {
  const families = parsePrometheusTextFormat(text) as ParsedFamily[];
  const byName = new Map<string, ParsedFamily>();
  for (const f of families) {
    assert.ok(!byName.has(f.name), `family ${f.name} appears twice`);
    assert.match(f.name, NAME, `invalid metric name ${f.name}`);
    assert.notEqual(f.type, "UNTYPED", `${f.name} has no # TYPE line`);
    assert.ok(f.help.length > 0, `${f.name} has no # HELP text`);
    if (f.type === "COUNTER") {
      assert.match(f.name, /_total$/, `counter ${f.name} must end in _total`);
    } else assert.doesNotMatch(f.name, /_total$/, `non-counter ${f.name} must not end in _total`);
    for (const s of f.metrics) {
      for (const l of Object.keys(s.labels ?? {})) {
        assert.match(l, LABEL, `label ${l} of ${f.name}`);
      }
    }
    byName.set(f.name, f);
  }
  // Every TYPE line of the text names a family the parser returned (no sample orphaned).
  const typed = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]);
  assert.equal(typed.length, byName.size, "one # TYPE line per family");
  return byName;
}

/** The family `name`, asserting it exists with `type`. */
export function family(
  families: Map<string, ParsedFamily>,
  name: string,
  type: "COUNTER" | "GAUGE" | "HISTOGRAM",
): ParsedFamily {
  const f = families.get(name);
  assert.ok(f, `metric ${name} is missing`);
  assert.equal(f.type, type, `${name} type`);
  return f;
}

/** The value of the sample of `name` whose labels equal `labels` (default none); NaN if absent. */
export function sampleValue(
  families: Map<string, ParsedFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const f = families.get(name);
  if (!f) return NaN;
  const want = JSON.stringify(Object.entries(labels).sort());
  const s = f.metrics.find((m) => JSON.stringify(Object.entries(m.labels ?? {}).sort()) === want);
  return s?.value === undefined ? NaN : Number(s.value);
}

/** Sum over the samples of `name` (e.g. a counter over all its label values). */
export function sampleSum(families: Map<string, ParsedFamily>, name: string): number {
  return (families.get(name)?.metrics ?? []).reduce((a, m) => a + Number(m.value ?? 0), 0);
}

/** Count, sum and buckets of an unlabelled histogram. */
export function histogram(
  families: Map<string, ParsedFamily>,
  name: string,
): { count: number; sum: number; buckets: Record<string, number> } {
  const f = family(families, name, "HISTOGRAM");
  assert.equal(f.metrics.length, 1, `${name}: one unlabelled histogram`);
  const m = f.metrics[0];
  const buckets = Object.fromEntries(
    Object.entries(m.buckets ?? {}).map(([le, v]) => [le, Number(v)]),
  );
  const count = Number(m.count);
  assert.equal(buckets["+Inf"], count, `${name}: the +Inf bucket equals the count`);
  const les = Object.keys(buckets).filter((k) => k !== "+Inf").map(Number).sort((a, b) => a - b);
  for (let i = 1; i < les.length; i++) {
    assert.ok(buckets[String(les[i])] >= buckets[String(les[i - 1])], `${name}: cumulative`);
  }
  return { count, sum: Number(m.sum), buckets };
}

/** Fetches and parses `url` (a /metrics endpoint); asserts a 200 and the text content type. */
export async function scrape(url: string): Promise<Map<string, ParsedFamily>> {
  const res = await fetch(url);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parseScrape(text);
}
