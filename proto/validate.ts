/**
 * The tick validation rules, shared by ingest (frames) and the aggregator (records): pure
 * functions, no I/O, no clock (the caller passes `nowMs`). Each check returns `null` for a good
 * value or a {@linkcode Reject} with a stable reason and a short detail naming the bad value.
 * @module
 */

/** Reasons of the shared tick rules (symbol, price, time), in ingest's and the aggregator's lists. */
export const TICK_RULE_REASONS = [
  "missing_id",
  "bad_symbol",
  "missing_price",
  "bad_price",
  "missing_time",
  "bad_time",
  "future_time",
] as const;

/** Stable reject reasons of records in the ticks topic (DLQ `reason` header, metric label). */
export const REJECT_REASONS = [
  "not_json",
  "not_object",
  "bad_binary",
  ...TICK_RULE_REASONS,
  "bad_volume",
  "too_large",
  "unknown_format",
] as const;

/** Why a record (or a tick) was rejected; one of REJECT_REASONS. */
export type RejectReason = typeof REJECT_REASONS[number];

/** A rejection: the stable reason and a one-line detail that names the bad value (shortened). */
export interface Reject {
  /** Stable reason. */
  reason: RejectReason;
  /** Human-readable detail; starts with a capital letter, at most a few hundred characters. */
  detail: string;
}

/** Default of the future-time allowance: ticks more than 5 minutes ahead of now are rejected. */
export const DEFAULT_MAX_FUTURE_MS = 300_000;
/** Longest accepted symbol, in code points. */
export const MAX_SYMBOL_LENGTH = 32;

/** Options of the time check. */
export interface TimeCheckOptions {
  /** Wall-clock now, epoch ms (injected). */
  nowMs: number;
  /** Largest accepted `time - nowMs` (default {@linkcode DEFAULT_MAX_FUTURE_MS}). */
  maxFutureMs?: number;
}

/** The fields of a tick that the rules look at (other fields are not checked). */
export interface TickFields {
  /** Symbol. */
  id?: unknown;
  /** Last price. */
  price?: unknown;
  /** Event time, epoch ms. */
  time?: unknown;
  /** Cumulative session volume. */
  dayVolume?: unknown;
}

const SHOW_CHARS = 40;

// deno-lint-ignore no-control-regex -- escaping control characters is the point
const CONTROLS = /[\x00-\x1f\x7f-\x9f]/g;

/** Escapes C0, DEL and C1 control characters as \uXXXX. */
function escapeControls(s: string): string {
  return s.replace(CONTROLS, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/**
 * A value kept as its (shortened) source text, e.g. a JSON value of the wrong type that was
 * never converted: the checks treat it as "not a string / not a number", details show the text.
 */
export class RawValue {
  /** The source text, at most ~40 characters. */
  readonly text: string;
  /** Wraps `text`, shortened, with white-space runs as one space and controls escaped. */
  constructor(text: string) {
    const short = text.length > SHOW_CHARS ? text.slice(0, SHOW_CHARS) + "..." : text;
    this.text = escapeControls(short.replace(/[\t\n\r ]+/g, " ").toWellFormed());
  }
}

/**
 * Renders a value for a detail message: strings as JSON string literals (control characters,
 * DEL, C1 and lone surrogates escaped), other values as JSON or String(); at most ~40
 * characters.
 */
export function showValue(value: unknown): string {
  if (typeof value === "string") {
    // JSON.stringify escapes C0 controls, quotes and lone surrogates; escape DEL and C1 too.
    return escapeControls(
      JSON.stringify(value.length > SHOW_CHARS ? value.slice(0, SHOW_CHARS) + "..." : value),
    );
  }
  if (typeof value === "number") return Object.is(value, -0) ? "-0" : String(value);
  if (value instanceof RawValue) return value.text;
  if (typeof value === "bigint") return `${value}n`;
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = typeof value;
  }
  return s.length > SHOW_CHARS ? s.slice(0, SHOW_CHARS) + "..." : s;
}

/** True for the white space of the `\s` class that is not a control character. */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 ||
    c === 0xfeff;
}

/**
 * The symbol rule: a string of 1-32 code points, well-formed Unicode (no lone surrogates), no
 * control characters (C0, DEL, C1) and no white space at either end. Quotes, inner spaces and
 * any other Unicode are data.
 */
export function isValidSymbol(value: unknown): value is string {
  if (typeof value !== "string") return false;
  const len = value.length;
  if (len === 0 || len > 2 * MAX_SYMBOL_LENGTH) return false;
  let points = 0;
  for (let i = 0; i < len; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return false;
    if (c >= 0xd800 && c <= 0xdfff) {
      if (c >= 0xdc00 || i + 1 === len) return false;
      const d = value.charCodeAt(i + 1);
      if (d < 0xdc00 || d > 0xdfff) return false;
      i++;
    }
    points++;
  }
  return points <= MAX_SYMBOL_LENGTH && !isSpace(value.charCodeAt(0)) &&
    !isSpace(value.charCodeAt(len - 1));
}

/** The symbol check: `missing_id` when undefined, `bad_symbol` when not a valid symbol. */
export function checkSymbol(id: unknown): Reject | null {
  if (id === undefined) return { reason: "missing_id", detail: "Tick has no id (symbol)" };
  if (isValidSymbol(id)) return null;
  return {
    reason: "bad_symbol",
    detail: typeof id === "string"
      ? `Symbol ${
        showValue(id)
      } must be 1-${MAX_SYMBOL_LENGTH} code points of well-formed Unicode without control characters or surrounding spaces`
      : `Symbol ${showValue(id)} is not a string`,
  };
}

/** The price rule on a number: finite and > 0. */
export function isValidPrice(price: number): boolean {
  return price > 0 && price < Infinity;
}

/** The time rule on a number: a safe integer > 0, at most `maxFutureMs` ahead of `nowMs`. */
export function isValidTime(time: number, options: Required<TimeCheckOptions>): boolean {
  // Number.isSafeInteger(time) && time > 0, in a form the JIT inlines.
  return time > 0 && time <= Number.MAX_SAFE_INTEGER && Math.floor(time) === time &&
    time - options.nowMs <= options.maxFutureMs;
}

/** The day-volume rule on a number: finite and >= 0. */
export function isValidDayVolume(dayVolume: number): boolean {
  return dayVolume >= 0 && dayVolume < Infinity;
}

/** The price check: a number (not a string), finite and > 0. */
export function checkPrice(price: unknown, options: { symbol: string }): Reject | null {
  if (typeof price === "number" && isValidPrice(price)) return null;
  if (price === undefined) {
    return { reason: "missing_price", detail: `Tick ${options.symbol} has no price` };
  }
  return {
    reason: "bad_price",
    detail: `Price ${showValue(price)} of ${options.symbol} is not a finite number > 0`,
  };
}

/** The time check: a number, safe integer, > 0 (`bad_time`) and not too far ahead of now. */
export function checkTime(
  time: unknown,
  options: TimeCheckOptions & { symbol: string },
): Reject | null {
  const symbol = options.symbol;
  if (time === undefined) return { reason: "missing_time", detail: `Tick ${symbol} has no time` };
  if (typeof time !== "number" || !Number.isSafeInteger(time) || time <= 0) {
    return {
      reason: "bad_time",
      detail: `Time ${showValue(time)} of ${symbol} is not a positive epoch-ms integer`,
    };
  }
  const ahead = time - options.nowMs;
  if (ahead > (options.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS)) {
    return {
      reason: "future_time",
      detail: `Time ${time} of ${symbol} is ${ahead} ms ahead of now ${options.nowMs}`,
    };
  }
  return null;
}

/** The day-volume check: absent (undefined), or a finite number >= 0. */
export function checkDayVolume(dayVolume: unknown, options: { symbol: string }): Reject | null {
  if (dayVolume === undefined) return null;
  if (typeof dayVolume === "number" && isValidDayVolume(dayVolume)) return null;
  return {
    reason: "bad_volume",
    detail: `Day volume ${showValue(dayVolume)} of ${options.symbol} is not a finite number >= 0`,
  };
}

/**
 * All rules in order (symbol, price, time, day volume): the first failure, or null for a
 * valid tick.
 */
export function validateTick(tick: TickFields, options: TimeCheckOptions): Reject | null {
  const bad = checkSymbol(tick.id);
  if (bad !== null) return bad;
  const symbol = tick.id as string;
  return checkPrice(tick.price, { symbol }) ??
    checkTime(tick.time, { symbol, nowMs: options.nowMs, maxFutureMs: options.maxFutureMs }) ??
    checkDayVolume(tick.dayVolume, { symbol });
}
