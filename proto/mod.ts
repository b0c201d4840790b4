/**
 * Protobuf codecs and the tick rules: Yahoo Finance streamer PricingData (pricing_data.proto),
 * tickpipe's own record value tickpipe.v1.Tick (tick.proto), and the validation rules shared by
 * ingest and the aggregator (validate.ts).
 * @module
 */

export { decode } from "./decode.ts";
export { encode } from "./encode.ts";
export { shortestFloat32 } from "./_float32.ts";
export { type PricingData, ProtoError, type ProtoErrorCode } from "./_types.ts";
export {
  type DecodedTick,
  decodeTick,
  encodeTick,
  encodeTickValue,
  FORMAT_HEADER,
  isUtf8,
  scanTick,
  type TickMessage,
  TickScan,
  type TickValue,
  VALUE_FORMATS,
  type ValueFormat,
} from "./tick.ts";
export {
  checkDayVolume,
  checkPrice,
  checkSymbol,
  checkTime,
  DEFAULT_MAX_FUTURE_MS,
  isValidDayVolume,
  isValidPrice,
  isValidSymbol,
  isValidTime,
  MAX_SYMBOL_LENGTH,
  RawValue,
  type Reject,
  REJECT_REASONS,
  type RejectReason,
  showValue,
  TICK_RULE_REASONS,
  type TickFields,
  type TimeCheckOptions,
  validateTick,
} from "./validate.ts";
