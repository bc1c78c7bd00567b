-- Raw task outcomes (topic tokenledger.outcomes.v1): the denominator of cost per successful task.
CREATE TABLE IF NOT EXISTS outcome_events
(
    event_id        String,
    request_id      String,
    idempotency_key String,
    attempt         UInt16,
    ts              DateTime64(3, 'UTC'),
    tenant_id       LowCardinality(String),
    user_scope      String,
    service         LowCardinality(String),
    feature         LowCardinality(String),
    route           LowCardinality(String),
    prompt_version  LowCardinality(String),
    model           LowCardinality(String),
    provider        LowCardinality(String),
    environment     LowCardinality(String),
    task_id         String,
    success         Bool
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
-- Joined to usage by (tenant_id, task_id); queries filter by tenant and day first.
ORDER BY (tenant_id, toDate(ts), task_id, event_id)
TTL toDateTime(ts) + INTERVAL 400 DAY
