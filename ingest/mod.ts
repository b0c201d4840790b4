/**
 * Public surface of ingest: frame parsing, the simulator, the WebSocket client, the batching
 * producer, the Kafka partitioner, the disk spool and the ingest wiring.
 * @module
 */

export {
  DEFAULT_MAX_FRAME_LENGTH,
  DEFAULT_MAX_FUTURE_MS,
  encodeFrame,
  type EncodeFrameOptions,
  FRAME_REASONS,
  type FrameReason,
  type FrameResult,
  MAX_FIELD_BYTES,
  MAX_SYMBOL_LENGTH,
  parseFrame,
  type ParseFrameOptions,
  type Tick,
  tickKey,
} from "./frame.ts";
export {
  type EventClockOptions,
  eventTimeAt,
  type Expectation,
  type SentFrame,
  type SentKind,
  type Simulator,
  SimulatorError,
  type SimulatorOptions,
  startSimulator,
} from "./simulator.ts";
export {
  connectFeed,
  DEFAULT_SOURCE,
  DEFAULT_SYMBOLS,
  type Feed,
  FeedError,
  type FeedOptions,
  type FeedStats,
  MAX_SYMBOLS_PER_CONNECTION,
  shardSymbols,
  type SocketLike,
  subscribeMessage,
  type TimerHandle,
  type Timers,
} from "./client.ts";
export {
  type Batcher,
  type BatcherOptions,
  type BatcherStats,
  createBatcher,
  DEFAULT_MAX_BATCH_BYTES,
  DEFAULT_MAX_RECORD_BYTES,
  DEFAULT_SPOOL_AFTER_MS,
  fromSpooled,
  type KafkaBatchProducer,
  kafkaSend,
  type OutRecord,
  RECORD_OVERHEAD_BYTES,
  recordBytes,
  type SendBatch,
  type SpooledRecord,
  TOO_LARGE_ERRORS,
  tooLargeError,
  type TooLargeHandler,
  type TooLargeInfo,
  toSpooled,
  valueBytes,
} from "./producer.ts";
export {
  type CachedPartitionerOptions,
  createCachedPartitioner,
  murmur2,
  murmur2String,
  type PartitionerArgs,
  type PartitionerFactory,
  type PartitionInfo,
} from "./partitioner.ts";
export {
  type AppendResult,
  DEFAULT_MAX_SPOOL_BYTES,
  openSpool,
  parseSegment,
  type Spool,
  SpoolError,
  type SpoolOptions,
} from "./spool.ts";
export {
  dlqRecord,
  type Ingest,
  type IngestOptions,
  type IngestStats,
  MAX_DLQ_VALUE_BYTES,
  progressLine,
  type Rejection,
  startIngest,
  tickRecord,
  tooLargeHandler,
} from "./ingest.ts";
