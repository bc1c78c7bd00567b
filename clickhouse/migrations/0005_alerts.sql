-- Anomaly alerts as published (topic tokenledger.alerts.v1), firing and resolved.
CREATE TABLE IF NOT EXISTS alerts
(
    fingerprint           String,
    detector              LowCardinality(String),
    severity              LowCardinality(String),
    status                LowCardinality(String),
    scope                 String,
    tenant_id             LowCardinality(String),
    feature               LowCardinality(String),
    summary               String,
    observed              Int64,
    expected              Int64,
    unit                  LowCardinality(String),
    evidence_window_start DateTime64(3, 'UTC'),
    evidence_window_end   DateTime64(3, 'UTC'),
    starts_at             DateTime64(3, 'UTC'),
    ends_at               Nullable(DateTime64(3, 'UTC')),
    issued_at             DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(issued_at)
-- Dashboards list alerts per tenant and detector; fingerprint + status + issued_at is unique.
ORDER BY (tenant_id, detector, fingerprint, status, issued_at)
TTL toDateTime(issued_at) + INTERVAL 400 DAY
