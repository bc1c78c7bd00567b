-- The caller's own cost of a call (the usage event's cost_nusd), kept beside the cost
-- counted: cost_nusd is the price book's whenever the book prices the call. Rows stored
-- before this column counted the caller's cost exactly where cost_source = 'event', so
-- they read it from there; NULL where the caller sent none.
ALTER TABLE usage_events
    ADD COLUMN IF NOT EXISTS reported_cost_nusd Nullable(Int64)
        DEFAULT if(cost_source = 'event', cost_nusd, NULL) AFTER service_tier;
