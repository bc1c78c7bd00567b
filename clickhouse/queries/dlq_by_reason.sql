-- answers: What was rejected into the DLQ between start and end, by reason and component?
-- param start DateTime64(3) = -1d
-- param end DateTime64(3) = now
SELECT reason, component, source_topic, count() AS rejected
FROM dlq_events FINAL
WHERE failed_at >= {start:DateTime64(3)} AND failed_at < {end:DateTime64(3)}
GROUP BY reason, component, source_topic
ORDER BY rejected DESC, reason, component, source_topic
