-- What the providers themselves report (OpenAI's Costs and Usage API pages, Anthropic's
-- Admin API cost and usage reports), loaded by `tokenledger reconcile`, one row per
-- provider x report x day x model x project x line item. Importing a report again
-- replaces its rows. cost_nusd is NULL in usage reports, token columns in cost reports.
CREATE TABLE IF NOT EXISTS provider_costs
(
    provider LowCardinality(String),
    report LowCardinality(String),
    day Date,
    model String,
    project String,
    line_item String,
    cost_nusd Nullable(Int64),
    input_tokens Nullable(UInt64),
    output_tokens Nullable(UInt64),
    cached_input_tokens Nullable(UInt64),
    cache_write_tokens Nullable(UInt64),
    requests Nullable(UInt64),
    source_file String,
    imported_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(imported_at)
-- one row per report line and day: a re-import replaces it (the latest imported_at wins)
ORDER BY (provider, report, day, model, project, line_item);

-- The model a (provider, model name) pair is priced as (the price book's resolution, e.g.
-- openai gpt-4o-2024-08-06 -> openai/gpt-4o), so the ledger's names and the bill's names
-- meet in one key. Written by `tokenledger reconcile` for every pair either side uses.
CREATE TABLE IF NOT EXISTS model_keys
(
    provider String,
    model String,
    model_key String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
-- one key per name pair: the latest resolution wins
ORDER BY (provider, model);
