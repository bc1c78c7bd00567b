-- answers: Which tenant and feature pairs spent the most between start and end?
-- param start DateTime64(3) = -1d
-- param end DateTime64(3) = now
-- param limit UInt32 = 10
SELECT
    tenant_id,
    feature,
    sum(events) AS events,
    sum(cost_nusd) AS cost_nusd,
    toDecimal128(cost_nusd, 9) / 1000000000 AS cost_usd
FROM spend_by_minute
WHERE minute >= {start:DateTime64(3)} AND minute < {end:DateTime64(3)}
GROUP BY tenant_id, feature
ORDER BY cost_nusd DESC, tenant_id, feature
LIMIT {limit:UInt32}
