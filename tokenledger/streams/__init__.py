"""tokenledger's stream processors, ClickHouse access, local Kafka and the CLI."""
