-- answers: What does one successful task cost, per feature (tasks reported by outcome())?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- All calls of a task count, failed ones and retries included: that is what success costs.
SELECT
    u.tenant_id AS tenant_id,
    u.feature AS feature,
    uniqExact(u.task_id) AS tasks,
    uniqExactIf(u.task_id, o.success) AS successful_tasks,
    sum(ifNull(u.cost_nusd, 0)) AS cost_nusd,
    if(successful_tasks = 0, NULL,
       toDecimal128(cost_nusd, 9) / 1000000000 / successful_tasks) AS cost_per_success_usd
FROM usage_events AS u FINAL
INNER JOIN (SELECT tenant_id, task_id, argMax(success, ts) AS success
            FROM outcome_events FINAL GROUP BY tenant_id, task_id) AS o
    ON u.tenant_id = o.tenant_id AND u.task_id = o.task_id
WHERE u.ts >= {start:DateTime64(3)} AND u.ts < {end:DateTime64(3)} AND u.task_id != ''
  AND ({tenant:String} = '' OR u.tenant_id = {tenant:String})
GROUP BY tenant_id, feature
ORDER BY cost_nusd DESC, tenant_id, feature
