-- Schema version 3 of usage events. replay_of: a retry answered from a claim names the
-- first attempt's event_id (no model call; cost 0, table_cost_nusd is what it prevented).
-- input_hash / prefix_hash: keyed per tenant, never the text; prefix_tokens: the stable
-- prefix's size; latency_class: interactive or offline. Rows of older events read '', 0
-- and 'interactive'.
ALTER TABLE usage_events
    ADD COLUMN IF NOT EXISTS replay_of String DEFAULT '' AFTER reported_cost_nusd,
    ADD COLUMN IF NOT EXISTS input_hash String DEFAULT '' AFTER replay_of,
    ADD COLUMN IF NOT EXISTS prefix_hash String DEFAULT '' AFTER input_hash,
    ADD COLUMN IF NOT EXISTS prefix_tokens UInt32 DEFAULT 0 AFTER prefix_hash,
    ADD COLUMN IF NOT EXISTS latency_class LowCardinality(String) DEFAULT 'interactive' AFTER prefix_tokens;
