"""Step 6 of the worker: anomaly detectors and the alert state machine.

buckets.py keeps the per-minute evidence, detectors.py judges it, incidents.py turns
judgements into one alert per incident, task.py runs them at each batch end.

Every detector works in event time on one-minute buckets kept per scope (tenant, tenant x
feature, tenant x route) in the worker's changelog state, so a replay or a takeover
reproduces them. A minute is evaluated when the partition's watermark passes its end; the
spend-rate detector also looks at the open minute, so a runaway is caught while it runs.

Detectors (``DETECTORS``):

- ``spend_rate`` (tenant, tenant x feature): a minute's spend, without its single largest
  call, against the largest of: the median minute of the last 30, the previous hour's mean
  minute, and yesterday's same and next hour (daily seasonality: an ordinary morning ramp
  happened yesterday too). Fires at ``spend_ratio`` times that and at least
  ``spend_min_excess_nusd`` above it, with ``spend_min_events`` calls in the minute.
- ``retry_storm`` (tenant): share of duplicate generations over 5 minutes against the hour
  before.
- ``model_mix`` (tenant x route): mean price level of the models used on a route (list cost
  against the route's reference model on the same tokens) over 5 minutes against the hour
  before: a switch to an expensive model.
- ``context_growth`` (tenant x feature): share of calls with token-budget violations over 5
  minutes against the hour before: a prompt regression growing context.
- ``budget_burn`` (each budget): the spend forecast for the budget's window (yesterday's
  profile scaled to today when there is one, else the average rate so far) reaches the limit
  before the window ends.

An incident is one alert: ``firing`` once, then ``resolved`` after ``resolve_after`` quiet
minutes measured against the expectation frozen when it fired (an incident does not become
normal by lasting), then a ``cooldown`` before the same detector may fire on that scope
again. The fingerprint hashes detector, scope and start: the same on every worker and replay.
"""

from __future__ import annotations

from streams.worker.anomalies.detectors import DETECTORS, DetectorConfig
from streams.worker.anomalies.task import AnomalyTask

__all__ = ["DETECTORS", "AnomalyTask", "DetectorConfig"]
