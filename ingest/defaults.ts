/**
 * Ingest's defaults, each defined once: the option table (ingest/options.ts) shows and applies
 * them for the CLI, and the library functions fall back to the same constants when called
 * without an option. Import-free, so any module may read it.
 * @module
 */

/** The Yahoo Finance streamer (the product's source). */
export const DEFAULT_SOURCE = "wss://streamer.finance.yahoo.com/?version=2";
/** Symbols ingest subscribes to when none are given. */
export const DEFAULT_SYMBOLS: readonly string[] = ["AAPL", "MSFT", "NVDA", "BTC-USD", "ETH-USD"];
/** Partitions of the topics ingest creates. */
export const DEFAULT_PARTITIONS = 3;
/** Max wait for a producer batch to fill, ms. */
export const DEFAULT_LINGER_MS = 5;
/** Max records per Kafka batch. */
export const DEFAULT_BATCH_SIZE = 5000;
/** Records held in memory before the oldest are spooled. */
export const DEFAULT_MAX_MEMORY_TICKS = 100_000;
/** Disk spool bound, bytes. */
export const DEFAULT_MAX_SPOOL_BYTES = 1024 ** 3;
/** Largest record sent, UTF-8 bytes: below Kafka's default message.max.bytes of 1,048,588. */
export const DEFAULT_MAX_RECORD_BYTES = 1_000_000;
/** Progress line interval, ms. */
export const DEFAULT_PROGRESS_EVERY_MS = 10_000;
/** Reconnect after this long without frames, ms. */
export const DEFAULT_SILENCE_MS = 60_000;
/** At shutdown, how long to wait for Kafka before spooling, ms. */
export const DEFAULT_FLUSH_TIMEOUT_MS = 30_000;
