/**
 * Collects the state of every part of the pipeline into one record: Kafka
 * and PostgreSQL reachability, topic end offsets, stored offsets and lag,
 * the aggregator lease and its last progress record, the ingest rate seen
 * on the topic, and the newest windows with their freshness.
 * @module
 */

import { type BaseConfig, ConfigError } from "../common/config.ts";
import { type Kafka, topicOffsets } from "../common/kafka.ts";
import {
  describeKafkaSecurity,
  type KafkaSecurityError,
  kafkaSecurityError,
  kafkaSecurityFromEnv,
} from "../common/kafka_security.ts";
import { redact, redactValue } from "../common/log.ts";
import { databaseError, type Pool } from "../common/pg.ts";
import { checkpointSummary, isLeaseLive } from "../aggregate/kv_layout.ts";
import { readCheckpoint } from "../aggregate/checkpoint.ts";
import { readLease } from "../aggregate/lease.ts";
import { type AggregatorProgress, readProgress } from "../aggregate/progress.ts";
import {
  type LaunchRecord,
  offsetsMismatch,
  readCrash,
  readIdentityMismatch,
  readLaunches,
  unreadOf,
} from "../sensor/mod.ts";

/** One partition's offsets. */
export interface PartitionStatus {
  /** Partition number. */
  partition: number;
  /** Kafka's earliest offset still in the log. */
  startOffset: number;
  /** Kafka's end offset (next offset to be written). */
  endOffset: number;
  /** Offset stored in the KV checkpoint (next to read), or null before the first checkpoint. */
  storedOffset: number | null;
  /** Unread records: end - stored (end - earliest when nothing is stored). */
  lag: number;
  /** Watermark (epoch ms) stored with the checkpoint, or null. */
  watermark: number | null;
}

/** A row of price_windows as shown in status. */
export interface WindowView {
  /** Symbol. */
  symbol: string;
  /** Window length (resolution), ms. */
  windowMs: number;
  /** Window start (ISO). */
  windowStart: string;
  /** Open, high, low, close, average. */
  open: number;
  /** High. */
  high: number;
  /** Low. */
  low: number;
  /** Close. */
  close: number;
  /** Average. */
  avg: number;
  /** Ticks in the window. */
  count: number;
  /** Volume traded in the window (0 without dayVolume). */
  volume: number;
  /** Volume-weighted average price, null when the volume is 0. */
  vwap: number | null;
  /** Final (watermark passed the end). */
  isFinal: boolean;
  /** Last update (ISO). */
  updatedAt: string;
}

/** The windows of one resolution of the topic. */
export interface ResolutionStatus {
  /** Window length, ms. */
  windowMs: number;
  /** Rows in price_windows. */
  total: number;
  /** Final rows. */
  final: number;
  /** End of the newest final window (ISO), or null. */
  finalThrough: string | null;
}

/** A row of late_ticks as shown in status. */
export interface LateView {
  /** Symbol. */
  symbol: string;
  /** Event time (ISO). */
  eventTime: string;
  /** Price. */
  price: number;
  /** The resolutions (ms) that dropped it; null on rows written before schema v2. */
  lateFor: number[] | null;
  /** When it was recorded (ISO). */
  recordedAt: string;
}

/** Everything `tickpipe status` shows. */
export interface PipelineStatus {
  /** When collected (ISO). */
  at: string;
  /** Ticks topic. */
  topic: string;
  /**
   * Kafka reachability; `refused`: Kafka answered but refused this process' TLS or SASL settings
   * (a configuration error, not an outage).
   */
  kafka: {
    brokers: string[];
    reachable: boolean;
    error?: string;
    refused?: boolean;
    /** TLS and SASL in use (protocol, mechanism and user, CA file; never the password), if any. */
    security?: string;
  };
  /** PostgreSQL reachability (URL redacted); `refused`: it refused the configuration. */
  postgres: { url: string; reachable: boolean; error?: string; refused?: boolean };
  /** Whether the ticks topic exists. */
  topicExists: boolean;
  /** Per-partition offsets and lag. */
  partitions: PartitionStatus[];
  /** Total unread records. */
  totalLag: number;
  /** Records in the topic (sum of end - earliest offsets). */
  ticksInTopic: number;
  /** Records in the dead-letter topic. */
  deadLetters: number;
  /** Ticks per second arriving in the topic over the sampling interval (null when not sampled). */
  ingestRatePerSec: number | null;
  /** Aggregator lease (live or expired), or null when none is stored. */
  lease: {
    holder: string;
    pid: number;
    hostname: string;
    acquiredAt: string;
    expiresAt: string;
    live: boolean;
  } | null;
  /** Checkpoint pointer summary, with the engine settings the state was built with. */
  checkpoint: {
    generation: number;
    batchId: number;
    committedAt: string;
    stateBytes: number;
    /** Window resolutions, ms. */
    windows: number[];
    /** Watermark delay, ms. */
    watermarkDelayMs: number;
    /** Open windows in the state. */
    openWindows: number | null;
    /** When idle finalization can close open windows (ISO), or null. */
    finalizeDueAt: string | null;
  } | null;
  /** Last aggregator progress record. */
  progress: AggregatorProgress | null;
  /** The sensor's records: last launch and crash-loop state. */
  sensor: { lastLaunch: LaunchRecord | null; launches: number; consecutiveFailures: number };
  /** Window rows of the topic in PostgreSQL (of `symbols` when given). */
  windows: {
    total: number;
    final: number;
    /** Per resolution, shortest first. */
    byResolution: ResolutionStatus[];
    newest: WindowView[];
    freshnessMs: number | null;
  } | null;
  /** Late ticks of the topic in PostgreSQL (of `symbols` when given). */
  lateTicks: { total: number; newest: LateView[] } | null;
  /**
   * Why the stored offsets are not this topic's log (deleted and recreated, or a wiped broker),
   * or null: the aggregator's own finding, or stored offsets outside the log.
   */
  identityMismatch: string | null;
}

/** Dependencies of {@linkcode collectStatus} (edges passed in). */
export interface StatusDeps {
  /** Kafka client. */
  kafka: Kafka;
  /** PostgreSQL pool. */
  pool: Pool;
  /** Deno KV. */
  kv: Deno.Kv;
  /** Clock. */
  now?: () => number;
  /**
   * Refused TLS settings the Kafka client's sockets saw (createKafka's `onDenied`): the request
   * that failed may only say "Not connected" when the broker's alert ended the socket first.
   */
  kafkaRefused?: () => KafkaSecurityError | undefined;
}

/** Options for {@linkcode collectStatus}. */
export interface StatusOptions {
  /** Sample end offsets twice this far apart to measure the ingest rate (0 = skip). */
  rateSampleMs?: number;
  /** How many newest windows to return. */
  newest?: number;
  /** Only windows of these symbols (default: all). */
  symbols?: string[];
  /**
   * Newest window per symbol and resolution (sorted by symbol, then resolution) instead of the
   * newest windows overall.
   */
  latestPerSymbol?: boolean;
  /** How many newest late ticks to return (default 0). */
  newestLate?: number;
  /** Only final windows in `newest` (the latest complete candles). */
  finalOnly?: boolean;
}

/** Lag of a partition: unread records from the stored offset (or the earliest) to the end (pure). */
export function partitionLag(start: number, end: number, stored: number | null): number {
  return unreadOf({ partition: 0, start, end, stored });
}

/** Collects the pipeline status for `config` from the edges in `deps`. */
export async function collectStatus(
  config: BaseConfig,
  deps: StatusDeps,
  options: StatusOptions = {},
): Promise<PipelineStatus> {
  const now = deps.now ?? Date.now;
  const topic = config.topic;
  const status: PipelineStatus = {
    at: new Date(now()).toISOString(),
    topic,
    kafka: { brokers: config.brokers, reachable: false, ...kafkaSecurityShown() },
    postgres: { url: redact(config.databaseUrl), reachable: false },
    topicExists: false,
    partitions: [],
    totalLag: 0,
    ticksInTopic: 0,
    deadLetters: 0,
    ingestRatePerSec: null,
    lease: null,
    checkpoint: null,
    progress: null,
    sensor: { lastLaunch: null, launches: 0, consecutiveFailures: 0 },
    windows: null,
    lateTicks: null,
    identityMismatch: null,
  };
  const [cp, held, progress, launches, crash, identity] = await Promise.all([
    readCheckpoint(deps.kv, topic),
    readLease(deps.kv, topic),
    readProgress(deps.kv, topic),
    readLaunches(deps.kv, topic),
    readCrash(deps.kv, topic),
    readIdentityMismatch(deps.kv, topic),
  ]);
  const checkpoint = cp?.pointer ?? null;
  if (checkpoint) {
    // A v1 entry comes converted (its snapshot is the base): the summary is the same.
    const sum = checkpointSummary(checkpoint);
    status.checkpoint = {
      generation: sum.generation,
      batchId: sum.batchId,
      committedAt: new Date(sum.committedAt).toISOString(),
      stateBytes: sum.stateBytes,
      windows: [...checkpoint.engine.windows],
      watermarkDelayMs: checkpoint.engine.watermarkDelayMs,
      openWindows: checkpoint.openWindows ?? null,
      finalizeDueAt: checkpoint.finalizeDueAt == null
        ? null
        : new Date(checkpoint.finalizeDueAt).toISOString(),
    };
  }
  if (held) {
    const l = held.lease;
    status.lease = {
      holder: l.holder,
      pid: l.pid,
      hostname: l.hostname,
      acquiredAt: new Date(l.acquiredAt).toISOString(),
      expiresAt: new Date(l.expiresAt).toISOString(),
      live: isLeaseLive(l, now()),
    };
  }
  status.progress = progress;
  status.sensor = {
    lastLaunch: launches.at(-1) ?? null,
    launches: launches.length,
    consecutiveFailures: crash.consecutiveFailures,
  };

  await Promise.all([
    collectKafka(deps, status, checkpoint?.offsets ?? {}, checkpoint?.watermarks ?? {}, {
      rateSampleMs: options.rateSampleMs ?? 0,
      now,
    }),
    collectWindows(deps.pool, status, { ...options, now }),
  ]);
  status.identityMismatch = identity?.message ??
    (status.topicExists
      ? offsetsMismatch(status.partitions.map((p) => ({
        partition: p.partition,
        start: p.startOffset,
        end: p.endOffset,
        stored: p.storedOffset,
      })))
      : null);
  // Everything shown leaves the process: progress records, KV values, error messages and
  // symbols are redacted like log lines (URL and query passwords, PGPASSWORD's value).
  return redactValue(status);
}

async function collectKafka(
  deps: StatusDeps,
  status: PipelineStatus,
  stored: Record<string, number>,
  watermarks: Record<string, number | null>,
  o: { rateSampleMs: number; now: () => number },
): Promise<void> {
  const topic = status.topic;
  const admin = deps.kafka.admin();
  try {
    await admin.connect();
    const topics = await admin.listTopics();
    status.kafka.reachable = true;
    status.topicExists = topics.includes(topic);
    if (status.topicExists) {
      for (const r of await topicOffsets(admin, topic) ?? []) {
        const { start, end } = r;
        const s = stored[String(r.partition)];
        const storedOffset = typeof s === "number" ? s : null;
        const lag = partitionLag(start, end, storedOffset);
        status.partitions.push({
          partition: r.partition,
          startOffset: start,
          endOffset: end,
          storedOffset,
          lag,
          watermark: watermarks[String(r.partition)] ?? null,
        });
        status.totalLag += lag;
        status.ticksInTopic += end - start;
      }
      if (o.rateSampleMs > 0) {
        const before = status.partitions.reduce((n, p) => n + p.endOffset, 0);
        const t0 = o.now();
        await new Promise((r) => setTimeout(r, o.rateSampleMs));
        const after = (await topicOffsets(admin, topic) ?? []).reduce((n, r) => n + r.end, 0);
        status.ingestRatePerSec = Math.round(((after - before) * 1000) / Math.max(1, o.now() - t0));
      }
    }
    if (topics.includes(`${topic}.dlq`)) {
      status.deadLetters = (await topicOffsets(admin, `${topic}.dlq`) ?? [])
        .reduce((n, r) => n + r.end - r.start, 0);
    }
  } catch (e) {
    const refused = kafkaSecurityError(e, status.kafka.brokers) ?? deps.kafkaRefused?.();
    if (refused !== undefined) status.kafka.refused = true;
    status.kafka.error = redact((refused ?? e as Error).message);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** This process' Kafka security settings as status shows them (nothing for plain TCP). */
function kafkaSecurityShown(): { security?: string } {
  const security = kafkaSecurityFromEnv();
  return security.protocol === "PLAINTEXT" ? {} : { security: describeKafkaSecurity(security) };
}

async function collectWindows(
  pool: Pool,
  status: PipelineStatus,
  o: StatusOptions & { now: () => number },
): Promise<void> {
  const symbols = o.symbols?.length ? o.symbols : null;
  const where = `topic = $1 AND ($2::text[] IS NULL OR symbol = ANY($2::text[]))`;
  const ms = (col: string) => `(extract(epoch FROM ${col}) * 1000)::bigint`;
  try {
    const totals = await pool.query<
      { wl: string; total: string; final: string; newest: Date | null; through: Date | null }
    >(
      `SELECT ${ms("window_length")} AS wl, count(*) AS total,
              count(*) FILTER (WHERE is_final) AS final, max(updated_at) AS newest,
              max(window_end) FILTER (WHERE is_final) AS through
         FROM price_windows WHERE ${where}
        GROUP BY window_length ORDER BY window_length`,
      [status.topic, symbols],
    );
    const newestWhere = o.finalOnly ? `${where} AND is_final` : where;
    const cols = `symbol, ${ms("window_length")} AS wl, window_start, open_price, high_price,
              low_price, close_price, avg_price, tick_count, volume, vwap, is_final, updated_at`;
    const rows = o.latestPerSymbol
      ? await pool.query(
        `SELECT * FROM (
           SELECT DISTINCT ON (symbol, window_length) ${cols} FROM price_windows
            WHERE ${newestWhere}
            ORDER BY symbol, window_length, window_start DESC) latest
          ORDER BY symbol, wl LIMIT $3`,
        [status.topic, symbols, o.newest ?? 10],
      )
      : await pool.query(
        `SELECT ${cols} FROM price_windows WHERE ${newestWhere}
          ORDER BY window_start DESC, symbol, window_length LIMIT $3`,
        [status.topic, symbols, o.newest ?? 10],
      );
    const late = await pool.query<{ total: string }>(
      `SELECT count(*) AS total FROM late_ticks WHERE ${where}`,
      [status.topic, symbols],
    );
    const newestLate = (o.newestLate ?? 0) > 0
      ? (await pool.query(
        `SELECT symbol, event_time, price, recorded_at,
                (SELECT array_agg((extract(epoch FROM l) * 1000)::bigint ORDER BY l)
                   FROM unnest(late_for) l) AS late_for
           FROM late_ticks WHERE ${where}
          ORDER BY recorded_at DESC, kafka_partition, kafka_offset DESC LIMIT $3`,
        [status.topic, symbols, o.newestLate],
      )).rows
      : [];
    status.postgres.reachable = true;
    const byResolution = totals.rows.map((t) => ({
      windowMs: Number(t.wl),
      total: Number(t.total),
      final: Number(t.final),
      finalThrough: t.through ? t.through.toISOString() : null,
    }));
    const newestUpdate = totals.rows.reduce<number | null>(
      (m, t) => t.newest === null ? m : Math.max(m ?? -Infinity, t.newest.getTime()),
      null,
    );
    status.windows = {
      total: byResolution.reduce((n, r) => n + r.total, 0),
      final: byResolution.reduce((n, r) => n + r.final, 0),
      byResolution,
      freshnessMs: newestUpdate === null ? null : Math.max(0, o.now() - newestUpdate),
      newest: rows.rows.map((r) => ({
        symbol: r.symbol,
        windowMs: Number(r.wl),
        windowStart: (r.window_start as Date).toISOString(),
        open: r.open_price,
        high: r.high_price,
        low: r.low_price,
        close: r.close_price,
        avg: r.avg_price,
        count: Number(r.tick_count),
        volume: r.volume,
        vwap: r.vwap,
        isFinal: r.is_final,
        updatedAt: (r.updated_at as Date).toISOString(),
      })),
    };
    status.lateTicks = {
      total: Number(late.rows[0].total),
      newest: newestLate.map((r) => ({
        symbol: r.symbol,
        eventTime: (r.event_time as Date).toISOString(),
        price: r.price,
        lateFor: r.late_for === null ? null : (r.late_for as string[]).map(Number),
        recordedAt: (r.recorded_at as Date).toISOString(),
      })),
    };
  } catch (e) {
    // Credentials, a database, TLS the server refuses: a configuration error, not an outage.
    const refused = databaseError(e, status.postgres.url);
    if (refused instanceof ConfigError) status.postgres.refused = true;
    status.postgres.error = redact((refused instanceof ConfigError ? refused : e as Error).message);
  }
}

function fmtTime(ms: number | null): string {
  return ms === null ? "-" : new Date(ms).toISOString().slice(11, 19);
}

function fmtNum(n: number): string {
  return Math.abs(n) >= 1000 ? n.toFixed(2) : n.toPrecision(6).replace(/\.?0+$/, "");
}

/** Window length as text: 60000 → "1m" (pure). */
export function fmtResolution(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** Volume as short text: 950, 12.3k, 4.56M, 1.2B (pure). */
export function fmtVolume(v: number): string {
  const a = Math.abs(v);
  if (a < 1000) return String(Math.round(v));
  if (a < 1e6) return `${(v / 1e3).toPrecision(3)}k`;
  if (a < 1e9) return `${(v / 1e6).toPrecision(3)}M`;
  return `${(v / 1e9).toPrecision(3)}B`;
}

/** A window's start as shown: HH:MM, or HH:MM:SS below a minute's resolution (pure). */
export function fmtWindowStart(w: Pick<WindowView, "windowStart" | "windowMs">): string {
  return w.windowStart.slice(11, (w.windowMs ?? 60_000) % 60_000 === 0 ? 16 : 19);
}

/** Renders windows as a compact candle table: one line per window, with its resolution. */
export function renderCandles(windows: WindowView[]): string {
  const head = "symbol       len  window    open        high        low         close       " +
    "vwap        volume   ticks final";
  const lines = windows.map((w) =>
    [
      w.symbol.slice(0, 12).padEnd(12),
      fmtResolution(w.windowMs).padEnd(4),
      fmtWindowStart(w).padEnd(9),
      ...[w.open, w.high, w.low, w.close].map((v) => fmtNum(v).padEnd(11)),
      (w.vwap === null || w.vwap === undefined ? "-" : fmtNum(w.vwap)).padEnd(11),
      fmtVolume(w.volume ?? 0).padStart(7),
      String(w.count).padStart(7),
      w.isFinal ? "yes" : "no",
    ].join(" ")
  );
  return [head, ...lines].join("\n");
}

/**
 * Renders the newest window of each symbol at each of `resolutions` side by side: one line per
 * symbol, one column group (start, close, volume, VWAP, ticks, open/final) per resolution. When
 * that is wider than `width`, one table per resolution instead (pure).
 */
export function renderCandlesSideBySide(
  windows: WindowView[],
  options: { resolutions: number[]; width?: number },
): string {
  const { resolutions } = options;
  const symbols = [...new Set(windows.map((w) => w.symbol))].sort();
  const at = (sym: string, r: number) => windows.find((w) => w.symbol === sym && w.windowMs === r);
  const startWidth = Math.max(5, ...windows.map((w) => fmtWindowStart(w).length));
  const GROUP = startWidth + 1 + 10 + 1 + 7 + 1 + 10 + 1 + 5 + 1 + 5;
  const cell = (w: WindowView | undefined) =>
    w === undefined ? "".padEnd(GROUP) : [
      fmtWindowStart(w).padEnd(startWidth),
      fmtNum(w.close).padStart(10),
      fmtVolume(w.volume ?? 0).padStart(7),
      (w.vwap === null || w.vwap === undefined ? "-" : fmtNum(w.vwap)).padStart(10),
      String(w.count).padStart(5),
      w.isFinal ? "final" : "open ",
    ].join(" ");
  const groupHead = (r: number) => `${fmtResolution(r)} windows `.padEnd(GROUP, "-");
  const colHead = [
    "start".padEnd(startWidth),
    "close".padStart(10),
    "volume".padStart(7),
    "vwap".padStart(10),
    "ticks".padStart(5),
    "",
  ].join(" ").padEnd(GROUP);
  const lines = [
    "".padEnd(12) + " " + resolutions.map(groupHead).join("  "),
    "symbol".padEnd(12) + " " + resolutions.map(() => colHead).join("  "),
    ...symbols.map((sym) =>
      sym.slice(0, 12).padEnd(12) + " " + resolutions.map((r) => cell(at(sym, r))).join("  ")
    ),
  ].map((l) => l.trimEnd());
  const wide = Math.max(...lines.map((l) => l.length));
  if (options.width === undefined || wide <= options.width || resolutions.length < 2) {
    return lines.join("\n");
  }
  return resolutions.map((r) =>
    renderCandlesSideBySide(windows.filter((w) => w.windowMs === r), { resolutions: [r] })
  ).join("\n");
}

/** One line per resolution: rows, final rows and how far they are final (pure). */
export function renderResolutions(r: ResolutionStatus[]): string {
  if (r.length === 0) return "none yet";
  return r.map((x) =>
    `${fmtResolution(x.windowMs)}: ${x.total} (${x.final} final${
      x.finalThrough ? ` through ${x.finalThrough.slice(11, 19)}` : ""
    })`
  ).join(", ");
}

/** One late tick as text: symbol, event time, price and the resolutions that dropped it. */
export function renderLate(l: LateView): string {
  return `${l.symbol} at ${l.eventTime.slice(11, 19)} (${fmtNum(l.price)}) late for ${
    l.lateFor === null ? "its window" : l.lateFor.map(fmtResolution).join(",")
  }`;
}

/** Formats a duration in ms as "850ms", "12.3s", "4m05s" or "2h03m" (pure). */
export function fmtAge(ms: number | null): string {
  if (ms === null) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

/** One-word aggregator state: running (live lease), stopped (expired lease) or idle (none). */
export function aggregatorState(s: PipelineStatus): "running" | "lease expired" | "idle" {
  if (s.lease === null) return "idle";
  return s.lease.live ? "running" : "lease expired";
}

/** The lowest watermark over the partitions (epoch ms), or null (pure). */
export function minWatermark(s: PipelineStatus): number | null {
  const wm = s.partitions.map((p) => p.watermark).filter((w): w is number => w !== null);
  return wm.length ? Math.min(...wm) : null;
}

/** Renders a status record as one human-readable screen. */
export function renderStatus(s: PipelineStatus): string {
  const out: string[] = [];
  const at = Date.parse(s.at);
  out.push(`tickpipe status at ${s.at}  topic ${s.topic}`);
  out.push(
    `kafka      ${s.kafka.reachable ? "up  " : s.kafka.refused ? "REFUSED" : "DOWN"} ${
      s.kafka.brokers.join(",")
    }${s.kafka.security ? ` [${s.kafka.security}]` : ""}${
      s.kafka.error ? `  (${s.kafka.error})` : ""
    }`,
  );
  out.push(
    `postgres   ${
      s.postgres.reachable ? "up  " : s.postgres.refused ? "REFUSED" : "DOWN"
    } ${s.postgres.url}${s.postgres.error ? `  (${s.postgres.error})` : ""}`,
  );
  if (s.identityMismatch !== null) {
    out.push(
      `IDENTITY   MISMATCH: the stored offsets are not this topic's log (${s.identityMismatch}); ` +
        `the aggregator stops with exit 4 and the sensor does not launch it: ` +
        `"deno task offsets reset --to earliest --yes" starts over, keeping the watermarks`,
    );
  }
  if (s.kafka.reachable && !s.topicExists) {
    out.push(`ticks      topic ${s.topic} does not exist yet (ingest creates it)`);
  } else {
    out.push(
      `ticks      ${s.ticksInTopic} in topic, ${s.deadLetters} dead letters` +
        (s.ingestRatePerSec === null ? "" : `, ${s.ingestRatePerSec}/s arriving`) +
        `, lag ${s.totalLag}`,
    );
  }
  if (s.partitions.length) {
    out.push("  partition  earliest       end    stored       lag  watermark");
    for (const p of s.partitions) {
      out.push(
        `  ${String(p.partition).padStart(9)}  ${String(p.startOffset).padStart(8)}  ${
          String(p.endOffset).padStart(8)
        }  ${String(p.storedOffset ?? "-").padStart(8)}  ${String(p.lag).padStart(8)}  ${
          fmtTime(p.watermark)
        }`,
      );
    }
  }
  out.push(
    s.lease
      ? `aggregator ${
        s.lease.live ? "RUNNING" : "lease expired"
      }: pid ${s.lease.pid} on ${s.lease.hostname}, up ${
        fmtAge(at - Date.parse(s.lease.acquiredAt))
      }, lease until ${s.lease.expiresAt.slice(11, 19)}`
      : "aggregator not running",
  );
  if (s.checkpoint) {
    const c = s.checkpoint;
    out.push(
      `checkpoint generation ${c.generation}, batch ${c.batchId}, ${
        fmtAge(at - Date.parse(c.committedAt))
      } ago, ${c.stateBytes} bytes of state`,
    );
    out.push(
      `engine     windows ${c.windows.map(fmtResolution).join(",")}, watermark ${
        fmtResolution(c.watermarkDelayMs)
      }` +
        (c.openWindows === null ? "" : `, ${c.openWindows} open windows`) +
        (c.finalizeDueAt === null
          ? ""
          : `, idle finalization due ${c.finalizeDueAt.slice(11, 19)}`),
    );
  } else out.push("checkpoint none yet");
  if (s.progress) {
    const p = s.progress;
    out.push(
      `progress   batch ${p.batchId} (${p.reason}) at ${
        p.timestamp.slice(11, 19)
      }: ${p.inputRows} rows` +
        ` (${p.invalidRows} invalid, ${p.rowsPerSecond}/s), ${p.windowsUpdated} windows updated,` +
        ` ${p.windowsFinalized} finalized, ${p.lateDropped} late, ${p.openWindows} open`,
    );
  }
  if (s.sensor.lastLaunch) {
    const l = s.sensor.lastLaunch;
    out.push(
      `sensor     last launch ${fmtAge(at - l.launchedAt)} ago (pid ${l.pid}, ${
        l.exitCode === null ? "running or not awaited" : `exit ${l.exitCode}`
      }), ${s.sensor.consecutiveFailures} consecutive failures`,
    );
  }
  if (s.windows) {
    out.push(
      `windows    ${s.windows.total} rows (${s.windows.final} final), newest update ${
        s.windows.freshnessMs === null ? "-" : `${fmtAge(s.windows.freshnessMs)} ago`
      }`,
    );
    if (s.windows.byResolution.length) {
      out.push(`  by length ${renderResolutions(s.windows.byResolution)}`);
    }
  }
  if (s.lateTicks) {
    out.push(
      `late ticks ${s.lateTicks.total} in late_ticks` +
        (s.lateTicks.newest.length ? `, newest: ${renderLate(s.lateTicks.newest[0])}` : ""),
    );
  }
  if (s.windows?.newest.length) out.push(renderCandles(s.windows.newest));
  return out.join("\n");
}
