"""The processing core assembled over an engine's backend (SQLite tables, or Faust tables on Kafka)."""

from __future__ import annotations

from ..config import Settings
from ..providers import normalizers
from ..rules.watch import RulesWatcher
from .pipeline import Backend, Pipeline


def build_pipeline(settings: Settings, rules: RulesWatcher, backend: Backend) -> Pipeline:
    """The pipeline as both engines run it: every provider's normalizer, the rules in force."""
    return Pipeline(
        normalizers(),
        backend,
        lambda: rules.rules,
        region=settings.default_region,
        dedupe_window=settings.dedupe_window,
        stitch_timeout=settings.stitch_timeout,
    )
