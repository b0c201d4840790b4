/**
 * Kafka error classification that needs no client: pure, shared by ingest's batcher and the
 * aggregator's dead-letter producer.
 * @module
 */

import { errorChain } from "./error_chain.ts";

/** Kafka error types meaning "too large": such a batch is split, never retried as is. */
export const TOO_LARGE_ERRORS: readonly string[] = ["MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE"];

/** The "too large" Kafka error type of `e` (or of an error it wraps), or undefined. */
export function tooLargeError(e: unknown): string | undefined {
  for (const cur of errorChain(e)) {
    if (typeof cur.type === "string" && TOO_LARGE_ERRORS.includes(cur.type)) return cur.type;
  }
  return undefined;
}
