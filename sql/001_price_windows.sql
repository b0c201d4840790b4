-- One row per symbol and tumbling window; upserted by the aggregator.
-- (kafka_partition, last_offset) is the row's version: an update only applies
-- when it is newer, so replays after a crash never move a row backwards.
CREATE TABLE IF NOT EXISTS price_windows (
  symbol          text             NOT NULL,
  window_start    timestamptz      NOT NULL,
  window_end      timestamptz      NOT NULL,
  avg_price       double precision NOT NULL,
  open_price      double precision NOT NULL,
  high_price      double precision NOT NULL,
  low_price       double precision NOT NULL,
  close_price     double precision NOT NULL,
  tick_count      bigint           NOT NULL,
  is_final        boolean          NOT NULL DEFAULT false,
  kafka_partition int              NOT NULL,
  last_offset     bigint           NOT NULL,
  updated_at      timestamptz      NOT NULL DEFAULT now(),
  price_sum       double precision NOT NULL,
  first_tick_at   timestamptz      NOT NULL,
  last_tick_at    timestamptz      NOT NULL,
  PRIMARY KEY (symbol, window_start)
);

CREATE INDEX IF NOT EXISTS price_windows_window_start_idx ON price_windows (window_start DESC);
