-- Raw priced usage: one row per usage event (topic tokenledger.usage.enriched.v1).
-- Money is integer nano-USD (1 USD = 1e9); NULL cost means "no price known", never $0.
CREATE TABLE IF NOT EXISTS usage_events
(
    event_id                 String,
    request_id               String,
    idempotency_key          String,
    attempt                  UInt16,
    ts                       DateTime64(3, 'UTC'),
    tenant_id                LowCardinality(String),
    user_scope               String,
    service                  LowCardinality(String),
    feature                  LowCardinality(String),
    route                    LowCardinality(String),
    prompt_version           LowCardinality(String),
    model                    LowCardinality(String),
    provider                 LowCardinality(String),
    environment              LowCardinality(String),
    input_tokens             UInt32,
    output_tokens            UInt32,
    cached_input_tokens      UInt32,
    cache_write_tokens       UInt32,
    reasoning_tokens         UInt32,
    cache                    LowCardinality(String),
    batch                    Bool,
    latency_ms               UInt32,
    success                  Bool,
    error                    String,
    estimated                Bool,
    task_id                  String,
    token_budget_violations  Array(LowCardinality(String)),
    cost_nusd                Nullable(Int64),
    priced                   Bool,
    table_cost_nusd          Nullable(Int64),
    cost_source              LowCardinality(String),
    cost_mismatch            Bool,
    pricing_version          LowCardinality(String),
    reference_model          LowCardinality(String),
    counterfactual_cost_nusd Nullable(Int64),
    duplicate_generation     Bool,
    late                     Bool,
    processed_at             DateTime64(3, 'UTC')
)
-- ReplacingMergeTree is the backstop for a replayed batch: the sort key ends in event_id,
-- so two copies of one event collapse on merge (queries that must be exact use FINAL).
ENGINE = ReplacingMergeTree
-- Monthly partitions: spend queries cover days to months; TTL drops whole parts.
PARTITION BY toYYYYMM(ts)
-- Lowest-cardinality columns we always filter on go leftmost: every query is per tenant and
-- time range, most then by feature and model; event_id last makes the key unique per event.
ORDER BY (tenant_id, toDate(ts), feature, model, event_id)
TTL toDateTime(ts) + INTERVAL 400 DAY
