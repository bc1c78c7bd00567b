-- answers: Which models did calls use that nobody prices, and how many tokens wait for a price?
-- param start DateTime64(3) = -30d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- An unpriced call is never counted as $0: it is stored with cost_nusd NULL. Add the model
-- to the price file (TOKENLEDGER_PRICES) and check it with `tokenledger prices show MODEL`.
SELECT
    provider,
    model,
    count() AS calls,
    uniqExact(tenant_id) AS tenants,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    min(ts) AS first_seen,
    max(ts) AS last_seen
FROM usage_events FINAL
WHERE ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
  AND cache = 'none' AND NOT priced
GROUP BY provider, model
ORDER BY input_tokens + output_tokens DESC, provider, model
