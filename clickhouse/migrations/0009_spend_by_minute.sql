-- Spend per minute over every attribution dimension: the rollup behind the dashboards.
-- Fed only by spend_by_minute_mv; summed on merge, so queries always sum() and GROUP BY.
CREATE TABLE IF NOT EXISTS spend_by_minute
(
    minute                   DateTime('UTC'),
    tenant_id                LowCardinality(String),
    feature                  LowCardinality(String),
    route                    LowCardinality(String),
    prompt_version           LowCardinality(String),
    model                    LowCardinality(String),
    events                   UInt64,
    unpriced_events          UInt64,
    failed_events            UInt64,
    input_tokens             UInt64,
    output_tokens            UInt64,
    cached_input_tokens      UInt64,
    cost_nusd                Int64,
    counterfactual_cost_nusd Int64,
    retry_cost_nusd          Int64,
    cache_saved_nusd         Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
-- Tenant first (every dashboard filters by it), then time; the other dimensions complete
-- the key so rows of different features, routes or models never sum together.
ORDER BY (tenant_id, minute, feature, route, prompt_version, model)
TTL minute + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 10000
