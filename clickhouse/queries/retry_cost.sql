-- answers: What did repeated generations (same idempotency key, new event) cost per feature, and what did claims prevent?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- Retry cost is real money: a client timeout that retried, an agent loop re-asking.
-- Prevented is money not spent: retries answered from a claim (cost_source 'replay') at
-- the price of the first attempt's tokens, which they would have regenerated.
SELECT
    tenant_id,
    feature,
    countIf(duplicate_generation) AS duplicate_generations,
    sumIf(ifNull(cost_nusd, 0), duplicate_generation) AS retry_cost_nusd,
    toDecimal128(retry_cost_nusd, 9) / 1000000000 AS retry_cost_usd,
    sum(ifNull(cost_nusd, 0)) AS total_cost_nusd,
    countIf(cost_source = 'replay') AS replayed_retries,
    sumIf(ifNull(table_cost_nusd, 0), cost_source = 'replay') AS prevented_nusd,
    toDecimal128(prevented_nusd, 9) / 1000000000 AS prevented_usd
FROM usage_events FINAL
WHERE ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
GROUP BY tenant_id, feature
HAVING duplicate_generations > 0 OR replayed_retries > 0
ORDER BY retry_cost_nusd DESC, prevented_nusd DESC, tenant_id, feature
