-- answers: When did each budget scope warn, block and allow again, at what spend?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
SELECT scope, tenant_id, state, reason, spend_nusd, limit_nusd, window_start, window_end,
       issued_at
FROM signals FINAL
WHERE issued_at >= {start:DateTime64(3)} AND issued_at < {end:DateTime64(3)}
  AND ({tenant:String} = '' OR tenant_id = {tenant:String})
ORDER BY issued_at, scope
