-- answers: What did each tenant, route, prompt version or model cost between start and end?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- param dimension Identifier = tenant_id
-- dimension: tenant_id, route, prompt_version or model (feature: see cost_by_feature).
-- Reads the spend_by_minute rollup; cost_usd is exact (Decimal), cost_nusd is nano-USD.
SELECT
    toString({dimension:Identifier}) AS value,
    sum(events) AS events,
    sum(cost_nusd) AS cost_nusd,
    toDecimal128(cost_nusd, 9) / 1000000000 AS cost_usd,
    sum(unpriced_events) AS unpriced_events
FROM spend_by_minute
WHERE minute >= {start:DateTime64(3)} AND minute < {end:DateTime64(3)}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
GROUP BY value
ORDER BY cost_nusd DESC, value
