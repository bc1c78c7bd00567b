-- Correction rows for spend_by_minute: for the given minutes, what usage_events holds minus
-- what the rollup holds, per key. spend_by_minute sums on merge, so inserting these rows
-- makes the rollup equal the raw table again after an INSERT whose materialized view part
-- was lost (an embedded engine killed between the two writes). The aggregation must stay
-- the same as 0010_spend_by_minute_mv.sql; a test checks both against the raw table.
-- Corrections are normally positive; a negative one wraps in the unsigned columns and
-- still sums to the right value.
-- param minutes Array(DateTime)
INSERT INTO spend_by_minute
SELECT
    minute, tenant_id, feature, route, prompt_version, model,
    r.events - ifNull(s.events, 0),
    r.unpriced_events - ifNull(s.unpriced_events, 0),
    r.failed_events - ifNull(s.failed_events, 0),
    r.input_tokens - ifNull(s.input_tokens, 0),
    r.output_tokens - ifNull(s.output_tokens, 0),
    r.cached_input_tokens - ifNull(s.cached_input_tokens, 0),
    r.cost_nusd - ifNull(s.cost_nusd, 0),
    r.counterfactual_cost_nusd - ifNull(s.counterfactual_cost_nusd, 0),
    r.retry_cost_nusd - ifNull(s.retry_cost_nusd, 0),
    r.cache_saved_nusd - ifNull(s.cache_saved_nusd, 0)
FROM
(
    SELECT
        toStartOfMinute(ts) AS minute, tenant_id, feature, route, prompt_version, model,
        toInt64(count()) AS events,
        toInt64(countIf(cost IS NULL)) AS unpriced_events,
        toInt64(countIf(NOT ok)) AS failed_events,
        toInt64(sum(tokens_in)) AS input_tokens,
        toInt64(sum(tokens_out)) AS output_tokens,
        toInt64(sum(tokens_cached)) AS cached_input_tokens,
        sum(ifNull(cost, 0)) AS cost_nusd,
        sum(ifNull(baseline, 0)) AS counterfactual_cost_nusd,
        sumIf(ifNull(cost, 0), retry) AS retry_cost_nusd,
        sumIf(ifNull(list_cost, 0), cache_hit) AS cache_saved_nusd
    FROM
    (
        SELECT
            ts, tenant_id, feature, route, prompt_version, model,
            success AS ok,
            input_tokens AS tokens_in,
            output_tokens AS tokens_out,
            cached_input_tokens AS tokens_cached,
            cost_nusd AS cost,
            counterfactual_cost_nusd AS baseline,
            table_cost_nusd AS list_cost,
            duplicate_generation AS retry,
            cache != 'none' AS cache_hit
        FROM usage_events FINAL
        WHERE toStartOfMinute(ts) IN {minutes:Array(DateTime)}
    )
    GROUP BY minute, tenant_id, feature, route, prompt_version, model
) AS r
LEFT JOIN
(
    SELECT
        minute, tenant_id, feature, route, prompt_version, model,
        toInt64(sum(events)) AS events,
        toInt64(sum(unpriced_events)) AS unpriced_events,
        toInt64(sum(failed_events)) AS failed_events,
        toInt64(sum(input_tokens)) AS input_tokens,
        toInt64(sum(output_tokens)) AS output_tokens,
        toInt64(sum(cached_input_tokens)) AS cached_input_tokens,
        sum(cost_nusd) AS cost_nusd,
        sum(counterfactual_cost_nusd) AS counterfactual_cost_nusd,
        sum(retry_cost_nusd) AS retry_cost_nusd,
        sum(cache_saved_nusd) AS cache_saved_nusd
    FROM spend_by_minute
    WHERE minute IN {minutes:Array(DateTime)}
    GROUP BY minute, tenant_id, feature, route, prompt_version, model
) AS s USING (minute, tenant_id, feature, route, prompt_version, model)
WHERE r.events != ifNull(s.events, 0) OR r.cost_nusd != ifNull(s.cost_nusd, 0)
   OR r.counterfactual_cost_nusd != ifNull(s.counterfactual_cost_nusd, 0)
   OR r.input_tokens != ifNull(s.input_tokens, 0)
