/**
 * A bounded, append-only disk spool of JSON-line records, read back in order.
 *
 * Layout: `<dir>/<16-digit segment number>.jsonl` segment files (one JSON value per line) and
 * `<dir>/cursor.json` ({segment, line}: the first line not yet acknowledged). Every append is
 * one write + fsync; a segment rolls over at `segmentBytes`; a fully acknowledged segment is
 * deleted. After a crash a partial last line (torn write) is ignored, and so are lines that are
 * not JSON; a fresh segment is started on open so new lines never follow a torn one.
 *
 * Bound: the total size of the segment files never exceeds `maxBytes`: append() writes the
 * longest prefix of its records that fits and reports how many it refused (the caller counts
 * and logs them as dropped).
 *
 * Failures: an append whose write or fsync fails (a full disk, an I/O error) is undone (the
 * segments it wrote are truncated back or removed) and throws a SpoolError: none of its records
 * is in the spool, so the caller keeps them all. A cursor that cannot be saved is kept in memory
 * and saved at the next acknowledgement (`cursorError()` tells).
 *
 * Delivery is at-least-once: records acknowledged to Kafka whose cursor update did not reach the
 * disk (crash between the two) are delivered again after a restart.
 * @module
 */

import { DEFAULT_MAX_SPOOL_BYTES } from "./defaults.ts";
import { serialQueue } from "../common/serial.ts";

export { DEFAULT_MAX_SPOOL_BYTES };

/** Options for openSpool. */
export interface SpoolOptions {
  /** Upper bound of the segment files' total size in bytes (default 1 GiB). */
  maxBytes?: number;
  /** Roll over to a new segment past this many bytes (default 8 MiB). */
  segmentBytes?: number;
}

/** Result of Spool.append. */
export interface AppendResult {
  /** Records written (a prefix of the input). */
  written: number;
  /** Records refused because the spool is full (the rest of the input). */
  refused: number;
}

/** A disk spool of records of type T (JSON-serializable), FIFO. */
export interface Spool<T> {
  /** Directory holding the segments. */
  readonly dir: string;
  /** Records written and not yet acknowledged. */
  count(): number;
  /** Bytes of all segment files on disk. */
  bytes(): number;
  /** Corrupt lines skipped so far (torn writes after a crash, or non-JSON). */
  skipped(): number;
  /**
   * Appends `records` (fsync'd), as many as fit within maxBytes, in order; throws a SpoolError,
   * having written none of them, when the disk refuses the write.
   */
  append(records: readonly T[]): Promise<AppendResult>;
  /** The oldest `max` unacknowledged records (does not consume them). */
  peek(max: number): Promise<T[]>;
  /** Acknowledges the oldest `n` records (after peek), deleting finished segments. */
  ack(n: number): Promise<void>;
  /** Flushes the cursor and closes the current segment. */
  close(): Promise<void>;
  /** Why the cursor could not be saved last time (undefined once saved again). */
  cursorError(): Error | undefined;
}

/** Raised for an unusable spool directory or option, or a write the disk refused. */
export class SpoolError extends Error {
  /** Creates the error; the message names the bad value. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SpoolError";
  }
}

const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;
const SEGMENT = /^(\d{16})\.jsonl$/;

interface Segment {
  n: number;
  path: string;
  size: number;
  /** Lines in the segment (known once written by us or read). */
  lines: number;
}

const encoder = new TextEncoder();

function segName(n: number): string {
  return `${String(n).padStart(16, "0")}.jsonl`;
}

/** Parses the complete lines of a segment's text; a trailing partial line is ignored. */
export function parseSegment<T>(text: string): { records: T[]; skipped: number } {
  const end = text.lastIndexOf("\n");
  const records: T[] = [];
  let skipped = end + 1 < text.length ? 1 : 0;
  if (end < 0) return { records, skipped };
  for (const line of text.slice(0, end).split("\n")) {
    try {
      records.push(JSON.parse(line) as T);
    } catch {
      skipped++;
    }
  }
  return { records, skipped };
}

/** Opens (creating) the spool in `dir`, recovering segments a previous run left behind. */
export async function openSpool<T>(dir: string, options: SpoolOptions = {}): Promise<Spool<T>> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_SPOOL_BYTES;
  const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  if (!(maxBytes > 0)) throw new SpoolError(`Spool maxBytes ${maxBytes} must be > 0`);
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new SpoolError(`Cannot create spool directory ${dir}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const segments: Segment[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const m = SEGMENT.exec(entry.name);
    if (!m || !entry.isFile) continue;
    const path = `${dir}/${entry.name}`;
    const size = (await Deno.stat(path)).size;
    segments.push({ n: Number(m[1]), path, size, lines: -1 });
  }
  segments.sort((a, b) => a.n - b.n);
  let cursor = { segment: segments[0]?.n ?? 0, line: 0 };
  try {
    const c = JSON.parse(await Deno.readTextFile(`${dir}/cursor.json`));
    if (Number.isInteger(c?.segment) && Number.isInteger(c?.line)) cursor = c;
  } catch { /* no cursor yet: start at the oldest segment */ }
  // Drop segments the cursor has passed (deleted late by a crash).
  while (segments.length > 0 && segments[0].n < cursor.segment) {
    await Deno.remove(segments.shift()!.path).catch(() => {});
  }
  if (segments.length > 0 && segments[0].n > cursor.segment) {
    cursor = { segment: segments[0].n, line: 0 };
  }

  let skipped = 0;
  let pending = 0;
  // Head segment cache: its parsed records from `headOffset` on.
  let head: { n: number; records: T[] } | undefined;
  for (const s of segments) {
    const { records, skipped: bad } = parseSegment<T>(await Deno.readTextFile(s.path));
    s.lines = records.length;
    skipped += bad;
    pending += s.n === cursor.segment ? Math.max(0, records.length - cursor.line) : records.length;
  }
  let nextN = Math.max(segments.at(-1)?.n ?? 0, cursor.segment) + 1;
  if (!segments.some((x) => x.n === cursor.segment)) {
    cursor = { segment: segments[0]?.n ?? nextN, line: 0 };
  }
  let current: { seg: Segment; file: Deno.FsFile } | undefined;
  const serial = serialQueue();
  const total = () => segments.reduce((s, x) => s + x.size, 0);

  let cursorError: Error | undefined;
  /** Saves the cursor; a failure is remembered (the next save retries), not thrown. */
  async function writeCursor(): Promise<void> {
    const tmp = `${dir}/cursor.json.tmp`;
    try {
      await Deno.writeTextFile(tmp, JSON.stringify(cursor));
      await Deno.rename(tmp, `${dir}/cursor.json`);
      cursorError = undefined;
    } catch (e) {
      cursorError = e as Error;
    }
  }

  /** What an append may have to undo: the current segment as it was, and the next number. */
  interface AppendStart {
    current: { seg: Segment; file: Deno.FsFile } | undefined;
    size: number;
    lines: number;
    segments: number;
    nextN: number;
    pending: number;
  }

  /**
   * Undoes a failed append: segments it created are removed, the segment it appended to is
   * truncated back. A segment that cannot be truncated is retired (closed; no append follows
   * its torn tail) and read up to the lines counted before the append (after a restart, its
   * complete extra lines are read too: records the caller kept, so sent twice, never lost).
   */
  async function undoAppend(start: AppendStart): Promise<void> {
    for (const seg of segments.splice(start.segments)) {
      if (current?.seg === seg) {
        try {
          current.file.close();
        } catch { /* already closed */ }
        current = undefined;
      }
      await Deno.remove(seg.path).catch(() => {});
    }
    nextN = start.nextN;
    pending = start.pending;
    const before = start.current;
    if (!before) return;
    before.seg.size = start.size;
    before.seg.lines = start.lines;
    try {
      // By path: a rollover has closed its handle already (the next append starts a segment).
      await Deno.truncate(before.seg.path, start.size);
    } catch {
      if (current === before) {
        try {
          before.file.close();
        } catch { /* already closed */ }
        current = undefined;
      }
      before.seg.size = await Deno.stat(before.seg.path).then((i) => i.size, () => start.size);
    }
  }

  async function newSegment(): Promise<{ seg: Segment; file: Deno.FsFile }> {
    if (current) current.file.close();
    const seg: Segment = { n: nextN++, path: `${dir}/${segName(nextN - 1)}`, size: 0, lines: 0 };
    const file = await Deno.open(seg.path, { write: true, create: true, append: true });
    segments.push(seg);
    current = { seg, file };
    return current;
  }

  async function loadHead(): Promise<T[]> {
    const s = segments.find((x) => x.n === cursor.segment);
    if (!s) return [];
    if (head?.n !== s.n || head.records.length < s.lines) {
      head = { n: s.n, records: parseSegment<T>(await Deno.readTextFile(s.path)).records };
    }
    return head.records;
  }

  return {
    dir,
    count: () => pending,
    bytes: total,
    skipped: () => skipped,
    append: (records) =>
      serial(async () => {
        let used = total();
        const lines: string[] = [];
        for (const r of records) {
          const line = JSON.stringify(r) + "\n";
          const len = encoder.encode(line).length;
          if (used + len > maxBytes) break;
          used += len;
          lines.push(line);
        }
        const start: AppendStart = {
          current,
          size: current?.seg.size ?? 0,
          lines: current?.seg.lines ?? 0,
          segments: segments.length,
          nextN,
          pending,
        };
        try {
          let i = 0;
          while (i < lines.length) {
            const cur = current && current.seg.size < segmentBytes ? current : await newSegment();
            const chunk: string[] = [];
            let size = 0;
            while (
              i < lines.length && (chunk.length === 0 || cur.seg.size + size < segmentBytes)
            ) {
              chunk.push(lines[i]);
              size += encoder.encode(lines[i]).length;
              i++;
            }
            const bytes = encoder.encode(chunk.join(""));
            let off = 0;
            while (off < bytes.length) off += await cur.file.write(bytes.subarray(off));
            await cur.file.sync();
            cur.seg.size += bytes.length;
            cur.seg.lines += chunk.length;
            pending += chunk.length;
          }
        } catch (e) {
          await undoAppend(start);
          throw new SpoolError(
            `Cannot write ${lines.length} records to the spool in ${dir}: ${
              (e as Error).message
            } (none of them was spooled)`,
            { cause: e },
          );
        }
        return { written: lines.length, refused: records.length - lines.length };
      }),
    peek: (max) =>
      serial(async () => {
        const out: T[] = [];
        let segIdx = segments.findIndex((x) => x.n === cursor.segment);
        let line = cursor.line;
        while (out.length < max && segIdx >= 0 && segIdx < segments.length) {
          const s = segments[segIdx];
          const records = s.n === cursor.segment
            ? await loadHead()
            : parseSegment<T>(await Deno.readTextFile(s.path)).records;
          // A segment retired after a failed append may hold a torn tail past its counted lines.
          const end = Math.min(records.length, s.lines);
          for (let i = line; i < end && out.length < max; i++) out.push(records[i]);
          segIdx++;
          line = 0;
        }
        return out;
      }),
    ack: (n) =>
      serial(async () => {
        let left = n;
        while (left > 0) {
          const s = segments.find((x) => x.n === cursor.segment);
          if (!s) break;
          const take = Math.min(left, s.lines - cursor.line);
          cursor.line += take;
          left -= take;
          pending -= take;
          if (cursor.line >= s.lines && s !== current?.seg) {
            segments.splice(segments.indexOf(s), 1);
            const next = segments.find((x) => x.n > s.n);
            cursor = { segment: next?.n ?? nextN, line: 0 };
            head = undefined;
            await writeCursor();
            await Deno.remove(s.path).catch(() => {});
          } else if (take === 0) {
            break;
          }
        }
        if (current && cursor.segment === current.seg.n && cursor.line >= current.seg.lines) {
          // Everything delivered: retire the current segment so the disk empties.
          const s = current.seg;
          current.file.close();
          current = undefined;
          segments.splice(segments.indexOf(s), 1);
          cursor = { segment: nextN, line: 0 };
          head = undefined;
          await writeCursor();
          await Deno.remove(s.path).catch(() => {});
        } else {
          await writeCursor();
        }
      }),
    close: () =>
      serial(async () => {
        current?.file.close();
        current = undefined;
        await writeCursor();
      }),
    cursorError: () => cursorError,
  };
}

/** Where ingest keeps its spools by default (one directory per topic). */
export const SPOOL_ROOT = ".data/spool";

/** The default spool directory of `topic`. */
export function defaultSpoolDir(topic: string): string {
  return `${SPOOL_ROOT}/${topic}`;
}
