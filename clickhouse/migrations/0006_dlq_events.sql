-- Everything rejected anywhere in the pipeline (topic tokenledger.dlq.v1), with raw bytes.
CREATE TABLE IF NOT EXISTS dlq_events
(
    reason       LowCardinality(String),
    detail       String,
    source_topic LowCardinality(String),
    partition    UInt32,
    offset       UInt64,
    key_b64      String,
    raw_b64      String,
    component    LowCardinality(String),
    failed_at    DateTime64(3, 'UTC'),
    tenant_id    String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(failed_at)
-- Operators count by reason, then inspect one source; (topic, partition, offset) is unique
-- for a rejected input, so a replayed rejection collapses.
ORDER BY (reason, source_topic, partition, offset)
TTL toDateTime(failed_at) + INTERVAL 90 DAY
