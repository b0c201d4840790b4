/**
 * The demo's live view (pure): a full screen for terminals and one compact line per refresh
 * when the output is piped.
 * @module
 */

import {
  aggregatorState,
  fmtAge,
  fmtResolution,
  minWatermark,
  type PipelineStatus,
  renderCandlesSideBySide,
  renderLate,
  renderResolutions,
} from "./status.ts";

/** What the dashboard shows besides the status record. */
export interface DashboardView {
  /** Latest status (windows filtered to the demo's symbols). */
  status: PipelineStatus;
  /** Time since the demo started, ms. */
  elapsedMs: number;
  /** Ticks per second arriving in the topic since the previous refresh. */
  ratePerSec: number;
  /** Window rows of the demo's symbols that existed before this run. */
  baselineWindows: number;
  /** Fixed header facts. */
  header: {
    source: string;
    symbols: string[];
    topic: string;
    logPath: string;
    settings: string;
    until: string;
    /** Window resolutions the aggregator runs, ms. */
    resolutions: number[];
    /** Watermark delay, ms. */
    watermarkDelayMs: number;
  };
  /** The simulator's event time now (epoch ms), when known. */
  eventTimeMs?: number | null;
  /** Use ANSI colours. */
  color: boolean;
}

const paint = (on: boolean, code: string) => (s: string) => on ? `\x1b[${code}m${s}\x1b[0m` : s;

/** Formats an integer with thousands separators (pure). */
export function fmtInt(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function fmtClock(ms: number | null): string {
  return ms === null ? "-" : new Date(ms).toISOString().slice(11, 19);
}

/** The full-screen dashboard, at most `width` columns wide. */
export function renderDashboard(v: DashboardView, options: { width?: number } = {}): string {
  const width = Math.max(40, options.width ?? 100);
  const bold = paint(v.color, "1");
  const dim = paint(v.color, "2");
  const green = paint(v.color, "32");
  const yellow = paint(v.color, "33");
  const red = paint(v.color, "31");
  const s = v.status;
  const agg = aggregatorState(s);
  const aggText = agg === "running"
    ? green(`running`) + dim(` pid ${s.lease!.pid}`)
    : agg === "idle"
    ? yellow("idle (the sensor launches it when ticks arrive)")
    : yellow("lease expired");
  const p = s.progress;
  const wm = minWatermark(s);
  const fresh = s.windows?.freshnessMs ?? null;
  const written = Math.max(0, (s.windows?.total ?? 0) - v.baselineWindows);
  const late = s.lateTicks;
  const lines = [
    `${bold("tickpipe demo")}  ${dim("t+" + fmtAge(v.elapsedMs))}  ${dim(v.header.until)}`,
    dim(`simulator ${v.header.source}  symbols ${v.header.symbols.join(",")}`),
    dim(`topic ${v.header.topic}  ${v.header.settings}`),
    "",
    `  ticks in      ${bold(fmtInt(s.ticksInTopic).padStart(9))}  ${
      dim(`${fmtInt(v.ratePerSec)}/s`)
    }`,
    `  dead letters  ${
      (s.deadLetters ? yellow : (x: string) => x)(fmtInt(s.deadLetters).padStart(9))
    }`,
    `  lag           ${fmtInt(s.totalLag).padStart(9)}  ${dim("unread ticks in Kafka")}`,
    `  aggregator    ${aggText}`,
    `  last trigger  ${
      p
        ? `batch ${p.batchId} at ${p.timestamp.slice(11, 19)}: ${fmtInt(p.inputRows)} rows, ` +
          `${p.windowsUpdated} updated, ${p.windowsFinalized} final, ${p.lateDropped} late`
        : dim("-")
    }`,
    `  event clock   ${fmtClock(v.eventTimeMs ?? null)}  ${
      dim(
        `watermark ${fmtClock(wm)} (max event time - ${
          fmtResolution(v.header.watermarkDelayMs)
        }, slowest partition)`,
      )
    }`,
    `  windows       ${bold(fmtInt(s.windows?.total ?? 0).padStart(9))}  ${
      dim(
        `${fmtInt(s.windows?.final ?? 0)} final, ${fmtInt(written)} new this run, updated ${
          fresh === null ? "-" : fmtAge(fresh) + " ago"
        }`,
      )
    }`,
    `  by length     ${renderResolutions(s.windows?.byResolution ?? [])}`,
    `  late ticks    ${
      (late?.total ? yellow : (x: string) => x)(fmtInt(late?.total ?? 0).padStart(9))
    }  ${dim(late?.newest.length ? `newest: ${renderLate(late.newest[0])}` : "in late_ticks")}`,
  ];
  if (!s.kafka.reachable) lines.push(red(`  kafka unreachable: ${s.kafka.error ?? "?"}`));
  if (!s.postgres.reachable) lines.push(red(`  postgres unreachable: ${s.postgres.error ?? "?"}`));
  lines.push(
    "",
    bold(
      `latest candles (event time; ${
        v.header.resolutions.map(fmtResolution).join(" and ")
      } side by side, VWAP "-" without volume)`,
    ),
  );
  const newest = s.windows?.newest ?? [];
  lines.push(
    newest.length
      ? renderCandlesSideBySide(newest, { resolutions: v.header.resolutions, width })
      : dim("  (none yet: the first trigger writes them)"),
  );
  lines.push("", dim(`child logs: ${v.header.logPath}   Ctrl-C stops everything cleanly`));
  // Never wrap: the screen is redrawn in place.
  return lines.flatMap((l) => l.split("\n")).map((l) => clip(l, width)).join("\n");
}

/** Cuts `line` to `width` visible columns, keeping ANSI escapes intact (pure). */
export function clip(line: string, width: number): string {
  let visible = 0;
  let out = "";
  for (let i = 0; i < line.length; i++) {
    if (line[i] === "\x1b") {
      const end = line.indexOf("m", i);
      if (end < 0) break;
      out += line.slice(i, end + 1);
      i = end;
      continue;
    }
    if (visible >= width) continue;
    out += line[i];
    visible++;
  }
  return out;
}

/** One compact line per refresh, for logs and pipes. */
export function renderSummaryLine(v: DashboardView): string {
  const s = v.status;
  return [
    `t+${Math.round(v.elapsedMs / 1000)}s`,
    `ticks ${s.ticksInTopic} (${v.ratePerSec}/s)`,
    `dlq ${s.deadLetters}`,
    `lag ${s.totalLag}`,
    `aggregator ${aggregatorState(s)}`,
    `event clock ${fmtClock(v.eventTimeMs ?? null)}`,
    `watermark ${fmtClock(minWatermark(s))}`,
    `windows ${s.windows?.total ?? 0} (${s.windows?.final ?? 0} final): ${
      renderResolutions(s.windows?.byResolution ?? [])
    }`,
    `late ${s.lateTicks?.total ?? 0}`,
  ].join(" | ");
}

/** What the demo's closing summary shows besides the final status. */
export interface DemoSummaryOptions {
  /** Run time, ms. */
  elapsedMs: number;
  /** The demo's topic. */
  topic: string;
  /** The demo's symbols. */
  symbols: string[];
  /** Window resolutions, ms. */
  resolutions: number[];
  /** Exit codes of the children, as text (`simulate 0, ingest 0, sensor 0`). */
  exits: string;
  /** Output width. */
  width?: number;
}

/**
 * The demo's closing summary (pure): ticks, dead letters, windows per resolution and how far
 * they are final, late ticks, the children's exit codes, then the latest final candles of
 * every resolution side by side, the newest late ticks and where to look next. `s` holds the
 * newest FINAL windows (collectStatus with `finalOnly`).
 */
export function renderDemoSummary(s: PipelineStatus | null, o: DemoSummaryOptions): string {
  const lines = [
    `summary: ${Math.round(o.elapsedMs / 1000)} s, ${
      s?.ticksInTopic ?? 0
    } ticks in topic ${o.topic}, ` +
    `${s?.deadLetters ?? 0} dead letters, lag ${s?.totalLag ?? "?"}; ${
      s?.windows?.total ?? 0
    } windows of ${o.symbols.join(",")} in price_windows (${s?.windows?.final ?? 0} final: ${
      renderResolutions(s?.windows?.byResolution ?? [])
    }); ${s?.lateTicks?.total ?? 0} late ticks in late_ticks; exit codes: ${o.exits}`,
  ];
  const newest = s?.windows?.newest ?? [];
  if (newest.length) {
    lines.push(
      "",
      `latest final candles (event time; ${
        o.resolutions.map(fmtResolution).join(" and ")
      } side by side; VWAP "-": no volume, as FX feeds):`,
      renderCandlesSideBySide(newest, { resolutions: o.resolutions, width: o.width }),
    );
  }
  if (s?.lateTicks?.newest.length) {
    lines.push(
      "",
      "newest late ticks (in late_ticks):",
      ...s.lateTicks.newest.map((l) => `  ${renderLate(l)}`),
    );
  }
  const sym = o.symbols[0] ?? "AAPL";
  lines.push(
    "",
    `more: deno task status --topic ${o.topic}`,
    `      SELECT * FROM candles('${o.topic}', '${sym}', '${
      fmtResolution(o.resolutions[0] ?? 60_000)
    }', now() - interval '1 hour', now());   -- in psql: gap-free candles`,
  );
  return lines.join("\n");
}
