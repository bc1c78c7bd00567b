-- answers: When did each budget scope warn, block and allow again, at what spend?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- State changes only: the workers re-publish a warn or block state on a heartbeat (with a
-- new issue time), and a re-assertion is not news. A change is a new state, threshold or
-- window for the scope.
SELECT scope, tenant_id, state, reason, spend_nusd, limit_nusd, window_start, window_end,
       issued_at
FROM
(
    SELECT *,
           concat(state, '|', ifNull(toString(threshold_pct), ''), '|', toString(window_start)) AS what,
           lagInFrame(what, 1, '') OVER (PARTITION BY scope ORDER BY issued_at
                                         ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS before
    FROM signals FINAL
    WHERE issued_at < {end:DateTime64(3)}
      AND ({tenant:String} = '' OR tenant_id = {tenant:String})
)
WHERE what != before AND issued_at >= {start:DateTime64(3)}
ORDER BY issued_at, scope
