-- answers: How did cost move over time, split by one dimension (model, feature, route...)?
-- param start DateTime64(3) = -1d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- param dimension Identifier = model
-- param bucket_s UInt32 = 3600
SELECT
    toStartOfInterval(minute, toIntervalSecond({bucket_s:UInt32})) AS time,
    toString({dimension:Identifier}) AS series,
    sum(cost_nusd) AS cost_nusd
FROM spend_by_minute
WHERE minute >= {start:DateTime64(3)} AND minute < {end:DateTime64(3)}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
GROUP BY time, series
ORDER BY time, series
