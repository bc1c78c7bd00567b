-- Remember recent insert blocks so a retried INSERT with the same deduplication token is
-- dropped (the sink sets one per batch). Non-replicated MergeTree needs this window.
ALTER TABLE usage_events MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE request_events MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE outcome_events MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE signals MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE alerts MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE dlq_events MODIFY SETTING non_replicated_deduplication_window = 10000;
