/**
 * Chaos helpers around ingest: run the real `ingest` command (subprocess, -P=ingest with the net
 * list replaced by the chaos broker + the in-process simulator) and compare what the simulator
 * sent with what is in the topic and the DLQ.
 * @module
 */

import { parseFrame } from "../../ingest/frame.ts";
import type { SentFrame } from "../../ingest/simulator.ts";
import { BROKER, type Msg, type Proc, ROOT, spawnCli } from "./_harness.ts";

/** Spool directory of a chaos ingest: under .data/spool/, the only place its permission set writes. */
export function chaosSpoolDir(topic: string): string {
  return `${ROOT}.data/spool/chaos-${topic}`;
}

/** Where a chaos ingest's --record file goes: under .data/recordings/ (its permission set). */
export function chaosRecordFile(name: string): string {
  return `${ROOT}.data/recordings/chaos-${name}`;
}

/** Starts `ingest` against the simulator on `simPort`, producing to `topic` on the chaos broker. */
export function spawnIngest(
  name: string,
  o: { topic: string; simPort: number; symbols: string[]; extra?: string[] },
): Promise<Proc> {
  return spawnCli("ingest", [
    "ingest",
    "--source",
    `ws://127.0.0.1:${o.simPort}/?version=2`,
    "--symbols",
    o.symbols.join(","),
    "--brokers",
    BROKER,
    "--topic",
    o.topic,
    "--spool-dir",
    chaosSpoolDir(o.topic),
    "--progress-every",
    "2s",
    "--flush-timeout",
    "120s",
    ...(o.extra ?? []),
  ], { name, net: `${BROKER},127.0.0.1:${o.simPort}`, env: { LOG_LEVEL: "info" } });
}

/** Waits until ingest's subscription reached the simulator (it has a subscribed connection). */
export function parseIngestStopLine(lines: string[]): Record<string, string> | undefined {
  const l = lines.find((x) => x.startsWith("ingest stopped"));
  if (!l) return undefined;
  const out: Record<string, string> = {};
  for (const m of l.matchAll(/(\w+)=(\{[^}]*\}|\S+)/g)) out[m[1]] = m[2];
  return out;
}

/** Multiset comparison of expected tick values (from sent frames) with the topic's values. */
export function compareTicks(
  sent: SentFrame[],
  ticks: Msg[],
): { expected: number; got: number; missing: number; duplicates: number; unexpected: number } {
  const want = new Map<string, number>();
  let expected = 0;
  for (const s of sent) {
    if (s.expect !== "ok") continue;
    const r = parseFrame(s.frame, { nowMs: s.at });
    if (r.ok !== true) continue;
    const v = JSON.stringify(r.tick);
    want.set(v, (want.get(v) ?? 0) + 1);
    expected++;
  }
  const got = new Map<string, number>();
  for (const m of ticks) got.set(m.value, (got.get(m.value) ?? 0) + 1);
  let missing = 0;
  let duplicates = 0;
  let unexpected = 0;
  for (const [v, n] of want) {
    const g = got.get(v) ?? 0;
    if (g < n) missing += n - g;
    if (g > n) duplicates += g - n;
  }
  for (const [v, n] of got) if (!want.has(v)) unexpected += n;
  return { expected, got: ticks.length, missing, duplicates, unexpected };
}

/**
 * Per symbol, the topic order equals the send order (one partition per key); returns violations.
 * With `gaps`, ticks may be missing (dropped and counted elsewhere): the topic's must then be the
 * sent ones in their order, with gaps.
 */
export function orderViolations(
  sent: SentFrame[],
  ticks: Msg[],
  options: { gaps?: boolean } = {},
): number {
  const bySym = new Map<string, string[]>();
  for (const s of sent) {
    if (s.expect !== "ok") continue;
    const r = parseFrame(s.frame, { nowMs: s.at });
    if (r.ok !== true) continue;
    const list = bySym.get(r.tick.id) ?? [];
    list.push(JSON.stringify(r.tick));
    bySym.set(r.tick.id, list);
  }
  let bad = 0;
  for (const [sym, values] of bySym) {
    // Duplicates (if any) are removed keeping the first occurrence, then order is compared.
    const seen = new Set<string>();
    const got = ticks.filter((m) => m.key === sym).map((m) => m.value).filter((v) => {
      if (seen.has(v)) return false;
      seen.add(v);
      return true;
    });
    const wantUnique = values.filter((v, i) => values.indexOf(v) === i);
    if (options.gaps) {
      const at = new Map(wantUnique.map((v, i) => [v, i]));
      let last = -1;
      for (const v of got) {
        const i = at.get(v) ?? -1;
        if (i <= last) {
          bad++;
          break;
        }
        last = i;
      }
    } else if (JSON.stringify(got) !== JSON.stringify(wantUnique)) bad++;
  }
  return bad;
}
