-- answers: Where did callers report a cost that disagrees with the price book, and by how much?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- The ledger and the budgets count the price book's cost whenever it prices a call; the
-- caller's own cost_nusd is kept beside it (reported_cost_nusd). A claimed cost of 0, a
-- client's stale price table, a gateway's negotiated rate: each shows here, both sums exact.
SELECT
    tenant_id,
    service,
    provider,
    model,
    countIf(cost_mismatch) AS mismatched_calls,
    sumIf(ifNull(reported_cost_nusd, 0), cost_mismatch) AS reported_nusd,
    sumIf(ifNull(table_cost_nusd, 0), cost_mismatch) AS book_nusd,
    reported_nusd - book_nusd AS difference_nusd
FROM usage_events FINAL
WHERE ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
GROUP BY tenant_id, service, provider, model
HAVING mismatched_calls > 0
ORDER BY abs(difference_nusd) DESC, tenant_id, service, provider, model
