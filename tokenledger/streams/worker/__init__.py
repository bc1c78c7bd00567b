"""The stream worker, the money path: usage and request events in, enriched usage, budget
signals and alerts out, exactly once on Kafka transactions.

One partition's processing, in the order an event meets it (task.py composes them):
validate.py -> dedup.py -> price.py -> windows.py -> budgets.py -> anomalies/
(usage.py runs the first four for a usage event, requests.py reserves budget for a request
event). engine.py is the poll loop, transactions.py its Kafka transactions and the way
back to the last commit; state.py the changelog-backed state (in memory), store.py the
same in RocksDB, restore.py brings it back on assignment; service.py the
`tokenledger worker` process."""
