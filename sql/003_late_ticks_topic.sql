-- late_ticks are keyed by Kafka coordinates, which are only unique within a topic: add the topic
-- to the key so two topics (or test topics) never shadow each other's late ticks.
ALTER TABLE late_ticks ADD COLUMN IF NOT EXISTS topic text NOT NULL DEFAULT 'ticks';
ALTER TABLE late_ticks DROP CONSTRAINT IF EXISTS late_ticks_pkey;
ALTER TABLE late_ticks ADD PRIMARY KEY (topic, kafka_partition, kafka_offset);
