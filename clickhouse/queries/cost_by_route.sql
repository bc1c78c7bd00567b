-- answers: What did each route cost between start and end (all tenants, or one)?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- Reads the spend_by_minute rollup; cost_usd is exact (Decimal), cost_nusd is nano-USD.
SELECT
    route,
    sum(events) AS events,
    sum(cost_nusd) AS cost_nusd,
    toDecimal128(cost_nusd, 9) / 1000000000 AS cost_usd,
    sum(unpriced_events) AS unpriced_events
FROM spend_by_minute
WHERE minute >= {start:DateTime64(3)} AND minute < {end:DateTime64(3)}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
GROUP BY route
ORDER BY cost_nusd DESC, route
