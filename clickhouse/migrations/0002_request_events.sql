-- Raw request events (topic tokenledger.requests.v1): the reservation made when a call starts.
CREATE TABLE IF NOT EXISTS request_events
(
    event_id               String,
    request_id             String,
    idempotency_key        String,
    attempt                UInt16,
    ts                     DateTime64(3, 'UTC'),
    tenant_id              LowCardinality(String),
    user_scope             String,
    service                LowCardinality(String),
    feature                LowCardinality(String),
    route                  LowCardinality(String),
    prompt_version         LowCardinality(String),
    model                  LowCardinality(String),
    provider               LowCardinality(String),
    environment            LowCardinality(String),
    estimated_input_tokens UInt32,
    max_output_tokens      UInt32,
    reserved_cost_nusd     Nullable(Int64),
    task_id                String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
-- Same access path as usage_events (tenant, day, feature); event_id last for uniqueness.
ORDER BY (tenant_id, toDate(ts), feature, event_id)
TTL toDateTime(ts) + INTERVAL 400 DAY
