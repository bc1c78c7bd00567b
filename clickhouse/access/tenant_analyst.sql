-- A read-only analyst role for one tenant: it sees that tenant's rows and nothing else.
-- Rendered by `tokenledger access grant --tenant T` ({tenant}, {database} and {role} are
-- checked names, never free text) and applied on a ClickHouse server; the embedded engine
-- has no access control. Row policies are permissive: once a table has one, a user that
-- no policy covers sees no rows there, so the platform's own users get `platform.sql`.
CREATE ROLE IF NOT EXISTS `{role}` SETTINGS readonly = 1;
GRANT SELECT ON `{database}`.usage_events TO `{role}`;
GRANT SELECT ON `{database}`.request_events TO `{role}`;
GRANT SELECT ON `{database}`.outcome_events TO `{role}`;
GRANT SELECT ON `{database}`.signals TO `{role}`;
GRANT SELECT ON `{database}`.alerts TO `{role}`;
GRANT SELECT ON `{database}`.spend_by_minute TO `{role}`;
CREATE ROW POLICY IF NOT EXISTS `tl_rows_{tenant}` ON `{database}`.usage_events, `{database}`.request_events, `{database}`.outcome_events, `{database}`.signals, `{database}`.alerts, `{database}`.spend_by_minute, `{database}`.dlq_events FOR SELECT USING tenant_id = '{tenant}' TO `{role}`;
