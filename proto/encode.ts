// PricingData encoder built on protobufjs's Writer (varint/zigzag/float/UTF-8 primitives).

import protobuf from "protobufjs";
import {
  FIELDS,
  KIND_DOUBLE,
  KIND_ENUM,
  KIND_FLOAT,
  KIND_SINT64,
  KIND_STRING,
  KIND_WIRE_TYPE,
} from "./_schema.ts";
import { type PricingData, ProtoError } from "./_types.ts";

const INT64_LIMIT = 2 ** 63;
// decode() rounds int64 max (2^63 - 1) to the double 2^63, so 2^63 saturates back to int64 max.
const INT64_MAX = "9223372036854775807";

function badValue(name: string, value: unknown, expected: string): ProtoError {
  let shown: string;
  try {
    shown = typeof value === "string" ? JSON.stringify(value) : String(value);
  } catch {
    shown = typeof value;
  }
  return new ProtoError("value", `Field ${name} must be ${expected}, got ${shown}`);
}

/**
 * Encode a PricingData object to protobuf bytes. Every field that is not undefined is written
 * (zeros included), in field-number order, so decode(encode(x)) deep-equals x for decoded x.
 */
export function encode(data: PricingData): Uint8Array {
  const w = new protobuf.Writer();
  const record = data as Record<string, unknown>;
  for (const [no, name, kind] of FIELDS) {
    const v = record[name];
    if (v === undefined) continue;
    w.uint32((no << 3) | KIND_WIRE_TYPE[kind]);
    switch (kind) {
      case KIND_STRING:
        if (typeof v !== "string" || !v.isWellFormed()) {
          throw badValue(name, v, "a well-formed string");
        }
        w.string(v);
        break;
      case KIND_FLOAT:
        if (typeof v !== "number") throw badValue(name, v, "a number");
        w.float(v);
        break;
      case KIND_DOUBLE:
        if (typeof v !== "number") throw badValue(name, v, "a number");
        w.double(v);
        break;
      case KIND_SINT64:
        if (typeof v !== "number" || !Number.isInteger(v) || v < -INT64_LIMIT || v > INT64_LIMIT) {
          throw badValue(name, v, "an integer in the int64 range");
        }
        w.sint64(v === INT64_LIMIT ? INT64_MAX : v);
        break;
      case KIND_ENUM:
        if (typeof v !== "number" || (v | 0) !== v) throw badValue(name, v, "an int32 enum value");
        w.int32(v);
        break;
    }
  }
  return w.finish();
}
