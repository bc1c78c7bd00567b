-- The platform's own role (sink, Grafana's service account, operators): every row.
-- Apply once per database before granting any tenant analyst, then grant it to those users.
CREATE ROLE IF NOT EXISTS `tokenledger_platform`;
GRANT SELECT, INSERT ON `{database}`.* TO `tokenledger_platform`;
CREATE ROW POLICY IF NOT EXISTS `tl_rows_platform` ON `{database}`.usage_events, `{database}`.request_events, `{database}`.outcome_events, `{database}`.signals, `{database}`.alerts, `{database}`.spend_by_minute, `{database}`.dlq_events FOR SELECT USING 1 TO `tokenledger_platform`;
