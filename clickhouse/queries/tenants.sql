-- answers: Which tenants have spend between start and end (for pickers and variables)?
-- param start DateTime64(3) = -30d
-- param end DateTime64(3) = now
SELECT DISTINCT tenant_id
FROM spend_by_minute
WHERE minute >= {start:DateTime64(3)} AND minute < {end:DateTime64(3)}
ORDER BY tenant_id
