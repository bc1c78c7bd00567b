"""Step 6 of the worker: anomaly detectors and the alert state machine.

buckets.py keeps the per-minute evidence, detectors.py judges it, onset.py dates a change,
incidents.py turns judgements into one alert per incident, task.py runs them on event-time
ticks.

Every detector works in event time on one-minute buckets kept per scope (tenant, tenant x
feature, tenant x route) in the worker's changelog state, so a replay or a takeover
reproduces them. A minute is judged when the partition's watermark passes its end, on the
events that came before the one that moved it there: alerts are a function of the events
in partition order and the configuration, never of batches or wall time.

Detectors (``DETECTORS``); each alert's summary says what it observed, what it expected
and on how many calls (in dollars and tokens where they apply):

- ``spend_rate`` (tenant, tenant x feature): two minutes of spend (five or ten while they
  hold fewer than ``spend_min_events`` calls), without the two largest calls, against the
  largest of: the median minute of the last 30, the previous hour's mean
  minute, and yesterday's same and next hour (daily seasonality: an ordinary morning ramp
  happened yesterday too). Fires at ``spend_ratio`` times that and at least
  ``spend_min_excess_nusd`` above it; an excess down to ``spend_small_excess_nusd`` fires
  once it has held ``spend_sustain_minutes`` (a small tenant's runaway lasts, a burst does
  not). The alert names the tenant's top feature and model of the window; a feature's rise
  that the tenant's other features share is the tenant's incident.
- ``retry_storm`` (tenant): share of duplicate generations over 5 minutes (widened to 15
  and 30 while quiet) against the lower of the hour before and the tenant's day-long level
  (levels.py: a decayed mean, half-life ``level_half_life_minutes``).
- ``model_mix`` (tenant x route): mean price level of the models used on a route (list cost
  against the route's reference model on the same tokens) over 5 minutes, widened to 15, 30
  and 60 until it holds ``mix_min_events`` priced calls, against the lower of the hour before
  the window and the route's day-long level: a switch to an expensive model, on any volume,
  however long ago it began. A route without calls holds its incident.
- ``context_growth`` (tenant x feature): share of calls with token-budget violations, as
  retry_storm.
- ``budget_burn`` (each budget): the forecast of committed spend for the budget's window
  (yesterday's profile scaled to today when there is one, else the average rate so far, and
  never above the last hour's rate) reaches ``burn_fire_pct`` of the limit; resolves once it
  stays below ``burn_resolve_pct``.

An incident is one alert: ``firing`` once, then ``resolved`` after ``resolve_after`` quiet
minutes measured against the expectation frozen when it fired (an incident does not become
normal by lasting), then a ``cooldown`` before the same detector may fire on that scope
again. It starts at the change point (onset.py: the first minute from which the evidence
departs from the expectation, for model_mix the first minute with the switched model's
calls); the evidence keeps the window it judged. The fingerprint hashes detector, scope
and the minute it fired; alerts are issued at the end of the minute judged: the same on
every worker, batch size and replay.
"""

from __future__ import annotations

from tokenledger.streams.worker.anomalies.config import DETECTORS, DetectorConfig
from tokenledger.streams.worker.anomalies.task import AnomalyTask

__all__ = ["DETECTORS", "AnomalyTask", "DetectorConfig"]
