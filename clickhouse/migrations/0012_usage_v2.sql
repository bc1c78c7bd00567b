-- Schema version 2 of usage events: the 1-hour part of cache writes (billed at its own
-- rate) and the provider's service tier (flex, priority, ...; empty is standard).
-- Rows of version 1 events read 0 and ''.
ALTER TABLE usage_events
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens UInt32 DEFAULT 0 AFTER context_saved_nusd,
    ADD COLUMN IF NOT EXISTS service_tier LowCardinality(String) DEFAULT '' AFTER cache_write_1h_tokens;
