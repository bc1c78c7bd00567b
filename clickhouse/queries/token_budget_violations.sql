-- answers: Which features exceed their context budgets, in which segment, how often?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- A growing count for one segment is the sign of a prompt regression growing context.
SELECT
    tenant_id,
    feature,
    segment,
    count() AS violations,
    sum(input_tokens) AS input_tokens
FROM usage_events FINAL
ARRAY JOIN token_budget_violations AS segment
WHERE ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
GROUP BY tenant_id, feature, segment
ORDER BY violations DESC, tenant_id, feature, segment
