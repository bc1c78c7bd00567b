"""Reading the ledger: the analyst query library (clickhouse/queries/*.sql), the report
(terminal and HTML), the Grafana generator and ClickHouse access control."""
