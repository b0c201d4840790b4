/**
 * Yahoo Finance streamer PricingData protobuf codec (schema: pricing_data.proto).
 * @module
 */

export { decode } from "./decode.ts";
export { encode } from "./encode.ts";
export { shortestFloat32 } from "./_float32.ts";
export { type PricingData, ProtoError, type ProtoErrorCode } from "./_types.ts";
