-- The price steps between the counterfactual baseline and the actual cost, per event, so
-- the savings waterfall telescopes exactly: counterfactual -> list (own model) ->
-- unbatched (provider cache) -> table (batch) -> cost; plus the trimmed-context savings.
ALTER TABLE usage_events
    ADD COLUMN IF NOT EXISTS context_trimmed_tokens UInt32 DEFAULT 0 AFTER processed_at,
    ADD COLUMN IF NOT EXISTS list_cost_nusd Nullable(Int64) AFTER context_trimmed_tokens,
    ADD COLUMN IF NOT EXISTS unbatched_cost_nusd Nullable(Int64) AFTER list_cost_nusd,
    ADD COLUMN IF NOT EXISTS context_saved_nusd Nullable(Int64) AFTER unbatched_cost_nusd;
