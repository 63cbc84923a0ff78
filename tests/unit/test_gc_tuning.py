"""Once settled, a process's start-up objects are out of the collector's way and its youngest
generation is collected less often."""

from __future__ import annotations

import gc

from smsroute import gc_tuning


def test_settle_freezes_what_start_up_built_and_raises_the_young_threshold() -> None:
    threshold = gc.get_threshold()
    built_at_start_up: list[object] = []
    try:
        gc_tuning.settle()
        assert not any(tracked is built_at_start_up for tracked in gc.get_objects())  # frozen: never walked again
        assert gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert any(tracked is built_at_start_up for tracked in gc.get_objects())
