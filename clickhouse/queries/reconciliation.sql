-- answers: Does the ledger match the provider's own cost and usage reports, per day and model?
-- param start DateTime64(3) = -30d
-- param end DateTime64(3) = now
-- param provider String = ''
-- Whole UTC days from start's through end's. Both sides' model names meet in model_keys
-- (written by `tokenledger reconcile`). Provider columns are NULL when no imported report
-- covers that day and model; unpriced and estimated calls are the ledger's known gaps.
WITH keys AS (
    SELECT provider, model, argMax(model_key, updated_at) AS model_key
    FROM model_keys GROUP BY provider, model
)
SELECT
    day,
    model_key,
    sum(l_calls) AS ledger_calls,
    sum(l_input) AS ledger_input_tokens,
    if(max(p_usage_rows) > 0, sum(p_input), NULL) AS provider_input_tokens,
    sum(l_output) AS ledger_output_tokens,
    if(max(p_usage_rows) > 0, sum(p_output), NULL) AS provider_output_tokens,
    sum(l_cost) AS ledger_cost_nusd,
    if(max(p_cost_rows) > 0, sum(p_cost), NULL) AS provider_cost_nusd,
    ledger_cost_nusd - provider_cost_nusd AS difference_nusd,
    if(provider_cost_nusd > 0, round(difference_nusd * 100 / provider_cost_nusd, 2), NULL)
        AS difference_pct,
    sum(l_unpriced_calls) AS unpriced_calls,
    sum(l_unpriced_tokens) AS unpriced_tokens,
    sum(l_estimated_calls) AS estimated_calls
FROM (
    SELECT
        toDate(u.ts) AS day, k.model_key AS model_key,
        toInt64(count()) AS l_calls, toInt64(sum(u.input_tokens)) AS l_input,
        toInt64(sum(u.output_tokens)) AS l_output, toInt64(sum(ifNull(u.cost_nusd, 0))) AS l_cost,
        toInt64(countIf(NOT u.priced)) AS l_unpriced_calls,
        toInt64(sumIf(u.input_tokens + u.output_tokens, NOT u.priced)) AS l_unpriced_tokens,
        toInt64(countIf(u.estimated)) AS l_estimated_calls,
        toInt64(0) AS p_input, toInt64(0) AS p_output, toInt64(0) AS p_cost,
        toInt64(0) AS p_usage_rows, toInt64(0) AS p_cost_rows
    FROM (
        SELECT ts, provider, model, input_tokens, output_tokens, cost_nusd, priced, estimated
        FROM usage_events FINAL
        WHERE cache = 'none'
          AND toDate(ts) >= toDate({start:DateTime64(3)}) AND toDate(ts) <= toDate({end:DateTime64(3)})
    ) AS u
    INNER JOIN keys AS k ON k.provider = u.provider AND k.model = u.model
    GROUP BY day, model_key
    UNION ALL
    SELECT
        p.day AS day, k.model_key AS model_key,
        toInt64(0), toInt64(0), toInt64(0), toInt64(0), toInt64(0), toInt64(0), toInt64(0),
        toInt64(sum(ifNull(p.input_tokens, 0))), toInt64(sum(ifNull(p.output_tokens, 0))),
        toInt64(sum(ifNull(p.cost_nusd, 0))),
        toInt64(countIf(p.report = 'usage')), toInt64(countIf(p.report = 'cost'))
    FROM (
        SELECT provider, report, day, model, input_tokens, output_tokens, cost_nusd
        FROM provider_costs FINAL
        WHERE day >= toDate({start:DateTime64(3)}) AND day <= toDate({end:DateTime64(3)})
    ) AS p
    INNER JOIN keys AS k ON k.provider = p.provider AND k.model = p.model
    GROUP BY day, model_key
)
WHERE {provider:String} = '' OR startsWith(model_key, concat({provider:String}, '/'))
GROUP BY day, model_key
ORDER BY day, model_key
