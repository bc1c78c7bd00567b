-- answers: Spend per tenant in its budget window, with a linear forecast to the window end
-- param now DateTime64(3) = now
-- The limit and window come from each tenant scope's latest budget signal; spend is the
-- committed usage inside that window; forecast = spend / elapsed share of the window, in
-- integer nano-USD (spend x window seconds, intDiv elapsed seconds, in Int128 so the product
-- cannot wrap; a forecast past Int64 reads as its largest value).
WITH latest AS
(
    SELECT tenant_id, argMax(limit_nusd, issued_at) AS lim,
           argMax(window_start, issued_at) AS w_start,
           argMax(window_end, issued_at) AS w_end,
           argMax(state, issued_at) AS last_state
    FROM signals FINAL
    WHERE feature = ''
    GROUP BY tenant_id
    HAVING lim > 0
)
SELECT
    l.tenant_id AS tenant_id,
    l.last_state AS state,
    l.lim AS limit_nusd,
    s.spend_nusd AS spend_nusd,
    round(s.spend_nusd / l.lim, 4) AS burn,
    toInt64(least(intDiv(toInt128(s.spend_nusd) * dateDiff('second', l.w_start, l.w_end),
                         greatest(dateDiff('second', l.w_start, {now:DateTime64(3)}), 1)),
                  9223372036854775807)) AS forecast_nusd,
    forecast_nusd >= l.lim AS will_exhaust
FROM latest AS l
INNER JOIN
(
    SELECT u.tenant_id AS tenant_id, sum(ifNull(u.cost_nusd, 0)) AS spend_nusd
    FROM usage_events AS u FINAL
    INNER JOIN latest AS w ON u.tenant_id = w.tenant_id
    WHERE u.ts >= w.w_start AND u.ts < w.w_end
    GROUP BY u.tenant_id
) AS s ON l.tenant_id = s.tenant_id
ORDER BY burn DESC, tenant_id
