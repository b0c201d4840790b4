// @ts-nocheck: browser code (DOM and the vendored chart library); its pure half is model.js.
/**
 * The dashboard page: listens to /events (server-sent events), keeps the latest snapshot, and
 * draws it: totals, processes, partitions, and per symbol a candlestick chart per resolution
 * (lightweight-charts, served from the project). Data is only ever set as text, never as HTML.
 */
import {
  CandlestickSeries,
  createChart,
  createSeriesMarkers,
  HistogramSeries,
  LineSeries,
} from "../vendor/lightweight-charts.standalone.production.mjs";
import {
  applyUpdate,
  chartData,
  COLORS,
  fmtAge,
  fmtClock,
  fmtPrice,
  fmtResolution,
} from "./model.js";

const $ = (id) => document.getElementById(id);

/** Creates an element with attributes and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const fmtInt = (n) => (n === null || n === undefined ? "-" : Math.round(n).toLocaleString("en"));

let snapshot = null;
let source = null;
/** Charts by `${symbol}\u0000${windowMs}`. */
const charts = new Map();
let layoutKey = "";
const stats = { snapshots: 0, updates: 0, loadId: Math.random().toString(36).slice(2) };
globalThis.__tickpipe = stats;

function setConnection(state, text) {
  document.body.dataset.state = state;
  const el = $("connection");
  el.textContent = text;
  el.className = `badge ${state === "live" ? "ok" : state === "error" ? "bad" : "warn"}`;
}

function showProblem(text) {
  const el = $("problem");
  el.hidden = text === null;
  el.textContent = text ?? "";
}

function stat(label, value, title) {
  return h(
    "div",
    { class: "stat", title },
    h("div", { class: "label" }, label),
    h("div", { class: "value" }, value),
  );
}

function renderSummary(s) {
  const p = s.pipeline;
  const t = p.lastTrigger;
  const health = [
    p.kafka.reachable ? null : `Kafka unreachable: ${p.kafka.error ?? "?"}`,
    p.postgres.reachable && p.postgres.error === null
      ? null
      : `PostgreSQL: ${p.postgres.error ?? "unreachable"}`,
  ].filter((x) => x !== null);
  showProblem(health.length ? health.join("; ") : null);
  $("summary").replaceChildren(
    stat("ticks in topic", fmtInt(p.ticksInTopic)),
    stat("arriving", p.ratePerSec === null ? "-" : `${fmtInt(p.ratePerSec)}/s`),
    stat("lag", fmtInt(p.totalLag), "unread ticks in Kafka"),
    stat("dead letters", fmtInt(p.deadLetters)),
    stat(
      "last trigger",
      t ? `#${t.batchId} ${fmtAge(s.at - t.at)} ago` : "-",
      t
        ? `${t.reason}: ${t.inputRows} rows, ${t.windowsUpdated} updated, ` +
          `${t.windowsFinalized} final, ${t.lateDropped} late`
        : "",
    ),
    stat("windows open", t ? fmtInt(t.openWindows) : "-"),
    stat("checkpoint", p.checkpointAt === null ? "-" : `${fmtAge(s.at - p.checkpointAt)} ago`),
  );
}

function renderProcesses(s) {
  $("processes").tBodies[0].replaceChildren(
    ...s.processes.map((p) =>
      h(
        "tr",
        { "data-process": p.name, "data-state": p.state },
        h("td", {}, p.name),
        h("td", { class: `state-${p.state.replace(/\s+/g, "-")}` }, p.state),
        h("td", {}, p.pid ?? "-"),
        h("td", {}, p.since === null ? "-" : fmtAge(s.at - p.since)),
        h("td", {}, p.starts),
        h("td", { class: "detail" }, p.detail),
      )
    ),
  );
}

function renderPartitions(s) {
  $("partitions").tBodies[0].replaceChildren(
    ...s.partitions.map((p) =>
      h(
        "tr",
        { "data-partition": p.partition, "data-lag": p.lag },
        h("td", {}, p.partition),
        h("td", {}, fmtInt(p.endOffset)),
        h("td", {}, p.storedOffset === null ? "-" : fmtInt(p.storedOffset)),
        h("td", {}, fmtInt(p.lag)),
        h("td", {}, fmtClock(p.watermark)),
      )
    ),
  );
}

function precisionOf(price) {
  if (price === null) return 2;
  const a = Math.abs(price);
  return a >= 100 ? 2 : a >= 1 ? 4 : 6;
}

function newChart(box, symbol, last) {
  const chart = createChart(box, {
    autoSize: true,
    layout: {
      background: { type: "solid", color: "#ffffff" },
      textColor: "#1f2328",
      fontSize: 11,
      // The license's attribution (its NOTICE and a link to tradingview.com) is the page's
      // footer: the logo would inject an inline <style>, which the page's CSP refuses.
      attributionLogo: false,
    },
    grid: { vertLines: { color: "#eef1f4" }, horzLines: { color: "#eef1f4" } },
    rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.24 } },
    timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 2, maxBarSpacing: 28 },
    crosshair: { mode: 0 },
  });
  const precision = precisionOf(last);
  const candle = chart.addSeries(CandlestickSeries, {
    upColor: COLORS.up,
    downColor: COLORS.down,
    borderVisible: true,
    wickUpColor: COLORS.up,
    wickDownColor: COLORS.down,
    priceFormat: { type: "price", precision, minMove: 10 ** -precision },
    title: symbol,
  });
  const vwap = chart.addSeries(LineSeries, {
    color: COLORS.vwap,
    lineWidth: 2,
    priceLineVisible: false,
    lastValueVisible: false,
    crosshairMarkerVisible: false,
  });
  const volume = chart.addSeries(HistogramSeries, {
    priceScaleId: "volume",
    priceFormat: { type: "volume" },
    priceLineVisible: false,
    lastValueVisible: false,
  });
  chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  const markers = createSeriesMarkers(candle, []);
  return { chart, candle, vwap, volume, markers };
}

/** Builds the cards and charts when the symbols or resolutions changed. */
function layout(s) {
  const key = JSON.stringify([s.topic, s.resolutions, s.symbols.map((x) => x.symbol)]);
  if (key === layoutKey) return;
  layoutKey = key;
  for (const c of charts.values()) c.chart.remove();
  charts.clear();
  const pending = [];
  const cards = s.symbols.map((sym) => {
    const boxes = sym.series.map((series) => {
      const box = h("div", { class: "chart-box" });
      const caption = h("div", { class: "chart-caption" });
      const el = h(
        "div",
        { class: "chart", "data-symbol": sym.symbol, "data-window-ms": series.windowMs },
        caption,
        box,
      );
      pending.push({ key: `${sym.symbol}\u0000${series.windowMs}`, el, caption, box, sym });
      return el;
    });
    return h(
      "div",
      { class: "symbol", "data-symbol": sym.symbol },
      h("div", { class: "symbol-head" }),
      h("div", { class: "charts" }, ...boxes),
    );
  });
  $("symbols").replaceChildren(...cards);
  // Charts are created once their boxes are in the page, so they start at their real size.
  for (const p of pending) {
    charts.set(p.key, {
      el: p.el,
      caption: p.caption,
      fitted: false,
      lastT: null,
      ...newChart(p.box, p.sym.symbol, p.sym.lastClose),
    });
  }
}

function renderSymbolHead(sym, card, at) {
  card.dataset.lastClose = sym.lastClose ?? "";
  card.dataset.lastStart = sym.lastStart ?? "";
  card.dataset.late = sym.late;
  card.querySelector(".symbol-head").replaceChildren(
    h("span", { class: "name" }, sym.symbol),
    h("span", { class: "close", title: "close of the latest window" }, fmtPrice(sym.lastClose)),
    h("span", { class: "dim" }, `${fmtInt(sym.late)} late ticks`),
    h(
      "span",
      { class: "dim" },
      sym.lastStart === null ? "no window yet" : `latest window ${fmtClock(sym.lastStart)}`,
    ),
    h("span", { class: "dim" }, `as of ${fmtClock(at)}`),
  );
}

/** Sets a chart's data whole, and fits it the first time or when asked. */
function setAll(entry, data, fit) {
  entry.candle.setData(data.candles);
  entry.vwap.setData(data.vwap);
  entry.volume.setData(data.volume);
  // Show every candle (the range is the dashboard's `bars`); later bars scroll in.
  if (!entry.fitted || fit) entry.chart.timeScale().fitContent();
  entry.fitted = true;
}

/** Draws one chart: whole (`patch` null, or older candles dropped) or just the changed bars. */
function drawSeries(entry, series, patch) {
  const data = chartData(series);
  if (patch === null || patch.from !== null) setAll(entry, data, patch === null);
  else if (patch.upsert.length > 0) {
    const index = new Map(series.candles.map((c, i) => [c.t, i]));
    try {
      for (const c of patch.upsert) {
        const i = index.get(c.t);
        // A bar the chart has is replaced in place; a newer one is appended.
        const replace = entry.lastT !== null && c.t <= entry.lastT;
        entry.candle.update(data.candles[i], replace);
        entry.vwap.update(data.vwap[i], replace);
        entry.volume.update(data.volume[i], replace);
        if (!replace) entry.lastT = c.t;
      }
    } catch (err) {
      // Whatever the chart refused, the whole data is always right.
      console.warn(`tickpipe: redrawing ${series.windowMs} ms chart whole: ${err.message}`);
      setAll(entry, data, false);
    }
  }
  entry.lastT = series.candles.length > 0 ? series.candles.at(-1).t : null;
  entry.markers.setMarkers(data.markers);
  const last = series.candles.at(-1) ?? null;
  const el = entry.el;
  el.dataset.candles = series.candles.length;
  el.dataset.final = series.candles.filter((c) => c.final && !c.filled).length;
  el.dataset.lastClose = last ? last.c : "";
  el.dataset.lastStart = last ? last.t : "";
  el.dataset.late = series.late;
  entry.caption.replaceChildren(
    h("span", { class: "res" }, fmtResolution(series.windowMs)),
    h("span", {}, `close ${fmtPrice(last ? last.c : null)}`),
    h("span", {}, last && last.vwap !== null ? `VWAP ${fmtPrice(last.vwap)}` : "no volume"),
    h("span", {}, `${fmtInt(series.late)} late`),
    h("span", {}, last ? (last.final ? "latest final" : "latest open") : "no window yet"),
  );
}

function render(s, update) {
  $("topic").textContent = `topic ${s.topic}`;
  $("updated").textContent = `updated ${fmtClock(s.at)} UTC`;
  document.body.dataset.at = s.at;
  renderSummary(s);
  renderProcesses(s);
  renderPartitions(s);
  layout(s);
  $("empty").hidden = s.symbols.some((x) => x.lastClose !== null);
  const cards = new Map(
    [...document.querySelectorAll(".symbol")].map((el) => [el.dataset.symbol, el]),
  );
  s.symbols.forEach((sym, i) => {
    renderSymbolHead(sym, cards.get(sym.symbol), s.at);
    sym.series.forEach((series, j) => {
      const entry = charts.get(`${sym.symbol}\u0000${series.windowMs}`);
      drawSeries(entry, series, update ? update.symbols[i].series[j] : null);
    });
  });
}

function connect() {
  source?.close();
  setConnection("connecting", "connecting");
  source = new EventSource("/events");
  source.addEventListener("snapshot", (e) => {
    snapshot = JSON.parse(e.data);
    stats.snapshots++;
    document.body.dataset.snapshots = stats.snapshots;
    render(snapshot, null);
    setConnection("live", "live");
  });
  source.addEventListener("update", (e) => {
    if (snapshot === null) return;
    const update = JSON.parse(e.data);
    try {
      snapshot = applyUpdate(snapshot, update);
    } catch (err) {
      // Made for another snapshot (a missed event): start over with a whole one.
      console.warn(`tickpipe: ${err.message}; reconnecting`);
      connect();
      return;
    }
    stats.updates++;
    document.body.dataset.updates = stats.updates;
    render(snapshot, update);
    setConnection("live", "live");
  });
  source.addEventListener("problem", (e) => {
    showProblem(JSON.parse(e.data).message);
  });
  source.onerror = () => {
    setConnection(
      source.readyState === EventSource.CLOSED ? "error" : "reconnecting",
      "reconnecting",
    );
  };
}

connect();
