"""Retry budgets and circuit breakers of one partition, published as signed signals.

The partition task feeds every enriched usage event here and, at each batch end, produces
what changed on the signals topic, signed like the budget signals (the worker's key):
guards and the edge read them with the same book. Windows and cool-downs run on event time
(the usage task's watermark); only the issue time and the heartbeat that re-asserts a
standing block or open breaker (so a copied old record is overwritten, as for budgets)
follow the worker's clock.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from tokenledger.contract.call_control import BreakerSignal, RetryBudgetSignal
from tokenledger.streams.admin.signer import Signer, headers_for
from tokenledger.streams.records import Output
from tokenledger.streams.worker.breakers import BreakerConfig, BreakerTracker
from tokenledger.streams.worker.price import Enriched
from tokenledger.streams.worker.retry_budgets import RetryBudgetConfigs, RetryBudgetTracker
from tokenledger.streams.worker.state import State


class CallControl:
    def __init__(
        self,
        state: State,
        configs: RetryBudgetConfigs,
        signals_topic: str,
        signer: Signer | None,
        *,
        heartbeat: timedelta,
        breakers: BreakerConfig | None = None,
    ) -> None:
        self.retries = RetryBudgetTracker(state, configs)
        self.breakers = BreakerTracker(state, breakers or BreakerConfig())
        self.topic = signals_topic
        self.signer = signer
        self.heartbeat_ms = int(heartbeat.total_seconds() * 1000)
        self._next_beat_ms = 0
        self.counters: Counter[str] = Counter()

    def on_usage(self, event: Enriched) -> None:
        ts_ms = int(event.ts.timestamp() * 1000)  # the same arithmetic as the usage task
        self.retries.observe(
            event.tenant_id, event.route, event.attempt, event.cost_nusd or 0, ts_ms
        )
        if event.cache == "none":  # a cache hit called no provider
            self.breakers.observe(
                event.tenant_id, event.route, event.provider, event.model, event.success, ts_ms
            )

    def end_batch(self, watermark_ms: int, now: datetime) -> list[Output]:
        now_ms = int(now.timestamp() * 1000)
        beat = bool(self._next_beat_ms) and now_ms >= self._next_beat_ms
        if beat or not self._next_beat_ms:  # the first beat one interval after (re)start
            self._next_beat_ms = now_ms + self.heartbeat_ms
        outputs = []
        signals: list[RetryBudgetSignal | BreakerSignal] = [
            *self.retries.end_batch(watermark_ms, now_ms, beat),
            *self.breakers.end_batch(watermark_ms, now_ms, beat),
        ]
        for signal in signals:
            self.counters[f"signal.{signal.kind.removesuffix('_signal')}.{signal.state}"] += 1
            key, value = signal.scope.encode(), signal.model_dump_json().encode()
            issued_ms = int(signal.issued_at.timestamp() * 1000)
            headers = headers_for(self.signer, self.topic, key, value, issued_ms)
            outputs.append(Output(self.topic, key, value, headers))
        return outputs
