-- Grafana's ClickHouse account: it reads every row of tokenledger's tables and writes
-- nothing. Grafana runs whatever SQL a dashboard (or a viewer calling its query API)
-- sends, so the account is the limit: SELECT is its only grant and readonly = 1 forbids
-- writes and setting changes, except the query timeout the Grafana plugin sets on every
-- query. Rendered by `tokenledger access grafana` ({password_sha256} is the SHA-256 of
-- TOKENLEDGER_GRAFANA_PASSWORD, so the password itself is in no statement); re-running it
-- sets the password again.
CREATE ROLE IF NOT EXISTS `tokenledger_grafana_reader` SETTINGS readonly = 1, max_execution_time CHANGEABLE_IN_READONLY;
GRANT SELECT ON `{database}`.* TO `tokenledger_grafana_reader`;
CREATE ROW POLICY IF NOT EXISTS `tl_rows_grafana` ON `{database}`.usage_events, `{database}`.request_events, `{database}`.outcome_events, `{database}`.signals, `{database}`.alerts, `{database}`.spend_by_minute, `{database}`.dlq_events FOR SELECT USING 1 TO `tokenledger_grafana_reader`;
CREATE USER OR REPLACE `tokenledger_grafana` IDENTIFIED WITH sha256_hash BY '{password_sha256}';
GRANT `tokenledger_grafana_reader` TO `tokenledger_grafana`;
ALTER USER `tokenledger_grafana` DEFAULT ROLE `tokenledger_grafana_reader`;
