"""Operating the pipeline: topics, budgets (signed when a key is set) and how far each
consumer group has got."""
