"""The processing core assembled over an engine's stores (SQLite tables, or Faust tables on Kafka)."""

from __future__ import annotations

from ..config import Settings
from ..providers import normalizers
from ..rules.watch import RulesWatcher
from .dedupe import Dedupe
from .optouts import OptOut, OptOuts
from .pipeline import Pipeline
from .state import Store, TimedStore
from .stitch import Pending, Stitcher


def build_pipeline(
    settings: Settings, rules: RulesWatcher, dedupe: TimedStore[float], pending: TimedStore[Pending], opt_outs: Store[OptOut]
) -> Pipeline:
    """The processing core over an engine's stores (SQLite tables, or Faust tables on Kafka)."""
    return Pipeline(
        normalizers(),
        Dedupe(dedupe, settings.dedupe_window),
        Stitcher(pending, settings.stitch_timeout),
        lambda: rules.rules,
        settings.default_region,
        opt_outs=OptOuts(opt_outs),
    )
