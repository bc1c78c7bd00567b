-- usage_events -> spend_by_minute. Fires once per inserted block; a retried block with the
-- same deduplication token is dropped here too (the sink inserts with
-- deduplicate_blocks_in_dependent_materialized_views = 1), so it never double counts.
-- The inner SELECT renames the money columns so the outer aliases (the target's column
-- names) never shadow a source column inside another aggregate.
CREATE MATERIALIZED VIEW IF NOT EXISTS spend_by_minute_mv TO spend_by_minute AS
SELECT
    toStartOfMinute(ts) AS minute,
    tenant_id,
    feature,
    route,
    prompt_version,
    model,
    count() AS events,
    countIf(cost IS NULL) AS unpriced_events,
    countIf(NOT ok) AS failed_events,
    sum(tokens_in) AS input_tokens,
    sum(tokens_out) AS output_tokens,
    sum(tokens_cached) AS cached_input_tokens,
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
    FROM usage_events
)
GROUP BY minute, tenant_id, feature, route, prompt_version, model
