-- Budget signals as published (topic tokenledger.signals.v1): the history behind the
-- compacted topic's current state, for the budgets dashboard and burn-down charts.
CREATE TABLE IF NOT EXISTS signals
(
    scope         String,
    tenant_id     LowCardinality(String),
    feature       LowCardinality(String),
    state         LowCardinality(String),
    reason        String,
    spend_nusd    Int64,
    limit_nusd    Int64,
    threshold_pct Nullable(UInt8),
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    issued_at     DateTime64(3, 'UTC'),
    issuer        LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(issued_at)
-- Few tenants, few scopes each; issued_at last orders a scope's history and makes rows unique.
ORDER BY (tenant_id, scope, issued_at, state)
TTL toDateTime(issued_at) + INTERVAL 400 DAY
