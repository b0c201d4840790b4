-- Schema v2 (issues 12 and 14): rows belong to a topic and a window length, windows carry
-- volume and VWAP, late ticks name the resolutions that dropped them, and the sink dead-letters
-- the rows PostgreSQL rejects.
--
-- Safe on a table with rows: every ADD COLUMN with a constant default is a catalog-only change
-- (PostgreSQL 11+), and the one UPDATE touches only windows whose length is not 5 minutes (v1's
-- default; v1's --window could set another). The primary key is rebuilt once, under the ACCESS
-- EXCLUSIVE lock the ALTERs take anyway (stop v1 aggregators before migrating: their upsert
-- names the old key). migrate.ts runs this file in one transaction, under its advisory lock, so
-- two processes migrating at once apply it exactly once.

-- price_windows: topic and window length join the key.
ALTER TABLE price_windows ADD COLUMN IF NOT EXISTS topic text NOT NULL DEFAULT 'ticks';
ALTER TABLE price_windows ALTER COLUMN topic DROP DEFAULT;

-- A pure time interval (no day or month part), so that window_start + window_length is exact
-- whatever the session's time zone.
ALTER TABLE price_windows
  ADD COLUMN IF NOT EXISTS window_length interval NOT NULL DEFAULT interval '00:05:00';
UPDATE price_windows
   SET window_length = make_interval(secs => extract(epoch FROM window_end - window_start))
 WHERE window_end - window_start <> interval '00:05:00';
ALTER TABLE price_windows ALTER COLUMN window_length DROP DEFAULT;

ALTER TABLE price_windows ADD COLUMN IF NOT EXISTS volume double precision NOT NULL DEFAULT 0;
ALTER TABLE price_windows ADD COLUMN IF NOT EXISTS pv_sum double precision NOT NULL DEFAULT 0;
ALTER TABLE price_windows ADD COLUMN IF NOT EXISTS vwap double precision NULL;

ALTER TABLE price_windows DROP CONSTRAINT IF EXISTS price_windows_pkey;
ALTER TABLE price_windows
  ADD CONSTRAINT price_windows_pkey PRIMARY KEY (topic, symbol, window_length, window_start);

-- late_ticks: the resolutions (window lengths) that dropped the tick. NULL on rows written
-- before v2 (a v1 run had a single resolution).
ALTER TABLE late_ticks ADD COLUMN IF NOT EXISTS late_for interval[] NULL;

-- rejected_rows: the sink's dead letters, one row per rejected row version. row_key and row_json
-- are JSON text (not jsonb: jsonb cannot hold \u0000, one of the things that gets rows
-- rejected). (kafka_partition, last_offset) is the row's source; NULL for the progress row.
CREATE TABLE IF NOT EXISTS rejected_rows (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  topic           text        NOT NULL,
  table_name      text        NOT NULL,
  row_key         text        NOT NULL,
  row_json        text        NOT NULL,
  sqlstate        text        NULL,
  reason          text        NOT NULL,
  kafka_partition int         NULL,
  last_offset     bigint      NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- A replay rejects the same row version again: this key makes that a no-op. row_key is hashed
-- (a key can be longer than a btree entry allows); the NULL source of the progress row is
-- mapped to -1 so that it takes part in the key too (PostgreSQL 13 has no NULLS NOT DISTINCT).
CREATE UNIQUE INDEX IF NOT EXISTS rejected_rows_version_key ON rejected_rows
  (topic, table_name, md5(row_key), (coalesce(kafka_partition, -1)), (coalesce(last_offset, -1)));
CREATE INDEX IF NOT EXISTS rejected_rows_recorded_at_idx ON rejected_rows (recorded_at DESC);
