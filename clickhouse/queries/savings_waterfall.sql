-- answers: From the counterfactual baseline to the actual bill: what did each lever save?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- Steps telescope exactly (nano-USD): baseline (first generations on each route's
-- reference model, uncached, unbatched, untrimmed) + deduplication (what repeated
-- generations cost at that baseline) + routing (own model instead of the reference) +
-- cache (provider prompt cache, and application cache hits that cost nothing) + context
-- budget (trimmed context) + batch (batch discounts) + prevented retries (retries a claim
-- answered with the first attempt's result: minus the first attempt's cost they would have
-- regenerated) + billing adjustments (costs the caller reported vs the table) = actual.
-- Unpriced events are left out; cost_by counts them.
WITH priced AS
(
    SELECT
        duplicate_generation AS dup,
        cache != 'none' AS hit,
        cost_source = 'replay' AS rep,
        ifNull(counterfactual_cost_nusd, 0) AS cf,
        ifNull(context_saved_nusd, 0) AS ctx,
        ifNull(list_cost_nusd, 0) AS list,
        ifNull(unbatched_cost_nusd, 0) AS unbatched,
        ifNull(table_cost_nusd, 0) AS tab,
        ifNull(cost_nusd, 0) AS cost
    FROM usage_events FINAL
    WHERE ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}
      AND ({tenant:String} = '' OR tenant_id = {tenant:String})
      AND priced AND table_cost_nusd IS NOT NULL
)
SELECT step, amount_nusd, toDecimal128(amount_nusd, 9) / 1000000000 AS amount_usd
FROM
(
    SELECT
        [1, 2, 3, 4, 5, 6, 7, 8, 9] AS ord,
        ['baseline', 'deduplication', 'routing', 'cache', 'context budget', 'batch',
         'prevented retries', 'billing adjustments', 'actual'] AS steps,
        [
            sumIf(cf + ctx, NOT dup),
            sumIf(cf + ctx, dup),
            sum(list - cf),
            sum(unbatched - list) - sumIf(tab, hit),
            -sum(ctx),
            sum(tab - unbatched),
            -sumIf(tab, rep),
            sumIf(cost - tab, NOT hit AND NOT rep),
            sum(cost)
        ] AS amounts
    FROM priced
)
ARRAY JOIN ord, steps AS step, amounts AS amount_nusd
ORDER BY ord
