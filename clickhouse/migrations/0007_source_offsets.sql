-- Where each row came from in Kafka. The sink resumes a partition after the largest offset
-- its table already holds, so a crash between an INSERT and the offset commit never stores
-- a message twice (and the rollups fed by materialized views never count it twice).
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS kafka_partition UInt32 DEFAULT 0, ADD COLUMN IF NOT EXISTS kafka_offset UInt64 DEFAULT 0;
ALTER TABLE request_events ADD COLUMN IF NOT EXISTS kafka_partition UInt32 DEFAULT 0, ADD COLUMN IF NOT EXISTS kafka_offset UInt64 DEFAULT 0;
ALTER TABLE outcome_events ADD COLUMN IF NOT EXISTS kafka_partition UInt32 DEFAULT 0, ADD COLUMN IF NOT EXISTS kafka_offset UInt64 DEFAULT 0;
ALTER TABLE signals ADD COLUMN IF NOT EXISTS kafka_partition UInt32 DEFAULT 0, ADD COLUMN IF NOT EXISTS kafka_offset UInt64 DEFAULT 0;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS kafka_partition UInt32 DEFAULT 0, ADD COLUMN IF NOT EXISTS kafka_offset UInt64 DEFAULT 0;
ALTER TABLE dlq_events ADD COLUMN IF NOT EXISTS kafka_partition UInt32 DEFAULT 0, ADD COLUMN IF NOT EXISTS kafka_offset UInt64 DEFAULT 0;
