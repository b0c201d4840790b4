/**
 * Helpers for the end-to-end pipeline tests: a process tree watcher over /proc, a reader of a
 * whole topic in offset order, the simulator's --log file as ticks, random symbol prefixes.
 * @module
 */

import type { Kafka } from "../../common/kafka.ts";
import type { StreamRecord } from "./aggregate_stream.ts";

/** A random prefix of four capital letters starting with X (unique symbols per test). */
export function randomPrefix(): string {
  const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  let p = "X";
  for (let i = 0; i < 3; i++) p += letters[Math.floor(Math.random() * letters.length)];
  return p;
}

/** A live process: pid, parent and command line. */
export interface Proc {
  /** Process id. */
  pid: number;
  /** Parent pid. */
  ppid: number;
  /** Command line, space-separated. */
  cmdline: string;
}

function readProc(pid: number): Proc | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return null; // zombie or dead: gone
    const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").join(" ").trim();
    return { pid, ppid: Number(fields[1]), cmdline };
  } catch {
    return null;
  }
}

/** Every live descendant of `root` (not `root` itself), from /proc. */
export function descendants(root: number): Proc[] {
  const all: Proc[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const p = readProc(Number(e.name));
    if (p) all.push(p);
  }
  const out: Proc[] = [];
  const frontier = [root];
  while (frontier.length) {
    const parent = frontier.pop()!;
    for (const p of all) {
      if (p.ppid === parent) {
        out.push(p);
        frontier.push(p.pid);
      }
    }
  }
  return out;
}

/** True while `proc` runs (same pid with the same command line: pids are not reused that fast). */
export function stillRunning(proc: Proc): boolean {
  const now = readProc(proc.pid);
  return now !== null && now.cmdline === proc.cmdline;
}

/** One record read back from Kafka. */
export interface TopicRecord {
  /** Partition. */
  partition: number;
  /** Offset. */
  offset: number;
  /** Key. */
  key: string | null;
  /** Value as text. */
  value: string;
}

/** Reads every record of `topic` up to its current end offsets, per partition in offset order. */
export async function readTopic(kafka: Kafka, topic: string): Promise<TopicRecord[][]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<number, number>();
  let total = 0; // records from each partition's log start (records may have been deleted)
  try {
    for (const r of await admin.fetchTopicOffsets(topic)) {
      ends.set(r.partition, Number(r.high));
      total += Number(r.high) - Number(r.low);
    }
  } finally {
    await admin.disconnect();
  }
  const out: TopicRecord[][] = [...ends.keys()].sort((a, b) => a - b).map(() => []);
  if (total === 0) return out;
  const consumer = kafka.consumer({ groupId: `e2e-read-${crypto.randomUUID()}` });
  await consumer.connect();
  let seen = 0;
  const done = Promise.withResolvers<void>();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ partition, message }) => {
        const offset = Number(message.offset);
        if (offset >= (ends.get(partition) ?? 0)) return Promise.resolve();
        out[partition].push({
          partition,
          offset,
          key: message.key?.toString() ?? null,
          value: message.value?.toString() ?? "",
        });
        if (++seen >= total) done.resolve();
        return Promise.resolve();
      },
    });
    const timer = setTimeout(() => done.reject(new Error(`Read ${seen} of ${total}`)), 30_000);
    await done.promise.finally(() => clearTimeout(timer));
  } finally {
    await consumer.disconnect();
  }
  for (const p of out) p.sort((a, b) => a.offset - b.offset);
  return out;
}

/** Kafka records as the aggregate oracle's input (offsets must be 0..n-1 in order). */
export function asStream(
  records: TopicRecord[][],
  below: Record<string, number>,
): StreamRecord[][] {
  return records.map((recs, p) =>
    recs.filter((r) => r.offset < (below[String(p)] ?? 0)).map((r, i) => {
      if (r.offset !== i) throw new Error(`Partition ${p} has a gap at offset ${i}`);
      let tick: StreamRecord["tick"] = null;
      try {
        const v = JSON.parse(r.value);
        tick = { id: v.id, price: v.price, time: v.time, dayVolume: v.dayVolume };
      } catch { /* invalid: skipped by both */ }
      return { symbol: r.key ?? "", tick };
    })
  );
}

/** A tick identity: symbol, event time and price. */
export function tickId(t: { id?: string; symbol?: string; time: number; price: number }): string {
  return `${t.id ?? t.symbol}|${t.time}|${t.price}`;
}

/** The simulator's --log file: ids of the frames expected valid, and the count expected rejected. */
export async function simulatorLog(
  path: string,
  symbols: Set<string>,
): Promise<{ valid: string[]; rejected: number; lines: number }> {
  const valid: string[] = [];
  let rejected = 0;
  let lines = 0;
  for (const line of (await Deno.readTextFile(path)).split("\n")) {
    if (line === "") continue;
    lines++;
    const f = JSON.parse(line);
    if (f.symbol !== undefined && !symbols.has(f.symbol)) continue;
    if (f.expect === "ok") valid.push(tickId({ symbol: f.symbol, time: f.time, price: f.price }));
    else if (f.expect !== "ignored") rejected++;
  }
  return { valid, rejected, lines };
}

/** Multiset difference a - b (items of a not matched in b). */
export function missingFrom(a: string[], b: string[]): string[] {
  const count = new Map<string, number>();
  for (const x of b) count.set(x, (count.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of a) {
    const n = count.get(x) ?? 0;
    if (n > 0) count.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

/** Polls `fn` every `everyMs` until it returns a truthy value or `timeoutMs` passes (then throws `what`). */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T> | T,
  options: { timeoutMs?: number; everyMs?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  while (true) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, options.everyMs ?? 250));
  }
}
