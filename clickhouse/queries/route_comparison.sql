-- answers: Side by side per route and model: cost per successful request and success rate.
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param route String = ''
-- The check a new or quantized model must pass before it takes a route's traffic: a lower
-- cost per success with a success rate at least as high.
SELECT
    route,
    model,
    count() AS requests,
    countIf(success) AS successes,
    round(successes / requests, 4) AS success_rate,
    sum(ifNull(cost_nusd, 0)) AS cost_nusd,
    if(successes = 0, NULL, toDecimal128(cost_nusd, 9) / 1000000000 / successes)
        AS cost_per_success_usd
FROM usage_events FINAL
WHERE ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}
  AND ({route:String} = '' OR route = {route:String})
GROUP BY route, model
ORDER BY route, cost_nusd DESC, model
