// Public types of the proto folder.

/** Decoded Yahoo PricingData; proto3 JSON names, fields absent on the wire are omitted. */
export interface PricingData {
  id?: string;
  /** float32 rendered as its shortest round-tripping decimal. */
  price?: number;
  /** Event time, epoch milliseconds. */
  time?: number;
  currency?: string;
  exchange?: string;
  /** QuoteType enum value (e.g. 8 = EQUITY, 41 = CRYPTOCURRENCY); unknown values kept. */
  quoteType?: number;
  /** MarketHoursType enum value (0 pre, 1 regular, 2 post, 3 extended; others kept). */
  marketHours?: number;
  changePercent?: number;
  dayVolume?: number;
  dayHigh?: number;
  dayLow?: number;
  change?: number;
  shortName?: string;
  expireDate?: number;
  openPrice?: number;
  previousClose?: number;
  strikePrice?: number;
  underlyingSymbol?: string;
  openInterest?: number;
  /** OptionType enum value (0 CALL, 1 PUT). */
  optionsType?: number;
  miniOption?: number;
  lastSize?: number;
  bid?: number;
  bidSize?: number;
  ask?: number;
  askSize?: number;
  priceHint?: number;
  vol24hr?: number;
  volAllCurrencies?: number;
  fromCurrency?: string;
  lastMarket?: string;
  circulatingSupply?: number;
  marketCap?: number;
}

/** Machine-readable cause of a ProtoError. */
export type ProtoErrorCode =
  | "truncated"
  | "varint"
  | "wire_type"
  | "field_number"
  | "group"
  | "utf8"
  | "value";

/** Raised by decode() on malformed input and by encode() on values the schema cannot hold. */
export class ProtoError extends Error {
  /** Machine-readable cause. */
  readonly code: ProtoErrorCode;
  /** Byte offset in the input where decoding failed (-1 for encode errors). */
  readonly offset: number;

  /** Create an error with a cause code and byte offset. */
  constructor(code: ProtoErrorCode, message: string, offset = -1) {
    super(message);
    this.name = "ProtoError";
    this.code = code;
    this.offset = offset;
  }
}
