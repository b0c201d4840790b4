// Field table for Yahoo PricingData (see pricing_data.proto), shared by decode.ts and encode.ts.

/** Scalar kind of a PricingData field, as stored in FIELD_KIND. */
export const KIND_STRING = 1;
/** float32, wire type 5. */
export const KIND_FLOAT = 2;
/** float64, wire type 1. */
export const KIND_DOUBLE = 3;
/** zigzag varint, wire type 0. */
export const KIND_SINT64 = 4;
/** int32 varint, wire type 0. */
export const KIND_ENUM = 5;

/** Highest field number defined by the schema. */
export const MAX_FIELD = 33;

/** Protobuf wire type expected for each kind (index = kind). */
export const KIND_WIRE_TYPE: readonly number[] = [-1, 2, 5, 1, 0, 0];

/** Field definitions in field-number order: [number, proto3 JSON name, kind]. */
export const FIELDS: ReadonlyArray<readonly [number, string, number]> = [
  [1, "id", KIND_STRING],
  [2, "price", KIND_FLOAT],
  [3, "time", KIND_SINT64],
  [4, "currency", KIND_STRING],
  [5, "exchange", KIND_STRING],
  [6, "quoteType", KIND_ENUM],
  [7, "marketHours", KIND_ENUM],
  [8, "changePercent", KIND_FLOAT],
  [9, "dayVolume", KIND_SINT64],
  [10, "dayHigh", KIND_FLOAT],
  [11, "dayLow", KIND_FLOAT],
  [12, "change", KIND_FLOAT],
  [13, "shortName", KIND_STRING],
  [14, "expireDate", KIND_SINT64],
  [15, "openPrice", KIND_FLOAT],
  [16, "previousClose", KIND_FLOAT],
  [17, "strikePrice", KIND_FLOAT],
  [18, "underlyingSymbol", KIND_STRING],
  [19, "openInterest", KIND_SINT64],
  [20, "optionsType", KIND_ENUM],
  [21, "miniOption", KIND_SINT64],
  [22, "lastSize", KIND_SINT64],
  [23, "bid", KIND_FLOAT],
  [24, "bidSize", KIND_SINT64],
  [25, "ask", KIND_FLOAT],
  [26, "askSize", KIND_SINT64],
  [27, "priceHint", KIND_SINT64],
  [28, "vol24hr", KIND_SINT64],
  [29, "volAllCurrencies", KIND_SINT64],
  [30, "fromCurrency", KIND_STRING],
  [31, "lastMarket", KIND_STRING],
  [32, "circulatingSupply", KIND_DOUBLE],
  [33, "marketCap", KIND_DOUBLE],
];

/** Kind by field number (0 = unknown field). */
export const FIELD_KIND: Uint8Array = new Uint8Array(MAX_FIELD + 1);
/** proto3 JSON name by field number. */
export const FIELD_NAME: string[] = new Array<string>(MAX_FIELD + 1).fill("");
for (const [no, name, kind] of FIELDS) {
  FIELD_KIND[no] = kind;
  FIELD_NAME[no] = name;
}
