-- answers: How much did exact and semantic cache hits save, per tenant?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- A hit costs nothing; what it saved is the table price of the cached answer's tokens.
SELECT
    tenant_id,
    cache,
    count() AS hits,
    sum(ifNull(table_cost_nusd, 0)) AS saved_nusd,
    toDecimal128(saved_nusd, 9) / 1000000000 AS saved_usd
FROM usage_events FINAL
WHERE ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)} AND cache != 'none'
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
GROUP BY tenant_id, cache
ORDER BY saved_nusd DESC, tenant_id, cache
