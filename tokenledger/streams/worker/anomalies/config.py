"""The detectors' names and their tuning: thresholds, windows and memory, shared by the
detectors that judge, the incidents that fire and resolve, and the task that runs them."""

from __future__ import annotations

from dataclasses import dataclass

DETECTORS = ("spend_rate", "retry_storm", "model_mix", "context_growth", "budget_burn")


@dataclass(frozen=True)
class DetectorConfig:
    spend_ratio: float = 4.0
    spend_min_excess_nusd: int = 200_000_000
    """An excess this large over two minutes fires at once."""
    spend_small_excess_nusd: int = 50_000_000
    """A smaller excess, down to this, fires once it has held spend_sustain_minutes."""
    spend_sustain_minutes: int = 3
    spend_min_events: int = 10
    short_minutes: int = 5
    baseline_minutes: int = 60
    share_min_events: int = 30
    retry_share_pct: int = 20
    retry_ratio: float = 3.0
    mix_ratio: float = 3.0
    mix_min_events: int = 20
    violation_share_pct: int = 20
    violation_ratio: float = 4.0
    burn_min_elapsed_minutes: int = 60
    burn_min_spent_pct: int = 5
    burn_fire_pct: int = 110
    """budget_burn fires at a forecast of this share of the limit..."""
    burn_resolve_pct: int = 90
    """...and resolves only once the forecast has stayed below this share (no flapping)."""
    level_half_life_minutes: int = 1440
    """model_mix's long memory: a route's price level decays with this half-life."""
    resolve_after: int = 5
    cooldown_minutes: int = 30
    max_catch_up_minutes: int = 180
