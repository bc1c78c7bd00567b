"""The ClickHouse sink: every topic into its raw table with idempotent batched inserts,
offsets committed after the rows are stored (service.py drives consumption and commits,
writer.py stores the rows); the client factory (embedded chdb or a server) and the
migrations runner."""
