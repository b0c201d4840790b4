-- Ticks dropped by the watermark, kept for audit. One row per Kafka record.
CREATE TABLE IF NOT EXISTS late_ticks (
  symbol          text             NOT NULL,
  event_time      timestamptz      NOT NULL,
  price           double precision NOT NULL,
  kafka_partition int              NOT NULL,
  kafka_offset    bigint           NOT NULL,
  watermark       timestamptz      NOT NULL,
  recorded_at     timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (kafka_partition, kafka_offset)
);

-- One row per aggregator trigger, like Spark's StreamingQueryProgress.
CREATE TABLE IF NOT EXISTS aggregator_progress (
  run_id      text        NOT NULL,
  batch_id    bigint      NOT NULL,
  topic       text        NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  progress    jsonb       NOT NULL,
  PRIMARY KEY (run_id, batch_id)
);

CREATE INDEX IF NOT EXISTS aggregator_progress_recorded_at_idx ON aggregator_progress (recorded_at DESC);
